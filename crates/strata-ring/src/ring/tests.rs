//! Placement against twemproxy: owners recorded from its own `nc_ketama.c` and `nc_modula.c`,
//! the arithmetic of `nc_modula.c` and `nc_random.c`, and the walks and shares built on them.

use super::*;
use crate::KeyHash;

/// A pool with uneven weights, names as twemproxy would hash them.
const SERVERS: [(&str, u32); 4] = [
    ("10.0.0.1:6379", 1),
    ("10.0.0.2:6379", 2),
    ("10.0.0.3:6379", 3),
    ("cache-4", 1),
];

/// The same weights with names that twemproxy's sort (shorter first, then byte order) leaves
/// in config order, for the slot distributions, whose layout follows that order.
const SLOT_SERVERS: [(&str, u32); 4] = [
    ("10.0.0.1:6379", 1),
    ("10.0.0.2:6379", 2),
    ("10.0.0.3:6379", 3),
    ("10.0.0.4:6379", 1),
];

/// libmemcached's 25 hash test keys: spread over the ring by both hashes below.
const KEYS: &str = "apple beat carrot daikon eggplant flower green hide ick jack kick lime \
                    mushrooms nectarine orange peach quant ripen strawberry tang up volumne \
                    when yellow zip";

/// The owner of each of `KEYS` on a ring of `SERVERS`, as one digit each.
fn owners(distribution: Distribution, hash: KeyHash) -> String {
    let servers = match distribution {
        Distribution::Ketama => SERVERS,
        _ => SLOT_SERVERS,
    };
    let ring = Ring::new(distribution, servers);
    KEYS.split_whitespace()
        .map(|key| {
            let owner = ring.server(hash.placement_hash(key.as_bytes()));
            char::from(b'0' + owner.expect("an owner") as u8)
        })
        .collect()
}

#[test]
fn owners_are_the_ones_twemproxy_picks() {
    // recorded from twemproxy's nc_ketama.c and nc_modula.c (`*_update` then `*_dispatch`),
    // compiled with gcc on x86_64 against stand-ins for its pool and server structs
    let recorded = [
        (
            Distribution::Ketama,
            KeyHash::Fnv1a64,
            "2222220211333121122323132",
        ),
        (
            Distribution::Ketama,
            KeyHash::Md5,
            "1322033222221022121203022",
        ),
        (
            Distribution::Modula,
            KeyHash::Fnv1a64,
            "2110021122322121222312121",
        ),
        (
            Distribution::Modula,
            KeyHash::Md5,
            "2211112131232220122222011",
        ),
    ];
    for (distribution, hash, want) in recorded {
        let got = owners(distribution, hash);
        assert_eq!(got, want, "{} {}", distribution.name(), hash.name());
    }
}

#[test]
fn modula_takes_the_slot_at_hash_mod_total_weight() {
    // nc_modula.c: one slot per unit of weight, runs in config order, `hash % ncontinuum`
    let continuum: Vec<usize> = SLOT_SERVERS
        .iter()
        .enumerate()
        .flat_map(|(index, &(_, weight))| std::iter::repeat_n(index, weight as usize))
        .collect();
    assert_eq!(continuum, [0, 1, 1, 2, 2, 2, 3]);
    let ring = Ring::new(Distribution::Modula, SLOT_SERVERS);
    let hashes = (0..100).chain([1_488_911_807, u32::MAX - 1, u32::MAX]);
    for hash in hashes {
        let want = continuum[hash as usize % continuum.len()];
        assert_eq!(ring.server(hash), Some(want), "{hash}");
    }
    // "apple" by fnv1a_64 is 1488911807, which is 5 mod 7: the third server's last slot
    assert_eq!(
        ring.server(KeyHash::Fnv1a64.placement_hash(b"apple")),
        Some(2)
    );
}

#[test]
fn modula_respects_weights() {
    let ring = Ring::new(Distribution::Modula, SLOT_SERVERS);
    let mut counts = [0; 4];
    for hash in 0..7000 {
        counts[ring.server(hash).unwrap()] += 1;
    }
    assert_eq!(counts, [1000, 2000, 3000, 1000]);
    assert_eq!(ring.shares(), [1.0 / 7.0, 2.0 / 7.0, 3.0 / 7.0, 1.0 / 7.0]);
}

#[test]
fn random_gives_each_server_one_slot_whatever_its_weight() {
    // nc_random.c: one slot per server, `random() % ncontinuum`; the caller's random number
    // stands for random()
    let ring = Ring::new(Distribution::Random, SLOT_SERVERS);
    for n in (0..100).chain([u32::MAX]) {
        assert_eq!(ring.server(n), Some(n as usize % 4), "{n}");
    }
    assert_eq!(ring.shares(), [0.25; 4]);
}

#[test]
fn slot_walks_go_on_in_config_order_from_the_owner() {
    let modula = Ring::new(Distribution::Modula, SLOT_SERVERS);
    // slot 2 is the second server's
    assert_eq!(modula.walk(2).collect::<Vec<_>>(), [1, 2, 3, 0]);
    // slot 6, the last, is the fourth server's: wrap to the first
    assert_eq!(modula.walk(6).collect::<Vec<_>>(), [3, 0, 1, 2]);
    let random = Ring::new(Distribution::Random, SLOT_SERVERS);
    assert_eq!(random.walk(2).collect::<Vec<_>>(), [2, 3, 0, 1]);
    for hash in [0, 5, 1_000_003, u32::MAX] {
        for ring in [&modula, &random] {
            assert_eq!(ring.walk(hash).next(), ring.server(hash));
        }
    }
}

