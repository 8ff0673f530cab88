//! A pgbouncer.ini's sections read into what PgBouncer makes of them, checked as its loader
//! checks them: `[pgbouncer]`'s settings, each `[databases]`, `[users]` and `[peers]` entry's
//! connection string. What PgBouncer would not start with is a problem; a value it overrides,
//! or a file it would include, is a note.

use super::connstr::{self, atoi, Param};
use super::ini::{Item, Word};
use super::settings::{self, Key, Value, LOAD_BALANCE_HOSTS, NO_DEFAULT, POOL_MODES};
use crate::import::{quoted, Note, Pos, NOT_TRANSLATED};

/// The connection parameters PgBouncer takes in a `[databases]` entry (`parse_database`).
const DATABASE_PARAMS: &[&str] = &[
    "dbname",
    "host",
    "port",
    "user",
    "password",
    "auth_user",
    "auth_dbname",
    "client_encoding",
    "datestyle",
    "timezone",
    "pool_size",
    "min_pool_size",
    "reserve_pool",
    "reserve_pool_size",
    "query_wait_timeout",
    "max_db_connections",
    "max_db_client_connections",
    "server_lifetime",
    "load_balance_hosts",
    "pool_mode",
    "connect_query",
    "application_name",
    "auth_query",
];

/// The settings PgBouncer takes in a `[users]` entry (`parse_user`).
const USER_PARAMS: &[&str] = &[
    "pool_mode",
    "pool_size",
    "reserve_pool_size",
    "max_user_connections",
    "transaction_timeout",
    "idle_transaction_timeout",
    "query_timeout",
    "query_wait_timeout",
    "client_idle_timeout",
    "max_user_client_connections",
];

/// The connection parameters PgBouncer takes in a `[peers]` entry (`parse_peer`).
const PEER_PARAMS: &[&str] = &["host", "port", "pool_size"];

/// A `[pgbouncer]` key PgBouncer takes, and its value.
pub(super) struct Setting<'a> {
    pub(super) key: &'static Key,
    pub(super) name: &'a Word,
    pub(super) value: &'a Word,
    pub(super) read: Value,
}

/// A `[databases]`, `[users]` or `[peers]` entry: a name and its connection string.
pub(super) struct Entry<'a> {
    pub(super) name: &'a Word,
    pub(super) value: &'a Word,
    pub(super) params: Vec<Param>,
}

impl Entry<'_> {
    /// The parameter `key`: the last given, as PgBouncer takes it.
    pub(super) fn param(&self, key: &str) -> Option<&Param> {
        self.params.iter().rev().find(|p| p.key.text == key)
    }
}

/// The sections of a file PgBouncer would start with.
pub(super) struct Conf<'a> {
    /// Where the first `[pgbouncer]` is.
    pub(super) main: Pos,
    /// The `[pgbouncer]` keys, each as it stands at the end of the file.
    pub(super) settings: Vec<Setting<'a>>,
    /// The `[databases]` entries, each name's last, in file order; `*` among them.
    pub(super) databases: Vec<Entry<'a>>,
    /// Where the first `[databases]` is.
    pub(super) databases_at: Option<Pos>,
    pub(super) users: Vec<Entry<'a>>,
    pub(super) peers: Vec<Entry<'a>>,
    /// About the file as a whole: what PgBouncer overrides, includes, peers.
    pub(super) notes: Vec<Note>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Section {
    Main,
    Databases,
    Users,
    Peers,
    /// One PgBouncer does not have (a problem already).
    Unknown,
}

