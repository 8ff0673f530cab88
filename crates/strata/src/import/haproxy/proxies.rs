//! The sections HAProxy makes proxies of (defaults, frontend, backend, listen): each with the
//! defaults it takes what it does not set from, its `bind` and `server` lines read word by word
//! as HAProxy reads them, and checked as HAProxy checks them where the translation depends on it
//! (names, modes, times, addresses, weights, the backends a frontend names).

use crate::import::{Note, Pos};

use super::address;
use super::cfg::{Cfg, Section, Statement, Word};
use super::time::Time;

/// `server` and `default-server` params that take a value.
const SERVER_ARGS: &[&str] = &[
    "addr",
    "agent-send",
    "agent-inter",
    "agent-addr",
    "agent-port",
    "alpn",
    "ca-file",
    "cc",
    "check-alpn",
    "check-pool-conn-name",
    "check-proto",
    "check-sni",
    "ciphers",
    "ciphersuites",
    "client-sigalgs",
    "cookie",
    "crl-file",
    "crt",
    "curves",
    "error-limit",
    "fall",
    "guid",
    "hash-key",
    "healthcheck",
    "id",
    "idle-ping",
    "init-addr",
    "inter",
    "fastinter",
    "downinter",
    "init-state",
    "ktls",
    "log-bufsize",
    "log-proto",
    "maxconn",
    "maxqueue",
    "max-reuse",
    "minconn",
    "namespace",
    "npn",
    "observe",
    "on-error",
    "on-marked-down",
    "on-marked-up",
    "pool-conn-name",
    "pool-low-conn",
    "pool-max-conn",
    "pool-purge-delay",
    "port",
    "proto",
    "quic-cc-algo",
    "redir",
    "rise",
    "resolve-opts",
    "resolve-prefer",
    "resolve-net",
    "resolvers",
    "proxy-v2-options",
    "shard",
    "sigalgs",
    "slowstart",
    "sni",
    "ssl-max-ver",
    "ssl-min-ver",
    "socks4",
    "tcp-md5sig",
    "tcp-ut",
    "track",
    "verify",
    "verifyhost",
    "weight",
    "ws",
];
/// `server` and `default-server` params that stand alone.
const SERVER_FLAGS: &[&str] = &[
    "agent-check",
    "allow-0rtt",
    "backup",
    "check",
    "check-reuse-pool",
    "check-send-proxy",
    "check-sni-auto",
    "check-ssl",
    "check-via-socks4",
    "disabled",
    "enabled",
    "force-sslv3",
    "force-tlsv10",
    "force-tlsv11",
    "force-tlsv12",
    "force-tlsv13",
    "no-agent-check",
    "no-backup",
    "no-check",
    "no-check-reuse-pool",
    "no-check-sni-auto",
    "no-check-ssl",
    "no-renegotiate",
    "no-send-proxy",
    "no-send-proxy-v2",
    "no-send-proxy-v2-ssl",
    "no-send-proxy-v2-ssl-cn",
    "no-sni-auto",
    "no-ssl",
    "no-ssl-reuse",
    "no-sslv3",
    "no-tls-tickets",
    "no-tlsv10",
    "no-tlsv11",
    "no-tlsv12",
    "no-tlsv13",
    "no-verifyhost",
    "no-tfo",
    "non-stick",
    "renegotiate",
    "send-proxy",
    "send-proxy-v2",
    "send-proxy-v2-ssl",
    "send-proxy-v2-ssl-cn",
    "sni-auto",
    "ssl",
    "ssl-reuse",
    "stick",
    "strict-maxconn",
    "tfo",
    "tls-tickets",
];
/// `bind` params that take a value.
const BIND_ARGS: &[&str] = &[
    "accept-netscaler-cip",
    "alpn",
    "backlog",
    "ca-file",
    "ca-ignore-err",
    "ca-sign-file",
    "ca-sign-pass",
    "ca-verify-file",
    "cc",
    "ciphers",
    "ciphersuites",
    "client-sigalgs",
    "crl-file",
    "crt",
    "crt-ignore-err",
    "crt-list",
    "default-crt",
    "curves",
    "ecdhe",
    "ech",
    "expose-fd",
    "gid",
    "group",
    "guid-prefix",
    "id",
    "idle-ping",
    "interface",
    "ktls",
    "label",
    "level",
    "maxconn",
    "mode",
    "mss",
    "name",
    "namespace",
    "nbconn",
    "nice",
    "npn",
    "proto",
    "quic-cc-algo",
    "quic-socket",
    "severity-output",
    "shards",
    "sigalgs",
    "ssl-max-ver",
    "ssl-min-ver",
    "tcp-md5sig",
    "tcp-ss",
    "tcp-ut",
    "thread",
    "tls-ticket-keys",
    "uid",
    "user",
    "verify",
];
/// `bind` params that stand alone.
const BIND_FLAGS: &[&str] = &[
    "accept-proxy",
    "allow-0rtt",
    "defer-accept",
    "force-sslv3",
    "force-tlsv10",
    "force-tlsv11",
    "force-tlsv12",
    "force-tlsv13",
    "generate-certificates",
    "no-alpn",
    "no-ca-names",
    "no-sslv3",
    "no-strict-sni",
    "no-tls-tickets",
    "no-tlsv10",
    "no-tlsv11",
    "no-tlsv12",
    "no-tlsv13",
    "prefer-client-ciphers",
    "quic-force-retry",
    "ssl",
    "strict-sni",
    "tfo",
    "tls-tickets",
    "transparent",
    "v4v6",
    "v6only",
];
/// HAProxy's timeouts.
const TIMEOUTS: &[&str] = &[
    "client",
    "client-fin",
    "client-hs",
    "connect",
    "check",
    "http-keep-alive",
    "http-request",
    "queue",
    "server",
    "server-fin",
    "tarpit",
    "tunnel",
];
/// HAProxy's `balance` algorithms; `hdr`, `random` and `rdp-cookie` may take an argument in
/// parentheses.
const BALANCE: &[&str] = &[
    "roundrobin",
    "static-rr",
    "leastconn",
    "first",
    "hash",
    "source",
    "uri",
    "url_param",
    "hdr",
    "random",
    "rdp-cookie",
    "log-hash",
    "sticky",
];

