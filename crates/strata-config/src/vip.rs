//! `[[vip]]`: one VRRPv3 instance of the entry layer, keyed as keepalived's `vrrp_instance`.

use std::net::Ipv4Addr;
use std::time::Duration;

use toml::de::DeValue;

use crate::error::Report;
use crate::walk::{as_duration, as_int, as_str, wrong_type, Section, Value};

/// One `[[vip]]` instance: a virtual router shared with peers on one interface.
#[derive(Debug, Clone, PartialEq)]
pub struct VipInstance {
    /// Unique among the instances; names it in logs, metrics, `/status` and notify commands.
    pub name: String,
    /// The interface the adverts go out of and the virtual addresses are added to.
    pub interface: String,
    /// The Virtual Router ID, 1-255, the same on every peer of this virtual router.
    pub vrid: u8,
    /// 1-254, or 255 for the address owner (which takes the addresses at once).
    pub priority: u8,
    /// How often the Master advertises; a multiple of 10 ms from 10 ms to 40.95 s.
    pub advert_interval: Duration,
    /// The virtual addresses with their prefix lengths.
    pub addresses: Vec<VipAddress>,
    /// Peers to send adverts to by unicast; empty: multicast to 224.0.0.18.
    pub unicast_peers: Vec<Ipv4Addr>,
    /// A Backup with a higher priority takes over from a Master with a lower one (`nopreempt`
    /// turns it off).
    pub preempt: bool,
    /// After starting, a Backup waits this long before it preempts a lower-priority Master.
    pub preempt_delay: Duration,
    /// What this node's fitness to hold the addresses depends on.
    pub track: Vec<Track>,
    /// A command run (through `sh -c`) on every state change, with keepalived's arguments
    /// appended: `INSTANCE`, the instance's name, the new state and the priority.
    pub notify: Option<String>,
    /// Gratuitous ARPs sent for each address on becoming Master (and again after
    /// `garp_delay`).
    pub garp_count: u32,
    /// When a second burst of gratuitous ARPs follows the first; zero: none.
    pub garp_delay: Duration,
    /// While Master, a burst of gratuitous ARPs at this interval; `None`: none.
    pub garp_refresh: Option<Duration>,
    /// Whether the checksum of sent adverts covers the IPv4 pseudo-header (RFC 5798 and
    /// keepalived do; some peers, such as Cisco's, do not). Adverts are accepted either way.
    pub checksum_pseudo_header: bool,
}

/// A virtual address and its prefix length, `10.0.0.100/24`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VipAddress {
    /// The address.
    pub addr: Ipv4Addr,
    /// Its prefix length, 1-32 (32 when the config gives none).
    pub prefix: u8,
}

/// One `track` entry: something this node needs, and what its failure costs.
#[derive(Debug, Clone, PartialEq)]
pub struct Track {
    /// What is watched.
    pub what: Tracked,
    /// Added to the priority while `what` fails (negative lowers it); `None`: a failure puts
    /// the instance in the Fault state, where it gives up the addresses and stays silent.
    pub weight: Option<i32>,
}

/// What a `track` entry watches.
#[derive(Debug, Clone, PartialEq)]
pub enum Tracked {
    /// A listener of another layer in this process (`http:web`, `tcp:db`, `cache:sessions`):
    /// failing while it has no backend that can take traffic.
    Layer {
        /// "http", "tcp" or "cache".
        layer: String,
        /// The listener's name.
        listener: String,
    },
    /// An interface's link: failing while it is down.
    Interface(String),
    /// A command run through `sh -c` every `interval`: failing after `fall` exits that are
    /// not 0 (or do not finish within `timeout`), healthy again after `rise` exits that are.
    Command {
        /// The command line.
        command: String,
        /// How often it runs.
        interval: Duration,
        /// A run that takes longer is killed and counts as a failure.
        timeout: Duration,
        /// Failures in a row that make it fail.
        fall: u32,
        /// Successes in a row that make it healthy again.
        rise: u32,
    },
}

impl Tracked {
    /// How the entry is written in the config, for logs and `/status`.
    pub fn label(&self) -> String {
        match self {
            Tracked::Layer { layer, listener } => format!("{layer}:{listener}"),
            Tracked::Interface(name) => format!("interface:{name}"),
            Tracked::Command { command, .. } => format!("command:{command}"),
        }
    }
}

