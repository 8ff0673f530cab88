//! The dashboard on the admin listener, in Debian's headless Chromium driven over the DevTools
//! protocol (tests/clients/dashboard.py): a click on Drain changes both the page and /status,
//! the admin token rules hold for the page's buttons, every layer is drawn under live traffic
//! (the screenshot in docs/), and the page requests nothing from anywhere but the admin
//! listener.

use crate::common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::postgres::{pgbench, Postgres, SUPERUSER_PASSWORD};
use common::redis::{Redis, Resp};
use common::*;

const TOKEN: &str = "dashboard-admin-token-0123456789";

/// The JSON lines the driver printed, by their first key.
fn line(out: &str, key: &str) -> serde_json::Value {
    out.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v.get(key).is_some())
        .unwrap_or_else(|| panic!("the driver printed no {key}:\n{out}"))
}

/// Every URL the page requested is on the admin listener (or an inline `data:` icon), and the
/// page did fetch its parts and its data.
fn only_from(out: &str, admin: std::net::SocketAddr) {
    let requests = line(out, "requests");
    let urls: Vec<&str> = requests["requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u.as_str().unwrap())
        .collect();
    let blocked = &requests["csp_violations"];
    assert_eq!(
        blocked,
        &serde_json::json!([]),
        "the page broke its own policy"
    );
    let origin = format!("http://{admin}/");
    for url in &urls {
        assert!(
            url.starts_with(&origin) || url.starts_with("data:"),
            "the page requested {url}, outside the admin listener; all: {urls:?}"
        );
    }
    for part in ["/dashboard.js", "/dashboard.css", "/status", "/history"] {
        assert!(
            urls.iter().any(|u| u.ends_with(part)),
            "the page never requested {part}: {urls:?}"
        );
    }
}

async fn backend_state(strata: &Strata, layer: &str, listener: &str, backend: &str) -> String {
    let status: serde_json::Value =
        serde_json::from_str(&admin_get(strata, "/status").await.body).unwrap();
    let l = status[layer]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["name"] == listener)
        .unwrap_or_else(|| panic!("no {layer}:{listener} in {status}"));
    let list = if layer == "cache" {
        &l["servers"]
    } else {
        &l["backends"]
    };
    list.as_array()
        .unwrap()
        .iter()
        .find(|b| b["address"] == backend)
        .unwrap_or_else(|| panic!("no backend {backend} in {l}"))["state"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_click_on_drain_changes_the_page_and_status_and_nothing_is_fetched_elsewhere() {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let strata = Strata::start(&format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\n\n[[http]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\n\
         backends = [\"{}\", \"{}\"]\n",
        a.addr, b.addr
    ));
    let admin = strata.addr("admin");
    assert_eq!(
        backend_state(&strata, "http", "web", &b.addr.to_string()).await,
        "up"
    );

    let url = format!("http://{admin}/");
    let drain = format!("http/web/{}", b.addr);
    let out = python_ok("dashboard.py", &[&url, "--drain", &drain]).await;

    assert_eq!(line(&out, "before")["before"]["state"], "up");
    let after = line(&out, "after");
    assert_eq!(after["after"]["state"], "draining", "{out}");
    assert_eq!(after["after"]["button"], "Restore");
    assert_eq!(
        backend_state(&strata, "http", "web", &b.addr.to_string()).await,
        "draining",
        "the click reached the node"
    );
    assert_eq!(
        backend_state(&strata, "http", "web", &a.addr.to_string()).await,
        "up"
    );
    only_from(&out, admin);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_asks_for_the_admin_token_before_it_drains() {
    let a = Backend::start("a").await;
    let dir = TempDir::new();
    write_file(dir.path(), "token", &format!("{TOKEN}\n"));
    let strata = Strata::start_in(
        dir,
        &format!(
            "[admin]\nlisten = \"127.0.0.1:0\"\ntoken_file = \"token\"\n\n[[http]]\nname = \"web\"\n\
             listen = \"127.0.0.1:0\"\nbackends = [\"{}\"]\n",
            a.addr
        ),
    );
    let admin = strata.addr("admin");
    let url = format!("http://{admin}/");
    let drain = format!("http/web/{}", a.addr);
    let out = python_ok("dashboard.py", &[&url, "--drain", &drain, "--token", TOKEN]).await;

    let refused = line(&out, "without_token");
    assert!(
        refused["without_token"]
            .as_str()
            .unwrap()
            .contains("admin token"),
        "the page says why: {refused}"
    );
    assert_eq!(refused["row"]["state"], "up", "no token, no drain");
    assert_eq!(line(&out, "after")["after"]["state"], "draining");
    assert_eq!(
        backend_state(&strata, "http", "web", &a.addr.to_string()).await,
        "draining"
    );
    only_from(&out, admin);
}

/// Every layer but the entry layer (whose VIPs need network namespaces; vip.rs covers its
/// status) under traffic: HTTP, TCP, a cache pool over two redis-servers and a database
/// listener over PostgreSQL. The screenshot is written to target/dashboard.png, and to
/// docs/dashboard.png with STRATA_UPDATE_SCREENSHOT=1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_layer_is_drawn_under_live_traffic() {
    let web = [Backend::start("a").await, Backend::start("b").await];
    let redis = [Redis::start().await, Redis::start().await];
    let pg = Postgres::start();
    pg.user_and_database("app", "secret");
    let strata = Strata::start(&format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\n\n\
         [[http]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\nbackends = [\"{}\", \"{}\"]\n\n\
         [[tcp]]\nname = \"relay\"\nlisten = \"127.0.0.1:0\"\nbackends = [\"{}\"]\n\n\
         [[cache]]\nname = \"sessions\"\nlisten = \"127.0.0.1:0\"\nservers = [\"{}:1\", \"{}:1\"]\n\n\
         [[database]]\nname = \"app\"\nlisten = \"127.0.0.1:0\"\nservers = [\"{}\"]\n\
         check_user = \"postgres\"\npool_size = 2\n\
         [[database.users]]\nname = \"app\"\npassword = \"secret\"\n\
         [[database.users]]\nname = \"postgres\"\npassword = \"{SUPERUSER_PASSWORD}\"\n",
        web[0].addr, web[1].addr, web[0].addr, redis[0].addr, redis[1].addr, pg.addr
    ));
    let admin = strata.addr("admin");

    // traffic on every listener until the screenshot is taken, paced (a request every few
    // milliseconds per listener) so the graphs show a steady rate and the two cores stay free
    // for the browser; the pauses order nothing
    let stop = Arc::new(AtomicBool::new(false));
    let mut load = Vec::new();
    for (listener, per_connection) in [("http:web", 100), ("tcp:relay", 1)] {
        let (addr, stop) = (strata.addr(listener), stop.clone());
        load.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let mut client = Client::connect(addr).await;
                for _ in 0..per_connection {
                    client.get("/").await.expect("a request through strata");
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        }));
    }
    {
        let (addr, stop) = (strata.addr("cache:sessions"), stop.clone());
        load.push(tokio::spawn(async move {
            let mut resp = Resp::connect(addr)
                .await
                .expect("connect to the cache pool");
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let key = format!("user:{}", i % 500);
                resp.cmd(&[b"SET", key.as_bytes(), b"x"]).await;
                tokio::time::sleep(Duration::from_millis(3)).await;
            }
        }));
    }
    let db = strata.addr("database:app");
    let bench = tokio::task::spawn_blocking(move || {
        pgbench(db, "app", "secret", "app", &["-i", "-q", "-s", "1"]);
        // select-only transactions for about as long as the page needs to fill its graphs
        pgbench(
            db,
            "app",
            "secret",
            "app",
            &["-S", "-c", "2", "-T", "14", "-R", "50"],
        )
    });

    let shot = root().join("target/dashboard.png");
    let url = format!("http://{admin}/");
    let out = python_ok(
        "dashboard.py",
        &[
            &url,
            "--sparkline-points",
            "4",
            "--screenshot",
            &shot.display().to_string(),
        ],
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    for l in load {
        l.await.unwrap();
    }
    let bench = bench.await.unwrap();
    assert!(
        bench.contains("number of failed transactions: 0"),
        "{bench}"
    );

    only_from(&out, admin);
    // sparklines on each of the four listeners: rate, errors and (but for TCP) two latencies
    let drawn = line(&out, "sparklines")["sparklines"].as_u64().unwrap();
    assert!(drawn >= 4 * 2 + 3 * 2, "{drawn} sparklines drawn:\n{out}");
    // the graphs drew live traffic: every listener has points with requests in them
    let history: serde_json::Value =
        serde_json::from_str(&admin_get(&strata, "/history").await.body).unwrap();
    for series in history["series"].as_array().unwrap() {
        let busy = series["points"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p[1].as_f64().unwrap() > 0.0);
        assert!(busy, "no traffic in the graph of {series}");
    }
    assert_eq!(history["series"].as_array().unwrap().len(), 4);
    let png = std::fs::read(&shot).expect("the screenshot");
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    let width = u32::from_be_bytes(png[16..20].try_into().unwrap());
    assert_eq!(width, 1280);
    if std::env::var_os("STRATA_UPDATE_SCREENSHOT").is_some() {
        std::fs::copy(&shot, root().join("docs/dashboard.png")).unwrap();
    }
}