/// What a section makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Defaults,
    Frontend,
    Backend,
    Listen,
}

impl Kind {
    /// Whether it takes clients (`bind`).
    pub(super) fn accepts(self) -> bool {
        matches!(self, Kind::Frontend | Kind::Listen)
    }

    /// Whether it has servers.
    pub(super) fn serves(self) -> bool {
        matches!(self, Kind::Backend | Kind::Listen)
    }
}

/// `mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    Tcp,
    Http,
}

/// One param of a `server`, `default-server` or `bind` line (`check`, `inter 2s`), as HAProxy
/// calls what follows the address, and its values.
#[derive(Debug, Clone, Copy)]
pub(super) struct Param<'a> {
    pub(super) word: &'a Word,
    pub(super) args: &'a [Word],
    /// The line it is on.
    pub(super) statement: &'a Statement,
}

impl Param<'_> {
    pub(super) fn name(&self) -> &str {
        &self.word.text
    }

    /// Its first value, or "".
    pub(super) fn value(&self) -> &str {
        self.args.first().map_or("", |w| w.text.as_str())
    }

    /// As written: `inter 2s`.
    pub(super) fn text(&self) -> String {
        std::iter::once(self.word)
            .chain(self.args)
            .map(|w| w.text.as_str())
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// A `bind` line: its addresses and params.
#[derive(Debug)]
pub(super) struct Bind<'a> {
    pub(super) statement: &'a Statement,
    /// Each address of its list, as written and as read.
    pub(super) addresses: Vec<(String, address::Bind)>,
    pub(super) params: Vec<Param<'a>>,
}

/// A `server` line.
#[derive(Debug)]
pub(super) struct Server<'a> {
    pub(super) statement: &'a Statement,
    pub(super) name: &'a Word,
    pub(super) address: &'a Word,
    pub(super) addr: address::Server,
    /// Its own params; those of `default-server` lines come before them (`Conf::params`).
    pub(super) params: Vec<Param<'a>>,
}

