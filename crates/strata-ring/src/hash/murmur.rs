//! MurmurHash2 as twemproxy (and libmemcached) seed it.

const M: u32 = 0x5bd1_e995;
const R: u32 = 24;

/// twemproxy's `murmur`: 32-bit MurmurHash2 with the seed `0xdeadbeef * length`, reading
/// 4-byte words little-endian (x86) and bytes unsigned.
pub(crate) fn murmur(key: &[u8]) -> u32 {
    let len = key.len() as u32;
    let seed = 0xdead_beef_u32.wrapping_mul(len);
    let mut hash = seed ^ len;
    let mut words = key.chunks_exact(4);
    for word in &mut words {
        let mut k = u32::from_le_bytes([word[0], word[1], word[2], word[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        hash = hash.wrapping_mul(M) ^ k;
    }
    let tail = words.remainder();
    if !tail.is_empty() {
        for (i, &b) in tail.iter().enumerate() {
            hash ^= u32::from(b) << (8 * i);
        }
        hash = hash.wrapping_mul(M);
    }
    hash ^= hash >> 13;
    hash = hash.wrapping_mul(M);
    hash ^ (hash >> 15)
}
