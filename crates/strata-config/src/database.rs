//! `[[database]]`: a PostgreSQL pooler in front of a primary and its replicas, keyed as
//! PgBouncer users would look for them.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use crate::error::Report;
use crate::http::TlsCert;
use crate::walk::{as_addr, as_str, wrong_type, Section, Value};

/// One `[[database]]` listener: clients speak the PostgreSQL protocol to it, and each gets a
/// server connection from a pool for a transaction (or its whole session).
#[derive(Debug, Clone, PartialEq)]
pub struct DatabaseListener {
    /// Unique among the database listeners; names it in `/status`, `/metrics` and the admin API.
    pub name: String,
    /// Where clients connect.
    pub listen: SocketAddr,
    /// The PostgreSQL servers, of every shard; which is the primary is found by asking each.
    pub servers: Vec<SocketAddr>,
    /// The servers of each shard (one shard, `servers`, when the listener is not sharded):
    /// each shard has its own primary and replicas.
    pub shards: Vec<Vec<SocketAddr>>,
    /// The tables split over the shards by a key column.
    pub sharded_tables: Vec<ShardedTable>,
    /// When a client gives its server connection back.
    pub pool_mode: PoolMode,
    /// Server connections per (user, database, server).
    pub pool_size: u32,
    /// Server connections open to each server from every pool together (users and databases);
    /// 0: no bound beyond `pool_size` per pool (PgBouncer's `max_db_connections`, per server).
    pub max_server_connections: u32,
    /// Server connections per (user, database, server) kept open, idle ones spared by
    /// `server_idle_timeout` (PgBouncer's `min_pool_size`); 0: none.
    pub min_pool_size: u32,
    /// Who may connect, with their secrets (from `users` and `auth_file`).
    pub users: Vec<DbUser>,
    /// How clients prove who they are.
    pub auth_type: AuthType,
    /// Certificates offered to clients that ask for TLS (an SSLRequest); none: such clients
    /// are told 'N' and go on in clear, or stop, as their `sslmode` says.
    pub tls: Vec<TlsCert>,
    /// Whether clients must use TLS (`tls_mode = "require"`, which needs `tls`) or may also
    /// connect in clear (`"allow"`, the default).
    pub tls_required: bool,
    /// CA certificates (PEM) a TLS client's certificate must chain to; `None`: none asked.
    pub tls_client_ca: Option<std::path::PathBuf>,
    /// TLS on the connections to the servers (PgBouncer's `server_tls_*`).
    pub server_tls: ServerTls,
    /// Client connections open at once; further ones wait in the kernel's accept queue.
    pub max_client_connections: u32,
    /// A client waiting this long for a server connection gets an error.
    pub query_wait_timeout: Duration,
    /// A client idle this long inside a transaction is closed (its transaction rolled back),
    /// so it can't hold a server connection for good; `None`: no limit (PgBouncer's
    /// `idle_transaction_timeout`).
    pub idle_transaction_timeout: Option<Duration>,
    /// A client that holds no server connection and has sent and read nothing this long is
    /// closed; `None`: no limit (PgBouncer's `client_idle_timeout`).
    pub client_idle_timeout: Option<Duration>,
    /// Connecting and logging in to a server takes at most this long.
    pub connect_timeout: Duration,
    /// A server connection idle in the pool this long is closed.
    pub server_idle_timeout: Duration,
    /// A server connection open this long is closed once no client holds it, one of a pool
    /// at a time (so a backend's caches don't grow for good); `None`: no limit (PgBouncer's
    /// `server_lifetime`).
    pub server_lifetime: Option<Duration>,
    /// How often each server is asked whether it is the primary.
    pub check_interval: Duration,
    /// A server that fails a check (or a connect) is left out this long.
    pub ban_time: Duration,
    /// The user the checks log in as (one of `users`, with a password Strata can log in with).
    pub check_user: Option<String>,
    /// The user that looks up, with `auth_query`, a user who is not in `users` (one of
    /// `users`, with a password Strata can log in with); `None`: no lookups (PgBouncer's
    /// `auth_user`).
    pub auth_user: Option<String>,
    /// The query that finds a user's secret: `$1` is the user name; its first row's second
    /// column is the secret (NULL: none).
    pub auth_query: String,
    /// The database the lookup runs in; `None`: the one the client asks for.
    pub auth_dbname: Option<String>,
    /// Transactions that say they only read (`BEGIN READ ONLY`) run on a replica.
    pub replica_reads: bool,
    /// Reads a replica could take may run on the primary too, when it has fewer of the pool's
    /// connections taken or waited for than every replica that could take them (PgDog's
    /// `include_primary`).
    pub primary_reads: bool,
    /// A replica further behind the primary than this many bytes of WAL gets no reads.
    pub max_replica_lag: u64,
    /// A client whose last transaction ran on the primary stays on it this long, so it reads
    /// what it wrote.
    pub read_your_writes: Duration,
    /// A query outside a transaction that only reads may be sent on a connection already
    /// running such queries, up to this many on one connection (1: never, as PgBouncer).
    pub read_pipeline: u32,
    /// Reads share connections once this many of a pool's connections are in use (by
    /// default all of them: `pool_size`).
    pub read_pipeline_from: u32,
    /// Reads also share connections, however many are in use, while trials show that they
    /// are answered sooner that way (every few seconds the other way is tried for a moment).
    pub read_pipeline_trials: bool,
}

