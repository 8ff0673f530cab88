//! Key hashes: twemproxy's twelve, by their config names, bit for bit as it computes them on
//! x86_64 (where `char` is signed: several widen bytes >= 0x80 to 0xffffff80..).

mod crc;
mod fnv;
mod hsieh;
mod jenkins;
mod md5;
mod murmur;

pub use fnv::fnv1a_64;
pub(crate) use md5::md5_words;

/// twemproxy's key hashes, by their config names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyHash {
    /// `one_at_a_time`: Jenkins's one-at-a-time.
    OneAtATime,
    /// `md5`: the first four bytes of the MD5 digest, little-endian.
    Md5,
    /// `crc16`: CRC-16/XMODEM's table over a register never cut to 16 bits (a 32-bit value).
    Crc16,
    /// `crc32`: libmemcached's 15 bits of CRC-32 (bits 16..30).
    Crc32,
    /// `crc32a`: the standard CRC-32.
    Crc32a,
    /// `fnv1_64`: FNV-1 64, low 32 bits.
    Fnv164,
    /// `fnv1a_64`: FNV-1a 64, low 32 bits (twemproxy's default).
    Fnv1a64,
    /// `fnv1_32`: FNV-1 32.
    Fnv132,
    /// `fnv1a_32`: FNV-1a 32.
    Fnv1a32,
    /// `hsieh`: Hsieh's SuperFastHash.
    Hsieh,
    /// `murmur`: MurmurHash2, seeded with `0xdeadbeef * length`.
    Murmur,
    /// `jenkins`: lookup3's `hashlittle`, `initval` 13.
    Jenkins,
}

impl KeyHash {
    /// Every hash, in twemproxy's order (`hash_type_t`).
    pub const ALL: [KeyHash; 12] = [
        KeyHash::OneAtATime,
        KeyHash::Md5,
        KeyHash::Crc16,
        KeyHash::Crc32,
        KeyHash::Crc32a,
        KeyHash::Fnv164,
        KeyHash::Fnv1a64,
        KeyHash::Fnv132,
        KeyHash::Fnv1a32,
        KeyHash::Hsieh,
        KeyHash::Murmur,
        KeyHash::Jenkins,
    ];

    /// The hash a config's `hash:` value names; twemproxy matches names exactly (lower case).
    pub fn from_name(name: &str) -> Option<KeyHash> {
        KeyHash::ALL.into_iter().find(|hash| hash.name() == name)
    }

    /// The hash's name in twemproxy's config.
    pub fn name(self) -> &'static str {
        match self {
            KeyHash::OneAtATime => "one_at_a_time",
            KeyHash::Md5 => "md5",
            KeyHash::Crc16 => "crc16",
            KeyHash::Crc32 => "crc32",
            KeyHash::Crc32a => "crc32a",
            KeyHash::Fnv164 => "fnv1_64",
            KeyHash::Fnv1a64 => "fnv1a_64",
            KeyHash::Fnv132 => "fnv1_32",
            KeyHash::Fnv1a32 => "fnv1a_32",
            KeyHash::Hsieh => "hsieh",
            KeyHash::Murmur => "murmur",
            KeyHash::Jenkins => "jenkins",
        }
    }

    /// The hash of `key`, bit for bit as twemproxy's `hash_<name>` function on x86_64 computes
    /// it, for any key including the empty one. To place a key, use
    /// [`placement_hash`](Self::placement_hash), which handles the empty key as twemproxy does.
    pub fn hash(self, key: &[u8]) -> u32 {
        match self {
            KeyHash::OneAtATime => jenkins::one_at_a_time(key),
            KeyHash::Md5 => md5_words(key)[0],
            KeyHash::Crc16 => crc::crc16(key),
            KeyHash::Crc32 => crc::crc32(key),
            KeyHash::Crc32a => crc::crc32a(key),
            KeyHash::Fnv164 => fnv::fnv1_64(key),
            KeyHash::Fnv1a64 => fnv::fnv1a_64(key),
            KeyHash::Fnv132 => fnv::fnv1_32(key),
            KeyHash::Fnv1a32 => fnv::fnv1a_32(key),
            KeyHash::Hsieh => hsieh::hsieh(key),
            KeyHash::Murmur => murmur::murmur(key),
            KeyHash::Jenkins => jenkins::jenkins(key),
        }
    }

    /// The hash twemproxy places `key` by (`server_pool_hash`): 0 for an empty key, which it
    /// never hashes, else [`hash`](Self::hash). Pass the key after [`hash_tag`](crate::hash_tag).
    pub fn placement_hash(self, key: &[u8]) -> u32 {
        if key.is_empty() {
            0
        } else {
            self.hash(key)
        }
    }
}

/// A key byte widened as C's signed `char` is on x86: 0x80 becomes 0xffff_ff80.
fn signed_char(b: u8) -> u32 {
    b as i8 as u32
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
