//! Settings shared by every layer that balances over backends: the backend list, balancing,
//! active health checks, passive ejection, retries.

use std::net::SocketAddr;
use std::time::Duration;

use crate::error::Report;
use crate::walk::{as_addr, as_int, as_str, wrong_type, Section};

/// One server behind a listener.
#[derive(Debug, Clone, PartialEq)]
pub struct BackendSpec {
    /// Where the backend listens (host names are not resolved).
    pub addr: SocketAddr,
    /// Relative share of new requests (1 to 256), as HAProxy's `weight`.
    pub weight: u32,
    /// Requests (HTTP) or connections (TCP) it is given at once, at most: nginx's `max_conns`,
    /// HAProxy's `maxconn` on a server line; 0 for no limit.
    pub max_conns: u32,
}

/// How a listener picks the backend for each request (HTTP) or connection (TCP).
#[derive(Debug, Clone, PartialEq)]
pub enum Balance {
    /// Smooth weighted round robin (nginx's algorithm).
    RoundRobin,
    /// Fewest in-flight requests/connections, weighted.
    LeastConn,
    /// Consistent hash of the client IP.
    IpHash,
    /// Two random backends, the one with fewer in-flight requests wins.
    RandomTwo,
    /// Consistent hash of a request header or cookie (HTTP only).
    Hash(HashKey),
}

/// What `balance = "hash"` hashes, from `hash_key`.
#[derive(Debug, Clone, PartialEq)]
pub enum HashKey {
    /// `header:NAME`: the value of this request header.
    Header(String),
    /// `cookie:NAME`: the value of this cookie.
    Cookie(String),
}

/// An active health check run against every backend.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthCheck {
    /// What a check does.
    pub kind: CheckKind,
    /// Time between two checks of one backend.
    pub interval: Duration,
    /// A check that takes longer fails.
    pub timeout: Duration,
    /// Consecutive successes that bring a down backend up.
    pub rise: u32,
    /// Consecutive failures that take an up backend down.
    pub fall: u32,
}

/// What an active health check does.
#[derive(Debug, Clone, PartialEq)]
pub enum CheckKind {
    /// A TCP connect that succeeds within the timeout.
    Connect,
    /// An HTTP/1.1 GET whose status lies in `expect` (inclusive).
    Http {
        /// The path requested.
        path: String,
        /// The check's `Host` header; `None` sends the backend's address.
        host: Option<String>,
        /// The accepted status range.
        expect: (u16, u16),
    },
    /// The standard gRPC health check (`grpc.health.v1.Health/Check`) over the listener's
    /// HTTP/2 backend connections; passes when the answer is SERVING.
    Grpc {
        /// The service asked about; empty asks about the server as a whole.
        service: String,
    },
}

/// Passive checking: ejecting a backend after consecutive failures seen in real traffic.
#[derive(Debug, Clone, PartialEq)]
pub struct Passive {
    /// Consecutive 5xx responses or connect failures that eject a backend; 0 turns it off.
    pub failures: u32,
    /// First ejection; each further one doubles, up to `max_ejection`.
    pub base_ejection: Duration,
    /// Cap on one ejection; after this long without one, the back-off starts over.
    pub max_ejection: Duration,
    /// At most this share of backends is ejected at once.
    pub max_ejected_percent: u32,
}

/// The backends of one listener and how traffic is spread over them.
#[derive(Debug, Clone, PartialEq)]
pub struct Upstream {
    /// The servers, in config order.
    pub backends: Vec<BackendSpec>,
    /// How a backend is picked.
    pub balance: Balance,
    /// Active checks; `None` runs none.
    pub health: Option<HealthCheck>,
    /// Ejection after failures seen in real traffic.
    pub passive: Passive,
    /// Tries on another backend after the first, for requests that are safe to retry.
    pub retries: u32,
    /// Retries may add at most this fraction of requests on top of the requests themselves.
    pub retry_budget: f64,
    /// Limit on a TCP connect to a backend.
    pub connect_timeout: Duration,
    /// A backend that comes back ramps its weight up over this time; zero turns it off.
    pub slow_start: Duration,
    /// How long a request (or connection) waits for a backend with room while every one that
    /// could take it is at its `max_conns`: HAProxy's `timeout queue`.
    pub queue_timeout: Duration,
    /// How many requests (or connections) may wait in the queue at once; past it they are
    /// turned away at once. Zero: no bound (nginx's `queue N`; HAProxy bounds none by default).
    pub queue_size: u32,
}