/// TLS on the connections Strata makes to the servers (for the pools and the role checks).
#[derive(Debug, Clone, PartialEq)]
pub struct ServerTls {
    /// Whether TLS is asked for, and what of the server's certificate is checked.
    pub mode: ServerTlsMode,
    /// The CA certificates (PEM) the server's certificate must chain to (`verify-ca` and
    /// `verify-full`); `None`: the system's bundle.
    pub ca: Option<std::path::PathBuf>,
    /// The name the server's certificate must carry (`verify-full`), sent as SNI too;
    /// `None`: the server's IP address.
    pub name: Option<String>,
    /// A certificate Strata presents when a server asks for one.
    pub cert: Option<TlsCert>,
}

/// libpq's `sslmode`, as PgBouncer's `server_tls_sslmode` takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerTlsMode {
    /// Never TLS.
    Disable,
    /// TLS where the server offers it, else in clear; the certificate is not checked (the
    /// default, as PgBouncer's and libpq's).
    Prefer,
    /// TLS or no connection; the certificate is not checked.
    Require,
    /// TLS, with a certificate that chains to a trusted CA.
    VerifyCa,
    /// TLS, with a certificate that chains to a trusted CA and names the server.
    VerifyFull,
}

impl ServerTlsMode {
    /// The mode as the config writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            ServerTlsMode::Disable => "disable",
            ServerTlsMode::Prefer => "prefer",
            ServerTlsMode::Require => "require",
            ServerTlsMode::VerifyCa => "verify-ca",
            ServerTlsMode::VerifyFull => "verify-full",
        }
    }
}

/// PgBouncer's default `auth_query` (1.23 on): the secret of a role that may log in, none
/// once it is past `VALID UNTIL`.
pub const DEFAULT_AUTH_QUERY: &str = "SELECT rolname, CASE WHEN rolvaliduntil < now() THEN NULL ELSE rolpassword END FROM pg_authid WHERE rolname = $1 AND rolcanlogin";

/// A table split over the shards by the value of one column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardedTable {
    /// The table's name (unqualified: any schema's table of that name).
    pub table: String,
    /// The key column.
    pub column: String,
    /// What the key's values are.
    pub key_type: KeyType,
    /// Which shard holds a key.
    pub rule: ShardRule,
}

/// The type of a shard key's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    /// `smallint`, `integer` or `bigint` (PostgreSQL hashes all three alike).
    Integer,
    /// `text` or `varchar`.
    Text,
}

/// How a key's shard is found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShardRule {
    /// PostgreSQL's `PARTITION BY HASH` with the shard count as modulus: shard N holds what
    /// partition `FOR VALUES WITH (MODULUS shards, REMAINDER N)` would.
    Hash,
    /// Ranges of integer keys, each given to a shard.
    Range(Vec<ShardRange>),
}

/// Keys from `from` (included) to `to` (excluded) live on `shard`; a missing bound is open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardRange {
    /// The shard, counted from 0 in the order of `shards`.
    pub shard: usize,
    /// The lowest key, if any.
    pub from: Option<i64>,
    /// The first key past the range, if any.
    pub to: Option<i64>,
}

/// When a client gives its server connection back to the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolMode {
    /// After each transaction (or statement outside one): many clients share few connections.
    Transaction,
    /// When the client disconnects: everything a session can do works.
    Session,
}