pub(crate) const KEYS: &[&str] = &[
    "name",
    "interface",
    "vrid",
    "priority",
    "advert_interval",
    "addresses",
    "unicast_peers",
    "nopreempt",
    "preempt_delay",
    "track",
    "notify",
    "garp_count",
    "garp_delay",
    "garp_refresh",
    "checksum",
];

const TRACK_KEYS: &[&str] = &[
    "layer",
    "interface",
    "command",
    "weight",
    "interval",
    "timeout",
    "fall",
    "rise",
];

const LAYERS: &[&str] = &["http", "tcp", "cache"];

pub(crate) fn instance(report: &mut Report<'_>, s: &Section<'_, '_>) -> Option<VipInstance> {
    let name = s
        .required(report, "name")
        .and_then(|_| s.string(report, "name"));
    let interface = s
        .required(report, "interface")
        .and_then(|_| s.string(report, "interface"))
        .and_then(|i| interface_name(report, &s.key("interface"), s.get("interface")?, i));
    let vrid = s
        .required(report, "vrid")
        .and_then(|v| as_int(report, &s.key("vrid"), v, 1..=255))
        .map(|n| n as u8);
    let priority = s.int(report, "priority", 1..=255, 100) as u8;
    let advert_interval = advert_interval(report, s);
    let addresses = match s.required(report, "addresses") {
        Some(v) => addresses(report, &s.key("addresses"), v),
        None => Vec::new(),
    };
    let unicast_peers = match s.get("unicast_peers") {
        Some(v) => peers(report, &s.key("unicast_peers"), v),
        None => Vec::new(),
    };
    let track = match s.get("track") {
        Some(v) => tracks(report, &s.key("track"), v),
        None => Vec::new(),
    };
    if priority == 255 {
        for (i, t) in track.iter().enumerate() {
            if t.weight.is_some() {
                report.add_hint(
                    s.get("track").map_or(s.span.clone(), |v| v.span()),
                    &format!("{}[{i}]", s.key("track")),
                    "the address owner (priority 255) advertises 255 whatever its weights",
                    Some("give it a priority below 255, or track without a weight (Fault)"),
                );
            }
        }
    }
    let notify = match s.get("notify") {
        Some(v) => match as_str(report, &s.key("notify"), v) {
            Some(c) if c.trim().is_empty() => {
                report.add(v.span(), &s.key("notify"), "the command is empty");
                None
            }
            Some(c) => Some(c.to_string()),
            None => None,
        },
        None => None,
    };
    let refresh = s.duration(report, "garp_refresh", Duration::ZERO);
    if !refresh.is_zero() && refresh < Duration::from_secs(1) {
        if let Some(v) = s.get("garp_refresh") {
            report.add_hint(
                v.span(),
                &s.key("garp_refresh"),
                format!("{refresh:?} would flood the link with ARP"),
                Some("a refresh every second or more, or none"),
            );
        }
    }
    let checksum = s.choice(
        report,
        "checksum",
        &["with-pseudo-header", "without-pseudo-header"],
        "with-pseudo-header",
    );
    Some(VipInstance {
        name: name?.to_string(),
        interface: interface?.to_string(),
        vrid: vrid?,
        priority,
        advert_interval: advert_interval?,
        addresses,
        unicast_peers,
        preempt: !s.bool(report, "nopreempt", false),
        preempt_delay: s.duration(report, "preempt_delay", Duration::ZERO),
        track,
        notify,
        garp_count: s.int(report, "garp_count", 1..=100, 5) as u32,
        garp_delay: s.duration(report, "garp_delay", Duration::from_secs(5)),
        garp_refresh: (!refresh.is_zero()).then_some(refresh),
        checksum_pseudo_header: checksum == "with-pseudo-header",
    })
}

/// What [`is_interface_name`] asks of a name, as messages say it.
pub const INTERFACE_NAME_RULE: &str = "1 to 15 characters, no '/', ':' or spaces";

/// Whether the kernel would take `name` for a network interface: IFNAMSIZ is 16 with the NUL,
/// and '/', ':' and whitespace are refused.
pub fn is_interface_name(name: &str) -> bool {
    !(name.is_empty()
        || name.len() > 15
        || name == "."
        || name == ".."
        || name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace()))
}

