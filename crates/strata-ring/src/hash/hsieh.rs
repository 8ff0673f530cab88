//! Paul Hsieh's SuperFastHash as twemproxy has it.

use super::signed_char;

/// twemproxy's `hsieh`. Bytes are read unsigned, except the third byte of a 3-byte tail,
/// which is widened as a signed `char` (as in Hsieh's original); a 1-byte tail is read
/// unsigned (Hsieh's original reads it signed). An empty key hashes to 0.
pub(crate) fn hsieh(key: &[u8]) -> u32 {
    if key.is_empty() {
        return 0;
    }
    let mut chunks = key.chunks_exact(4);
    let mut hash = 0u32;
    for chunk in &mut chunks {
        hash = hash.wrapping_add(le16(chunk[0], chunk[1]));
        let tmp = (le16(chunk[2], chunk[3]) << 11) ^ hash;
        hash = (hash << 16) ^ tmp;
        hash = hash.wrapping_add(hash >> 11);
    }
    match *chunks.remainder() {
        [b0, b1, b2] => {
            hash = hash.wrapping_add(le16(b0, b1));
            hash ^= hash << 16;
            hash ^= signed_char(b2) << 18;
            hash = hash.wrapping_add(hash >> 11);
        }
        [b0, b1] => {
            hash = hash.wrapping_add(le16(b0, b1));
            hash ^= hash << 11;
            hash = hash.wrapping_add(hash >> 17);
        }
        [b0] => {
            hash = hash.wrapping_add(u32::from(b0));
            hash ^= hash << 10;
            hash = hash.wrapping_add(hash >> 1);
        }
        _ => {}
    }
    avalanche(hash)
}

/// Two bytes as a little-endian 16-bit value (`get16bits` off i386).
fn le16(low: u8, high: u8) -> u32 {
    u32::from(u16::from_le_bytes([low, high]))
}

/// The final mixing, so the last bytes reach every bit.
fn avalanche(mut hash: u32) -> u32 {
    hash ^= hash << 3;
    hash = hash.wrapping_add(hash >> 5);
    hash ^= hash << 4;
    hash = hash.wrapping_add(hash >> 17);
    hash ^= hash << 25;
    hash.wrapping_add(hash >> 6)
}
