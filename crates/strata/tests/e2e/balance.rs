//! Balancing end to end: where `least_conn`, `ip_hash` and `random_two` send requests, and
//! retries that stop once the retry budget is spent.

use crate::common;

use std::collections::{HashMap, HashSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::*;
use tokio::net::{TcpListener, TcpSocket};

/// An admin listener and an `[[http]]` listener for each `(name, extra keys)`, all over
/// `backends`.
fn config(backends: &[SocketAddr], listeners: &[(&str, &str)]) -> String {
    let lines: Vec<String> = backends.iter().map(|a| a.to_string()).collect();
    config_of("http", &lines, listeners)
}

/// An admin listener and a listener of `layer` for each `(name, extra keys)`, all over the
/// backend lines `backends` (`"ip:port weight=2"`).
fn config_of(layer: &str, backends: &[String], listeners: &[(&str, &str)]) -> String {
    let list: Vec<String> = backends.iter().map(|b| format!("\"{b}\"")).collect();
    let mut text = "[admin]\nlisten = \"127.0.0.1:0\"\n".to_string();
    for (name, extra) in listeners {
        text += &format!(
            "\n[[{layer}]]\nname = \"{name}\"\nlisten = \"127.0.0.1:0\"\nbackends = [{}]\n{extra}\n",
            list.join(", ")
        );
    }
    text
}

/// Backends a, b and c behind listener "web" balancing with `balance`.
async fn three_backends_behind(balance: &str) -> ([Backend; 3], Strata) {
    let backends = [
        Backend::start("a").await,
        Backend::start("b").await,
        Backend::start("c").await,
    ];
    let addrs = backends.each_ref().map(|b| b.addr);
    let keys = format!("balance = \"{balance}\"\n");
    let strata = Strata::start(&config(&addrs, &[("web", &keys)]));
    (backends, strata)
}

/// One sample of /metrics, by name and a substring of its labels.
async fn sample(strata: &Strata, name: &str, labels: &str) -> f64 {
    let text = admin_get(strata, "/metrics").await.body;
    metric(&text, name, labels).unwrap_or_else(|| panic!("no {name}{{{labels}}} in\n{text}"))
}

/// The labels of `backend` on `listener`, as /metrics writes them.
fn of(listener: &str, backend: SocketAddr) -> String {
    format!("listener=\"{listener}\",backend=\"{backend}\"")
}

/// The body of `GET /` sent on a new connection from `client` (any 127/8 address is this host).
async fn get_from(client: Ipv4Addr, addr: SocketAddr) -> String {
    let socket = TcpSocket::new_v4().expect("socket");
    socket
        .bind((client, 0).into())
        .expect("bind the client address");
    let stream = socket.connect(addr).await.expect("connect to strata");
    let reply = Client::over(stream).await.get("/").await.expect("request");
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.body
}

/// `n` GETs of `/` over one connection: how many each backend answered, by body.
async fn spread(client: &mut Client, n: usize) -> HashMap<String, usize> {
    let mut seen = HashMap::new();
    for _ in 0..n {
        let reply = client.get("/").await.expect("request");
        assert_eq!(reply.status, 200, "{}", reply.body);
        *seen.entry(reply.body).or_default() += 1;
    }
    seen
}

/// Where each client address lands: the backend that answered it, the same on every one of
/// several connections.
async fn homes(addr: SocketAddr, clients: &[Ipv4Addr]) -> Vec<String> {
    let mut homes = Vec::new();
    for &ip in clients {
        let first = get_from(ip, addr).await;
        for _ in 0..3 {
            assert_eq!(get_from(ip, addr).await, first, "{ip} moved");
        }
        homes.push(first);
    }
    homes
}

#[tokio::test]
async fn least_conn_sends_new_requests_to_the_backend_that_is_not_busy() {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let strata = Strata::start(&config(
        &[a.addr, b.addr],
        &[("web", "balance = \"least_conn\"\n")],
    ));
    let addr = strata.addr("http:web");
    // one request the backend takes ten seconds to answer; dropped at the end of the test
    let slow = tokio::spawn(async move { get_once(addr, "/slow/10000").await });
    let in_flight = |b: &Backend| {
        let labels = of("web", b.addr);
        let strata = &strata;
        async move { sample(strata, "strata_backend_in_flight", &labels).await }
    };
    eventually(
        Duration::from_secs(5),
        "the slow request in flight",
        || async { in_flight(&a).await + in_flight(&b).await == 1.0 },
    )
    .await;
    let idle = if in_flight(&a).await == 1.0 { &b } else { &a };
    // round robin would alternate; least_conn sends every one past the busy backend
    let mut client = Client::connect(addr).await;
    let seen = spread(&mut client, 10).await;
    assert_eq!(
        seen,
        HashMap::from([(format!("backend {}", idle.name), 10)])
    );
    slow.abort();
}

#[tokio::test]
async fn ip_hash_keeps_a_client_address_on_one_backend_until_it_is_drained() {
    let (backends, strata) = three_backends_behind("ip_hash").await;
    let addr = strata.addr("http:web");
    let clients: Vec<Ipv4Addr> = (1..=16).map(|n| Ipv4Addr::new(127, 0, 0, n)).collect();
    let before = homes(addr, &clients).await;
    let used: HashSet<&String> = before.iter().collect();
    assert!(used.len() >= 2, "16 addresses all hashed onto {used:?}");

    // drain the backend 127.0.0.1 lands on: its clients move, and only they
    let drained = backends
        .iter()
        .find(|b| before[0] == format!("backend {}", b.name))
        .expect("a backend answered");
    let reply = admin_post(
        &strata,
        &format!("/backends/http/web/{}/drain", drained.addr),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let after = homes(addr, &clients).await;
    for ((ip, was), now) in clients.iter().zip(&before).zip(&after) {
        if *was == before[0] {
            assert_ne!(now, was, "{ip} still sent to the drained backend");
        } else {
            assert_eq!(now, was, "{ip} moved though its backend is up");
        }
    }
}

#[tokio::test]
async fn random_two_spreads_over_every_backend_and_skips_a_drained_one() {
    let (backends, strata) = three_backends_behind("random_two").await;
    let mut client = Client::connect(strata.addr("http:web")).await;
    // 60 picks over 3: the chance that one backend gets none is 3 * (2/3)^60, about 1e-10
    let seen = spread(&mut client, 60).await;
    assert_eq!(seen.len(), 3, "{seen:?}");

    let c = &backends[2];
    let reply = admin_post(&strata, &format!("/backends/http/web/{}/drain", c.addr)).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let hits = c.hits.load(Ordering::SeqCst);
    let seen = spread(&mut client, 60).await;
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(!seen.contains_key("backend c"), "{seen:?}");
    assert_eq!(
        c.hits.load(Ordering::SeqCst),
        hits,
        "the drained backend got requests"
    );
}

#[tokio::test]
async fn retries_stop_when_the_retry_budget_is_spent() {
    let live = Backend::start("live").await;
    // a port with nothing behind it: every connect is refused, and worth a retry
    let dead = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    // both listeners retry once and never eject; "tight" has only the budget's floor
    // (10 retries at once, 10 more a second), "loose" earns a retry with every request
    let keys = |budget: &str| {
        format!("retries = 1\nretry_budget = {budget}\npassive = {{ failures = 0 }}\n")
    };
    let (tight, loose) = (keys("0.0"), keys("1.0"));
    let strata = Strata::start(&config(
        &[dead, live.addr],
        &[("tight", &tight), ("loose", &loose)],
    ));

    // every request whose first try meets the dead backend is saved by a retry, until the
    // floor is spent: requests come far faster than 10 a second
    let mut client = Client::connect(strata.addr("http:tight")).await;
    let mut sent = 0;
    let failed = loop {
        sent += 1;
        let reply = client.get("/").await.expect("request");
        if reply.status != 200 {
            break reply;
        }
        assert!(sent < 2000, "2000 requests and never out of retries");
    };
    assert_eq!(failed.status, 502, "{}", failed.body);
    let retries = |listener: &str| {
        let labels = format!("listener=\"{listener}\"");
        let strata = &strata;
        async move { sample(strata, "strata_http_retries_total", &labels).await }
    };
    let refused = sample(&strata, "strata_backend_failures_total", &of("tight", dead)).await;
    let tight_retries = retries("tight").await;
    assert!(tight_retries >= 10.0, "{tight_retries} retries");
    assert!(
        tight_retries < refused,
        "{refused} refused tries, each retried ({tight_retries} retries)"
    );

    // the same requests on the same backends with room in the budget: none fails
    let mut client = Client::connect(strata.addr("http:loose")).await;
    let seen = spread(&mut client, sent).await;
    assert_eq!(seen, HashMap::from([("backend live".to_string(), sent)]));
    let refused = sample(&strata, "strata_backend_failures_total", &of("loose", dead)).await;
    assert!(refused >= 1.0, "the dead backend was never tried");
    assert_eq!(retries("loose").await, refused);
}

/// One backend that takes one request at once (`max_conns=1`) behind listener "web", with
/// `keys` for the listener, and a request to it that the backend holds for `ms` milliseconds,
/// there already.
async fn one_at_a_time_and_busy(
    keys: &str,
    ms: u64,
) -> (Backend, Strata, tokio::task::JoinHandle<Reply>) {
    let a = Backend::start("a").await;
    let one = [format!("{} max_conns=1", a.addr)];
    let strata = Strata::start(&config_of("http", &one, &[("web", keys)]));
    let addr = strata.addr("http:web");
    let slow = tokio::spawn(async move { get_once(addr, &format!("/slow/{ms}")).await });
    eventually(
        Duration::from_secs(5),
        "the slow request at the backend",
        || async { a.hits.load(Ordering::SeqCst) == 1 },
    )
    .await;
    (a, strata, slow)
}

/// Waits until `strata`'s listener "web" has `n` requests in its queue.
async fn queued(strata: &Strata, n: f64) {
    eventually(Duration::from_secs(5), "a request in the queue", || async {
        sample(strata, "strata_queue_waiting", "listener=\"web\"").await == n
    })
    .await;
}

#[tokio::test]
async fn a_backend_at_max_conns_gets_no_more_and_the_next_request_waits_its_turn() {
    let keys = "queue_timeout = \"30s\"\nqueue_size = 1";
    let (a, strata, slow) = one_at_a_time_and_busy(keys, 5000).await;
    let addr = strata.addr("http:web");
    let next = tokio::spawn(async move { get_once(addr, "/").await });
    queued(&strata, 1.0).await;
    // it waits in Strata, not at the backend
    assert_eq!(a.hits.load(Ordering::SeqCst), 1);
    // the queue holds one (queue_size): the next request is turned away at once, while the
    // slow one is still at the backend
    let refused = get_once(addr, "/").await;
    assert_eq!(refused.status, 503, "{}", refused.body);
    assert_eq!(
        refused.body,
        "strata: listener \"web\": every backend is full and so is the queue\n"
    );
    assert!(!slow.is_finished());
    let status = admin_status(&strata).await;
    let web = &status["http"][0];
    assert_eq!(web["queue"]["waiting"], 1, "{web}");
    assert_eq!(web["queue"]["refused"], 1, "{web}");
    assert_eq!(web["queue"]["size"], 1, "{web}");
    assert_eq!(web["backends"][0]["max_conns"], 1, "{web}");
    // when the slow one is answered, the waiting one goes
    assert_eq!(slow.await.unwrap().status, 200);
    let reply = next.await.unwrap();
    assert_eq!((reply.status, reply.body.as_str()), (200, "backend a"));
    assert_eq!(a.hits.load(Ordering::SeqCst), 2);
    queued(&strata, 0.0).await;
    assert_eq!(
        sample(&strata, "strata_queue_timeouts_total", "listener=\"web\"").await,
        0.0
    );
    assert_eq!(
        sample(&strata, "strata_queue_refused_total", "listener=\"web\"").await,
        1.0
    );
}

#[tokio::test]
async fn a_request_that_waits_past_queue_timeout_gets_503_and_the_backend_is_not_blamed() {
    let (a, strata, slow) = one_at_a_time_and_busy("queue_timeout = \"300ms\"", 10000).await;
    let addr = strata.addr("http:web");
    let reply = get_once(addr, "/").await;
    assert_eq!(reply.status, 503, "{}", reply.body);
    assert_eq!(
        reply.body,
        "strata: listener \"web\": every backend stayed full for queue_timeout\n"
    );
    assert_eq!(a.hits.load(Ordering::SeqCst), 1);
    assert_eq!(
        sample(&strata, "strata_queue_timeouts_total", "listener=\"web\"").await,
        1.0
    );
    // a full backend is busy, not failing: it stays up, with no failure counted
    let labels = of("web", a.addr);
    assert_eq!(sample(&strata, "strata_backend_up", &labels).await, 1.0);
    assert_eq!(
        sample(&strata, "strata_backend_failures_total", &labels).await,
        0.0
    );
    slow.abort();
}

#[tokio::test]
async fn a_tcp_backend_at_max_conns_takes_the_next_connection_when_one_closes() {
    let a = Backend::start("a").await;
    let one = [format!("{} max_conns=1", a.addr)];
    let keys = "queue_timeout = \"30s\"";
    let strata = Strata::start(&config_of("tcp", &one, &[("web", keys)]));
    let addr = strata.addr("tcp:web");
    // the first connection holds the backend's one place for as long as it is open
    let mut first = Client::connect(addr).await;
    assert_eq!(first.get("/").await.expect("request").status, 200);
    let next = tokio::spawn(async move { get_once(addr, "/").await });
    queued(&strata, 1.0).await;
    assert_eq!(a.hits.load(Ordering::SeqCst), 1);
    drop(first);
    let reply = next.await.unwrap();
    assert_eq!((reply.status, reply.body.as_str()), (200, "backend a"));
    assert_eq!(a.hits.load(Ordering::SeqCst), 2);
}
