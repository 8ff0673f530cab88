//! The PostgreSQL server-side framing: see strata_db::fuzz::pg_backend for the property checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| strata_db::fuzz::pg_backend(data));
