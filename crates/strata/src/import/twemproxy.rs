//! twemproxy (nutcracker) pools translated into `[[cache]]` pools: each listens where the pool
//! listened and places every key on the server twemproxy placed it on.
//!
//! What can't be carried over is treated by what it would change:
//! - how the proxy runs (backlog, keepalive, preconnect...): dropped, with a note;
//! - where keys go, or what data they reach (a server named by host name or unix socket, a
//!   weight above Strata's limit, `redis_db`): kept as written and marked, so `strata check`
//!   refuses the output until someone decides, rather than the keys moving quietly;
//! - where clients connect (a unix socket or a host name as `listen`): the pool is left out,
//!   its translation printed as a comment.

mod yaml;

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr};

use super::{quoted, Item, Line, Note, Pos, Table, Translation, KEPT, NOT_TRANSLATED};
use yaml::{Entry, Pool, Scalar, Value};

/// twemproxy's `hash:` names (hashkit/nc_hashkit.h), which are Strata's too.
const HASHES: &[&str] = &[
    "one_at_a_time",
    "md5",
    "crc16",
    "crc32",
    "crc32a",
    "fnv1_64",
    "fnv1a_64",
    "fnv1_32",
    "fnv1a_32",
    "hsieh",
    "murmur",
    "jenkins",
];
/// twemproxy's `distribution:` names, which are Strata's too.
const DISTRIBUTIONS: &[&str] = &["ketama", "modula", "random"];
/// The largest server weight `[[cache]]` takes.
const MAX_WEIGHT: u64 = 10_000;
/// The most `server_connections` `[[cache]]` takes.
const MAX_SERVER_CONNECTIONS: u64 = 64;
/// The most `server_failure_limit` `[[cache]]` takes.
const MAX_FAILURE_LIMIT: u64 = 1000;
/// twemproxy keeps the port out of a server's ring name when it is memcached's.
const KETAMA_PORT: u16 = 11211;

const LEFT_OUT: &str = "pool left out (its translation is a comment in the output)";

/// Translates the nutcracker config `source`; `file` names it in the header comment.
pub(super) fn translate(source: &str, file: &str) -> Result<Translation, Vec<Note>> {
    let pools = yaml::parse(source)?;
    if pools.is_empty() {
        let at = Pos { line: 1, column: 1 };
        return Err(vec![Note::new(
            at,
            "",
            "no pools: twemproxy refuses a config without one",
        )]);
    }
    let mut errors = Vec::new();
    let mut confs = Vec::new();
    for pool in &pools {
        match PoolConf::read(pool) {
            Ok(conf) => confs.push(conf),
            Err(mut e) => errors.append(&mut e),
        }
    }
    // twemproxy's one rule across pools: each listens on its own address
    let mut listens: HashMap<&str, &str> = HashMap::new();
    for conf in &confs {
        if let Some(first) = listens.insert(conf.listen.text.as_str(), conf.name) {
            let why = format!(
                "pool `{first}` listens on {} too",
                quoted(&conf.listen.text)
            );
            errors.push(Note::new(
                conf.listen.at,
                &format!("{}.listen", conf.name),
                why,
            ));
        }
    }
    if !errors.is_empty() {
        errors.sort_by_key(|e| e.at);
        return Err(errors);
    }

    let header = format!(
        "# Translated from {file} by `strata import twemproxy`, one cache pool per twemproxy\n\
         # pool. What could not be translated is listed on stderr and above its pool.\n"
    );
    let tables = confs.iter().map(Cache::translate).collect();
    Ok(Translation::new(header, Vec::new(), "pool", tables))
}

/// A number as twemproxy reads one: digits only, no larger than a C `int`.
#[derive(Debug, Clone, Copy)]
struct Number {
    value: u64,
    /// Where its key is.
    at: Pos,
}

/// A boolean as twemproxy reads one: exactly `true` or `false`.
#[derive(Debug, Clone, Copy)]
struct Flag {
    value: bool,
    at: Pos,
}

/// Where a server or a pool is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Host {
    /// An IPv4 address, `localhost`, or an IPv6 address in brackets: as Strata reads it.
    Literal(String),
    /// An IPv6 address without brackets, which twemproxy takes and Strata does not.
    V6(Ipv6Addr),
    /// A name twemproxy resolves and Strata does not.
    Name(String),
    /// A unix socket path.
    Unix(String),
}

