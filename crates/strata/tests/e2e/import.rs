//! `strata import twemproxy`, `keepalived`, `pgbouncer` and `haproxy` as a user runs them: sample
//! configs (and one with every key) against golden files, `strata check` on what they print, a
//! translated pool finding every key where a real nutcracker put it, a translated PgBouncer
//! listener taking its userlist's logins to a real PostgreSQL, and a translated HAProxy listener
//! spreading requests over its servers as a real HAProxy does.

use crate::common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::postgres::{psql, Postgres};
use common::redis::{Nutcracker, Redis, Resp};
use common::{eventually, free_port, get_once, strata_cmd, write_file, Nginx, Strata, TempDir};

/// One `strata import` source and its fixtures.
struct Fixtures {
    /// The subcommand: `twemproxy`, `keepalived`, `pgbouncer`.
    source: &'static str,
    /// Relative to the package root (where cargo runs tests), so that the path the golden files
    /// quote is the same on every machine.
    dir: &'static str,
    /// What a fixture's file name ends in after its name; its golden files are the name then
    /// `.toml` (stdout) and `.stderr`.
    ending: &'static str,
    samples: &'static [&'static str],
    /// Written for these tests: every key the translation reads, and each case it treats apart.
    every_key: &'static str,
}

const TWEMPROXY: Fixtures = Fixtures {
    source: "twemproxy",
    dir: "tests/fixtures/twemproxy",
    ending: ".yml",
    // twemproxy's conf/ directory
    samples: &["nutcracker", "nutcracker.leaf", "nutcracker.root"],
    every_key: "every_key",
};

const KEEPALIVED: Fixtures = Fixtures {
    source: "keepalived",
    dir: "tests/fixtures/keepalived",
    ending: "",
    // configs as keepalived users write them (our own, not keepalived's GPL samples): a pair of
    // web gateways with tracking and notify, and a cloud pair with unicast peers and VRRPv2
    samples: &["gateway.conf", "cloud.conf"],
    every_key: "every_key.conf",
};

const PGBOUNCER: Fixtures = Fixtures {
    source: "pgbouncer",
    dir: "tests/fixtures/pgbouncer",
    ending: "",
    // configs as PgBouncer users write them (our own, not PgBouncer's samples): a web
    // application's pooler in transaction mode, and a reporting pool over two replicas, both
    // with userlist.txt beside them
    samples: &["webapp.ini", "reporting.ini"],
    every_key: "every_key.ini",
};

const HAPROXY: Fixtures = Fixtures {
    source: "haproxy",
    dir: "tests/fixtures/haproxy",
    ending: "",
    // configs as HAProxy users write them, after HAProxy's examples/ (our own, not copies): a
    // shop's TLS edge, content switching by ACLs, and TCP services
    samples: &["edge.cfg", "content-switch.cfg", "tcp.cfg"],
    every_key: "every_key.cfg",
};

/// The package's directory, where the tests run, as the golden files write it: a path a
/// translation writes absolute (PgBouncer's auth_file) reads the same on every machine.
const PACKAGE: &str = "$CARGO_MANIFEST_DIR";

impl Fixtures {
    /// `strata import` of the fixture `name`: its exit code, stdout and stderr.
    fn import(&self, name: &str) -> (i32, String, String) {
        let file = format!("{}/{name}{}", self.dir, self.ending);
        strata_cmd(&["import", self.source, &file])
    }

    /// Each fixture's output and notes are its golden files, the package's directory written
    /// [`PACKAGE`].
    fn print_the_golden_files(&self) {
        let here = std::env::current_dir().unwrap().display().to_string();
        for name in self.samples.iter().chain([&self.every_key]) {
            let (code, out, err) = self.import(name);
            assert_eq!(code, 0, "{name}: {err}");
            golden(
                self.dir,
                &format!("{name}.toml"),
                &out.replace(&here, PACKAGE),
            );
            golden(
                self.dir,
                &format!("{name}.stderr"),
                &err.replace(&here, PACKAGE),
            );
        }
    }

