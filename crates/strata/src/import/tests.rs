//! The shared pieces of `strata import`: quoting, notes and the check on a translation; and
//! the helpers every importer's tests read their results with.

use std::fmt::Debug;

use super::*;

/// The translation of `source` by `translate`, which must succeed; `file` names it.
pub(super) fn translated(translate: Translate, source: &str, file: &str) -> Translation {
    translate(source, file).unwrap_or_else(|e| panic!("refused: {e:?}"))
}

/// The notes as `line key: message`.
pub(super) fn notes(t: &Translation) -> Vec<String> {
    t.notes
        .iter()
        .map(|n| format!("{} {}: {}", n.at.line, n.key, n.message))
        .collect()
}

/// The problems of a refused `result` as `line:column key: message`.
pub(super) fn problems<T: Debug>(result: Result<T, Vec<Note>>) -> Vec<String> {
    result
        .expect_err("should be refused")
        .iter()
        .map(|n| format!("{}:{} {}: {}", n.at.line, n.at.column, n.key, n.message))
        .collect()
}

/// The uncommented lines of the output, comments and blank lines left out.
pub(super) fn config(t: &Translation) -> Vec<&str> {
    t.toml
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect()
}

/// Asserts that `t` passes `strata check`, and that no note says the check refused it (the
/// importer's bug).
pub(super) fn passes_strata_check(t: &Translation) {
    assert!(
        !t.notes.iter().any(|n| n.message.contains("bug")),
        "{:?}",
        t.notes
    );
    assert_eq!(check(&t.toml), Ok(()), "{}", t.toml);
}

pub(super) fn pos(line: usize, column: usize) -> Pos {
    Pos { line, column }
}

#[test]
fn import_quotes_toml_strings() {
    assert_eq!(quoted("a\"b\\c"), r#""a\"b\\c""#);
    assert_eq!(quoted("{}"), r#""{}""#);
    assert_eq!(quoted("x\ny\u{1}"), r#""x\ny\u0001""#);
}

#[test]
fn import_notes_read_like_strata_check_problems() {
    let note = Note::new(pos(3, 5), "alpha.backlog", "not translated");
    assert_eq!(
        note.located("n.yml").to_string(),
        "n.yml:3:5: `alpha.backlog`: not translated"
    );
    assert_eq!(note.to_string(), "`alpha.backlog`: not translated");
}

#[test]
fn import_check_lists_what_strata_check_refuses() {
    let pool =
        "[[cache]]\nname = \"a\"\nlisten = \"127.0.0.1:0\"\nservers = [\"127.0.0.1:6379:1\"]\n";
    assert_eq!(check(pool), Ok(()));
    let bad = pool.replace("127.0.0.1:6379:1", "cache-1:6379:1");
    assert_eq!(
        check(&bad),
        Err(vec![
            "`cache[0].servers[0]`: \"cache-1\" is not an IP address; host names are not resolved in this version".into()
        ])
    );
}

#[test]
fn import_notes_escape_control_characters_to_stay_on_their_line() {
    let note = Note::new(pos(2, 1), "a\nb", "\"x\" then\n[admin]\r\n\u{1b}[31m\tred");
    let said = "`a\\nb`: \"x\" then\\n[admin]\\r\\n\\u001B[31m\\tred";
    assert_eq!(note.to_string(), said);
    assert_eq!(note.located("f").to_string(), format!("f:2:1: {said}"));
    assert_eq!(commented(&[note]), format!("# line 2: {said}\n"));
}
