//! MD5, read as twemproxy reads it: the 16-byte digest as four little-endian words.

use md5::{Digest, Md5};

/// The digest's 16 bytes as four little-endian words: word `x` is `ketama_hash(.., x)`, and
/// word 0 is the `md5` key hash.
pub(crate) fn md5_words(input: &[u8]) -> [u32; 4] {
    let digest = Md5::digest(input);
    std::array::from_fn(|x| {
        let d = &digest[x * 4..x * 4 + 4];
        u32::from_le_bytes([d[0], d[1], d[2], d[3]])
    })
}
