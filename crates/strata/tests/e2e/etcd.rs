//! Config from a real etcd (`strata run -c etcd://HOST:PORT/KEY`): three nodes follow one key and
//! agree on a ring change written once; a bad revision is refused and the running one kept; etcd
//! going away leaves the last good config serving, and a revision written after it comes back
//! is applied.

use crate::common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::etcd::Etcd;
use common::redis::{text, Redis, Resp};
use common::*;

const KEY: &str = "/strata/fleet";

/// A node that reads its config from `url`: listening once it has `listeners` sockets.
fn node(url: &str, listeners: usize) -> Strata {
    let dir = TempDir::new();
    let path = dir.path().join("unused.toml");
    let args = ["run".to_string(), "-c".to_string(), url.to_string()];
    Strata::spawn(dir, path, &args, listeners)
}

/// `[admin]` and one cache pool over `servers`, on ports 0. murmur: twemproxy's fnv1a_64 (the
/// default) can put every `tag:N` key on one server for some server names (twemproxy does the
/// same), and the servers' names here are their random ports.
fn ring(servers: &[&Redis]) -> String {
    let list: Vec<String> = servers
        .iter()
        .map(|r| format!("\"{}:1\"", r.addr))
        .collect();
    format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\n\n[[cache]]\nname = \"ring\"\nlisten = \"127.0.0.1:0\"\n\
         hash = \"murmur\"\nservers = [{}]\n",
        list.join(", ")
    )
}

async fn status(strata: &Strata) -> serde_json::Value {
    serde_json::from_str(&admin_get(strata, "/status").await.body).expect("status is JSON")
}

/// The revision a node runs and how many servers its ring has.
async fn running(strata: &Strata) -> (i64, usize) {
    let s = status(strata).await;
    (
        s["config"]["revision"].as_i64().unwrap_or(-1),
        s["cache"][0]["servers"].as_array().map_or(0, |a| a.len()),
    )
}