impl Host {
    fn classify(host: &str) -> Host {
        if host.starts_with('/') {
            Host::Unix(host.to_string())
        } else if host == "localhost" || host.parse::<Ipv4Addr>().is_ok() {
            Host::Literal(host.to_string())
        } else if let Ok(v6) = host.parse::<Ipv6Addr>() {
            Host::V6(v6)
        } else if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            match v6.parse::<Ipv6Addr>() {
                Ok(_) => Host::Literal(host.to_string()),
                Err(_) => Host::Name(host.to_string()),
            }
        } else {
            Host::Name(host.to_string())
        }
    }
}

/// One `servers:` line as twemproxy reads it: `host:port:weight [name]` or
/// `/path/to/socket:weight [name]`.
#[derive(Debug, Clone)]
struct ServerLine<'a> {
    /// Its place in the list.
    index: usize,
    item: &'a Scalar,
    /// The host (or socket path) as written.
    host_text: &'a str,
    host: Host,
    /// The port as written (empty for a unix socket).
    port_text: &'a str,
    port: u16,
    weight: u64,
    name: Option<&'a str>,
}

impl<'a> ServerLine<'a> {
    fn read(index: usize, item: &'a Scalar) -> Result<ServerLine<'a>, String> {
        let shape = || {
            format!(
                "{} is not \"host:port:weight [name]\" (or \"/path/to/socket:weight [name]\")",
                quoted(&item.text)
            )
        };
        let text = item.text.as_str();
        let (spec, name) = match text.rsplit_once(' ') {
            Some((_, "")) => return Err(shape()),
            Some((spec, name)) => (spec, Some(name)),
            None => (text, None),
        };
        let (address, weight) = spec.rsplit_once(':').ok_or_else(shape)?;
        let weight = match number(weight) {
            Ok(0) => return Err(format!("{} has a weight of 0", quoted(text))),
            Ok(w) => w,
            Err(why) => return Err(format!("the weight of {}: {why}", quoted(text))),
        };
        if address.starts_with('/') {
            return Ok(ServerLine {
                index,
                item,
                host_text: address,
                host: Host::Unix(address.to_string()),
                port_text: "",
                port: 0,
                weight,
                name,
            });
        }
        let (host, port_text) = address.rsplit_once(':').ok_or_else(shape)?;
        let port = port_number(port_text).map_err(|why| format!("{}: {why}", quoted(text)))?;
        if host.is_empty() {
            return Err(format!("{} has no host", quoted(text)));
        }
        Ok(ServerLine {
            index,
            item,
            host_text: host,
            host: Host::classify(host),
            port_text,
            port,
            weight,
            name,
        })
    }

    /// The name the server's points on the ring are made from, as twemproxy makes it
    /// (`conf_add_server`).
    fn ring_name(&self) -> String {
        if let Some(name) = self.name {
            return name.to_string();
        }
        if self.port == KETAMA_PORT {
            self.host_text.to_string()
        } else {
            format!("{}:{}", self.host_text, self.port_text)
        }
    }
}

/// One pool as twemproxy reads it, checked as twemproxy checks it (`conf_validate_pool`).
struct PoolConf<'a> {
    name: &'a str,
    at: Pos,
    listen: &'a Scalar,
    hash: Option<&'a Scalar>,
    hash_tag: Option<&'a Scalar>,
    distribution: Option<&'a Scalar>,
    timeout: Option<Number>,
    backlog: Option<Number>,
    client_connections: Option<Number>,
    redis: Option<Flag>,
    tcpkeepalive: Option<Flag>,
    reuseport: Option<Flag>,
    redis_auth: Option<&'a Scalar>,
    redis_db: Option<Number>,
    preconnect: Option<Flag>,
    auto_eject_hosts: Option<Flag>,
    server_connections: Option<Number>,
    server_retry_timeout: Option<Number>,
    server_failure_limit: Option<Number>,
    servers: Vec<ServerLine<'a>>,
    /// Keys twemproxy does not have.
    unknown: Vec<&'a Entry>,
}