/// A `timeout` line.
#[derive(Debug, Clone, Copy)]
pub(super) struct Timeout<'a> {
    pub(super) time: Time,
    pub(super) statement: &'a Statement,
}

/// A section HAProxy makes a proxy of.
#[derive(Debug)]
pub(super) struct Proxy<'a> {
    pub(super) kind: Kind,
    pub(super) section: &'a Section,
    /// Defaults may have none.
    pub(super) name: Option<&'a Word>,
    /// The defaults it takes what it does not set from: those named after `from`, or else
    /// the last before it.
    pub(super) defaults: Option<usize>,
    pub(super) binds: Vec<Bind<'a>>,
    pub(super) servers: Vec<Server<'a>>,
    /// Its own `default-server` params, in order.
    pub(super) default_server: Vec<Param<'a>>,
}

impl<'a> Proxy<'a> {
    /// Its name, or its kind when it has none (a `defaults`), as notes name it.
    pub(super) fn label(&self) -> &'a str {
        self.name.map_or(self.section.kind(), |w| w.text.as_str())
    }

    /// A note key for `s`, one of its statements: `web.timeout client`.
    pub(super) fn key(&self, s: &Statement) -> String {
        format!("{}.{}", self.label(), s.key())
    }

    pub(super) fn at(&self) -> Pos {
        self.section.at()
    }

    /// Its own last statement that sets `setting`.
    pub(super) fn own(&self, setting: &str) -> Option<&'a Statement> {
        self.section
            .statements
            .iter()
            .rev()
            .find(|s| s.setting() == setting)
    }

    /// Its own statements whose keyword is `keyword`, in order.
    pub(super) fn all(&self, keyword: &'a str) -> impl Iterator<Item = &'a Statement> + 'a {
        self.section
            .statements
            .iter()
            .filter(move |s| s.keyword() == keyword)
    }
}

/// The global section's statements and the proxies, read as HAProxy reads them.
#[derive(Debug)]
pub(super) struct Conf<'a> {
    pub(super) global: Vec<&'a Statement>,
    pub(super) proxies: Vec<Proxy<'a>>,
    /// Sections with nothing to translate (`userlist`, `peers`, `cache`...).
    pub(super) others: Vec<&'a Section>,
}