/// Sets `n` keys through `writer` and reads each back through every one of `readers`.
async fn agree(writer: SocketAddr, readers: &[SocketAddr], n: usize, tag: &str) {
    let mut w = Resp::connect(writer).await.unwrap();
    for i in 0..n {
        let key = format!("{tag}:{i}");
        assert_eq!(
            &w.cmd(&[b"SET", key.as_bytes(), key.as_bytes()]).await[..],
            b"+OK\r\n"
        );
    }
    for reader in readers {
        let mut r = Resp::connect(*reader).await.unwrap();
        for i in 0..n {
            let key = format!("{tag}:{i}");
            let got = r.cmd(&[b"GET", key.as_bytes()]).await;
            assert_eq!(
                &got[..],
                format!("${}\r\n{key}\r\n", key.len()).as_bytes(),
                "{key} written through {writer} is not where {reader} looks"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ring_change_written_once_reaches_three_nodes_that_agree_on_its_revision() {
    let redis = [
        Redis::start().await,
        Redis::start().await,
        Redis::start().await,
    ];
    let etcd = Etcd::start();
    let first = etcd.put(KEY, &ring(&[&redis[0], &redis[1]]));
    let url = etcd.url(KEY);
    let nodes: Vec<Strata> = (0..3).map(|_| node(&url, 2)).collect();
    let pools: Vec<SocketAddr> = nodes.iter().map(|n| n.addr("cache:ring")).collect();
    for n in &nodes {
        assert_eq!(running(n).await, (first, 2));
        assert_eq!(
            status(n).await["config"]["source"],
            url.as_str(),
            "/status names the source"
        );
    }
    agree(pools[0], &pools[1..], 200, "before").await;

    // one write; every node takes it
    let written = Instant::now();
    let second = etcd.put(KEY, &ring(&[&redis[0], &redis[1], &redis[2]]));
    assert!(second > first);
    let mut took = Vec::new();
    for n in &nodes {
        eventually(
            Duration::from_secs(10),
            "the node runs the new ring",
            || async { running(n).await == (second, 3) },
        )
        .await;
        took.push(written.elapsed());
        let m = admin_get(n, "/metrics").await.body;
        assert_eq!(
            metric(&m, "strata_config_revision", ""),
            Some(second as f64)
        );
    }
    eprintln!("the three nodes ran revision {second} after {took:?}");
    // the same ring on every node: a key written through one is found through the others,
    // and the third server took its share
    agree(pools[1], &[pools[0], pools[2]], 300, "after").await;
    let mut held = Vec::new();
    for r in &redis {
        let mut direct = Resp::connect(r.addr).await.unwrap();
        held.push(text(&direct.cmd(&[b"DBSIZE"]).await));
    }
    assert_ne!(
        held[2],
        ":0\r\n",
        "the new server holds none of the keys; DBSIZE of each: {held:?}; status: {}",
        status(&nodes[1]).await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_revision_is_refused_and_etcd_going_away_keeps_the_last_good_config() {
    let redis = [Redis::start().await, Redis::start().await];
    let mut etcd = Etcd::start();
    let good = etcd.put(KEY, &ring(&[&redis[0]]));
    let strata = node(&etcd.url(KEY), 2);
    let pool = strata.addr("cache:ring");
    assert_eq!(running(&strata).await, (good, 1));

    // not TOML, then TOML that is not a valid config: both refused, the ring stays
    let broken = etcd.put(KEY, "[[cache]\nname = ");
    eventually(
        Duration::from_secs(10),
        "the broken revision refused",
        || async { status(&strata).await["config"]["last_rejected"]["revision"] == broken },
    )
    .await;
    let wrong = etcd.put(KEY, &ring(&[&redis[0]]).replace("servers", "servres"));
    eventually(
        Duration::from_secs(10),
        "the wrong revision refused",
        || async { status(&strata).await["config"]["last_rejected"]["revision"] == wrong },
    )
    .await;
    let s = status(&strata).await;
    assert_eq!(s["config"]["revision"], good, "{s}");
    assert_eq!(s["config"]["rejected"], 2);
    assert!(
        s["config"]["last_rejected"]["why"]
            .as_str()
            .unwrap()
            .contains("`cache[0].servers`: required key is missing"),
        "{s}"
    );
    strata
        .wait_log(
            "config rejected; the old config keeps serving",
            Duration::from_secs(5),
        )
        .await;
    agree(pool, &[pool], 20, "still").await;

    // the key deleted: logged, and the running config stays
    etcd.delete(KEY);
    strata
        .wait_log("the config key was deleted", Duration::from_secs(10))
        .await;
    assert_eq!(running(&strata).await, (good, 1));
    agree(pool, &[pool], 10, "deleted").await;

    // etcd goes away: the node keeps serving what it runs
    etcd.kill();
    strata.wait_log("retrying", Duration::from_secs(10)).await;
    agree(pool, &[pool], 20, "without-etcd").await;
    assert_eq!(running(&strata).await, (good, 1));

    // back, and a new revision is applied
    etcd.restart();
    let later = etcd.put(KEY, &ring(&[&redis[0], &redis[1]]));
    eventually(
        Duration::from_secs(15),
        "the revision written after etcd came back",
        || async { running(&strata).await == (later, 2) },
    )
    .await;
    strata
        .wait_log("etcd answers again", Duration::from_secs(5))
        .await;
    agree(pool, &[pool], 50, "after-etcd").await;
}

/// A fleet's node may start before its config is written, or on a revision that does not start
/// here: it waits for one that does, logging why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_waits_for_a_revision_that_parses_and_starts_here() {
    let redis = Redis::start().await;
    let etcd = Etcd::start();
    let url = etcd.url(KEY);
    let starting = tokio::task::spawn_blocking(move || node(&url, 2));
    // the node reads the key (missing), then watches it
    eventually(
        Duration::from_secs(20),
        "the node watches the key",
        || async { etcd.watchers().await >= 1 },
    )
    .await;
    // in order: TOML that does not parse, a port this node can't bind, a config that starts
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy = taken.local_addr().unwrap().to_string();
    let on_busy = ring(&[&redis]).replace(
        "name = \"ring\"\nlisten = \"127.0.0.1:0\"",
        &format!("name = \"ring\"\nlisten = \"{busy}\""),
    );
    assert!(on_busy.contains(&busy));
    // (the bad TOML first: the node reads it on the watch it is waiting on; once a revision
    // parses, the node starts its runtime and reads the key afresh, seeing only the newest)
    etcd.put(KEY, "[[cache]\n");
    etcd.put(KEY, &on_busy);
    let good = etcd.put(KEY, &ring(&[&redis]));
    let strata = starting.await.unwrap();
    assert_eq!(running(&strata).await, (good, 1));
    let logs = strata.logs();
    for said in [
        "the config key does not exist yet",
        "trying again in 5s, or a newer revision",
        "waiting for a revision that is a valid config",
    ] {
        assert!(logs.contains(said), "the node never said {said:?}:\n{logs}");
    }
    let pool = strata.addr("cache:ring");
    agree(pool, &[pool], 10, "late").await;
}

/// A node whose first revision can't start here (its port is taken) tries the same revision
/// again, without a new one written, and starts once the port is free, as a running node
/// retries a revision it could not apply.
#[tokio::test]
async fn a_first_revision_that_can_not_start_yet_is_tried_again_until_it_does() {
    let redis = Redis::start().await;
    let etcd = Etcd::start();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy = taken.local_addr().unwrap();
    let on_busy = ring(&[&redis]).replace(
        "name = \"ring\"\nlisten = \"127.0.0.1:0\"",
        &format!("name = \"ring\"\nlisten = \"{busy}\""),
    );
    assert!(on_busy.contains(&busy.to_string()));
    let revision = etcd.put(KEY, &on_busy);
    // the node's log is copied to a file, to see its first try fail before the port is let go
    let dir = TempDir::new();
    let log = dir.path().join("strata.log");
    let mut command = std::process::Command::new("bash");
    command.args([
        "-c",
        &format!("exec \"$0\" \"$@\" 2> >(tee {} >&2)", log.display()),
        STRATA,
        "run",
        "-c",
        &etcd.url(KEY),
    ]);
    let path = dir.path().join("unused.toml");
    let starting =
        tokio::task::spawn_blocking(move || Strata::spawn_command(dir, path, command, 2));
    eventually(
        Duration::from_secs(20),
        "the node's first try fails",
        || async {
            std::fs::read_to_string(&log).is_ok_and(|l| l.contains("Address already in use"))
        },
    )
    .await;
    drop(taken);
    let strata = starting.await.unwrap();
    assert_eq!(running(&strata).await, (revision, 1));
    assert_eq!(strata.addr("cache:ring"), busy);
    let logs = strata.logs();
    assert!(
        logs.contains("trying again in 5s, or a newer revision") && logs.contains("trying again"),
        "{logs}"
    );
    agree(busy, &[busy], 10, "retried").await;
}

#[test]
fn an_etcd_url_written_wrong_is_refused_with_how_to_write_it() {
    let (code, _, err) = strata_cmd(&["run", "-c", "etcd://127.0.0.1:2379"]);
    assert_eq!(code, 64, "{err}");
    assert!(err.contains("etcd://HOST:PORT/KEY"), "{err}");
}