const HEALTH_KEYS: &[&str] = &[
    "path",
    "grpc_service",
    "host",
    "expect",
    "interval",
    "timeout",
    "rise",
    "fall",
];
const PASSIVE_KEYS: &[&str] = &[
    "failures",
    "base_ejection",
    "max_ejection",
    "max_ejected_percent",
];

/// Which protocol the upstream serves; decides which balance and health options make sense.
#[derive(Clone, Copy, PartialEq)]
pub(crate) enum Layer {
    Http,
    Tcp,
}

pub(crate) fn upstream(report: &mut Report<'_>, s: &Section<'_, '_>, layer: Layer) -> Upstream {
    let connect_timeout = s.duration(report, "connect_timeout", Duration::from_secs(2));
    Upstream {
        backends: backends(report, s),
        balance: balance(report, s, layer),
        health: s
            .get("health")
            .and_then(|v| Section::new(report, s.key("health"), v, HEALTH_KEYS))
            .map(|h| health(report, &h, layer)),
        passive: passive(report, s),
        retries: s.int(report, "retries", 0..=10, 2) as u32,
        retry_budget: s.float(report, "retry_budget", 0.0..=1.0, 0.2),
        connect_timeout,
        slow_start: s.duration(report, "slow_start", Duration::from_secs(10)),
        // HAProxy's default for `timeout queue`
        queue_timeout: s.duration(report, "queue_timeout", connect_timeout),
        queue_size: s.int(report, "queue_size", 0..=1_000_000, 0) as u32,
    }
}

fn backends(report: &mut Report<'_>, s: &Section<'_, '_>) -> Vec<BackendSpec> {
    let key = s.key("backends");
    let Some(v) = s.get("backends") else {
        return Vec::new();
    };
    let Some(items) = v.get_ref().as_array() else {
        wrong_type(report, &key, v, "an array of \"host:port\" strings");
        return Vec::new();
    };
    let mut out: Vec<BackendSpec> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let key = format!("{key}[{i}]");
        let Some(text) = as_str(report, &key, item) else {
            continue;
        };
        let mut words = text.split_whitespace();
        let Some(addr) = words.next() else {
            report.add(item.span(), &key, "empty backend address");
            continue;
        };
        let Some(addr) = as_addr(report, &key, item, addr) else {
            continue;
        };
        let (mut weight, mut max_conns) = (1, 0);
        for word in words {
            let (option, value) = word.split_once('=').unwrap_or((word, ""));
            let (range, slot) = match option {
                "weight" => (1..=256, &mut weight),
                "max_conns" => (1..=1_000_000, &mut max_conns),
                _ => {
                    let hint = match option {
                        "maxconn" | "max_conn" | "max_connections" => {
                            format!("HAProxy's maxconn is max_conns here: \"max_conns={value}\"")
                        }
                        _ => "write \"10.0.0.11:8080 weight=2 max_conns=100\"".to_string(),
                    };
                    report.add_hint(
                        item.span(),
                        &key,
                        format!("unknown backend option \"{word}\""),
                        Some(&hint),
                    );
                    continue;
                }
            };
            match value.parse::<u32>() {
                Ok(n) if range.contains(&n) => *slot = n,
                _ => report.add(
                    item.span(),
                    &key,
                    format!(
                        "bad {option} in \"{word}\": use {} to {}",
                        range.start(),
                        range.end()
                    ),
                ),
            }
        }
        if out.iter().any(|b| b.addr == addr) {
            report.add(item.span(), &key, format!("backend {addr} is listed twice"));
            continue;
        }
        out.push(BackendSpec {
            addr,
            weight,
            max_conns,
        });
    }
    out
}

