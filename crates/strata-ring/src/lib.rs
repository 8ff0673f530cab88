//! Hashing and placement as twemproxy does them: its twelve key hashes, hash tags, and the
//! ketama, modula and random distributions.
//!
//! A key is placed in three steps, as twemproxy's `server_pool_idx` does:
//! [`hash_tag`] picks the bytes to hash, [`KeyHash::placement_hash`] hashes them (0 for an
//! empty key), and [`Ring::server`] names the owner ([`Ring::walk`] the fallbacks).

mod hash;
mod ketama;
mod random;
mod ring;
mod slots;
mod tag;

pub use hash::{fnv1a_64, murmur_mix64, KeyHash};
pub use ketama::Ketama;
pub use random::{random_below, random_u32};
pub use ring::{Distribution, Ring};
pub use tag::hash_tag;
