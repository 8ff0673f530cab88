//! The FNV hashes as twemproxy computes them: the 32-bit ones, and two "64-bit" ones that keep
//! only the low 32 bits.

use super::signed_char;

const FNV_64_INIT: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_64_PRIME: u64 = 0x0000_0100_0000_01b3;
const FNV_32_INIT: u32 = 0x811c_9dc5;
const FNV_32_PRIME: u32 = 0x0100_0193;

/// twemproxy's `fnv1_64`: FNV-1 over 64 bits, truncated to the low 32. The low 32 bits of a
/// 64-bit product depend only on the low 32 bits of its factors, so 32-bit arithmetic with
/// the truncated constants gives the same answer.
pub(crate) fn fnv1_64(key: &[u8]) -> u32 {
    fnv1(key, FNV_64_INIT as u32, FNV_64_PRIME as u32)
}

/// twemproxy's `fnv1a_64`: despite the name it keeps 32 bits, with the 64-bit constants
/// truncated, and widens each byte as a signed `char` (x86), which matters for bytes >= 0x80.
pub fn fnv1a_64(key: &[u8]) -> u32 {
    fnv1a(key, FNV_64_INIT as u32, FNV_64_PRIME as u32)
}

/// twemproxy's `fnv1_32`: FNV-1, bytes widened as signed `char`s.
pub(crate) fn fnv1_32(key: &[u8]) -> u32 {
    fnv1(key, FNV_32_INIT, FNV_32_PRIME)
}

/// twemproxy's `fnv1a_32`: FNV-1a, bytes widened as signed `char`s.
pub(crate) fn fnv1a_32(key: &[u8]) -> u32 {
    fnv1a(key, FNV_32_INIT, FNV_32_PRIME)
}

/// FNV-1: multiply, then XOR the byte in.
fn fnv1(key: &[u8], init: u32, prime: u32) -> u32 {
    key.iter()
        .fold(init, |hash, &b| hash.wrapping_mul(prime) ^ signed_char(b))
}

/// FNV-1a: XOR the byte in, then multiply.
fn fnv1a(key: &[u8], init: u32, prime: u32) -> u32 {
    key.iter()
        .fold(init, |hash, &b| (hash ^ signed_char(b)).wrapping_mul(prime))
}
