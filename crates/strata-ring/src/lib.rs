//! Hashing and placement: a ketama consistent-hash ring laid out as twemproxy lays it out, and
//! twemproxy's key hashes.

mod hash;
mod ketama;

pub use hash::{fnv1a_64, murmur_mix64};
pub use ketama::Ketama;