impl<'a> Conf<'a> {
    /// Reads the sections of `cfg`; on failure, everything in them HAProxy would refuse.
    pub(super) fn read(cfg: &'a Cfg) -> Result<Conf<'a>, Vec<Note>> {
        let mut errors = Vec::new();
        let mut conf = Conf {
            global: Vec::new(),
            proxies: Vec::new(),
            others: Vec::new(),
        };
        let mut last_defaults = None;
        for section in &cfg.sections {
            let kind = match section.kind() {
                "global" => {
                    conf.global.extend(&section.statements);
                    continue;
                }
                "defaults" => Kind::Defaults,
                "frontend" => Kind::Frontend,
                "backend" => Kind::Backend,
                "listen" => Kind::Listen,
                _ => {
                    conf.others.push(section);
                    continue;
                }
            };
            let (name, from) = conf.head(section, kind, &mut errors);
            // a defaults section starts anew, but for what its `from` names
            let defaults = match kind {
                Kind::Defaults => from,
                _ => from.or(last_defaults),
            };
            let mut proxy = Proxy {
                kind,
                section,
                name,
                defaults,
                binds: Vec::new(),
                servers: Vec::new(),
                default_server: Vec::new(),
            };
            read_statements(&mut proxy, &mut errors);
            if kind == Kind::Defaults {
                last_defaults = Some(conf.proxies.len());
            }
            conf.proxies.push(proxy);
        }
        conf.check_names(&mut errors);
        conf.check_backends(&mut errors);
        conf.check_servers(&mut errors);
        if conf.proxies.iter().all(|p| !p.kind.accepts()) {
            errors.push(Note::new(
                Pos { line: 1, column: 1 },
                "",
                "no frontend or listen section: HAProxy has nothing to listen on (\"no listener\"), and there is nothing to translate",
            ));
        }
        if errors.is_empty() {
            Ok(conf)
        } else {
            errors.sort_by_key(|e| e.at);
            Err(errors)
        }
    }

    /// A section line's name and the defaults its `from` names, checked as HAProxy checks them.
    fn head(
        &self,
        section: &'a Section,
        kind: Kind,
        errors: &mut Vec<Note>,
    ) -> (Option<&'a Word>, Option<usize>) {
        let head = &section.head;
        let what = section.kind();
        let mut args = head.args();
        let mut from = None;
        if let [rest @ .., keyword, origin] = args {
            if keyword.text == "from" {
                args = rest;
                from = Some(origin);
            }
        }
        if let [keyword] = args {
            if keyword.text == "from" {
                errors.push(Note::new(
                    keyword.at,
                    what,
                    "`from` needs the name of a defaults section after it",
                ));
            }
        }
        let name = match args {
            [] if kind != Kind::Defaults => {
                let why = format!("HAProxy needs a name after `{what}`");
                errors.push(Note::new(head.at(), what, why));
                None
            }
            [] => None,
            [name] => {
                if let Some(c) = name
                    .text
                    .chars()
                    .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':')))
                {
                    let why = format!("{c:?} is not a character HAProxy takes in a name (letters, digits, `-`, `_`, `.` and `:`)");
                    errors.push(Note::new(name.at, &name.text, why));
                }
                Some(name)
            }
            [_, extra, ..] => {
                let why = format!("HAProxy takes only a name, and `from` a defaults section, after `{what}`: an address goes on a `bind` line");
                errors.push(Note::new(extra.at, what, why));
                args.first()
            }
        };
        let from = from.and_then(|origin| {
            let found = self.proxies.iter().rposition(|p| {
                p.kind == Kind::Defaults && p.name.is_some_and(|n| n.text == origin.text)
            });
            if found.is_none() {
                let why = format!(
                    "no defaults section named {:?} before it, which HAProxy refuses",
                    origin.text
                );
                errors.push(Note::new(origin.at, what, why));
            }
            found
        });
        (name, from)
    }

    /// Two frontends (or two backends) with one name, which HAProxy refuses.
    fn check_names(&self, errors: &mut Vec<Note>) {
        for (i, p) in self.proxies.iter().enumerate() {
            let Some(name) = p.name else { continue };
            let clash = self.proxies[..i].iter().find(|q| {
                q.name.is_some_and(|n| n.text == name.text)
                    && ((p.kind.accepts() && q.kind.accepts())
                        || (p.kind.serves() && q.kind.serves())
                        || (p.kind == Kind::Defaults && q.kind == Kind::Defaults))
            });
            if let Some(first) = clash {
                let why = format!(
                    "{} {:?} is on line {} already, which HAProxy refuses",
                    first.section.kind(),
                    name.text,
                    first.at().line
                );
                errors.push(Note::new(name.at, &name.text, why));
            }
        }
    }

    /// `default_backend` and `use_backend` naming a backend that is not there, or one whose mode
    /// the frontend can't use.
    fn check_backends(&self, errors: &mut Vec<Note>) {
        for (i, p) in self.proxies.iter().enumerate() {
            let lines = p
                .all("default_backend")
                .chain(p.all("use_backend"))
                .filter(|_| p.kind.accepts() || p.kind == Kind::Defaults);
            for s in lines {
                let Some(target) = s.arg(0) else {
                    let why = format!("`{}` needs the name of a backend", s.keyword());
                    errors.push(Note::new(s.at(), &p.key(s), why));
                    continue;
                };
                if target.text.contains("%[") || p.kind == Kind::Defaults {
                    continue;
                }
                match self.backend(&target.text) {
                    None => {
                        let why = format!(
                            "no backend or listen section is named {:?}, which HAProxy refuses",
                            target.text
                        );
                        errors.push(Note::new(target.at, &p.key(s), why));
                    }
                    Some(b) if self.mode(i) == Mode::Http && self.mode(b) == Mode::Tcp => {
                        let why = format!("an HTTP frontend can't use the TCP backend {:?} (see `mode`), which HAProxy refuses", target.text);
                        errors.push(Note::new(target.at, &p.key(s), why));
                    }
                    Some(_) => {}
                }
            }
        }
    }

    /// A server HAProxy would refuse: one name twice in a backend, or a check with no port.
    fn check_servers(&self, errors: &mut Vec<Note>) {
        for (i, p) in self.proxies.iter().enumerate() {
            for (j, server) in p.servers.iter().enumerate() {
                let key = p.key(server.statement);
                if let Some(first) = p.servers[..j]
                    .iter()
                    .find(|s| s.name.text == server.name.text)
                {
                    let why = format!(
                        "a server named {:?} is on line {} already, which HAProxy refuses",
                        server.name.text,
                        first.statement.at().line
                    );
                    errors.push(Note::new(server.name.at, &key, why));
                }
                let params = self.params(i, server);
                let checked = last_flag(&params, "check", "no-check");
                let check_port = params.iter().rev().find(|o| o.name() == "port");
                let no_port = matches!(
                    server.addr,
                    address::Server::Tcp {
                        port: address::Port::Same | address::Port::Offset(_),
                        ..
                    }
                );
                if checked && no_port && check_port.is_none() {
                    let why = "`check` on a server with no port of its own nor a `port` to check: HAProxy refuses it (\"has neither service port nor check port\")";
                    errors.push(Note::new(server.address.at, &key, why));
                }
            }
        }
    }

    /// A note key for `s`, a statement of a proxy or of `global`: `web.timeout client`.
    pub(super) fn key(&self, s: &Statement) -> String {
        let owner = self
            .proxies
            .iter()
            .find(|p| p.section.statements.iter().any(|t| std::ptr::eq(t, s)));
        match owner {
            Some(p) => p.key(s),
            None => format!("global.{}", s.key()),
        }
    }

    /// The backend or listen section named `name`.
    pub(super) fn backend(&self, name: &str) -> Option<usize> {
        self.proxies
            .iter()
            .position(|p| p.kind.serves() && p.name.is_some_and(|n| n.text == name))
    }

    /// What `get` finds in proxy `i`, or else in its defaults, or theirs.
    pub(super) fn inherited<T>(
        &self,
        i: usize,
        get: impl Fn(&Proxy<'a>) -> Option<T>,
    ) -> Option<T> {
        let mut at = Some(i);
        // a chain of `from` can't loop: each names a defaults section before it
        while let Some(j) = at {
            let p = &self.proxies[j];
            if let Some(found) = get(p) {
                return Some(found);
            }
            at = p.defaults;
        }
        None
    }

    /// The last statement that sets `setting` in proxy `i` or its defaults.
    pub(super) fn get(&self, i: usize, setting: &str) -> Option<&'a Statement> {
        self.inherited(i, |p| p.own(setting))
    }

    /// Whether `option NAME` is on in proxy `i` (or its defaults), and the line that says so.
    pub(super) fn option(&self, i: usize, name: &str) -> Option<(bool, &'a Statement)> {
        let on = format!("option {name}");
        let off = format!("no option {name}");
        self.inherited(i, |p| {
            p.section
                .statements
                .iter()
                .rev()
                .find(|s| s.setting() == on || s.setting() == off)
                .map(|s| (s.keyword() == "option", s))
        })
    }

    /// The `disabled` line that keeps HAProxy from starting proxy `i`: its own last `disabled`
    /// or `enabled`, or else its defaults'.
    pub(super) fn disabled(&self, i: usize) -> Option<&'a Statement> {
        self.inherited(i, |p| {
            p.section
                .statements
                .iter()
                .rev()
                .find(|s| matches!(s.keyword(), "disabled" | "enabled"))
        })
        .filter(|s| s.keyword() == "disabled")
    }

    /// `mode`: HAProxy's default is tcp.
    pub(super) fn mode(&self, i: usize) -> Mode {
        match self.get(i, "mode").map(|s| s.text(0)) {
            Some("http") => Mode::Http,
            _ => Mode::Tcp,
        }
    }

    /// `timeout NAME` in proxy `i` or its defaults (0 is HAProxy's "no limit").
    pub(super) fn timeout(&self, i: usize, name: &str) -> Option<Timeout<'a>> {
        let s = self.get(i, &format!("timeout {name}"))?;
        let time = Time::parse(s.text(1)).ok()?;
        Some(Timeout { time, statement: s })
    }

    /// The params of `server` in proxy `i`: those of the `default-server` lines before it, of
    /// its defaults (the outermost first) then its own, then the server's; a later one of a
    /// name sets what an earlier one did.
    ///
    /// HAProxy copies the `default-server` settings into a server as it reads the server's
    /// line: a `default-server` line after it sets nothing of it.
    pub(super) fn params(&self, i: usize, server: &Server<'a>) -> Vec<Param<'a>> {
        let mut chain = Vec::new();
        let mut at = Some(i);
        while let Some(j) = at {
            chain.push(j);
            at = self.proxies[j].defaults;
        }
        // a defaults section is before the proxies that take from it, so the file's order is
        // HAProxy's
        let before = server.statement.at();
        let mut params: Vec<Param<'a>> = chain
            .iter()
            .rev()
            .flat_map(|&j| self.proxies[j].default_server.iter().copied())
            .filter(|o| o.statement.at() < before)
            .collect();
        params.extend(server.params.iter().copied());
        params
    }
}

