//! PgBouncer's pgbouncer.ini translated into one `[[database]]` listener: PgBouncer listens on
//! one port and sends each database's clients to that database's servers; Strata sends every
//! database's clients to one set of servers, each query to a server by its role.
//!
//! What can't be carried over is treated by what it would change:
//! - what PgBouncer's process does besides pooling (logs, pid file, admin console, peers, socket
//!   tuning): dropped, with a note about the file as a whole;
//! - how the pool behaves where `[[database]]` has no setting (per-database and per-user sizes
//!   and modes, timeouts Strata lacks, TLS): dropped, with a note above the listener;
//! - a value Strata takes otherwise (`plain` or `any` authentication, 0 for no timeout, a pool
//!   size past Strata's bound): translated as near as Strata goes, with a note;
//! - where clients' queries go, and as whom (a database on other servers, an alias of another
//!   database, a forced user, a server by host name or unix socket), and what Strata can't do in
//!   its place (`statement` pooling, certificate, hba, LDAP or PAM logins, an `auth_file` it
//!   can't read): kept as written and marked, so `strata check` refuses the output until
//!   someone decides;
//! - a listener Strata can't run (no TCP address, a host name to listen on, no databases, no
//!   users): left out, its translation printed as a comment.
//!
//! A file PgBouncer would not start with (a syntax error, an unknown section or key, a value it
//! can't read) is refused, every problem with its line, and nothing is printed.

mod connstr;
mod ini;
mod sections;
mod settings;

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use super::{
    check, commented, directory, quoted, Item, Line, Note, Pos, Table, Translation, KEPT,
    NOT_TRANSLATED,
};
use connstr::atoi;
use sections::{Conf, Entry};
use settings::{Treatment, Value};

const LEFT_OUT: &str = "listener left out (its translation is a comment in the output)";
/// What a timeout PgBouncer has off (0) becomes: Strata always has one.
const NO_LIMIT: &str = "24h";
/// The largest `pool_size` `[[database]]` takes.
const MAX_POOL_SIZE: i64 = 10_000;
/// The most `max_client_connections` `[[database]]` takes.
const MAX_CLIENTS: i64 = 1_000_000;
/// PgBouncer's defaults where the file has no value.
const DEFAULT_PORT: i64 = 6432;
const DEFAULT_SERVER_PORT: i64 = 5432;
const DEFAULT_POOL_SIZE: i64 = 20;
const DEFAULT_MAX_CLIENTS: i64 = 100;
const DEFAULT_SOCKET_DIR: &str = "/tmp";

/// Translates the pgbouncer.ini `source`; `file` names it in the header comment, and its
/// directory is where a relative `auth_file` is taken from.
pub(super) fn translate(source: &str, file: &str) -> Result<Translation, Vec<Note>> {
    let items = ini::parse(source)?;
    let mut conf = Conf::read(&items)?;
    let mut notes = std::mem::take(&mut conf.notes);
    let listener = Listener::translate(&conf, &directory(file), &mut notes);
    let mut toml = format!(
        "# Translated from {file} by `strata import pgbouncer`: PgBouncer's\n\
         # listener as a [[database]] listener. What could not be translated is listed on stderr,\n\
         # and here: about PgBouncer's process below, about the listener above it.\n"
    );
    notes.sort_by_key(|n| n.at);
    if !notes.is_empty() {
        toml.push('\n');
    }
    toml.push_str(&commented(&notes));
    let mut translation = Translation::new(toml, notes, "listener", vec![listener]);
    translation.notes.sort_by_key(|n| n.at);
    Ok(translation)
}

/// Where one database's clients go: its servers, as `[[database]]` writes them.
struct Route<'c, 'a> {
    entry: &'c Entry<'a>,
    servers: Vec<Server>,
    /// Its servers' addresses, sorted: what routes with the same servers share.
    set: Vec<String>,
}

/// A server as `servers` writes it, and why it is kept as written, when it is.
struct Server {
    text: String,
    kept: Option<String>,
}

impl<'c, 'a> Route<'c, 'a> {
    fn new(entry: &'c Entry<'a>, socket_dir: &str) -> Route<'c, 'a> {
        let port = entry
            .param("port")
            .map_or(DEFAULT_SERVER_PORT, |p| atoi(&p.value.text));
        let hosts: Vec<&str> = entry.param("host").map_or(Vec::new(), |p| {
            p.value.text.split(',').filter(|h| !h.is_empty()).collect()
        });
        let servers: Vec<Server> = if hosts.is_empty() {
            let why = match socket_dir {
                "" => "no `host=`, and no unix_socket_dir: PgBouncer has nowhere to connect to (it fails every client of this database): write the server's IP address and port".to_string(),
                dir => format!("no `host=`: PgBouncer connects to the unix socket in {} (unix_socket_dir), which Strata does not: write the server's IP address and port (PostgreSQL's listen_addresses)", quoted(dir)),
            };
            vec![Server {
                text: format!("{socket_dir}/.s.PGSQL.{port}"),
                kept: Some(why),
            }]
        } else {
            hosts.iter().map(|h| Server::new(h, port)).collect()
        };
        let mut set: Vec<String> = servers.iter().map(|s| s.text.clone()).collect();
        set.sort_unstable();
        set.dedup();
        Route {
            entry,
            servers,
            set,
        }
    }

    /// Where the note about its servers goes: its `host=`, or its name without one.
    fn host_at(&self) -> Pos {
        self.entry
            .param("host")
            .map_or(self.entry.name.at, |p| p.value.at)
    }
}

