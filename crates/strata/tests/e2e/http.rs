//! The HTTP layer end to end: the real binary in front of backends started here.

use crate::common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::Request;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn config(backends: &[&Backend], extra: &str) -> String {
    let list: Vec<String> = backends.iter().map(|b| format!("\"{}\"", b.addr)).collect();
    format!(
        "drain_timeout = \"5s\"\n[admin]\nlisten = \"127.0.0.1:0\"\n\n[[http]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\nbackends = [{}]\n{extra}\n",
        list.join(", ")
    )
}

#[tokio::test]
async fn balances_round_robin_and_rewrites_headers() {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let strata = Strata::start(&config(&[&a, &b], ""));
    let mut client = Client::connect(strata.addr("http:web")).await;
    let mut seen = Vec::new();
    for _ in 0..4 {
        seen.push(client.get("/").await.unwrap().body);
    }
    assert_eq!(seen, ["backend a", "backend b", "backend a", "backend b"]);

    let req = Request::get("/headers")
        .header("host", "shop.example")
        .header("connection", "keep-alive, x-private")
        .header("x-private", "secret")
        .header("x-forwarded-for", "203.0.113.7")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let reply = client.request(req).await.unwrap();
    assert_eq!(reply.headers["via"], "1.1 strata");
    let seen = reply.body;
    assert!(seen.contains("host: shop.example"), "{seen}");
    assert!(
        seen.contains("x-forwarded-for: 203.0.113.7, 127.0.0.1"),
        "{seen}"
    );
    assert!(seen.contains("x-forwarded-proto: http"), "{seen}");
    assert!(seen.contains("x-forwarded-host: shop.example"), "{seen}");
    assert!(seen.contains("via: 1.1 strata"), "{seen}");
    assert!(
        !seen.contains("x-private"),
        "hop-by-hop header named in Connection leaked: {seen}"
    );
}

