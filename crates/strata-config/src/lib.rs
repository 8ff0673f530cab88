//! Typed Strata configuration: parsing, validation, and errors that point at file:line.
//!
//! The TOML is walked by hand over its spanned tree rather than with serde, so that one run of
//! `strata check` reports every problem, each with its line, its key and a hint.

mod admin;
mod cache;
mod database;
mod error;
mod http;
mod tcp;
mod upstream;
mod vip;
mod walk;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

pub use admin::{Admin, AdminToken};
pub use cache::{CacheListener, CacheProtocol, CacheServer, Consistency, ReadFrom};
pub use database::{
    base64_decode, base64_encode, parse_secret, AuthType, DatabaseListener, DbUser, KeyType,
    PoolMode, Secret, ServerTls, ServerTlsMode, ShardRange, ShardRule, ShardedTable,
    DEFAULT_AUTH_QUERY,
};
pub use error::{ConfigError, Problem};
pub use http::{BackendProtocol, BackendTls, Forwarded, HttpListener, TlsCert};
pub use tcp::TcpListener;
pub use upstream::{BackendSpec, Balance, CheckKind, HashKey, HealthCheck, Passive, Upstream};
pub use vip::{
    is_interface_name, parse_vip_address, Track, Tracked, VipAddress, VipInstance,
    INTERFACE_NAME_RULE,
};
pub use walk::{parse_duration, parse_size};

use error::Report;
use walk::{tables_of, Section};

/// A whole, validated node config.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Runtime worker threads; `None` means one per core.
    pub workers: Option<usize>,
    /// How long after bytes last arrived the runtime's thread keeps polling for events instead
    /// of sleeping (`busy_poll`); zero: it sleeps as soon as it has nothing to do.
    pub busy_poll: Duration,
    /// On SIGTERM, how long in-flight requests may take to finish.
    pub drain_timeout: Duration,
    /// The admin listener; `None` when the config has no `[admin]`.
    pub admin: Option<Admin>,
    /// The `[[http]]` listeners, in file order.
    pub http: Vec<HttpListener>,
    /// The `[[tcp]]` listeners, in file order.
    pub tcp: Vec<TcpListener>,
    /// The `[[cache]]` pools, in file order.
    pub cache: Vec<CacheListener>,
    /// The `[[vip]]` instances of the entry layer, in file order.
    pub vip: Vec<VipInstance>,
    /// The `[[database]]` listeners, in file order.
    pub database: Vec<DatabaseListener>,
}

const ROOT_KEYS: &[&str] = &[
    "workers",
    "busy_poll",
    "drain_timeout",
    "admin",
    "http",
    "tcp",
    "cache",
    "vip",
    "database",
];
/// Reads and validates the file at `path`.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let source = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    parse(&source, &path.display().to_string(), base)
}

/// Validates `source`; `file` names it in errors, `base` resolves relative paths (TLS files,
/// the admin token file, which is read here).
pub fn parse(source: &str, file: &str, base: &Path) -> Result<Config, ConfigError> {
    let mut report = Report::new(file, source);
    let root = match toml::de::DeTable::parse(source) {
        Ok(root) => root,
        Err(e) => {
            let span = e.span().unwrap_or(0..0);
            let message = e.message().trim().to_string();
            report.add(span, "", format!("invalid TOML: {message}"));
            return Err(ConfigError::Invalid(report.problems));
        }
    };
    let config = walk_root(&mut report, &root, base);
    if report.problems.is_empty() {
        Ok(config)
    } else {
        report.problems.sort_by_key(|p| (p.line, p.column));
        Err(ConfigError::Invalid(report.problems))
    }
}

