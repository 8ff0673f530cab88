//! `strata check` and `strata run` on good and bad configs, and every example config.

mod common;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

#[test]
fn check_accepts_a_good_config() {
    let dir = TempDir::new();
    let path = write_file(
        dir.path(),
        "good.toml",
        "[[http]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\nbackends = [\"127.0.0.1:9\"]\n",
    );
    let (code, out, err) = strata_cmd(&["check", "-c", path.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("ok (1 http, 0 tcp listener(s), 0 cache pool(s))"),
        "{out}"
    );
}

#[test]
fn check_lists_every_problem_with_line_and_exits_64() {
    let dir = TempDir::new();
    let path = write_file(
        dir.path(),
        "bad.toml",
        "[[http]]\nname = \"web\"\nlisten = \"127.0.0.1:8080\"\nbackends = []\nconect_timeout = \"1s\"\nheader_timeout = \"ten seconds\"\n",
    );
    let (code, _, err) = strata_cmd(&["check", "-c", path.to_str().unwrap()]);
    assert_eq!(code, 64, "{err}");
    let file = path.display().to_string();
    assert!(
        err.contains(&format!(
            "{file}:4:12: `http[0].backends`: the backend list is empty"
        )),
        "{err}"
    );
    assert!(err.contains(&format!("{file}:5:1: `http[0].conect_timeout`: unknown key (hint: did you mean `connect_timeout`?)")), "{err}");
    assert!(
        err.contains(&format!("{file}:6:18: `http[0].header_timeout`")),
        "{err}"
    );
    assert!(err.contains("has 3 problems; nothing was started"), "{err}");
}

#[test]
fn run_refuses_a_bad_config_the_same_way() {
    let dir = TempDir::new();
    let path = write_file(
        dir.path(),
        "bad.toml",
        "[[tcp]]\nname = \"x\"\nlisten = \"127.0.0.1:0\"\nbackends = [\"127.0.0.1:99999\"]\n",
    );
    let (code, _, err) = strata_cmd(&["run", "-c", path.to_str().unwrap()]);
    assert_eq!(code, 64, "{err}");
    assert!(
        err.contains("`tcp[0].backends[0]`: \"99999\" is not a port number"),
        "{err}"
    );
}

#[test]
fn run_without_a_config_exits_64_and_never_serves_the_demo() {
    if std::path::Path::new("/etc/strata/strata.toml").exists() {
        eprintln!(
            "skipped: /etc/strata/strata.toml exists on this machine, `strata run` would run it"
        );
        return;
    }
    let mut child = Command::new(STRATA)
        .arg("run")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn strata");
    // the old behaviour served the demo and never exited: don't wait for it forever
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("`strata run` without -c is still running after 10 s");
        }
        std::thread::park_timeout(Duration::from_millis(10));
    };
    let mut err = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut err)
        .expect("read stderr");
    assert_eq!(status.code(), Some(64), "{err}");
    assert!(err.contains("-c FILE"), "{err}");
    assert!(err.contains("strata demo"), "{err}");
    assert!(err.contains("/etc/strata/strata.toml"), "{err}");
}

#[test]
fn a_missing_file_is_named() {
    let (code, _, err) = strata_cmd(&["check", "-c", "/nonexistent/strata.toml"]);
    assert_eq!(code, 66);
    assert!(
        err.contains("cannot read config file /nonexistent/strata.toml"),
        "{err}"
    );
}

#[test]
fn a_missing_tls_file_fails_check() {
    let dir = TempDir::new();
    let path = write_file(
        dir.path(),
        "tls.toml",
        "[[http]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\nbackends = [\"127.0.0.1:9\"]\ntls = [{ cert = \"nope.pem\", key = \"nope.key\" }]\n",
    );
    let (code, _, err) = strata_cmd(&["check", "-c", path.to_str().unwrap()]);
    assert_eq!(code, 64, "{err}");
    assert!(
        err.contains("listener \"web\": TLS file") && err.contains("nope.pem"),
        "{err}"
    );
}

#[test]
fn every_example_config_passes_check() {
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let mut checked = 0;
    for entry in std::fs::read_dir(&examples).expect("examples/") {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let (code, out, err) = strata_cmd(&["check", "-c", path.to_str().unwrap()]);
            assert_eq!(code, 0, "{}: {err}", path.display());
            assert!(out.contains(": ok"), "{out}");
            checked += 1;
        }
    }
    assert!(checked >= 3, "only {checked} examples");
}