#[tokio::test]
async fn a_backend_killed_under_load_costs_no_failed_get() {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let strata = Strata::start(&config(&[&a, &b], "retries = 2\n"));
    let addr = strata.addr("http:web");
    let ok = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for _ in 0..8 {
        let ok = ok.clone();
        workers.push(tokio::spawn(async move {
            let mut client = Client::connect(addr).await;
            let mut failures = Vec::new();
            for _ in 0..300 {
                match client.get("/").await {
                    Ok(r) if r.status == 200 => {
                        ok.fetch_add(1, Ordering::SeqCst);
                    }
                    Ok(r) => failures.push(format!("{} {}", r.status, r.body)),
                    Err(e) => failures.push(e.to_string()),
                }
            }
            failures
        }));
    }
    // kill `a` once traffic is flowing
    eventually(Duration::from_secs(10), "traffic", || {
        let ok = ok.clone();
        async move { ok.load(Ordering::SeqCst) > 200 }
    })
    .await;
    a.kill();
    let mut failures = Vec::new();
    for w in workers {
        failures.extend(w.await.unwrap());
    }
    assert!(
        failures.is_empty(),
        "{} failed GETs, e.g. {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert_eq!(ok.load(Ordering::SeqCst), 2400);
    assert!(b.hits.load(Ordering::SeqCst) > 1200);
}

#[tokio::test]
async fn health_checks_take_a_backend_down_and_bring_it_back() {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let extra = "health = { path = \"/healthz\", interval = \"100ms\", timeout = \"500ms\", rise = 2, fall = 2 }\npassive = { failures = 0 }\n";
    let strata = Strata::start(&config(&[&a, &b], extra));
    let web = strata.addr("http:web");
    a.healthy.store(false, Ordering::SeqCst);
    eventually(
        Duration::from_secs(5),
        "a reported down in /status",
        || async {
            admin_get(&strata, "/status")
                .await
                .body
                .contains("down after 2 failed checks: HTTP 503")
        },
    )
    .await;
    let metrics = admin_get(&strata, "/metrics").await.body;
    let a_up = format!("backend=\"{}\"", a.addr);
    assert_eq!(
        metric(&metrics, "strata_backend_up", &a_up),
        Some(0.0),
        "{metrics}"
    );
    let mut client = Client::connect(web).await;
    for _ in 0..6 {
        assert_eq!(client.get("/").await.unwrap().body, "backend b");
    }
    a.healthy.store(true, Ordering::SeqCst);
    eventually(Duration::from_secs(5), "a back up", || async {
        admin_get(&strata, "/status")
            .await
            .body
            .contains("up after 2 passed checks")
    })
    .await;
    let mut bodies = Vec::new();
    for _ in 0..40 {
        bodies.push(client.get("/").await.unwrap().body);
    }
    assert!(
        bodies.iter().any(|b| b == "backend a"),
        "a never came back: {bodies:?}"
    );
}

#[tokio::test]
async fn no_healthy_backend_is_a_clear_503() {
    let a = Backend::start("a").await;
    let strata = Strata::start(&config(
        &[&a],
        "health = { path = \"/healthz\", interval = \"100ms\", fall = 1 }\n",
    ));
    a.healthy.store(false, Ordering::SeqCst);
    eventually(Duration::from_secs(5), "503", || async {
        get_once(strata.addr("http:web"), "/").await.status == 503
    })
    .await;
    let reply = get_once(strata.addr("http:web"), "/").await;
    assert_eq!(
        reply.body,
        "strata: no healthy backend for listener \"web\"\n"
    );
    let metrics = admin_get(&strata, "/metrics").await.body;
    assert!(metric(&metrics, "strata_http_no_backend_total", "listener=\"web\"").unwrap() >= 1.0);
}

#[tokio::test]
async fn passive_checks_eject_a_failing_backend() {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let strata = Strata::start(&config(
        &[&a, &b],
        "passive = { failures = 3, base_ejection = \"30s\" }\n",
    ));
    let mut client = Client::connect(strata.addr("http:web")).await;
    let mut statuses = Vec::new();
    for _ in 0..12 {
        statuses.push(client.get("/status/500").await.unwrap().status);
    }
    let status = admin_get(&strata, "/status").await.body;
    assert!(status.contains("\"state\": \"ejected\""), "{status}");
    assert!(
        status.contains("after 3 failures in a row, the last: HTTP 500"),
        "{status}"
    );
    // max_ejected_percent (50) keeps the other backend in service even though it fails too
    assert!(status.contains("\"available\": 1"), "{status}");
}

#[tokio::test]
async fn drain_and_restore_through_the_admin_api() {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let strata = Strata::start(&config(&[&a, &b], "slow_start = \"0s\"\n"));
    let mut client = Client::connect(strata.addr("http:web")).await;
    // a request in flight on `a` when it is drained still completes
    let slow = {
        let addr = strata.addr("http:web");
        tokio::spawn(async move {
            let mut c = Client::connect(addr).await;
            c.get("/").await.unwrap(); // lands on a
            c.get("/slow/500").await.unwrap() // lands on b... or a; either must finish
        })
    };
    let reply = admin_post(&strata, &format!("/backends/http/web/{}/drain", a.addr)).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(
        reply.body.contains("\"state\": \"draining\""),
        "{}",
        reply.body
    );
    for _ in 0..6 {
        assert_eq!(client.get("/").await.unwrap().body, "backend b");
    }
    assert_eq!(slow.await.unwrap().status, 200);
    let reply = admin_post(&strata, &format!("/backends/http/web/{}/restore", a.addr)).await;
    assert!(reply.body.contains("\"state\": \"up\""), "{}", reply.body);
    let bodies: Vec<String> = {
        let mut v = Vec::new();
        for _ in 0..4 {
            v.push(client.get("/").await.unwrap().body);
        }
        v
    };
    assert!(bodies.contains(&"backend a".to_string()), "{bodies:?}");
    let reply = admin_post(&strata, "/backends/http/web/10.9.9.9:1/drain").await;
    assert_eq!(reply.status, 404);
    assert!(
        reply.body.contains("no backend \\\"10.9.9.9:1\\\" here"),
        "{}",
        reply.body
    );
}

#[tokio::test]
async fn a_reload_that_changes_a_weight_keeps_the_backend_drained() {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let strata = Strata::start(&config(&[&a, &b], ""));
    let reply = admin_post(&strata, &format!("/backends/http/web/{}/drain", a.addr)).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let weighted = config(&[&a, &b], "").replace(
        &format!("\"{}\"", a.addr),
        &format!("\"{} weight=5\"", a.addr),
    );
    assert!(weighted.contains("weight=5"), "{weighted}");
    std::fs::write(&strata.config, weighted).unwrap();
    strata.signal(libc::SIGHUP);
    strata
        .wait_log("SIGHUP: reloaded", Duration::from_secs(5))
        .await;
    let status: serde_json::Value =
        serde_json::from_str(&admin_get(&strata, "/status").await.body).unwrap();
    let backend = &status["http"][0]["backends"][0];
    assert_eq!(backend["address"], a.addr.to_string(), "{status}");
    assert_eq!(backend["weight"], 5, "{status}");
    assert_eq!(backend["state"], "draining", "{status}");
    let mut client = Client::connect(strata.addr("http:web")).await;
    for _ in 0..4 {
        assert_eq!(client.get("/").await.unwrap().body, "backend b");
    }
}

#[tokio::test]
async fn a_slow_client_gets_408_and_others_are_unaffected() {
    let a = Backend::start("a").await;
    let strata = Strata::start(&config(&[&a], "header_timeout = \"300ms\"\n"));
    let addr = strata.addr("http:web");
    let mut slow = TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap(); // never finishes the head
                   // meanwhile a normal client is served
    assert_eq!(get_once(addr, "/").await.body, "backend a");
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), slow.read_to_end(&mut out))
        .await
        .expect("closed")
        .unwrap();
    let out = String::from_utf8_lossy(&out);
    assert!(
        out.starts_with("HTTP/1.1 408 Request Timeout\r\n"),
        "{out:?}"
    );
    assert_eq!(get_once(addr, "/").await.body, "backend a");
    // an idle keep-alive connection is closed without a 408
    let mut idle = TcpStream::connect(addr).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), idle.read_to_end(&mut out))
        .await
        .expect("closed")
        .unwrap();
    assert!(out.is_empty(), "{:?}", String::from_utf8_lossy(&out));
}

