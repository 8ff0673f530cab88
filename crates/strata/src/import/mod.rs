//! `strata import`: another proxy's config file translated into a Strata config on stdout, and
//! what could not be translated listed on stderr, each with its line and why.

mod haproxy;
mod keepalived;
mod pgbouncer;
mod table;
mod twemproxy;

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;

pub use table::{commented, Item, Line, Table};

/// The configs `strata import` reads: one subcommand each, all taking the file to translate.
#[derive(Subcommand)]
pub enum Source {
    /// Print the Strata config for a twemproxy (nutcracker) YAML file: one [[cache]] per pool,
    /// listening where the pool listened.
    Twemproxy {
        /// The nutcracker config, such as /etc/nutcracker/nutcracker.yml.
        #[arg(value_name = "FILE.yml")]
        file: PathBuf,
    },
    /// Print the Strata config for a keepalived config: one [[vip]] per vrrp_instance, on the
    /// same interface, vrid and addresses.
    Keepalived {
        /// The keepalived config, such as /etc/keepalived/keepalived.conf.
        #[arg(value_name = "keepalived.conf")]
        file: PathBuf,
    },
    /// Print the Strata config for a PgBouncer config: one [[database]] listener, where
    /// PgBouncer listened, in front of the servers its databases are on.
    Pgbouncer {
        /// The PgBouncer config, such as /etc/pgbouncer/pgbouncer.ini.
        #[arg(value_name = "pgbouncer.ini")]
        file: PathBuf,
    },
    /// Print the Strata config for a HAProxy config: one [[http]] or [[tcp]] listener per
    /// address each frontend binds, in front of its default backend's servers.
    Haproxy {
        /// The HAProxy config, such as /etc/haproxy/haproxy.cfg.
        #[arg(value_name = "haproxy.cfg")]
        file: PathBuf,
    },
}

/// How a note on what the translation drops begins.
pub const NOT_TRANSLATED: &str = "not translated";
/// How a note on a line kept as written (a [`Line`] with `kept` set) begins.
pub const KEPT: &str = "kept as written, so `strata check` refuses it until it is changed";

/// A line and column in the imported file, both from 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Pos {
    /// The line, from 1.
    pub line: usize,
    /// The column in characters, from 1.
    pub column: usize,
}

/// A remark about one place in the imported file: an error that stops the import, or a note
/// about what the translation could not carry over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// Where it is.
    pub at: Pos,
    /// What it is about, such as `pool` or `pool.key`; empty for the file as a whole.
    pub key: String,
    /// What is wrong or lost, and why.
    pub message: String,
}

impl Note {
    /// A note at `at` about `key`.
    pub fn new(at: Pos, key: &str, message: impl Into<String>) -> Note {
        Note {
            at,
            key: key.to_string(),
            message: message.into(),
        }
    }

    /// `file:line:column: `key`: message`, as `strata check` writes its problems.
    pub fn located<'a>(&'a self, file: &'a str) -> impl fmt::Display + 'a {
        Located { note: self, file }
    }
}

impl fmt::Display for Note {
    /// The note without its place: `` `key`: message ``, each control character in them
    /// escaped (`\n`): what the imported file spells with escapes can't end a comment line
    /// of the output, where the rest would be read as config, nor drive a terminal.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.key.is_empty() {
            write!(f, "`{}`: ", escaped(&self.key))?;
        }
        f.write_str(&escaped(&self.message))
    }
}

struct Located<'a> {
    note: &'a Note,
    file: &'a str,
}

impl fmt::Display for Located<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Pos { line, column } = self.note.at;
        write!(f, "{}:{line}:{column}: {}", self.file, self.note)
    }
}

/// What an import made of a file that could be read.
#[derive(Debug)]
pub struct Translation {
    /// The Strata config, header comment first.
    pub toml: String,
    /// What was not translated, or not as it was, in file order.
    pub notes: Vec<Note>,
    /// The sections (pools, instances) the file had.
    pub sections: usize,
    /// What a section is called in the other proxy's words: "pool", "vrrp_instance".
    pub section: &'static str,
    /// Those of them that are only in the output as a comment.
    pub left_out: usize,
}

impl Translation {
    /// `toml` and `notes` (the header, and what is about the file as a whole), then each
    /// section's table after a blank line, and its notes; `section` is what a section is called.
    pub fn new(
        toml: String,
        notes: Vec<Note>,
        section: &'static str,
        tables: Vec<Table>,
    ) -> Translation {
        let mut translation = Translation {
            toml,
            notes,
            sections: tables.len(),
            section,
            left_out: 0,
        };
        for table in tables {
            translation.left_out += usize::from(table.left_out);
            translation.toml.push('\n');
            translation.toml.push_str(&table.render());
            translation.notes.extend(table.notes);
        }
        translation
    }
}

