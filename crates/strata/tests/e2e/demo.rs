//! README's first command: the built-in demo starts, balances over its upstreams, and answers
//! on the admin listener.

use crate::common;

use common::*;

#[tokio::test]
async fn the_demo_balances_over_its_upstreams() {
    let dir = TempDir::new();
    let path = dir.path().join("none.toml");
    let args = [
        "demo",
        "--listen",
        "127.0.0.1:0",
        "--admin",
        "127.0.0.1:0",
        "--cache-listen",
        "127.0.0.1:0",
    ]
    .map(String::from);
    // scripts/test.sh installs redis-server, so the demo's cache pool is there too
    let strata = Strata::spawn(dir, path, &args, 3);
    let mut client = Client::connect(strata.addr("http:demo")).await;
    let mut answers = Vec::new();
    for _ in 0..3 {
        let reply = client.get("/hello").await.unwrap();
        assert_eq!(reply.status, 200);
        answers.push(reply.body);
    }
    answers.sort();
    assert_eq!(
        answers,
        [1, 2, 3].map(|n| format!("hello from demo upstream {n}: GET /hello\n")),
        "each upstream in turn"
    );
    let status = get_once(strata.addr("admin"), "/status").await.body;
    assert_eq!(
        status.matches("\"state\": \"up\"").count(),
        3 + 2,
        "{status}"
    );
    let mut cache = common::redis::Resp::connect(strata.addr("cache:demo"))
        .await
        .unwrap();
    assert_eq!(
        &cache.cmd(&[b"SET", b"greeting", b"hello"]).await[..],
        b"+OK\r\n"
    );
    assert_eq!(
        &cache.cmd(&[b"GET", b"greeting"]).await[..],
        b"$5\r\nhello\r\n"
    );
}
