//! The key hashes against published test vectors: libmemcached's `tests/hash_results.h` and
//! twemproxy's `src/test_all.c` for every hash, the CRC catalogue's check values, FNV's
//! reference values, values recorded from twemproxy's own C for bytes >= 0x80, and SMHasher's
//! verification value for MurmurHash3.

use super::*;

mod libmemcached;

#[test]
fn every_hash_but_the_crc16_and_crc32a_matches_libmemcacheds_hash_results() {
    // libmemcached's algorithms are twemproxy's for these ten (its crc32 is twemproxy's crc32,
    // not CRC-32; its murmur and jenkins are seeded as twemproxy's): the same values
    let lists = [
        (KeyHash::OneAtATime, libmemcached::ONE_AT_A_TIME),
        (KeyHash::Md5, libmemcached::MD5),
        (KeyHash::Crc32, libmemcached::CRC32),
        (KeyHash::Fnv164, libmemcached::FNV1_64),
        (KeyHash::Fnv1a64, libmemcached::FNV1A_64),
        (KeyHash::Fnv132, libmemcached::FNV1_32),
        (KeyHash::Fnv1a32, libmemcached::FNV1A_32),
        (KeyHash::Hsieh, libmemcached::HSIEH),
        (KeyHash::Murmur, libmemcached::MURMUR),
        (KeyHash::Jenkins, libmemcached::JENKINS),
    ];
    for (hash, values) in lists {
        for (key, want) in libmemcached::KEYS.iter().zip(values) {
            assert_eq!(hash.hash(key.as_bytes()), want, "{} {key}", hash.name());
        }
    }
}

#[test]
fn every_hash_matches_twemproxys_test_all() {
    // src/test_all.c `test_hash_algorithms`: each hash of "apple", in `hash_type_t` order
    let want = [
        2297466611, 3195025439, 3662830516, 10542, 2838417488, 473199127, 1488911807, 67176023,
        280767167, 3738850110, 4142305122, 1442444624,
    ];
    for (hash, want) in KeyHash::ALL.into_iter().zip(want) {
        assert_eq!(hash.hash(b"apple"), want, "{}", hash.name());
    }
}

/// Keys with bytes >= 0x80 (and the empty key), each with the twelve hashes in `ALL` order as
/// twemproxy's own `src/hashkit/*.c` computed them, compiled with gcc on x86_64 (signed
/// `char`), the keys placed so that jenkins takes each of its three (aligned word, half-word,
/// byte) paths. No published list covers such bytes; these pin every place a byte is widened
/// as a signed `char`.
const RECORDED_FROM_TWEMPROXY: [(&[u8], [u32; 12]); 6] = [
    (
        b"",
        [
            0, 3649838548, 0, 0, 0, 2216829733, 2216829733, 2166136261, 2166136261, 0, 0,
            3735928572,
        ],
    ),
    (
        b"\x80",
        [
            3273477671, 2128427405, 37256, 16314, 1069182125, 2046707807, 2046684255, 4210270879,
            83079839, 3606367026, 2421514821, 2976898632,
        ],
    ),
    (
        b"\xff\x00\x7f",
        [
            629435998, 3455118421, 503529499, 355, 2170782034, 2481843551, 2399682863, 2404158879,
            1634218991, 1283109597, 2663651866, 3973298768,
        ],
    ),
    (
        // a 1-byte tail >= 0x80 for hsieh
        "caf\u{e9}".as_bytes(),
        [
            3650908318, 3833532679, 4129724007, 6317, 2561491637, 2315714289, 3472276361,
            3598905713, 1970454601, 3728705621, 3658586143, 3412207021,
        ],
    ),
    (
        // a 3-byte tail whose last byte is >= 0x80 for hsieh
        b"ab\xe9",
        [
            2087468527, 2356330952, 2088021268, 14409, 944319484, 2488291905, 4206748569,
            3160658113, 2981610777, 307729637, 1806632351, 2301080244,
        ],
    ),
    (
        // longer than one of jenkins's 12-byte blocks
        b"user\xc3\xa9\xc3\xa9\xff\xfe\x80\x01\x7fA",
        [
            1770898744, 2821970361, 3392348373, 1348, 88383024, 1002022318, 4006666748, 1831526862,
            2952604092, 1430263577, 2087020141, 1008912630,
        ],
    ),
];

#[test]
fn every_hash_matches_twemproxys_c_on_high_bytes_and_the_empty_key() {
    for (key, values) in RECORDED_FROM_TWEMPROXY {
        for (hash, want) in KeyHash::ALL.into_iter().zip(values) {
            assert_eq!(hash.hash(key), want, "{} {key:x?}", hash.name());
        }
    }
}