impl Server {
    /// One host of a `host=` list, as PgBouncer takes it (`dns_connect`): a unix socket
    /// directory from `/` or `@`, an IPv6 address with a `:`, an IPv4 address, or a name.
    fn new(host: &str, port: i64) -> Server {
        let tcp = |text: String| {
            let kept = (!(1..=65535).contains(&port)).then(|| {
                format!(
                    "port {port} is not a TCP port (PgBouncer takes any number but 0 in `port=`)"
                )
            });
            Server { text, kept }
        };
        if host.starts_with('/') || host.starts_with('@') {
            let why = format!("{} is a unix socket directory, and Strata connects over TCP only: write the server's IP address and port (PostgreSQL's listen_addresses)", quoted(host));
            return Server {
                text: format!("{host}/.s.PGSQL.{port}"),
                kept: Some(why),
            };
        }
        let literal = if host.contains(':') {
            host.parse::<Ipv6Addr>().is_ok()
        } else {
            host == "localhost" || host.parse::<Ipv4Addr>().is_ok()
        };
        match (literal, host.contains(':')) {
            (true, true) => tcp(format!("[{host}]:{port}")),
            (true, false) => tcp(format!("{host}:{port}")),
            (false, _) => {
                let why = format!("{} is a host name, which PgBouncer resolves (again every dns_max_ttl) and Strata does not: write the server's IP address", quoted(host));
                Server {
                    text: format!("{host}:{port}"),
                    kept: Some(why),
                }
            }
        }
    }
}

/// The listener's translation, as it is made.
struct Listener<'c, 'a> {
    conf: &'c Conf<'a>,
    table: Table,
    /// Notes about the file as a whole.
    notes: &'c mut Vec<Note>,
    /// The pool mode and size written, for the databases that differ.
    pool_mode: &'static str,
    pool_size: i64,
    /// The query_wait_timeout in seconds, and as written, for the databases that differ.
    wait: (f64, String),
    /// The server_lifetime in seconds, and as written, for the databases that differ.
    lifetime: (f64, String),
    /// The min_pool_size written (0: none), for the databases that differ.
    min_pool_size: i64,
}

impl<'c, 'a> Listener<'c, 'a> {
    /// The listener's `[[database]]` table and the notes about it; notes about the file as a
    /// whole go to `notes`.
    fn translate(conf: &'c Conf<'a>, dir: &Path, notes: &'c mut Vec<Note>) -> Table {
        let mut l = Listener {
            conf,
            table: Table::new("database"),
            notes,
            pool_mode: "session",
            pool_size: DEFAULT_POOL_SIZE,
            wait: (120.0, String::new()),
            lifetime: (3600.0, String::new()),
            min_pool_size: 0,
        };
        l.name();
        l.listen();
        let routes = l.servers();
        l.pool_mode();
        l.pool_size();
        l.min_pool_size();
        l.max_server_connections();
        l.auth(dir);
        l.client_tls(dir);
        l.server_tls(dir, &routes);
        l.max_client_connections();
        l.wait = l.seconds("query_wait_timeout", "query_wait_timeout", 120.0);
        let _ = l.seconds("server_connect_timeout", "connect_timeout", 15.0);
        let _ = l.seconds("server_idle_timeout", "server_idle_timeout", 600.0);
        l.lifetime = l.server_lifetime();
        l.optional_seconds("idle_transaction_timeout");
        l.optional_seconds("client_idle_timeout");
        l.databases(&routes);
        l.dropped();
        l.table.finish("pgbouncer", conf.main)
    }

    fn leave_out(&mut self, at: Pos, key: &str, why: &str) {
        self.table.left_out = true;
        self.table.note(at, key, format!("{LEFT_OUT}: {why}"));
    }

    /// A `[pgbouncer]` integer, or `default`.
    fn int(&self, name: &str, default: i64) -> i64 {
        match self.conf.get(name).map(|s| &s.read) {
            Some(Value::Int(n)) => *n,
            _ => default,
        }
    }

