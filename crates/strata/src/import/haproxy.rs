//! HAProxy's frontends and listen sections translated into `[[http]]` and `[[tcp]]` listeners
//! (by their `mode`): one for each address a frontend binds, in front of the servers of its
//! default backend, with the backend's balance, health checks, timeouts and per-server limits
//! (`maxconn`, `timeout queue`).
//!
//! What can't be carried over is treated by what it would change:
//! - how HAProxy's process runs (`global`), logs, stats, rules (`acl`, `http-request`...),
//!   persistence, compression, dynamic server limits, and what a `server` or `bind` line sets that Strata has
//!   no setting for: dropped, with a note;
//! - requests a frontend sends elsewhere by a rule (`use_backend ... if`): they go to its
//!   default backend, with a note; servers HAProxy sends nothing while others are up (`backup`,
//!   `disabled`, `weight 0`): left out of `backends`, with a note;
//! - where traffic goes, or what it is (a server by host name, unix socket or environment
//!   variable, one HAProxy speaks TLS or the PROXY protocol to, TLS on a TCP listener, a
//!   `crt-list` or a `crt` directory): kept as written and marked, so `strata check` refuses
//!   the output until someone decides;
//! - a listener Strata can't run (on a unix socket, QUIC, a host name; for clients that send
//!   the PROXY protocol or a certificate; with nothing to send requests to): left out, its
//!   translation printed as a comment.
//!
//! A file HAProxy would not start with (a quote left open, a statement before any section, a
//! bad time, mode or balance, a `bind` without a port, a `server` or `bind` option HAProxy does
//! not have, a backend that is not there) is refused, every problem with its line, and nothing
//! is printed.

mod address;
mod backend;
mod cfg;
mod dropped;
mod proxies;
mod time;

use std::collections::{HashMap, HashSet};
use std::io::Read as _;
use std::path::{Path, PathBuf};

use super::{
    commented, directory, quoted, Item, Line, Note, Pos, Table, Translation, KEPT, NOT_TRANSLATED,
};
use address::Bind as Address;
use backend::Upstream;
use cfg::Statement;
use proxies::{Bind, Conf, Kind, Mode, Param, Proxy, Timeout};
use time::Time;

const LEFT_OUT: &str = "listener left out (its translation is a comment in the output)";
/// The most listeners one port range of a `bind` becomes.
const MAX_RANGE: u16 = 64;
/// The most `max_connections` Strata takes.
const MAX_CONNECTIONS: u64 = 1_000_000;
/// The most `workers` Strata takes.
const MAX_WORKERS: u64 = 1024;
/// The most of a certificate file read to look for its private key: a PEM chain is far
/// smaller, and a device (`/dev/zero`) could be read forever.
const MAX_PEM: u64 = 1 << 20;

/// Translates the haproxy.cfg `source`; `file` names it in the header comment, and its
/// directory is where relative certificate paths are taken from.
pub(super) fn translate(source: &str, file: &str) -> Result<Translation, Vec<Note>> {
    let cfg = cfg::parse(source, file)?;
    let conf = Conf::read(&cfg)?;
    let mut notes = cfg.notes.clone();
    let paths = Paths::read(&conf, file);
    let top = global(&conf, &mut notes);
    for section in &conf.others {
        let why = format!(
            "the `{}` section {NOT_TRANSLATED}: Strata has nothing like it",
            section.kind()
        );
        notes.push(Note::new(section.at(), section.kind(), why));
    }
    for (i, p) in conf.proxies.iter().enumerate() {
        if p.kind == Kind::Defaults {
            notes.extend(dropped_notes(&conf, i, conf.mode(i)));
        }
    }
    let mut taken = Taken::default();
    let mut used = HashSet::new();
    let mut tables = Vec::new();
    for i in 0..conf.proxies.len() {
        if conf.proxies[i].kind.accepts() {
            let frontend = Frontend::new(&conf, i, &paths, &mut used);
            tables.extend(frontend.listeners(&mut taken));
        }
    }
    for (i, p) in conf.proxies.iter().enumerate() {
        if p.kind == Kind::Backend && !used.contains(&i) {
            let why = format!("backend {NOT_TRANSLATED}: no frontend sends it requests by default (`default_backend`, or a `use_backend` without a condition)");
            notes.push(Note::new(p.at(), p.label(), why));
        }
    }
    let mut toml = format!(
        "# Translated from {file} by `strata import haproxy`:\n\
         # a listener for each address a frontend (or listen section) binds, [[http]] or [[tcp]]\n\
         # by its mode, in front of its default backend's servers. What could not be translated\n\
         # is listed on stderr, and here: about the file as a whole below, about a listener\n\
         # above it.\n"
    );
    notes.sort_by_key(|n| n.at);
    if !notes.is_empty() {
        toml.push('\n');
    }
    toml.push_str(&commented(&notes));
    if !top.is_empty() {
        toml.push('\n');
        toml.push_str(&top);
    }
    let mut translation = Translation::new(toml, notes, "listener", tables);
    translation.notes.sort_by_key(|n| n.at);
    // a note on a defaults or backend line stands above each listener it is about, and once
    // on stderr
    let mut seen = HashSet::new();
    translation
        .notes
        .retain(|n| seen.insert((n.at.line, n.at.column, n.key.clone(), n.message.clone())));
    Ok(translation)
}

