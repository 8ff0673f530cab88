//! The TCP layer end to end.

use crate::common;

use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A TCP echo server that greets with its name.
async fn echo(name: &'static str) -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let _ = s.write_all(format!("{name}\n").as_bytes()).await;
                let mut buf = [0u8; 1024];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    (addr, task)
}

async fn greeting(addr: std::net::SocketAddr) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut buf = vec![0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .expect("greeting")
        .unwrap();
    String::from_utf8_lossy(&buf[..n]).trim().to_string()
}

#[tokio::test]
async fn relays_bytes_and_skips_a_dead_backend() {
    let (a, _ta) = echo("a").await;
    // a port with nothing behind it: connects are refused and retried elsewhere
    let dead = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let config = format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\n[[tcp]]\nname = \"echo\"\nlisten = \"127.0.0.1:0\"\nbackends = [\"{dead}\", \"{a}\"]\npassive = {{ failures = 0 }}\n"
    );
    let strata = Strata::start(&config);
    let addr = strata.addr("tcp:echo");
    for _ in 0..4 {
        assert_eq!(greeting(addr).await, "a");
    }
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut buf = [0u8; 2];
    s.read_exact(&mut buf).await.unwrap();
    s.write_all(b"ping").await.unwrap();
    let mut back = [0u8; 4];
    s.read_exact(&mut back).await.unwrap();
    assert_eq!(&back, b"ping");
    drop(s);
    let metrics = get_once(strata.addr("admin"), "/metrics").await.body;
    assert!(
        metric(&metrics, "strata_tcp_retries_total", "listener=\"echo\"").unwrap() >= 1.0,
        "{metrics}"
    );
    assert!(
        metric(
            &metrics,
            "strata_backend_failures_total",
            &format!("backend=\"{dead}\"")
        )
        .unwrap()
            >= 1.0
    );
}

#[tokio::test]
async fn connect_health_check_marks_a_stopped_backend_down() {
    let (a, ta) = echo("a").await;
    let (b, _tb) = echo("b").await;
    let config = format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\n[[tcp]]\nname = \"echo\"\nlisten = \"127.0.0.1:0\"\nbackends = [\"{a}\", \"{b}\"]\n\
         health = {{ interval = \"100ms\", fall = 1, rise = 1 }}\n"
    );
    let strata = Strata::start(&config);
    ta.abort();
    eventually(Duration::from_secs(5), "a down", || async {
        get_once(strata.addr("admin"), "/status")
            .await
            .body
            .contains("down after 1 failed checks: connect")
    })
    .await;
    for _ in 0..4 {
        assert_eq!(greeting(strata.addr("tcp:echo")).await, "b");
    }
}

#[tokio::test]
async fn idle_connections_are_closed() {
    let (a, _ta) = echo("a").await;
    let config = format!("[[tcp]]\nname = \"echo\"\nlisten = \"127.0.0.1:0\"\nbackends = [\"{a}\"]\nidle_timeout = \"300ms\"\n");
    let strata = Strata::start(&config);
    let mut s = TcpStream::connect(strata.addr("tcp:echo")).await.unwrap();
    let mut out = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    assert!(read.is_ok(), "idle connection was not closed");
    assert_eq!(String::from_utf8_lossy(&out), "a\n");
}

