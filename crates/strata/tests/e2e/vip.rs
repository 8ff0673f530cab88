//! The entry layer end to end, on hosts the tests make from network namespaces (a bridge and
//! veth cables): election, failover on a cut link, a kill -9, SIGTERM and a tracked listener,
//! preemption, a healed partition, active-active, a keepalived peer, and hostile adverts from
//! a raw peer. Needs root, as CI runs.

use crate::common;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::netns::{http_get, Lab};
use common::*;
use serde_json::Value;

const VIP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 100);
const VIP2: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 101);
const LIMIT: Duration = Duration::from_secs(10);

/// One `[[vip]]` on eth0 with 100 ms adverts.
fn instance(name: &str, vrid: u8, priority: u8, addr: Ipv4Addr, extra: &str) -> String {
    format!(
        "[[vip]]\nname = \"{name}\"\ninterface = \"eth0\"\nvrid = {vrid}\npriority = {priority}\n\
         advert_interval = \"100ms\"\naddresses = [\"{addr}/24\"]\n{extra}\n"
    )
}

fn node(instances: &str) -> String {
    format!("drain_timeout = \"2s\"\n[admin]\nlisten = \"127.0.0.1:0\"\n\n{instances}")
}

/// Runs `f` on a thread inside `host`, without blocking the test's runtime.
async fn on<T: Send + 'static>(lab: &Lab, host: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let h = lab.spawn_within(host, f);
    tokio::task::spawn_blocking(move || h.join().expect("thread in namespace"))
        .await
        .unwrap()
}

/// `/status` of the strata running on `host`.
async fn status(lab: &Lab, host: &str, strata: &Strata) -> Value {
    let admin = strata.addr("admin");
    let (code, body) = on(lab, host, move || http_get(admin, "/status"))
        .await
        .expect("admin answers");
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).expect("status is JSON")
}

async fn metrics(lab: &Lab, host: &str, strata: &Strata) -> String {
    let admin = strata.addr("admin");
    on(lab, host, move || http_get(admin, "/metrics"))
        .await
        .expect("admin answers")
        .1
}

/// The named instance's entry in `/status`.
async fn vip_status(lab: &Lab, host: &str, strata: &Strata, name: &str) -> Value {
    let s = status(lab, host, strata).await;
    s["vip"]
        .as_array()
        .and_then(|a| a.iter().find(|v| v["name"] == name))
        .cloned()
        .unwrap_or_else(|| panic!("no vip {name} in {s}"))
}

async fn until_held(lab: &Lab, host: &str, addr: Ipv4Addr, held: bool) {
    let what = format!(
        "{addr} {} on {host}",
        if held { "held" } else { "released" }
    );
    eventually(LIMIT, &what, || async { lab.holds(host, addr) == held }).await;
}

/// A GET from `host` to `addr`: the body, or None when it fails.
async fn get_from(lab: &Lab, host: &str, addr: SocketAddr) -> Option<String> {
    on(lab, host, move || http_get(addr, "/").ok().map(|(_, b)| b)).await
}

/// An app server inside `host`, on its loopback.
async fn backend_on(lab: &Lab, host: &str, name: &str) -> Backend {
    let listener = on(lab, host, || {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind in namespace");
        l.set_nonblocking(true).unwrap();
        l
    })
    .await;
    Backend::serve(name, tokio::net::TcpListener::from_std(listener).unwrap())
}