impl<'a> PoolConf<'a> {
    /// Reads `pool`; on failure, everything in it twemproxy would refuse.
    fn read(pool: &'a Pool) -> Result<PoolConf<'a>, Vec<Note>> {
        let mut errors = Vec::new();
        let mut conf = PoolConf {
            name: &pool.name,
            at: pool.at,
            listen: &EMPTY,
            hash: None,
            hash_tag: None,
            distribution: None,
            timeout: None,
            backlog: None,
            client_connections: None,
            redis: None,
            tcpkeepalive: None,
            reuseport: None,
            redis_auth: None,
            redis_db: None,
            preconnect: None,
            auto_eject_hosts: None,
            server_connections: None,
            server_retry_timeout: None,
            server_failure_limit: None,
            servers: Vec::new(),
            unknown: Vec::new(),
        };
        let mut listen = None;
        let mut servers = None;
        for entry in &pool.entries {
            let mut read = Read {
                pool: &pool.name,
                entry,
                errors: &mut errors,
            };
            match entry.key.as_str() {
                "listen" => listen = read.scalar(),
                "hash" => conf.hash = read.choice(HASHES, "hash"),
                "hash_tag" => conf.hash_tag = read.hash_tag(),
                "distribution" => conf.distribution = read.choice(DISTRIBUTIONS, "distribution"),
                "timeout" => conf.timeout = read.number(),
                "backlog" => conf.backlog = read.number(),
                "client_connections" => conf.client_connections = read.number(),
                "redis" => conf.redis = read.flag(),
                "tcpkeepalive" => conf.tcpkeepalive = read.flag(),
                "reuseport" => conf.reuseport = read.flag(),
                "redis_auth" => conf.redis_auth = read.scalar(),
                "redis_db" => conf.redis_db = read.number(),
                "preconnect" => conf.preconnect = read.flag(),
                "auto_eject_hosts" => conf.auto_eject_hosts = read.flag(),
                "server_connections" => conf.server_connections = read.number(),
                "server_retry_timeout" => conf.server_retry_timeout = read.number(),
                "server_failure_limit" => conf.server_failure_limit = read.number(),
                "servers" => servers = read.servers(),
                _ => conf.unknown.push(entry),
            }
        }
        let key = |k: &str| format!("{}.{k}", pool.name);
        match listen {
            Some(l) => match check_listen(l) {
                Ok(()) => conf.listen = l,
                Err(why) => errors.push(Note::new(l.at, &key("listen"), why)),
            },
            None => errors.push(Note::new(
                pool.at,
                &pool.name,
                "`listen` is missing (twemproxy refuses a pool without one)",
            )),
        }
        match servers {
            Some(servers) => conf.servers = servers,
            None if errors.iter().any(|e| e.key == key("servers")) => {}
            None => errors.push(Note::new(
                pool.at,
                &pool.name,
                "no `servers` (twemproxy refuses a pool without one)",
            )),
        }
        if let Some(n) = conf.server_connections.filter(|n| n.value == 0) {
            errors.push(Note::new(
                n.at,
                &key("server_connections"),
                "0: twemproxy refuses it; a pool needs at least one connection per server",
            ));
        }
        let redis = conf.redis.is_some_and(|r| r.value);
        if let Some(auth) = conf.redis_auth.filter(|a| !redis && !a.text.is_empty()) {
            errors.push(Note::new(
                auth.at,
                &key("redis_auth"),
                "twemproxy takes it on a redis pool only (`redis: true`)",
            ));
        }
        let mut names: HashMap<String, usize> = HashMap::new();
        for server in &conf.servers {
            let i = server.index;
            if let Some(first) = names.insert(server.ring_name(), i) {
                let why = format!(
                    "servers[{first}] has the name {} too: twemproxy refuses two servers with one name",
                    quoted(&server.ring_name())
                );
                errors.push(Note::new(
                    server.item.at,
                    &key(&format!("servers[{i}]")),
                    why,
                ));
            }
        }
        if errors.is_empty() {
            Ok(conf)
        } else {
            Err(errors)
        }
    }
}

/// The `listen` of a pool that has none, never used: `read` fails the pool first.
static EMPTY: Scalar = Scalar {
    text: String::new(),
    at: Pos { line: 0, column: 0 },
};

/// What twemproxy's `conf_set_listen` refuses: a bad port, or no host.
fn check_listen(listen: &Scalar) -> Result<(), String> {
    let text = listen.text.as_str();
    if text.starts_with('/') {
        return Ok(());
    }
    let Some((host, port)) = text.rsplit_once(':') else {
        return Err(format!("{} is not \"host:port\"", quoted(text)));
    };
    port_number(port).map_err(|why| format!("{}: {why}", quoted(text)))?;
    if host.is_empty() {
        return Err(format!("{} has no host", quoted(text)));
    }
    Ok(())
}

/// Reads one entry's value, recording what twemproxy would refuse.
struct Read<'a, 'e> {
    pool: &'a str,
    entry: &'a Entry,
    errors: &'e mut Vec<Note>,
}

impl<'a> Read<'a, '_> {
    fn fail(&mut self, at: Pos, why: String) {
        let key = format!("{}.{}", self.pool, self.entry.key);
        self.errors.push(Note::new(at, &key, why));
    }

