//! A real etcd (Debian's etcd-server) for the config-from-etcd tests, on free loopback ports
//! with a data directory of its own; etcdctl (etcd-client) writes keys.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{free_ports, TempDir};

pub struct Etcd {
    pub addr: SocketAddr,
    peer: u16,
    child: Option<Child>,
    dir: TempDir,
}

impl Etcd {
    /// Starts one and waits until it answers a read.
    pub fn start() -> Etcd {
        let ports = free_ports(2);
        let mut etcd = Etcd {
            addr: format!("127.0.0.1:{}", ports[0]).parse().unwrap(),
            peer: ports[1],
            child: None,
            dir: TempDir::new(),
        };
        etcd.restart();
        etcd
    }

    /// Starts it again (after [`Etcd::kill`]) on the same ports and data.
    pub fn restart(&mut self) {
        let client = format!("http://{}", self.addr);
        let peer = format!("http://127.0.0.1:{}", self.peer);
        let child = Command::new("etcd")
            .args(["--name", "test", "--data-dir"])
            .arg(self.dir.path().join("data"))
            .args([
                "--listen-client-urls",
                &client,
                "--advertise-client-urls",
                &client,
            ])
            .args([
                "--listen-peer-urls",
                &peer,
                "--initial-advertise-peer-urls",
                &peer,
            ])
            .args(["--initial-cluster", &format!("test={peer}")])
            .args(["--log-level", "error"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn etcd (Debian's etcd-server, installed by scripts/test.sh)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.ctl(&["get", "/ready-probe"]).is_err() {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!("etcd exited with {status}");
            }
            assert!(Instant::now() < deadline, "etcd did not answer in time");
            // between probes (each one runs etcdctl)
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `etcdctl ARGS` against this etcd: its stdout, or its stderr as the error.
    fn ctl(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", self.addr))
            .args(["--dial-timeout", "1s", "--command-timeout", "2s"])
            .args(args)
            .output()
            .map_err(|e| format!("run etcdctl: {e}"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// Writes `value` at `key`: the store's revision after the write.
    pub fn put(&self, key: &str, value: &str) -> i64 {
        // `--` so a value starting with `-` is not an option; the JSON says the revision
        let out = self
            .ctl(&["-w", "json", "put", "--", key, value])
            .expect("etcdctl put");
        let v: serde_json::Value = serde_json::from_str(&out).expect("etcdctl's JSON");
        v["header"]["revision"].as_i64().expect("a revision")
    }

    /// Deletes `key`.
    pub fn delete(&self, key: &str) {
        self.ctl(&["del", key]).expect("etcdctl del");
    }

    /// Watches open on it now (etcd's own gauge): a node that watches has read the key first.
    pub async fn watchers(&self) -> u64 {
        let body = super::get_once(self.addr, "/metrics").await.body;
        super::metric(&body, "etcd_debugging_mvcc_watcher_total", "").map_or(0, |v| v as u64)
    }

    /// The key's URL for `strata run -c`.
    pub fn url(&self, key: &str) -> String {
        format!("etcd://{}{key}", self.addr)
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.kill();
    }
}