fn web_on_vip(backend: &Backend, extra: &str) -> String {
    format!(
        "[[http]]\nname = \"web\"\nlisten = \"{VIP}:8080\"\nbackends = [\"{}\"]\n{extra}\n",
        backend.addr
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn higher_priority_wins_and_sigterm_hands_over_after_the_skew() {
    let lab = Lab::new(&["a", "b"]);
    let dir = TempDir::new();
    let log = dir.path().join("notify.log");
    let script = write_file(
        dir.path(),
        "notify.sh",
        &format!("#!/bin/sh\necho \"$1 $2 $3 $4\" >> {}\n", log.display()),
    );
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let notify = format!("notify = \"{}\"", script.display());
    let mut a = Strata::start_on(&lab, "a", &node(&instance("front", 51, 200, VIP, &notify)));
    until_held(&lab, "a", VIP, true).await;
    let b = Strata::start_on(&lab, "b", &node(&instance("front", 51, 100, VIP, "")));
    let a_addr = lab.addr("a").to_string();
    eventually(LIMIT, "b is a Backup of a", || async {
        let v = vip_status(&lab, "b", &b, "front").await;
        v["state"] == "BACKUP" && v["master"] == a_addr.as_str()
    })
    .await;
    assert!(!lab.holds("b", VIP));
    let v = vip_status(&lab, "a", &a, "front").await;
    assert_eq!(v["state"], "MASTER", "{v}");
    assert_eq!(v["primary_address"], a_addr.as_str());

    // a planned stop: a says priority 0, b takes over after its skew, a lets go
    a.signal(libc::SIGTERM);
    until_held(&lab, "b", VIP, true).await;
    assert!(a.wait_exit(LIMIT).success(), "{}", a.logs());
    assert!(!lab.holds("a", VIP));
    assert!(a.logs().contains("handing over"), "{}", a.logs());
    let v = vip_status(&lab, "b", &b, "front").await;
    assert_eq!(v["state"], "MASTER");
    let why = v["transitions"].as_array().unwrap().last().unwrap()["why"].clone();
    assert!(
        why.as_str().unwrap().contains("stepped down (priority 0)"),
        "{v}"
    );
    // notify ran once per change, in order
    let lines = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        lines.lines().collect::<Vec<_>>(),
        [
            "INSTANCE front BACKUP 200",
            "INSTANCE front MASTER 200",
            "INSTANCE front STOP 200"
        ],
        "{}",
        a.logs()
    );
    assert!(a.logs().contains("notify ran: exit status 0"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_link_fails_over_and_the_master_preempts_when_it_returns() {
    let lab = Lab::new(&["a", "b"]);
    let a = Strata::start_on(&lab, "a", &node(&instance("front", 51, 200, VIP, "")));
    let b = Strata::start_on(&lab, "b", &node(&instance("front", 51, 100, VIP, "")));
    until_held(&lab, "a", VIP, true).await;
    lab.cut("a");
    until_held(&lab, "b", VIP, true).await;
    until_held(&lab, "a", VIP, false).await;
    let v = vip_status(&lab, "a", &a, "front").await;
    assert_eq!(v["state"], "FAULT", "{v}");
    assert_eq!(v["fault"], "interface eth0 is down");
    lab.heal("a");
    until_held(&lab, "a", VIP, true).await;
    until_held(&lab, "b", VIP, false).await;
    let v = vip_status(&lab, "a", &a, "front").await;
    let why = v["transitions"].as_array().unwrap().last().unwrap()["why"].clone();
    assert!(why.as_str().unwrap().contains("preempting"), "{v}");
    let m = metrics(&lab, "b", &b).await;
    assert!(
        metric(&m, "strata_vip_transitions_total", "vip=\"front\"").unwrap() >= 3.0,
        "{m}"
    );
    assert_eq!(
        metric(&m, "strata_vip_state", "state=\"BACKUP\""),
        Some(1.0),
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_master_loses_the_address_and_clients_reach_the_backup() {
    let lab = Lab::new(&["a", "b", "client"]);
    let app_a = backend_on(&lab, "a", "a").await;
    let app_b = backend_on(&lab, "b", "b").await;
    let mut a = Strata::start_on(
        &lab,
        "a",
        &node(&(instance("front", 51, 200, VIP, "") + &web_on_vip(&app_a, ""))),
    );
    until_held(&lab, "a", VIP, true).await;
    // b's listener binds the virtual address it does not hold (IP_FREEBIND)
    let b = Strata::start_on(
        &lab,
        "b",
        &node(&(instance("front", 51, 100, VIP, "") + &web_on_vip(&app_b, ""))),
    );
    assert_eq!(b.addr("http:web"), SocketAddr::from((VIP, 8080)));
    assert!(!lab.holds("b", VIP));
    let web = SocketAddr::from((VIP, 8080));
    assert_eq!(
        get_from(&lab, "client", web).await.as_deref(),
        Some("backend a")
    );
    a.child.kill().unwrap(); // SIGKILL: no goodbye advert
    a.wait_exit(LIMIT);
    eventually(LIMIT, "the client reaches b through the VIP", || async {
        get_from(&lab, "client", web).await.as_deref() == Some("backend b")
    })
    .await;
    assert!(lab.holds("b", VIP));
    assert_eq!(lab.neighbour("client", VIP), Some(lab.mac("b")));
    // the dead Strata's address expires on its host (a lifetime it no longer renews), so
    // that host stops answering ARP for it
    until_held(&lab, "a", VIP, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tracked_listener_without_backends_gives_the_address_away() {
    let lab = Lab::new(&["a", "b"]);
    let app_a = backend_on(&lab, "a", "a").await;
    let app_b = backend_on(&lab, "b", "b").await;
    let health = "health = { path = \"/healthz\", interval = \"100ms\", fall = 1, rise = 1 }";
    let a = Strata::start_on(
        &lab,
        "a",
        &node(
            &(instance("front", 51, 200, VIP, "track = [\"http:web\"]")
                + &web_on_vip(&app_a, health)),
        ),
    );
    let _b = Strata::start_on(
        &lab,
        "b",
        &node(&(instance("front", 51, 100, VIP, "") + &web_on_vip(&app_b, health))),
    );
    until_held(&lab, "a", VIP, true).await;
    app_a.healthy.store(false, Ordering::SeqCst);
    until_held(&lab, "b", VIP, true).await;
    until_held(&lab, "a", VIP, false).await;
    let v = vip_status(&lab, "a", &a, "front").await;
    assert_eq!(v["state"], "FAULT", "{v}");
    assert_eq!(
        v["fault"],
        "http listener \"web\" has no backend that can serve"
    );
    app_a.healthy.store(true, Ordering::SeqCst);
    until_held(&lab, "a", VIP, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_weighted_command_lowers_the_priority_below_the_backup() {
    let lab = Lab::new(&["a", "b"]);
    let dir = TempDir::new();
    let flag = write_file(dir.path(), "up", "");
    let track = format!(
        "track = [{{ command = \"test -e {}\", interval = \"50ms\", weight = -150 }}]",
        flag.display()
    );
    let a = Strata::start_on(&lab, "a", &node(&instance("front", 51, 200, VIP, &track)));
    let _b = Strata::start_on(&lab, "b", &node(&instance("front", 51, 100, VIP, "")));
    until_held(&lab, "a", VIP, true).await;
    std::fs::remove_file(&flag).unwrap();
    until_held(&lab, "b", VIP, true).await;
    let v = vip_status(&lab, "a", &a, "front").await;
    assert_eq!(v["state"], "BACKUP", "{v}");
    assert_eq!(v["priority"], 50, "{v}");
    std::fs::write(&flag, "").unwrap();
    until_held(&lab, "a", VIP, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healed_partition_settles_on_one_master_which_announces_the_address_again() {
    let lab = Lab::new(&["a", "b", "client"]);
    let app_a = backend_on(&lab, "a", "a").await;
    let app_b = backend_on(&lab, "b", "b").await;
    let a = Strata::start_on(
        &lab,
        "a",
        &node(&(instance("front", 51, 200, VIP, "garp_delay = \"0s\"") + &web_on_vip(&app_a, ""))),
    );
    let _b = Strata::start_on(
        &lab,
        "b",
        &node(&(instance("front", 51, 100, VIP, "garp_delay = \"0s\"") + &web_on_vip(&app_b, ""))),
    );
    until_held(&lab, "a", VIP, true).await;
    // a's cable now goes to another switch: its link stays up, and b hears nothing
    lab.partition("a", true);
    until_held(&lab, "b", VIP, true).await;
    assert!(lab.holds("a", VIP), "both are Master while apart");
    let web = SocketAddr::from((VIP, 8080));
    eventually(
        LIMIT,
        "the client reaches b during the partition",
        || async { get_from(&lab, "client", web).await.as_deref() == Some("backend b") },
    )
    .await;
    assert_eq!(lab.neighbour("client", VIP), Some(lab.mac("b")));
    lab.partition("a", false);
    until_held(&lab, "b", VIP, false).await;
    assert!(lab.holds("a", VIP));
    // without a fresh gratuitous ARP from a, the client would keep sending to b, which let go
    let deadline = std::time::Instant::now() + LIMIT;
    while lab.neighbour("client", VIP) != Some(lab.mac("a")) {
        assert!(
            std::time::Instant::now() < deadline,
            "the client's ARP entry does not point at a ({:?}):\n{}\n{}",
            lab.neighbour("client", VIP),
            a.logs(),
            _b.logs()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    eventually(LIMIT, "the client reaches a", || async {
        get_from(&lab, "client", web).await.as_deref() == Some("backend a")
    })
    .await;
    assert!(
        a.logs().contains("another Master was heard"),
        "{}",
        a.logs()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_are_each_master_of_one_vip_and_take_both_when_the_other_dies() {
    let lab = Lab::new(&["a", "b"]);
    let mut a = Strata::start_on(
        &lab,
        "a",
        &node(&(instance("one", 51, 200, VIP, "") + &instance("two", 52, 100, VIP2, ""))),
    );
    let b = Strata::start_on(
        &lab,
        "b",
        &node(&(instance("one", 51, 100, VIP, "") + &instance("two", 52, 200, VIP2, ""))),
    );
    until_held(&lab, "a", VIP, true).await;
    until_held(&lab, "b", VIP2, true).await;
    assert!(!lab.holds("a", VIP2));
    assert!(!lab.holds("b", VIP));
    a.child.kill().unwrap();
    a.wait_exit(LIMIT);
    until_held(&lab, "b", VIP, true).await;
    assert!(lab.holds("b", VIP2));
    let v = vip_status(&lab, "b", &b, "one").await;
    assert_eq!(v["state"], "MASTER");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unicast_peers_elect_without_multicast() {
    let lab = Lab::new(&["a", "b"]);
    let peer = |h: &str| format!("unicast_peers = [\"{}\"]", lab.addr(h));
    let mut a = Strata::start_on(
        &lab,
        "a",
        &node(&instance("front", 51, 200, VIP, &peer("b"))),
    );
    let b = Strata::start_on(
        &lab,
        "b",
        &node(&instance("front", 51, 100, VIP, &peer("a"))),
    );
    until_held(&lab, "a", VIP, true).await;
    let a_addr = lab.addr("a").to_string();
    eventually(LIMIT, "b hears a by unicast", || async {
        vip_status(&lab, "b", &b, "front").await["master"] == a_addr.as_str()
    })
    .await;
    a.signal(libc::SIGTERM);
    until_held(&lab, "b", VIP, true).await;
    a.wait_exit(LIMIT);
}

/// keepalived from Debian's package, as a VRRPv3 peer in `host`; killed when dropped.
struct Keepalived {
    child: std::process::Child,
    _dir: TempDir,
}

impl Keepalived {
    fn start(lab: &Lab, host: &str, priority: u8) -> Keepalived {
        let dir = TempDir::new();
        let conf = write_file(
            dir.path(),
            "keepalived.conf",
            &format!(
                "global_defs {{\n  vrrp_version 3\n  router_id {host}\n}}\n\
                 vrrp_instance front {{\n  state BACKUP\n  interface eth0\n  virtual_router_id 51\n  \
                 priority {priority}\n  advert_int 0.1\n  virtual_ipaddress {{\n    {VIP}/24\n  }}\n}}\n"
            ),
        );
        let p = |f: &str| dir.path().join(f).display().to_string();
        let child = lab
            .command(host, "keepalived")
            .args(["--dont-fork", "--log-console", "--log-detail", "--vrrp"])
            .args(["-f", &conf.display().to_string()])
            .args(["-p", &p("k.pid"), "-r", &p("v.pid"), "-c", &p("c.pid")])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("run keepalived (Debian's keepalived package)");
        Keepalived { child, _dir: dir }
    }

    #[allow(unsafe_code)] // kill(2) through libc
    fn terminate(&mut self) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

impl Drop for Keepalived {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Holds for a second of looks: the two agree, and stay agreed.
async fn settled(lab: &Lab, master: &str, backup: &str) {
    until_held(lab, master, VIP, true).await;
    until_held(lab, backup, VIP, false).await;
    for _ in 0..20 {
        assert!(
            lab.holds(master, VIP) && !lab.holds(backup, VIP),
            "{master} and {backup} disagree"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keepalived_peer_and_strata_agree_on_one_master_both_ways() {
    let lab = Lab::new(&["a", "b"]);
    let a = Strata::start_on(&lab, "a", &node(&instance("front", 51, 200, VIP, "")));
    let mut k = Keepalived::start(&lab, "b", 100);
    settled(&lab, "a", "b").await;
    k.terminate();
    // keepalived with the higher priority preempts Strata, and Strata follows it
    let mut k = Keepalived::start(&lab, "b", 250);
    settled(&lab, "b", "a").await;
    let b_addr = lab.addr("b").to_string();
    let v = vip_status(&lab, "a", &a, "front").await;
    assert_eq!(v["state"], "BACKUP", "{v}");
    assert_eq!(v["master"], b_addr.as_str(), "{v}");
    let m = metrics(&lab, "a", &a).await;
    assert_eq!(
        metric(&m, "strata_vip_adverts_invalid_total", "vip=\"front\""),
        None,
        "{m}"
    );
    // keepalived stopping says priority 0, and Strata takes over
    k.terminate();
    until_held(&lab, "a", VIP, true).await;
    let v = vip_status(&lab, "a", &a, "front").await;
    let why = v["transitions"].as_array().unwrap().last().unwrap()["why"].clone();
    assert!(
        why.as_str().unwrap().contains("stepped down (priority 0)"),
        "{v}"
    );
}

/// The Internet checksum, written here from RFC 1071 apart from Strata's own.
fn inet_sum(words: &[u8], pseudo: Option<(Ipv4Addr, Ipv4Addr)>) -> u16 {
    let mut bytes = Vec::new();
    if let Some((src, dst)) = pseudo {
        bytes.extend_from_slice(&src.octets());
        bytes.extend_from_slice(&dst.octets());
        bytes.extend_from_slice(&[0, 112]);
        bytes.extend_from_slice(&(words.len() as u16).to_be_bytes());
    }
    bytes.extend_from_slice(words);
    if bytes.len() % 2 == 1 {
        bytes.push(0);
    }
    let mut sum: u32 = bytes
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// A VRRP message with a correct checksum for `(src, dst)` (or over itself alone).
fn vrrp(
    first: u8,
    vrid: u8,
    priority: u8,
    count: u8,
    interval_cs: u16,
    addrs: &[Ipv4Addr],
    pseudo: Option<(Ipv4Addr, Ipv4Addr)>,
) -> Vec<u8> {
    let mut m = vec![first, vrid, priority, count];
    m.extend_from_slice(&interval_cs.to_be_bytes());
    m.extend_from_slice(&[0, 0]);
    for a in addrs {
        m.extend_from_slice(&a.octets());
    }
    let sum = inet_sum(&m, pseudo);
    m[6..8].copy_from_slice(&sum.to_be_bytes());
    m
}

/// An IPv4 packet around `payload` (the kernel fills in the header checksum and id).
fn ipv4(src: Ipv4Addr, dst: Ipv4Addr, ttl: u8, payload: &[u8]) -> Vec<u8> {
    let total = (20 + payload.len()) as u16;
    let mut p = vec![0x45, 0xc0];
    p.extend_from_slice(&total.to_be_bytes());
    p.extend_from_slice(&[0, 0, 0, 0, ttl, 112, 0, 0]);
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    p.extend_from_slice(payload);
    p
}

/// Sends whole IPv4 packets out of the calling host's eth0 (IP_HDRINCL).
fn send_raw(packets: Vec<Vec<u8>>, to: Ipv4Addr) {
    use socket2::{Domain, Protocol, SockAddr, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(112))).unwrap();
    s.set_header_included_v4(true).unwrap();
    s.bind_device(Some(b"eth0")).unwrap();
    let to = SockAddr::from(SocketAddr::from((to, 0)));
    for p in packets {
        s.send_to(&p, &to).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_adverts_are_counted_and_change_nothing_and_sent_bytes_are_exact() {
    let lab = Lab::new(&["a", "b"]);
    let (a_ip, b_ip) = (lab.addr("a"), lab.addr("b"));
    let a_mac = lab.mac("a");
    // b records, byte for byte, what a sends: adverts (raw IP) and ARP frames (raw Ethernet)
    let recorder = lab.spawn_within("b", || {
        use socket2::{Domain, InterfaceIndexOrAddress, Protocol, Socket, Type};
        use std::io::Read;
        let mut ip = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(112))).unwrap();
        ip.join_multicast_v4_n(
            &Ipv4Addr::new(224, 0, 0, 18),
            &InterfaceIndexOrAddress::Address(Ipv4Addr::new(10, 77, 0, 2)),
        )
        .unwrap();
        ip.set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        let mut arp = Socket::new(
            Domain::PACKET,
            Type::RAW,
            Some(Protocol::from(0x0806u16.to_be() as i32)),
        )
        .unwrap();
        arp.set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        let (mut adverts, mut frames) = (Vec::new(), Vec::new());
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let mut buf = [0u8; 2048];
        while std::time::Instant::now() < deadline {
            if let Ok(n) = ip.read(&mut buf) {
                adverts.push(buf[..n].to_vec());
            }
            if let Ok(n) = arp.read(&mut buf) {
                frames.push(buf[..n].to_vec());
            }
            let vrids = |v: u8| {
                adverts
                    .iter()
                    .filter(|p: &&Vec<u8>| p.get(21) == Some(&v))
                    .count()
            };
            if vrids(51) >= 2 && vrids(52) >= 2 && frames.len() >= 2 {
                break;
            }
        }
        (adverts, frames)
    });
    let a = Strata::start_on(
        &lab,
        "a",
        &node(
            &(instance("front", 51, 100, VIP, "garp_count = 1\ngarp_delay = \"0s\"")
                + &instance(
                    "cisco",
                    52,
                    100,
                    VIP2,
                    "garp_count = 1\ngarp_delay = \"0s\"\nchecksum = \"without-pseudo-header\"",
                )),
        ),
    );
    until_held(&lab, "a", VIP, true).await;
    let (adverts, frames) = tokio::task::spawn_blocking(move || recorder.join().unwrap())
        .await
        .unwrap();
    let group = Ipv4Addr::new(224, 0, 0, 18);
    for (vrid, addr, pseudo) in [(51u8, VIP, true), (52, VIP2, false)] {
        let p = adverts
            .iter()
            .find(|p| p[21] == vrid)
            .unwrap_or_else(|| panic!("no advert for vrid {vrid}: {adverts:?}"));
        assert_eq!(p[8], 255, "TTL");
        assert_eq!(p[9], 112, "protocol");
        assert_eq!(&p[12..16], &a_ip.octets(), "source");
        assert_eq!(&p[16..20], &group.octets(), "destination");
        let m = &p[20..];
        let expected = vrrp(
            0x31,
            vrid,
            100,
            1,
            10,
            &[addr],
            pseudo.then_some((a_ip, group)),
        );
        assert_eq!(m, &expected[..], "vrid {vrid}");
        // the other reading of the checksum does not hold: each instance sends what it says
        let other = vrrp(
            0x31,
            vrid,
            100,
            1,
            10,
            &[addr],
            (!pseudo).then_some((a_ip, group)),
        );
        assert_ne!(m[6..8], other[6..8]);
    }
    let mac: Vec<u8> = a_mac
        .split(':')
        .map(|h| u8::from_str_radix(h, 16).unwrap())
        .collect();
    for addr in [VIP, VIP2] {
        let f = frames
            .iter()
            .find(|f| f.len() >= 42 && f[28..32] == addr.octets())
            .unwrap_or_else(|| panic!("no gratuitous ARP for {addr}: {frames:?}"));
        let mut expected = vec![0xff; 6];
        expected.extend_from_slice(&mac);
        expected.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
        expected.extend_from_slice(&mac);
        expected.extend_from_slice(&addr.octets());
        expected.extend_from_slice(&[0xff; 6]);
        expected.extend_from_slice(&addr.octets());
        assert_eq!(&f[..42], &expected[..], "gratuitous ARP for {addr}");
        assert_eq!(f.len(), 60, "padded to Ethernet's minimum");
    }

    // Now b turns hostile: each of these claims priority 250 and would take the address if
    // a accepted it.
    let claim = |first: u8, count: u8, interval: u16| {
        vrrp(first, 51, 250, count, interval, &[VIP], Some((b_ip, a_ip)))
    };
    let mut bad_sum = claim(0x31, 1, 10);
    bad_sum[7] ^= 0x55;
    let hostile: Vec<(&str, Vec<u8>)> = vec![
        ("checksum", ipv4(b_ip, a_ip, 255, &bad_sum)),
        ("ttl", ipv4(b_ip, a_ip, 64, &claim(0x31, 1, 10))),
        ("version", ipv4(b_ip, a_ip, 255, &claim(0x21, 1, 10))),
        ("type", ipv4(b_ip, a_ip, 255, &claim(0x32, 1, 10))),
        ("count", ipv4(b_ip, a_ip, 255, &claim(0x31, 2, 10))),
        ("interval", ipv4(b_ip, a_ip, 255, &claim(0x31, 1, 0))),
        ("truncated", ipv4(b_ip, a_ip, 255, &claim(0x31, 1, 10)[..5])),
    ];
    let packets: Vec<Vec<u8>> = hostile.iter().map(|(_, p)| p.clone()).collect();
    on(&lab, "b", move || send_raw(packets, a_ip)).await;
    let reasons: Vec<&str> = hostile.iter().map(|(r, _)| *r).collect();
    eventually(
        LIMIT,
        "every hostile packet counted by its reason",
        || async {
            let m = metrics(&lab, "a", &a).await;
            reasons.iter().all(|r| {
                metric(
                    &m,
                    "strata_vip_adverts_invalid_total",
                    &format!("vip=\"front\",reason=\"{r}\""),
                ) == Some(1.0)
            })
        },
    )
    .await;
    let v = vip_status(&lab, "a", &a, "front").await;
    assert_eq!(
        v["state"], "MASTER",
        "a hostile packet moved the state: {v}"
    );
    // the same claim, well formed (and summed without the pseudo-header, as some routers
    // do), is obeyed
    let good = ipv4(b_ip, a_ip, 255, &vrrp(0x31, 51, 250, 1, 10, &[VIP], None));
    on(&lab, "b", move || send_raw(vec![good], a_ip)).await;
    eventually(LIMIT, "a yields to the well-formed claim", || async {
        vip_status(&lab, "a", &a, "front").await["transitions"]
            .to_string()
            .contains("10.77.0.2 advertises a higher priority (250 > 100)")
    })
    .await;
    // and with b silent after its one advert, a takes the address back
    until_held(&lab, "a", VIP, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_moves_the_address_by_priority_and_a_renamed_instance_keeps_it() {
    let lab = Lab::new(&["a", "b"]);
    let a = Strata::start_on(&lab, "a", &node(&instance("front", 51, 200, VIP, "")));
    let b = Strata::start_on(&lab, "b", &node(&instance("front", 51, 100, VIP, "")));
    until_held(&lab, "a", VIP, true).await;
    let reload = |text: String| {
        std::fs::write(&a.config, text).unwrap();
        a.signal(libc::SIGHUP);
    };
    reload(node(&instance("front", 51, 50, VIP, "")));
    until_held(&lab, "b", VIP, true).await;
    until_held(&lab, "a", VIP, false).await;
    let v = vip_status(&lab, "a", &a, "front").await;
    assert_eq!(
        (v["state"].as_str(), v["priority"].as_u64()),
        (Some("BACKUP"), Some(50)),
        "{v}"
    );
    reload(node(&instance("front", 51, 200, VIP, "")));
    until_held(&lab, "a", VIP, true).await;
    // a new name is a new instance: the old one hands over first, then the new one starts
    // and takes the address back, which stays
    reload(node(&instance("gateway", 51, 200, VIP, "")));
    eventually(LIMIT, "the renamed instance is Master", || async {
        let s = status(&lab, "a", &a).await;
        s["vip"][0]["name"] == "gateway" && s["vip"][0]["state"] == "MASTER"
    })
    .await;
    for _ in 0..10 {
        assert!(
            lab.holds("a", VIP),
            "the renamed instance lost its address:\n{}",
            a.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // with no peer to hand over to, a hand-over waits its longest (four adverts); a reload
    // during it that drops the instance is the last word: nothing starts once it ends
    drop(b);
    let reloaded = |n: usize| a.wait_logs("SIGHUP: reloaded", n, LIMIT);
    reloaded(3).await;
    reload(node(&instance("edge", 51, 200, VIP, "")));
    reloaded(4).await;
    reload(node(""));
    reloaded(5).await;
    eventually(LIMIT, "a lets the address go", || async {
        !lab.holds("a", VIP)
    })
    .await;
    for _ in 0..15 {
        let s = status(&lab, "a", &a).await;
        assert_eq!(s["vip"], serde_json::json!([]), "{s}\n{}", a.logs());
        assert!(
            !lab.holds("a", VIP),
            "an instance the config dropped took the address"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nopreempt_leaves_a_running_master_alone() {
    let lab = Lab::new(&["a", "b"]);
    let _b = Strata::start_on(&lab, "b", &node(&instance("front", 51, 100, VIP, "")));
    until_held(&lab, "b", VIP, true).await;
    let a = Strata::start_on(
        &lab,
        "a",
        &node(&instance("front", 51, 200, VIP, "nopreempt = true")),
    );
    let b_addr = lab.addr("b").to_string();
    eventually(LIMIT, "a hears b", || async {
        vip_status(&lab, "a", &a, "front").await["master"] == b_addr.as_str()
    })
    .await;
    for _ in 0..10 {
        assert!(lab.holds("b", VIP) && !lab.holds("a", VIP), "a preempted b");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What an operator sees of the entry layer: the dashboard (headless Chromium inside the
/// host's namespace, where its admin listener is) shows the Master, its priority, address and
/// transitions; `/endpoints` lists the address only on the node that holds it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_and_endpoints_show_who_holds_the_address() {
    let lab = Lab::new(&["a", "b"]);
    let a = Strata::start_on(&lab, "a", &node(&instance("front", 51, 200, VIP, "")));
    let b = Strata::start_on(&lab, "b", &node(&instance("front", 51, 100, VIP, "")));
    until_held(&lab, "a", VIP, true).await;
    eventually(LIMIT, "b is a Backup", || async {
        vip_status(&lab, "b", &b, "front").await["state"] == "BACKUP"
    })
    .await;

    let endpoints = |host: &'static str, strata: &Strata| {
        let admin = strata.addr("admin");
        let lab = &lab;
        async move {
            let (code, body) = on(lab, host, move || http_get(admin, "/endpoints"))
                .await
                .expect("admin answers");
            assert_eq!(code, 200, "{body}");
            serde_json::from_str::<Value>(&body).unwrap()["vip"][0].clone()
        }
    };
    let on_a = endpoints("a", &a).await;
    assert_eq!(on_a["state"], "MASTER", "{on_a}");
    assert_eq!(on_a["held"], serde_json::json!([VIP.to_string()]));
    let on_b = endpoints("b", &b).await;
    assert_eq!(on_b["state"], "BACKUP", "{on_b}");
    assert_eq!(on_b["held"], serde_json::json!([]));

    let url = format!("http://{}/", a.addr("admin"));
    let driver = root().join("crates/strata/tests/clients/dashboard.py");
    let mut command = lab.command("a", python().to_str().unwrap());
    command.arg(&driver).args([url.as_str(), "--text", "#vip"]);
    let out = blocking(move || command.output().expect("run the dashboard driver")).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.trim_end().ends_with("ok"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find_map(|v| v["text"].as_str().map(str::to_string))
        .expect("the VIP section's text");
    for shown in [
        "front",
        "MASTER",
        "priority 200",
        &format!("{VIP}/24"),
        "→ MASTER",
    ] {
        assert!(text.contains(shown), "the page lacks {shown:?}:\n{text}");
    }
}