/// How clients authenticate to Strata.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthType {
    /// SCRAM-SHA-256 (PostgreSQL's default since 14).
    ScramSha256,
    /// md5 for users whose secret allows it (a password or an md5 hash), SCRAM-SHA-256 for
    /// those stored as SCRAM secrets, as PostgreSQL and PgBouncer do.
    Md5,
    /// No password asked: anyone who can connect is whoever they say.
    Trust,
}

/// A user and its secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbUser {
    /// The role name.
    pub name: String,
    /// What Strata knows of its password.
    pub secret: Secret,
}

/// What Strata knows of a password: enough to check a client and to log in to the servers.
#[derive(Clone, PartialEq, Eq)]
pub enum Secret {
    /// The password itself.
    Plain(String),
    /// `md5` followed by the hex MD5 of password and user name, as in `pg_authid`.
    Md5(String),
    /// A SCRAM-SHA-256 secret as in `pg_authid`: Strata checks clients with it, and logs in to
    /// servers with the client key a client's proof reveals.
    Scram {
        /// PBKDF2 iterations.
        iterations: u32,
        /// The salt.
        salt: Vec<u8>,
        /// SHA-256 of the client key.
        stored_key: [u8; 32],
        /// The server key.
        server_key: [u8; 32],
    },
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Secret::Plain(_) => "Plain(..)",
            Secret::Md5(_) => "Md5(..)",
            Secret::Scram { .. } => "Scram(..)",
        })
    }
}

pub(crate) const KEYS: &[&str] = &[
    "name",
    "listen",
    "servers",
    "shards",
    "sharded_tables",
    "pool_mode",
    "pool_size",
    "min_pool_size",
    "max_server_connections",
    "auth_file",
    "users",
    "auth_type",
    "tls",
    "tls_mode",
    "tls_client_ca",
    "server_tls_mode",
    "server_tls_ca",
    "server_tls_name",
    "server_tls_cert",
    "server_tls_key",
    "max_client_connections",
    "query_wait_timeout",
    "idle_transaction_timeout",
    "client_idle_timeout",
    "connect_timeout",
    "server_idle_timeout",
    "server_lifetime",
    "check_interval",
    "ban_time",
    "check_user",
    "auth_user",
    "auth_query",
    "auth_dbname",
    "replica_reads",
    "primary_reads",
    "max_replica_lag",
    "read_your_writes",
    "read_pipeline",
    "read_pipeline_from",
    "read_pipeline_trials",
];

const USER_KEYS: &[&str] = &["name", "password"];
const SHARDED_TABLE_KEYS: &[&str] = &["name", "column", "type", "rule", "ranges"];
const RANGE_KEYS: &[&str] = &["shard", "from", "to"];

