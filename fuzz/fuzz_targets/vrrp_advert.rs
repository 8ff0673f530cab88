//! The VRRPv3 advert codec: see strata_vip::fuzz::vrrp_advert for the property checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| strata_vip::fuzz::vrrp_advert(data));
