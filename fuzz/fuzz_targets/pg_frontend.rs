//! The PostgreSQL client-side codec: see strata_db::fuzz::pg_frontend for the property checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| strata_db::fuzz::pg_frontend(data));
