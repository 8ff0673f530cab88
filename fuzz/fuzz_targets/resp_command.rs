//! The RESP command codec: see strata_cache::fuzz::command_stream for the property checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| strata_cache::fuzz::command_stream(data));
