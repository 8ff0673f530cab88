//! Bob Jenkins's hashes as twemproxy has them: one-at-a-time, and lookup3's `hashlittle`
//! (twemproxy's `jenkins`).

use super::signed_char;

/// lookup3's seed in twemproxy (and libmemcached): `initval` is fixed at 13.
const JENKINS_INITVAL: u32 = 13;

/// twemproxy's `one_at_a_time`, each byte widened as a signed `char`.
pub(crate) fn one_at_a_time(key: &[u8]) -> u32 {
    let mut hash = key.iter().fold(0u32, |mut hash, &b| {
        hash = hash.wrapping_add(signed_char(b));
        hash = hash.wrapping_add(hash << 10);
        hash ^ (hash >> 6)
    });
    hash = hash.wrapping_add(hash << 3);
    hash ^= hash >> 11;
    hash.wrapping_add(hash << 15)
}

/// twemproxy's `jenkins`: lookup3's `hashlittle` with `initval` 13, bytes unsigned. Its
/// word-at-a-time paths (taken for aligned keys) give the same answer as the byte path,
/// which is the one written here. An empty key hashes to the initial state, unmixed.
pub(crate) fn jenkins(key: &[u8]) -> u32 {
    let init = 0xdead_beef_u32
        .wrapping_add(key.len() as u32)
        .wrapping_add(JENKINS_INITVAL);
    let mut state = [init; 3];
    if key.is_empty() {
        return state[2];
    }
    let mut rest = key;
    // every block but the last, which may be full (12 bytes) and is finished differently
    while rest.len() > 12 {
        add_block(&mut state, &rest[..12]);
        mix(&mut state);
        rest = &rest[12..];
    }
    let mut last = [0u8; 12];
    last[..rest.len()].copy_from_slice(rest);
    add_block(&mut state, &last);
    finish(&mut state);
    state[2]
}

/// Adds a 12-byte block to (a, b, c) as three little-endian words.
fn add_block(state: &mut [u32; 3], block: &[u8]) {
    for (word, bytes) in state.iter_mut().zip(block.chunks_exact(4)) {
        let value = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
        *word = word.wrapping_add(value);
    }
}

/// lookup3's `mix`.
fn mix([a, b, c]: &mut [u32; 3]) {
    *a = a.wrapping_sub(*c) ^ c.rotate_left(4);
    *c = c.wrapping_add(*b);
    *b = b.wrapping_sub(*a) ^ a.rotate_left(6);
    *a = a.wrapping_add(*c);
    *c = c.wrapping_sub(*b) ^ b.rotate_left(8);
    *b = b.wrapping_add(*a);
    *a = a.wrapping_sub(*c) ^ c.rotate_left(16);
    *c = c.wrapping_add(*b);
    *b = b.wrapping_sub(*a) ^ a.rotate_left(19);
    *a = a.wrapping_add(*c);
    *c = c.wrapping_sub(*b) ^ b.rotate_left(4);
    *b = b.wrapping_add(*a);
}

/// lookup3's `final`.
fn finish([a, b, c]: &mut [u32; 3]) {
    *c = (*c ^ *b).wrapping_sub(b.rotate_left(14));
    *a = (*a ^ *c).wrapping_sub(c.rotate_left(11));
    *b = (*b ^ *a).wrapping_sub(a.rotate_left(25));
    *c = (*c ^ *b).wrapping_sub(b.rotate_left(16));
    *a = (*a ^ *c).wrapping_sub(c.rotate_left(4));
    *b = (*b ^ *a).wrapping_sub(a.rotate_left(14));
    *c = (*c ^ *b).wrapping_sub(b.rotate_left(24));
}
