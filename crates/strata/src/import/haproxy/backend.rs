//! A backend's part of a listener: its servers as `backends`, `balance`, `health`, `retries`,
//! `slow_start` and `backend_protocol`, with the notes on what of it Strata can't do.

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
const RISE: &str = "2";
const FALL: &str = "3";
/// The most `retries` Strata takes.
const MAX_RETRIES: u32 = 10;

/// Why HAProxy sends a server no traffic (while another is up).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Idle {
    Disabled,
    Weightless,
    Backup,
}

impl Idle {
    fn why(self) -> String {
        match self {
            Idle::Disabled => format!("`disabled` {NOT_TRANSLATED}: HAProxy starts the server in maintenance, sending it no traffic, so it is left out of `backends` (Strata drains a backend through the admin API: `POST /backends/...`)"),
            Idle::Weightless => format!("`weight 0` {NOT_TRANSLATED}: HAProxy sends the server no traffic, so it is left out of `backends` (Strata weighs a backend 1 to 256)"),
            Idle::Backup => format!("`backup` {NOT_TRANSLATED}: Strata has no backup servers, so it is left out of `backends`; HAProxy sends it traffic only when every other server is down, where Strata answers 503"),
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
    /// `ssl` or `send-proxy`: what HAProxy speaks to it that Strata does not.
    speaks: Vec<&'static str>,
}

impl Member<'_, '_> {
    /// The last option named `name`.
    fn option(&self, name: &str) -> Option<&Param<'_>> {
        self.params.iter().rev().find(|o| o.name() == name)
    }

    fn name(&self) -> &str {
        &self.server.name.text
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
            // with no other server, HAProxy sends the backups traffic
            for m in &mut up.members {
                m.idle = m.idle.filter(|i| *i != Idle::Backup);
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
        let timing = |m: &Member<'_, '_>, name: &str, default: &str| {
            m.option(name)
                .map_or(default.to_string(), |o| o.value().to_string())
        };
        let lead = &self.members[first];
        let (inter, rise, fall) = (
            timing(lead, "inter", INTER),
            timing(lead, "rise", RISE),
            timing(lead, "fall", FALL),
        );
        let mut differ = Vec::new();
        for &i in &checked[1..] {
            let m = &self.members[i];
            let own = (
                timing(m, "inter", INTER),
                timing(m, "rise", RISE),
                timing(m, "fall", FALL),
            );
            if (&own.0, &own.1, &own.2) != (&inter, &rise, &fall) {
                let why = format!("`inter {} rise {} fall {}` {NOT_TRANSLATED}: Strata checks every backend alike, as HAProxy checks `{}` (`inter {inter} rise {rise} fall {fall}`)", own.0, own.1, own.2, lead.name());
                differ.push((m.server.statement, why));
            }
        }
        for (s, why) in differ {
            self.note(s, why);
        }
        let interval = Time::parse(&inter).map_or(INTER.to_string(), Time::strata);
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
                ["expect", "status", codes] if expect.is_none() && !codes.contains(',') => {
                    expect = Some(match codes.split_once('-') {
                        Some(_) => quoted(codes),
                        None => codes.to_string(),
                    });
                }
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

    /// `retries`, at most Strata's 10.
    fn retries(&mut self) {
        let Some(s) = self.conf.get(self.index, "retries") else {
            return;
        };
        let n: u32 = s.text(0).parse().unwrap_or(0);
        if n > MAX_RETRIES {
            self.note(s, format!("{n} made {MAX_RETRIES}: the most Strata takes"));
        }
        self.keys.push(("retries", n.min(MAX_RETRIES).to_string()));
    }

    /// `slow_start`, from the first server with `slowstart`.
    fn slow_start(&mut self) {
        let mut times = self
            .members
            .iter()
            .filter_map(|m| m.option("slowstart").map(|o| (m, o.value().to_string())));
        let Some((first, time)) = times.next() else {
            return;
        };
        let others: Vec<(&'a Statement, String)> = times
            .filter(|(_, t)| *t != time)
            .map(|(m, t)| (m.server.statement, t))
            .collect();
        let first = first.name().to_string();
        for (s, other) in others {
            let why = format!("`slowstart {other}` {NOT_TRANSLATED}: Strata ramps every backend up alike, as HAProxy does `{first}` (`slowstart {time}`)");
            self.note(s, why);
        }
        let written = Time::parse(&time).map_or(time, Time::strata);
        self.keys.push(("slow_start", quoted(&written)));
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

    /// The keys after `backends`: `balance`, `hash_key`, `health`, `retries`, `slow_start`,
    /// `backend_protocol`.
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
        let weight = if self.weight == 1 {
            String::new()
        } else {
            format!(" weight={}", self.weight)
        };
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
        let proxy = params
            .iter()
            .rev()
            .find(|o| o.name().contains("send-proxy"))
            .filter(|o| !o.name().starts_with("no-"));
        if proxy.is_some() {
            speaks.push("send-proxy");
        }
        Member {
            server,
            check: flag("check", "no-check"),
            params,
            idle,
            weight,
            speaks,
        }
    }
}
