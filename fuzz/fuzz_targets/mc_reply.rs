//! The memcached reply framing: see strata_cache::fuzz::memcache::reply_stream.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| strata_cache::fuzz::memcache::reply_stream(data));
