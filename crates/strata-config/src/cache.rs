//! `[[cache]]`: a Redis or memcached sharding proxy, placing keys as twemproxy does.

use std::net::SocketAddr;
use std::time::Duration;

use strata_ring::{Distribution, KeyHash};

use crate::error::Report;
use crate::upstream::Passive;
use crate::walk::{as_addr, as_str, wrong_type, Section};

/// One `[[cache]]` pool: a listener and the servers its keys are spread over.
#[derive(Debug, Clone, PartialEq)]
pub struct CacheListener {
    /// Unique among the cache pools; names the pool in metrics, `/status` and the admin API.
    pub name: String,
    /// Where clients connect; port 0 takes a free port.
    pub listen: SocketAddr,
    /// The protocol clients and servers speak.
    pub protocol: CacheProtocol,
    /// How keys map to servers (twemproxy's `distribution`).
    pub distribution: Distribution,
    /// The key hash (twemproxy's `hash`).
    pub hash: KeyHash,
    /// Only the part of a key between these two bytes is hashed, when present (`hash_tag`).
    pub hash_tag: Option<[u8; 2]>,
    /// The servers, in config order (the order matters to `modula`).
    pub servers: Vec<CacheServer>,
    /// What happens to a key whose server is out.
    pub consistency: Consistency,
    /// Persistent connections per server, shared by all clients (`server_connections`).
    pub server_connections: u32,
    /// A server that has not replied for this long fails its connection (`timeout`).
    pub timeout: Duration,
    /// Connecting to a server takes at most this long.
    pub connect_timeout: Duration,
    /// Failures in a row that eject a server (`server_failure_limit`) and for how long
    /// (`server_retry_timeout`).
    pub passive: Passive,
    /// Clients must `AUTH` with this password first (Redis only).
    pub password: Option<String>,
    /// Sent as `AUTH` on every server connection (Redis only; twemproxy's `redis_auth`).
    pub server_password: Option<String>,
    /// Sent as `AUTH` on every connection to a Sentinel (its `requirepass`).
    pub sentinel_password: Option<String>,
    /// Largest bulk string a client may send.
    pub max_bulk_size: u64,
    /// Client connections open at once; further ones wait in the kernel's accept queue.
    pub max_connections: u32,
    /// A client idle this long is closed; `None` never closes one (Redis's `timeout 0`).
    pub idle_timeout: Option<Duration>,
    /// Where read-only commands go.
    pub read_from: ReadFrom,
    /// Redis Sentinels to learn each server's master and replicas from; each server's name is
    /// its Sentinel master name. Empty: the config says where masters and replicas are.
    pub sentinels: Vec<SocketAddr>,
    /// After a reload moves keys to other servers, for this long a GET that misses on a key's
    /// new server reads its old one and copies the value over; zero turns it off.
    pub read_through: Duration,
    /// In a `weak` pool, how many keys written on another server while theirs was out are
    /// remembered, to be deleted on it when it is back.
    pub remember_writes: usize,
    /// The servers are seed nodes of a Redis Cluster, which places keys itself.
    pub cluster: bool,
}

/// Where a pool sends read-only commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadFrom {
    /// Always the master: every read sees every write before it.
    Master,
    /// A replica of the key's server when one is up, else its master: reads scale out and may
    /// lag behind writes.
    Replica,
    /// Whichever of the master and its replicas has answered fastest lately.
    Nearest,
}

/// The protocol of a cache pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheProtocol {
    /// Redis RESP2.
    Redis,
    /// memcached's text protocol.
    Memcache,
}

/// What a pool does with the keys of a server that is out (ejected, or not answering).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consistency {
    /// Never serve a key from a server that may hold a stale copy: while its owner is out the
    /// key fails fast with an error.
    Strong,
    /// Keys of an ejected server go to the next server on the ring.
    Weak,
    /// Values never change once written: keys re-route freely.
    Immutable,
}

