//! gRPC end to end: grpcio clients and servers (from PyPI, installed in target/py by
//! scripts/test.sh) on both sides of an `[[http]]` listener that speaks HTTP/2 to its backends.

use crate::common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use tokio::io::{AsyncBufReadExt, BufReader as AsyncBufReader};

/// A grpcio server on a free port; killed (-9) when dropped.
struct GrpcServer {
    child: Child,
    addr: SocketAddr,
}

impl GrpcServer {
    fn start(name: &str) -> GrpcServer {
        let mut child = Command::new(python())
            .arg(root().join("crates/strata/tests/clients/grpc_peer.py"))
            .args(["server", name])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the grpcio server");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .expect("read the server's port");
        let port: u16 = line.trim().parse().expect("the server prints its port");
        GrpcServer {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for GrpcServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs a client scenario against `target`; its one result line.
async fn client(target: SocketAddr, scenario: &str, args: &[&str]) -> String {
    let out = python_client("grpc_peer.py", &["client", &target.to_string(), scenario])
        .args(args)
        .output()
        .await
        .expect("run the grpcio client");
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        out.status.success(),
        "grpcio client {scenario} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn config(backends: &[SocketAddr], extra: &str) -> String {
    let list: Vec<String> = backends.iter().map(|b| format!("\"{b}\"")).collect();
    format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\n\n[[http]]\nname = \"rpc\"\nlisten = \"127.0.0.1:0\"\nbackend_protocol = \"h2c\"\nbackends = [{}]\n{extra}\n",
        list.join(", ")
    )
}

/// Unary, server streaming, client streaming and bidirectional calls (one that waits for each
/// answer before it sends again), an error status with its trailing metadata, and a message
/// larger than the flow-control windows: all as a direct connection would give them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_calls_of_every_kind_pass_through() {
    let a = GrpcServer::start("a");
    let b = GrpcServer::start("b");
    let strata = Strata::start(&config(&[a.addr, b.addr], ""));
    let out = client(strata.addr("http:rpc"), "all", &[]).await;
    assert!(out == "ok a" || out == "ok b", "{out}");
}

/// A call that no backend can take gets gRPC's UNAVAILABLE in a trailers-only answer, which
/// the client reads as a status, not as an HTTP error page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_no_backend_can_take_gets_unavailable() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = closed.local_addr().unwrap();
    drop(closed);
    let strata = Strata::start(&config(&[dead], ""));
    let out = client(strata.addr("http:rpc"), "status", &[]).await;
    assert!(out.starts_with("UNAVAILABLE strata: listener"), "{out}");
    // the same through a listener that speaks HTTP/1.1 to its backends
    let strata = Strata::start(&config(&[dead], "").replace("\"h2c\"", "\"http1\""));
    let out = client(strata.addr("http:rpc"), "status", &[]).await;
    assert!(out.starts_with("UNAVAILABLE "), "{out}");
}

/// The standard gRPC health check takes a backend that says NOT_SERVING out of rotation and
/// brings it back when it says SERVING again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_grpc_health_check_follows_serving_status() {
    let a = GrpcServer::start("a");
    let b = GrpcServer::start("b");
    let strata = Strata::start(&config(
        &[a.addr, b.addr],
        "health = { grpc_service = \"\", interval = \"100ms\", rise = 1, fall = 1 }",
    ));
    let state = |name: String| {
        let strata = &strata;
        async move {
            let status = admin_get(strata, "/status").await.body;
            let v: serde_json::Value = serde_json::from_str(&status).unwrap();
            v["http"][0]["backends"]
                .as_array()
                .unwrap()
                .iter()
                .find(|b| b["address"] == name.as_str())
                .map(|b| b["state"].as_str().unwrap_or("").to_string())
                .unwrap_or_default()
        }
    };
    eventually(Duration::from_secs(10), "both backends up", || async {
        state(a.addr.to_string()).await == "up" && state(b.addr.to_string()).await == "up"
    })
    .await;
    // a says NOT_SERVING (asked directly, not through the proxy)
    assert_eq!(client(a.addr, "serving", &["0"]).await, "ok");
    eventually(Duration::from_secs(10), "a down", || async {
        state(a.addr.to_string()).await == "down"
    })
    .await;
    for _ in 0..6 {
        assert_eq!(client(strata.addr("http:rpc"), "all", &[]).await, "ok b");
    }
    assert_eq!(client(a.addr, "serving", &["1"]).await, "ok");
    eventually(Duration::from_secs(10), "a up again", || async {
        state(a.addr.to_string()).await == "up"
    })
    .await;
}

/// A backend killed (-9) under a stream of unary calls: only calls that were in flight on it
/// may fail (a call may have been acted on, and gRPC calls are not idempotent); every call
/// after the kill is answered by the other backend (a refused connection, or a connection
/// found closed before a call went on it, sends the call to the other backend).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_backend_costs_only_the_calls_in_flight_on_it() {
    let mut a = GrpcServer::start("a");
    let b = GrpcServer::start("b");
    let strata = Strata::start(&config(&[a.addr, b.addr], "retries = 2"));
    let target = strata.addr("http:rpc").to_string();
    let threads = 4;
    let mut load = python_client(
        "grpc_peer.py",
        &["client", &target, "load", "3", &threads.to_string()],
    )
    .stdout(Stdio::piped())
    .spawn()
    .unwrap();
    let mut lines = AsyncBufReader::new(load.stdout.take().unwrap()).lines();
    assert_eq!(lines.next_line().await.unwrap().as_deref(), Some("started"));
    tokio::time::sleep(Duration::from_millis(500)).await;
    a.kill();
    let result = lines.next_line().await.unwrap().unwrap();
    assert!(load.wait().await.unwrap().success());

    let mut words = result.split(' ');
    let ok: u64 = words.next().unwrap().parse().unwrap();
    let failed: u64 = words.next().unwrap().parse().unwrap();
    assert!(ok > 100, "{result}");
    // at most one call per thread in flight at the kill, and at most one more per thread
    // sent in the moment between the kill and the proxy reading its connection's close: such
    // a call may have reached the backend before it died, so it is not retried
    assert!(
        failed <= 2 * threads,
        "more calls failed than could be in flight: {result}"
    );
    // after the kill, nothing fails
    let after = client(strata.addr("http:rpc"), "load", &["1", "2"]).await;
    let after = after.lines().last().unwrap().to_string();
    assert!(after.split(' ').nth(1) == Some("0"), "{after}");
}