impl<'a> Conf<'a> {
    /// Reads `items`; on failure, everything in them PgBouncer would refuse to start with.
    pub(super) fn read(items: &'a [Item]) -> Result<Conf<'a>, Vec<Note>> {
        let mut conf = Conf {
            main: Pos { line: 1, column: 1 },
            settings: Vec::new(),
            databases: Vec::new(),
            databases_at: None,
            users: Vec::new(),
            peers: Vec::new(),
            notes: Vec::new(),
        };
        let mut problems = Vec::new();
        let mut main = None;
        let mut section = None;
        for item in items {
            match item {
                Item::Include { at, file } => {
                    let why = format!("{NOT_TRANSLATED}: {} is not read (PgBouncer opens it from the directory it was started in): translate it on its own, and merge what it gives into this translation", quoted(&file.text));
                    conf.notes.push(Note::new(*at, "%include", why));
                }
                Item::Section(name) => {
                    section = Some(match name.text.as_str() {
                        "pgbouncer" => {
                            if main.is_some() {
                                conf.reset(name.at);
                            }
                            main.get_or_insert(name.at);
                            Section::Main
                        }
                        "databases" => {
                            conf.databases_at.get_or_insert(name.at);
                            Section::Databases
                        }
                        "users" => Section::Users,
                        "peers" => Section::Peers,
                        other => {
                            let why = format!("PgBouncer has no section [{other}] (it has [pgbouncer], [databases], [users] and [peers], in lower case, with nothing else between the brackets)");
                            problems.push(Note::new(name.at, "", why));
                            Section::Unknown
                        }
                    });
                }
                Item::Pair { key, value } => match section {
                    None => {
                        let why = "a key before any section: PgBouncer takes keys in [pgbouncer], [databases], [users] and [peers] only";
                        problems.push(Note::new(key.at, &key.text, why));
                    }
                    Some(Section::Main) => conf.setting(key, value, &mut problems),
                    Some(Section::Databases) => conf.database(key, value, &mut problems),
                    Some(Section::Users) => conf.user(key, value, &mut problems),
                    Some(Section::Peers) => conf.peer(key, value, &mut problems),
                    Some(Section::Unknown) => {}
                },
            }
        }
        match main {
            Some(at) => conf.main = at,
            None => problems.push(Note::new(
                Pos { line: 1, column: 1 },
                "",
                "no [pgbouncer] section: PgBouncer refuses a file without one (\"main section missing\")",
            )),
        }
        if problems.is_empty() {
            conf.notes.sort_by_key(|n| n.at);
            Ok(conf)
        } else {
            problems.sort_by_key(|p| p.at);
            Err(problems)
        }
    }

    /// The `[pgbouncer]` key `name`, when the file sets it.
    pub(super) fn get(&self, name: &str) -> Option<&Setting<'a>> {
        self.settings.iter().find(|s| s.key.name == name)
    }

    /// `[pgbouncer]` again, at `at`: PgBouncer sets every key that has a default back to it.
    fn reset(&mut self, at: Pos) {
        let notes = &mut self.notes;
        self.settings.retain(|s| {
            if NO_DEFAULT.contains(&s.key.name) {
                return true;
            }
            let why = format!("{NOT_TRANSLATED}: PgBouncer sets it back to its default at the [pgbouncer] on line {}, the section begun again", at.line);
            notes.push(Note::new(s.name.at, &format!("pgbouncer.{}", s.key.name), why));
            false
        });
    }

    fn setting(&mut self, name: &'a Word, value: &'a Word, problems: &mut Vec<Note>) {
        let key = format!("pgbouncer.{}", name.text);
        let Some(k) = settings::key(&name.text) else {
            let why = "PgBouncer has no such key (it refuses the file: \"unknown parameter\")";
            problems.push(Note::new(name.at, &key, why));
            return;
        };
        let read = match k.kind.read(&value.text) {
            Ok(v) => v,
            Err(why) => {
                let why = format!("{}: {why}, which PgBouncer refuses", quoted(&value.text));
                problems.push(Note::new(value.at, &key, why));
                return;
            }
        };
        if k.name == "listen_port" && !matches!(read, Value::Int(0..=65535)) {
            let why = format!(
                "{}: not a port (0 to 65535), which PgBouncer can't listen on",
                quoted(&value.text)
            );
            problems.push(Note::new(value.at, &key, why));
            return;
        }
        if k.name == "auth_dbname" && value.text == "pgbouncer" {
            let why =
                "\"pgbouncer\" is PgBouncer's admin console, which it refuses as `auth_dbname`";
            problems.push(Note::new(value.at, &key, why));
            return;
        }
        let setting = Setting {
            key: k,
            name,
            value,
            read,
        };
        match self.settings.iter_mut().find(|s| s.key.name == k.name) {
            Some(earlier) => {
                let why = overridden(name.at);
                self.notes.push(Note::new(earlier.name.at, &key, why));
                *earlier = setting;
            }
            None => self.settings.push(setting),
        }
    }

