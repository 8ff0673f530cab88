//! Choosing a backend: smooth weighted round robin, least connections, consistent hashing
//! (client IP, header or cookie) and power of two random choices.

use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use strata_config::Balance;
use strata_health::{now_ms, Group};
use strata_ring::{murmur_mix64, random_below, Ketama};

/// Picks backends for one upstream; owns whatever state its algorithm keeps.
#[derive(Debug)]
pub(crate) struct Balancer {
    kind: Balance,
    /// Smooth weighted round robin's current weights (nginx's algorithm).
    current: Mutex<Vec<f64>>,
    ring: Ketama,
    slow_start: Duration,
}

/// What a request offers for the balancer to hash on.
pub struct Key {
    /// The client's address, for `ip_hash`.
    pub client: IpAddr,
    /// The header or cookie value, for `balance = "hash"`.
    pub value: Option<u32>,
}

impl Balancer {
    pub(crate) fn new(kind: &Balance, group: &Group, slow_start: Duration) -> Self {
        let ring = match kind {
            Balance::IpHash | Balance::Hash(_) => {
                Ketama::new(group.backends.iter().map(|b| (b.name.as_str(), b.weight())))
            }
            _ => Ketama::default(),
        };
        Balancer {
            kind: kind.clone(),
            current: Mutex::new(vec![0.0; group.backends.len()]),
            ring,
            slow_start,
        }
    }

    pub(crate) fn kind(&self) -> &Balance {
        &self.kind
    }

    /// The index of the backend to use, avoiding those already `tried` while another is up.
    pub(crate) fn pick(&self, group: &Group, key: &Key, tried: &[usize]) -> Option<usize> {
        // one clock read per pick, not one per backend
        let now = now_ms();
        // a backend at its max_conns is passed over as one already tried is
        let open = |i: usize| {
            let b = &group.backends[i];
            b.is_available_at(now) && b.has_room()
        };
        let usable = |i: usize| open(i) && !tried.contains(&i);
        self.pick_where(group, key, now, &usable)
            .or_else(|| self.pick_where(group, key, now, &open))
    }

    fn pick_where(
        &self,
        group: &Group,
        key: &Key,
        now: u64,
        usable: &dyn Fn(usize) -> bool,
    ) -> Option<usize> {
        match &self.kind {
            Balance::RoundRobin => self.round_robin(group, now, usable),
            Balance::LeastConn => self.least_conn(group, now, usable),
            Balance::RandomTwo => self.random_two(group, now, usable),
            Balance::IpHash => {
                let hash = match key.client {
                    IpAddr::V4(ip) => hash_value(&ip.octets()),
                    IpAddr::V6(ip) => hash_value(&ip.octets()),
                };
                self.ring.walk(hash).find(|&i| usable(i))
            }
            // no header or cookie: spread like round robin, as HAProxy's `balance hdr` does
            Balance::Hash(_) => match key.value {
                Some(hash) => self.ring.walk(hash).find(|&i| usable(i)),
                None => self.round_robin(group, now, usable),
            },
        }
    }

    fn load(&self, group: &Group, i: usize, now: u64) -> f64 {
        let b = &group.backends[i];
        (b.in_flight() as f64 + 1.0) / b.effective_weight_at(self.slow_start, now)
    }

    fn round_robin(
        &self,
        group: &Group,
        now: u64,
        usable: &dyn Fn(usize) -> bool,
    ) -> Option<usize> {
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        let mut total = 0.0;
        let mut best: Option<usize> = None;
        for (i, b) in group.backends.iter().enumerate() {
            if !usable(i) {
                continue;
            }
            let w = b.effective_weight_at(self.slow_start, now);
            current[i] += w;
            total += w;
            if best.is_none_or(|j| current[i] > current[j]) {
                best = Some(i);
            }
        }
        if let Some(i) = best {
            current[i] -= total;
        }
        best
    }

    fn least_conn(&self, group: &Group, now: u64, usable: &dyn Fn(usize) -> bool) -> Option<usize> {
        // start at a random offset so equal loads don't all land on the first backend
        let n = group.backends.len();
        let start = if n > 0 { random_below(n) } else { 0 };
        (0..n)
            .map(|k| (start + k) % n)
            .filter(|&i| usable(i))
            .min_by(|&a, &b| {
                self.load(group, a, now)
                    .total_cmp(&self.load(group, b, now))
            })
    }

    fn random_two(&self, group: &Group, now: u64, usable: &dyn Fn(usize) -> bool) -> Option<usize> {
        let candidates: Vec<usize> = (0..group.backends.len()).filter(|&i| usable(i)).collect();
        match candidates.len() {
            0 => None,
            1 => Some(candidates[0]),
            n => {
                let a = random_below(n);
                let b = (a + 1 + random_below(n - 1)) % n;
                let (a, b) = (candidates[a], candidates[b]);
                Some(if self.load(group, b, now) < self.load(group, a, now) {
                    b
                } else {
                    a
                })
            }
        }
    }
}