    /// Each sample's translation passes `strata check`: its name, and what the check printed.
    fn checked_samples(&self) -> Vec<(&'static str, String)> {
        let dir = TempDir::new();
        let mut checked = Vec::new();
        for name in self.samples {
            let (code, out, err) = self.import(name);
            assert_eq!(code, 0, "{name}: {err}");
            let path = write_file(dir.path(), &format!("{name}.toml"), &out);
            let (code, out, err) = strata_cmd(&["check", "-c", path.to_str().unwrap()]);
            assert_eq!(code, 0, "{name}: {out}{err}");
            checked.push((*name, out));
        }
        checked
    }

    /// `strata check` refuses the translation of `every_key` for exactly the keys `kept`
    /// (sorted), the lines kept as written, and the output marks each of them.
    fn kept_lines_are_refused(&self, kept: &[&str]) {
        let (code, out, err) = self.import(self.every_key);
        assert_eq!(code, 0, "{err}");
        let dir = TempDir::new();
        let path = write_file(dir.path(), "every_key.toml", &out);
        let (code, _, err) = strata_cmd(&["check", "-c", path.to_str().unwrap()]);
        assert_eq!(code, 64, "{err}");
        let mut refused: Vec<&str> = err.lines().filter_map(|l| l.split('`').nth(1)).collect();
        refused.sort_unstable();
        assert_eq!(refused, kept, "{err}");
        // a left-out section's lines are comments, which strata check does not read
        let marked = out
            .lines()
            .filter(|l| !l.starts_with('#') && l.contains("# kept as written"))
            .count();
        assert_eq!(marked, refused.len(), "{out}");
    }

    /// The import of `text`, written to a file `name`, which must be refused with nothing
    /// printed: the file's path and stderr.
    fn refused(&self, name: &str, text: &str) -> (String, String) {
        let dir = TempDir::new();
        let path = write_file(dir.path(), name, text);
        let file = path.to_str().unwrap().to_string();
        let (code, out, err) = strata_cmd(&["import", self.source, &file]);
        assert_eq!(code, 64, "{err}");
        assert_eq!(out, "");
        (file, err)
    }

    /// The import of `path`, which does not exist, exits 66 and says so.
    fn missing_file_exits_66(&self, path: &str) {
        let (code, out, err) = strata_cmd(&["import", self.source, path]);
        assert_eq!(code, 66, "{err}");
        assert_eq!(out, "");
        assert!(
            err.starts_with(&format!("strata: cannot read {path}: ")),
            "{err}"
        );
    }
}

/// Compares `actual` with the golden file `name` in `dir`; with `STRATA_BLESS=1` in the
/// environment, writes it instead.
fn golden(dir: &str, name: &str, actual: &str) {
    let path = Path::new(dir).join(name);
    if std::env::var_os("STRATA_BLESS").is_some() {
        std::fs::write(&path, actual).expect("write golden file");
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (STRATA_BLESS=1 writes it)", path.display()));
    assert!(
        actual == expected,
        "{} differs (`STRATA_BLESS=1 cargo test -p strata --test e2e import::` rewrites it after a \
         change that is meant)\n--- expected\n{expected}\n--- actual\n{actual}",
        path.display()
    );
}

/// A translation as printed, listening on free ports, without its comments (a left-out
/// section's commented `[[cache]]` or `[[database]]` would count as a listener).
fn on_free_ports(out: &str) -> Vec<String> {
    out.lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| {
            if l.starts_with("listen = ") {
                "listen = \"127.0.0.1:0\"".to_string()
            } else {
                l.to_string()
            }
        })
        .collect()
}

#[test]
fn import_twemproxy_prints_the_golden_config_and_notes_for_each_fixture() {
    TWEMPROXY.print_the_golden_files();
}

#[test]
fn import_twemproxy_translations_of_the_sample_configs_pass_strata_check() {
    TWEMPROXY.checked_samples();
}

