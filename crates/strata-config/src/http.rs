//! `[[http]]`: the L7 reverse proxy listener.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::Report;
use crate::upstream::{require_backends, upstream, Layer, Upstream};
use crate::walk::{as_str, wrong_type, Section};

/// One `[[http]]` listener: the L7 reverse proxy, its limits and its backends.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpListener {
    /// Unique among the HTTP listeners; names the listener in metrics, `/status` and the admin API.
    pub name: String,
    /// Where to listen; port 0 takes a free port.
    pub listen: SocketAddr,
    /// The backends and how requests are spread over them.
    pub upstream: Upstream,
    /// How long a client may take to send a request head; also how long an idle keep-alive
    /// connection waits for its next request (as HAProxy's `timeout http-request`).
    pub header_timeout: Duration,
    /// How long a backend may take to send response headers.
    pub response_timeout: Duration,
    /// Inactivity limit on upgraded (WebSocket) tunnels and on pooled upstream connections.
    pub idle_timeout: Duration,
    /// Larger request bodies get 413: by `Content-Length` at once, chunked ones when they cross it.
    pub max_body_size: u64,
    /// A request head larger than this gets 431.
    pub max_header_size: u64,
    /// Client connections open at once; further ones wait in the kernel's accept queue.
    pub max_connections: u32,
    /// Which forwarding headers the backend gets.
    pub forwarded: Forwarded,
    /// One log line per request on target `strata::access`.
    pub access_log: bool,
    /// Serve TLS with these certificates, chosen by SNI; empty means plain HTTP.
    pub tls: Vec<TlsCert>,
    /// Answer every request with a redirect to the same URL over https instead of proxying.
    pub redirect_https: bool,
    /// Idle upstream connections kept per backend.
    pub upstream_keepalive: u32,
    /// The `Upgrade` protocols passed on to backends (lowercase, e.g. "websocket"); a request
    /// asking for another goes on as a plain request. Never "h2c".
    pub upgrades: Vec<String>,
    /// Pass CONNECT requests (HTTP/1.1) to the backends and tunnel bytes after a 2xx answer;
    /// otherwise they get 405.
    pub allow_connect: bool,
    /// How the listener speaks to its backends.
    pub backend_protocol: BackendProtocol,
    /// Streams an HTTP/2 client may have open at once on one connection
    /// (SETTINGS_MAX_CONCURRENT_STREAMS); more are refused with REFUSED_STREAM.
    pub h2_max_concurrent_streams: u32,
}

/// The protocol spoken to a listener's backends, `backend_protocol`.
#[derive(Debug, Clone, PartialEq)]
pub enum BackendProtocol {
    /// HTTP/1.1 over plain TCP, connections kept alive and reused one request at a time.
    Http1,
    /// HTTP/2 over plain TCP (prior knowledge), requests multiplexed as streams: what gRPC
    /// servers speak.
    H2c,
    /// HTTP/2 over TLS (ALPN h2), the backend's certificate verified against `ca`.
    H2(BackendTls),
}

/// How backend certificates are checked for `backend_protocol = "h2"`.
#[derive(Debug, Clone, PartialEq)]
pub struct BackendTls {
    /// PEM file of the certificate authorities that backends' certificates must chain to,
    /// `backend_ca`, resolved against the config file's directory.
    pub ca: PathBuf,
    /// The name sent as SNI and verified in each backend's certificate, `backend_sni`; `None`
    /// verifies the backend's IP address instead (and sends no SNI).
    pub sni: Option<String>,
}

/// Which forwarding headers the proxy adds for the backend.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Forwarded {
    /// X-Forwarded-For, X-Forwarded-Proto, X-Forwarded-Host.
    XForwarded,
    /// RFC 7239 `Forwarded`.
    Rfc7239,
    /// No forwarding header (`Via` is still added).
    None,
}