pub(crate) fn listener(
    report: &mut Report<'_>,
    s: &Section<'_, '_>,
    base: &Path,
) -> Option<DatabaseListener> {
    let (name, listen) = s.name_and_listen(report);
    let shards = match (s.get("servers"), s.get("shards")) {
        (Some(v), None) => vec![servers(report, &s.key("servers"), v)],
        (None, Some(v)) => shards(report, &s.key("shards"), v),
        (Some(_), Some(v)) => {
            report.add_hint(
                v.span(),
                &s.key("shards"),
                "both `servers` and `shards` are given",
                Some("list the servers of a sharded database under `shards` alone, one array per shard"),
            );
            Vec::new()
        }
        (None, None) => {
            s.required(report, "servers");
            Vec::new()
        }
    };
    let servers: Vec<SocketAddr> = shards.iter().flatten().copied().collect();
    let pool_mode = match s.choice(
        report,
        "pool_mode",
        &["transaction", "session"],
        "transaction",
    ) {
        "session" => PoolMode::Session,
        _ => PoolMode::Transaction,
    };
    let auth_type = match s.choice(
        report,
        "auth_type",
        &["scram-sha-256", "md5", "trust"],
        "scram-sha-256",
    ) {
        "md5" => AuthType::Md5,
        "trust" => AuthType::Trust,
        _ => AuthType::ScramSha256,
    };
    let mut users = Vec::new();
    for u in s.tables(report, "users", USER_KEYS) {
        let name = u
            .required(report, "name")
            .and_then(|_| u.string(report, "name"));
        let secret = u.required(report, "password").and_then(|v| {
            let text = as_str(report, &u.key("password"), v)?;
            secret(report, &u.key("password"), v, text)
        });
        if let (Some(name), Some(secret)) = (name, secret) {
            users.push(DbUser {
                name: name.to_string(),
                secret,
            });
        }
    }
    if let Some(v) = s.get("auth_file") {
        if let Some(file) = s.string(report, "auth_file") {
            users.extend(auth_file(report, &s.key("auth_file"), v, &base.join(file)));
        }
    }
    let mut seen = std::collections::HashSet::new();
    for u in &users {
        if !seen.insert(u.name.as_str()) {
            report.add(
                s.span.clone(),
                &s.key("users"),
                format!(
                    "user \"{}\" is listed twice (in `users` or `auth_file`)",
                    u.name
                ),
            );
        }
    }
    if users.is_empty()
        && auth_type != AuthType::Trust
        && s.get("users").is_none()
        && s.get("auth_file").is_none()
    {
        report.add_hint(
            s.span.clone(),
            &s.key("users"),
            "no users: nobody could log in",
            Some("add [[database.users]] name/password tables or an `auth_file` (PgBouncer's userlist.txt)"),
        );
    }
    let check_user = match s.get("check_user") {
        Some(_) => logging_in_user(report, s, "check_user", &users),
        None => users
            .iter()
            .find(|u| !matches!(u.secret, Secret::Scram { .. }))
            .map(|u| u.name.clone()),
    };
    if servers.len() > 1 && check_user.is_none() && s.get("check_user").is_none() {
        report.add_hint(
            s.get("servers").map_or(s.span.clone(), |v| v.span()),
            &s.key("servers"),
            "with several servers, Strata finds the primary by logging in to each, and no user can",
            Some("add `check_user`, a user given its password or md5 hash (SCRAM secrets can't log in by themselves)"),
        );
    }
    let auth_user = match s.get("auth_user") {
        Some(_) => logging_in_user(report, s, "auth_user", &users),
        None => None,
    };
    if auth_user.is_some() && auth_type == AuthType::Trust {
        report.add_hint(
            s.get("auth_user").map_or(s.span.clone(), |v| v.span()),
            &s.key("auth_user"),
            "with auth_type = \"trust\" no password is asked, so a looked-up secret checks nothing: every role on the server could log in",
            Some("set auth_type = \"scram-sha-256\" (or \"md5\"), or remove auth_user"),
        );
    }
    let auth_query = s.string(report, "auth_query").map(str::to_string);
    let auth_dbname = s.string(report, "auth_dbname").map(str::to_string);
    for (set, key) in [
        (auth_query.is_some(), "auth_query"),
        (auth_dbname.is_some(), "auth_dbname"),
    ] {
        if set && s.get("auth_user").is_none() {
            report.add_hint(
                s.get(key).map_or(s.span.clone(), |v| v.span()),
                &s.key(key),
                "users are looked up only as `auth_user`",
                Some("add `auth_user`, a user given its password or md5 hash that may read the secrets"),
            );
        }
    }
    if let Some(q) = &auth_query {
        if !q.contains("$1") {
            report.add_hint(
                s.get("auth_query").map_or(s.span.clone(), |v| v.span()),
                &s.key("auth_query"),
                "the query does not take the user name (`$1`)",
                Some("e.g. SELECT usename, passwd FROM pg_shadow WHERE usename = $1"),
            );
        }
    }
    let sharded_tables = sharded_tables(report, s, shards.len());
    if s.get("shards").is_some() {
        if sharded_tables.is_empty() && !shards.is_empty() {
            report.add_hint(
                s.get("shards").map_or(s.span.clone(), |v| v.span()),
                &s.key("shards"),
                "shards without sharded tables: every query would go to the first shard",
                Some("add [[database.sharded_tables]] with the table's `name` and key `column`"),
            );
        }
        if pool_mode == PoolMode::Session {
            report.add_hint(
                s.get("pool_mode").map_or(s.span.clone(), |v| v.span()),
                &s.key("pool_mode"),
                "a sharded database needs pool_mode = \"transaction\": each transaction goes to the shard of its keys",
                None::<String>,
            );
        }
    }
    let pool_size = s.int(report, "pool_size", 1..=10_000, 20) as u32;
    let tls = crate::http::tls_certs(report, s, base);
    let tls_required = s.choice(report, "tls_mode", &["allow", "require"], "allow") == "require";
    let tls_client_ca = s.string(report, "tls_client_ca").map(|p| base.join(p));
    // keys that need a certificate to offer (entries of `tls` that were refused have said so
    // already)
    let entries = s
        .get("tls")
        .and_then(|v| v.get_ref().as_array())
        .map_or(0, |a| a.len());
    let needing = [
        (
            tls_required,
            "tls_mode",
            "\"require\" needs a certificate to offer",
            ", or set tls_mode = \"allow\"",
        ),
        (
            tls_client_ca.is_some(),
            "tls_client_ca",
            "client certificates are asked for over TLS, and there is no certificate to offer",
            "",
        ),
    ];
    for (set, key, why, or) in needing {
        if set && tls.is_empty() && entries == 0 {
            let span = s.get(key).map(|v| v.span()).unwrap_or(s.span.clone());
            let hint = format!("add [[database.tls]] with `cert` and `key` (PEM files){or}");
            report.add_hint(span, &s.key(key), why, Some(hint));
        }
    }
    // a client in clear would not be asked for a certificate at all
    if tls_client_ca.is_some() && !tls_required {
        let span = s
            .get("tls_client_ca")
            .map(|v| v.span())
            .unwrap_or(s.span.clone());
        report.add_hint(
            span,
            &s.key("tls_client_ca"),
            "clients in clear would skip the certificate",
            Some("set tls_mode = \"require\""),
        );
    }
    let server_tls = server_tls(report, s, base);
    Some(DatabaseListener {
        name: name?.to_string(),
        listen: listen?,
        servers,
        shards,
        sharded_tables,
        pool_mode,
        pool_size,
        min_pool_size: s.int(report, "min_pool_size", 0..=pool_size.into(), 0) as u32,
        max_server_connections: s.int(report, "max_server_connections", 0..=100_000, 0) as u32,
        users,
        auth_type,
        tls,
        tls_required,
        tls_client_ca,
        server_tls,
        max_client_connections: s.int(report, "max_client_connections", 1..=1_000_000, 10_000)
            as u32,
        query_wait_timeout: s.duration(report, "query_wait_timeout", Duration::from_secs(120)),
        idle_transaction_timeout: s.limit(report, "idle_transaction_timeout", Duration::ZERO),
        client_idle_timeout: s.limit(report, "client_idle_timeout", Duration::ZERO),
        connect_timeout: s.duration(report, "connect_timeout", Duration::from_secs(5)),
        server_idle_timeout: s.duration(report, "server_idle_timeout", Duration::from_secs(600)),
        server_lifetime: s.limit(report, "server_lifetime", Duration::from_secs(3600)),
        check_interval: s.duration(report, "check_interval", Duration::from_secs(1)),
        ban_time: s.duration(report, "ban_time", Duration::from_secs(10)),
        check_user,
        auth_user,
        auth_query: auth_query.unwrap_or_else(|| DEFAULT_AUTH_QUERY.to_string()),
        auth_dbname,
        replica_reads: s.bool(report, "replica_reads", true),
        primary_reads: s.bool(report, "primary_reads", true),
        max_replica_lag: s.size(report, "max_replica_lag", 16 << 20, u64::MAX),
        read_your_writes: s.duration(report, "read_your_writes", Duration::from_secs(2)),
        read_pipeline: s.int(report, "read_pipeline", 1..=64, 4) as u32,
        read_pipeline_from: s.int(report, "read_pipeline_from", 1..=10_000, pool_size.into())
            as u32,
        read_pipeline_trials: s.bool(report, "read_pipeline_trials", true),
    })
}