#[test]
fn import_twemproxy_translations_of_the_sample_configs_run() {
    for name in TWEMPROXY.samples {
        let (code, out, err) = TWEMPROXY.import(name);
        assert_eq!(code, 0, "{name}: {err}");
        // the samples' own ports (22120-22124) may be taken here
        let config = on_free_ports(&out);
        let pools: Vec<&str> = out
            .lines()
            .filter_map(|l| l.strip_prefix("name = \""))
            .filter_map(|l| l.strip_suffix('"'))
            .collect();
        let strata = Strata::start(&config.join("\n"));
        for pool in pools {
            strata.addr(&format!("cache:{pool}"));
        }
    }
}

#[test]
fn import_twemproxy_lines_kept_as_written_are_what_strata_check_refuses() {
    // pool `sessions` (the second): its redis_db, and every server but servers[4]
    TWEMPROXY.kept_lines_are_refused(&[
        "cache[1].redis_db",
        "cache[1].servers[0]",
        "cache[1].servers[1]",
        "cache[1].servers[2]",
        "cache[1].servers[3]",
        "cache[1].servers[5]",
    ]);
}

#[test]
fn import_twemproxy_refuses_a_file_twemproxy_would_refuse_and_prints_nothing() {
    let (file, err) = TWEMPROXY.refused(
        "bad.yml",
        "alpha:\n  listen: 127.0.0.1:22121\n  timeout: 400ms\n  servers:\n   - 127.0.0.1:6379:1\n   - 127.0.0.1:6380\n",
    );
    assert_eq!(
        err,
        format!(
            "{file}:3:12: `alpha.timeout`: \"400ms\": not a number (twemproxy takes digits only)\n\
             {file}:6:6: `alpha.servers[1]`: \"127.0.0.1:6380\" is not \"host:port:weight [name]\" (or \"/path/to/socket:weight [name]\")\n\
             strata: {file} has 2 problems; nothing was translated\n"
        )
    );
}

#[test]
fn import_twemproxy_of_a_missing_file_exits_66() {
    TWEMPROXY.missing_file_exits_66("/nonexistent/nutcracker.yml");
}

#[test]
fn import_keepalived_prints_the_golden_config_and_notes_for_each_fixture() {
    KEEPALIVED.print_the_golden_files();
}

#[test]
fn import_keepalived_translations_of_the_sample_configs_pass_strata_check() {
    for (name, out) in KEEPALIVED.checked_samples() {
        // every vrrp_instance is a [[vip]] that runs
        let instances = std::fs::read_to_string(Path::new(KEEPALIVED.dir).join(name))
            .unwrap()
            .lines()
            .filter(|l| l.trim_start().starts_with("vrrp_instance"))
            .count();
        assert!(
            out.contains(&format!("{instances} vip instance(s)")),
            "{name}: {out}"
        );
    }
}

#[test]
fn import_keepalived_lines_kept_as_written_are_what_strata_check_refuses() {
    // instance `kept` (the fourth [[vip]]; the IPv6 one and the unicast one without an
    // interface are comments): its vrid, which `front` has on eth0 too, its tracked file and
    // its `reverse` weight
    KEEPALIVED.kept_lines_are_refused(&[
        "vip[3].track[0]",
        "vip[3].track[1].reverse",
        "vip[3].vrid",
    ]);
}

#[test]
fn import_keepalived_refuses_a_file_keepalived_would_refuse_and_prints_nothing() {
    let (file, err) = KEEPALIVED.refused(
        "keepalived.conf",
        "vrrp_instance VI_1 {\n    interface eth0\n    virtual_router_id 51\n    virtual_ipaddress {\n        10.0.0.100/24\n}\n",
    );
    assert_eq!(
        err,
        format!(
            "{file}:1:20: `vrrp_instance VI_1`: this `{{` is never closed: a `}}` is missing below it\n\
             strata: {file} has 1 problem; nothing was translated\n"
        )
    );
    let (file, err) = KEEPALIVED.refused(
        "extra.conf",
        "vrrp_instance VI_1 {\n    interface eth0\n}\n}\n",
    );
    assert!(
        err.starts_with(&format!(
            "{file}:4:1: a `}}` with no `{{` open before it: the braces above are unbalanced\n"
        )),
        "{err}"
    );
}