/// A certificate chain and its key, PEM files; names come from the certificate itself.
#[derive(Debug, Clone, PartialEq)]
pub struct TlsCert {
    /// The PEM certificate chain, resolved against the config file's directory.
    pub cert: PathBuf,
    /// The PEM private key of `cert`, resolved the same way.
    pub key: PathBuf,
}

pub(crate) const KEYS: &[&str] = &[
    "backends",
    "balance",
    "hash_key",
    "health",
    "passive",
    "retries",
    "retry_budget",
    "connect_timeout",
    "slow_start",
    "queue_timeout",
    "queue_size",
    "name",
    "listen",
    "header_timeout",
    "response_timeout",
    "idle_timeout",
    "max_body_size",
    "max_header_size",
    "max_connections",
    "forwarded",
    "access_log",
    "tls",
    "redirect_https",
    "upstream_keepalive",
    "upgrades",
    "allow_connect",
    "backend_protocol",
    "backend_ca",
    "backend_sni",
    "h2_max_concurrent_streams",
];
const TLS_KEYS: &[&str] = &["cert", "key"];

/// A listener's `[[...tls]]` tables: certificate chain and key files, resolved against the
/// config file's directory (`[[http]]` and `[[database]]` both take them).
pub(crate) fn tls_certs(report: &mut Report<'_>, s: &Section<'_, '_>, base: &Path) -> Vec<TlsCert> {
    s.tables(report, "tls", TLS_KEYS)
        .iter()
        .filter_map(|t| {
            let cert = t
                .required(report, "cert")
                .and_then(|_| t.string(report, "cert"));
            let key = t
                .required(report, "key")
                .and_then(|_| t.string(report, "key"));
            Some(TlsCert {
                cert: base.join(cert?),
                key: base.join(key?),
            })
        })
        .collect()
}

pub(crate) fn listener(
    report: &mut Report<'_>,
    s: &Section<'_, '_>,
    base: &Path,
) -> Option<HttpListener> {
    let (name, listen) = s.name_and_listen(report);
    let upstream = upstream(report, s, Layer::Http);
    let redirect_https = s.bool(report, "redirect_https", false);
    if !redirect_https {
        require_backends(report, s, &upstream);
    }
    let max_header_size = s.size(report, "max_header_size", 16 << 10, u64::MAX);
    if max_header_size < 8192 {
        let span = s
            .get("max_header_size")
            .map(|v| v.span())
            .unwrap_or(s.span.clone());
        report.add(span, &s.key("max_header_size"), "must be at least 8KiB");
    }
    let tls = tls_certs(report, s, base);
    let forwarded = match s.choice(
        report,
        "forwarded",
        &["x-forwarded", "forwarded", "none"],
        "x-forwarded",
    ) {
        "forwarded" => Forwarded::Rfc7239,
        "none" => Forwarded::None,
        _ => Forwarded::XForwarded,
    };
    let out = HttpListener {
        name: name?.to_string(),
        listen: listen?,
        header_timeout: s.duration(report, "header_timeout", Duration::from_secs(10)),
        response_timeout: s.duration(report, "response_timeout", Duration::from_secs(60)),
        idle_timeout: s.duration(report, "idle_timeout", Duration::from_secs(60)),
        max_body_size: s.size(report, "max_body_size", 16 << 20, u64::MAX),
        max_header_size,
        max_connections: s.int(report, "max_connections", 1..=1_000_000, 10_000) as u32,
        forwarded,
        access_log: s.bool(report, "access_log", false),
        tls,
        redirect_https,
        upstream_keepalive: s.int(report, "upstream_keepalive", 0..=10_000, 512) as u32,
        upgrades: upgrades(report, s),
        allow_connect: s.bool(report, "allow_connect", false),
        backend_protocol: backend_protocol(report, s, base),
        h2_max_concurrent_streams: s.int(report, "h2_max_concurrent_streams", 1..=10_000, 256)
            as u32,
        upstream,
    };
    if out.allow_connect && out.backend_protocol != BackendProtocol::Http1 {
        report.add_hint(
            s.get("allow_connect").map_or(s.span.clone(), |v| v.span()),
            &s.key("allow_connect"),
            "CONNECT tunnels are made over HTTP/1.1 backend connections",
            Some("remove allow_connect, or set backend_protocol = \"http1\""),
        );
    }
    if let (Some(crate::CheckKind::Grpc { .. }), BackendProtocol::Http1) = (
        out.upstream.health.as_ref().map(|h| &h.kind),
        &out.backend_protocol,
    ) {
        report.add_hint(
            s.get("health").map_or(s.span.clone(), |v| v.span()),
            &format!("{}.grpc_service", s.key("health")),
            "a gRPC health check needs HTTP/2 to the backends",
            Some("set backend_protocol = \"h2c\" (or \"h2\" with backend_ca)"),
        );
    }
    Some(out)
}