fn interface_name<'a>(
    report: &mut Report<'_>,
    key: &str,
    v: &Value<'_>,
    name: &'a str,
) -> Option<&'a str> {
    if !is_interface_name(name) {
        report.add(
            v.span(),
            key,
            format!("\"{name}\" is not an interface name ({INTERFACE_NAME_RULE})"),
        );
        return None;
    }
    Some(name)
}

fn advert_interval(report: &mut Report<'_>, s: &Section<'_, '_>) -> Option<Duration> {
    let Some(v) = s.get("advert_interval") else {
        return Some(Duration::from_secs(1));
    };
    let key = s.key("advert_interval");
    let d = as_duration(report, &key, v)?;
    let ms = d.as_millis();
    if d.subsec_nanos() % 10_000_000 != 0 || !(10..=40_950).contains(&ms) {
        report.add_hint(
            v.span(),
            &key,
            format!("{d:?} cannot be sent: VRRPv3 carries the interval in centiseconds"),
            Some("a multiple of 10ms from \"10ms\" to \"40.95s\" (\"100ms\", \"1s\")"),
        );
        return None;
    }
    Some(d)
}

fn strings<'a, 'i>(
    report: &mut Report<'_>,
    key: &str,
    v: &'a Value<'i>,
    expected: &str,
) -> Vec<(String, &'a Value<'i>, &'a str)> {
    let Some(items) = v.get_ref().as_array() else {
        wrong_type(report, key, v, expected);
        return Vec::new();
    };
    items
        .iter()
        .enumerate()
        .filter_map(|(i, item)| {
            let key = format!("{key}[{i}]");
            let text = as_str(report, &key, item)?;
            Some((key, item, text))
        })
        .collect()
}

fn addresses(report: &mut Report<'_>, key: &str, v: &Value<'_>) -> Vec<VipAddress> {
    let mut out: Vec<VipAddress> = Vec::new();
    for (key, item, text) in strings(report, key, v, "an array of \"a.b.c.d/prefix\" strings") {
        match parse_vip_address(text) {
            Ok(a) if out.iter().any(|o| o.addr == a.addr) => {
                report.add(item.span(), &key, format!("{} is listed twice", a.addr));
            }
            Ok(a) => out.push(a),
            Err(why) => report.add_hint(
                item.span(),
                &key,
                why,
                Some("write an IPv4 address with its prefix length, like \"10.0.0.100/24\""),
            ),
        }
    }
    if out.is_empty() && v.get_ref().as_array().is_some_and(|a| a.is_empty()) {
        report.add(
            v.span(),
            key,
            "an instance needs at least one virtual address",
        );
    }
    if out.len() > 255 {
        report.add(
            v.span(),
            key,
            format!(
                "{} addresses: an IPv4 advert carries at most 255",
                out.len()
            ),
        );
    }
    out
}

/// Parses `a.b.c.d/prefix` (or a bare `a.b.c.d`, taken as /32).
pub fn parse_vip_address(text: &str) -> Result<VipAddress, String> {
    let (addr, prefix) = match text.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (text, None),
    };
    let addr: Ipv4Addr = match addr.parse() {
        Ok(a) => a,
        Err(_) if addr.parse::<std::net::Ipv6Addr>().is_ok() => {
            return Err(format!(
                "\"{addr}\" is IPv6: this version runs VRRP for IPv4 only"
            ))
        }
        Err(_) => return Err(format!("\"{addr}\" is not an IPv4 address")),
    };
    if addr.is_unspecified() || addr.is_multicast() || addr.is_broadcast() || addr.is_loopback() {
        return Err(format!("{addr} cannot be a virtual address"));
    }
    let prefix = match prefix {
        None => 32,
        Some(p) => match p.parse::<u8>() {
            Ok(n) if (1..=32).contains(&n) => n,
            _ => return Err(format!("\"/{p}\" is not a prefix length (1 to 32)")),
        },
    };
    Ok(VipAddress { addr, prefix })
}