fn balance(report: &mut Report<'_>, s: &Section<'_, '_>, layer: Layer) -> Balance {
    let choices: &[&str] = match layer {
        Layer::Http => &["round_robin", "least_conn", "ip_hash", "random_two", "hash"],
        Layer::Tcp => &["round_robin", "least_conn", "ip_hash", "random_two"],
    };
    let name = s.choice(report, "balance", choices, "round_robin");
    let hash_key = s.get("hash_key");
    if name != "hash" {
        if let Some(v) = hash_key {
            report.add_hint(
                v.span(),
                &s.key("hash_key"),
                "hash_key is only used with balance = \"hash\"",
                Some("remove it, or set balance = \"hash\""),
            );
        }
    }
    match name {
        "least_conn" => Balance::LeastConn,
        "ip_hash" => Balance::IpHash,
        "random_two" => Balance::RandomTwo,
        "hash" => {
            let hint = Some("write hash_key = \"header:X-User-Id\" or \"cookie:session\"");
            let Some(v) = hash_key else {
                report.add_hint(
                    s.span.clone(),
                    &s.key("hash_key"),
                    "balance = \"hash\" needs a hash_key",
                    hint,
                );
                return Balance::RoundRobin;
            };
            let Some(text) = as_str(report, &s.key("hash_key"), v) else {
                return Balance::RoundRobin;
            };
            match text.split_once(':') {
                Some(("header", h)) if http::is_token(h) => {
                    Balance::Hash(HashKey::Header(h.to_ascii_lowercase()))
                }
                Some(("cookie", c)) if http::is_token(c) => {
                    Balance::Hash(HashKey::Cookie(c.to_string()))
                }
                _ => {
                    report.add_hint(
                        v.span(),
                        &s.key("hash_key"),
                        format!("\"{text}\" is not a header or cookie key"),
                        hint,
                    );
                    Balance::RoundRobin
                }
            }
        }
        _ => Balance::RoundRobin,
    }
}

fn health(report: &mut Report<'_>, h: &Section<'_, '_>, layer: Layer) -> HealthCheck {
    let path = h.string(report, "path");
    if let Some(v) = h.get("grpc_service") {
        let service = h.string(report, "grpc_service").unwrap_or_default();
        if layer == Layer::Tcp {
            report.add_hint(
                v.span(),
                &h.key("grpc_service"),
                "tcp listeners check backends by connecting, not over gRPC",
                Some("remove grpc_service"),
            );
        }
        for key in ["path", "host", "expect"] {
            if let Some(v) = h.get(key) {
                report.add(
                    v.span(),
                    &h.key(key),
                    format!("{key} belongs to an HTTP check, and this one is a gRPC check (grpc_service)"),
                );
            }
        }
        if layer == Layer::Http {
            return HealthCheck {
                kind: CheckKind::Grpc {
                    service: service.to_string(),
                },
                ..timing(report, h)
            };
        }
    }
    let kind = match (layer, path) {
        (Layer::Http, Some(path)) => {
            if !path.starts_with('/') {
                report.add(
                    h.get("path").map(|v| v.span()).unwrap_or(h.span.clone()),
                    &h.key("path"),
                    "the path must start with /",
                );
            }
            CheckKind::Http {
                path: path.to_string(),
                host: h.string(report, "host").map(str::to_string),
                expect: expect(report, h),
            }
        }
        (Layer::Tcp, Some(_)) => {
            report.add_hint(
                h.get("path").map(|v| v.span()).unwrap_or(h.span.clone()),
                &h.key("path"),
                "tcp listeners check backends by connecting, not over HTTP",
                Some("remove path"),
            );
            CheckKind::Connect
        }
        (_, None) => {
            for key in ["host", "expect"] {
                if let Some(v) = h.get(key) {
                    report.add(
                        v.span(),
                        &h.key(key),
                        format!("{key} needs an HTTP check: set path too"),
                    );
                }
            }
            CheckKind::Connect
        }
    };
    HealthCheck {
        kind,
        ..timing(report, h)
    }
}

