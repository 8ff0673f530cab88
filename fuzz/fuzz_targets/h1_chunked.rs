//! The HTTP/1 codec: see strata_lb::fuzz::chunked for the property checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| strata_lb::fuzz::chunked(data));