/// The `server_tls_*` keys.
fn server_tls(report: &mut Report<'_>, s: &Section<'_, '_>, base: &Path) -> ServerTls {
    const MODES: [ServerTlsMode; 5] = [
        ServerTlsMode::Disable,
        ServerTlsMode::Prefer,
        ServerTlsMode::Require,
        ServerTlsMode::VerifyCa,
        ServerTlsMode::VerifyFull,
    ];
    let names = MODES.map(ServerTlsMode::as_str);
    let mode = s.choice(report, "server_tls_mode", &names, "prefer");
    let mode = MODES
        .into_iter()
        .find(|m| m.as_str() == mode)
        .unwrap_or(ServerTlsMode::Prefer);
    let ca = s.string(report, "server_tls_ca").map(|p| base.join(p));
    let name = s.string(report, "server_tls_name").map(str::to_string);
    let cert = s.string(report, "server_tls_cert").map(|p| base.join(p));
    let key = s.string(report, "server_tls_key").map(|p| base.join(p));
    let span = |key: &str| s.get(key).map(|v| v.span()).unwrap_or(s.span.clone());
    let verifying = matches!(mode, ServerTlsMode::VerifyCa | ServerTlsMode::VerifyFull);
    if ca.is_some() && !verifying {
        report.add_hint(
            span("server_tls_ca"),
            &s.key("server_tls_ca"),
            format!(
                "server_tls_mode = \"{}\" checks no certificate",
                mode.as_str()
            ),
            Some("set server_tls_mode = \"verify-full\" (or \"verify-ca\")"),
        );
    }
    let unused = [
        (name.is_some(), "server_tls_name"),
        (cert.is_some(), "server_tls_cert"),
        (key.is_some(), "server_tls_key"),
    ];
    for (set, key) in unused {
        if set && mode == ServerTlsMode::Disable {
            report.add_hint(
                span(key),
                &s.key(key),
                "server_tls_mode = \"disable\" makes no TLS connection to use it",
                Some("remove it, or set server_tls_mode"),
            );
        }
    }
    let cert = match (cert, key) {
        (Some(cert), Some(key)) => Some(TlsCert { cert, key }),
        (None, None) => None,
        (cert, _) => {
            let (given, missing) = match cert {
                Some(_) => ("server_tls_cert", "server_tls_key"),
                None => ("server_tls_key", "server_tls_cert"),
            };
            report.add_hint(
                span(given),
                &s.key(given),
                format!("{given} without {missing}"),
                Some(format!("add {missing}, the other half of the pair (PEM)")),
            );
            None
        }
    };
    ServerTls {
        mode,
        ca,
        name,
        cert,
    }
}

