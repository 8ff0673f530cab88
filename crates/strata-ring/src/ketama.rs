//! The ketama ring: 160 points per server, split by weight, each point from an MD5 of
//! `"name-i"`, exactly as twemproxy's `nc_ketama.c` builds it.

use crate::hash::md5_words;

const POINTS_PER_SERVER: f32 = 160.0;
const POINTS_PER_HASH: u32 = 4;
/// twemproxy formats `"name-i"` into a 273-byte buffer (`KETAMA_MAX_HOSTLEN`) and hashes at
/// most this many bytes of it.
const MAX_POINT_NAME: usize = 272;

/// A consistent-hash ring over servers identified by index.
#[derive(Debug, Clone, Default)]
pub struct Ketama {
    /// (point, server index), sorted by point.
    points: Vec<(u32, usize)>,
}

impl Ketama {
    /// Builds the ring over `(name, weight)` servers; a server with weight 0 gets no points.
    pub fn new<'a>(servers: impl IntoIterator<Item = (&'a str, u32)>) -> Self {
        let servers: Vec<(&str, u32)> = servers.into_iter().collect();
        let live = servers.iter().filter(|(_, w)| *w > 0).count();
        let total: u32 = servers.iter().map(|(_, w)| *w).sum();
        let mut points = Vec::new();
        for (index, (name, weight)) in servers.iter().enumerate() {
            if *weight == 0 {
                continue;
            }
            let pct = *weight as f32 / total as f32;
            // the same float arithmetic as twemproxy, so placements match it
            let per_server = ((pct * POINTS_PER_SERVER / POINTS_PER_HASH as f32 * live as f32
                + 0.000_000_000_1)
                .floor()
                * POINTS_PER_HASH as f32) as u32;
            for i in 1..=per_server / POINTS_PER_HASH {
                let input = format!("{name}-{}", i - 1);
                let input = &input.as_bytes()[..input.len().min(MAX_POINT_NAME)];
                points.extend(md5_words(input).map(|point| (point, index)));
            }
        }
        points.sort_unstable();
        Ketama { points }
    }

    /// Whether the ring has no points (no servers, or none with weight).
    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    /// The server that owns `hash`: the first point at or after it, wrapping around.
    pub fn server(&self, hash: u32) -> Option<usize> {
        self.walk(hash).next()
    }

    /// Servers in ring order from the owner of `hash` on, each once: the fallbacks to try when
    /// the owner is unavailable, in the order every node agrees on.
    pub fn walk(&self, hash: u32) -> impl Iterator<Item = usize> + '_ {
        let start = self.points.partition_point(|(p, _)| *p < hash);
        let n = self.points.len();
        // a bitset for the usual few servers, so the lookup on the hot path allocates nothing
        let mut seen_low = 0u64;
        let mut seen_high: Vec<usize> = Vec::new();
        (0..n).filter_map(move |i| {
            let server = self.points[(start + i) % n].1;
            let new = if server < 64 {
                let bit = 1u64 << server;
                let new = seen_low & bit == 0;
                seen_low |= bit;
                new
            } else if seen_high.contains(&server) {
                false
            } else {
                seen_high.push(server);
                true
            };
            new.then_some(server)
        })
    }

    /// How many of the 2^32 hashes each of `servers` servers owns: a point owns the hashes
    /// after the point before it up to itself, and the first point also those after the last.
    /// A point equal to the one before it owns none (the lookup stops at the first).
    pub(crate) fn arcs(&self, servers: usize) -> Vec<u64> {
        let mut arcs = vec![0u64; servers];
        let Some(&(last, _)) = self.points.last() else {
            return arcs;
        };
        // the first point's arc starts after the last point, one turn back
        let mut previous = i64::from(last) - (1 << 32);
        for &(point, server) in &self.points {
            let point = i64::from(point);
            arcs[server] += (point - previous) as u64;
            previous = point;
        }
        arcs
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fnv1a_64;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("10.0.0.{i}:6379")).collect()
    }

    #[test]
    fn md5_words_are_rfc_1321_digests_read_little_endian() {
        // RFC 1321 A.5: MD5("") = d41d8cd98f00b204e9800998ecf8427e,
        // MD5("a") = 0cc175b9c0f1b6a831c399e269772661, MD5("abc") = 900150983cd24fb0d6963f7d28e17f72
        assert_eq!(
            md5_words(b""),
            [0xd98c_1dd4, 0x04b2_008f, 0x9809_80e9, 0x7e42_f8ec]
        );
        assert_eq!(
            md5_words(b"a"),
            [0xb975_c10c, 0xa8b6_f1c0, 0xe299_c331, 0x6126_7769]
        );
        assert_eq!(
            md5_words(b"abc"),
            [0x9850_0190, 0xb04f_d23c, 0x7d3f_96d6, 0x727f_e128]
        );
    }

    #[test]
    fn the_first_point_is_libmemcacheds_md5_key_hash() {
        // libmemcached tests/hash_results.h `md5_values` (twemproxy's `hash_md5` is checked
        // against the same list): the first of the four words
        let keys = [
            "apple", "beat", "carrot", "daikon", "eggplant", "flower", "green",
        ];
        let want = [
            3195025439, 2556848621, 3724893440, 3332385401, 245758794, 2550894432, 121710495,
        ];
        for (key, want) in keys.iter().zip(want) {
            assert_eq!(md5_words(key.as_bytes())[0], want, "{key}");
        }
    }

    #[test]
    fn the_ring_holds_twemproxys_ketama_points() {
        // twemproxy src/test_all.c: ketama_hash("server1-8", 9, 0) = 3853726576 and
        // ketama_hash("server1-8", 9, 3) = 2667054752, the first and last word of the MD5 of
        // the name of server1's ninth group of points
        let ring = Ketama::new([("server1", 1)]);
        assert_eq!(ring.points.len(), 160);
        for point in [3853726576, 2667054752] {
            assert!(ring.points.contains(&(point, 0)), "no point {point}");
        }
        // and its 40 groups are numbered from 0, as nc_ketama.c's `pointer_index - 1`
        let has = |name: &str| md5_words(name.as_bytes()).map(|p| ring.points.contains(&(p, 0)));
        assert_eq!(has("server1-0"), [true; 4]);
        assert_eq!(has("server1-39"), [true; 4]);
        assert_eq!(has("server1-40"), [false; 4]);
    }

    #[test]
    fn point_names_are_cut_at_twemproxys_272_bytes() {
        // nc_ketama.c formats "name-i" into KETAMA_MAX_HOSTLEN (273) bytes: with a 300-byte
        // name every group hashes the same first 272 bytes
        let name = "g".repeat(300);
        let ring = Ketama::new([(name.as_str(), 1)]);
        let cut = md5_words(&name.as_bytes()[..272]);
        assert_eq!(ring.points.len(), 160);
        assert!(ring.points.iter().all(|(point, _)| cut.contains(point)));
    }

    #[test]
    fn equal_weights_get_160_points_each() {
        let names = names(3);
        let ring = Ketama::new(names.iter().map(|n| (n.as_str(), 1)));
        assert_eq!(ring.points.len(), 480);
    }

    #[test]
    fn some_pool_sizes_get_156_points_each_as_twemproxys_float_arithmetic_gives() {
        // 1/25 in f32, times 160 / 4 * 25, lands just below 40: nc_ketama.c gives each of 25
        // equal servers 39 groups of 4 points (as it does for 47, 50, 55, ... servers)
        for (servers, points) in [(24, 160), (25, 156), (26, 160)] {
            let names = names(servers);
            let ring = Ketama::new(names.iter().map(|n| (n.as_str(), 1)));
            assert_eq!(ring.points.len(), servers * points, "{servers} servers");
        }
    }

    #[test]
    fn adding_a_server_moves_about_one_in_n_keys() {
        let before = names(4);
        let after = names(5);
        let a = Ketama::new(before.iter().map(|n| (n.as_str(), 1)));
        let b = Ketama::new(after.iter().map(|n| (n.as_str(), 1)));
        let keys = 20_000;
        let moved = (0..keys)
            .filter(|k| {
                let h = fnv1a_64(format!("user:{k}").as_bytes());
                a.server(h) != b.server(h)
            })
            .count();
        // ideal is 1/5 = 20%; every moved key must land on the new server
        let share = moved as f64 / keys as f64;
        assert!((0.12..0.28).contains(&share), "moved {share}");
        for k in 0..keys {
            let h = fnv1a_64(format!("user:{k}").as_bytes());
            if a.server(h) != b.server(h) {
                assert_eq!(b.server(h), Some(4));
            }
        }
    }

    #[test]
    fn walk_visits_every_server_once() {
        let names = names(3);
        let ring = Ketama::new(names.iter().map(|n| (n.as_str(), 1)));
        let mut order: Vec<usize> = ring.walk(12345).collect();
        assert_eq!(order.len(), 3);
        order.sort();
        assert_eq!(order, vec![0, 1, 2]);
        assert_eq!(ring.walk(12345).next(), ring.server(12345));
    }

    #[test]
    fn weight_zero_servers_are_skipped_and_empty_rings_answer_none() {
        let ring = Ketama::new([("a:1", 1), ("b:1", 0)]);
        assert!(ring.walk(0).all(|s| s == 0));
        assert_eq!(Ketama::new(std::iter::empty()).server(7), None);
    }
}
