//! The admin API end to end: who may drain a backend (a token, or loopback, same-origin and an
//! IP or `localhost` Host), `strata check` on a reachable admin address, and the listener's
//! limits: header and idle timeouts, the connection limit, and running out of descriptors.

use crate::common;

use std::time::Duration;

use common::*;
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::Request;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const TOKEN: &str = "s3cret-admin-token-0123456789";

/// A node with one HTTP listener, "web", in front of `backend`; `admin` goes into `[admin]`.
fn start_in(dir: TempDir, backend: &Backend, admin: &str) -> Strata {
    let config = format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\n{admin}\n\n[[http]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\nbackends = [\"{}\"]\n",
        backend.addr
    );
    Strata::start_in(dir, &config)
}

fn start(backend: &Backend, admin: &str) -> Strata {
    start_in(TempDir::new(), backend, admin)
}

/// A node whose `[admin]` reads its token from `token` in the config's directory.
fn start_with_token(backend: &Backend, admin: &str) -> Strata {
    let dir = TempDir::new();
    write_file(dir.path(), "token", &format!("{TOKEN}\n"));
    start_in(dir, backend, &format!("token_file = \"token\"\n{admin}"))
}

/// POSTs `action` (drain or restore) for `backend` with exactly these headers.
async fn call(strata: &Strata, backend: &Backend, action: &str, headers: &[(&str, &str)]) -> Reply {
    let mut req = Request::post(format!("/backends/http/web/{}/{action}", backend.addr));
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    Client::connect(strata.addr("admin"))
        .await
        .request(req.body(Full::new(Bytes::new())).unwrap())
        .await
        .expect("admin reply")
}

/// Drains `backend` sending `Host: host` and `token` as the bearer token: the status code.
async fn drain_with(strata: &Strata, backend: &Backend, host: &str, token: &str) -> u16 {
    let bearer = format!("Bearer {token}");
    let headers = [("host", host), ("authorization", bearer.as_str())];
    let reply = call(strata, backend, "drain", &headers).await;
    assert!(
        reply.body.contains("\"state\"") || reply.body.contains("\"error\""),
        "{}",
        reply.body
    );
    reply.status
}

/// The backend's state in /status: "up", "draining"...
async fn state(strata: &Strata, backend: &Backend) -> String {
    let body = get_once(strata.addr("admin"), "/status").await.body;
    let status: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    let found = status["http"][0]["backends"].as_array().and_then(|all| {
        all.iter()
            .find(|b| b["address"] == backend.addr.to_string())
    });
    found
        .and_then(|b| b["state"].as_str())
        .unwrap_or_else(|| panic!("no backend in {body}"))
        .to_string()
}

/// `127.0.0.1:PORT` of the admin listener, as a browser or curl would send it.
fn admin_host(strata: &Strata) -> String {
    strata.addr("admin").to_string()
}

#[tokio::test]
async fn a_cross_site_post_is_refused_and_drains_nothing() {
    let a = Backend::start("a").await;
    let strata = start(&a, "");
    let host = admin_host(&strata);
    let attempts: [&[(&str, &str)]; 3] = [
        // a page on evil.example whose name was re-pointed at 127.0.0.1 (DNS rebinding)
        &[("origin", "http://evil.example"), ("host", "evil.example")],
        // a page elsewhere posting to the admin address directly (CSRF)
        &[("origin", "http://evil.example"), ("host", &host)],
        &[("sec-fetch-site", "cross-site"), ("host", &host)],
    ];
    for headers in attempts {
        let reply = call(&strata, &a, "drain", headers).await;
        assert_eq!(reply.status, 403, "{headers:?}: {}", reply.body);
        assert!(reply.body.contains("\"error\""), "{}", reply.body);
    }
    assert_eq!(state(&strata, &a).await, "up");
    let metrics = get_once(strata.addr("admin"), "/metrics").await.body;
    assert_eq!(
        metric(&metrics, "strata_admin_refused_total", "reason=\"host\""),
        Some(1.0)
    );
    assert_eq!(
        metric(
            &metrics,
            "strata_admin_refused_total",
            "reason=\"cross_site\""
        ),
        Some(2.0)
    );
}

#[tokio::test]
async fn a_dns_name_as_host_is_refused_and_an_address_or_localhost_is_served() {
    let a = Backend::start("a").await;
    let strata = start(&a, "");
    let port = strata.addr("admin").port();
    let reply = call(
        &strata,
        &a,
        "drain",
        &[("host", &format!("admin.example:{port}"))],
    )
    .await;
    assert_eq!(reply.status, 403, "{}", reply.body);
    assert!(
        reply.body.contains("IP address or localhost"),
        "{}",
        reply.body
    );
    assert_eq!(state(&strata, &a).await, "up");

    let reply = call(&strata, &a, "drain", &[("host", &admin_host(&strata))]).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(state(&strata, &a).await, "draining");
    let localhost = format!("localhost:{port}");
    let reply = call(&strata, &a, "restore", &[("host", &localhost)]).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(state(&strata, &a).await, "up");
    // a same-origin page (the browser names the origin it was loaded from) is served too
    let same_origin = [
        ("host", localhost.as_str()),
        ("origin", &format!("http://{localhost}")),
    ];
    let reply = call(&strata, &a, "drain", &same_origin).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(state(&strata, &a).await, "draining");
}

#[tokio::test]
async fn without_a_token_a_rebound_name_cannot_read_status_either() {
    let backend = Backend::start("a").await;
    let strata = start(&backend, "");
    let read = |host: &'static str| {
        let addr = strata.addr("admin");
        async move {
            let req = Request::get("/status")
                .header("host", host)
                .body(Full::new(Bytes::new()))
                .unwrap();
            Client::connect(addr).await.request(req).await.unwrap()
        }
    };
    // a page on a name its owner re-pointed at 127.0.0.1 would read backend addresses
    let reply = read("rebind.evil.example").await;
    assert_eq!(reply.status, 403, "{}", reply.body);
    assert!(
        !reply.body.contains(&backend.addr.to_string()),
        "{}",
        reply.body
    );
    assert_eq!(read("localhost").await.status, 200);
}