/// Hashes a header or cookie value (or a client address) onto the ring. Full 64-bit FNV-1a
/// with a finaliser: twemproxy's 32-bit `fnv1a_64` clusters short, similar keys such as
/// "user-1", "user-2", and HTTP affinity needs no compatibility with it.
pub fn hash_value(value: &[u8]) -> u32 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in value {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    murmur_mix64(h) as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use strata_config::Passive;
    use strata_health::Backend;

    fn group(weights: &[u32]) -> Group {
        Group {
            backends: weights
                .iter()
                .enumerate()
                .map(|(i, w)| Arc::new(Backend::new(([127, 0, 0, 1], 9000 + i as u16).into(), *w)))
                .collect(),
            passive: Passive {
                failures: 0,
                base_ejection: Duration::ZERO,
                max_ejection: Duration::ZERO,
                max_ejected_percent: 0,
            },
        }
    }

    fn key() -> Key {
        Key {
            client: [10, 0, 0, 1].into(),
            value: None,
        }
    }

    #[test]
    fn smooth_round_robin_follows_weights_and_interleaves() {
        let g = group(&[5, 1, 1]);
        let b = Balancer::new(&Balance::RoundRobin, &g, Duration::ZERO);
        let picks: Vec<usize> = (0..7).map(|_| b.pick(&g, &key(), &[]).unwrap()).collect();
        // nginx's smooth sequence for 5,1,1: a a b a c a a
        assert_eq!(picks, vec![0, 0, 1, 0, 2, 0, 0]);
    }

    #[test]
    fn skips_drained_and_tried_backends() {
        let g = group(&[1, 1, 1]);
        let b = Balancer::new(&Balance::RoundRobin, &g, Duration::ZERO);
        g.backends[1].drain();
        for _ in 0..10 {
            let i = b.pick(&g, &key(), &[0]).unwrap();
            assert_eq!(i, 2);
        }
        // when every usable backend was tried, a tried one is better than none
        assert!(b.pick(&g, &key(), &[0, 2]).is_some());
        g.backends[0].drain();
        g.backends[2].drain();
        assert_eq!(b.pick(&g, &key(), &[]), None);
    }

    #[test]
    fn least_conn_prefers_idle_backends() {
        let g = group(&[1, 1]);
        let b = Balancer::new(&Balance::LeastConn, &g, Duration::ZERO);
        let _busy = g.backends[0].start();
        for _ in 0..10 {
            assert_eq!(b.pick(&g, &key(), &[]), Some(1));
        }
    }

    #[test]
    fn random_two_avoids_the_loaded_backend() {
        let g = group(&[1, 1]);
        let b = Balancer::new(&Balance::RandomTwo, &g, Duration::ZERO);
        let _busy: Vec<_> = (0..5).map(|_| g.backends[1].start()).collect();
        for _ in 0..20 {
            assert_eq!(b.pick(&g, &key(), &[]), Some(0));
        }
    }

    #[test]
    fn hash_is_sticky_and_falls_over_to_the_next_on_the_ring() {
        let g = group(&[1, 1, 1]);
        let kind = Balance::Hash(strata_config::HashKey::Cookie("sid".into()));
        let b = Balancer::new(&kind, &g, Duration::ZERO);
        let k = Key {
            client: [10, 0, 0, 1].into(),
            value: Some(hash_value(b"user-42")),
        };
        let first = b.pick(&g, &k, &[]).unwrap();
        for _ in 0..10 {
            assert_eq!(b.pick(&g, &k, &[]), Some(first));
        }
        g.backends[first].drain();
        let second = b.pick(&g, &k, &[]).unwrap();
        assert_ne!(second, first);
        g.backends[first].restore();
        assert_eq!(b.pick(&g, &k, &[]), Some(first));
    }

    #[test]
    fn a_restored_backend_ramps_up_under_slow_start() {
        let g = group(&[1, 1]);
        let b = Balancer::new(&Balance::RoundRobin, &g, Duration::from_secs(100));
        g.backends[0].drain();
        g.backends[0].restore();
        let picks = (0..110)
            .filter(|_| b.pick(&g, &key(), &[]) == Some(0))
            .count();
        // a tenth of its weight at first: about 10 of 110, not 55
        assert!(
            (5..=15).contains(&picks),
            "restored backend got {picks} of 110"
        );
    }

    #[test]
    fn random_stays_in_range() {
        for n in 1..10 {
            for _ in 0..100 {
                assert!(random_below(n) < n);
            }
        }
    }
}