fn walk_root(
    report: &mut Report<'_>,
    root: &toml::Spanned<toml::de::DeTable<'_>>,
    base: &Path,
) -> Config {
    let s = Section::root(root, ROOT_KEYS);
    s.check_unknown(report);
    let workers = s
        .get("workers")
        .map(|_| s.int(report, "workers", 1..=1024, 1) as usize);
    let busy_poll = busy_poll(report, &s, workers);
    let drain_timeout = s.duration(report, "drain_timeout", Duration::from_secs(30));
    let admin = s
        .get("admin")
        .and_then(|v| Section::new(report, "admin".into(), v, admin::KEYS))
        .and_then(|a| admin::admin(report, &a, base));
    let http_sections = s
        .get("http")
        .map(|v| tables_of(report, "http", v, http::KEYS))
        .unwrap_or_default();
    let tcp_sections = s
        .get("tcp")
        .map(|v| tables_of(report, "tcp", v, tcp::KEYS))
        .unwrap_or_default();
    let cache_sections = s
        .get("cache")
        .map(|v| tables_of(report, "cache", v, cache::KEYS))
        .unwrap_or_default();
    let database_sections = s
        .get("database")
        .map(|v| tables_of(report, "database", v, database::KEYS))
        .unwrap_or_default();
    let database: Vec<_> = database_sections
        .iter()
        .filter_map(|d| database::listener(report, d, base))
        .collect();
    let vip_sections = s
        .get("vip")
        .map(|v| tables_of(report, "vip", v, vip::KEYS))
        .unwrap_or_default();
    let http: Vec<_> = http_sections
        .iter()
        .filter_map(|h| http::listener(report, h, base))
        .collect();
    let tcp: Vec<_> = tcp_sections
        .iter()
        .filter_map(|t| tcp::listener(report, t))
        .collect();

    let cache: Vec<_> = cache_sections
        .iter()
        .filter_map(|c| cache::listener(report, c))
        .collect();

    let vip: Vec<_> = vip_sections
        .iter()
        .filter_map(|v| vip::instance(report, v))
        .collect();
    let has_listener = |layer: &str, name: &str| {
        let names: Vec<&str> = match layer {
            "http" => http.iter().map(|l| l.name.as_str()).collect(),
            "tcp" => tcp.iter().map(|l| l.name.as_str()).collect(),
            _ => cache.iter().map(|l| l.name.as_str()).collect(),
        };
        names.contains(&name)
    };
    vip::check_instances(report, &vip_sections, &has_listener);

    // Names are how the admin API and metrics address a listener: unique per layer.
    check_unique_names(report, &http_sections, "http listener");
    check_unique_names(report, &tcp_sections, "tcp listener");
    check_unique_names(report, &cache_sections, "cache pool");
    check_unique_names(report, &vip_sections, "vip instance");
    check_unique_names(report, &database_sections, "database listener");

    // Two listeners on one address can't both bind; port 0 asks the kernel for a fresh port.
    let mut seen: HashMap<SocketAddr, String> = HashMap::new();
    if let Some(a) = &admin {
        seen.insert(a.listen, "admin.listen".into());
    }
    for section in http_sections
        .iter()
        .chain(&tcp_sections)
        .chain(&cache_sections)
        .chain(&database_sections)
    {
        let Some(v) = section.get("listen") else {
            continue;
        };
        let Some(addr) = v.get_ref().as_str().and_then(|t| walk::parse_addr(t).ok()) else {
            continue;
        };
        if addr.port() == 0 {
            continue;
        }
        let key = section.key("listen");
        if let Some(first) = seen.get(&addr) {
            report.add_hint(
                v.span(),
                &key,
                format!("{addr} is already used by `{first}`"),
                Some("give each listener its own address"),
            );
        } else {
            seen.insert(addr, key);
        }
    }

    Config {
        workers,
        busy_poll,
        drain_timeout,
        admin,
        http,
        tcp,
        cache,
        vip,
        database,
    }
}

/// The most `busy_poll` can be: past this it is not a wait for the next event but a core given
/// up for good.
const BUSY_POLL_MOST: Duration = Duration::from_millis(10);

/// `busy_poll`: a window of at most [`BUSY_POLL_MOST`], on a node of one worker (only a
/// single-threaded runtime can be kept polling).
fn busy_poll(report: &mut Report<'_>, s: &Section<'_, '_>, workers: Option<usize>) -> Duration {
    let window = s.duration(report, "busy_poll", Duration::ZERO);
    let Some(v) = s.get("busy_poll") else {
        return window;
    };
    if window > BUSY_POLL_MOST {
        report.add(
            v.span(),
            "busy_poll",
            format!("{window:?} is more than the most it can be, 10ms"),
        );
        return Duration::ZERO;
    }
    if !window.is_zero() && workers != Some(1) {
        report.add_hint(
            v.span(),
            "busy_poll",
            "busy polling needs a node of one worker thread",
            Some("set `workers = 1` (and pin the process to a core of its own, with taskset)"),
        );
        return Duration::ZERO;
    }
    window
}

fn check_unique_names(report: &mut Report<'_>, sections: &[Section<'_, '_>], what: &str) {
    let mut seen = HashSet::new();
    for section in sections {
        let Some(v) = section.get("name") else {
            continue;
        };
        let Some(name) = v.get_ref().as_str() else {
            continue;
        };
        if !seen.insert(name) {
            report.add(
                v.span(),
                &section.key("name"),
                format!("another {what} is already named \"{name}\""),
            );
        }
    }
}

#[cfg(test)]
mod tests;