#[tokio::test]
async fn a_megabyte_each_way_and_a_half_close_go_through() {
    let (a, _ta) = echo("a").await;
    let config = format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\n[[tcp]]\nname = \"echo\"\nlisten = \"127.0.0.1:0\"\nbackends = [\"{a}\"]\n"
    );
    let strata = Strata::start(&config);
    let s = TcpStream::connect(strata.addr("tcp:echo")).await.unwrap();
    let (mut rd, mut wr) = s.into_split();
    let data: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
    let sent = data.clone();
    // write everything, then close our sending side only
    let writer = tokio::spawn(async move {
        wr.write_all(&sent).await.unwrap();
        wr.shutdown().await.unwrap();
        wr
    });
    let mut back = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), rd.read_to_end(&mut back))
        .await
        .expect("the backend's close reaches the client")
        .unwrap();
    let _wr = writer.await.unwrap();
    assert_eq!(&back[..2], b"a\n");
    assert!(
        back[2..] == data[..],
        "echoed {} bytes, sent {}",
        back.len() - 2,
        data.len()
    );
    eventually(Duration::from_secs(5), "byte counters", || async {
        let m = get_once(strata.addr("admin"), "/metrics").await.body;
        metric(&m, "strata_tcp_received_bytes_total", "listener=\"echo\"") == Some(1_000_000.0)
            && metric(&m, "strata_tcp_sent_bytes_total", "listener=\"echo\"") == Some(1_000_002.0)
    })
    .await;
}

#[tokio::test]
async fn sighup_sends_new_connections_to_the_new_backends_and_open_ones_carry_on() {
    let (a, _ta) = echo("a").await;
    let (b, _tb) = echo("b").await;
    let config = |backend: std::net::SocketAddr| {
        format!(
            "[admin]\nlisten = \"127.0.0.1:0\"\n[[tcp]]\nname = \"echo\"\nlisten = \"127.0.0.1:0\"\nbackends = [\"{backend}\"]\n"
        )
    };
    let strata = Strata::start(&config(a));
    let addr = strata.addr("tcp:echo");
    let mut open = TcpStream::connect(addr).await.unwrap();
    let mut hello = [0u8; 2];
    open.read_exact(&mut hello).await.unwrap();
    assert_eq!(&hello, b"a\n");

    strata.reload_to(&config(b)).await;
    for _ in 0..4 {
        assert_eq!(greeting(addr).await, "b");
    }
    let status = admin_get(&strata, "/status").await.body;
    assert!(status.contains(&b.to_string()), "{status}");
    assert!(!status.contains(&a.to_string()), "{status}");

    // the connection opened before the reload still reaches a, both ways
    echoes(&mut open, b"still there?").await;
}

/// Writes `bytes` on a relayed connection and reads them back from the echo backend.
async fn echoes(open: &mut TcpStream, bytes: &[u8]) {
    open.write_all(bytes).await.unwrap();
    let mut back = vec![0u8; bytes.len()];
    tokio::time::timeout(Duration::from_secs(5), open.read_exact(&mut back))
        .await
        .expect("an answer on the old connection")
        .unwrap();
    assert_eq!(back, bytes);
}

/// A connection through `addr` that the backend has greeted: relayed, so it holds a slot.
async fn greeted(addr: std::net::SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut hello = [0u8; 2];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut hello))
        .await
        .expect("greeting")
        .unwrap();
    s
}

/// Whether the backend's greeting comes through on `s` within `wait`.
async fn greets_within(s: &mut TcpStream, wait: Duration) -> bool {
    let mut hello = [0u8; 2];
    matches!(
        tokio::time::timeout(wait, s.read_exact(&mut hello)).await,
        Ok(Ok(_))
    )
}

#[tokio::test]
async fn max_connections_holds_across_reloads_and_follows_a_changed_number() {
    let (a, _ta) = echo("a").await;
    let config = |max: u32| {
        format!(
            "[admin]\nlisten = \"127.0.0.1:0\"\n[[tcp]]\nname = \"echo\"\nlisten = \"127.0.0.1:0\"\nbackends = [\"{a}\"]\nmax_connections = {max}\n"
        )
    };
    let strata = Strata::start(&config(2));
    let addr = strata.addr("tcp:echo");
    let reload = |max: u32| {
        let (strata, text) = (&strata, config(max));
        async move { strata.reload_to(&text).await }
    };
    let first = greeted(addr).await;
    let second = greeted(addr).await;
    // the same limit again, twice: a reload must not open a second count beside the first
    reload(2).await;
    reload(2).await;
    let mut third = TcpStream::connect(addr).await.unwrap();
    // a short wait to show that something does not happen: not relayed while both slots are held
    assert!(
        !greets_within(&mut third, Duration::from_millis(300)).await,
        "a third connection relayed with max_connections = 2 after two reloads"
    );
    // raised: the one waiting gets the new place
    reload(3).await;
    assert!(greets_within(&mut third, Duration::from_secs(5)).await);
    // lowered below what is open: no new connection until the open ones are down to it
    reload(1).await;
    drop(first);
    let mut fourth = TcpStream::connect(addr).await.unwrap();
    assert!(
        !greets_within(&mut fourth, Duration::from_millis(300)).await,
        "relayed with two open and max_connections = 1"
    );
    drop(second);
    drop(third);
    assert!(greets_within(&mut fourth, Duration::from_secs(5)).await);
}