/// Whether the last of `on` and `off` among `params` is `on`.
pub(super) fn last_flag(params: &[Param<'_>], on: &str, off: &str) -> bool {
    params
        .iter()
        .rev()
        .find(|o| o.name() == on || o.name() == off)
        .is_some_and(|o| o.name() == on)
}

/// Reads what the translation depends on in `p`'s statements, as HAProxy reads it.
fn read_statements<'a>(p: &mut Proxy<'a>, errors: &mut Vec<Note>) {
    let section: &'a Section = p.section;
    for s in &section.statements {
        let key = p.key(s);
        let mut fail = |at: Pos, why: String| errors.push(Note::new(at, &key, why));
        match s.keyword() {
            "mode" => match s.text(0) {
                "tcp" | "http" => {}
                other => fail(
                    s.arg(0).map_or(s.at(), |w| w.at),
                    format!("{other:?} is not a mode HAProxy has for a proxy (tcp or http)"),
                ),
            },
            "timeout" => {
                let name = s.text(0);
                if !TIMEOUTS.contains(&name) {
                    let why = format!(
                        "HAProxy has no timeout {name:?} (it has {})",
                        TIMEOUTS.join(", ")
                    );
                    fail(s.at(), why);
                } else if let Err(why) = Time::parse(s.text(1)) {
                    fail(s.arg(1).map_or(s.at(), |w| w.at), why);
                }
            }
            "balance" => {
                let algorithm = s.text(0);
                let name = algorithm.split('(').next().unwrap_or("");
                if !BALANCE.contains(&name) {
                    let why = format!(
                        "{algorithm:?} is not a balance algorithm HAProxy has ({})",
                        BALANCE.join(", ")
                    );
                    fail(s.arg(0).map_or(s.at(), |w| w.at), why);
                }
            }
            "maxconn" | "retries" if s.text(0).parse::<u32>().is_err() => {
                let why = format!("{:?} is not a whole number", s.text(0));
                fail(s.arg(0).map_or(s.at(), |w| w.at), why);
            }
            "bind" | "server" if !fits(s.keyword(), p.kind) => {
                let takes = match s.keyword() {
                    "bind" => "a frontend or listen",
                    _ => "a backend or listen",
                };
                let why = format!(
                    "HAProxy takes `{}` in {takes} section, not in {}",
                    s.keyword(),
                    section.kind()
                );
                fail(s.at(), why);
            }
            "bind" => match bind(s) {
                Ok(b) => p.binds.push(b),
                Err((at, why)) => fail(at, why),
            },
            "server" => match server(s) {
                Ok(server) => p.servers.push(server),
                Err((at, why)) => fail(at, why),
            },
            "default-server" => match params(s, s.args(), SERVER_ARGS, SERVER_FLAGS, "server") {
                Ok(params) => p.default_server.extend(params),
                Err((at, why)) => fail(at, why),
            },
            _ => {}
        }
    }
}