/// One server line: `host:port:weight [name]`.
#[derive(Debug, Clone, PartialEq)]
pub struct CacheServer {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its share of the keys (twemproxy's weight).
    pub weight: u32,
    /// The name its ring points are made from: the configured name, else `host` when the port
    /// is 11211, else `host:port`, as twemproxy names it.
    pub ring_name: String,
    /// The name given on the line, if any.
    pub label: Option<String>,
    /// Its replicas (from the pool's `replicas`), for `read_from`.
    pub replicas: Vec<SocketAddr>,
}

pub(crate) const KEYS: &[&str] = &[
    "name",
    "listen",
    "protocol",
    "distribution",
    "hash",
    "hash_tag",
    "servers",
    "consistency",
    "server_connections",
    "timeout",
    "connect_timeout",
    "server_failure_limit",
    "server_retry_timeout",
    "password",
    "server_password",
    "sentinel_password",
    "max_bulk_size",
    "max_connections",
    "idle_timeout",
    "replicas",
    "read_from",
    "sentinels",
    "read_through",
    "remember_writes",
    "backend",
];

pub(crate) fn listener(report: &mut Report<'_>, s: &Section<'_, '_>) -> Option<CacheListener> {
    let (name, listen) = s.name_and_listen(report);
    let protocol = match s.choice(report, "protocol", &["redis", "memcache"], "redis") {
        "memcache" => CacheProtocol::Memcache,
        _ => CacheProtocol::Redis,
    };
    let distribution = s.choice(
        report,
        "distribution",
        &["ketama", "modula", "random"],
        "ketama",
    );
    let distribution = Distribution::from_name(distribution).unwrap_or(Distribution::Ketama);
    let hash_names: Vec<&'static str> = KeyHash::ALL.iter().map(|h| h.name()).collect();
    let hash = s.choice(report, "hash", &hash_names, "fnv1a_64");
    let hash = KeyHash::from_name(hash).unwrap_or(KeyHash::Fnv1a64);
    let hash_tag = hash_tag(report, s);
    let consistency = match s.choice(
        report,
        "consistency",
        &["strong", "weak", "immutable"],
        "strong",
    ) {
        "weak" => Consistency::Weak,
        "immutable" => Consistency::Immutable,
        _ => Consistency::Strong,
    };
    let mut servers = servers(report, s);
    replicas(report, s, &mut servers);
    let read_from = match s.choice(
        report,
        "read_from",
        &["master", "replica", "nearest"],
        "master",
    ) {
        "replica" => ReadFrom::Replica,
        "nearest" => ReadFrom::Nearest,
        _ => ReadFrom::Master,
    };
    let sentinels = addresses(report, s, "sentinels");
    let sentinel_password = s
        .get("sentinel_password")
        .and_then(|_| s.string(report, "sentinel_password"));
    if let (Some(v), true) = (s.get("sentinel_password"), sentinels.is_empty()) {
        report.add_hint(
            v.span(),
            &s.key("sentinel_password"),
            "a Sentinel password without `sentinels`",
            Some("list the Sentinels under `sentinels`, or remove it"),
        );
    }
    if !sentinels.is_empty() {
        if let Some(v) = s.get("replicas") {
            report.add_hint(
                v.span(),
                &s.key("replicas"),
                "replicas are learned from the sentinels",
                Some("remove `replicas`, or `sentinels` to list them here"),
            );
        }
        if protocol == CacheProtocol::Memcache {
            if let Some(v) = s.get("sentinels") {
                report.add(
                    v.span(),
                    &s.key("sentinels"),
                    "Redis Sentinel watches Redis servers, not memcached",
                );
            }
        }
    }
    let cluster = s.choice(report, "backend", &["servers", "cluster"], "servers") == "cluster";
    if cluster {
        for key in [
            "distribution",
            "hash",
            "hash_tag",
            "replicas",
            "sentinels",
            "consistency",
        ] {
            if let Some(v) = s.get(key) {
                report.add_hint(
                    v.span(),
                    &s.key(key),
                    "Redis Cluster places keys itself (CRC16 slots, `{...}` hash tags)",
                    Some("remove it, or use backend = \"servers\""),
                );
            }
        }
        if protocol == CacheProtocol::Memcache {
            if let Some(v) = s.get("backend") {
                report.add(
                    v.span(),
                    &s.key("backend"),
                    "a Redis Cluster speaks Redis, not memcached",
                );
            }
        }
    }
    let retry = s.duration(report, "server_retry_timeout", Duration::from_secs(30));
    let passive = Passive {
        failures: s.int(report, "server_failure_limit", 1..=1000, 2) as u32,
        base_ejection: retry,
        max_ejection: retry,
        max_ejected_percent: 100,
    };
    let password = s.get("password").and_then(|_| s.string(report, "password"));
    let server_password = s
        .get("server_password")
        .and_then(|_| s.string(report, "server_password"));
    if protocol == CacheProtocol::Memcache {
        for key in ["password", "server_password"] {
            if let Some(v) = s.get(key) {
                report.add_hint(
                    v.span(),
                    &s.key(key),
                    "memcached's text protocol has no authentication",
                    Some("remove it, or use protocol = \"redis\""),
                );
            }
        }
    }
    let idle = s.duration(report, "idle_timeout", Duration::ZERO);
    Some(CacheListener {
        name: name?.to_string(),
        listen: listen?,
        protocol,
        distribution,
        hash,
        hash_tag,
        servers,
        consistency,
        server_connections: s.int(report, "server_connections", 1..=64, 1) as u32,
        timeout: s.duration(report, "timeout", Duration::from_secs(1)),
        connect_timeout: s.duration(report, "connect_timeout", Duration::from_secs(1)),
        passive,
        password: password.map(str::to_string),
        server_password: server_password.map(str::to_string),
        sentinel_password: sentinel_password.map(str::to_string),
        // no more than one command may hold (strata_cache::resp::MAX_COMMAND, Redis's own
        // proto-max-bulk-len default)
        max_bulk_size: s.size(report, "max_bulk_size", 64 << 20, 512 << 20),
        max_connections: s.int(report, "max_connections", 1..=1_000_000, 10_000) as u32,
        idle_timeout: (!idle.is_zero()).then_some(idle),
        read_from,
        sentinels,
        read_through: s.duration(report, "read_through", Duration::from_secs(600)),
        remember_writes: s.int(report, "remember_writes", 0..=10_000_000, 100_000) as usize,
        cluster,
    })
}

/// An array of `"ip:port"` strings under `name`.
fn addresses(report: &mut Report<'_>, s: &Section<'_, '_>, name: &str) -> Vec<SocketAddr> {
    let Some(v) = s.get(name) else {
        return Vec::new();
    };
    array_of_addresses(report, &s.key(name), v)
}

fn array_of_addresses(
    report: &mut Report<'_>,
    key: &str,
    v: &toml::Spanned<toml::de::DeValue<'_>>,
) -> Vec<SocketAddr> {
    let Some(items) = v.get_ref().as_array() else {
        wrong_type(report, key, v, "an array of \"ip:port\" strings");
        return Vec::new();
    };
    items
        .iter()
        .enumerate()
        .filter_map(|(i, item)| {
            let key = format!("{key}[{i}]");
            let text = as_str(report, &key, item)?;
            as_addr(report, &key, item, text)
        })
        .collect()
}

/// `replicas = { "server name" = ["ip:port", ...] }`: each name must be a server's (its
/// ring name or the name on its line).
fn replicas(report: &mut Report<'_>, s: &Section<'_, '_>, servers: &mut [CacheServer]) {
    let Some(v) = s.get("replicas") else {
        return;
    };
    let key = s.key("replicas");
    let Some(table) = v.get_ref().as_table() else {
        wrong_type(
            report,
            &key,
            v,
            "a table of server name = [\"ip:port\", ...]",
        );
        return;
    };
    for (name, list) in table.iter() {
        let name_text: &str = name.get_ref();
        let entry_key = format!("{key}.{name_text}");
        let addrs = array_of_addresses(report, &entry_key, list);
        match servers
            .iter_mut()
            .find(|srv| srv.ring_name == name_text || srv.label.as_deref() == Some(name_text))
        {
            Some(server) => server.replicas = addrs,
            None => {
                let names: Vec<&str> = servers.iter().map(|s| s.ring_name.as_str()).collect();
                report.add_hint(
                    name.span(),
                    &entry_key,
                    format!("no server is named \"{name_text}\""),
                    Some(format!("servers here: {}", names.join(", "))),
                );
            }
        }
    }
}

fn hash_tag(report: &mut Report<'_>, s: &Section<'_, '_>) -> Option<[u8; 2]> {
    let v = s.get("hash_tag")?;
    let text = s.string(report, "hash_tag")?;
    match text.as_bytes() {
        [open, close] => Some([*open, *close]),
        _ => {
            report.add_hint(
                v.span(),
                &s.key("hash_tag"),
                format!("\"{text}\" is not two characters"),
                Some("hash_tag = \"{}\" hashes only what is between { and }"),
            );
            None
        }
    }
}

fn servers(report: &mut Report<'_>, s: &Section<'_, '_>) -> Vec<CacheServer> {
    let key = s.key("servers");
    let Some(v) = s.required(report, "servers") else {
        return Vec::new();
    };
    let Some(items) = v.get_ref().as_array() else {
        wrong_type(
            report,
            &key,
            v,
            "an array of \"host:port:weight [name]\" strings",
        );
        return Vec::new();
    };
    let mut out: Vec<CacheServer> = Vec::new();
    // where each accepted server stands in the config, for messages about a later one
    let mut at: Vec<usize> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let key = format!("{key}[{i}]");
        let Some(text) = as_str(report, &key, item) else {
            continue;
        };
        let Some(server) = server_line(text) else {
            report.add_hint(
                item.span(),
                &key,
                format!("\"{text}\" is not a server line"),
                Some("write \"10.0.0.21:6379:1\" or \"10.0.0.21:6379:1 cache-1\" (host:port:weight [name])"),
            );
            continue;
        };
        let server = match server {
            Ok(server) => server,
            Err(why) => {
                report.add_hint(
                    item.span(),
                    &key,
                    why,
                    Some("write \"10.0.0.21:6379:1\" (an IP address, a port, a weight)"),
                );
                continue;
            }
        };
        if let Some(first) = out.iter().position(|o| o.addr == server.addr) {
            report.add(
                item.span(),
                &key,
                format!("{} is already servers[{}]", server.addr, at[first]),
            );
            continue;
        }
        if let Some(first) = out.iter().position(|o| o.ring_name == server.ring_name) {
            report.add_hint(
                item.span(),
                &key,
                format!(
                    "the name \"{}\" is already servers[{}]'s",
                    server.ring_name, at[first]
                ),
                Some("two servers with one name would share their place on the ring"),
            );
            continue;
        }
        out.push(server);
        at.push(i);
    }
    if out.is_empty() && items.iter().count() == 0 {
        report.add_hint(
            v.span(),
            &key,
            "the server list is empty",
            Some("list at least one \"host:port:weight\""),
        );
    }
    out
}

