//! A backend's part of a listener: its servers as `backends`, `balance`, `health`, `passive`,
//! `retries`, `slow_start` and `backend_protocol`, with the notes on what of it Strata can't do.
//! Where HAProxy's default differs from Strata's, HAProxy's is written.

use std::collections::HashMap;

use crate::import::{quoted, Item, Line, Note, Pos, Table, KEPT, NOT_TRANSLATED};

use super::address::{self, Host};
use super::cfg::Statement;
use super::dropped::{params_note, server_param_why};
use super::proxies::{last_flag, Conf, Mode, Param, Proxy, Server};
use super::time::Time;

/// The server params the translation reads.
const READ: &[&str] = &[
    "check",
    "no-check",
    "backup",
    "no-backup",
    "disabled",
    "enabled",
    "weight",
    "maxconn",
    "inter",
    "rise",
    "fall",
    "slowstart",
    "ssl",
    "no-ssl",
    "send-proxy",
    "send-proxy-v2",
    "send-proxy-v2-ssl",
    "send-proxy-v2-ssl-cn",
    "no-send-proxy",
    "no-send-proxy-v2",
    "no-send-proxy-v2-ssl",
    "no-send-proxy-v2-ssl-cn",
    "proto",
];
/// HAProxy's check timing when a server does not set it: `inter 2s`, `rise 2`, `fall 3`.
const INTER: &str = "2s";
const RISE: u32 = 2;
const FALL: u32 = 3;
/// The most `rise` and `fall` Strata takes.
const MAX_RISE_FALL: u32 = 100;
/// HAProxy's `retries` when a backend does not set it.
const RETRIES: u32 = 3;
/// The most `retries` Strata takes.
const MAX_RETRIES: u32 = 10;
/// The statuses Strata's HTTP check can expect.
const STATUSES: std::ops::RangeInclusive<u16> = 100..=599;

/// Why HAProxy sends a server no traffic (while another is up).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Idle {
    Disabled,
    Weightless,
    Backup,
    /// A backup after the first, without `option allbackups`.
    LaterBackup,
}

impl Idle {
    fn why(self) -> String {
        match self {
            Idle::Disabled => format!("`disabled` {NOT_TRANSLATED}: HAProxy starts the server in maintenance, sending it no traffic, so it is left out of `backends` (Strata drains a backend through the admin API: `POST /backends/...`)"),
            Idle::Weightless => format!("`weight 0` {NOT_TRANSLATED}: HAProxy sends the server no traffic, so it is left out of `backends` (Strata weighs a backend 1 to 256)"),
            Idle::Backup => format!("`backup` {NOT_TRANSLATED}: Strata has no backup servers, so it is left out of `backends`; HAProxy sends it traffic only when every other server is down, where Strata answers 503"),
            Idle::LaterBackup => format!("`backup` {NOT_TRANSLATED}: without `option allbackups` HAProxy sends traffic to the first backup only, and to this one when the backups before it are down; Strata has no backup servers, so it is left out of `backends`"),
        }
    }
}

/// A server with the params it ends up with, `default-server` lines included.
struct Member<'c, 'a> {
    server: &'c Server<'a>,
    params: Vec<Param<'a>>,
    check: bool,
    idle: Option<Idle>,
    weight: u32,
    /// Its `maxconn` (0: no limit), as Strata takes it.
    max_conns: u32,
    /// `ssl`, `send-proxy` or `send-proxy-v2`: what HAProxy speaks to it that Strata does not.
    speaks: Vec<&'static str>,
}

impl<'a> Member<'_, 'a> {
    /// The last option named `name`.
    fn option(&self, name: &str) -> Option<&Param<'a>> {
        self.params.iter().rev().find(|o| o.name() == name)
    }

    fn name(&self) -> &str {
        &self.server.name.text
    }

    /// Whether HAProxy sends it traffic.
    fn served(&self) -> bool {
        self.idle.is_none()
    }

    /// How HAProxy checks it: `inter`, `rise` and `fall`, its own or HAProxy's defaults (each
    /// value as HAProxy reads it, checked when the file was read).
    fn timing(&self) -> Timing<'a> {
        let count = |name: &str, default: u32| {
            let param = self.option(name).copied();
            let n = param.map_or(default, |o| o.value().parse().unwrap_or(default));
            (n, param)
        };
        let inter = self
            .option("inter")
            .and_then(|o| Time::parse(o.value()).ok());
        Timing {
            inter: inter.map_or(INTER.to_string(), Time::strata),
            rise: count("rise", RISE),
            fall: count("fall", FALL),
        }
    }
}

