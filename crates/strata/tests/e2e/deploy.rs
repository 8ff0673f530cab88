//! What deploy/ ships, checked with the tools that will read it: the Prometheus alert rules with
//! `promtool check rules` and their unit tests (`promtool test rules`), every Grafana query
//! parsed by promtool and the dashboard against its JSON schema, every metric either names is
//! one Strata exports, the systemd unit with `systemd-analyze verify`, and the Kubernetes
//! ConfigMap's config with `strata check`.

use crate::common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

fn deploy(path: &str) -> PathBuf {
    root().join("deploy").join(path)
}

/// Runs `program args` and returns its output; the test fails with it when it exits non-zero.
fn run_ok(program: &str, args: &[&str], dir: &Path) -> String {
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("run {program} (installed by scripts/test.sh): {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{program} {args:?} failed:\n{text}");
    text
}

/// Every PromQL expression of the Grafana dashboard, with its variables given values.
fn grafana_queries() -> Vec<String> {
    let text = std::fs::read_to_string(deploy("grafana/strata.json")).unwrap();
    let dash: serde_json::Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    let mut out = Vec::new();
    for panel in dash["panels"].as_array().unwrap() {
        for t in panel["targets"].as_array().into_iter().flatten() {
            let expr = t["expr"].as_str().unwrap();
            out.push(
                expr.replace("$__rate_interval", "5m")
                    .replace("$instance", ".*"),
            );
        }
    }
    out
}

#[test]
fn alert_rules_pass_promtool_and_each_alert_fires_in_its_unit_test() {
    let dir = deploy("prometheus");
    let checked = run_ok("promtool", &["check", "rules", "strata-rules.yml"], &dir);
    assert!(checked.contains("SUCCESS"), "{checked}");
    let tested = run_ok(
        "promtool",
        &["test", "rules", "strata-rules.test.yml"],
        &dir,
    );
    assert!(tested.contains("SUCCESS"), "{tested}");
    // every alert has a test that expects it to fire
    let rules = std::fs::read_to_string(dir.join("strata-rules.yml")).unwrap();
    let tests = std::fs::read_to_string(dir.join("strata-rules.test.yml")).unwrap();
    for line in rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
    {
        assert!(
            tests.contains(&format!(
                "alertname: {line}\n        exp_alerts:\n          - "
            )),
            "no test sees {line} fire"
        );
    }
    // the layers the issue names: no healthy backend, errors, VIP flapping and split brain,
    // shard ejected, Sentinel switch, replica lag, pool wait
    for alert in [
        "StrataNoHealthyBackend",
        "StrataHighErrorRatio",
        "StrataVipFlapping",
        "StrataVipSplitBrain",
        "StrataCacheServerEjected",
        "StrataCacheSentinelSwitch",
        "StrataDatabaseReplicaLag",
        "StrataDatabasePoolWait",
    ] {
        assert!(
            rules.contains(&format!("- alert: {alert}\n")),
            "{alert} missing"
        );
    }
}

#[test]
fn the_grafana_dashboard_matches_its_schema_and_every_query_parses() {
    let check = "import json, sys, jsonschema\n\
                 schema = json.load(open(sys.argv[1]))\n\
                 jsonschema.Draft202012Validator.check_schema(schema)\n\
                 jsonschema.Draft202012Validator(schema).validate(json.load(open(sys.argv[2])))\n\
                 print('valid')";
    let schema = deploy("grafana/dashboard.schema.json");
    let dash = deploy("grafana/strata.json");
    let out = run_ok(
        python().to_str().unwrap(),
        &[
            "-c",
            check,
            schema.to_str().unwrap(),
            dash.to_str().unwrap(),
        ],
        &root(),
    );
    assert!(out.contains("valid"), "{out}");

    // promtool parses each query as a recording rule
    let queries = grafana_queries();
    assert!(queries.len() >= 20, "{} queries", queries.len());
    let mut rules = String::from("groups:\n  - name: grafana\n    rules:\n");
    for (i, q) in queries.iter().enumerate() {
        rules.push_str(&format!(
            "      - record: strata:grafana_query:{i}\n        expr: {}\n",
            serde_json::to_string(q).unwrap()
        ));
    }
    let dir = TempDir::new();
    write_file(dir.path(), "queries.yml", &rules);
    let out = run_ok("promtool", &["check", "rules", "queries.yml"], dir.path());
    assert!(
        out.contains(&format!("SUCCESS: {} rules found", queries.len())),
        "{out}"
    );

    // panels do not overlap on Grafana's 24-column grid
    let dash: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&dash).unwrap()).unwrap();
    let mut taken = BTreeSet::new();
    for p in dash["panels"].as_array().unwrap() {
        let g = &p["gridPos"];
        let (x, y, w, h) = (
            g["x"].as_u64().unwrap(),
            g["y"].as_u64().unwrap(),
            g["w"].as_u64().unwrap(),
            g["h"].as_u64().unwrap(),
        );
        assert!(x + w <= 24, "{p}");
        for cx in x..x + w {
            for cy in y..y + h {
                assert!(
                    taken.insert((cx, cy)),
                    "panel {} overlaps another",
                    p["title"]
                );
            }
        }
    }
}

