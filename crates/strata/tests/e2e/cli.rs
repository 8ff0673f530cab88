//! `strata check` and `strata run` on good and bad configs, and every example config.

use crate::common;

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
        out.contains("ok (1 http, 0 tcp listener(s), 0 cache pool(s), 0 database listener(s), 0 vip instance(s))"),
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
fn a_missing_tls_file_fails_check_and_run_alike() {
    let dir = TempDir::new();
    for (name, config) in [
        ("web", "[[http]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\nbackends = [\"127.0.0.1:9\"]\ntls = [{ cert = \"nope.pem\", key = \"nope.key\" }]\n"),
        ("app", "[[database]]\nname = \"app\"\nlisten = \"127.0.0.1:0\"\nservers = [\"127.0.0.1:9\"]\ntls = [{ cert = \"nope.pem\", key = \"nope.key\" }]\n[[database.users]]\nname = \"app\"\npassword = \"p\"\n"),
    ] {
        let path = write_file(dir.path(), &format!("{name}.toml"), config);
        for command in ["check", "run"] {
            let (code, _, err) = strata_cmd(&[command, "-c", path.to_str().unwrap()]);
            assert_eq!(code, 64, "{command}: {err}");
            assert!(
                err.contains(&format!("listener \"{name}\": TLS file")) && err.contains("nope.pem"),
                "{command}: {err}"
            );
        }
    }
}

#[test]
fn a_missing_backend_ca_fails_check() {
    let dir = TempDir::new();
    let path = write_file(
        dir.path(),
        "ca.toml",
        "[[http]]\nname = \"grpc\"\nlisten = \"127.0.0.1:0\"\nbackends = [\"127.0.0.1:9\"]\nbackend_protocol = \"h2\"\nbackend_ca = \"no-ca.pem\"\n",
    );
    let (code, _, err) = strata_cmd(&["check", "-c", path.to_str().unwrap()]);
    assert_eq!(code, 64, "{err}");
    assert!(
        err.contains("listener \"grpc\": TLS file") && err.contains("no-ca.pem"),
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

const VIP_NODE: &str = "[[vip]]\nname = \"front\"\ninterface = \"eth0\"\nvrid = 51\npriority = PRIO\nadvert_interval = \"100ms\"\naddresses = [\"10.0.0.100/24\"]\nTRACK\n";

#[test]
fn check_accepts_a_gateway_that_runs_only_a_vip() {
    let dir = TempDir::new();
    let text = VIP_NODE.replace("PRIO", "200").replace("TRACK", "");
    let path = write_file(dir.path(), "gw.toml", &text);
    let (code, out, err) = strata_cmd(&["check", "-c", path.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("0 cache pool(s), 0 database listener(s), 1 vip instance(s))"),
        "{out}"
    );
    assert!(err.is_empty(), "{err}");
}

#[test]
fn check_refuses_a_vip_written_wrong_with_line_and_why() {
    let dir = TempDir::new();
    let path = write_file(
        dir.path(),
        "bad.toml",
        "[[vip]]\nname = \"a\"\ninterface = \"eth0\"\nvrid = 51\nadvert_interval = \"15ms\"\n\
         addresses = [\"10.0.0.100/24\", \"fd00::1/64\"]\nunicast_peers = [\"10.0.0.2:112\"]\n\
         track = [\"http:nope\", { interface = \"eth1\", weight = -300 }]\n\
         [[vip]]\nname = \"b\"\ninterface = \"eth0\"\nvrid = 51\naddresses = [\"10.0.0.101\"]\n",
    );
    let (code, _, err) = strata_cmd(&["check", "-c", path.to_str().unwrap()]);
    assert_eq!(code, 64, "{err}");
    let file = path.display().to_string();
    for expected in [
        format!("{file}:5:19: `vip[0].advert_interval`: 15ms cannot be sent: VRRPv3 carries the interval in centiseconds"),
        format!("{file}:6:31: `vip[0].addresses[1]`: \"fd00::1\" is IPv6: this version runs VRRP for IPv4 only"),
        format!("{file}:7:18: `vip[0].unicast_peers[0]`: \"10.0.0.2:112\" is not an IPv4 address"),
        format!("{file}:8:10: `vip[0].track[0]`: this config has no [[http]] named \"nope\""),
        format!("{file}:8:54: `vip[0].track[1].weight`: -300 is out of range (-254 to 254)"),
        format!("{file}:12:8: `vip[1].vrid`: vrid 51 on eth0 is already used by `vip[0]`"),
    ] {
        assert!(err.contains(&expected), "no {expected:?} in:\n{err}");
    }
}

#[test]
fn check_of_two_nodes_says_when_a_weight_cannot_move_the_address() {
    let dir = TempDir::new();
    let a = write_file(
        dir.path(),
        "a.toml",
        &VIP_NODE
            .replace("PRIO", "200")
            .replace("TRACK", "track = [{ interface = \"eth1\", weight = -50 }]"),
    );
    let b = write_file(
        dir.path(),
        "b.toml",
        &VIP_NODE.replace("PRIO", "100").replace("TRACK", ""),
    );
    let (code, _, err) = strata_cmd(&["check", "-c", a.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("check the nodes' configs together"), "{err}");
    let (code, out, err) = strata_cmd(&[
        "check",
        "-c",
        a.to_str().unwrap(),
        "-c",
        b.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.matches(": ok (").count(), 2, "{out}");
    assert!(
        err.contains("when interface:eth1 fails its priority goes from 200 to 150, not below 100"),
        "{err}"
    );
    // a weight that does cross the gap says nothing
    let a2 = write_file(
        dir.path(),
        "a2.toml",
        &VIP_NODE
            .replace("PRIO", "200")
            .replace("TRACK", "track = [{ interface = \"eth1\", weight = -150 }]"),
    );
    let (_, _, err) = strata_cmd(&[
        "check",
        "-c",
        a2.to_str().unwrap(),
        "-c",
        b.to_str().unwrap(),
    ]);
    assert!(!err.contains("warning"), "{err}");
}

#[test]
fn bash_completes_subcommands_and_options_from_the_completion_script() {
    let (code, script, err) = strata_cmd(&["completions", "bash"]);
    assert_eq!(code, 0, "{err}");
    let dir = TempDir::new();
    let path = write_file(dir.path(), "strata.bash", &script);
    // what bash's programmable completion calls when the user presses TAB after `strata ch`
    let complete = |words: &str, cword: usize| {
        let out = std::process::Command::new("bash")
            .arg("-c")
            .arg(format!(
                "source {}; COMP_WORDS=({words}); COMP_CWORD={cword}; COMP_LINE='{words}'; \
                 COMP_POINT=${{#COMP_LINE}}; _strata strata \"${{COMP_WORDS[$COMP_CWORD]}}\" \
                 \"${{COMP_WORDS[$COMP_CWORD-1]}}\"; echo \"${{COMPREPLY[@]}}\"",
                path.display()
            ))
            .output()
            .expect("run bash");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(complete("strata ch", 1), "check");
    assert!(complete("strata run --", 2).contains("--config"));
    assert!(complete("strata completions ''", 2).contains("fish"));
    for shell in ["zsh", "fish"] {
        let (code, script, err) = strata_cmd(&["completions", shell]);
        assert_eq!(code, 0, "{err}");
        for sub in ["run", "check", "import", "demo", "completions"] {
            assert!(script.contains(sub), "{shell} script lacks {sub}");
        }
    }
}
