//! A cheap per-thread random number generator (xorshift), for the placements and balancers
//! that pick at random: twemproxy's `random` distribution, the HTTP layer's `random_two`.

use std::cell::Cell;

use crate::murmur_mix64;

/// A uniformly distributed `u32` from this thread's generator, seeded from the clock and the
/// thread's stack address.
pub fn random_u32() -> u32 {
    thread_local! {
        static STATE: Cell<u64> = Cell::new({
            let seed = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0x9e37_79b9);
            murmur_mix64(seed ^ (&seed as *const u64 as u64)) | 1
        });
    }
    STATE.with(|s| {
        let mut x = s.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.set(x);
        (x >> 32) as u32
    })
}

/// A uniform index below `n` (0 when `n` is 0).
pub fn random_below(n: usize) -> usize {
    ((u64::from(random_u32()) * n as u64) >> 32) as usize
}