/// A check's interval, timeout, rise and fall, whatever it checks.
fn timing(report: &mut Report<'_>, h: &Section<'_, '_>) -> HealthCheck {
    let interval = h.duration(report, "interval", Duration::from_secs(2));
    let timeout = h.duration(report, "timeout", Duration::from_secs(1));
    for (key, d) in [("interval", interval), ("timeout", timeout)] {
        if d.is_zero() {
            let span = h.get(key).map(|v| v.span()).unwrap_or(h.span.clone());
            report.add(span, &h.key(key), "must be greater than zero");
        }
    }
    HealthCheck {
        kind: CheckKind::Connect,
        interval,
        timeout,
        rise: h.int(report, "rise", 1..=100, 2) as u32,
        fall: h.int(report, "fall", 1..=100, 3) as u32,
    }
}

/// `expect = 200`, `expect = "2xx"` or `expect = "200-399"`; HAProxy's default is 2xx and 3xx.
fn expect(report: &mut Report<'_>, h: &Section<'_, '_>) -> (u16, u16) {
    let default = (200, 399);
    let Some(v) = h.get("expect") else {
        return default;
    };
    let key = h.key("expect");
    if v.get_ref().is_integer() {
        return as_int(report, &key, v, 100..=599).map_or(default, |n| (n as u16, n as u16));
    }
    let Some(text) = as_str(report, &key, v) else {
        return default;
    };
    let parsed = if let Some(class) = text.strip_suffix("xx") {
        class
            .parse::<u16>()
            .ok()
            .filter(|c| (1..=5).contains(c))
            .map(|c| (c * 100, c * 100 + 99))
    } else if let Some((lo, hi)) = text.split_once('-') {
        lo.trim().parse().ok().zip(hi.trim().parse().ok())
    } else {
        text.parse().ok().map(|n| (n, n))
    };
    match parsed {
        Some((lo, hi)) if (100..=599).contains(&lo) && (lo..=599).contains(&hi) => (lo, hi),
        _ => {
            report.add_hint(
                v.span(),
                &key,
                format!("\"{text}\" is not a status or range"),
                Some("write 200, \"2xx\" or \"200-399\""),
            );
            default
        }
    }
}

fn passive(report: &mut Report<'_>, s: &Section<'_, '_>) -> Passive {
    let p = s
        .get("passive")
        .and_then(|v| Section::new(report, s.key("passive"), v, PASSIVE_KEYS));
    let Some(p) = p else {
        return Passive {
            failures: 5,
            base_ejection: Duration::from_secs(10),
            max_ejection: Duration::from_secs(300),
            max_ejected_percent: 50,
        };
    };
    let out = Passive {
        failures: p.int(report, "failures", 0..=1000, 5) as u32,
        base_ejection: p.duration(report, "base_ejection", Duration::from_secs(10)),
        max_ejection: p.duration(report, "max_ejection", Duration::from_secs(300)),
        max_ejected_percent: p.int(report, "max_ejected_percent", 0..=100, 50) as u32,
    };
    if out.max_ejection < out.base_ejection {
        let span = p
            .get("max_ejection")
            .map(|v| v.span())
            .unwrap_or(p.span.clone());
        report.add(
            span,
            &p.key("max_ejection"),
            "must not be shorter than base_ejection",
        );
    }
    out
}

/// Header and cookie names as RFC 9110 tokens.
mod http {
    pub(super) fn is_token(s: &str) -> bool {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
    }
}

/// Reports a listener with nothing to send traffic to.
pub(crate) fn require_backends(report: &mut Report<'_>, s: &Section<'_, '_>, up: &Upstream) {
    let listed = s
        .get("backends")
        .and_then(|v| v.get_ref().as_array())
        .map(|a| a.iter().count());
    if up.backends.is_empty() && listed == Some(0) {
        let span = s
            .get("backends")
            .map(|v| v.span())
            .unwrap_or(s.span.clone());
        report.add_hint(
            span,
            &s.key("backends"),
            "the backend list is empty",
            Some("list at least one \"host:port\""),
        );
    } else if s.get("backends").is_none() {
        report.add_hint(
            s.span.clone(),
            &s.key("backends"),
            "required key is missing",
            Some("backends = [\"127.0.0.1:8080\"]"),
        );
    }
}