/// The user `key` names (`check_user`, `auth_user`): one of `users`, with a secret Strata can
/// log in with by itself (a password or md5 hash, not a SCRAM secret).
fn logging_in_user(
    report: &mut Report<'_>,
    s: &Section<'_, '_>,
    key: &str,
    users: &[DbUser],
) -> Option<String> {
    let v = s.get(key)?;
    let name = s.string(report, key)?;
    match users.iter().find(|u| u.name == name) {
        Some(u) if !matches!(u.secret, Secret::Scram { .. }) => Some(name.to_string()),
        Some(_) => {
            report.add_hint(
                v.span(),
                &s.key(key),
                format!("user \"{name}\" has only a SCRAM secret, which can't log in by itself"),
                Some(format!("give {key} its password (or its md5 hash)")),
            );
            None
        }
        None => {
            report.add(
                v.span(),
                &s.key(key),
                format!("no user \"{name}\" in `users` or `auth_file`"),
            );
            None
        }
    }
}

fn servers(report: &mut Report<'_>, key: &str, v: &Value<'_>) -> Vec<SocketAddr> {
    let Some(items) = v.get_ref().as_array() else {
        wrong_type(report, key, v, "an array of \"ip:port\" strings");
        return Vec::new();
    };
    let mut out: Vec<SocketAddr> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let key = format!("{key}[{i}]");
        let Some(text) = as_str(report, &key, item) else {
            continue;
        };
        let Some(addr) = as_addr(report, &key, item, text) else {
            continue;
        };
        if out.contains(&addr) {
            report.add(item.span(), &key, format!("{addr} is listed twice"));
        } else {
            out.push(addr);
        }
    }
    if out.is_empty() && items.is_empty() {
        report.add(v.span(), key, "the server list is empty");
    }
    out
}

/// `shards`: an array of server lists, no server in two.
fn shards(report: &mut Report<'_>, key: &str, v: &Value<'_>) -> Vec<Vec<SocketAddr>> {
    let Some(items) = v.get_ref().as_array() else {
        wrong_type(report, key, v, "an array of server lists, one per shard");
        return Vec::new();
    };
    if items.is_empty() {
        report.add(v.span(), key, "the shard list is empty");
    }
    let mut out: Vec<Vec<SocketAddr>> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let key = format!("{key}[{i}]");
        let list = servers(report, &key, item);
        for addr in &list {
            if out.iter().flatten().any(|a| a == addr) {
                report.add(item.span(), &key, format!("{addr} is in two shards"));
            }
        }
        out.push(list);
    }
    out
}