/// How HAProxy checks a server: `inter` as Strata writes it, and `rise` and `fall` with the
/// param that sets each, if one does.
struct Timing<'a> {
    inter: String,
    rise: (u32, Option<Param<'a>>),
    fall: (u32, Option<Param<'a>>),
}

impl Timing<'_> {
    /// Whether it checks as `other` does.
    fn same(&self, other: &Timing<'_>) -> bool {
        (&self.inter, self.rise.0, self.fall.0) == (&other.inter, other.rise.0, other.fall.0)
    }
}

impl std::fmt::Display for Timing<'_> {
    /// `inter 2s rise 2 fall 3`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "inter {} rise {} fall {}",
            self.inter, self.rise.0, self.fall.0
        )
    }
}

/// A backend (or listen section) as the listeners in front of it use it.
pub(super) struct Upstream<'c, 'a> {
    conf: &'c Conf<'a>,
    /// Which proxy it is.
    pub(super) index: usize,
    proxy: &'c Proxy<'a>,
    mode: Mode,
    members: Vec<Member<'c, 'a>>,
    /// The keys after `backends`, in order.
    keys: Vec<(&'static str, String)>,
    /// About the backend, whatever port a listener has.
    pub(super) notes: Vec<Note>,
}

impl<'c, 'a> Upstream<'c, 'a> {
    /// Proxy `index` used by a listener in `mode`.
    pub(super) fn new(conf: &'c Conf<'a>, index: usize, mode: Mode) -> Upstream<'c, 'a> {
        let proxy = &conf.proxies[index];
        let mut up = Upstream {
            conf,
            index,
            proxy,
            mode,
            members: Vec::new(),
            keys: Vec::new(),
            notes: Vec::new(),
        };
        up.members = proxy
            .servers
            .iter()
            .map(|s| Member::new(conf, index, s))
            .collect();
        if up.members.iter().all(|m| m.idle.is_some()) {
            // with no other server, HAProxy sends the backups traffic: the first one, or all
            // of them with `option allbackups`
            let all = matches!(conf.option(index, "allbackups"), Some((true, _)));
            let mut first = true;
            for m in &mut up.members {
                if m.idle == Some(Idle::Backup) {
                    m.idle = (!all && !first).then_some(Idle::LaterBackup);
                    first = false;
                }
            }
        }
        for m in &up.members {
            if let Some(idle) = m.idle {
                let s = m.server.statement;
                up.notes.push(Note::new(s.at(), &proxy.key(s), idle.why()));
            }
        }
        up.param_notes();
        up.balance();
        up.health();
        up.passive();
        up.retries();
        up.slow_start();
        up.protocol();
        up
    }

    /// Notes on the params of servers and `default-server` lines Strata has no place for:
    /// one a line, on the line.
    fn param_notes(&mut self) {
        let mut lines: Vec<(&'c Proxy<'a>, &'c [Param<'a>])> = Vec::new();
        let mut at = Some(self.index);
        while let Some(j) = at {
            let p = &self.conf.proxies[j];
            lines.extend(
                p.default_server
                    .chunk_by(|a, b| std::ptr::eq(a.statement, b.statement))
                    .map(|o| (p, o)),
            );
            at = p.defaults;
        }
        for server in &self.proxy.servers {
            lines.push((self.proxy, &server.params));
        }
        for (p, params) in lines {
            let dropped: Vec<&Param<'a>> = params
                .iter()
                .filter(|o| !READ.contains(&o.name()))
                .collect();
            if let Some(first) = dropped.first() {
                let key = p.key(first.statement);
                self.notes
                    .extend(params_note(&key, &dropped, server_param_why));
            }
        }
    }

    /// A note on `s`, a line of the backend or of its defaults.
    fn note(&mut self, s: &Statement, why: String) {
        self.notes.push(Note::new(s.at(), &self.conf.key(s), why));
    }