    fn scalar(&mut self) -> Option<&'a Scalar> {
        match &self.entry.value {
            Value::Scalar(s) => Some(s),
            Value::List(items) => {
                let at = items.first().map_or(self.entry.at, |i| i.at);
                self.fail(at, "expected one value, found a list".into());
                None
            }
            Value::Empty => {
                self.fail(self.entry.at, "has no value".into());
                None
            }
        }
    }

    fn number(&mut self) -> Option<Number> {
        let s = self.scalar()?;
        match number(&s.text) {
            Ok(value) => Some(Number {
                value,
                at: self.entry.at,
            }),
            Err(why) => {
                self.fail(s.at, format!("{}: {why}", quoted(&s.text)));
                None
            }
        }
    }

    fn flag(&mut self) -> Option<Flag> {
        let s = self.scalar()?;
        let value = match s.text.as_str() {
            "true" => true,
            "false" => false,
            other => {
                self.fail(s.at, format!("{} is not `true` or `false`", quoted(other)));
                return None;
            }
        };
        Some(Flag {
            value,
            at: self.entry.at,
        })
    }

    fn choice(&mut self, choices: &[&str], what: &str) -> Option<&'a Scalar> {
        let s = self.scalar()?;
        if choices.contains(&s.text.as_str()) {
            return Some(s);
        }
        let why = format!(
            "{} is not a twemproxy {what} (one of: {})",
            quoted(&s.text),
            choices.join(", ")
        );
        self.fail(s.at, why);
        None
    }

    fn hash_tag(&mut self) -> Option<&'a Scalar> {
        let s = self.scalar()?;
        if s.text.len() == 2 {
            return Some(s);
        }
        let why = format!(
            "{} is not two characters, such as \"{{}}\"",
            quoted(&s.text)
        );
        self.fail(s.at, why);
        None
    }

    fn servers(&mut self) -> Option<Vec<ServerLine<'a>>> {
        let items = match &self.entry.value {
            Value::List(items) => items,
            Value::Scalar(s) => {
                let why = "expected a list of servers, one `- host:port:weight [name]` per line";
                self.fail(s.at, why.into());
                return None;
            }
            Value::Empty => {
                let why = "the list is empty (twemproxy refuses a pool without servers)";
                self.fail(self.entry.at, why.into());
                return None;
            }
        };
        let mut servers = Vec::new();
        for (i, item) in items.iter().enumerate() {
            match ServerLine::read(i, item) {
                Ok(server) => servers.push(server),
                Err(why) => {
                    let key = format!("{}.servers[{i}]", self.pool);
                    self.errors.push(Note::new(item.at, &key, why));
                }
            }
        }
        Some(servers)
    }
}

/// A number as twemproxy's `nc_atoi` reads one, within a C `int`.
fn number(text: &str) -> Result<u64, String> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err("not a number (twemproxy takes digits only)".into());
    }
    text.parse::<u64>()
        .ok()
        .filter(|n| *n <= i32::MAX as u64)
        .ok_or_else(|| "too large".into())
}

fn port_number(text: &str) -> Result<u16, String> {
    number(text)
        .ok()
        .and_then(|p| u16::try_from(p).ok())
        .filter(|p| *p != 0)
        .ok_or_else(|| format!("{} is not a port (1 to 65535)", quoted(text)))
}

/// A pool's translation, as it is made.
struct Cache {
    table: Table,
}

