//! Strata as a library: a node started in-process with `strata::run`, serving until its
//! shutdown token is cancelled.

mod common;

use std::time::Duration;

use common::*;
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread")]
async fn a_node_runs_in_process_and_drains_when_told() {
    let a = Backend::start("a").await;
    let port = free_port();
    let text = format!(
        "[[http]]\nname = \"web\"\nlisten = \"127.0.0.1:{port}\"\nbackends = [\"{}\"]\n",
        a.addr
    );
    let config = strata_config::parse(&text, "test.toml", std::path::Path::new(".")).unwrap();
    let shutdown = CancellationToken::new();
    let node = tokio::spawn(strata::run(config, shutdown.clone()));
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
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
    let port = free_port();
    let text = format!(
        "[[http]]\nname = \"web\"\nlisten = \"127.0.0.1:{port}\"\nbackends = [\"{}\"]\n",
        a.addr
    );
    let config = strata_config::parse(&text, "test.toml", std::path::Path::new(".")).unwrap();
    let node = strata::Node::start(config).await.expect("starts");
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    assert_eq!(get_once(addr, "/").await.body, "backend a");
    drop(node);
    eventually(
        Duration::from_secs(10),
        "the listener closes",
        || async move { tokio::net::TcpStream::connect(addr).await.is_err() },
    )
    .await;
}