    /// `balance`, and `hash_key` with it.
    fn balance(&mut self) {
        let Some(s) = self.conf.get(self.index, "balance") else {
            self.keys.push(("balance", quoted("round_robin")));
            return;
        };
        let algorithm = s.text(0);
        let (name, argument) = match algorithm.split_once('(') {
            Some((name, rest)) => (name, rest.strip_suffix(')').unwrap_or(rest)),
            None => (algorithm, ""),
        };
        let instead = "round_robin is written, HAProxy's default";
        let balance = match name {
            "roundrobin" | "static-rr" => "round_robin",
            "leastconn" => "least_conn",
            "source" => "ip_hash",
            "random" => {
                if !argument.is_empty() && argument != "2" {
                    let why = format!("made random_two: Strata draws two backends and takes the one with fewer requests in flight, where HAProxy draws {argument}");
                    self.note(s, why);
                }
                "random_two"
            }
            "hdr" if self.mode == Mode::Http && !argument.is_empty() => {
                if s.args().len() > 1 {
                    let why = format!(
                        "`{}` {NOT_TRANSLATED}: Strata hashes the whole header",
                        s.joined(2)
                    );
                    self.note(s, why);
                }
                self.keys.push(("balance", quoted("hash")));
                self.keys
                    .push(("hash_key", quoted(&format!("header:{argument}"))));
                return;
            }
            "hdr" => {
                let why = format!("{NOT_TRANSLATED}: a TCP listener has no headers to hash (HAProxy goes round robin too); {instead}");
                self.note(s, why);
                "round_robin"
            }
            _ => {
                let why = format!("`{algorithm}` {NOT_TRANSLATED}: Strata balances by round robin, least connections, client IP, two random choices, or a header or cookie; {instead}");
                self.note(s, why);
                "round_robin"
            }
        };
        self.keys.push(("balance", quoted(balance)));
    }

    /// `health`: checks when a server has `check`, timed as the first of them is.
    fn health(&mut self) {
        let httpchk = self
            .conf
            .option(self.index, "httpchk")
            .filter(|(on, _)| *on);
        let checked: Vec<usize> = (0..self.members.len())
            .filter(|&i| self.members[i].check)
            .collect();
        let Some(&first) = checked.first() else {
            if let Some((_, s)) = httpchk {
                let why = format!("{NOT_TRANSLATED}: no server has `check`, so HAProxy checks none, and no `health` is written");
                self.note(s, why);
            }
            return;
        };
        let unchecked: Vec<&str> = self
            .members
            .iter()
            .filter(|m| !m.check && m.idle.is_none())
            .map(Member::name)
            .collect();
        if !unchecked.is_empty() {
            let why = format!(
                "Strata checks every backend, where HAProxy checks only the servers with `check` (not {})",
                unchecked.join(", ")
            );
            self.notes
                .push(Note::new(self.proxy.at(), self.proxy.label(), why));
        }
        let lead = &self.members[first];
        let timing = lead.timing();
        let mut differ = Vec::new();
        for &i in &checked[1..] {
            let m = &self.members[i];
            let own = m.timing();
            if !own.same(&timing) {
                let why = format!("`{own}` {NOT_TRANSLATED}: Strata checks every backend alike, as HAProxy checks `{}` (`{timing}`)", lead.name());
                differ.push((m.server.statement, why));
            }
        }
        for (s, why) in differ {
            self.note(s, why);
        }
        let mut count = |name: &str, (n, param): (u32, Option<Param<'a>>)| {
            if let Some(o) = param.filter(|_| n > MAX_RISE_FALL) {
                let why = format!("`{name} {n}` made {MAX_RISE_FALL}: the most Strata takes");
                self.note(o.statement, why);
            }
            n.min(MAX_RISE_FALL)
        };
        let (rise, fall) = (count("rise", timing.rise), count("fall", timing.fall));
        let interval = timing.inter;
        // without `timeout check`, HAProxy gives a check `inter` to connect and answer
        let timeout = self
            .conf
            .timeout(self.index, "check")
            .filter(|t| t.time.ms() > 0)
            .map_or(interval.clone(), |t| t.time.strata());
        let mut fields = Vec::new();
        if let Some((_, s)) = httpchk {
            if self.mode == Mode::Tcp {
                let why = format!("{NOT_TRANSLATED}: Strata checks the backends of a TCP listener by connecting to them");
                self.note(s, why);
            } else {
                fields = self.http_check(s);
            }
        }
        fields.push(format!("interval = {}", quoted(&interval)));
        fields.push(format!("timeout = {}", quoted(&timeout)));
        fields.push(format!("rise = {rise}"));
        fields.push(format!("fall = {fall}"));
        self.keys
            .push(("health", format!("{{ {} }}", fields.join(", "))));
    }

