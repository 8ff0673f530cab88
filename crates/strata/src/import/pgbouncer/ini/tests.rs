//! The pgbouncer.ini reader: sections, keys and values, comments, `%include`, and the line and
//! column of what it refuses.

use super::*;
use crate::import::tests::problems;

/// Each item as `[section]`, `key=value` or `%include file`, each with `@line:column` of its
/// key or name.
fn shape(source: &str) -> Vec<String> {
    parse(source)
        .unwrap_or_else(|e| panic!("refused: {e:?}"))
        .iter()
        .map(|item| match item {
            Item::Section(w) => format!("[{}]@{}:{}", w.text, w.at.line, w.at.column),
            Item::Pair { key, value } => format!(
                "{}={}@{}:{}",
                key.text, value.text, key.at.line, key.at.column
            ),
            Item::Include { at, file } => {
                format!("%include {}@{}:{}", file.text, at.line, at.column)
            }
        })
        .collect()
}

fn errors(source: &str) -> Vec<String> {
    problems(parse(source))
}

#[test]
fn import_pgbouncer_reads_sections_keys_and_values_as_pgbouncer_does() {
    assert_eq!(
        shape("[pgbouncer]\nlisten_port = 6432\n  pool_mode=transaction   \r\n\n[databases]\n* = host=10.0.0.1 port=5432\n"),
        vec![
            "[pgbouncer]@1:2",
            "listen_port=6432@2:1",
            "pool_mode=transaction@3:3",
            "[databases]@5:2",
            "*=host=10.0.0.1 port=5432@6:1",
        ]
    );
    // nothing is trimmed between the brackets, and keys keep their case
    assert_eq!(
        shape("[ PgBouncer ]\nListen_Port = 1\n"),
        vec!["[ PgBouncer ]@1:2", "Listen_Port=1@2:1"]
    );
    // an empty value, and a key in quotes
    assert_eq!(
        shape("[databases]\nfoodb =\n'my db' = host=10.0.0.1\n"),
        vec!["[databases]@1:2", "foodb=@2:1", "my db=host=10.0.0.1@3:1"]
    );
}

#[test]
fn import_pgbouncer_reads_comments_at_the_start_of_a_line_only() {
    assert_eq!(
        shape("; a comment\n  # another\n[pgbouncer] ; after a section too\nlogfile = /var/log/pgbouncer.log ; not a comment\n"),
        vec![
            "[pgbouncer]@3:2",
            "logfile=/var/log/pgbouncer.log ; not a comment@4:1",
        ]
    );
    // what follows a section's `]` is read as a line of its own
    assert_eq!(
        shape("[pgbouncer] listen_port = 1\n"),
        vec!["[pgbouncer]@1:2", "listen_port=1@1:13"]
    );
}

#[test]
fn import_pgbouncer_reads_an_include_with_a_blank_after_it() {
    assert_eq!(
        shape("%include /etc/pgbouncer/extra.ini  \n[pgbouncer]\n"),
        vec!["%include /etc/pgbouncer/extra.ini@1:1", "[pgbouncer]@2:2"]
    );
    assert_eq!(
        errors("%include\n"),
        vec!["1:1 : `%` does not begin a key: PgBouncer reads a key of letters, digits and `_.-*`, or one in single quotes ('my db')"]
    );
}

#[test]
fn import_pgbouncer_refuses_what_pgbouncer_cannot_read_each_with_its_place() {
    assert_eq!(
        errors("[pgbouncer\nlisten_port 6432\n\"my db\" = x\n[databases]\n"),
        vec![
            "1:1 : this `[` has no `]` after it on its line",
            "2:13 : `listen_port` has no `=` after it",
            "3:1 : `\"` does not begin a key: PgBouncer reads a key of letters, digits and `_.-*`, or one in single quotes ('my db')",
        ]
    );
    assert_eq!(
        errors("[databases]\n'' = x\n'my db = x\n"),
        vec![
            "2:1 : an empty quoted key",
            "3:1 : this `'` is never closed: a quoted key ends at the next `'`",
        ]
    );
}