fn peers(report: &mut Report<'_>, key: &str, v: &Value<'_>) -> Vec<Ipv4Addr> {
    let mut out = Vec::new();
    for (key, item, text) in strings(report, key, v, "an array of IPv4 address strings") {
        match text.parse::<Ipv4Addr>() {
            Ok(a) if a.is_unspecified() || a.is_multicast() || a.is_broadcast() => {
                report.add(item.span(), &key, format!("{a} cannot be a unicast peer"))
            }
            Ok(a) if out.contains(&a) => {
                report.add(item.span(), &key, format!("{a} is listed twice"))
            }
            Ok(a) => out.push(a),
            // strict: a peer written wrong is an error, never a silent fall back to multicast
            Err(_) => report.add_hint(
                item.span(),
                &key,
                format!("\"{text}\" is not an IPv4 address"),
                Some("write the peer's address on this interface, like \"10.0.0.2\" (no port)"),
            ),
        }
    }
    out
}

fn tracks(report: &mut Report<'_>, key: &str, v: &Value<'_>) -> Vec<Track> {
    let Some(items) = v.get_ref().as_array() else {
        wrong_type(report, key, v, "an array of track entries");
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let key = format!("{key}[{i}]");
        let track = match item.get_ref() {
            DeValue::String(text) => {
                short_track(report, &key, item, text).map(|what| Track { what, weight: None })
            }
            DeValue::Table(_) => table_track(report, &key, item),
            _ => {
                wrong_type(
                    report,
                    &key,
                    item,
                    "\"http:NAME\", \"tcp:NAME\", \"cache:NAME\", \"interface:NAME\" or a table",
                );
                None
            }
        };
        out.extend(track);
    }
    out
}

/// `http:web`, `tcp:db`, `cache:sessions`, `interface:eth1`.
fn short_track(report: &mut Report<'_>, key: &str, v: &Value<'_>, text: &str) -> Option<Tracked> {
    let hint = Some(
        "write \"http:NAME\", \"tcp:NAME\" or \"cache:NAME\" (a listener of this config), \
         \"interface:NAME\", or { command = \"...\", interval = \"2s\" }",
    );
    let Some((kind, arg)) = text.split_once(':') else {
        report.add_hint(
            v.span(),
            key,
            format!("\"{text}\" names nothing to track"),
            hint,
        );
        return None;
    };
    if arg.is_empty() {
        report.add_hint(
            v.span(),
            key,
            format!("\"{text}\" has no name after ':'"),
            hint,
        );
        return None;
    }
    match kind {
        "interface" => interface_name(report, key, v, arg).map(|n| Tracked::Interface(n.into())),
        k if LAYERS.contains(&k) => Some(Tracked::Layer {
            layer: k.to_string(),
            listener: arg.to_string(),
        }),
        _ => {
            report.add_hint(v.span(), key, format!("unknown kind \"{kind}\""), hint);
            None
        }
    }
}

fn table_track(report: &mut Report<'_>, key: &str, v: &Value<'_>) -> Option<Track> {
    let s = Section::new(report, key.to_string(), v, TRACK_KEYS)?;
    let chosen: Vec<&str> = ["layer", "interface", "command"]
        .into_iter()
        .filter(|k| s.get(k).is_some())
        .collect();
    if chosen.len() != 1 {
        report.add_hint(
            v.span(),
            key,
            "a track entry watches one thing",
            Some("give exactly one of `layer = \"http:NAME\"`, `interface = \"eth0\"`, `command = \"...\"`"),
        );
        return None;
    }
    let weight = s
        .get("weight")
        .and_then(|w| as_int(report, &s.key("weight"), w, -254..=254))
        .map(|w| w as i32);
    if weight == Some(0) {
        report.add_hint(
            s.get("weight")?.span(),
            &s.key("weight"),
            "a weight of 0 changes nothing",
            Some("a negative weight lowers the priority while the check fails; leave `weight` out for Fault"),
        );
    }
    let what = match chosen[0] {
        "layer" => {
            let lv = s.get("layer")?;
            let text = as_str(report, &s.key("layer"), lv)?;
            match short_track(report, &s.key("layer"), lv, text)? {
                t @ Tracked::Layer { .. } => t,
                _ => {
                    report.add(
                        lv.span(),
                        &s.key("layer"),
                        "`layer` takes \"http:NAME\", \"tcp:NAME\" or \"cache:NAME\"",
                    );
                    return None;
                }
            }
        }
        "interface" => {
            let iv = s.get("interface")?;
            let name = as_str(report, &s.key("interface"), iv)?;
            Tracked::Interface(interface_name(report, &s.key("interface"), iv, name)?.into())
        }
        _ => {
            let cv = s.get("command")?;
            let command = as_str(report, &s.key("command"), cv)?;
            if command.trim().is_empty() {
                report.add(cv.span(), &s.key("command"), "the command is empty");
                return None;
            }
            let interval = s.duration(report, "interval", Duration::from_secs(2));
            if interval < Duration::from_millis(10) {
                report.add(
                    s.get("interval")?.span(),
                    &s.key("interval"),
                    "a check every less than 10ms would be most of the work this node does",
                );
            }
            Tracked::Command {
                command: command.to_string(),
                interval,
                timeout: s.duration(report, "timeout", interval),
                fall: s.int(report, "fall", 1..=100, 1) as u32,
                rise: s.int(report, "rise", 1..=100, 1) as u32,
            }
        }
    };
    if !matches!(what, Tracked::Command { .. }) {
        for k in ["interval", "timeout", "fall", "rise"] {
            if let Some(x) = s.get(k) {
                report.add(
                    x.span(),
                    &s.key(k),
                    "only a `command` track runs at an interval",
                );
            }
        }
    }
    Some(Track { what, weight })
}