    /// A `[pgbouncer]` text, or `default`.
    fn text(&self, name: &str, default: &'c str) -> &'c str {
        let conf: &'c Conf<'a> = self.conf;
        match conf.get(name).map(|s| &s.read) {
            Some(Value::Text(t)) => t,
            _ => default,
        }
    }

    /// A `[pgbouncer]` choice, or `default`.
    fn choice(&self, name: &str, default: &'static str) -> &'static str {
        match self.conf.get(name).map(|s| &s.read) {
            Some(Value::Choice(c)) => c,
            _ => default,
        }
    }

    /// Where a `[pgbouncer]` key is, or the section when the file does not set it.
    fn at(&self, name: &str) -> Pos {
        self.conf.get(name).map_or(self.conf.main, |s| s.name.at)
    }

    /// A line kept as written, after a note at `at` about `key` that says why.
    fn keep(&mut self, at: Pos, key: &str, text: String, why: String) {
        self.table.note(at, key, format!("{KEPT}: {why}"));
        self.table.items.push(Item::Key(Line {
            text,
            kept: Some(at.line),
        }));
    }

    /// `name`: PgBouncer's `job_name` (or `service_name`, which sets it too), as it names
    /// itself in its logs.
    fn name(&mut self) {
        let name = ["job_name", "service_name"]
            .iter()
            .filter_map(|k| self.conf.get(k))
            .filter(|s| !s.value.text.is_empty())
            .max_by_key(|s| s.name.at)
            .map_or("pgbouncer", |s| s.value.text.as_str());
        self.table.key("name", quoted(name));
    }

    /// `listen`, from listen_addr and listen_port; a listener Strata can't listen for as
    /// PgBouncer did is left out.
    fn listen(&mut self) {
        let port = self.int("listen_port", DEFAULT_PORT);
        let socket_dir = self.text("unix_socket_dir", DEFAULT_SOCKET_DIR);
        let key = "pgbouncer.listen_addr";
        let at = self.conf.get("listen_addr").map(|s| s.value.at);
        let text = self.text("listen_addr", "");
        // PgBouncer's parse_word_list: comma-separated, spaces around each trimmed
        let addrs: Vec<&str> = text
            .split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .collect();
        if !socket_dir.is_empty() && self.conf.get("unix_socket_dir").is_some() {
            let at = self.at("unix_socket_dir");
            let why = format!("{NOT_TRANSLATED}: PgBouncer also listens on the unix socket {socket_dir}/.s.PGSQL.{port}, and Strata on TCP only: clients that connect without a host (psql's default) must connect to the listener's address");
            self.table.note(at, "pgbouncer.unix_socket_dir", why);
        }
        let Some(first) = addrs.first().copied() else {
            let at = at.unwrap_or(self.conf.main);
            let why = match socket_dir {
                "" => "no `listen_addr` and no unix_socket_dir: PgBouncer has nowhere to listen (it does not start)".to_string(),
                dir => format!("no `listen_addr`: PgBouncer listens on its unix socket only ({dir}/.s.PGSQL.{port}), and Strata on TCP only: set listen_addr to the address clients should connect to"),
            };
            self.leave_out(at, key, &why);
            return;
        };
        let at = at.unwrap_or(self.conf.main);
        let listen = if first == "*" {
            let why = "`*` made 0.0.0.0: PgBouncer listens on every IPv4 and IPv6 address, and Strata's listener on one address (0.0.0.0 takes IPv4 clients only)";
            self.table.note(at, key, why.into());
            format!("0.0.0.0:{port}")
        } else if first == "localhost" || first.parse::<Ipv4Addr>().is_ok() {
            format!("{first}:{port}")
        } else if first.parse::<Ipv6Addr>().is_ok() {
            format!("[{first}]:{port}")
        } else {
            let why = format!("PgBouncer resolved the host name {} when it started; Strata listens on an IP address (write the address the name stood for)", quoted(first));
            self.leave_out(at, key, &why);
            format!("{first}:{port}")
        };
        self.table.key("listen", quoted(&listen));
        // 0.0.0.0 takes the clients of every other IPv4 address
        let any = first == "*";
        let others: Vec<&str> = addrs[1..]
            .iter()
            .copied()
            .filter(|a| !any || !(*a == "*" || a.parse::<Ipv4Addr>().is_ok()))
            .collect();
        if !others.is_empty() {
            let or = if any { "" } else { " (or listen on 0.0.0.0)" };
            let why = format!("{} {NOT_TRANSLATED}: Strata's listener listens on one address, {}: clients that connect to the others must connect there{or}", others.join(", "), quoted(&listen));
            self.table.note(at, key, why);
        }
    }

    /// `servers`: those of the databases that share theirs most (the first of them, on a tie).
    /// Returns each database's route, the listener's first.
    fn servers(&mut self) -> Vec<Route<'c, 'a>> {
        let socket_dir = self.text("unix_socket_dir", DEFAULT_SOCKET_DIR);
        let mut routes: Vec<Route<'c, 'a>> = self
            .conf
            .databases
            .iter()
            .map(|e| Route::new(e, socket_dir))
            .collect();
        let Some(main) = (0..routes.len()).max_by_key(|&i| {
            let shared = routes.iter().filter(|r| r.set == routes[i].set).count();
            (shared, std::cmp::Reverse(i))
        }) else {
            let at = self.conf.databases_at.unwrap_or(self.conf.main);
            let why = "no [databases] entry: PgBouncer serves no database (only its admin console), so there is nothing to send clients to";
            self.leave_out(at, "databases", why);
            return routes;
        };
        let first = routes.remove(main);
        routes.insert(0, first);
        let route = &routes[0];
        let key = format!("databases.{}.host", route.entry.name.text);
        let at = route.host_at();
        let mut lines: Vec<Line> = Vec::new();
        for (i, server) in route.servers.iter().enumerate() {
            if route.servers[..i].iter().any(|s| s.text == server.text) {
                let why = format!(
                    "{NOT_TRANSLATED}: {} is listed twice, and is once in `servers`",
                    quoted(&server.text)
                );
                self.table.note(at, &key, why);
                continue;
            }
            let kept = server.kept.as_ref().map(|why| {
                self.table.note(at, &key, format!("{KEPT}: {why}"));
                at.line
            });
            lines.push(Line {
                text: quoted(&server.text),
                kept,
            });
        }
        if route.servers.len() > 1 {
            let why = "PgBouncer spreads new server connections over these hosts in turn; Strata asks each whether it is the primary (`pg_is_in_recovery()`, as `check_user`), and sends the primary everything but READ ONLY transactions, which go to the replicas in turn: with replicas only, nothing else runs";
            self.table.note(at, &key, why.into());
        }
        self.table.items.push(Item::Array("servers", lines));
        routes
    }

    /// `pool_mode`, always written: PgBouncer's default is session, Strata's transaction.
    fn pool_mode(&mut self) {
        let mode = self.choice("pool_mode", "session");
        self.pool_mode = mode;
        if mode == "statement" {
            let at = self.at("pool_mode");
            let why = "Strata has no statement mode (a server connection given back after each statement, a transaction of several statements refused): choose \"transaction\", which also takes those transactions, or \"session\"".to_string();
            self.keep(
                at,
                "pgbouncer.pool_mode",
                format!("pool_mode = {}", quoted(mode)),
                why,
            );
        } else {
            self.table.key("pool_mode", quoted(mode));
        }
    }

    /// `pool_size`, from default_pool_size.
    fn pool_size(&mut self) {
        let n = self.int("default_pool_size", DEFAULT_POOL_SIZE);
        let (at, key) = (self.at("default_pool_size"), "pgbouncer.default_pool_size");
        self.pool_size = n;
        if n < 1 {
            let why = format!(
                "a pool of {n} server connections runs no query; Strata takes 1 to {MAX_POOL_SIZE}"
            );
            self.keep(at, key, format!("pool_size = {n}"), why);
            return;
        }
        let size = n.min(MAX_POOL_SIZE);
        self.pool_size = size;
        if size != n {
            let why = format!("{n} made {size}: the most Strata takes");
            self.table.note(at, key, why);
        }
        self.table.key("pool_size", size.to_string());
    }

    /// `min_pool_size`, when PgBouncer keeps some connections open: at most the pool size.
    fn min_pool_size(&mut self) {
        let n = self.int("min_pool_size", 0);
        if n < 1 || self.pool_size < 1 {
            return;
        }
        let min = n.min(self.pool_size);
        if min != n {
            let why = format!("{n} made {min}: no more than pool_size");
            self.table
                .note(self.at("min_pool_size"), "pgbouncer.min_pool_size", why);
        }
        self.min_pool_size = min;
        self.table.key("min_pool_size", min.to_string());
    }

    /// `max_server_connections`, from max_db_connections: written when set.
    fn max_server_connections(&mut self) {
        let n = self.int("max_db_connections", 0);
        if n < 1 {
            return;
        }
        let (at, key) = (
            self.at("max_db_connections"),
            "pgbouncer.max_db_connections",
        );
        let bound = n.min(MAX_SERVER_CONNECTIONS);
        let why = if bound == n {
            "PgBouncer bounds each database's server connections (all users together), Strata each server's (all users and databases together): the same where the clients use one database. Where the bound is reached, Strata closes another pool's idle connection for a pool that needs one, where PgBouncer waits for server_idle_timeout".to_string()
        } else {
            format!("{n} made {bound}: the most Strata takes")
        };
        self.table.note(at, key, why);
        self.table.key("max_server_connections", bound.to_string());
    }

    /// `max_client_connections`, from max_client_conn; always written, PgBouncer's default
    /// (100) being Strata's too low.
    fn max_client_connections(&mut self) {
        let n = self.int("max_client_conn", DEFAULT_MAX_CLIENTS);
        let (at, key) = (self.at("max_client_conn"), "pgbouncer.max_client_conn");
        if n < 1 {
            let why =
                format!("with {n}, PgBouncer takes no client; Strata takes 1 to {MAX_CLIENTS}");
            self.keep(at, key, format!("max_client_connections = {n}"), why);
            return;
        }
        let clients = n.min(MAX_CLIENTS);
        if clients != n {
            let why = format!("{n} made {clients}: the most Strata takes");
            self.table.note(at, key, why);
        }
        self.table
            .key("max_client_connections", clients.to_string());
    }

    /// `auth_type`, `auth_file`, and `check_user` and `auth_user` (from auth_user), with
    /// `auth_query` and `auth_dbname`.
    fn auth(&mut self, dir: &Path) {
        let auth_type = self.choice("auth_type", "md5");
        let at = self.at("auth_type");
        let key = "pgbouncer.auth_type";
        let mut kept_type = false;
        match auth_type {
            "scram-sha-256" | "md5" | "trust" => self.table.key("auth_type", quoted(auth_type)),
            "plain" => {
                let why = "`plain` made `md5`: Strata takes no password in clear; md5 checks the same passwords (and asks SCRAM of users stored as SCRAM secrets), and every PostgreSQL client speaks it";
                self.table.note(at, key, why.into());
                self.table.key("auth_type", quoted("md5"));
            }
            "any" => {
                let why = "`any` made `trust`: no password is asked either, but Strata takes only the users it knows (in `auth_file`), and logs in to the server as the client's user, where PgBouncer takes any name and logs in as each database's `user=`";
                self.table.note(at, key, why.into());
                self.table.key("auth_type", quoted("trust"));
            }
            other => {
                let why = match other {
                    "cert" => "Strata takes no user name from a client certificate (`tls_client_ca` checks the certificate, and the client still logs in as auth_type says): choose scram-sha-256 or md5, with the users' passwords in auth_file (not trust: any holder of a certificate from the CA could then log in as any user)",
                    "hba" => "Strata has one auth_type for every client, not rules by address, database and user (auth_hba_file): choose scram-sha-256, md5 or trust",
                    _ => "Strata checks passwords against auth_file only: choose scram-sha-256 or md5, with the users' passwords in auth_file",
                };
                let text = format!("auth_type = {}", quoted(other));
                self.keep(at, key, text, why.into());
                kept_type = true;
            }
        }
        let file = self.auth_file(dir);
        let Some(s) = self.conf.get("auth_user") else {
            self.lookup_unused(
                "not used without auth_user, as in PgBouncer: nobody looks users up",
            );
            if file.is_none() && !kept_type {
                let why = "no `auth_file`: Strata knows no user, so nobody could log in: add an auth_file (PgBouncer's userlist format)";
                if matches!(auth_type, "trust" | "any") {
                    self.table
                        .note(self.conf.main, "pgbouncer.auth_file", why.into());
                } else {
                    self.leave_out(self.conf.main, "pgbouncer.auth_file", why);
                }
            }
            return;
        };
        let (at, key, user) = (s.name.at, "pgbouncer.auth_user", s.value.text.as_str());
        let lookups = "as PgBouncer did, a user not in the auth_file is looked up with auth_query (its secret from pg_authid), as this user";
        match file {
            Some(Some(path)) => {
                let toml = format!(
                    "{}check_user = {}\nauth_user = {}\n",
                    minimal(&path),
                    quoted(user),
                    quoted(user)
                );
                let why = match check(&toml) {
                    Ok(()) if matches!(auth_type, "trust" | "any") => {
                        self.table.key("check_user", quoted(user));
                        self.lookup_unused("not translated: with no password asked (trust), Strata looks nobody up");
                        "made `check_user`, the user Strata logs in as to ask each server its role; not `auth_user`: with no password asked (trust), a looked-up secret would check nothing, and Strata refuses the pair".to_string()
                    }
                    Ok(()) => {
                        self.table.key("check_user", quoted(user));
                        self.table.key("auth_user", quoted(user));
                        self.auth_query();
                        format!("made `check_user`, the user Strata logs in as to ask each server its role, and `auth_user`: {lookups}")
                    }
                    Err(problems) => {
                        self.lookup_unused("not translated with auth_user");
                        format!("{NOT_TRANSLATED}: not made `check_user` and `auth_user`, which Strata would refuse ({}): users PgBouncer looked up with auth_query can't log in until it is mended", reasons(&problems))
                    }
                };
                self.table.note(at, key, why);
            }
            Some(None) => {
                self.lookup_unused("not translated with auth_user");
                let why = format!("{NOT_TRANSLATED}: not made `check_user` and `auth_user` while Strata can't read the auth_file (it must hold this user's password): users PgBouncer looked up with auth_query can't log in until it is mended");
                self.table.note(at, key, why);
            }
            None => {
                self.lookup_unused("not translated with auth_user");
                let why = "Strata logs in as auth_user with its password or md5 hash from the auth_file, and there is none: add an auth_file with this user";
                self.keep(at, key, format!("auth_user = {}", quoted(user)), why.into());
            }
        }
    }

    /// A note on auth_query and auth_dbname, where set, saying `why` they are not written.
    fn lookup_unused(&mut self, why: &str) {
        for name in ["auth_query", "auth_dbname"] {
            if let Some(s) = self.conf.get(name).filter(|s| !s.value.text.is_empty()) {
                self.table
                    .note(s.name.at, &format!("pgbouncer.{name}"), why.into());
            }
        }
    }

    /// `auth_query` (where set: unset, Strata's default is PgBouncer's since 1.23, which reads
    /// the secrets from pg_authid, none past VALID UNTIL) and `auth_dbname`.
    fn auth_query(&mut self) {
        for name in ["auth_query", "auth_dbname"] {
            if let Some(s) = self.conf.get(name).filter(|s| !s.value.text.is_empty()) {
                self.table.key(name, quoted(&s.value.text));
            }
        }
    }

    /// `auth_file`, absolute, and kept as written when Strata can't read it here. Returns
    /// whether the file sets one, and its path when it is translated.
    fn auth_file(&mut self, dir: &Path) -> Option<Option<String>> {
        let s = self.conf.get("auth_file")?;
        let at = s.name.at;
        let path = self.absolute("auth_file", dir)?;
        let line = format!("auth_file = {}", quoted(&path));
        match check(&minimal(&path)) {
            Ok(()) => {
                self.table.items.push(Item::Key(Line::new(line)));
                Some(Some(path))
            }
            Err(problems) => {
                let why = format!("`strata check` refuses it here ({}): run the import where PgBouncer runs, or change it to where the file is", reasons(&problems));
                self.keep(at, "pgbouncer.auth_file", line, why);
                Some(None)
            }
        }
    }

    /// A `[pgbouncer]` file path, absolute: PgBouncer takes a relative one from the directory
    /// it was started in, Strata from its config file's, so one is taken from the ini's
    /// directory (with a note). `None` when unset or empty.
    fn absolute(&mut self, name: &str, dir: &Path) -> Option<String> {
        let s = self.conf.get(name)?;
        if s.value.text.is_empty() {
            return None;
        }
        let written = Path::new(&s.value.text);
        if written.is_absolute() {
            return Some(written.display().to_string());
        }
        // components() drops the `.`s
        let path: PathBuf = dir.join(written).components().collect();
        let why = format!("{} is relative, which PgBouncer takes from the directory it was started in: taken from the ini's directory, and written absolute, as Strata takes a relative path from its config file's directory", quoted(&s.value.text));
        self.table
            .note(s.name.at, &format!("pgbouncer.{name}"), why);
        Some(path.display().to_string())
    }

    /// `tls` and `tls_mode`, from client_tls_sslmode and the certificate and key files.
    fn client_tls(&mut self, dir: &Path) {
        let mode = self.choice("client_tls_sslmode", "disable");
        let at = self.at("client_tls_sslmode");
        let key = "pgbouncer.client_tls_sslmode";
        let files = ["client_tls_cert_file", "client_tls_key_file"];
        if !mode.starts_with("verify") {
            if let Some(s) = self
                .conf
                .get("client_tls_ca_file")
                .filter(|s| !s.value.text.is_empty())
            {
                let why = format!("{NOT_TRANSLATED}: with client_tls_sslmode = {mode}, PgBouncer asks for an optional client certificate and refuses one that does not chain to this file; Strata asks for none (clients log in with their passwords). Strata's tls_client_ca is PgBouncer's verify-ca");
                self.table
                    .note(s.name.at, "pgbouncer.client_tls_ca_file", why);
            }
        }
        if mode == "disable" {
            for name in files {
                if let Some(s) = self.conf.get(name).filter(|s| !s.value.text.is_empty()) {
                    let why = "not used while client_tls_sslmode = disable, as in PgBouncer: a client's SSL request is answered `N`";
                    self.table
                        .note(s.name.at, &format!("pgbouncer.{name}"), why.into());
                }
            }
            return;
        }
        let cert = self.absolute(files[0], dir);
        let private = self.absolute(files[1], dir);
        let (Some(cert), Some(private)) = (cert, private) else {
            let why = format!("{NOT_TRANSLATED}: `{mode}` without both client_tls_cert_file and client_tls_key_file, where PgBouncer does not start: Strata offers TLS with a certificate and its key (`tls`)");
            self.table.note(at, key, why);
            return;
        };
        self.table.key(
            "tls",
            format!(
                "[{{ cert = {}, key = {} }}]",
                quoted(&cert),
                quoted(&private)
            ),
        );
        // verify-ca and verify-full check client certificates against client_tls_ca_file
        let ca = match mode.starts_with("verify") {
            true => self.absolute("client_tls_ca_file", dir),
            false => None,
        };
        let loaded = [(Path::new(&cert), Path::new(&private))];
        let ca_path = ca.as_deref().map(Path::new);
        if let Err(e) = strata_net::tls::server_config("import", loaded, &[], ca_path) {
            // the note goes on the key whose file is at fault (the certificate's, when the
            // pair does not match)
            let name = if e.path == Path::new(&private) {
                files[1]
            } else if Some(e.path.as_path()) == ca_path {
                "client_tls_ca_file"
            } else {
                files[0]
            };
            let why = format!("Strata can't load the file here ({}: {}): `strata check` and `strata run` refuse the listener until it loads; run the import where PgBouncer runs, or change the paths", e.path.display(), e.why);
            self.table
                .note(self.at(name), &format!("pgbouncer.{name}"), why);
        }
        match (mode, ca) {
            // a client in clear is taken too: Strata's default
            ("allow" | "prefer", _) => {}
            ("require", _) => self.table.key("tls_mode", quoted("require")),
            (other, Some(ca)) => {
                self.table.key("tls_mode", quoted("require"));
                self.table.key("tls_client_ca", quoted(&ca));
                if other == "verify-full" {
                    let why = "`verify-full` asks clients for a certificate signed by client_tls_ca_file, as `verify-ca` does: Strata's `tls_client_ca`; the certificate's names are not matched (PgBouncer matches one to the user only with auth_type = cert, which Strata does not take)";
                    self.table.note(at, key, why.into());
                }
            }
            (other, None) => {
                let why = match other {
                    "verify-ca" => "`verify-ca` without client_tls_ca_file: PgBouncer checks client certificates against the system's CA bundle: set tls_mode = \"require\", and tls_client_ca to that bundle to keep asking for certificates".to_string(),
                    _ => format!("`{other}` without client_tls_ca_file, where PgBouncer does not start: set tls_mode = \"require\", and tls_client_ca to ask for client certificates"),
                };
                self.keep(at, key, format!("tls_mode = {}", quoted(other)), why);
            }
        }
    }

    /// `server_tls_*`, from server_tls_sslmode and its files (PgBouncer's default, as
    /// Strata's, is `prefer`: TLS where the server offers it, its certificate unchecked).
    fn server_tls(&mut self, dir: &Path, routes: &[Route<'c, 'a>]) {
        let mode = self.choice("server_tls_sslmode", "prefer");
        let at = self.at("server_tls_sslmode");
        match mode {
            "prefer" => {}
            "allow" => {
                let why = "`allow` (TLS only where a server refuses a connection in clear) made \"prefer\": Strata asks for TLS first, and goes on in clear with a server that has none";
                self.table
                    .note(at, "pgbouncer.server_tls_sslmode", why.into());
                self.table.key("server_tls_mode", quoted("prefer"));
            }
            other => self.table.key("server_tls_mode", quoted(other)),
        }
        let verify = match mode {
            "disable" => None,
            "verify-ca" => Some(strata_net::tls::Verify::Chain),
            "verify-full" => Some(strata_net::tls::Verify::ChainAndName),
            _ => Some(strata_net::tls::Verify::Nothing),
        };
        let set = |l: &Self, name: &str| l.conf.get(name).is_some_and(|s| !s.value.text.is_empty());
        let checks = matches!(mode, "verify-ca" | "verify-full");
        let ca = match (set(self, "server_tls_ca_file"), checks) {
            (true, true) => self.absolute("server_tls_ca_file", dir),
            (true, false) => {
                let why = format!("not used while server_tls_sslmode = {mode}, as in PgBouncer: a server's certificate is checked with verify-ca and verify-full only");
                self.table.note(
                    self.at("server_tls_ca_file"),
                    "pgbouncer.server_tls_ca_file",
                    why,
                );
                None
            }
            (false, _) => None,
        };
        if let Some(ca) = &ca {
            self.table.key("server_tls_ca", quoted(ca));
        }
        let files = ["server_tls_cert_file", "server_tls_key_file"];
        let cert = match (set(self, files[0]), set(self, files[1]), mode) {
            (false, false, _) => None,
            (_, _, "disable") => {
                let given: Vec<&str> = files.into_iter().filter(|n| set(self, n)).collect();
                for name in given {
                    let why = "not used while server_tls_sslmode = disable, as in PgBouncer: Strata connects to the servers in clear";
                    self.table
                        .note(self.at(name), &format!("pgbouncer.{name}"), why.into());
                }
                None
            }
            (true, true, _) => {
                let cert = self.absolute(files[0], dir);
                let private = self.absolute(files[1], dir);
                cert.zip(private)
            }
            (cert, _, _) => {
                let (given, missing) = if cert {
                    (files[0], files[1])
                } else {
                    (files[1], files[0])
                };
                let why = format!("{NOT_TRANSLATED}: {given} without {missing}, where PgBouncer presents no certificate: Strata takes the pair (server_tls_cert and server_tls_key)");
                self.table
                    .note(self.at(given), &format!("pgbouncer.{given}"), why);
                None
            }
        };
        if let Some((cert, private)) = &cert {
            self.table.key("server_tls_cert", quoted(cert));
            self.table.key("server_tls_key", quoted(private));
        }
        if mode == "verify-full" {
            self.server_tls_name(routes);
        }
        // the files must load where Strata runs: say so here, on the key at fault
        let Some(verify) = verify else { return };
        let pair = cert.as_ref().map(|(c, k)| (Path::new(c), Path::new(k)));
        let ca_path = ca.as_deref().map(Path::new);
        if let Err(e) = strata_net::tls::client_config("import", verify, ca_path, pair, &[]) {
            let ca_file = ca_path.unwrap_or(Path::new(strata_net::tls::SYSTEM_CA));
            let name = if checks && e.path == ca_file {
                "server_tls_ca_file"
            } else if pair.is_some_and(|(_, k)| e.path == k) {
                files[1]
            } else {
                files[0]
            };
            let why = format!("Strata can't load the file here ({}: {}): `strata check` and `strata run` refuse the listener until it loads; run the import where PgBouncer runs, or change the paths", e.path.display(), e.why);
            self.table
                .note(self.at(name), &format!("pgbouncer.{name}"), why);
        }
    }

    /// `server_tls_name`, for verify-full: the host name PgBouncer checks each server's
    /// certificate against is its `host=`, where Strata dials IP addresses; one name all the
    /// servers' certificates carry is written, several are noted.
    fn server_tls_name(&mut self, routes: &[Route<'c, 'a>]) {
        let Some(route) = routes.first() else { return };
        let mut names: Vec<&str> = Vec::new();
        let mut literals = 0;
        if let Some(p) = route.entry.param("host") {
            for host in p.value.text.split(',').map(str::trim) {
                // (localhost is a name to verify-full, which PgBouncer checks as written)
                let literal = host.parse::<std::net::IpAddr>().is_ok()
                    || host.starts_with('/')
                    || host.starts_with('@');
                if literal {
                    literals += 1;
                } else if !host.is_empty() && !names.contains(&host) {
                    names.push(host);
                }
            }
        }
        let at = route.host_at();
        let key = format!("databases.{}.host", route.entry.name.text);
        match names.as_slice() {
            [] => {}
            [one] if literals == 0 => {
                let why = format!("verify-full checks the certificate against the host name {}, where Strata dials an IP address: written as server_tls_name", quoted(one));
                self.table.note(at, &key, why);
                self.table.key("server_tls_name", quoted(one));
            }
            several => {
                let why = format!("verify-full checks each server's certificate against its own host ({}, and an IP address against itself); Strata checks one name for every server (server_tls_name): set one the certificates all carry, or use verify-ca", several.join(", "));
                self.table.note(at, &key, why);
            }
        }
    }

    /// A timeout that 0 (PgBouncer's default) turns off in both, as `idle_transaction_timeout`
    /// and `client_idle_timeout`: written only when set.
    fn optional_seconds(&mut self, name: &str) {
        match self.conf.get(name).map(|s| &s.read) {
            Some(Value::Seconds(s)) if *s > 0.0 && s.is_finite() => {
                let _ = self.seconds(name, name, 0.0);
            }
            _ => {}
        }
    }

    /// `server_lifetime`, always written (an hour unless set, as in PgBouncer); its 0, where
    /// PgBouncer uses each server connection once, is the shortest lifetime Strata writes.
    fn server_lifetime(&mut self) -> (f64, String) {
        let name = "server_lifetime";
        match self.conf.get(name).map(|s| &s.read) {
            Some(Value::Seconds(s)) if s.is_infinite() => {
                let why = format!("{s} (no limit) made 0s, Strata's no limit here");
                self.noted(name, name, *s, "0s", why)
            }
            Some(Value::Seconds(s)) if *s == 0.0 => {
                let why = "0 (each server connection used once) made 1ms: a connection older than that is not used again";
                self.noted(name, name, 0.0, "1ms", why.into())
            }
            _ => self.seconds(name, name, 3600.0),
        }
    }

    /// The duration `strata` from the `[pgbouncer]` seconds `name` (`default` when unset), as
    /// Strata writes it; returns the seconds, and the duration written.
    fn seconds(&mut self, name: &str, strata: &str, default: f64) -> (f64, String) {
        let secs = match self.conf.get(name).map(|s| &s.read) {
            Some(Value::Seconds(s)) => *s,
            _ => default,
        };
        if secs == 0.0 || !secs.is_finite() {
            let why = format!("{secs} (no limit) made {NO_LIMIT}: Strata always has one");
            return self.noted(name, strata, secs, NO_LIMIT, why);
        }
        let (text, exact) = duration(secs);
        if !exact {
            let why = format!("{secs}s made {text}: to the millisecond");
            return self.noted(name, strata, secs, &text, why);
        }
        self.table.key(strata, quoted(&text));
        (secs, text)
    }

    /// Writes `strata` as the duration `text` where PgBouncer's `name` said `secs`, with a
    /// note on `name` saying `why` they differ; returns both.
    fn noted(
        &mut self,
        name: &str,
        strata: &str,
        secs: f64,
        text: &str,
        why: String,
    ) -> (f64, String) {
        self.table
            .note(self.at(name), &format!("pgbouncer.{name}"), why);
        self.table.key(strata, quoted(text));
        (secs, text.into())
    }

    /// Notes on what each database sets that the listener can't, and the databases kept as
    /// written: one on other servers, an alias of another database, a forced user. `routes`
    /// has the listener's first.
    fn databases(&mut self, routes: &[Route<'_, '_>]) {
        let Some(listener) = routes.first() else {
            return;
        };
        if !routes.iter().any(|r| r.entry.name.text == "*") {
            let at = self.conf.databases_at.unwrap_or(self.conf.main);
            let why = "Strata has no list of databases: a client may ask for any database on `servers` (pg_hba.conf and CONNECT privileges still decide), where PgBouncer refuses one not listed here";
            self.table.note(at, "databases", why.into());
        }
        let servers: Vec<&str> = listener.servers.iter().map(|s| s.text.as_str()).collect();
        let mut kept = Vec::new();
        for route in routes {
            let e = route.entry;
            let name = e.name.text.as_str();
            let key = |k: &str| format!("databases.{name}.{k}");
            let mut keeps = false;
            let asks = if name == "*" {
                "a database not listed".to_string()
            } else {
                format!("database {}", quoted(name))
            };
            if route.set != listener.set {
                let theirs: Vec<&str> = route.servers.iter().map(|s| s.text.as_str()).collect();
                let why = format!("{KEPT}: PgBouncer sends clients asking for {asks} to {}, and Strata sends every database to `servers` ({}): give it a [[database]] listener of its own, on another port, or delete this line to send its clients to `servers`", theirs.join(", "), servers.join(", "));
                self.table.note(route.host_at(), &key("host"), why);
                keeps = true;
            }
            if let Some(d) = e
                .param("dbname")
                .filter(|d| name == "*" || d.value.text != name)
            {
                let why = format!("{KEPT}: PgBouncer sends clients asking for {asks} to database {}; Strata asks the server for the database the client names: have the clients ask for {} (or rename the database), then delete this line", quoted(&d.value.text), quoted(&d.value.text));
                self.table.note(d.key.at, &key("dbname"), why);
                keeps = true;
            }
            match (e.param("user"), e.param("password")) {
                (Some(u), _) => {
                    let why = format!("{KEPT}: PgBouncer logs in to the server as {} for every client of {asks}; Strata logs in as the client's own user, so their queries would run as another role: give the clients that role's name and password (in auth_file), then delete this line", quoted(&u.value.text));
                    self.table.note(u.key.at, &key("user"), why);
                    keeps = true;
                }
                (None, Some(p)) => {
                    let why = format!("{NOT_TRANSLATED}: PgBouncer uses it only with `user=`");
                    self.table.note(p.key.at, &key("password"), why);
                }
                (None, None) => {}
            }
            for p in &e.params {
                if let Some(why) = self.param_why(&p.key.text, &p.value.text) {
                    let why = format!("{NOT_TRANSLATED}: {why}");
                    self.table.note(p.key.at, &key(&p.key.text), why);
                }
            }
            if keeps {
                let text = format!(
                    "{} = {}",
                    quoted(&format!("databases.{name}")),
                    quoted(&e.value.text)
                );
                kept.push(Line {
                    text,
                    kept: Some(e.name.at.line),
                });
            }
        }
        self.table.items.extend(kept.into_iter().map(Item::Key));
    }

    /// Why a `[databases]` parameter, other than where it sends clients, is not translated;
    /// `None` when the listener does the same.
    fn param_why(&self, key: &str, value: &str) -> Option<String> {
        let one = |what: &str| format!("Strata has one {what} for every database");
        match key {
            "host" | "port" | "dbname" | "user" | "password" => None,
            "pool_size" => (atoi(value) != self.pool_size)
                .then(|| format!("{}, {} (default_pool_size)", one("pool_size"), self.pool_size)),
            "pool_mode" => {
                let mode = value.to_ascii_lowercase();
                let then = match (mode.as_str(), self.pool_mode) {
                    (m, l) if m == l => return None,
                    ("session", "transaction") => ": this database's clients would lose what they set in their session (SET, advisory locks, LISTEN, temporary tables) between transactions",
                    ("transaction", "session") => ": this database's clients would each hold a server connection for as long as they stay connected",
                    ("statement", _) => ": Strata has no statement mode, and this database's clients may run transactions of several statements, which PgBouncer refused",
                    _ => "",
                };
                Some(format!("{}, {}{then}", one("pool_mode"), self.pool_mode))
            }
            "query_wait_timeout" => (atoi(value) as f64 != self.wait.0)
                .then(|| format!("{}, {}", one("query_wait_timeout"), self.wait.1)),
            "min_pool_size" => (atoi(value) != self.min_pool_size)
                .then(|| format!("{}, {}", one("min_pool_size"), self.min_pool_size)),
            // a database's 0 is "the global one" in PgBouncer
            "server_lifetime" => (atoi(value) != 0 && atoi(value) as f64 != self.lifetime.0)
                .then(|| format!("{}, {}", one("server_lifetime"), self.lifetime.1)),
            "load_balance_hosts" => Some("Strata picks among `servers` by their role: the primary, or a replica in turn for a READ ONLY transaction".into()),
            "reserve_pool" => settings::why("reserve_pool_size").map(String::from),
            // a lookup of the database's own: noted where it is not the one for all
            "auth_user" | "auth_query" | "auth_dbname" => (self.conf.get(key).map(|s| s.value.text.as_str()) != Some(value))
                .then(|| one(key)),
            "connect_query" => Some("Strata runs no query on a new server connection: a SET can be made the role's or the database's own (ALTER ROLE ... SET)".into()),
            "client_encoding" | "datestyle" | "timezone" | "application_name" => Some(format!("Strata asks the server for no parameter at login but those the client sent: make it the database's own (ALTER DATABASE ... SET {key} = ...), or set it in the clients")),
            other => settings::why(other).map(String::from),
        }
    }

    /// Notes on the `[pgbouncer]` keys with no `[[database]]` equivalent, `[users]` and
    /// `[peers]`.
    fn dropped(&mut self) {
        for s in &self.conf.settings {
            let key = format!("pgbouncer.{}", s.key.name);
            match s.key.treatment {
                Treatment::Translated => {}
                _ if s.key.same(&s.read) => {}
                Treatment::Process { why, .. } => {
                    let why = format!("{NOT_TRANSLATED}: {why}");
                    self.notes.push(Note::new(s.name.at, &key, why));
                }
                Treatment::Pool { why, .. } => {
                    self.table
                        .note(s.name.at, &key, format!("{NOT_TRANSLATED}: {why}"));
                }
            }
        }
        for u in &self.conf.users {
            let why = format!("{NOT_TRANSLATED}: Strata has no per-user settings (`{}`): the listener's apply to every user", u.value.text);
            self.table
                .note(u.name.at, &format!("users.{}", u.name.text), why);
        }
        for p in &self.conf.peers {
            let why = settings::why("peer_id").unwrap_or_default();
            self.notes.push(Note::new(
                p.name.at,
                &format!("peers.{}", p.name.text),
                format!("{NOT_TRANSLATED}: {why}"),
            ));
        }
    }
}

/// A listener that `strata check` refuses only for what `auth_file = path` and the lines added
/// after it make it refuse.
/// The most `max_server_connections` Strata takes.
const MAX_SERVER_CONNECTIONS: i64 = 100_000;

fn minimal(path: &str) -> String {
    format!(
        "[[database]]\nname = \"import\"\nlisten = \"127.0.0.1:0\"\nservers = [\"127.0.0.1:5432\"]\nauth_file = {}\n",
        quoted(path)
    )
}

/// What `strata check` says of the keys it refuses, without their names: `problems` are
/// `` `key`: why ``.
fn reasons(problems: &[String]) -> String {
    problems
        .iter()
        .map(|p| p.split_once("`: ").map_or(p.as_str(), |(_, why)| why))
        .collect::<Vec<_>>()
        .join("; ")
}

/// `secs` as a Strata duration, to the millisecond ("2s", "2500ms"), and whether it is exact.
fn duration(secs: f64) -> (String, bool) {
    let ms = (secs * 1000.0).round().max(1.0) as u64;
    let exact = (ms as f64 - secs * 1000.0).abs() < 1e-6;
    (super::duration(ms), exact)
}

#[cfg(test)]
mod tests;