    /// The fields of an HTTP check, from `option httpchk` (the line `s`) and `http-check`.
    fn http_check(&mut self, s: &'a Statement) -> Vec<String> {
        let args: Vec<&str> = s.args()[1..].iter().map(|w| w.text.as_str()).collect();
        let (mut method, mut uri, mut version) = match args.as_slice() {
            [] => ("OPTIONS", "/", "HTTP/1.0"),
            [uri] => ("OPTIONS", *uri, "HTTP/1.0"),
            [method, uri] => (*method, *uri, "HTTP/1.0"),
            [method, uri, version, ..] => (*method, *uri, *version),
        };
        let mut host = args.get(3).map(|h| h.to_string());
        let mut expect = None;
        // the `http-check` lines of the backend, or else of its defaults
        let lines: Vec<&'a Statement> = self
            .conf
            .inherited(self.index, |p| {
                let lines: Vec<&'a Statement> = p.all("http-check").collect();
                (!lines.is_empty()).then_some(lines)
            })
            .unwrap_or_default();
        for line in lines {
            let words: Vec<&str> = line.args().iter().map(|w| w.text.as_str()).collect();
            match words.as_slice() {
                ["send", rest @ ..] => {
                    let mut dropped = Vec::new();
                    let mut i = 0;
                    while i < rest.len() {
                        let value = rest.get(i + 1).copied().unwrap_or("");
                        match rest[i] {
                            "meth" => method = value,
                            "uri" => uri = value,
                            "ver" => version = value,
                            "hdr" if value.eq_ignore_ascii_case("host") => {
                                host = rest.get(i + 2).map(|h| h.to_string());
                                i += 1;
                            }
                            "hdr" => {
                                dropped.push(format!(
                                    "hdr {value} {}",
                                    rest.get(i + 2).unwrap_or(&"")
                                ));
                                i += 1;
                            }
                            other => dropped.push(format!("{other} {value}")),
                        }
                        i += 2;
                    }
                    if !dropped.is_empty() {
                        let why = format!("`{}` {NOT_TRANSLATED}: Strata's check is a GET of `path` with a Host header, and nothing more", dropped.join("`, `"));
                        self.note(line, why);
                    }
                }
                ["expect", "status", codes] if expect.is_none() => match statuses(codes) {
                    Some(statuses) => expect = Some(statuses),
                    None => {
                        let why = format!("status {} {NOT_TRANSLATED}: Strata's HTTP check takes one status or one range of statuses, from 100 to 599 (200-399 unless told)", quoted(codes));
                        self.note(line, why);
                    }
                },
                _ => {
                    let why = format!("{NOT_TRANSLATED}: Strata's HTTP check takes one status or range of statuses (200-399 unless told), and looks at nothing else of the answer");
                    self.note(line, why);
                }
            }
        }
        // `option httpchk GET / HTTP/1.1\r\nHost:\ www`: headers in the version
        let mut headers = version.split("\r\n").skip(1);
        for header in headers.by_ref() {
            match header.split_once(':') {
                Some((name, value)) if name.trim().eq_ignore_ascii_case("host") => {
                    host = Some(value.trim().to_string());
                }
                _ if header.is_empty() => {}
                _ => {
                    let why = format!(
                        "the header {} {NOT_TRANSLATED}: Strata's check sends a Host header only",
                        quoted(header)
                    );
                    self.note(s, why);
                }
            }
        }
        if !uri.starts_with('/') {
            let why = format!("{} made \"/\": Strata's check asks for a path", quoted(uri));
            self.note(s, why);
            uri = "/";
        }
        if method != "GET" {
            let why = format!("Strata's check is a GET of {}, where HAProxy's is {method}: the servers must answer it alike", quoted(uri));
            self.note(s, why);
        }
        let mut fields = vec![format!("path = {}", quoted(uri))];
        if let Some(host) = host {
            fields.push(format!("host = {}", quoted(&host)));
        }
        if let Some(expect) = expect {
            fields.push(format!("expect = {expect}"));
        }
        fields
    }

