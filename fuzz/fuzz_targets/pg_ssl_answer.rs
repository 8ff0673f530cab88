//! A server's error answering an SSLRequest: see strata_db::fuzz::pg_ssl_answer for the
//! property checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| strata_db::fuzz::pg_ssl_answer(data));
