//! The key hashes against published test vectors: FNV's reference values, libmemcached's
//! `tests/hash_results.h` (which twemproxy's `src/test_all.c` checks too) and SMHasher's
//! verification value for MurmurHash3.

use super::*;

/// The keys of libmemcached's `tests/hash_results.h`, in its order.
const LIBMEMCACHED_KEYS: [&str; 25] = [
    "apple",
    "beat",
    "carrot",
    "daikon",
    "eggplant",
    "flower",
    "green",
    "hide",
    "ick",
    "jack",
    "kick",
    "lime",
    "mushrooms",
    "nectarine",
    "orange",
    "peach",
    "quant",
    "ripen",
    "strawberry",
    "tang",
    "up",
    "volumne",
    "when",
    "yellow",
    "zip",
];

/// libmemcached's `fnv1a_64_values`, one for each of `LIBMEMCACHED_KEYS`.
const LIBMEMCACHED_FNV1A_64: [u32; 25] = [
    1488911807, 2500855813, 1510099634, 1390325195, 3647689787, 3241528582, 1669328060, 2604311949,
    734810122, 1516407546, 560948863, 1767346780, 561034892, 4156330026, 3716417003, 3475297030,
    1518272172, 227211583, 3938128828, 126112909, 3043416448, 3131561933, 1328739897, 2455664041,
    2272238452,
];

#[test]
fn fnv1a_64_is_the_low_half_of_the_reference_fnv_1a_64() {
    // FNV-1a 64 reference values (Noll's test suite); twemproxy keeps the low 32 bits, which
    // arithmetic modulo 2^32 with the truncated constants gives exactly
    for (key, full) in [
        (&b""[..], 0xcbf2_9ce4_8422_2325_u64),
        (b"a", 0xaf63_dc4c_8601_ec8c),
        (b"foobar", 0x8594_4171_f739_67e8),
    ] {
        assert_eq!(
            fnv1a_64(key),
            full as u32,
            "{:?}",
            String::from_utf8_lossy(key)
        );
    }
}

#[test]
fn fnv1a_64_matches_libmemcached_hash_results() {
    for (key, want) in LIBMEMCACHED_KEYS.iter().zip(LIBMEMCACHED_FNV1A_64) {
        assert_eq!(fnv1a_64(key.as_bytes()), want, "{key}");
    }
}

#[test]
fn fnv1a_64_widens_a_high_byte_as_a_signed_char() {
    // no published vector covers bytes >= 0x80 (libmemcached's keys are ASCII); this pins the
    // x86 behaviour of twemproxy's `(uint32_t)key[x]`: 0x80 is XORed in as 0xffffff80
    assert_eq!(
        fnv1a_64(&[0x80]),
        (0x8422_2325u32 ^ 0xffff_ff80).wrapping_mul(0x1b3)
    );
}

/// MurmurHash3_x64_128 (Appleby's reference), with `murmur_mix64` as its `fmix64`.
fn murmur3_x64_128(key: &[u8], seed: u32) -> [u8; 16] {
    const C1: u64 = 0x87c3_7b91_1142_53d5;
    const C2: u64 = 0x4cf5_ad43_2745_937f;
    let mix_k1 = |k: u64| k.wrapping_mul(C1).rotate_left(31).wrapping_mul(C2);
    let mix_k2 = |k: u64| k.wrapping_mul(C2).rotate_left(33).wrapping_mul(C1);
    let lane = |h: u64, r: u32, other: u64, add: u64| {
        h.rotate_left(r)
            .wrapping_add(other)
            .wrapping_mul(5)
            .wrapping_add(add)
    };
    let (mut h1, mut h2) = (seed as u64, seed as u64);
    let mut blocks = key.chunks_exact(16);
    for block in &mut blocks {
        let word = |i: usize| u64::from_le_bytes(block[i..i + 8].try_into().unwrap());
        h1 = lane(h1 ^ mix_k1(word(0)), 27, h2, 0x52dc_e729);
        h2 = lane(h2 ^ mix_k2(word(8)), 31, h1, 0x3849_5ab5);
    }
    let mut tail = [0u8; 16];
    let rest = blocks.remainder();
    tail[..rest.len()].copy_from_slice(rest);
    if rest.len() > 8 {
        h2 ^= mix_k2(u64::from_le_bytes(tail[8..].try_into().unwrap()));
    }
    if !rest.is_empty() {
        h1 ^= mix_k1(u64::from_le_bytes(tail[..8].try_into().unwrap()));
    }
    h1 ^= key.len() as u64;
    h2 ^= key.len() as u64;
    h1 = h1.wrapping_add(h2);
    h2 = h2.wrapping_add(h1);
    h1 = murmur_mix64(h1);
    h2 = murmur_mix64(h2);
    h1 = h1.wrapping_add(h2);
    h2 = h2.wrapping_add(h1);
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&h1.to_le_bytes());
    out[8..].copy_from_slice(&h2.to_le_bytes());
    out
}

#[test]
fn murmur_mix64_is_murmur3s_finaliser_by_smhasher_verification() {
    // SMHasher's VerificationTest: hash {}, {0}, {0,1}, ... {0..254} with seed 256 - length,
    // hash the concatenated results with seed 0; the first four bytes, little-endian, are
    // 0x6384BA69 for MurmurHash3_x64_128
    let key: Vec<u8> = (0..=255u8).collect();
    let mut hashes = Vec::with_capacity(16 * 256);
    for len in 0..256 {
        hashes.extend_from_slice(&murmur3_x64_128(&key[..len], 256 - len as u32));
    }
    let last = murmur3_x64_128(&hashes, 0);
    let verification = u32::from_le_bytes([last[0], last[1], last[2], last[3]]);
    assert_eq!(verification, 0x6384_ba69);
}
