//! Logs: the access log is off by default; with `access_log = true` and `--log-format json`,
//! each request is one JSON line with what an operator looks for.

mod common;

use std::time::Duration;

use common::*;

#[tokio::test]
async fn access_log_lines_are_json_when_asked() {
    let a = Backend::start("a").await;
    let dir = TempDir::new();
    let path = dir.path().join("strata.toml");
    let config = format!("[[http]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\nbackends = [\"{}\"]\naccess_log = true\n", a.addr);
    std::fs::write(&path, config).unwrap();
    let args = ["--log-format", "json", "run", "-c", path.to_str().unwrap()].map(String::from);
    let strata = Strata::spawn(dir, path, &args, 1);
    assert_eq!(
        get_once(strata.addr("http:web"), "/status/404")
            .await
            .status,
        404
    );
    strata
        .wait_log("\"target\":\"strata::access\"", Duration::from_secs(5))
        .await;
    let logs = strata.logs();
    let line = logs.lines().find(|l| l.contains("strata::access")).unwrap();
    for field in [
        "\"listener\":\"web\"",
        "\"method\":\"GET\"",
        "\"uri\":\"/status/404\"",
        "\"status\":404",
        &format!("\"backend\":\"{}\"", a.addr),
    ] {
        assert!(line.contains(field), "{field} missing from {line}");
    }
    assert!(
        line.starts_with('{') && line.ends_with('}'),
        "not one JSON object per line: {line}"
    );
}

#[tokio::test]
async fn no_access_log_by_default() {
    let a = Backend::start("a").await;
    let strata = Strata::start(&format!("[admin]\nlisten = \"127.0.0.1:0\"\n[[http]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\nbackends = [\"{}\"]\n", a.addr));
    get_once(strata.addr("http:web"), "/").await;
    // the admin request after it is answered only once the first one was fully handled
    get_once(strata.addr("admin"), "/healthz").await;
    assert!(
        !strata.logs().contains("strata::access"),
        "{}",
        strata.logs()
    );
}