/// Parses `host:port[:weight] [name]`: `None` when the shape is wrong, `Some(Err)` when the
/// address is not one.
fn server_line(text: &str) -> Option<Result<CacheServer, String>> {
    let mut words = text.split_whitespace();
    let spec = words.next()?;
    let label = words.next().map(str::to_string);
    if words.next().is_some() {
        return None;
    }
    // host:port:weight, or host:port (weight 1); an IPv6 host is in brackets
    let (addr_text, weight) = match spec.rsplit_once(':') {
        Some((rest, w)) if rest.contains(':') && !rest.ends_with(']') => {
            let w: u32 = w.parse().ok().filter(|w| (1..=10_000).contains(w))?;
            (rest, w)
        }
        _ => (spec, 1),
    };
    let addr = match crate::walk::parse_addr(addr_text) {
        Ok(addr) => addr,
        Err(why) => return Some(Err(why)),
    };
    let (host, port) = addr_text.rsplit_once(':')?;
    let ring_name = match &label {
        Some(l) => l.clone(),
        None if port == "11211" => host.to_string(),
        None => addr_text.to_string(),
    };
    Some(Ok(CacheServer {
        addr,
        weight,
        ring_name,
        label,
        replicas: Vec::new(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_lines_name_servers_as_twemproxy_does() {
        let s = server_line("127.0.0.1:6379:1 r1").unwrap().unwrap();
        assert_eq!(
            (s.addr.to_string(), s.weight, s.ring_name.as_str()),
            ("127.0.0.1:6379".into(), 1, "r1")
        );
        let s = server_line("127.0.0.1:6380:3").unwrap().unwrap();
        assert_eq!((s.weight, s.ring_name.as_str()), (3, "127.0.0.1:6380"));
        let s = server_line("127.0.0.1:11211:1").unwrap().unwrap();
        assert_eq!(s.ring_name, "127.0.0.1");
        let s = server_line("127.0.0.1:6379").unwrap().unwrap();
        assert_eq!((s.weight, s.ring_name.as_str()), (1, "127.0.0.1:6379"));
        let s = server_line("[::1]:6379:2").unwrap().unwrap();
        assert_eq!((s.weight, s.ring_name.as_str()), (2, "[::1]:6379"));
        assert!(server_line("127.0.0.1:6379:0").is_none());
        assert!(server_line("127.0.0.1:6379:1 a b").is_none());
        assert!(matches!(server_line("nohost:6379:1"), Some(Err(_))));
    }
}