    /// `passive = { failures = 0 }` unless a server has `observe`: HAProxy takes a server out
    /// for the errors of real traffic only when told, and Strata after 5 in a row unless told
    /// not to.
    fn passive(&mut self) {
        let observed = self
            .members
            .iter()
            .any(|m| m.served() && m.option("observe").is_some());
        if !observed {
            self.keys.push(("passive", "{ failures = 0 }".into()));
        }
    }

    /// `retries`, at most Strata's 10; HAProxy's 3 when the backend does not set it (Strata's
    /// own default is 2).
    fn retries(&mut self) {
        let set = self.conf.get(self.index, "retries");
        let n = match set {
            Some(s) => {
                let n: u32 = s.text(0).parse().unwrap_or(0);
                if n > MAX_RETRIES {
                    self.note(s, format!("{n} made {MAX_RETRIES}: the most Strata takes"));
                }
                n.min(MAX_RETRIES)
            }
            None => RETRIES,
        };
        if n > 0 && self.mode == Mode::Http && self.conf.get(self.index, "retry-on").is_none() {
            // HAProxy's `retry-on` defaults to `conn-failure`; Strata's retries go further
            let why = format!("`retries {n}`: HAProxy (without `retry-on`) tries again only a connection that failed; Strata also tries an idempotent request without a body again, on another server, when its server failed before answering (a reset, `timeout server`): a slow GET can wait up to {} times `timeout server` before its 504, within `retry_budget`; write `retries = 0` to keep to HAProxy's behaviour for slow servers, at the cost of retries after refused connects", n + 1);
            match set {
                Some(s) => self.note(s, why),
                None => {
                    let (at, key) = (self.proxy.section.at(), self.proxy.label());
                    self.notes.push(Note::new(at, key, why));
                }
            }
        }
        self.keys.push(("retries", n.to_string()));
    }