#[tokio::test]
async fn with_a_token_file_a_post_needs_the_token() {
    let a = Backend::start("a").await;
    let strata = start_with_token(&a, "");
    let host = admin_host(&strata);
    let reply = call(&strata, &a, "drain", &[("host", &host)]).await;
    assert_eq!(reply.status, 401, "{}", reply.body);
    let challenge = reply.headers.get("www-authenticate").expect("challenge");
    assert!(
        challenge.to_str().unwrap().starts_with("Bearer"),
        "{challenge:?}"
    );
    assert!(reply.body.contains("\"error\""), "{}", reply.body);
    let wrong = format!("{TOKEN}x");
    assert_eq!(drain_with(&strata, &a, &host, &wrong).await, 401);
    assert_eq!(state(&strata, &a).await, "up");

    // with the token, a DNS name is fine: a rebound page cannot know the token
    assert_eq!(drain_with(&strata, &a, "admin.example", TOKEN).await, 200);
    assert_eq!(state(&strata, &a).await, "draining");
    // reads stay open
    assert_eq!(get_once(strata.addr("admin"), "/healthz").await.status, 200);
    assert_eq!(get_once(strata.addr("admin"), "/metrics").await.status, 200);
}

#[tokio::test]
async fn a_new_token_takes_effect_on_reload() {
    let a = Backend::start("a").await;
    let strata = start_with_token(&a, "");
    let host = admin_host(&strata);
    let new_token = "another-token-9876543210";
    write_file(strata.dir.path(), "token", new_token);
    strata.signal(libc::SIGHUP);
    strata
        .wait_log("SIGHUP: reloaded", Duration::from_secs(5))
        .await;
    assert_eq!(drain_with(&strata, &a, &host, TOKEN).await, 401);
    assert_eq!(drain_with(&strata, &a, &host, new_token).await, 200);
}

#[test]
fn check_refuses_a_reachable_admin_address_without_a_token_file() {
    let dir = TempDir::new();
    let open = write_file(dir.path(), "open.toml", "[admin]\nlisten = \"0.0.0.0:0\"\n");
    let (code, _, err) = strata_cmd(&["check", "-c", open.to_str().unwrap()]);
    assert_eq!(code, 64, "{err}");
    let file = open.display();
    assert!(
        err.contains(&format!(
            "{file}:2:10: `admin.listen`: 0.0.0.0:0 is not a loopback address"
        )),
        "{err}"
    );
    assert!(
        err.contains("(hint: add token_file, or listen on 127.0.0.1)"),
        "{err}"
    );

    write_file(dir.path(), "token", TOKEN);
    let guarded = write_file(
        dir.path(),
        "guarded.toml",
        "[admin]\nlisten = \"0.0.0.0:0\"\ntoken_file = \"token\"\n",
    );
    let (code, out, err) = strata_cmd(&["check", "-c", guarded.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(": ok (0 http, 0 tcp listener(s), 0 cache pool(s), 0 database listener(s), 0 vip instance(s), admin)"),
        "{out}"
    );
}

#[tokio::test]
async fn a_half_sent_request_head_is_cut_off_after_header_timeout() {
    let a = Backend::start("a").await;
    let strata = start(&a, "header_timeout = \"300ms\"\n");
    let host = admin_host(&strata);
    let head = format!(
        "POST /backends/http/web/{}/drain HTTP/1.1\r\nHost: {host}\r\n",
        a.addr
    );
    let mut s = TcpStream::connect(strata.addr("admin")).await.unwrap();
    s.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    // the generous limit only keeps a broken server from hanging the test
    let closed = tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut answer)).await;
    assert!(closed.is_ok(), "the half-sent head was not cut off");
    let answer = String::from_utf8_lossy(&answer);
    assert!(!answer.contains("200 OK"), "{answer}");
    assert_eq!(state(&strata, &a).await, "up");
}

