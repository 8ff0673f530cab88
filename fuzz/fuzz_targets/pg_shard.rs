//! Sharding's readers (Bind parameters, the partition hash, key routing): see
//! strata_db::fuzz::pg_shard for the properties checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| strata_db::fuzz::pg_shard(data));
