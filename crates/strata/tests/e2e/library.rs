//! Strata as a library: a node started in-process with `strata::run`, serving until its
//! shutdown token is cancelled.

use crate::common;

use std::time::Duration;

use common::*;
use tokio_util::sync::CancellationToken;

/// A config with one HTTP listener in front of `backend`, and where it listens (a free port
/// picked here: an in-process node can't report the port 0 it bound yet).
fn one_listener(backend: &Backend) -> (strata_config::Config, std::net::SocketAddr) {
    let addr: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let text = format!(
        "[[http]]\nname = \"web\"\nlisten = \"{addr}\"\nbackends = [\"{}\"]\n",
        backend.addr
    );
    let config = strata_config::parse(&text, "test.toml", std::path::Path::new(".")).unwrap();
    (config, addr)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_runs_in_process_and_drains_when_told() {
    let a = Backend::start("a").await;
    let (config, addr) = one_listener(&a);
    let shutdown = CancellationToken::new();
    let node = tokio::spawn(strata::run(config, shutdown.clone()));
    eventually(
        Duration::from_secs(10),
        "the in-process node answers",
        || async { tokio::net::TcpStream::connect(addr).await.is_ok() },
    )
    .await;
    assert_eq!(get_once(addr, "/").await.body, "backend a");
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), node)
        .await
        .expect("the node drains and returns")
        .expect("no panic")
        .expect("no error");
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "no longer listening"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dropped_node_stops_accepting() {
    let a = Backend::start("a").await;
    let (config, addr) = one_listener(&a);
    let node = strata::Node::start(config).await.expect("starts");
    assert_eq!(get_once(addr, "/").await.body, "backend a");
    drop(node);
    eventually(
        Duration::from_secs(10),
        "the listener closes",
        || async move { tokio::net::TcpStream::connect(addr).await.is_err() },
    )
    .await;
}
