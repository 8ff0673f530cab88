//! Logs: the access log is off by default; with `access_log = true` and `--log-format json`,
//! each request is one JSON line with what an operator looks for.

use crate::common;

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
    // milliseconds to two decimals (0.14), not a float's every digit
    let ms = line.split("\"ms\":").nth(1).expect("ms field");
    let ms = &ms[..ms.find([',', '}']).unwrap()];
    let decimals = ms.split('.').nth(1).map_or(0, str::len);
    assert!(decimals <= 2, "ms = {ms}");
}

#[tokio::test]
async fn no_access_log_by_default() {
    let a = Backend::start("a").await;
    let strata = Strata::start(&format!("[[http]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\nbackends = [\"{}\"]\npassive = {{ failures = 1 }}\n", a.addr));
    let mut client = Client::connect(strata.addr("http:web")).await;
    assert_eq!(client.get("/").await.unwrap().status, 200);
    // A known line logged after the first request's access line would have been: the same
    // connection's task records a request before it reads the next one, and this 500 makes
    // that task log the ejection. Once it is there, a missing access line is really missing.
    assert_eq!(client.get("/status/500").await.unwrap().status, 500);
    strata
        .wait_log(
            "failures in a row, the last: HTTP 500",
            Duration::from_secs(5),
        )
        .await;
    assert!(
        !strata.logs().contains("strata::access"),
        "{}",
        strata.logs()
    );
}