/// The top-level keys `global` gives (`workers`, `drain_timeout`), and a note on each of its
/// statements that has no place in Strata's config. A setting given twice (in one `global`
/// section or two) is written once, the last one as HAProxy takes it, with a note on the other.
fn global(conf: &Conf<'_>, notes: &mut Vec<Note>) -> String {
    let mut workers: Option<(String, Pos)> = None;
    let mut drain: Option<(String, Pos)> = None;
    for s in &conf.global {
        let key = format!("global.{}", s.key());
        notes.extend(env_note(&key, s));
        match s.keyword() {
            "nbthread" => match s.text(0).parse::<u64>() {
                Ok(n) if (1..=MAX_WORKERS).contains(&n) => {
                    set_again(&mut workers, format!("workers = {n}\n"), s, &key, notes);
                }
                _ => {
                    let why = format!(
                        "{} {NOT_TRANSLATED}: Strata's `workers` is 1 to {MAX_WORKERS}",
                        quoted(s.text(0))
                    );
                    notes.push(Note::new(s.at(), &key, why));
                }
            },
            "hard-stop-after" => match Time::parse(s.text(0)) {
                Ok(t) => {
                    let line = format!("drain_timeout = {}\n", quoted(&t.strata()));
                    set_again(&mut drain, line, s, &key, notes);
                }
                Err(why) => notes.push(Note::new(s.at(), &key, format!("{NOT_TRANSLATED}: {why}"))),
            },
            kw if dropped::GLOBAL.contains(&kw) => {}
            _ => {
                let why = format!("{NOT_TRANSLATED}: {}", dropped::global_why(s));
                notes.push(Note::new(s.at(), &key, why));
            }
        }
    }
    [workers, drain]
        .into_iter()
        .flatten()
        .map(|(line, _)| line)
        .collect()
}

/// Puts `line`, from `s`, in `slot`; a line it held before gets a note that `s` sets it again.
fn set_again(
    slot: &mut Option<(String, Pos)>,
    line: String,
    s: &Statement,
    key: &str,
    notes: &mut Vec<Note>,
) {
    if let Some((_, earlier)) = slot.replace((line, s.at())) {
        let why = format!("{NOT_TRANSLATED}: line {} sets it again", s.at().line);
        notes.push(Note::new(earlier, key, why));
    }
}

/// The notes on the statements of proxy `i` that the translation does not read in `mode`, and
/// on those that name environment variables.
fn dropped_notes(conf: &Conf<'_>, i: usize, mode: Mode) -> Vec<Note> {
    let p = &conf.proxies[i];
    let mut notes = Vec::new();
    for s in &p.section.statements {
        let key = p.key(s);
        notes.extend(env_note(&key, s));
        if !dropped::read(s, p.kind, mode) {
            let why = format!("{NOT_TRANSLATED}: {}", dropped::why(s, p.kind, mode));
            notes.push(Note::new(s.at(), &key, why));
        }
    }
    notes
}

/// A note on the environment variables `s` names, when it names any: HAProxy reads them when
/// it starts, and the translation takes them as unset. An address that names one without a
/// default is kept as written (a server) or left out (a bind) instead.
fn env_note(key: &str, s: &Statement) -> Option<Note> {
    let address = match s.keyword() {
        "server" => s.arg(1),
        "bind" => s.arg(0),
        _ => None,
    };
    let vars: Vec<String> = s
        .words
        .iter()
        .flat_map(|w| {
            let address = address.is_some_and(|a| std::ptr::eq(a, w));
            w.env
                .iter()
                .filter(move |e| !(address && e.default.is_none()))
                .map(|e| match &e.default {
                    Some(d) => format!("`${{{}}}` as {}", e.name, quoted(d)),
                    None => format!("`${{{}}}` as nothing", e.name),
                })
        })
        .collect();
    (!vars.is_empty()).then(|| {
        let why = format!("{}: HAProxy reads environment variables when it starts, and this translation takes them as unset (write what they hold where that differs)", vars.join(", "));
        Note::new(s.at(), key, why)
    })
}