#[test]
fn import_keepalived_of_a_missing_file_exits_66() {
    KEEPALIVED.missing_file_exits_66("/nonexistent/keepalived.conf");
}

#[test]
fn import_pgbouncer_prints_the_golden_config_and_notes_for_each_fixture() {
    PGBOUNCER.print_the_golden_files();
}

#[test]
fn import_pgbouncer_translations_of_the_sample_configs_pass_strata_check() {
    PGBOUNCER.checked_samples();
}

#[test]
fn import_pgbouncer_translations_of_the_sample_configs_run() {
    for name in PGBOUNCER.samples {
        let (code, out, err) = PGBOUNCER.import(name);
        assert_eq!(code, 0, "{name}: {err}");
        // the samples' own ports (6432, 6433) may be taken here
        let config = on_free_ports(&out);
        let strata = Strata::start(&config.join("\n"));
        strata.addr("database:pgbouncer");
    }
}

#[test]
fn import_pgbouncer_lines_kept_as_written_are_what_strata_check_refuses() {
    // the statement pool mode, the hba logins and the limit of 0 clients; the server given
    // by host name; the databases on other servers (legacy, local), under another name
    // (billing) and logging in as another user (audit)
    PGBOUNCER.kept_lines_are_refused(&[
        "database[0].auth_type",
        "database[0].databases.audit",
        "database[0].databases.billing",
        "database[0].databases.legacy",
        "database[0].databases.local",
        "database[0].max_client_connections",
        "database[0].pool_mode",
        "database[0].servers[1]",
    ]);
}

#[test]
fn import_pgbouncer_refuses_a_file_pgbouncer_would_refuse_and_prints_nothing() {
    let (file, err) = PGBOUNCER.refused(
        "pgbouncer.ini",
        "[pgbouncer]\nlisten_addr = *\nlisten_port = 6432 ; the usual port\n[databases]\napp = host=10.0.0.1 sslmode=require\n",
    );
    assert_eq!(
        err,
        format!(
            "{file}:3:15: `pgbouncer.listen_port`: \"6432 ; the usual port\": not a whole number, which PgBouncer refuses\n\
             {file}:5:21: `databases.app`: PgBouncer has no connection parameter `sslmode`\n\
             strata: {file} has 2 problems; nothing was translated\n"
        )
    );
    let (file, err) = PGBOUNCER.refused("syntax.ini", "[pgbouncer\n");
    assert_eq!(
        err,
        format!(
            "{file}:1:1: this `[` has no `]` after it on its line\n\
             strata: {file} has 1 problem; nothing was translated\n"
        )
    );
}

#[test]
fn import_pgbouncer_of_a_missing_file_exits_66() {
    PGBOUNCER.missing_file_exits_66("/nonexistent/pgbouncer.ini");
}