/// Whether a section of `kind` takes `keyword` (`bind` or `server`).
fn fits(keyword: &str, kind: Kind) -> bool {
    match keyword {
        "bind" => kind.accepts(),
        _ => kind.serves(),
    }
}

/// A `bind` line.
fn bind(s: &Statement) -> Result<Bind<'_>, (Pos, String)> {
    let Some(list) = s.arg(0) else {
        return Err((s.at(), "`bind` needs an address".into()));
    };
    let mut addresses = Vec::new();
    for text in list.text.split(',') {
        let addr = address::bind(text).map_err(|why| (list.at, why))?;
        addresses.push((text.to_string(), addr));
    }
    let params = params(s, &s.args()[1..], BIND_ARGS, BIND_FLAGS, "bind")?;
    Ok(Bind {
        statement: s,
        addresses,
        params,
    })
}

/// A `server` line, its values checked as HAProxy checks them.
fn server(s: &Statement) -> Result<Server<'_>, (Pos, String)> {
    let (Some(name), Some(address)) = (s.arg(0), s.arg(1)) else {
        return Err((s.at(), "`server` needs a name and an address".into()));
    };
    let addr = address::server(&address.text).map_err(|why| (address.at, why))?;
    let params = params(s, &s.args()[2..], SERVER_ARGS, SERVER_FLAGS, "server")?;
    Ok(Server {
        statement: s,
        name,
        address,
        addr,
        params,
    })
}

