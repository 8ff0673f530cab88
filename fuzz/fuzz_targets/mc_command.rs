//! The memcached command codec: see strata_cache::fuzz::memcache::command_stream.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| strata_cache::fuzz::memcache::command_stream(data));