/// Runs `strata import`: the translation on stdout, notes on stderr; exit 64 when the file
/// is not a config the other proxy would load (nothing is printed then), 66 when it can't be
/// read.
pub fn run(source: &Source) -> ExitCode {
    match source {
        Source::Twemproxy { file } => import(file, twemproxy::translate),
        Source::Keepalived { file } => import(file, keepalived::translate),
        Source::Pgbouncer { file } => import(file, pgbouncer::translate),
        Source::Haproxy { file } => import(file, haproxy::translate),
    }
}

/// An importer: the text of a file and its name (for the output's comments) to a translation,
/// or the problems that make the file one the other proxy would not load.
pub type Translate = fn(&str, &str) -> Result<Translation, Vec<Note>>;

/// Every importer, by the other proxy's name (for the fuzz target, which feeds each any text).
pub const TRANSLATORS: [(&str, Translate); 4] = [
    ("twemproxy", twemproxy::translate),
    ("keepalived", keepalived::translate),
    ("pgbouncer", pgbouncer::translate),
    ("haproxy", haproxy::translate),
];

fn import(path: &Path, translate: Translate) -> ExitCode {
    // the name goes into the config's comments: a newline in it must not end one
    let file = escaped(&path.display().to_string());
    let source = match std::fs::read_to_string(path) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("strata: cannot read {file}: {e}");
            return ExitCode::from(crate::EXIT_NO_INPUT);
        }
    };
    match translate(&source, &file) {
        Ok(t) => {
            let mut out = std::io::stdout().lock();
            if let Err(e) = out.write_all(t.toml.as_bytes()).and_then(|()| out.flush()) {
                eprintln!("strata: cannot write the translation: {e}");
                return ExitCode::FAILURE;
            }
            for note in &t.notes {
                eprintln!("{}", note.located(&file));
            }
            if !t.notes.is_empty() {
                eprintln!(
                    "strata: {} of {} translated from {file}, {} above",
                    t.sections - t.left_out,
                    count(t.sections, t.section),
                    count(t.notes.len(), "note"),
                );
            }
            ExitCode::SUCCESS
        }
        Err(problems) => {
            for p in &problems {
                eprintln!("{}", p.located(&file));
            }
            eprintln!(
                "strata: {file} has {}; nothing was translated",
                count(problems.len(), "problem")
            );
            ExitCode::from(crate::EXIT_BAD_CONFIG)
        }
    }
}

/// "1 pool", "2 pools".
fn count(n: usize, what: &str) -> String {
    format!("{n} {what}{}", if n == 1 { "" } else { "s" })
}

/// `s` as a TOML basic string, quotes included.
pub fn quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c => push_escaped(&mut out, c),
        }
    }
    out.push('"');
    out
}

/// `s` with each control character escaped as in a TOML string (`\n`, `\u001B`), the rest as
/// it is.
fn escaped(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        push_escaped(&mut out, c);
    }
    out
}

/// Pushes `c` to `out`, a control character as its TOML escape.
fn push_escaped(out: &mut String, c: char) {
    match c {
        '\n' => out.push_str("\\n"),
        '\t' => out.push_str("\\t"),
        '\r' => out.push_str("\\r"),
        c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
        c => out.push(c),
    }
}

/// `ms` milliseconds as a Strata duration: "2s", "100ms".
pub fn duration(ms: u64) -> String {
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

/// The directory the imported `file` is in, absolute: where the other proxy took the relative
/// paths in it from (PgBouncer's `auth_file`, HAProxy's `crt` with `default-path config`).
pub fn directory(file: &str) -> PathBuf {
    let parent = Path::new(file).parent().unwrap_or(Path::new(""));
    if parent.is_absolute() {
        parent.to_path_buf()
    } else {
        std::env::current_dir().unwrap_or_default().join(parent)
    }
}

/// The problems `strata check` finds in a translated piece of config read alone, as
/// `` `key`: why ``.
pub fn check(toml: &str) -> Result<(), Vec<String>> {
    match strata_config::parse(toml, "translation", Path::new(".")) {
        Ok(_) => Ok(()),
        Err(e) if e.problems().is_empty() => Err(vec![e.to_string()]),
        Err(e) => Err(e
            .problems()
            .iter()
            .map(|p| format!("`{}`: {}", p.key, p.message))
            .collect()),
    }
}

#[cfg(test)]
mod tests;