#[tokio::test]
async fn a_connection_where_nothing_moves_is_closed_after_idle_timeout() {
    let a = Backend::start("a").await;
    // the header timeout is far longer than the test: only the idle timeout can close it
    let strata = start(&a, "header_timeout = \"10m\"\nidle_timeout = \"300ms\"\n");
    let mut s = TcpStream::connect(strata.addr("admin")).await.unwrap();
    let closed =
        tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut Vec::new())).await;
    assert!(closed.is_ok(), "the idle connection was not closed");
}

#[tokio::test]
async fn over_max_connections_a_request_waits_for_a_free_slot() {
    let a = Backend::start("a").await;
    let strata = start(&a, "max_connections = 2\nheader_timeout = \"10m\"\n");
    let admin = strata.addr("admin");
    // two idle connections take both slots (the kernel hands connections over in order)
    let first = TcpStream::connect(admin).await.unwrap();
    let _second = TcpStream::connect(admin).await.unwrap();
    let mut third = TcpStream::connect(admin).await.unwrap();
    third
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    // a short wait to show that something does not happen: no answer while both slots are taken
    let early = tokio::time::timeout(Duration::from_millis(300), third.read(&mut buf)).await;
    assert!(early.is_err(), "answered over the limit: {early:?}");
    // the data listener is not affected
    assert_eq!(
        get_once(strata.addr("http:web"), "/").await.body,
        "backend a"
    );

    drop(first);
    let n = tokio::time::timeout(Duration::from_secs(20), third.read(&mut buf))
        .await
        .expect("served once a slot was free")
        .unwrap();
    let answer = String::from_utf8_lossy(&buf[..n]);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

/// Lowers the descriptor limit of the running process `pid` to `limit`.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)] // prlimit(2) through libc
fn limit_descriptors(pid: u32, limit: u64) {
    let rlim = libc::rlimit {
        rlim_cur: limit,
        rlim_max: limit,
    };
    // SAFETY: prlimit(2) on our own child, reading only `rlim`, which outlives the call.
    let rc = unsafe { libc::prlimit(pid as i32, libc::RLIMIT_NOFILE, &rlim, std::ptr::null_mut()) };
    assert_eq!(rc, 0, "prlimit: {}", std::io::Error::last_os_error());
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn running_out_of_descriptors_neither_spins_nor_floods_the_log() {
    let a = Backend::start("a").await;
    let strata = start(&a, "");
    let pid = strata.child.id();
    // room for a few more connections, far fewer than the admin limit of 64: accepting runs
    // out of descriptors (EMFILE) while connections are still waiting
    limit_descriptors(pid, open_descriptors(pid) + 6);
    let mut idle = Vec::new();
    for _ in 0..100 {
        idle.push(TcpStream::connect(strata.addr("admin")).await.unwrap());
    }
    // what is tested is what happens while the condition lasts: the accept loop must neither
    // spin nor log each failure. There is nothing to probe for, so time has to pass.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        strata.logs().contains("accept failed"),
        "never ran out:\n{}",
        strata.logs()
    );
    drop(idle);

    // once the clients are gone, the data listener serves again
    eventually(
        Duration::from_secs(20),
        "the data listener serves",
        || async {
            let request = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
            raw_exchange(strata.addr("http:web"), request, Duration::from_secs(2))
                .await
                .contains("backend a")
        },
    )
    .await;
    assert_eq!(get_once(strata.addr("admin"), "/healthz").await.status, 200);
    let failures = strata.logs().matches("accept failed").count();
    assert!(
        failures < 50,
        "{failures} accept warnings:\n{}",
        strata.logs()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_lists_only_the_backends_that_take_traffic_now() {
    let up = Backend::start("up").await;
    let sick = Backend::start("sick").await;
    let drained = Backend::start("drained").await;
    sick.healthy
        .store(false, std::sync::atomic::Ordering::SeqCst);
    let strata = Strata::start(&format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\n\n[[http]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\n\
         backends = [\"{}\", \"{}\", \"{}\"]\n\
         health = {{ path = \"/healthz\", interval = \"100ms\", fall = 1 }}\n",
        up.addr, sick.addr, drained.addr
    ));
    let drain = admin_post(
        &strata,
        &format!("/backends/http/web/{}/drain", drained.addr),
    )
    .await;
    assert_eq!(drain.status, 200, "{}", drain.body);
    let web = strata.addr("http:web").to_string();
    let want = serde_json::json!([up.addr.to_string()]);
    eventually(
        Duration::from_secs(10),
        "only the healthy backend listed",
        || async {
            let reply = admin_get(&strata, "/endpoints").await;
            let v: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
            let listener = &v["http"][0];
            listener["name"] == "web"
                && listener["listen"] == web.as_str()
                && listener["healthy"] == want
        },
    )
    .await;
}
