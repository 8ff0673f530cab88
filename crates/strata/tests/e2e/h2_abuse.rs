//! HTTP/2 abuse, each from a raw client (Python's h2 and hand-written frames, in target/py):
//! the abusive connection is limited or closed, another client's requests carry on meanwhile,
//! and the proxy's memory stays bounded.

use crate::common;

use std::time::Duration;

use common::*;
use tokio::net::TcpStream;

/// Resident memory of process `pid`, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap()
}

struct Outcome {
    /// Strata's /metrics after the abuse.
    metrics: String,
    /// The abuser's line: what happened to its connection.
    line: String,
    /// Requests another client made meanwhile, and how many got 200.
    others: (u32, u32),
    /// Strata's resident memory growth during the abuse, KiB.
    grew_kib: u64,
}

/// Runs SCENARIO against a listener in front of one backend while another HTTP/2 client keeps
/// sending requests.
async fn abuse(scenario: &str, extra: &str) -> Outcome {
    let a = Backend::start("a").await;
    let strata = Strata::start(&format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\n\n[[http]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\nbackends = [\"{}\"]\n{extra}\n",
        a.addr
    ));
    let addr = strata.addr("http:web");
    // warm up, so that what grows is the abuse's
    let mut other = h2_handshake(TcpStream::connect(addr).await.unwrap()).await;
    for _ in 0..20 {
        assert_eq!(h2_send(&mut other, h2_get("http://x/")).await.status, 200);
    }
    let before = rss_kib(strata.child.id());
    let abuser = python_client(
        "h2_abuse.py",
        &[
            &addr.ip().to_string(),
            &addr.port().to_string(),
            scenario,
            "4",
        ],
    )
    .output();
    let others = async {
        let (mut sent, mut ok) = (0, 0);
        let stop = tokio::time::Instant::now() + Duration::from_secs(3);
        while tokio::time::Instant::now() < stop {
            sent += 1;
            let reply = tokio::time::timeout(Duration::from_secs(2), async {
                h2_send(&mut other, h2_get("http://x/")).await
            })
            .await;
            if matches!(reply, Ok(r) if r.status == 200) {
                ok += 1;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        (sent, ok)
    };
    let (out, others) = tokio::join!(abuser, others);
    let out = out.unwrap();
    let line = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        out.status.success(),
        "{scenario}: {line}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let after = rss_kib(strata.child.id());
    let metrics = admin_get(&strata, "/metrics").await.body;
    eprintln!("{scenario}: {line}; others {others:?}; rss {before} -> {after} KiB");
    Outcome {
        metrics,
        line,
        others,
        grew_kib: after.saturating_sub(before),
    }
}

/// What every scenario must leave: the other client's requests all answered, and Strata's
/// memory grown by less than `kib`.
fn others_carried_on(o: &Outcome, kib: u64) {
    assert!(
        o.others.0 >= 20,
        "too few requests from the other client: {:?}",
        o.others
    );
    assert_eq!(
        o.others.0, o.others.1,
        "the other client's requests failed: {}",
        o.line
    );
    assert!(
        o.grew_kib < kib,
        "memory grew {} KiB: {}",
        o.grew_kib,
        o.line
    );
}

/// CVE-2023-44487: streams opened and cancelled at once, as fast as the client can. The
/// connection is closed with GOAWAY ENHANCE_YOUR_CALM (11) after a few hundred.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rapid_reset_closes_the_connection() {
    let o = abuse("rapid_reset", "").await;
    assert!(o.line.starts_with("goaway 11"), "{}", o.line);
    let streams: u32 = o.line.rsplit('=').next().unwrap().parse().unwrap();
    assert!(streams < 10_000, "{}", o.line);
    others_carried_on(&o, 16 << 10);
}

/// A header block that never ends: CONTINUATION frames without END_HEADERS. The connection is
/// closed once the block passes max_header_size, not when memory runs out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_continuation_flood_closes_the_connection() {
    let o = abuse("continuation", "").await;
    assert!(o.line.starts_with("goaway"), "{}", o.line);
    others_carried_on(&o, 8 << 10);
}

/// SETTINGS and PING floods from a client that never reads the acknowledgements: the
/// connection stops being read once its answers back up (TCP pushes back on the flooder), and
/// nothing piles up in Strata.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_and_ping_floods_are_pushed_back() {
    for scenario in ["settings_flood", "ping_flood"] {
        let o = abuse(scenario, "").await;
        assert!(
            o.line.contains("limited=True") || !o.line.starts_with("open"),
            "{scenario}: {}",
            o.line
        );
        others_carried_on(&o, 8 << 10);
    }
}

/// A client that shuts its flow-control window while large answers wait: after idle_timeout
/// with nothing taken, the connection is closed (and counted), and its backend streams go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zero_window_client_is_closed_after_idle_timeout() {
    let o = abuse("zero_window", "idle_timeout = \"1s\"").await;
    assert!(o.line.starts_with("closed"), "{}", o.line);
    assert_eq!(
        metric(&o.metrics, "strata_http2_stalled_connections_total", "web"),
        Some(1.0)
    );
    others_carried_on(&o, 32 << 10);
}

/// 1,000 streams at once where 256 are allowed (SETTINGS_MAX_CONCURRENT_STREAMS): the excess
/// is refused with RST_STREAM REFUSED_STREAM, and the connection carries on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_over_the_limit_are_refused() {
    let o = abuse("too_many_streams", "").await;
    assert!(o.line.starts_with("open"), "{}", o.line);
    let refused: u32 = o
        .line
        .split(' ')
        .find_map(|w| w.strip_prefix("refused="))
        .unwrap()
        .parse()
        .unwrap();
    assert!(refused >= 1000 - 256, "{}", o.line);
    others_carried_on(&o, 32 << 10);
}

/// A header block over max_header_size gets 431 and the connection carries on; so does an
/// HPACK bomb (one large header referenced thousands of times: 4 KB each once decoded, 1 byte
/// on the wire), which is walked to keep the table in step but never decoded whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_header_blocks_and_hpack_bombs_get_431() {
    let o = abuse("big_headers", "").await;
    assert!(
        o.line.starts_with("open statuses=[(1, '431'), (3, '200')]"),
        "{}",
        o.line
    );
    others_carried_on(&o, 8 << 10);
    let o = abuse("hpack_bomb", "").await;
    assert!(
        o.line.starts_with("open resets={} status=431"),
        "{}",
        o.line
    );
    others_carried_on(&o, 8 << 10);
}