/// `backend_protocol`, with `backend_ca` and `backend_sni` for HTTP/2 over TLS.
fn backend_protocol(report: &mut Report<'_>, s: &Section<'_, '_>, base: &Path) -> BackendProtocol {
    let name = s.choice(report, "backend_protocol", &["http1", "h2c", "h2"], "http1");
    if name != "h2" {
        for key in ["backend_ca", "backend_sni"] {
            if let Some(v) = s.get(key) {
                report.add_hint(
                    v.span(),
                    &s.key(key),
                    format!("{key} is only used with backend_protocol = \"h2\""),
                    Some("remove it, or set backend_protocol = \"h2\""),
                );
            }
        }
    }
    match name {
        "h2c" => BackendProtocol::H2c,
        "h2" => {
            let Some(ca) = s.string(report, "backend_ca") else {
                if s.get("backend_ca").is_none() {
                    report.add_hint(
                        s.get("backend_protocol").map_or(s.span.clone(), |v| v.span()),
                        &s.key("backend_ca"),
                        "backend_protocol = \"h2\" verifies backends' certificates and needs the CA that signed them",
                        Some("write backend_ca = \"backend-ca.pem\", or use \"h2c\" for plain HTTP/2"),
                    );
                }
                return BackendProtocol::H2c;
            };
            let sni = s.string(report, "backend_sni").map(str::to_string);
            if let Some(name) = &sni {
                if name.is_empty()
                    || !name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
                {
                    report.add(
                        s.get("backend_sni").map_or(s.span.clone(), |v| v.span()),
                        &s.key("backend_sni"),
                        format!("\"{name}\" is not a DNS name"),
                    );
                }
            }
            BackendProtocol::H2(BackendTls {
                ca: base.join(ca),
                sni,
            })
        }
        _ => BackendProtocol::Http1,
    }
}

/// `upgrades`: protocol names (RFC 9110 7.8), default websocket only.
fn upgrades(report: &mut Report<'_>, s: &Section<'_, '_>) -> Vec<String> {
    let key = s.key("upgrades");
    let Some(v) = s.get("upgrades") else {
        return vec!["websocket".into()];
    };
    let Some(items) = v.get_ref().as_array() else {
        wrong_type(
            report,
            &key,
            v,
            "an array of protocol names, e.g. [\"websocket\"]",
        );
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let key = format!("{key}[{i}]");
        let Some(name) = as_str(report, &key, item) else {
            continue;
        };
        let name = name.to_ascii_lowercase();
        if name == "h2c" {
            report.add_hint(
                item.span(),
                &key,
                "h2c is never tunnelled: a client could talk HTTP/2 to a backend past every rule of the listener",
                Some("clients get HTTP/2 from strata itself (h2c prior knowledge, or TLS with ALPN)"),
            );
        } else if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~/".contains(&b))
        {
            report.add(
                item.span(),
                &key,
                format!("\"{name}\" is not a protocol name"),
            );
        } else {
            out.push(name);
        }
    }
    out
}