/// Where HAProxy takes a relative `crt` path from: `crt-base`, then `default-path`.
struct Paths {
    crt_base: Option<String>,
    /// The directory a path still relative is in.
    base: PathBuf,
    /// Whether that directory is the one HAProxy was started in (`default-path current`, its
    /// default), which the translation takes to be the config's.
    guessed: bool,
}

impl Paths {
    fn read(conf: &Conf<'_>, file: &str) -> Paths {
        let last = |kw: &str| conf.global.iter().rev().find(|s| s.keyword() == kw);
        let config = directory(file);
        let (base, guessed) = match last("default-path").map(|s| (s.text(0), s.text(1))) {
            Some(("config", _)) => (config, false),
            Some(("parent", _)) => (
                config.parent().map_or(config.clone(), Path::to_path_buf),
                false,
            ),
            Some(("origin", path)) => (config.join(path), false),
            _ => (config, true),
        };
        Paths {
            crt_base: last("crt-base").map(|s| s.text(0).to_string()),
            base,
            guessed,
        }
    }

    /// `crt` written absolute, and a note when HAProxy would take it from the directory it was
    /// started in.
    fn crt(&self, crt: &str) -> (String, Option<String>) {
        let mut path = PathBuf::from(crt);
        if let Some(base) = self.crt_base.as_ref().filter(|_| path.is_relative()) {
            path = Path::new(base).join(path);
        }
        if path.is_absolute() {
            return (path.display().to_string(), None);
        }
        let absolute: PathBuf = self.base.join(&path).components().collect();
        let note = self.guessed.then(|| {
            format!("{} is relative, which HAProxy takes from the directory it was started in (`default-path current`): taken from the config's directory, and written absolute, as Strata takes a relative path from its own config's directory", quoted(&path.display().to_string()))
        });
        (absolute.display().to_string(), note)
    }
}

/// One address (and port) a frontend binds, which makes a listener.
struct Listen<'c> {
    /// Which `bind` it is on.
    bind: Option<usize>,
    /// As written.
    text: &'c str,
    address: Option<&'c Address>,
    /// 0 for a socket.
    port: u16,
}

/// What a `bind` line makes of each listener on it.
struct Binding {
    /// `tls`: each certificate as `{ cert, key }`, or a line kept as written.
    tls: Vec<Line>,
    /// Why clients of it can't be served, if they can't.
    left_out: Option<String>,
    max_connections: Option<String>,
    notes: Vec<Note>,
}

impl Binding {
    /// Keeps the `tls` entry of the param `o` (about `key`) as written, with a note that says
    /// why.
    fn keep(&mut self, o: &Param<'_>, key: &str, why: String) {
        let at = o.word.at;
        self.notes
            .push(Note::new(at, key, format!("{KEPT}: {why}")));
        self.tls.push(Line {
            text: quoted(&o.text()),
            kept: Some(at.line),
        });
    }
}