    /// `slow_start`, from the first server HAProxy sends traffic to with `slowstart`, or else
    /// `"0s"`: HAProxy ramps up only the servers with it, and Strata every backend, over 10s
    /// unless told.
    fn slow_start(&mut self) {
        let served: Vec<&Member<'c, 'a>> = self.members.iter().filter(|m| m.served()).collect();
        // (each checked when the file was read)
        let mut times = served.iter().filter_map(|m| {
            let time = m.option("slowstart")?;
            Some((m, Time::parse(time.value()).ok()?))
        });
        let Some((first, time)) = times.next() else {
            self.keys.push(("slow_start", quoted("0s")));
            return;
        };
        let others: Vec<(&'a Statement, String)> = times
            .filter(|(_, t)| t.ms() != time.ms())
            .map(|(m, t)| (m.server.statement, t.strata()))
            .collect();
        let time = time.strata();
        let without: Vec<&str> = served
            .iter()
            .filter(|m| m.option("slowstart").is_none())
            .map(|m| m.name())
            .collect();
        let first = first.name().to_string();
        if !without.is_empty() {
            let why = format!("Strata ramps every backend up over `slow_start`, as HAProxy does `{first}` (`slowstart {time}`), where HAProxy ramps up only the servers with `slowstart` (not {})", without.join(", "));
            self.notes
                .push(Note::new(self.proxy.at(), self.proxy.label(), why));
        }
        for (s, other) in others {
            let why = format!("`slowstart {other}` {NOT_TRANSLATED}: Strata ramps every backend up alike, as HAProxy does `{first}` (`slowstart {time}`)");
            self.note(s, why);
        }
        self.keys.push(("slow_start", quoted(&time)));
    }

    /// `backend_protocol = "h2c"` when every server speaks HTTP/2 (`proto h2`).
    fn protocol(&mut self) {
        let h2 = |m: &Member<'_, '_>| m.option("proto").is_some_and(|o| o.value() == "h2");
        let with: Vec<&Member<'_, '_>> = self.members.iter().filter(|m| h2(m)).collect();
        if with.is_empty() {
            return;
        }
        if self.mode == Mode::Http && with.len() == self.members.len() {
            self.keys.push(("backend_protocol", quoted("h2c")));
            return;
        }
        let why = if self.mode == Mode::Tcp {
            format!("`proto h2` {NOT_TRANSLATED}: a TCP listener relays bytes as they come")
        } else {
            format!("`proto h2` {NOT_TRANSLATED}: Strata speaks one protocol to every backend of a listener, and not every server here speaks HTTP/2")
        };
        let lines: Vec<&'a Statement> = with.iter().map(|m| m.server.statement).collect();
        for s in lines {
            self.note(s, why.clone());
        }
    }

    /// The `backends` for a listener on `port` (0 for a socket), into `table`, with the notes
    /// on the servers it keeps as written; whether it has any.
    pub(super) fn backends(&self, port: u16, table: &mut Table) -> bool {
        let mut lines = Vec::new();
        let mut seen: HashMap<String, &str> = HashMap::new();
        for m in self.members.iter().filter(|m| m.idle.is_none()) {
            let key = self.proxy.key(m.server.statement);
            let at = m.server.address.at;
            let (line, why) = match m.line(port) {
                Ok((address, line, note)) => {
                    if let Some(why) = note {
                        table.note(at, &key, why);
                    }
                    let why = seen.insert(address.clone(), m.name()).map(|first| {
                        format!("server `{first}` is at {address} too, which HAProxy allows and Strata does not (give one of them the weight of both)")
                    });
                    (line, why)
                }
                Err((line, why)) => (line, Some(why)),
            };
            match why {
                Some(why) => {
                    table.note(at, &key, format!("{KEPT}: {why}"));
                    lines.push(Line {
                        text: quoted(&line),
                        kept: Some(at.line),
                    });
                }
                None => lines.push(Line::new(quoted(&line))),
            }
        }
        let any = !lines.is_empty();
        if any {
            table.items.push(Item::Array("backends", lines));
        }
        any
    }

    /// The keys after `backends`: `balance`, `hash_key`, `health`, `passive`, `retries`,
    /// `slow_start`, `backend_protocol`.
    pub(super) fn keys(&self, table: &mut Table) {
        for (key, value) in &self.keys {
            table.key(key, value.clone());
        }
    }

    /// Where the backend is, for notes about it as a whole.
    pub(super) fn at(&self) -> Pos {
        self.proxy.at()
    }
}

impl<'c, 'a> Member<'c, 'a> {
    /// For a listener on `port` (0 for a socket): its address, its `backends` line and a note
    /// on its port; or the line kept as written, and why.
    fn line(&self, port: u16) -> Result<(String, String, Option<String>), (String, String)> {
        let address = self.server.address;
        let written = &address.text;
        let mut weight = if self.weight == 1 {
            String::new()
        } else {
            format!(" weight={}", self.weight)
        };
        if self.max_conns != 0 {
            weight += &format!(" max_conns={}", self.max_conns);
        }
        let unquoted = address.written.trim_matches(|c| c == '"' || c == '\'');
        let kept = |why: String| Err((format!("{unquoted}{weight}"), why));
        if let Some(env) = address.env.iter().find(|e| e.default.is_none()) {
            return kept(format!("`${{{}}}` is an environment variable HAProxy reads when it starts: write what it holds", env.name));
        }
        let (host, p) = match &self.server.addr {
            address::Server::Other(_) => {
                return kept(format!("{} is a unix socket (or one HAProxy inherits), and Strata reaches backends over TCP only", quoted(written)));
            }
            address::Server::Tcp { host, port } => (host, *port),
        };
        if matches!(host, Host::Ip(ip) if ip.is_unspecified()) {
            return kept(format!("{} makes HAProxy connect to the address the client connected to (or the one a rule set), and Strata connects to fixed addresses", quoted(written)));
        }
        let relative = matches!(p, address::Port::Same | address::Port::Offset(_));
        let Some(port) = p.for_listen(port).filter(|_| port != 0 || !relative) else {
            return kept(match port {
                0 => format!("{} has no port of its own: HAProxy connects to the port the client connected to (or that far from it), and this listener has none", quoted(written)),
                _ => format!("{} is a port offset from the client's port, {port}, out of range", quoted(written)),
            });
        };
        let Some(address) = host.with_port(port) else {
            return kept(format!("{} is a host name, which HAProxy resolves when it starts and Strata does not: write the server's IP address", quoted(written)));
        };
        if !self.speaks.is_empty() {
            let why = format!("HAProxy speaks {} to it, and Strata plain TCP or HTTP (HTTP/2 over TLS: `backend_protocol = \"h2\"` with `backend_ca`)", self.speaks.join(" and "));
            return Err((format!("{address}{weight} {}", self.speaks.join(" ")), why));
        }
        let note = relative.then(|| {
            format!("{} has no port of its own: HAProxy connects to the port the client connected to (or that far from it), {port} on this listener", quoted(written))
        });
        Ok((address.clone(), format!("{address}{weight}"), note))
    }