/// The `"strata_..."` names the crates write, with a histogram's series.
fn exported_metrics() -> BTreeSet<String> {
    fn walk(dir: &Path, out: &mut BTreeSet<String>) {
        for entry in std::fs::read_dir(dir).unwrap().map_while(Result::ok) {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                for piece in text.split('"').skip(1).step_by(2) {
                    if piece.starts_with("strata_")
                        && piece
                            .bytes()
                            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
                    {
                        out.insert(piece.to_string());
                    }
                }
            }
        }
    }
    let mut names = BTreeSet::new();
    for entry in std::fs::read_dir(root().join("crates"))
        .unwrap()
        .map_while(Result::ok)
    {
        let src = entry.path().join("src");
        if src.is_dir() {
            walk(&src, &mut names);
        }
    }
    names
}

#[test]
fn every_metric_the_rules_and_dashboard_name_is_one_strata_exports() {
    let exported = exported_metrics();
    assert!(
        exported.contains("strata_http_requests_total"),
        "{exported:?}"
    );
    let rules = std::fs::read_to_string(deploy("prometheus/strata-rules.yml")).unwrap();
    let mut used = BTreeSet::new();
    for text in grafana_queries().iter().chain([&rules]) {
        for word in text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
            if word.starts_with("strata_") {
                used.insert(word.to_string());
            }
        }
    }
    assert!(used.len() >= 25, "{used:?}");
    for name in &used {
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .unwrap_or(name);
        assert!(
            exported.contains(name) || exported.contains(family),
            "deploy/ names {name}, which no crate exports"
        );
    }
}

#[test]
fn the_systemd_unit_verifies_and_grants_only_what_vrrp_and_low_ports_need() {
    let unit = std::fs::read_to_string(deploy("systemd/strata.service")).unwrap();
    for line in [
        "AmbientCapabilities=CAP_NET_ADMIN CAP_NET_RAW CAP_NET_BIND_SERVICE",
        "CapabilityBoundingSet=CAP_NET_ADMIN CAP_NET_RAW CAP_NET_BIND_SERVICE",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
    ] {
        assert!(unit.lines().any(|l| l == line), "the unit lacks {line}");
    }
    // verified against the binary this build made
    let dir = TempDir::new();
    let local = unit.replace("/usr/local/bin/strata", env!("CARGO_BIN_EXE_strata"));
    let path = write_file(dir.path(), "strata.service", &local);
    // it exits 0 on an unknown key or a bad value, and says so: nothing said is the pass
    let said = run_ok(
        "systemd-analyze",
        &["verify", path.to_str().unwrap()],
        dir.path(),
    );
    assert_eq!(said.trim(), "", "systemd-analyze verify complains");
}

#[test]
fn the_kubernetes_config_map_holds_a_config_strata_accepts() {
    let manifest = deploy("kubernetes/strata.yaml");
    let extract = "import sys, yaml\n\
                   docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]\n\
                   kinds = sorted(d['kind'] for d in docs)\n\
                   assert kinds == ['ConfigMap', 'Deployment', 'PodDisruptionBudget', 'Service', 'Service'], kinds\n\
                   print(next(d for d in docs if d['kind'] == 'ConfigMap')['data']['strata.toml'])";
    let config = run_ok(
        python().to_str().unwrap(),
        &["-c", extract, manifest.to_str().unwrap()],
        &root(),
    );
    // the token comes from a Secret mounted at /etc/strata/admin/token
    let dir = TempDir::new();
    write_file(dir.path(), "token", "a-token-of-at-least-16-characters\n");
    let config = config.replace(
        "/etc/strata/admin/token",
        &dir.path().join("token").display().to_string(),
    );
    let path = write_file(dir.path(), "strata.toml", &config);
    let (code, out, err) = strata_cmd(&["check", "-c", path.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
}