/// A frontend's (or listen section's) translation, as it is made.
struct Frontend<'c, 'a> {
    conf: &'c Conf<'a>,
    index: usize,
    proxy: &'c Proxy<'a>,
    paths: &'c Paths,
    mode: Mode,
    upstream: Option<Upstream<'c, 'a>>,
    /// `redirect_https`, when a rule makes it: whether only plain HTTP clients are sent to
    /// https.
    redirect: Option<bool>,
    /// The timeouts, after the backend's keys.
    timeouts: Vec<(&'static str, String)>,
    max_connections: Option<String>,
    /// `forwarded` and `access_log`.
    http: Vec<(&'static str, String)>,
    /// About the frontend, for its first listener.
    notes: Vec<Note>,
    /// About its backend, for the first listener that sends requests there.
    backend_notes: Vec<Note>,
}

impl<'c, 'a> Frontend<'c, 'a> {
    /// Frontend `index`; `used` holds the backends some frontend uses, whose own notes are
    /// said with the first.
    fn new(
        conf: &'c Conf<'a>,
        index: usize,
        paths: &'c Paths,
        used: &mut HashSet<usize>,
    ) -> Frontend<'c, 'a> {
        let proxy = &conf.proxies[index];
        let mut f = Frontend {
            conf,
            index,
            proxy,
            paths,
            mode: conf.mode(index),
            upstream: None,
            redirect: None,
            timeouts: Vec::new(),
            max_connections: None,
            http: Vec::new(),
            notes: Vec::new(),
            backend_notes: Vec::new(),
        };
        let backend = f.backend();
        if let Some(b) = backend {
            if conf.mode(b) == Mode::Http {
                f.mode = Mode::Http;
            }
        }
        f.notes.extend(dropped_notes(conf, index, f.mode));
        if let Some(b) = backend.filter(|b| *b != index) {
            if used.insert(b) {
                f.backend_notes.extend(dropped_notes(conf, b, f.mode));
            }
        }
        if let Some(b) = backend {
            let mut upstream = Upstream::new(conf, b, f.mode);
            f.backend_notes.append(&mut upstream.notes);
            f.upstream = Some(upstream);
        }
        f.redirect();
        f.timeouts(backend);
        f.client_side(backend);
        f
    }

    /// The backend requests go to: the first `use_backend` without a condition, or else
    /// `default_backend`, or else the listen section itself; a note on each `use_backend`
    /// with a condition.
    fn backend(&mut self) -> Option<usize> {
        let conf = self.conf;
        let mut chosen = None;
        let mut ruled = Vec::new();
        for s in self.proxy.all("use_backend") {
            let dynamic = s.text(0).contains("%[");
            if s.args().len() == 1 && chosen.is_none() && !dynamic {
                chosen = conf.backend(s.text(0));
            } else {
                ruled.push(s);
            }
        }
        let chosen = chosen
            .or_else(|| {
                let s = conf.get(self.index, "default_backend")?;
                conf.backend(s.text(0))
            })
            .or((self.proxy.kind == Kind::Listen).then_some(self.index));
        let goes = match chosen {
            Some(b) => format!("they go to `{}`", conf.proxies[b].label()),
            None => "and this frontend has no default backend".to_string(),
        };
        for s in ruled {
            let why = format!("{NOT_TRANSLATED}: Strata sends every request of a listener to one list of backends, with no rules to choose another: {goes}");
            self.notes.push(Note::new(s.at(), &self.proxy.key(s), why));
        }
        chosen
    }

    /// The first `redirect scheme https` rule Strata's `redirect_https` does as HAProxy does,
    /// and a note on each later one.
    fn redirect(&mut self) {
        if self.mode != Mode::Http {
            return;
        }
        let mut rules = self
            .proxy
            .section
            .statements
            .iter()
            .filter_map(|s| dropped::redirect_https(s).map(|r| (s, r)));
        let Some((s, (conditional, code))) = rules.next() else {
            return;
        };
        if code != 301 {
            let why = format!("Strata redirects with 301 (Moved Permanently), where HAProxy's code here is {code}");
            self.notes.push(Note::new(s.at(), &self.proxy.key(s), why));
        }
        // HAProxy takes the first rule that matches
        for (later, (later_conditional, _)) in rules {
            let why = match (conditional, later_conditional) {
                (false, _) => format!("the rule on line {} redirects every request, so HAProxy never comes to this one", s.at().line),
                (true, true) => format!("it redirects what the rule on line {} does", s.at().line),
                (true, false) => format!("HAProxy sends requests that came over TLS to https again with it (a loop for a browser); Strata redirects plain HTTP only, as the rule on line {} does", s.at().line),
            };
            let why = format!("{NOT_TRANSLATED}: {why}");
            self.notes
                .push(Note::new(later.at(), &self.proxy.key(later), why));
        }
        self.redirect = Some(conditional);
    }

    /// A note on `s` (a line of this proxy, its backend or their defaults).
    fn note(&mut self, s: &Statement, why: String) {
        self.notes.push(Note::new(s.at(), &self.conf.key(s), why));
    }

    /// A timeout of proxy `i` (or its defaults) as Strata writes it: none when it is 0,
    /// HAProxy's "no limit", with a note; and a note when Strata rounds it.
    fn timeout(&mut self, i: usize, name: &str) -> Option<Timeout<'a>> {
        let t = self.conf.timeout(i, name)?;
        if t.time.ms() == 0 {
            let why = format!("{NOT_TRANSLATED}: 0 sets no limit in HAProxy, and Strata always has one: what the other timeouts give, or Strata's default, applies");
            self.note(t.statement, why);
            return None;
        }
        if t.time.rounded() {
            let why = format!(
                "{} made {}, rounded up to the millisecond as HAProxy itself does",
                t.statement.text(1),
                t.time.strata()
            );
            self.note(t.statement, why);
        }
        Some(t)
    }

    /// `connect_timeout`, `queue_timeout`, `header_timeout`, `response_timeout` and `idle_timeout`, from the
    /// timeouts of the frontend and of `backend`.
    fn timeouts(&mut self, backend: Option<usize>) {
        let i = self.index;
        let client = self.timeout(i, "client");
        let (connect, server, tunnel) = match backend {
            Some(b) => (
                self.timeout(b, "connect"),
                self.timeout(b, "server"),
                self.timeout(b, "tunnel"),
            ),
            None => (None, None, None),
        };
        let missing: Vec<&str> = [
            ("client", &client),
            ("connect", &connect),
            ("server", &server),
        ]
        .iter()
        .filter(|(name, t)| t.is_none() && (backend.is_some() || *name == "client"))
        .map(|(name, _)| *name)
        .collect();
        if !missing.is_empty() {
            let why = format!("no `timeout {}`: HAProxy waits without a limit there (it warns of it when it starts); Strata always has one, and its defaults apply", missing.join("`, `timeout "));
            self.notes
                .push(Note::new(self.proxy.at(), self.proxy.label(), why));
        }
        let strata = |t: &Timeout<'_>| quoted(&t.time.strata());
        if let Some(t) = &connect {
            self.timeouts.push(("connect_timeout", strata(t)));
        }
        if let Some(t) = backend.and_then(|b| self.timeout(b, "queue")) {
            self.timeouts.push(("queue_timeout", strata(&t)));
        }
        if self.mode == Mode::Http {
            let request = self.timeout(i, "http-request");
            let head = request.or(client);
            if let Some(t) = &head {
                self.timeouts.push(("header_timeout", strata(t)));
            }
            if let Some(keep) = self.timeout(i, "http-keep-alive") {
                if head.is_none_or(|h| h.time.ms() != keep.time.ms()) {
                    let written = head.map_or("10s (its default)".to_string(), |h| h.time.strata());
                    let why = format!("{NOT_TRANSLATED}: Strata waits `header_timeout` for the next request on a kept-alive connection, {written} here");
                    self.note(keep.statement, why);
                }
            }
            if let Some(t) = &server {
                self.timeouts.push(("response_timeout", strata(t)));
            }
        }
        // a connection quiet both ways ends at the first of the client and server timeouts,
        // or at `timeout tunnel` once it is a tunnel
        let quiet = [client, server]
            .into_iter()
            .flatten()
            .min_by_key(|t| t.time.ms());
        if let Some(t) = tunnel.or(quiet) {
            self.timeouts.push(("idle_timeout", strata(&t)));
            if self.mode == Mode::Http && tunnel.is_some() {
                let why = "made `idle_timeout`, which bounds the pauses in request and response bodies too (HAProxy bounds those by `timeout client` and `timeout server`)".to_string();
                self.note(t.statement, why);
            }
        }
    }

    /// `max_connections`, `forwarded` and `access_log`.
    fn client_side(&mut self, backend: Option<usize>) {
        let conf = self.conf;
        if let Some(s) = conf.get(self.index, "maxconn") {
            self.max_connections = self.max_connections(s, s.text(0));
        }
        if self.mode != Mode::Http {
            return;
        }
        let index = self.index;
        let option = |name: &str| {
            conf.option(index, name)
                .or_else(|| backend.and_then(|b| conf.option(b, name)))
                .filter(|(on, _)| *on)
        };
        let forwarded = if let Some((_, s)) = option("forwardfor") {
            if s.args().len() > 1 {
                let why = format!("`{}` {NOT_TRANSLATED}: Strata appends the client's address to X-Forwarded-For from every client, and sets X-Forwarded-Proto and X-Forwarded-Host too", s.joined(2));
                self.note(s, why);
            }
            "x-forwarded"
        } else if option("forwarded").is_some() {
            "forwarded"
        } else {
            // HAProxy adds no forwarding header unless told, and Strata adds X-Forwarded-*
            "none"
        };
        self.http.push(("forwarded", quoted(forwarded)));
        if option("httplog").is_some() {
            self.http.push(("access_log", "true".into()));
        }
    }

    /// `max_connections` from a `maxconn` (the line `s`) of `value`, within what Strata takes.
    fn max_connections(&mut self, s: &Statement, value: &str) -> Option<String> {
        let n: u64 = value.parse().unwrap_or(0);
        if n == 0 {
            let why = format!("{NOT_TRANSLATED}: 0 leaves the limit to HAProxy's process; Strata's `max_connections` is 10000 unless set");
            self.note(s, why);
            return None;
        }
        if n > MAX_CONNECTIONS {
            self.note(
                s,
                format!("{n} made {MAX_CONNECTIONS}: the most Strata takes"),
            );
        }
        Some(n.min(MAX_CONNECTIONS).to_string())
    }

    /// What `bind` makes of each listener on it.
    fn binding(&mut self, bind: &Bind<'_>) -> Binding {
        let key = self.proxy.key(bind.statement);
        let mut b = Binding {
            tls: Vec::new(),
            left_out: None,
            max_connections: None,
            notes: Vec::new(),
        };
        let ssl = bind.params.iter().any(|o| o.name() == "ssl");
        let mut unread = Vec::new();
        for o in &bind.params {
            let at = o.word.at;
            match (o.name(), o.value()) {
                ("ssl" | "name" | "id", _) => {}
                ("crt", crt) if ssl => {
                    let (cert, note) = self.paths.crt(crt);
                    if let Some(why) = note {
                        b.notes.push(Note::new(at, &key, why));
                    }
                    if crt.ends_with('/') || Path::new(&cert).is_dir() {
                        let why = format!("{} is a directory, and HAProxy serves every certificate in it (by the name a client asks for): write a `{{ cert, key }}` for each", quoted(crt));
                        b.keep(o, &key, why);
                        continue;
                    }
                    let (key_file, unread) = key_file(&cert);
                    if let Some(why) = unread {
                        b.notes.push(Note::new(at, &key, why));
                    }
                    if key_file != cert {
                        let why = format!(
                            "{} holds no private key: HAProxy takes it from {} beside it",
                            quoted(crt),
                            quoted(&key_file)
                        );
                        b.notes.push(Note::new(at, &key, why));
                    }
                    let text = format!(
                        "{{ cert = {}, key = {} }}",
                        quoted(&cert),
                        quoted(&key_file)
                    );
                    b.tls.push(Line { text, kept: None });
                }
                ("crt-list", list) if ssl => {
                    let why = format!("{} lists certificates with settings for each (SNI filters, ciphers...): write a `{{ cert, key }}` for each", quoted(list));
                    b.keep(o, &key, why);
                }
                ("maxconn", value) => {
                    b.max_connections = self.max_connections(bind.statement, value)
                }
                ("accept-proxy", _) => {
                    b.left_out = Some("its clients send the PROXY protocol header first (`accept-proxy`), which Strata does not read".into());
                }
                ("verify", "optional" | "required") if ssl => {
                    b.left_out = Some(format!("HAProxy asks its clients for a certificate (`verify {}`), which Strata does not: it would let every client in", o.value()));
                }
                ("alpn", alpn)
                    if alpn.split(',').any(|p| p == "h2") && alpn.contains("http/1.1") => {}
                ("v4v6", _) => {}
                _ => unread.push(o),
            }
        }
        if ssl && b.tls.is_empty() && b.left_out.is_none() {
            b.left_out = Some("`ssl` with no `crt`: no certificate to serve".into());
        }
        if !b.tls.is_empty() && self.mode == Mode::Tcp {
            let why = format!("{KEPT}: Strata's TCP listeners relay bytes and do not end TLS: make it an [[http]] listener, or end TLS at the backends");
            b.notes.push(Note::new(bind.statement.at(), &key, why));
            for line in &mut b.tls {
                line.kept = Some(bind.statement.at().line);
            }
        }
        b.notes
            .extend(dropped::params_note(&key, &unread, dropped::bind_param_why));
        b
    }

    /// The listeners: one for each address (and port) of each `bind`, or one left out when
    /// there is none.
    fn listeners(mut self, taken: &mut Taken) -> Vec<Table> {
        let proxy = self.proxy;
        let label = proxy.label();
        let bindings: Vec<Binding> = proxy.binds.iter().map(|b| self.binding(b)).collect();
        let mut each: Vec<Listen<'c>> = Vec::new();
        for (i, bind) in proxy.binds.iter().enumerate() {
            for (text, address) in &bind.addresses {
                let ports = match address {
                    Address::Tcp { ports, .. } => *ports,
                    Address::Other(_) => (0, 0),
                };
                if ports.1 - ports.0 >= MAX_RANGE {
                    let s = bind.statement;
                    let why = format!("ports {}-{} {NOT_TRANSLATED}: this translation makes a listener for each of the first {MAX_RANGE} ports of a range; write the others you need", ports.0 + MAX_RANGE, ports.1);
                    self.notes.push(Note::new(s.at(), &proxy.key(s), why));
                }
                let last = ports.1.min(ports.0.saturating_add(MAX_RANGE - 1));
                for port in ports.0..=last {
                    each.push(Listen {
                        bind: Some(i),
                        text,
                        address: Some(address),
                        port,
                    });
                }
            }
        }
        if each.is_empty() {
            each.push(Listen {
                bind: None,
                text: "",
                address: None,
                port: 0,
            });
        }
        // named by port where each has its own, or else by number
        let ports: HashSet<u16> = each.iter().map(|l| l.port).collect();
        let by_port = !ports.contains(&0) && ports.len() == each.len();
        let mut tables = Vec::new();
        let mut served = None;
        for (n, listen) in each.iter().enumerate() {
            let name = match each.len() {
                1 => label.to_string(),
                _ if by_port => format!("{label}-{}", listen.port),
                _ => format!("{label}-{}", n + 1),
            };
            let binding = listen.bind.map(|i| (&proxy.binds[i], &bindings[i]));
            let (table, backends) = self.listener(taken, &name, listen, binding);
            if backends && served.is_none() {
                served = Some(tables.len());
            }
            tables.push(table);
        }
        // what is about the frontend stands above its first listener, and what is about its
        // backend above the first that sends requests there
        tables[0].notes.append(&mut self.notes);
        tables[served.unwrap_or(0)]
            .notes
            .append(&mut self.backend_notes);
        tables
            .into_iter()
            .map(|t| t.finish(label, proxy.at()))
            .collect()
    }

    /// The listener for `listen`, named `name` (or, when that is taken, `name` and a number),
    /// from `bind` and what it makes; whether it has `backends`.
    fn listener(
        &self,
        taken: &mut Taken,
        name: &str,
        listen: &Listen<'_>,
        bind: Option<(&Bind<'_>, &Binding)>,
    ) -> (Table, bool) {
        let proxy = self.proxy;
        let mut table = self.table(&mut taken.names, name);
        // the address it listens on, where, and the key of the line
        let mut listening: Option<(String, Pos, String)> = None;
        let text = listen.text;
        if let Some(s) = self.conf.disabled(self.index) {
            let why = "`disabled`: HAProxy does not start the proxy";
            leave_out(&mut table, s.at(), &self.conf.key(s), why);
        }
        match (bind, listen.address) {
            (Some((bind, binding)), Some(address)) => {
                let s = bind.statement;
                let key = proxy.key(s);
                let at = s.arg(0).map_or(s.at(), |w| w.at);
                let env = s
                    .arg(0)
                    .and_then(|w| w.env.iter().find(|e| e.default.is_none()));
                let why = match address {
                    Address::Tcp { host, .. } => match (host.with_port(listen.port), env) {
                        (Some(listen), None) => {
                            table.key("listen", quoted(&listen));
                            listening = Some((listen, at, key.clone()));
                            None
                        }
                        (_, Some(e)) => Some(format!("`${{{}}}` is an environment variable HAProxy reads when it starts: write the address it holds", e.name)),
                        (None, None) => Some(format!("HAProxy resolved the host name in {} when it started; Strata listens on an IP address (write the address the name stood for)", quoted(text))),
                    },
                    Address::Other(address::Socket::Datagram) => Some(format!("{} is QUIC or UDP, and Strata listens on TCP only", quoted(text))),
                    Address::Other(_) => Some(format!("{} is a unix socket (or one HAProxy inherits), and Strata listens on TCP ports only", quoted(text))),
                };
                if let Some(why) = why {
                    table.key("listen", quoted(text));
                    leave_out(&mut table, at, &key, &why);
                }
                if let Some(why) = &binding.left_out {
                    leave_out(&mut table, s.at(), &key, why);
                }
                table.notes.extend(binding.notes.iter().cloned());
                if !binding.tls.is_empty() {
                    let tls = binding.tls.iter().map(|l| Line {
                        text: l.text.clone(),
                        kept: l.kept,
                    });
                    table.items.push(Item::Array("tls", tls.collect()));
                }
            }
            _ => {
                let why =
                    "no `bind`: HAProxy listens nowhere for it (it warns of it when it starts)";
                leave_out(&mut table, proxy.at(), proxy.label(), why);
            }
        }
        let binding = bind.map(|(_, b)| b);
        let plain = binding.is_none_or(|b| b.tls.is_empty());
        let backends = if self.redirect.is_some_and(|only_plain| plain || !only_plain) {
            table.key("redirect_https", "true".into());
            false
        } else {
            self.upstream_keys(&mut table, listen.port)
        };
        for (k, v) in &self.timeouts {
            table.key(k, v.clone());
        }
        // a `maxconn` on the `bind` bounds each of its listeners
        let own = binding.and_then(|b| b.max_connections.as_ref());
        if let Some(n) = own.or(self.max_connections.as_ref()) {
            table.key("max_connections", n.clone());
        }
        for (k, v) in &self.http {
            table.key(k, v.clone());
        }
        // HAProxy binds an address twice (SO_REUSEPORT: the kernel shares its connections
        // between the two); Strata takes one listener per address
        if let Some((address, at, key)) = listening.filter(|_| !table.left_out) {
            // as `strata check` compares them: the socket address, any port but 0
            let same = address.parse::<std::net::SocketAddr>();
            let address = same.map_or(address, |a| a.to_string());
            match taken
                .listens
                .get(&address)
                .filter(|_| !address.ends_with(":0"))
            {
                Some(first) => {
                    let why = format!("{} is bound by the listener made from line {} already: HAProxy binds it twice and the kernel shares its connections between them, where Strata takes one listener per address", quoted(&address), first.line);
                    leave_out(&mut table, at, &key, &why);
                }
                None => {
                    taken.listens.insert(address, at);
                }
            }
        }
        (table, backends)
    }

    /// An empty table for this frontend's mode, named `name` (or, when that is taken, `name`
    /// and a number).
    fn table(&self, names: &mut HashSet<String>, name: &str) -> Table {
        let mut table = Table::new(match self.mode {
            Mode::Http => "http",
            Mode::Tcp => "tcp",
        });
        let mut unique = name.to_string();
        let mut n = 1;
        while !names.insert(unique.clone()) {
            n += 1;
            unique = format!("{name}-{n}");
        }
        table.key("name", quoted(&unique));
        table
    }

    /// `backends` for a listener on `port` and the keys of the backend after it; a listener
    /// with no server to send requests to is left out. Whether it has `backends`.
    fn upstream_keys(&self, table: &mut Table, port: u16) -> bool {
        let Some(upstream) = &self.upstream else {
            let why = "no backend to send requests to: no `default_backend`, nor a `use_backend` without a condition (HAProxy answers 503)";
            leave_out(table, self.proxy.at(), self.proxy.label(), why);
            return false;
        };
        let any = upstream.backends(port, table);
        if !any {
            let b = &self.conf.proxies[upstream.index];
            let why = format!(
                "`{}` has no server Strata can send requests to (HAProxy answers 503)",
                b.label()
            );
            leave_out(table, upstream.at(), b.label(), &why);
        }
        upstream.keys(table);
        any
    }
}

/// The names and listen addresses the listeners made so far have taken.
#[derive(Default)]
struct Taken {
    names: HashSet<String>,
    /// Each address listened on, and where the `bind` that made it is.
    listens: HashMap<String, Pos>,
}

/// Leaves `table` out, with a note at `at` about `key` that says why.
fn leave_out(table: &mut Table, at: Pos, key: &str, why: &str) {
    table.left_out = true;
    table.note(at, key, format!("{LEFT_OUT}: {why}"));
}

/// The private key of the certificate file `cert`: the file itself when it holds one (or can't
/// be read here), or else the `.key` file beside it, where HAProxy looks for it. With it, why
/// `cert` was not looked in when it is not on this machine, or there but not a regular file of
/// at most [`MAX_PEM`] bytes (a device or a pipe, which could be read forever).
fn key_file(cert: &str) -> (String, Option<String>) {
    let Ok(meta) = std::fs::metadata(cert) else {
        let why = format!("{} is not on this machine: its private key is taken to be in it (HAProxy looks for it in {} when it is not); run the import where HAProxy runs, or check the `key` written", quoted(cert), quoted(&format!("{cert}.key")));
        return (cert.to_string(), Some(why));
    };
    if !meta.is_file() || meta.len() > MAX_PEM {
        let what = if meta.is_file() {
            "larger than a certificate chain (1 MiB)"
        } else {
            "not a regular file"
        };
        let why = format!("{} is {what}, and was not read: its private key is taken to be in it (HAProxy looks for it in {} when it is not)", quoted(cert), quoted(&format!("{cert}.key")));
        return (cert.to_string(), Some(why));
    }
    let mut pem = String::new();
    let read = std::fs::File::open(cert).and_then(|f| f.take(MAX_PEM).read_to_string(&mut pem));
    match read {
        Ok(_) if !pem.contains("PRIVATE KEY-----") => (format!("{cert}.key"), None),
        _ => (cert.to_string(), None),
    }
}

#[cfg(test)]
mod tests;
