//! HPACK header blocks, decoded and checked against a second decoder, then encoded and decoded
//! again: see strata_lb::fuzz::hpack for the properties checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| strata_lb::fuzz::hpack(data));
