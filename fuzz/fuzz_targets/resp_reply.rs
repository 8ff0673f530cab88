//! The RESP reply scanner: see strata_cache::fuzz::reply_stream for the property checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| strata_cache::fuzz::reply_stream(data));