#[test]
fn import_pgbouncer_listener_takes_the_userlists_logins_to_each_database() {
    let pg = Postgres::start();
    pg.user_and_database("app", "secret");
    // the userlist beside the ini, named relative to it, as PgBouncer users often write it
    let dir = TempDir::new();
    write_file(dir.path(), "userlist.txt", "\"app\" \"secret\"\n");
    let ini = format!(
        "[databases]\napp = host=127.0.0.1 port={port}\n* = host=127.0.0.1 port={port}\n\n\
         [pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = 6432\nauth_type = scram-sha-256\n\
         auth_file = userlist.txt\npool_mode = transaction\n",
        port = pg.addr.port()
    );
    let path = write_file(dir.path(), "pgbouncer.ini", &ini);
    let (code, toml, err) = strata_cmd(&["import", "pgbouncer", path.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("`pgbouncer.auth_file`: \"userlist.txt\" is relative"),
        "{err}"
    );
    // on a free port; the comments go too, as they name [[database]], which would count as one
    let config: Vec<&str> = toml.lines().filter(|l| !l.starts_with('#')).collect();
    let strata = Strata::start(&config.join("\n").replace("127.0.0.1:6432", "127.0.0.1:0"));
    let db = strata.addr("database:pgbouncer");
    let sql = "select current_database(), current_user";
    // a database the ini lists, and one it does not (through `*`)
    assert_eq!(
        psql(db, "app", "secret", "app", sql).as_deref(),
        Ok("app|app")
    );
    assert_eq!(
        psql(db, "app", "secret", "postgres", sql).as_deref(),
        Ok("postgres|app")
    );
    assert!(psql(db, "app", "wrong", "app", sql).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_twemproxy_pool_finds_every_key_where_nutcracker_put_it() {
    let redis = [
        Redis::start().await,
        Redis::start().await,
        Redis::start().await,
    ];
    let port = free_port();
    let listen: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    // what the translation must spell out to keep keys in place: a named server, a port
    // written with a leading 0 (twemproxy names the server by the text), unequal weights
    let yaml = format!(
        "shop:\n  listen: {listen}\n  hash: murmur\n  hash_tag: \"{{}}\"\n  redis: true\n  timeout: 2000\n  servers:\n   - {}:1 first\n   - 127.0.0.1:0{}:2\n   - {}:3\n",
        redis[0].addr,
        redis[1].addr.port(),
        redis[2].addr
    );
    let dir = TempDir::new();
    let path = write_file(dir.path(), "nutcracker.yml", &yaml);
    let (code, toml, err) = strata_cmd(&["import", "twemproxy", path.to_str().unwrap()]);
    assert_eq!((code, err.as_str()), (0, ""), "{toml}");
    assert!(
        toml.contains(&format!(
            "\"{}:2 127.0.0.1:0{}\"",
            redis[1].addr,
            redis[1].addr.port()
        )),
        "{toml}"
    );
    let nutcracker = Nutcracker::start(&yaml, &[listen]).await;
    let strata = Strata::start(&toml.replace(&listen.to_string(), "127.0.0.1:0"));

    let keys: Vec<Vec<u8>> = (0..3000)
        .map(|i| match i % 4 {
            0 => format!("{{user{}}}:cart", i % 101).into_bytes(),
            _ => format!("item:{i}").into_bytes(),
        })
        .collect();
    let mut via_nutcracker = Resp::connect(nutcracker.listens[0]).await.unwrap();
    let mut via_strata = Resp::connect(strata.addr("cache:shop")).await.unwrap();
    let mut elsewhere = 0;
    for chunk in keys.chunks(500) {
        let sets: Vec<Vec<Vec<u8>>> = chunk
            .iter()
            .map(|k| vec![b"SET".to_vec(), k.clone(), k.clone()])
            .collect();
        for r in via_nutcracker.pipeline(&sets).await {
            assert_eq!(&r[..], b"+OK\r\n");
        }
        let gets: Vec<Vec<Vec<u8>>> = chunk
            .iter()
            .map(|k| vec![b"GET".to_vec(), k.clone()])
            .collect();
        for (k, r) in chunk.iter().zip(via_strata.pipeline(&gets).await) {
            let want = [format!("${}\r\n", k.len()).as_bytes(), k, b"\r\n"].concat();
            elsewhere += usize::from(r[..] != want[..]);
        }
    }
    // the keys spread over every server, or the test would prove little
    for r in &redis {
        assert!(r.keys().await.len() > 100, "{} holds few keys", r.addr);
    }
    assert_eq!(
        elsewhere, 0,
        "keys Strata looked for elsewhere than nutcracker put them"
    );
    drop(nutcracker);
}

#[test]
fn import_haproxy_prints_the_golden_config_and_notes_for_each_fixture() {
    HAPROXY.print_the_golden_files();
}

#[test]
fn import_haproxy_fixtures_are_configs_haproxy_accepts() {
    for name in HAPROXY.samples.iter().chain([&HAPROXY.every_key]) {
        let path = Path::new(HAPROXY.dir).join(name);
        let out = Command::new(haproxy())
            .arg("-c")
            .arg("-f")
            .arg(&path)
            .output()
            .expect("run haproxy -c");
        let said = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && said.contains("Configuration file is valid"),
            "{name}: {said}"
        );
    }
}

#[test]
fn import_haproxy_translations_of_the_sample_configs_pass_strata_check() {
    for (name, out) in HAPROXY.checked_samples() {
        // every listener not left out (the stats frontend of edge.cfg has no backend)
        let (code, toml, _) = HAPROXY.import(name);
        assert_eq!(code, 0);
        let (http, tcp) = (
            toml.matches("\n[[http]]\n").count(),
            toml.matches("\n[[tcp]]\n").count(),
        );
        assert!(
            out.contains(&format!("{http} http, {tcp} tcp listener(s)")),
            "{name}: {out}"
        );
    }
}

#[test]
fn import_haproxy_translations_of_the_sample_configs_run() {
    for name in HAPROXY.samples {
        let (code, out, err) = HAPROXY.import(name);
        assert_eq!(code, 0, "{name}: {err}");
        // the samples' own addresses (10.0.0.10, port 443...) are not this machine's
        let config = on_free_ports(&out);
        let strata = Strata::start(&config.join("\n"));
        for name in out
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.strip_prefix("name = \""))
            .filter_map(|l| l.strip_suffix('"'))
        {
            let layer = if out.contains(&format!("[[tcp]]\nname = \"{name}\"")) {
                "tcp"
            } else {
                "http"
            };
            strata.addr(&format!("{layer}:{name}"));
        }
    }
}

#[test]
fn import_haproxy_lines_kept_as_written_are_what_strata_check_refuses() {
    // listener `www-3` (the third [[http]]: TLS on [::]:8443), the servers of backend
    // `weighted` Strata can't reach as HAProxy did: a host name, a unix socket, TLS, the PROXY
    // protocol, one address twice, an environment variable; and the TCP listeners ending TLS
    // (`passthrough`, and `sockets-4` with its crt-list)
    HAPROXY.kept_lines_are_refused(&[
        "http[2].backends[3]",
        "http[2].backends[4]",
        "http[2].backends[5]",
        "http[2].backends[6]",
        "http[2].backends[7]",
        "http[2].backends[8]",
        "tcp[0].tls",
        "tcp[1].tls",
    ]);
}

#[test]
fn import_haproxy_refuses_a_file_haproxy_would_refuse_and_prints_nothing() {
    let (file, err) = HAPROXY.refused(
        "haproxy.cfg",
        "frontend www\n  bind :80\n  default_backend app\nbackend app\n  server a 10.0.0.1:80 weight 300\n  timeout server 30x\n",
    );
    assert_eq!(
        err,
        format!(
            "{file}:5:31: `app.server a`: \"300\" is not a weight (0 to 256)\n\
             {file}:6:18: `app.timeout server`: \"30x\": unexpected 'x' (the units are us, ms, s, m, h and d)\n\
             strata: {file} has 2 problems; nothing was translated\n"
        )
    );
    let (file, err) = HAPROXY.refused("quote.cfg", "global\n  log \"127.0.0.1 local0\n");
    assert_eq!(
        err,
        format!(
            "{file}:2:7: this quote is never closed on its line: HAProxy refuses it (\"unmatched quote\")\n\
             strata: {file} has 1 problem; nothing was translated\n"
        )
    );
}

#[test]
fn import_haproxy_of_a_missing_file_exits_66() {
    HAPROXY.missing_file_exits_66("/nonexistent/haproxy.cfg");
}

/// Debian's haproxy, which scripts/test.sh installs.
fn haproxy() -> &'static str {
    ["/usr/sbin/haproxy", "/usr/bin/haproxy"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("haproxy is not installed: run ./scripts/test.sh, which installs it")
}

/// A real HAProxy in the foreground with a config; killed when dropped.
struct Haproxy {
    child: Child,
}

impl Haproxy {
    /// Starts HAProxy on `cfg` and waits until it accepts connections on `addr`.
    async fn start(cfg: &Path, addr: SocketAddr) -> Haproxy {
        let child = Command::new(haproxy())
            .arg("-db")
            .arg("-f")
            .arg(cfg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn haproxy");
        let haproxy = Haproxy { child };
        eventually(Duration::from_secs(10), "haproxy listens", || async {
            tokio::net::TcpStream::connect(addr).await.is_ok()
        })
        .await;
        haproxy
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How many of `n` GETs (each on its connection) through `addr` each nginx answered, once every
/// server answers.
async fn spread(addr: SocketAddr, n: usize) -> (usize, usize) {
    eventually(Duration::from_secs(10), "both servers answer", || async {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..8 {
            seen.insert(get_once(addr, "/").await.body);
        }
        seen.len() == 2
    })
    .await;
    let mut counts = (0, 0);
    for _ in 0..n {
        match get_once(addr, "/").await.body.as_str() {
            "nginx a\n" => counts.0 += 1,
            "nginx b\n" => counts.1 += 1,
            other => panic!("{addr}: {other:?}"),
        }
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_haproxy_listener_spreads_requests_over_the_servers_as_haproxy_does() {
    let (a, b) = (Nginx::start("a").await, Nginx::start("b").await);
    let listen: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    // weights, a check, a backup HAProxy does not use while the others are up, and a server
    // whose checks fail
    let cfg = format!(
        "global\n  nbthread 1\ndefaults\n  mode http\n  timeout connect 1s\n  timeout client 5s\n  timeout server 5s\n\
         frontend web\n  bind {listen}\n  default_backend app\n\
         backend app\n  balance roundrobin\n  option httpchk GET /healthz\n  default-server check inter 200ms fall 1 rise 1\n\
         \x20 server a {} weight 1\n  server b {} weight 3\n  server down 127.0.0.1:{}\n  server spare 127.0.0.1:{} backup\n",
        a.addr,
        b.addr,
        free_port(),
        free_port(),
    );
    let dir = TempDir::new();
    let path = write_file(dir.path(), "haproxy.cfg", &cfg);
    let (code, toml, err) = strata_cmd(&["import", "haproxy", path.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(
        toml.contains("health = { path = \"/healthz\", interval = \"200ms\", timeout = \"200ms\", rise = 1, fall = 1 }"),
        "{toml}"
    );
    assert!(
        err.contains("`app.server spare`: `backup` not translated"),
        "{err}"
    );
    let haproxy = Haproxy::start(&path, listen).await;
    let strata = Strata::start(&on_free_ports(&toml).join("\n"));
    let through_haproxy = spread(listen, 40).await;
    let through_strata = spread(strata.addr("http:web"), 40).await;
    // smooth weighted round robin in both: 1 in 4 to a, over every 4 requests
    assert_eq!(through_haproxy, (10, 30));
    assert_eq!(through_strata, through_haproxy);
    drop(haproxy);
}

#[test]
fn a_file_name_with_a_newline_stays_inside_the_comment_that_names_it() {
    let dir = TempDir::new();
    let yml = std::fs::read_to_string("tests/fixtures/twemproxy/nutcracker.yml").unwrap();
    // a name a shell can make: a newline, then what would be a live table
    let path = write_file(
        dir.path(),
        "pools\n[admin]\nlisten = \"0.0.0.0:9\"\n.yml",
        &yml,
    );
    let (code, out, err) = strata_cmd(&["import", "twemproxy", path.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(
        !out.lines().any(|l| l.starts_with("[admin]")),
        "the file's name became config:\n{out}"
    );
    assert!(out.contains("pools\\n[admin]"), "{out}");
}