impl Cache {
    /// The pool's `[[cache]]` table and the notes about it.
    fn translate(conf: &PoolConf<'_>) -> Table {
        let mut cache = Cache {
            table: Table::new("cache"),
        };
        let name = conf.name;
        let key = |k: &str| format!("{name}.{k}");
        let listen = cache.listen(conf);
        cache.table.key("name", quoted(name));
        cache.table.key("listen", quoted(&listen));
        let redis = conf.redis.is_some_and(|r| r.value);
        cache
            .table
            .key("protocol", quoted(if redis { "redis" } else { "memcache" }));
        let distribution = conf.distribution.map_or("ketama", |d| d.text.as_str());
        cache.table.key("distribution", quoted(distribution));
        cache
            .table
            .key("hash", quoted(conf.hash.map_or("fnv1a_64", |h| &h.text)));
        if let Some(tag) = conf.hash_tag {
            cache.table.key("hash_tag", quoted(&tag.text));
        }
        // twemproxy's ejection moves an ejected server's keys to the next server on the ring;
        // without it the keys of a server that is down fail
        let eject = conf.auto_eject_hosts.is_some_and(|a| a.value);
        cache
            .table
            .key("consistency", quoted(if eject { "weak" } else { "strong" }));
        match conf.timeout {
            // twemproxy's timeout bounds connecting and each reply alike
            Some(t) if t.value > 0 => {
                cache.table.key("timeout", quoted(&format!("{}ms", t.value)));
                cache.table.key("connect_timeout", quoted(&format!("{}ms", t.value)));
            }
            Some(t) => cache.table.note(
                t.at,
                &key("timeout"),
                format!("{NOT_TRANSLATED}: 0 is no timeout in twemproxy; Strata always has one, and its `timeout` and `connect_timeout` are 1s unless set"),
            ),
            None => cache.table.note(
                conf.at,
                name,
                "no `timeout`: twemproxy waits on a server for as long as it takes; Strata's `timeout` and `connect_timeout` are 1s unless set".into(),
            ),
        }
        if let Some(n) = conf.server_connections {
            let value = n.value.min(MAX_SERVER_CONNECTIONS);
            cache.table.key("server_connections", value.to_string());
            if value != n.value {
                cache.table.note(
                    n.at,
                    &key("server_connections"),
                    format!(
                        "{} made {value}: the most Strata opens to one server",
                        n.value
                    ),
                );
            }
        }
        if let Some(n) = conf.server_failure_limit {
            // twemproxy ejects on the first failure when the limit is 0 or 1
            let value = n.value.clamp(1, MAX_FAILURE_LIMIT);
            cache.table.key("server_failure_limit", value.to_string());
            if value < n.value {
                cache.table.note(
                    n.at,
                    &key("server_failure_limit"),
                    format!("{} made {value}: the most Strata takes", n.value),
                );
            }
        }
        if let Some(n) = conf.server_retry_timeout {
            cache
                .table
                .key("server_retry_timeout", quoted(&format!("{}ms", n.value)));
        }
        if let Some(auth) = conf.redis_auth.filter(|a| !a.text.is_empty()) {
            // twemproxy checks its clients' AUTH against redis_auth and sends it to servers
            cache.table.key("password", quoted(&auth.text));
            cache.table.key("server_password", quoted(&auth.text));
        }
        if let Some(db) = conf.redis_db.filter(|d| d.value != 0) {
            cache.table.note(db.at, &key("redis_db"), format!("{KEPT}: Strata does not select a database on its server connections, so the keys would be read and written in database 0; move the data, or delete this line to use database 0"));
            cache.table.items.push(Item::Key(Line {
                text: format!("redis_db = {}", db.value),
                kept: Some(db.at.line),
            }));
        }
        cache.servers(conf);
        cache.dropped(conf);
        cache.table.finish(name, conf.at)
    }

    /// The `listen` address, as Strata writes it; a pool that can't listen there is left out.
    fn listen(&mut self, conf: &PoolConf<'_>) -> String {
        let text = conf.listen.text.as_str();
        let key = format!("{}.listen", conf.name);
        let at = conf.listen.at;
        let Some((host, port)) = text.rsplit_once(':').filter(|_| !text.starts_with('/')) else {
            // `/path/to/socket [permissions]`
            self.table.left_out = true;
            let why = format!(
                "{LEFT_OUT}: {} is a unix socket; Strata listens on TCP only",
                quoted(text)
            );
            self.table.note(at, &key, why);
            return text.to_string();
        };
        let port = port_number(port).unwrap_or_default();
        match Host::classify(host) {
            Host::Literal(host) => format!("{host}:{port}"),
            Host::V6(v6) => format!("[{v6}]:{port}"),
            Host::Name(_) | Host::Unix(_) => {
                self.table.left_out = true;
                let why = format!("{LEFT_OUT}: twemproxy resolved the host name {} when it started; Strata listens on an IP address (write the address the name stood for)", quoted(host));
                self.table.note(at, &key, why);
                text.to_string()
            }
        }
    }