    fn database(&mut self, name: &'a Word, value: &'a Word, problems: &mut Vec<Note>) {
        let key = format!("databases.{}", name.text);
        if name.text == "pgbouncer" {
            let why = "the database name \"pgbouncer\" is PgBouncer's admin console's, which it refuses here";
            problems.push(Note::new(name.at, &key, why));
            return;
        }
        let entry = entry(name, value).and_then(|e| {
            check_params(&e, DATABASE_PARAMS, "connection parameter")?;
            for p in &e.params {
                let text = p.value.text.as_str();
                let refused = match p.key.text.as_str() {
                    "port" if atoi(text) == 0 => Some("not a port"),
                    "pool_mode" if !one_of(POOL_MODES, text) => Some("not a pool mode"),
                    "load_balance_hosts" if !one_of(LOAD_BALANCE_HOSTS, text) => {
                        Some("neither disable nor round-robin")
                    }
                    _ => None,
                };
                if let Some(why) = refused {
                    return Err((p.value.at, format!("{}: {why}", quoted(text))));
                }
            }
            Ok(e)
        });
        let entry = match entry {
            Ok(e) => e,
            // PgBouncer reads the fallback's connection string when a client asks for a database
            // not listed, and fails that client then
            Err((at, why)) if name.text == "*" => {
                let why = format!("{NOT_TRANSLATED}: {why}: PgBouncer reads it when a client asks for a database not listed, and fails that client then");
                self.notes.push(Note::new(at, &key, why));
                return;
            }
            Err((at, why)) => {
                problems.push(Note::new(at, &key, why));
                return;
            }
        };
        replace(&mut self.databases, entry, &key, &mut self.notes);
    }

    fn user(&mut self, name: &'a Word, value: &'a Word, problems: &mut Vec<Note>) {
        let key = format!("users.{}", name.text);
        let entry = entry(name, value).and_then(|e| {
            check_params(&e, USER_PARAMS, "user setting")?;
            match e.param("pool_mode") {
                Some(p) if !one_of(POOL_MODES, &p.value.text) => Err((
                    p.value.at,
                    format!("{}: not a pool mode", quoted(&p.value.text)),
                )),
                _ => Ok(e),
            }
        });
        match entry {
            Ok(e) => replace(&mut self.users, e, &key, &mut self.notes),
            Err((at, why)) => problems.push(Note::new(at, &key, why)),
        }
    }

    fn peer(&mut self, name: &'a Word, value: &'a Word, problems: &mut Vec<Note>) {
        let key = format!("peers.{}", name.text);
        let id_ok = name.text.bytes().all(|b| b.is_ascii_digit())
            && name
                .text
                .parse::<u32>()
                .is_ok_and(|n| (1..=65535).contains(&n));
        if !id_ok {
            let why = "a peer's id is a number from 1 to 65535";
            problems.push(Note::new(name.at, &key, why));
            return;
        }
        let entry = entry(name, value).and_then(|e| {
            check_params(&e, PEER_PARAMS, "peer parameter")?;
            if let Some(p) = e.param("port").filter(|p| atoi(&p.value.text) == 0) {
                let why = format!("{}: not a port", quoted(&p.value.text));
                return Err((p.value.at, why));
            }
            if e.param("host").is_none() {
                let why = "no `host=`, which PgBouncer requires of a peer".to_string();
                return Err((value.at, why));
            }
            Ok(e)
        });
        match entry {
            Ok(e) => replace(&mut self.peers, e, &key, &mut self.notes),
            Err((at, why)) => problems.push(Note::new(at, &key, why)),
        }
    }
}

/// The entry `name = value`, its connection string read.
fn entry<'a>(name: &'a Word, value: &'a Word) -> Result<Entry<'a>, (Pos, String)> {
    Ok(Entry {
        name,
        value,
        params: connstr::parse(value)?,
    })
}

/// Refuses a parameter of `e` outside `known`, as PgBouncer does.
fn check_params(e: &Entry<'_>, known: &[&str], what: &str) -> Result<(), (Pos, String)> {
    match e
        .params
        .iter()
        .find(|p| !known.contains(&p.key.text.as_str()))
    {
        Some(p) => Err((
            p.key.at,
            format!("PgBouncer has no {what} `{}`", p.key.text),
        )),
        None => Ok(()),
    }
}

fn one_of(choices: &[&str], text: &str) -> bool {
    choices.iter().any(|c| c.eq_ignore_ascii_case(text))
}

/// Why a value set again on line `at` is not translated.
fn overridden(at: Pos) -> String {
    format!(
        "{NOT_TRANSLATED}: line {} sets it again, and PgBouncer takes that",
        at.line
    )
}

/// Adds `entry` to `entries`, in place of an earlier one of its name, which gets a note.
fn replace<'a>(entries: &mut Vec<Entry<'a>>, entry: Entry<'a>, key: &str, notes: &mut Vec<Note>) {
    match entries.iter_mut().find(|e| e.name.text == entry.name.text) {
        Some(earlier) => {
            notes.push(Note::new(earlier.name.at, key, overridden(entry.name.at)));
            *earlier = entry;
        }
        None => entries.push(entry),
    }
}
