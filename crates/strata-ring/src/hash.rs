//! Key hashes.

/// twemproxy's `fnv1a_64`: despite the name it keeps 32 bits, with the 64-bit constants
/// truncated, and widens each byte as a signed `char` (x86), which matters for bytes >= 0x80.
pub fn fnv1a_64(key: &[u8]) -> u32 {
    const INIT: u32 = 0xcbf2_9ce4_8422_2325_u64 as u32;
    const PRIME: u32 = 0x0000_0100_0000_01b3_u64 as u32;
    let mut hash = INIT;
    for &b in key {
        hash ^= b as i8 as i32 as u32;
        hash = hash.wrapping_mul(PRIME);
    }
    hash
}

/// A cheap 64-bit mixer (the murmur3 finaliser), for spreading small integers such as a
/// connection counter over the ring's 32-bit space.
pub fn murmur_mix64(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
}

#[cfg(test)]
mod tests;