/// `[[database.sharded_tables]]`, checked against `shard_count` shards.
fn sharded_tables(
    report: &mut Report<'_>,
    s: &Section<'_, '_>,
    shard_count: usize,
) -> Vec<ShardedTable> {
    let sections = s.tables(report, "sharded_tables", SHARDED_TABLE_KEYS);
    if !sections.is_empty() && s.get("shards").is_none() {
        report.add_hint(
            s.get("sharded_tables").map_or(s.span.clone(), |v| v.span()),
            &s.key("sharded_tables"),
            "sharded tables without shards",
            Some("list each shard's servers under `shards` instead of `servers`"),
        );
        return Vec::new();
    }
    let mut out: Vec<ShardedTable> = Vec::new();
    for t in sections {
        let table = t
            .required(report, "name")
            .and_then(|_| t.string(report, "name"));
        let column = t
            .required(report, "column")
            .and_then(|_| t.string(report, "column"));
        let key_type = match t.choice(report, "type", &["integer", "text"], "integer") {
            "text" => KeyType::Text,
            _ => KeyType::Integer,
        };
        let rule = match t.choice(report, "rule", &["hash", "range"], "hash") {
            "range" => {
                if key_type != KeyType::Integer {
                    report.add(
                        t.get("rule").map_or(t.span.clone(), |v| v.span()),
                        &t.key("rule"),
                        "range rules take integer keys",
                    );
                }
                ShardRule::Range(ranges(report, &t, shard_count))
            }
            _ => {
                if t.get("ranges").is_some() {
                    report.add_hint(
                        t.get("ranges").map_or(t.span.clone(), |v| v.span()),
                        &t.key("ranges"),
                        "`ranges` is only read with rule = \"range\"",
                        None::<String>,
                    );
                }
                ShardRule::Hash
            }
        };
        let (Some(table), Some(column)) = (table, column) else {
            continue;
        };
        if out.iter().any(|o| o.table == table) {
            report.add(
                t.span.clone(),
                &t.key("name"),
                format!("table \"{table}\" is listed twice"),
            );
            continue;
        }
        out.push(ShardedTable {
            table: table.to_string(),
            column: column.to_string(),
            key_type,
            rule,
        });
    }
    out
}

/// A range rule's `ranges`: each names a shard that exists, and no two overlap.
fn ranges(report: &mut Report<'_>, t: &Section<'_, '_>, shard_count: usize) -> Vec<ShardRange> {
    let sections = t.tables(report, "ranges", RANGE_KEYS);
    if sections.is_empty() {
        report.add_hint(
            t.span.clone(),
            &t.key("ranges"),
            "a range rule without ranges",
            Some("add ranges = [{ shard = 0, to = 1000000 }, { shard = 1, from = 1000000 }]"),
        );
    }
    let mut out: Vec<ShardRange> = Vec::new();
    for r in sections {
        let Some(shard) = r
            .required(report, "shard")
            .map(|_| r.int(report, "shard", 0..=i64::from(u16::MAX), 0) as usize)
        else {
            continue;
        };
        if shard >= shard_count {
            report.add(
                r.get("shard").map_or(r.span.clone(), |v| v.span()),
                &r.key("shard"),
                format!("there is no shard {shard}: `shards` lists {shard_count} (counted from 0)"),
            );
        }
        let bound = |report: &mut Report<'_>, name: &str| {
            r.get(name)
                .map(|_| r.int(report, name, i64::MIN..=i64::MAX, 0))
        };
        let range = ShardRange {
            shard,
            from: bound(report, "from"),
            to: bound(report, "to"),
        };
        let low = range.from.unwrap_or(i64::MIN);
        let high = range.to.unwrap_or(i64::MAX);
        if range.to.is_some() && high <= low {
            report.add(r.span.clone(), &r.key("to"), "`to` must be above `from`");
            continue;
        }
        let overlaps = out
            .iter()
            .any(|o| low < o.to.unwrap_or(i64::MAX) && o.from.unwrap_or(i64::MIN) < high);
        if overlaps {
            report.add(
                r.span.clone(),
                &r.key("from"),
                "this range overlaps another: each key must have one shard",
            );
            continue;
        }
        out.push(range);
    }
    out
}