#[tokio::test]
async fn a_backend_slower_than_response_timeout_is_a_504_and_the_connection_carries_on() {
    let a = Backend::start("a").await;
    let strata = Strata::start(&config(
        &[&a],
        "response_timeout = \"300ms\"\nretries = 0\n",
    ));
    let mut client = Client::connect(strata.addr("http:web")).await;
    assert_eq!(client.get("/").await.unwrap().body, "backend a");
    let reply = client.get("/slow/3000").await.unwrap();
    assert_eq!(reply.status, 504, "{}", reply.body);
    assert!(
        reply.body.contains("did not answer in time"),
        "{}",
        reply.body
    );
    // the client's keep-alive connection still serves
    assert_eq!(client.get("/").await.unwrap().body, "backend a");
}

#[tokio::test]
async fn a_backend_slower_than_header_timeout_is_not_cut_off() {
    // the head's limit and the backend's share one timer: a long wait for the backend must not
    // trip the (shorter) limit on the client's head, before or after
    let a = Backend::start("a").await;
    let strata = Strata::start(&config(&[&a], "header_timeout = \"300ms\"\n"));
    let mut client = Client::connect(strata.addr("http:web")).await;
    for _ in 0..2 {
        let reply = client.get("/slow/700").await.unwrap();
        assert_eq!((reply.status, reply.body.as_str()), (200, "backend a"));
    }
}

#[tokio::test]
async fn limits_answer_413_and_431() {
    let a = Backend::start("a").await;
    let strata = Strata::start(&config(
        &[&a],
        "max_body_size = \"1KiB\"\nmax_header_size = \"8KiB\"\n",
    ));
    let mut client = Client::connect(strata.addr("http:web")).await;
    let big = Request::post("/echo")
        .header("host", "x")
        .body(Full::new(Bytes::from(vec![b'x'; 4096])))
        .unwrap();
    let reply = client.request(big).await.unwrap();
    assert_eq!(reply.status, 413);
    assert_eq!(
        reply.headers["connection"], "close",
        "the unread body ends the connection, as in nginx"
    );
    let mut client = Client::connect(strata.addr("http:web")).await;
    let small = Request::post("/echo")
        .header("host", "x")
        .body(Full::new(Bytes::from_static(b"hello")))
        .unwrap();
    assert_eq!(client.request(small).await.unwrap().body, "hello");
    let huge = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "y".repeat(16 * 1024)
    );
    let out = raw_exchange(
        strata.addr("http:web"),
        huge.as_bytes(),
        Duration::from_secs(5),
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 431"), "{out:?}");
}

