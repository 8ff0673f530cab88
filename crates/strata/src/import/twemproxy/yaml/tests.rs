//! The nutcracker YAML reader: what it reads, and the line and column of what it refuses.

use super::*;
use crate::import::tests::{pos, problems};

fn scalar(text: &str, line: usize, column: usize) -> Scalar {
    Scalar {
        text: text.into(),
        at: pos(line, column),
    }
}

/// The errors for `source` as `line:column key: message`.
fn errors(source: &str) -> Vec<String> {
    problems(parse(source))
}

#[test]
fn import_yaml_reads_pools_keys_and_lists_with_their_places() {
    let source = "alpha:\n  listen: 127.0.0.1:22121\n  servers:\n   - 127.0.0.1:6379:1\n   - 127.0.0.1:6380:1 two\n\nbeta:\n  redis: true\n";
    let pools = parse(source).unwrap();
    assert_eq!(pools.len(), 2);
    assert_eq!((pools[0].name.as_str(), pools[0].at), ("alpha", pos(1, 1)));
    assert_eq!(
        pools[0].entries,
        vec![
            Entry {
                key: "listen".into(),
                at: pos(2, 3),
                value: Value::Scalar(scalar("127.0.0.1:22121", 2, 11)),
            },
            Entry {
                key: "servers".into(),
                at: pos(3, 3),
                value: Value::List(vec![
                    scalar("127.0.0.1:6379:1", 4, 6),
                    scalar("127.0.0.1:6380:1 two", 5, 6)
                ]),
            },
        ]
    );
    assert_eq!(
        pools[1].entries[0].value,
        Value::Scalar(scalar("true", 8, 10))
    );
}

#[test]
fn import_yaml_reads_comments_quotes_and_markers() {
    let source = "\u{feff}# a config\r\n---\r\nalpha: # the first\r\n    hash_tag: \"{}\" # braces\r\n    redis_auth: 'it''s # not a comment'\r\n    name: a#b\r\n    esc: \"a\\\"b\\\\c\\x41\\u00e9\"\r\n    # a comment between keys\r\n    servers:\r\n    - \"127.0.0.1:6379:1 one\" # same indent as the key\r\n    - plain\r\n";
    let pools = parse(source).unwrap();
    let values: Vec<_> = pools[0]
        .entries
        .iter()
        .map(|e| match &e.value {
            Value::Scalar(s) => vec![s.text.clone()],
            Value::List(items) => items.iter().map(|i| i.text.clone()).collect(),
            Value::Empty => vec![],
        })
        .collect();
    assert_eq!(
        values,
        vec![
            vec!["{}".to_string()],
            vec!["it's # not a comment".into()],
            vec!["a#b".into()],
            vec!["a\"b\\cAé".into()],
            vec!["127.0.0.1:6379:1 one".into(), "plain".into()],
        ]
    );
}

#[test]
fn import_yaml_reads_an_empty_value_and_an_empty_file() {
    let pools = parse("alpha:\n  servers:\n  redis: true\n").unwrap();
    assert_eq!(pools[0].entries[0].value, Value::Empty);
    assert!(parse("# nothing\n\n").unwrap().is_empty());
}

#[test]
fn import_yaml_refuses_what_it_does_not_read_each_with_its_place() {
    let source = "\
alpha:
  listen: 127.0.0.1:22121
\thash: md5
  servers: [a, b]
  hash_tag: |
  x: &anchor 1
   timeout: 400
  hash: \"open
  listen: again
  servers:
    - a: b
    - - nested
    -
beta: value
  skipped: under a refused line
- top
gamma:
  - orphan
  key: 'x' y
  good: 1
 bad: 2
  long: one
    two
alpha:
  listen: skipped too
";
    assert_eq!(
        errors(source),
        vec![
            "3:1 : a tab in the indentation (YAML indents with spaces only)",
            "4:12 alpha.servers: flow style ([...] or {...}) is not read; write one `- item` per line",
            "5:13 alpha.hash_tag: a block scalar (| or >) is not read; keep each value on one line",
            "6:6 alpha.x: anchors, aliases and tags (&, *, !) are not read; write the value itself",
            "7:4 alpha: indented 3 spaces, more than the pool's keys (2): a value continued on a second line is not read; keep each value on one line",
            "8:9 alpha.hash: the closing `\"` is missing (a quoted value must end on its line)",
            "9:3 alpha.listen: `listen` is already set on line 2",
            "11:7 alpha.servers: \"a: b\" holds `: `, which makes it a mapping; quote it if it is one value",
            "12:7 alpha.servers: a list inside a list is not read",
            "13:5 alpha.servers: an empty list item",
            "14:1 beta: `beta: ...` at the top level: twemproxy's top level holds pool names, each followed by its indented keys",
            "16:1 : a list at the top level: twemproxy's top level holds pool names, each followed by its indented keys",
            "18:3 gamma: a `- item` line with no `key:` right above it to belong to",
            "19:8 gamma.key: `y` after the closing quote",
            "21:2 gamma: indented 1 space where the pool's keys are indented 2",
            "23:5 gamma: indented 4 spaces, more than the pool's keys (2): a value continued on a second line is not read; keep each value on one line",
            "24:1 alpha: a pool named `alpha` is already on line 1",
        ]
    );
}

#[test]
fn import_yaml_refuses_items_out_of_line() {
    let source = "alpha:\n  servers:\n    - a\n   - b\n  x: 1\n - c\n";
    assert_eq!(
        errors(source),
        vec![
            "4:4 alpha.servers: indented 3 spaces where the items above are at 4",
            "6:2 alpha: a `- item` line with no `key:` right above it to belong to",
        ]
    );
    assert_eq!(
        errors("  listen: 1\n"),
        vec!["1:3 : an indented line before any pool name (a pool starts with `name:` at the start of a line)"]
    );
    assert_eq!(
        errors("alpha:\n  servers:\n    - a\n    x: 1\n"),
        vec!["4:5 alpha: indented 4 spaces, more than the pool's keys (2), but not a `- item`"]
    );
}