#[test]
fn slots_lie_in_twemproxys_server_order_not_the_configs() {
    // nc_conf.c sorts a pool's servers by name before anything is placed: "b:1" after "a:1",
    // "cache-4" (shorter) before both "10.0.0.x:6379"
    let ring = Ring::new(Distribution::Modula, [("b:1", 1), ("a:1", 1)]);
    assert_eq!((ring.server(0), ring.server(1)), (Some(1), Some(0)));
    assert_eq!(ring.walk(0).collect::<Vec<_>>(), [1, 0]);
    let ring = Ring::new(Distribution::Modula, SERVERS);
    // slots: cache-4 (1), then the three by weight 1, 2, 3
    let owners: Vec<usize> = (0..7).map(|h| ring.server(h).unwrap()).collect();
    assert_eq!(owners, [3, 0, 1, 1, 2, 2, 2]);
    assert_eq!(ring.shares(), [1.0 / 7.0, 2.0 / 7.0, 3.0 / 7.0, 1.0 / 7.0]);
    let random = Ring::new(Distribution::Random, SERVERS);
    assert_eq!(random.server(0), Some(3));
}

#[test]
fn a_ketama_ring_places_and_walks_as_ketama_does() {
    let ring = Ring::new(Distribution::Ketama, SERVERS);
    let ketama = Ketama::new(SERVERS);
    for hash in (0..64).map(|i| i * 67_108_864 + 12_345) {
        assert_eq!(ring.server(hash), ketama.server(hash));
        let walk: Vec<usize> = ring.walk(hash).collect();
        assert_eq!(walk, ketama.walk(hash).collect::<Vec<_>>());
        let mut sorted = walk.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, [0, 1, 2, 3], "each server once");
    }
}

#[test]
fn ketama_shares_are_the_arcs_the_points_own() {
    let ring = Ring::new(Distribution::Ketama, SERVERS);
    let shares = ring.shares();
    assert!(
        (shares.iter().sum::<f64>() - 1.0).abs() < 1e-12,
        "{shares:?}"
    );
    // measure each server's arcs by asking for the owner of 2^20 evenly spaced hashes
    let mut counts = [0u32; 4];
    for i in 0..1u32 << 20 {
        counts[ring.server(i << 12).unwrap()] += 1;
    }
    for (share, count) in shares.iter().zip(counts) {
        let measured = f64::from(count) / f64::from(1u32 << 20);
        assert!((share - measured).abs() < 0.002, "{shares:?} vs {counts:?}");
    }
    // weights 1:2:3:1 give 88, 180, 272 and 88 points (floor(160 * 4 * w / 7 / 4) * 4), and
    // arcs near the weight shares
    for (share, weight) in shares.iter().zip([1.0, 2.0, 3.0, 1.0]) {
        assert!((share - weight / 7.0).abs() < 0.05, "{shares:?}");
    }
    let one = Ring::new(Distribution::Ketama, [("only", 1)]);
    assert_eq!(one.shares(), [1.0]);
}

#[test]
fn a_server_of_weight_0_owns_nothing_and_is_never_walked_to() {
    let servers = [("a", 1), ("b", 0), ("c", 2)];
    for distribution in [
        Distribution::Ketama,
        Distribution::Modula,
        Distribution::Random,
    ] {
        let ring = Ring::new(distribution, servers);
        assert_eq!(ring.shares()[1], 0.0, "{}", distribution.name());
        for hash in (0..200).chain((0..64).map(|i| i * 67_108_864 + 99)) {
            let walk: Vec<usize> = ring.walk(hash).collect();
            assert_eq!(walk.len(), 2, "{} {hash}", distribution.name());
            assert!(!walk.contains(&1), "{} {hash}", distribution.name());
        }
    }
}

#[test]
fn a_ring_without_servers_owns_nothing() {
    for distribution in [
        Distribution::Ketama,
        Distribution::Modula,
        Distribution::Random,
    ] {
        let empty = Ring::new(distribution, std::iter::empty());
        assert_eq!(empty.server(7), None);
        assert_eq!(empty.walk(7).count(), 0);
        assert!(empty.shares().is_empty());
        let weightless = Ring::new(distribution, [("a", 0)]);
        assert_eq!(weightless.server(7), None);
        assert_eq!(weightless.walk(7).count(), 0);
        assert_eq!(weightless.shares(), [0.0]);
        assert_eq!(weightless.distribution(), distribution);
    }
}

#[test]
fn distributions_are_found_by_twemproxys_names_only() {
    for distribution in [
        Distribution::Ketama,
        Distribution::Modula,
        Distribution::Random,
    ] {
        assert_eq!(
            Distribution::from_name(distribution.name()),
            Some(distribution)
        );
    }
    assert_eq!(
        Distribution::from_name("ketama"),
        Some(Distribution::Ketama)
    );
    assert_eq!(Distribution::from_name("Ketama"), None);
    assert_eq!(Distribution::from_name("vnode"), None);
}
