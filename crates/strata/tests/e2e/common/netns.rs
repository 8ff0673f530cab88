//! Hosts made of network namespaces for the entry layer's tests: a switch namespace with a
//! bridge, and hosts whose `eth0` is a veth plugged into it, each with 10.77.0.N/24. Every
//! name is the lab's own (several labs run at once), and dropping the lab deletes them all.
//! Needs root (CAP_SYS_ADMIN, CAP_NET_ADMIN); CI runs as root.

use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

/// The lab's subnet; each host N (from 1) has 10.77.0.N.
pub const SUBNET: [u8; 3] = [10, 77, 0];

/// A bridge and its hosts.
pub struct Lab {
    prefix: String,
    hosts: Vec<String>,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run ip (iproute2)");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn ip_out(args: &[&str]) -> String {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run ip (iproute2)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl Lab {
    /// A bridge with `hosts` plugged in, in that order (the first is 10.77.0.1).
    pub fn new(hosts: &[&str]) -> Lab {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let prefix = format!(
            "st{}x{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        );
        let lab = Lab {
            prefix,
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
        };
        let sw = lab.switch();
        ip(&["netns", "add", &sw]);
        ip(&["-n", &sw, "link", "add", "br0", "type", "bridge"]);
        // a second bridge to move ports to: a partition that keeps every link up
        ip(&["-n", &sw, "link", "add", "br1", "type", "bridge"]);
        ip(&["-n", &sw, "link", "set", "br0", "up"]);
        ip(&["-n", &sw, "link", "set", "br1", "up"]);
        for (i, h) in hosts.iter().enumerate() {
            let ns = lab.ns(h);
            ip(&["netns", "add", &ns]);
            let port = Lab::port(i);
            ip(&[
                "link", "add", "name", "eth0", "netns", &ns, "type", "veth", "peer", "name", &port,
                "netns", &sw,
            ]);
            let addr = format!("{}/24", lab.addr(h));
            ip(&["-n", &ns, "addr", "add", &addr, "dev", "eth0"]);
            ip(&["-n", &ns, "link", "set", "lo", "up"]);
            ip(&["-n", &ns, "link", "set", "eth0", "up"]);
            ip(&["-n", &sw, "link", "set", &port, "master", "br0"]);
            ip(&["-n", &sw, "link", "set", &port, "up"]);
        }
        lab
    }

    fn switch(&self) -> String {
        format!("{}sw", self.prefix)
    }

    fn port(i: usize) -> String {
        format!("port{i}")
    }

    fn index(&self, host: &str) -> usize {
        self.hosts
            .iter()
            .position(|h| h == host)
            .unwrap_or_else(|| panic!("no host {host}"))
    }

    /// The namespace of `host`.
    pub fn ns(&self, host: &str) -> String {
        format!("{}{host}", self.prefix)
    }

    /// The address of `host` on the bridge.
    pub fn addr(&self, host: &str) -> Ipv4Addr {
        let [a, b, c] = SUBNET;
        Ipv4Addr::new(a, b, c, self.index(host) as u8 + 1)
    }

    /// `eth0`'s MAC address on `host`, as `ip` prints it.
    pub fn mac(&self, host: &str) -> String {
        let out = ip_out(&["-n", &self.ns(host), "-o", "link", "show", "dev", "eth0"]);
        out.split_whitespace()
            .skip_while(|w| *w != "link/ether")
            .nth(1)
            .expect("eth0 has a MAC")
            .to_string()
    }

    /// Whether `addr` is on `host`'s eth0.
    pub fn holds(&self, host: &str, addr: Ipv4Addr) -> bool {
        let out = ip_out(&[
            "-n",
            &self.ns(host),
            "-4",
            "-o",
            "addr",
            "show",
            "dev",
            "eth0",
        ]);
        out.contains(&format!(" {addr}/"))
    }

    /// The MAC `host`'s neighbour table has for `addr`, if any.
    pub fn neighbour(&self, host: &str, addr: Ipv4Addr) -> Option<String> {
        let out = ip_out(&["-n", &self.ns(host), "neigh", "show", &addr.to_string()]);
        out.split_whitespace()
            .skip_while(|w| *w != "lladdr")
            .nth(1)
            .map(str::to_string)
    }

    /// Unplugs `host`'s cable: its eth0 loses carrier.
    pub fn cut(&self, host: &str) {
        let port = Lab::port(self.index(host));
        ip(&["-n", &self.switch(), "link", "set", &port, "down"]);
    }

    /// Plugs `host`'s cable back in.
    pub fn heal(&self, host: &str) {
        let port = Lab::port(self.index(host));
        ip(&["-n", &self.switch(), "link", "set", &port, "up"]);
    }

    /// Moves `host` to the other bridge (a partition: its link stays up) or back.
    pub fn partition(&self, host: &str, apart: bool) {
        let port = Lab::port(self.index(host));
        let bridge = if apart { "br1" } else { "br0" };
        ip(&["-n", &self.switch(), "link", "set", &port, "master", bridge]);
    }

    /// A command run inside `host`'s namespace.
    pub fn command(&self, host: &str, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns(host), program]);
        c
    }

    /// Runs `f` on a thread inside `host`'s namespace: the sockets it makes live there, and
    /// can be used from anywhere afterwards.
    pub fn within<T: Send + 'static>(
        &self,
        host: &str,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> T {
        let path = format!("/run/netns/{}", self.ns(host));
        std::thread::spawn(move || {
            enter(&path);
            f()
        })
        .join()
        .expect("thread in namespace")
    }

    /// Starts `f` on a thread inside `host`'s namespace and returns its handle.
    pub fn spawn_within<T: Send + 'static>(
        &self,
        host: &str,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> std::thread::JoinHandle<T> {
        let path = format!("/run/netns/{}", self.ns(host));
        std::thread::spawn(move || {
            enter(&path);
            f()
        })
    }
}

/// Moves the calling thread into the network namespace at `path`.
#[allow(unsafe_code)] // setns(2) through libc
fn enter(path: &str) {
    let file = std::fs::File::open(path).expect("open netns");
    // SAFETY: setns(2) on a descriptor we own, for this thread only.
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
}

impl Drop for Lab {
    fn drop(&mut self) {
        // deleting a namespace destroys its veth ends, and with them their peers
        for h in &self.hosts {
            let _ = Command::new("ip")
                .args(["netns", "delete", &self.ns(h)])
                .status();
        }
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.switch()])
            .status();
    }
}

/// A GET over HTTP/1.0 with a short timeout, from the calling thread (call it `within` a
/// host): the status code and body, or the error.
pub fn http_get(addr: std::net::SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    use std::io::{Read, Write};
    let limit = std::time::Duration::from_millis(500);
    let mut s = std::net::TcpStream::connect_timeout(&addr, limit)?;
    s.set_read_timeout(Some(limit))?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    let code = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not HTTP: {out:?}")))?;
    let body = out
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    Ok((code, body))
}