#[tokio::test]
async fn sighup_under_load_drops_nothing_and_a_bad_file_is_rejected() {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let strata = Strata::start(&config(&[&a], ""));
    let addr = strata.addr("http:web");
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut workers = Vec::new();
    for _ in 0..4 {
        let stop = stop.clone();
        workers.push(tokio::spawn(async move {
            let mut client = Client::connect(addr).await;
            let (mut ok, mut bad) = (0u32, Vec::new());
            while !stop.load(Ordering::SeqCst) {
                match client.get("/").await {
                    Ok(r) if r.status == 200 => ok += 1,
                    Ok(r) => bad.push(format!("{} {}", r.status, r.body)),
                    Err(e) => bad.push(e.to_string()),
                }
            }
            (ok, bad)
        }));
    }
    eventually(Duration::from_secs(5), "load under way on a", || {
        let hits = a.hits.clone();
        async move { hits.load(Ordering::SeqCst) > 50 }
    })
    .await;
    // swap the backend list: a -> b
    std::fs::write(&strata.config, config(&[&b], "")).unwrap();
    strata.signal(libc::SIGHUP);
    strata
        .wait_log("SIGHUP: reloaded", Duration::from_secs(5))
        .await;
    eventually(Duration::from_secs(5), "traffic on b", || {
        let hits = b.hits.clone();
        async move { hits.load(Ordering::SeqCst) > 50 }
    })
    .await;
    // a broken file leaves the running config alone
    std::fs::write(&strata.config, "[[http]]\nname = \"web\"\nlisten = 5\n").unwrap();
    strata.signal(libc::SIGHUP);
    strata
        .wait_log(
            "SIGHUP: config rejected; the old config keeps serving",
            Duration::from_secs(5),
        )
        .await;
    assert!(
        strata
            .logs()
            .contains("`http[0].listen`: expected a string, found integer"),
        "{}",
        strata.logs()
    );
    let before = b.hits.load(Ordering::SeqCst);
    eventually(Duration::from_secs(5), "b still serving", || {
        let hits = b.hits.clone();
        async move { hits.load(Ordering::SeqCst) > before + 50 }
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    let mut total = 0;
    for w in workers {
        let (ok, bad) = w.await.unwrap();
        assert!(bad.is_empty(), "requests failed across the reload: {bad:?}");
        total += ok;
    }
    assert!(total > 100, "only {total} requests");
    assert!(
        b.hits.load(Ordering::SeqCst) > before,
        "b stopped serving after the rejected reload"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_lets_in_flight_requests_finish_then_exits_0() {
    let a = Backend::start("a").await;
    let mut strata = Strata::start(&config(&[&a], ""));
    let addr = strata.addr("http:web");
    let slow = tokio::spawn(async move { get_once(addr, "/slow/700").await });
    eventually(
        Duration::from_secs(5),
        "request reached the backend",
        || {
            let hits = a.hits.clone();
            async move { hits.load(Ordering::SeqCst) == 1 }
        },
    )
    .await;
    strata.signal(libc::SIGTERM);
    let reply = slow.await.unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, "backend a");
    let status = tokio::task::block_in_place(|| strata.wait_exit(Duration::from_secs(10)));
    assert_eq!(status.code(), Some(0));
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "still accepting after SIGTERM"
    );
}

#[tokio::test]
async fn websocket_upgrade_is_relayed() {
    let a = Backend::start("a").await;
    let strata = Strata::start(&config(&[&a], ""));
    let mut s = TcpStream::connect(strata.addr("http:web")).await.unwrap();
    s.write_all(
        b"GET /chat HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
          Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    )
    .await
    .unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        s.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("upgrade: websocket"), "{head}");
    // a masked text frame "hello", as a browser sends it; the backend echoes bytes back
    let frame = [
        0x81,
        0x85,
        1,
        2,
        3,
        4,
        b'h' ^ 1,
        b'e' ^ 2,
        b'l' ^ 3,
        b'l' ^ 4,
        b'o' ^ 1,
    ];
    for _ in 0..3 {
        s.write_all(&frame).await.unwrap();
        let mut back = [0u8; 11];
        s.read_exact(&mut back).await.unwrap();
        assert_eq!(back, frame);
    }
}

#[tokio::test]
async fn cookie_hash_keeps_a_user_on_one_backend() {
    let backends = [
        Backend::start("a").await,
        Backend::start("b").await,
        Backend::start("c").await,
    ];
    let refs: Vec<&Backend> = backends.iter().collect();
    let strata = Strata::start(&config(
        &refs,
        "balance = \"hash\"\nhash_key = \"cookie:sid\"\n",
    ));
    let mut client = Client::connect(strata.addr("http:web")).await;
    let mut homes = std::collections::HashSet::new();
    for user in 0..30 {
        let mut first = None;
        for _ in 0..3 {
            let req = Request::get("/")
                .header("host", "x")
                .header("cookie", format!("theme=dark; sid=user-{user}"))
                .body(Full::new(Bytes::new()))
                .unwrap();
            let body = client.request(req).await.unwrap().body;
            assert_eq!(
                first.get_or_insert(body.clone()),
                &body,
                "user-{user} moved"
            );
        }
        homes.insert(first.unwrap());
    }
    assert_eq!(homes.len(), 3, "30 users all hashed onto {homes:?}");
}

#[tokio::test]
async fn max_connections_holds_further_clients_until_a_slot_frees() {
    let a = Backend::start("a").await;
    let strata = Strata::start(&config(&[&a], "max_connections = 2\n"));
    let addr = strata.addr("http:web");
    let mut first = Client::connect(addr).await;
    let second = Client::connect(addr).await;
    assert_eq!(first.get("/").await.unwrap().body, "backend a");
    // the third connection is accepted by the kernel but not served while two are open
    let third = tokio::spawn(async move { get_once(addr, "/").await });
    // a wait is the only way to see that something does not happen
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !third.is_finished(),
        "a third client was served past max_connections = 2"
    );
    drop(second);
    let reply = tokio::time::timeout(Duration::from_secs(5), third)
        .await
        .expect("served once a slot freed")
        .unwrap();
    assert_eq!(reply.body, "backend a");
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_closes_idle_keep_alive_connections_at_once() {
    let a = Backend::start("a").await;
    // neither limit would end the idle connection for a long while: only the drain can
    let mut strata = Strata::start(&config(
        &[&a],
        "header_timeout = \"60s\"\nidle_timeout = \"60s\"\n",
    ));
    let mut idle = TcpStream::connect(strata.addr("http:web")).await.unwrap();
    idle.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    let mut answer = vec![0u8; 4096];
    let n = idle.read(&mut answer).await.unwrap();
    assert!(
        answer[..n].ends_with(b"backend a"),
        "{:?}",
        String::from_utf8_lossy(&answer[..n])
    );
    strata.signal(libc::SIGTERM);
    let closed = tokio::time::timeout(Duration::from_secs(5), idle.read(&mut answer))
        .await
        .expect("the idle connection is closed by the drain, not by a 60 s limit");
    assert_eq!(closed.unwrap_or(0), 0, "nothing more is sent");
    let status = tokio::task::block_in_place(|| strata.wait_exit(Duration::from_secs(10)));
    assert_eq!(status.code(), Some(0));
}

/// A client that asks for a large response and never reads it is closed once it has taken
/// nothing for `idle_timeout` (nginx's `send_timeout`): it held its place, the backend
/// connection and the request's task for good.
#[tokio::test]
async fn a_client_that_stops_reading_a_response_is_closed_after_idle_timeout() {
    let a = Backend::start("a").await;
    let strata = Strata::start(&config(&[&a], "idle_timeout = \"1s\""));
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut client = socket.connect(strata.addr("http:web")).await.unwrap();
    client
        .write_all(b"GET /big HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let open = || async {
        let text = admin_get(&strata, "/metrics").await.body;
        metric(&text, "strata_http_open_connections", "web").unwrap_or(-1.0)
    };
    eventually(Duration::from_secs(5), "the client counted", || async {
        open().await == 1.0
    })
    .await;
    eventually(
        Duration::from_secs(15),
        "the stalled client closed",
        || async { open().await == 0.0 },
    )
    .await;
    drop(client);
}
