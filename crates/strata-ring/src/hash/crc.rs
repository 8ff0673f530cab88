//! twemproxy's CRC hashes: `crc16` (CRC-16/XMODEM's table, but a register that is never cut
//! back to 16 bits), `crc32` (libmemcached's 15-bit slice of CRC-32) and `crc32a` (CRC-32).

/// CRC-16/XMODEM's table (polynomial 0x1021, most significant bit first).
const CRC16_TABLE: [u16; 256] = crc16_table();

/// CRC-32's table (polynomial 0x04c11db7 reflected, least significant bit first).
const CRC32_TABLE: [u32; 256] = crc32_table();

/// twemproxy's `crc16`. The register is a `uint32_t` shifted left by 8 for each byte and never
/// masked, so the low 16 bits are CRC-16/XMODEM and the high 16 bits keep bits of earlier
/// steps: the result is a full 32-bit value, not a CRC-16.
pub(crate) fn crc16(key: &[u8]) -> u32 {
    key.iter().fold(0u32, |crc, &b| {
        let index = ((crc >> 8) as u8 ^ b) as usize;
        (crc << 8) ^ u32::from(CRC16_TABLE[index])
    })
}

/// twemproxy's `crc32`, kept compatible with libmemcached: CRC-32, then only bits 16..31 of
/// the result, with the top one cleared (a value below 2^15).
pub(crate) fn crc32(key: &[u8]) -> u32 {
    (crc32a(key) >> 16) & 0x7fff
}

/// twemproxy's `crc32a`: the standard CRC-32 (as zlib's `crc32`).
pub(crate) fn crc32a(key: &[u8]) -> u32 {
    !key.iter().fold(u32::MAX, |crc, &b| {
        (crc >> 8) ^ CRC32_TABLE[(crc as u8 ^ b) as usize]
    })
}

const fn crc16_table() -> [u16; 256] {
    let mut table = [0u16; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = (i as u16) << 8;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
}

const fn crc32_table() -> [u32; 256] {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = i as u32;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_match_twemproxys() {
        // spot checks against nc_crc16.c's crc16tab and nc_crc32.c's crc32tab
        for (i, want) in [(0, 0x0000), (1, 0x1021), (128, 0x9188), (255, 0x1ef0)] {
            assert_eq!(CRC16_TABLE[i], want, "crc16tab[{i}]");
        }
        for (i, want) in [
            (0, 0x0000_0000),
            (1, 0x7707_3096),
            (128, 0xedb8_8320),
            (255, 0x2d02_ef8d),
        ] {
            assert_eq!(CRC32_TABLE[i], want, "crc32tab[{i}]");
        }
    }
}