    fn new(conf: &Conf<'a>, index: usize, server: &'c Server<'a>) -> Member<'c, 'a> {
        let params = conf.params(index, server);
        let flag = |on: &str, off: &str| last_flag(&params, on, off);
        let weight = params
            .iter()
            .rev()
            .find(|o| o.name() == "weight")
            .map_or(1, |o| o.value().parse().unwrap_or(1));
        // HAProxy's 0 is no limit; Strata takes at most a million
        let max_conns = params
            .iter()
            .rev()
            .find(|o| o.name() == "maxconn")
            .map_or(0, |o| o.value().parse::<u32>().unwrap_or(0).min(1_000_000));
        let idle = if flag("disabled", "enabled") {
            Some(Idle::Disabled)
        } else if weight == 0 {
            Some(Idle::Weightless)
        } else if flag("backup", "no-backup") {
            Some(Idle::Backup)
        } else {
            None
        };
        let mut speaks = Vec::new();
        if flag("ssl", "no-ssl") {
            speaks.push("ssl");
        }
        speaks.extend(proxy_protocol(&params));
        Member {
            server,
            check: flag("check", "no-check"),
            params,
            idle,
            weight,
            max_conns,
            speaks,
        }
    }
}

/// The `expect` of Strata's HTTP check for the codes of `http-check expect status`: a status,
/// or a range of them, in [`STATUSES`] (digits only, as HAProxy reads them: `0200` is 200);
/// `None` for anything else, such as a list.
fn statuses(codes: &str) -> Option<String> {
    let status = |text: &str| {
        Some(text)
            .filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|t| t.parse::<u16>().ok())
            .filter(|n| STATUSES.contains(n))
    };
    match codes.split_once('-') {
        None => status(codes).map(|n| n.to_string()),
        Some((low, high)) => {
            let (low, high) = (status(low)?, status(high)?);
            (low <= high).then(|| quoted(&format!("{low}-{high}")))
        }
    }
}

/// What HAProxy sends a server before anything else, from its `send-proxy` flags, each set and
/// cleared in turn as HAProxy sets and clears them (`pp_opts`): the PROXY protocol version 2
/// (`send-proxy-v2`, or one of its `-ssl` forms), version 1 (any other left on), or nothing.
/// `check-send-proxy` is for checks only.
fn proxy_protocol(params: &[Param<'_>]) -> Option<&'static str> {
    const V1: u8 = 1;
    const V2: u8 = 2;
    const SSL: u8 = 4;
    const CN: u8 = 8;
    let mut on = 0;
    for o in params {
        match o.name() {
            "send-proxy" => on |= V1,
            "send-proxy-v2" => on |= V2,
            "send-proxy-v2-ssl" => on |= V2 | SSL,
            "send-proxy-v2-ssl-cn" => on |= V2 | SSL | CN,
            "no-send-proxy" => on &= !V1,
            "no-send-proxy-v2" => on &= !V2,
            "no-send-proxy-v2-ssl" => on &= !(V2 | SSL),
            "no-send-proxy-v2-ssl-cn" => on &= !(V2 | SSL | CN),
            _ => {}
        }
    }
    match on {
        0 => None,
        _ if on & V2 != 0 => Some("send-proxy-v2"),
        _ => Some("send-proxy"),
    }
}