/// The params in `words`, each with its values, the ones HAProxy checks checked.
fn params<'a>(
    s: &'a Statement,
    words: &'a [Word],
    with_value: &[&str],
    flags: &[&str],
    what: &str,
) -> Result<Vec<Param<'a>>, (Pos, String)> {
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(word) = words.get(i) {
        let name = word.text.as_str();
        let takes = if flags.contains(&name) {
            0
        } else if with_value.contains(&name) {
            1
        } else if what == "server" && name == "source" {
            // source ADDR [usesrc ADDR] [interface NAME]
            let mut n = 1;
            while matches!(
                words.get(i + n + 1).map(|w| w.text.as_str()),
                Some("usesrc" | "interface")
            ) {
                n += 2;
            }
            n
        } else {
            let why = format!("HAProxy has no {what} option `{name}`, and refuses the line");
            return Err((word.at, why));
        };
        let Some(args) = words.get(i + 1..=i + takes) else {
            return Err((word.at, format!("`{name}` needs a value after it")));
        };
        let opt = Param {
            word,
            args,
            statement: s,
        };
        check_value(&opt)?;
        out.push(opt);
        i += 1 + takes;
    }
    Ok(out)
}

/// The values HAProxy checks of the params the translation reads.
fn check_value(o: &Param<'_>) -> Result<(), (Pos, String)> {
    let value = o.value();
    let at = o.args.first().map_or(o.word.at, |w| w.at);
    let number = |range: std::ops::RangeInclusive<u32>| {
        value
            .parse::<u32>()
            .ok()
            .filter(|n| range.contains(n))
            .is_some()
    };
    let why = match o.name() {
        "weight" if !number(0..=256) => format!("{value:?} is not a weight (0 to 256)"),
        "rise" | "fall" if !number(1..=u32::MAX) => {
            format!("{value:?}: `{}` is a whole number above 0", o.name())
        }
        "port" if o.statement.keyword() != "bind" && !number(1..=65535) => {
            format!("{value:?} is not a port")
        }
        "maxconn" if !number(0..=u32::MAX) => format!("{value:?} is not a whole number"),
        "inter" | "fastinter" | "downinter" | "slowstart" => match Time::parse(value) {
            Ok(t) if t.ms() == 0 && o.name() != "slowstart" => {
                format!("`{}` can't be 0", o.name())
            }
            Ok(_) => return Ok(()),
            Err(why) => why,
        },
        _ => return Ok(()),
    };
    Err((at, why))
}