/// A listener renamed in place: the new one takes the old one's socket over (binding the
/// address again would fail while the old one holds it), and what the old one had open goes on.
#[tokio::test]
async fn a_listener_renamed_in_place_or_given_to_another_layer_reloads_without_a_restart() {
    let (a, _ta) = echo("a").await;
    let port = free_ports(1)[0];
    let config = |name: &str| {
        format!(
            "drain_timeout = \"20s\"\n[admin]\nlisten = \"127.0.0.1:0\"\n[[tcp]]\nname = \"{name}\"\nlisten = \"127.0.0.1:{port}\"\nbackends = [\"{a}\"]\n"
        )
    };
    let strata = Strata::start(&config("old"));
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    let mut open = greeted(addr).await;
    strata.reload_to(&config("new")).await;
    let status = admin_status(&strata).await;
    assert_eq!(status["tcp"].as_array().map(Vec::len), Some(1), "{status}");
    assert_eq!(status["tcp"][0]["name"], "new", "{status}");
    // new connections are the new listener's, on the same address
    assert_eq!(greeting(addr).await, "a");
    let metrics = admin_get(&strata, "/metrics").await.body;
    let served = metric(&metrics, "strata_tcp_connections_total", "listener=\"new\"");
    assert_eq!(served, Some(1.0), "{metrics}");
    // the connection the old one took still relays
    echoes(&mut open, b"still?").await;
    // the address handed to another layer: an [[http]] listener takes the socket over
    let web = Backend::start("web").await;
    let http = config("web")
        .replace("[[tcp]]", "[[http]]")
        .replace(&a.to_string(), &web.addr.to_string());
    strata.reload_to(&http).await;
    assert_eq!(get_once(addr, "/").await.body, "backend web");
}

#[tokio::test]
async fn a_listener_moved_by_a_reload_keeps_its_state_and_open_connections() {
    let (a, _ta) = echo("a").await;
    let ports = free_ports(2);
    let config = |port: u16| {
        format!(
            "drain_timeout = \"20s\"\n[admin]\nlisten = \"127.0.0.1:0\"\n[[tcp]]\nname = \"echo\"\nlisten = \"127.0.0.1:{port}\"\nbackends = [\"{a}\"]\n"
        )
    };
    let mut strata = Strata::start(&config(ports[0]));
    let old: std::net::SocketAddr = ([127, 0, 0, 1], ports[0]).into();
    let new: std::net::SocketAddr = ([127, 0, 0, 1], ports[1]).into();
    let mut open = greeted(old).await;
    assert_eq!(greeting(old).await, "a");
    strata.reload_to(&config(ports[1])).await;
    assert_eq!(greeting(new).await, "a");
    // the old address is no longer served
    eventually(Duration::from_secs(5), "the old address closes", || async {
        TcpStream::connect(old).await.is_err()
    })
    .await;
    // the connection opened before the move still relays, both ways
    echoes(&mut open, b"still?").await;
    // one listener, its counters carried on: three connections, one of them still open
    let metrics = admin_get(&strata, "/metrics").await.body;
    let connections = metric(
        &metrics,
        "strata_tcp_connections_total",
        "listener=\"echo\"",
    );
    assert_eq!(connections, Some(3.0), "{metrics}");
    let status: serde_json::Value =
        serde_json::from_str(&admin_get(&strata, "/status").await.body).unwrap();
    assert_eq!(status["tcp"].as_array().map(Vec::len), Some(1), "{status}");
    assert_eq!(status["tcp"][0]["listen"], new.to_string(), "{status}");
    // a stop waits for the connection of the old address as for any other (drain_timeout)
    strata.signal(libc::SIGTERM);
    // a short wait to show that something does not happen: no exit while the connection is open
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        strata.child.try_wait().unwrap().is_none(),
        "exited with a connection open"
    );
    open.write_all(b"bye").await.unwrap();
    let mut back = [0u8; 3];
    open.read_exact(&mut back).await.unwrap();
    drop(open);
    let status = common::blocking(move || strata.wait_exit(Duration::from_secs(10))).await;
    assert!(status.success(), "{status:?}");
}

