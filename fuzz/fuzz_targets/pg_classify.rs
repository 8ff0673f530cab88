//! Read-only classification by PostgreSQL's parser: see strata_pgparse::fuzz::classify for
//! the property checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| strata_pgparse::fuzz::classify(data));
