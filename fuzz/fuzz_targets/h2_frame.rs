//! HTTP/2 frames: see strata_lb::fuzz::h2_frame for the property checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| strata_lb::fuzz::h2_frame(data));