    /// The `servers` array: each line as twemproxy wrote it when Strata reads it the same way.
    fn servers(&mut self, conf: &PoolConf<'_>) {
        let mut lines = Vec::new();
        let mut addresses: HashMap<String, usize> = HashMap::new();
        for server in &conf.servers {
            let i = server.index;
            let key = format!("{}.servers[{i}]", conf.name);
            let at = server.item.at;
            let text = &server.item.text;
            let kept = |why: String| format!("{KEPT}: {why}");
            let host = match &server.host {
                Host::Literal(h) => h.clone(),
                Host::V6(v6) => format!("[{v6}]"),
                Host::Name(name) => {
                    let example = format!(
                        "ADDRESS:{}:{} {}",
                        server.port_text,
                        server.weight,
                        server.ring_name()
                    );
                    let why = format!("{} is a host name, which twemproxy resolves and Strata does not: write the server's IP address, and keep its twemproxy name after the weight so its keys stay on it ({})", quoted(name), quoted(&example));
                    lines.push(self.keep_server(at, &key, text, kept(why)));
                    continue;
                }
                Host::Unix(path) => {
                    let why = format!(
                        "{} is a unix socket; Strata reaches servers over TCP only",
                        quoted(path)
                    );
                    lines.push(self.keep_server(at, &key, text, kept(why)));
                    continue;
                }
            };
            if server.weight > MAX_WEIGHT {
                let why = format!("a weight of {} is more than Strata's {MAX_WEIGHT}: scale the pool's weights down together (keys stay where they are only if the proportions stay exactly the same)", server.weight);
                lines.push(self.keep_server(at, &key, text, kept(why)));
                continue;
            }
            let address = format!("{host}:{}", server.port);
            // the same server as Strata reads it: `localhost` is 127.0.0.1
            let same = match host.as_str() {
                "localhost" => format!("127.0.0.1:{}", server.port),
                _ => address.clone(),
            };
            if let Some(first) = addresses.insert(same, i) {
                let why = format!("servers[{first}] is at {address} too, which twemproxy allows and Strata does not");
                lines.push(self.keep_server(at, &key, text, kept(why)));
                continue;
            }
            // Strata names a server as twemproxy does, from the text: a line it would name
            // differently (an IPv6 address, a port written with a leading 0) gets its
            // twemproxy name spelled out, so that its keys stay on it
            let strata_name = match server.name {
                Some(name) => name.to_string(),
                None if server.port == KETAMA_PORT => host.clone(),
                None => address.clone(),
            };
            let mut line = format!("{address}:{}", server.weight);
            let ring_name = server.ring_name();
            if server.name.is_some() || strata_name != ring_name {
                line = format!("{line} {ring_name}");
            }
            lines.push(Line::new(quoted(&line)));
        }
        self.table.items.push(Item::Array("servers", lines));
    }

    /// The server line `text` kept as written, after a note at `at` that says why.
    fn keep_server(&mut self, at: Pos, key: &str, text: &str, why: String) -> Line {
        self.table.note(at, key, why);
        Line {
            text: quoted(text),
            kept: Some(at.line),
        }
    }

    /// Notes on the keys that have no `[[cache]]` equivalent.
    fn dropped(&mut self, conf: &PoolConf<'_>) {
        let key = |k: &str| format!("{}.{k}", conf.name);
        if let Some(n) = conf.backlog {
            self.table.note(
                n.at,
                &key("backlog"),
                format!("{NOT_TRANSLATED}: Strata's listeners have a fixed backlog of 4096"),
            );
        }
        if let Some(n) = conf.client_connections {
            self.table.note(n.at, &key("client_connections"), format!("{NOT_TRANSLATED}: twemproxy reads it but never enforces it (every pool takes as many clients as it can); Strata's `max_connections` (10000 unless set) bounds clients: set it if you meant this limit"));
        }
        let flags = [
            (
                conf.tcpkeepalive,
                "tcpkeepalive",
                "Strata does not turn on TCP keepalive on server connections",
            ),
            (
                conf.reuseport,
                "reuseport",
                "Strata binds each listener once, without SO_REUSEPORT",
            ),
            (
                conf.preconnect,
                "preconnect",
                "Strata connects to a server when the first command for it comes",
            ),
        ];
        for (flag, name, why) in flags {
            if let Some(f) = flag.filter(|f| f.value) {
                self.table
                    .note(f.at, &key(name), format!("{NOT_TRANSLATED}: {why}"));
            }
        }
        for entry in &conf.unknown {
            self.table.note(
                entry.at,
                &key(&entry.key),
                format!("{NOT_TRANSLATED}: twemproxy has no such key"),
            );
        }
    }
}

#[cfg(test)]
mod tests;
