//! End to end with real nginx app servers: one is killed with SIGKILL under steady load.

use crate::common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_an_nginx_backend_under_load_fails_no_get() {
    let mut a = Nginx::start("a").await;
    let b = Nginx::start("b").await;
    let config = format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\n[[http]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\nbackends = [\"{}\", \"{}\"]\n\
         health = {{ path = \"/healthz\", interval = \"200ms\", fall = 2 }}\n",
        a.addr, b.addr
    );
    let strata = Strata::start(&config);
    let addr = strata.addr("http:web");
    let done = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for _ in 0..16 {
        let done = done.clone();
        workers.push(tokio::spawn(async move {
            let mut client = Client::connect(addr).await;
            let mut seen = (0u32, 0u32, Vec::new());
            for _ in 0..400 {
                match client.get("/").await {
                    Ok(r) if r.status == 200 && r.body == "nginx a\n" => seen.0 += 1,
                    Ok(r) if r.status == 200 && r.body == "nginx b\n" => seen.1 += 1,
                    Ok(r) => seen.2.push(format!("{} {:?}", r.status, r.body)),
                    Err(e) => seen.2.push(e.to_string()),
                }
                done.fetch_add(1, Ordering::SeqCst);
            }
            seen
        }));
    }
    eventually(Duration::from_secs(20), "load under way", || {
        let done = done.clone();
        async move { done.load(Ordering::SeqCst) > 1500 }
    })
    .await;
    a.kill();
    let (mut on_a, mut on_b, mut failures) = (0, 0, Vec::new());
    for w in workers {
        let (x, y, f) = w.await.unwrap();
        on_a += x;
        on_b += y;
        failures.extend(f);
    }
    assert!(
        failures.is_empty(),
        "{} of 6400 GETs failed, e.g. {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(
        on_a > 500 && on_b > 3000,
        "a served {on_a}, b served {on_b}"
    );
    eventually(Duration::from_secs(5), "a marked down", || async {
        get_once(strata.addr("admin"), "/status")
            .await
            .body
            .contains("\"state\": \"down\"")
    })
    .await;
}