#[test]
fn the_fnv_hashes_and_one_at_a_time_widen_a_high_byte_as_a_signed_char() {
    // hand-derived from twemproxy's `(uint32_t)key[x]` with `char` signed: 0x80 goes in as
    // 0xffffff80 (0x00000080 would give other values)
    let byte = 0xffff_ff80u32;
    let (fnv64_init, fnv64_prime) = (0x8422_2325u32, 0x0000_01b3u32);
    let (fnv32_init, fnv32_prime) = (0x811c_9dc5u32, 0x0100_0193u32);
    let one = &[0x80u8][..];
    assert_eq!(
        KeyHash::Fnv164.hash(one),
        fnv64_init.wrapping_mul(fnv64_prime) ^ byte
    );
    assert_eq!(
        KeyHash::Fnv1a64.hash(one),
        (fnv64_init ^ byte).wrapping_mul(fnv64_prime)
    );
    assert_eq!(
        KeyHash::Fnv132.hash(one),
        fnv32_init.wrapping_mul(fnv32_prime) ^ byte
    );
    assert_eq!(
        KeyHash::Fnv1a32.hash(one),
        (fnv32_init ^ byte).wrapping_mul(fnv32_prime)
    );
    let mut v = byte;
    v = v.wrapping_add(v << 10);
    v ^= v >> 6;
    v = v.wrapping_add(v << 3);
    v ^= v >> 11;
    v = v.wrapping_add(v << 15);
    assert_eq!(KeyHash::OneAtATime.hash(one), v);
}

#[test]
fn hsieh_reads_a_one_byte_tail_unsigned_and_a_three_byte_tail_signed() {
    // hand-derived from nc_hsieh.c: `(unsigned char)(*key)` for a 1-byte tail,
    // `(uint32_t)key[2] << 18` with a signed `char` for a 3-byte tail
    let avalanche = |mut h: u32| {
        h ^= h << 3;
        h = h.wrapping_add(h >> 5);
        h ^= h << 4;
        h = h.wrapping_add(h >> 17);
        h ^= h << 25;
        h.wrapping_add(h >> 6)
    };
    let mut h = 0x80u32;
    h ^= h << 10;
    h = h.wrapping_add(h >> 1);
    assert_eq!(KeyHash::Hsieh.hash(&[0x80]), avalanche(h));
    let mut h = u32::from(u16::from_le_bytes(*b"ab"));
    h ^= h << 16;
    h ^= 0xffff_ffe9 << 18;
    h = h.wrapping_add(h >> 11);
    assert_eq!(KeyHash::Hsieh.hash(b"ab\xe9"), avalanche(h));
}

#[test]
fn crc32a_is_crc_32_and_crc32_its_15_bit_slice() {
    // the CRC catalogue's CRC-32 check value, and zlib's well-known pangram value
    assert_eq!(KeyHash::Crc32a.hash(b"123456789"), 0xcbf4_3926);
    assert_eq!(
        KeyHash::Crc32a.hash(b"The quick brown fox jumps over the lazy dog"),
        0x414f_a339
    );
    assert_eq!(
        KeyHash::Crc32.hash(b"123456789"),
        (0xcbf4_3926 >> 16) & 0x7fff
    );
}

#[test]
fn crc16_is_crc_16_xmodem_below_and_earlier_steps_above() {
    // the CRC catalogue's CRC-16/XMODEM check value is 0x31c3: twemproxy's low 16 bits
    let crc = KeyHash::Crc16.hash(b"123456789");
    assert_eq!(crc & 0xffff, 0x31c3);
    // the register is shifted left 8 per byte and never masked: its top half is bits 8..23
    // of the step before (so it is no 16-bit value; "apple" gives 3662830516 above)
    let before = KeyHash::Crc16.hash(b"12345678");
    assert_eq!(crc >> 16, (before >> 8) & 0xffff);
}

#[test]
fn the_empty_key_is_placed_at_hash_0() {
    // server_pool_hash returns 0 for an empty key without calling the hash
    for hash in KeyHash::ALL {
        assert_eq!(hash.placement_hash(b""), 0, "{}", hash.name());
        assert_eq!(hash.placement_hash(b"apple"), hash.hash(b"apple"));
    }
    assert_ne!(KeyHash::Md5.hash(b""), 0);
}

#[test]
fn hashes_are_found_by_twemproxys_names_only() {
    for hash in KeyHash::ALL {
        assert_eq!(KeyHash::from_name(hash.name()), Some(hash));
    }
    assert_eq!(KeyHash::from_name("fnv1a_64"), Some(KeyHash::Fnv1a64));
    assert_eq!(
        KeyHash::from_name("one_at_a_time"),
        Some(KeyHash::OneAtATime)
    );
    assert_eq!(KeyHash::from_name("FNV1A_64"), None);
    assert_eq!(KeyHash::from_name("crc64"), None);
    assert_eq!(KeyHash::from_name(""), None);
}

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
