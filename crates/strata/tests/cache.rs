//! The cache layer against real redis-servers, and against a real nutcracker (twemproxy) for
//! placement: keys written through nutcracker must be found through Strata, on the same server.

mod common;

use std::net::SocketAddr;

use common::redis::{Nutcracker, Redis, Resp};
use common::{free_port, Strata};

/// One pool, as both proxies are told it.
struct Scenario {
    name: &'static str,
    hash: &'static str,
    distribution: &'static str,
    hash_tag: Option<&'static str>,
    /// (weight, name) per server
    servers: [(u32, Option<&'static str>); 3],
}

fn key(scenario: &str, i: usize) -> Vec<u8> {
    let mut k = if i.is_multiple_of(5) {
        // keys that share a hash tag with others
        format!("{scenario}:{{user{}}}:field{i}", i % 97).into_bytes()
    } else {
        format!("{scenario}:{i}").into_bytes()
    };
    if i.is_multiple_of(7) {
        // bytes >= 0x80: twemproxy widens them as signed chars
        k.extend_from_slice(&[0xc3, 0xa9, 0xff, 0x80]);
    }
    k
}

fn scenarios() -> Vec<Scenario> {
    let equal = [(1, None), (1, None), (1, None)];
    let mut all = vec![
        Scenario {
            name: "equal",
            hash: "fnv1a_64",
            distribution: "ketama",
            hash_tag: None,
            servers: equal,
        },
        Scenario {
            name: "weights",
            hash: "fnv1a_64",
            distribution: "ketama",
            hash_tag: None,
            servers: [(1, None), (2, None), (5, None)],
        },
        Scenario {
            name: "named",
            hash: "fnv1a_64",
            distribution: "ketama",
            hash_tag: None,
            servers: [(1, Some("alpha")), (1, Some("beta")), (2, Some("gamma"))],
        },
        Scenario {
            name: "tagged",
            hash: "fnv1a_64",
            distribution: "ketama",
            hash_tag: Some("{}"),
            servers: equal,
        },
        Scenario {
            name: "modula",
            hash: "md5",
            distribution: "modula",
            hash_tag: None,
            servers: [(1, None), (3, None), (2, None)],
        },
    ];
    for (name, hash) in [
        ("h-oaat", "one_at_a_time"),
        ("h-md5", "md5"),
        ("h-crc16", "crc16"),
        ("h-crc32", "crc32"),
        ("h-crc32a", "crc32a"),
        ("h-fnv164", "fnv1_64"),
        ("h-fnv132", "fnv1_32"),
        ("h-fnv1a32", "fnv1a_32"),
        ("h-hsieh", "hsieh"),
        ("h-murmur", "murmur"),
        ("h-jenkins", "jenkins"),
    ] {
        all.push(Scenario {
            name,
            hash,
            // twemproxy's crc32 is a 15-bit hash: on ketama's 32-bit ring it crowds onto one
            // server, so it is checked with modula, where it spreads
            distribution: if hash == "crc32" { "modula" } else { "ketama" },
            hash_tag: None,
            servers: equal,
        });
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_key_lives_where_nutcracker_put_it() {
    let redis = [
        Redis::start().await,
        Redis::start().await,
        Redis::start().await,
    ];
    let scenarios = scenarios();
    let ports: Vec<u16> = scenarios.iter().map(|_| free_port()).collect();
    let mut yaml = String::new();
    let mut toml = String::new();
    for (s, port) in scenarios.iter().zip(&ports) {
        let lines: Vec<String> = s
            .servers
            .iter()
            .zip(&redis)
            .map(|((w, n), r)| match n {
                Some(n) => format!("{}:{w} {n}", r.addr),
                None => format!("{}:{w}", r.addr),
            })
            .collect();
        yaml.push_str(&format!(
            "{}:\n  listen: 127.0.0.1:{port}\n  hash: {}\n  distribution: {}\n  redis: true\n  auto_eject_hosts: false\n",
            s.name, s.hash, s.distribution
        ));
        if let Some(tag) = s.hash_tag {
            yaml.push_str(&format!("  hash_tag: \"{tag}\"\n"));
        }
        yaml.push_str("  servers:\n");
        for l in &lines {
            yaml.push_str(&format!("   - {l}\n"));
        }
        toml.push_str(&format!(
            "[[cache]]\nname = \"{}\"\nlisten = \"127.0.0.1:0\"\nhash = \"{}\"\ndistribution = \"{}\"\n",
            s.name, s.hash, s.distribution
        ));
        if let Some(tag) = s.hash_tag {
            toml.push_str(&format!("hash_tag = \"{tag}\"\n"));
        }
        let quoted: Vec<String> = lines.iter().map(|l| format!("\"{l}\"")).collect();
        toml.push_str(&format!("servers = [{}]\n\n", quoted.join(", ")));
    }
    let listens: Vec<SocketAddr> = ports
        .iter()
        .map(|p| format!("127.0.0.1:{p}").parse().unwrap())
        .collect();
    let nutcracker = Nutcracker::start(&yaml, &listens).await;
    let strata = Strata::start(&toml);

    const KEYS: usize = 10_000;
    let mut wrong = Vec::new();
    for (s, twemproxy) in scenarios.iter().zip(&listens) {
        let keys: Vec<Vec<u8>> = (0..KEYS).map(|i| key(s.name, i)).collect();
        // write every key through nutcracker, its value its own name
        let mut via = Resp::connect(*twemproxy).await.unwrap();
        for chunk in keys.chunks(500) {
            let sets: Vec<Vec<Vec<u8>>> = chunk
                .iter()
                .map(|k| vec![b"SET".to_vec(), k.clone(), k.clone()])
                .collect();
            for r in via.pipeline(&sets).await {
                assert_eq!(&r[..], b"+OK\r\n", "{}: nutcracker SET", s.name);
            }
        }
        // the keys spread over the servers (else the scenario tests little)
        let mut held = [0usize; 3];
        for (i, r) in redis.iter().enumerate() {
            held[i] = r
                .keys()
                .await
                .iter()
                .filter(|k| k.starts_with(format!("{}:", s.name).as_bytes()))
                .count();
        }
        assert_eq!(held.iter().sum::<usize>(), KEYS, "{}: {held:?}", s.name);
        assert!(held.iter().all(|n| *n > 100), "{}: {held:?}", s.name);
        // every key read through Strata comes from the server nutcracker wrote it to
        let mut client = Resp::connect(strata.addr(&format!("cache:{}", s.name)))
            .await
            .unwrap();
        let mut missing = 0;
        for chunk in keys.chunks(500) {
            let gets: Vec<Vec<Vec<u8>>> = chunk
                .iter()
                .map(|k| vec![b"GET".to_vec(), k.clone()])
                .collect();
            for (k, r) in chunk.iter().zip(client.pipeline(&gets).await) {
                let mut want = format!("${}\r\n", k.len()).into_bytes();
                want.extend_from_slice(k);
                want.extend_from_slice(b"\r\n");
                if r[..] != want[..] {
                    missing += 1;
                }
            }
        }
        if missing > 0 {
            wrong.push(format!("{}: {missing} of {KEYS} keys placed elsewhere than nutcracker placed them (it placed {held:?})", s.name));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    drop(nutcracker);
}