/// Checks across the instances and the other layers of one config: each (interface, vrid)
/// once, each tracked listener present. Works on the sections as written, so an instance with
/// other mistakes is still checked.
pub(crate) fn check_instances(
    report: &mut Report<'_>,
    sections: &[Section<'_, '_>],
    listeners: &dyn Fn(&str, &str) -> bool,
) {
    let mut seen: Vec<(&str, i64, String)> = Vec::new();
    let mut addresses: Vec<(std::net::Ipv4Addr, String)> = Vec::new();
    for s in sections {
        // one address in two instances: one's release would take it from the other
        let written = s.get("addresses").and_then(|v| v.get_ref().as_array());
        for (i, item) in written.into_iter().flatten().enumerate() {
            let Some(a) = item
                .get_ref()
                .as_str()
                .and_then(|t| parse_vip_address(t).ok())
            else {
                continue;
            };
            match addresses.iter().find(|(b, _)| *b == a.addr) {
                // twice in one instance is reported with its addresses
                Some((_, first)) if *first != s.path => report.add_hint(
                    item.span(),
                    &format!("{}[{i}]", s.key("addresses")),
                    format!("{} is already an address of `{first}`", a.addr),
                    Some("each virtual address belongs to one instance"),
                ),
                Some(_) => {}
                None => addresses.push((a.addr, s.path.clone())),
            }
        }
        let interface = s.get("interface").and_then(|v| v.get_ref().as_str());
        let vrid = s.get("vrid").and_then(|v| v.get_ref().as_integer());
        if let (Some(interface), Some(vrid_value), Some(vrid)) = (
            interface,
            s.get("vrid"),
            vrid.and_then(|i| i.as_str().parse::<i64>().ok()),
        ) {
            match seen.iter().find(|(i, v, _)| *i == interface && *v == vrid) {
                Some((_, _, first)) => report.add_hint(
                    vrid_value.span(),
                    &s.key("vrid"),
                    format!("vrid {vrid} on {interface} is already used by `{first}`"),
                    Some("each virtual router on an interface needs its own vrid"),
                ),
                None => seen.push((interface, vrid, s.path.clone())),
            }
        }
        let Some(items) = s.get("track").and_then(|v| v.get_ref().as_array()) else {
            continue;
        };
        for (i, item) in items.iter().enumerate() {
            let written = match item.get_ref() {
                DeValue::String(text) => Some(&**text),
                DeValue::Table(t) => t.get("layer").and_then(|l| l.get_ref().as_str()),
                _ => None,
            };
            let Some((layer, listener)) = written.and_then(|w| w.split_once(':')) else {
                continue;
            };
            if LAYERS.contains(&layer) && !listener.is_empty() && !listeners(layer, listener) {
                report.add_hint(
                    item.span(),
                    &format!("{}[{i}]", s.key("track")),
                    format!("this config has no [[{layer}]] named \"{listener}\""),
                    Some("track a listener this node runs"),
                );
            }
        }
    }
}