#[tokio::test]
async fn status_shows_a_draining_listener_and_a_second_sigterm_stops_at_once() {
    let (a, _ta) = echo("a").await;
    let mut strata = Strata::start(&format!(
        "drain_timeout = \"60s\"\n[admin]\nlisten = \"127.0.0.1:0\"\n[[tcp]]\nname = \"echo\"\nlisten = \"127.0.0.1:0\"\nbackends = [\"{a}\"]\n"
    ));
    let _open = greeted(strata.addr("tcp:echo")).await;
    strata.signal(libc::SIGTERM);
    strata.wait_log("draining", Duration::from_secs(5)).await;
    // while it drains, /status still shows the listener and the connection it waits for
    let status: serde_json::Value =
        serde_json::from_str(&admin_get(&strata, "/status").await.body).unwrap();
    assert_eq!(status["tcp"][0]["name"], "echo", "{status}");
    assert_eq!(status["tcp"][0]["open_connections"], 1, "{status}");
    strata.signal(libc::SIGTERM);
    let status = common::blocking(move || strata.wait_exit(Duration::from_secs(10))).await;
    assert!(status.success(), "{status:?}");
}

/// The node's main thread (where a one-worker runtime runs): voluntary context switches (each
/// a sleep), and CPU ticks used so far.
fn sleeps_and_ticks(strata: &Strata) -> (u64, u64) {
    let pid = strata.child.id();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let sleeps = status
        .lines()
        .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap();
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // the fields after the command's closing parenthesis: utime and stime are the 12th and 13th
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    let ticks = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    (sleeps, ticks)
}

#[tokio::test]
async fn a_busy_polling_node_does_not_sleep_between_requests_and_sleeps_when_idle() {
    let (a, _ta) = echo("a").await;
    let config = format!(
        "workers = 1\nbusy_poll = \"10ms\"\n[[tcp]]\nname = \"echo\"\nlisten = \"127.0.0.1:0\"\nbackends = [\"{a}\"]\n"
    );
    let strata = Strata::start(&config);
    let mut s = greeted(strata.addr("tcp:echo")).await;
    let (before, _) = sleeps_and_ticks(&strata);
    for i in 0..200u32 {
        echoes(&mut s, &i.to_be_bytes()).await;
    }
    let (after, ticks) = sleeps_and_ticks(&strata);
    // a node that sleeps whenever it has nothing to do sleeps at least once per round trip
    // (waiting for the backend, then for the client); this one kept polling (a loaded machine
    // can still hold the test's own threads past the window now and then)
    assert!(
        after - before < 100,
        "{} sleeps in 200 round trips",
        after - before
    );
    // and once the window has passed with nothing to do, it sleeps: over half a second idle
    // it uses well under half a second of CPU (at 100 ticks a second)
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, idle) = sleeps_and_ticks(&strata);
    assert!(
        idle - ticks < 25,
        "{} CPU ticks in 0.5 s idle",
        idle - ticks
    );
}