/// Reads a secret as PgBouncer's userlist and `pg_authid` write it.
fn secret(report: &mut Report<'_>, key: &str, v: &Value<'_>, text: &str) -> Option<Secret> {
    match parse_secret(text) {
        Ok(s) => Some(s),
        Err(why) => {
            report.add_hint(
                v.span(),
                key,
                why,
                Some("a password, `md5` and 32 hex digits, or `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>` as in pg_authid"),
            );
            None
        }
    }
}

/// Parses a password, an md5 hash or a SCRAM-SHA-256 secret.
pub fn parse_secret(text: &str) -> Result<Secret, String> {
    if let Some(rest) = text.strip_prefix("SCRAM-SHA-256$") {
        let bad = || "this SCRAM-SHA-256 secret is not in pg_authid's form".to_string();
        let (head, keys) = rest.split_once('$').ok_or_else(bad)?;
        let (iterations, salt) = head.split_once(':').ok_or_else(bad)?;
        let (stored, server) = keys.split_once(':').ok_or_else(bad)?;
        let iterations: u32 = iterations.parse().map_err(|_| bad())?;
        let salt = base64_decode(salt).ok_or_else(bad)?;
        let key = |k: &str| -> Result<[u8; 32], String> {
            base64_decode(k)
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
                .ok_or_else(bad)
        };
        if iterations == 0 || salt.is_empty() {
            return Err(bad());
        }
        return Ok(Secret::Scram {
            iterations,
            salt,
            stored_key: key(stored)?,
            server_key: key(server)?,
        });
    }
    if let Some(hex) = text.strip_prefix("md5") {
        if hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(Secret::Md5(text.to_ascii_lowercase()));
        }
    }
    if text.is_empty() {
        return Err("the password is empty".into());
    }
    Ok(Secret::Plain(text.to_string()))
}

/// Standard base64 with padding (SCRAM's nonces and proofs, etcd's keys).
pub fn base64_encode(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for c in data.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Standard base64 (with padding), as SCRAM secrets are written.
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let text = text.trim_end_matches('=');
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

/// Reads PgBouncer's `auth_file` (userlist.txt): one `"user" "secret"` per line, double quotes
/// doubled inside a name or secret, other lines ignored as PgBouncer ignores them.
fn auth_file(report: &mut Report<'_>, key: &str, v: &Value<'_>, path: &Path) -> Vec<DbUser> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            report.add(
                v.span(),
                key,
                format!("cannot read {}: {e}", path.display()),
            );
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with(';') || line.starts_with('#') {
            continue;
        }
        let fields = quoted_fields(line);
        match fields.as_slice() {
            [user, secret, ..] => match parse_secret(secret) {
                Ok(secret) => out.push(DbUser {
                    name: user.clone(),
                    secret,
                }),
                Err(why) => report.add(
                    v.span(),
                    key,
                    format!("{}:{}: user \"{user}\": {why}", path.display(), n + 1),
                ),
            },
            _ => report.add(
                v.span(),
                key,
                format!(
                    "{}:{}: expected \"user\" \"password\"",
                    path.display(),
                    n + 1
                ),
            ),
        }
    }
    out
}

/// The double-quoted fields of a userlist line (`""` inside stands for `"`).
fn quoted_fields(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '"' {
            continue;
        }
        let mut field = String::new();
        loop {
            match chars.next() {
                Some('"') if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                Some('"') | None => break,
                Some(c) => field.push(c),
            }
        }
        out.push(field);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_as_pg_authid_writes_them() {
        assert_eq!(
            parse_secret("hunter2").unwrap(),
            Secret::Plain("hunter2".into())
        );
        assert!(matches!(
            parse_secret("md5a3556571e93b0d20722ba62be61e8c2d").unwrap(),
            Secret::Md5(_)
        ));
        let s = parse_secret("SCRAM-SHA-256$4096:c2FsdHNhbHQ=$WdgDeNvIvjOQwS5zAOX4eI6QNAgNaa6VGz5zzNpcTaM=:Sqjr3kNgZo0E7iz0rbkWqAQ3rtVYjc2NTFZdnkU7CMU=").unwrap();
        assert!(matches!(
            s,
            Secret::Scram {
                iterations: 4096,
                ..
            }
        ));
        assert!(parse_secret("SCRAM-SHA-256$x:y$z").is_err());
    }

    #[test]
    fn userlist_fields() {
        assert_eq!(quoted_fields(r#""a""b" "p w""#), vec!["a\"b", "p w"]);
    }
}
