//! The haproxy.cfg reader: words, quotes, escapes, environment variables, comments, sections,
//! `.if` blocks, and the line and column of what it refuses.

use super::*;
use crate::import::tests::{pos, problems};

/// The words of `line` as HAProxy reads them.
fn split(line: &str) -> Vec<String> {
    let pseudo = Pseudo {
        file: "h.cfg",
        line: 7,
        section: "www",
    };
    words(line, &pseudo)
        .unwrap_or_else(|e| panic!("{line}: {e:?}"))
        .into_iter()
        .map(|w| w.text)
        .collect()
}

/// Why `line` is refused, as `column: message`.
fn refused(line: &str) -> String {
    let pseudo = Pseudo {
        file: "h.cfg",
        line: 1,
        section: "",
    };
    let e = words(line, &pseudo).expect_err("should be refused");
    format!("{}: {}", e.at.column, e.message)
}

/// Each section as `kind name: keyword|word, keyword|word`.
fn shape(source: &str) -> Vec<String> {
    parse(source, "h.cfg")
        .unwrap_or_else(|e| panic!("{e:?}"))
        .sections
        .iter()
        .map(|s| {
            let statements: Vec<String> = s
                .statements
                .iter()
                .map(|st| {
                    st.words
                        .iter()
                        .map(|w| w.text.as_str())
                        .collect::<Vec<_>>()
                        .join("|")
                })
                .collect();
            format!("{}: {}", s.head.joined(0), statements.join(", "))
        })
        .collect()
}

#[test]
fn import_haproxy_cfg_splits_words_on_spaces_and_tabs_and_ends_at_a_comment() {
    assert_eq!(
        split("  server\tweb1  10.0.0.1:80 check # the first"),
        vec!["server", "web1", "10.0.0.1:80", "check"]
    );
    // a comment needs no space before it
    assert_eq!(split("global#the global section"), vec!["global"]);
    assert!(split("   # only a comment").is_empty());
    assert!(split("").is_empty());
}

#[test]
fn import_haproxy_cfg_reads_quotes_and_escapes_as_haproxy_does() {
    // the equivalent spellings of HAProxy's own example, section 2.2
    let want = vec!["log-format", "%{+Q}o %t %s %{-Q}r"];
    for line in [
        r"log-format %{+Q}o\ %t\ %s\ %{-Q}r",
        r#"log-format "%{+Q}o %t %s %{-Q}r""#,
        "log-format '%{+Q}o %t %s %{-Q}r'",
        r#"log-format "%{+Q}o %t"' %s %{-Q}r'"#,
        r#"log-format "%{+Q}o %t"' %s'\ %{-Q}r"#,
    ] {
        assert_eq!(split(line), want, "{line}");
    }
    // a `#` quoted or escaped is a character; single quotes keep backslashes
    assert_eq!(split(r##"a "#x" '#y' \#z"##), vec!["a", "#x", "#y", "#z"]);
    assert_eq!(
        split(r"a '\n' \n\t\r \x41\x7a"),
        vec!["a", r"\n", "\n\t\r", "Az"]
    );
    assert_eq!(
        split(r#"a \"b\" \'c\' \\"#),
        vec!["a", "\"b\"", "'c'", "\\"]
    );
    // other escapes are not: the backslash stays
    assert_eq!(split(r"a \1 \$"), vec!["a", r"\1", r"\$"]);
    // an empty quoted word is a word
    assert_eq!(split(r#"a "" ''"#), vec!["a", "", ""]);
    // `$` is a variable inside double quotes only
    assert_eq!(
        split(r#"a $HOME '$HOME' "\$HOME""#),
        vec!["a", "$HOME", "$HOME", "$HOME"]
    );
}

#[test]
fn import_haproxy_cfg_reads_environment_variables_as_unset() {
    let pseudo = Pseudo {
        file: "h.cfg",
        line: 7,
        section: "www",
    };
    let words = words(r#"bind "${ADDR-10.0.0.1}:${PORT}" "$USER""#, &pseudo).unwrap();
    assert_eq!(words[1].text, "10.0.0.1:");
    assert_eq!(
        words[1].env,
        vec![
            Env {
                name: "ADDR".into(),
                default: Some("10.0.0.1".into())
            },
            Env {
                name: "PORT".into(),
                default: None
            },
        ]
    );
    assert_eq!(words[1].written, r#""${ADDR-10.0.0.1}:${PORT}""#);
    assert_eq!(words[1].at, pos(7, 6));
    // an unset variable alone is still a word, an empty one
    assert_eq!(
        (words[2].text.as_str(), words[2].env[0].name.as_str()),
        ("", "USER")
    );
    // `[*]`: each word of the value an argument, and none for an unset one
    assert_eq!(split(r#"a "${ARGS[*]}" b"#), vec!["a", "b"]);
    assert_eq!(split(r#"a "${ARGS[*]-x y}" b"#), vec!["a", "x", "y", "b"]);
    // the pseudo-variables HAProxy sets
    assert_eq!(
        split(r#"a "${.FILE}:${.LINE}" "$.SECTION""#),
        vec!["a", "h.cfg:7", "www"]
    );
}

#[test]
fn import_haproxy_cfg_refuses_what_haproxy_cannot_read_with_its_column() {
    assert!(refused(r#"bind "127.0.0.1:80"#).starts_with("6: this quote is never closed"));
    assert!(refused("log-format 'x").starts_with("12: this quote is never closed"));
    assert!(refused(r#"a "${HOME""#).starts_with("5: this `{` is never closed"));
    assert!(refused(r#"a "$1""#).starts_with("5: a variable name starts with a letter"));
    assert!(refused(r#"a "${.NOPE}""#).starts_with("6: HAProxy has no pseudo-variable `.NOPE`"));
    assert!(refused(r#"a "${X[1]}""#).starts_with("7: a truncated or invalid word expansion"));
    assert!(refused(r"a \x4").starts_with("3: a truncated or invalid hexadecimal sequence"));
}

#[test]
fn import_haproxy_cfg_groups_statements_under_the_section_above_them() {
    let source = "global\n  daemon\n\nfrontend www\n  bind :80\n  default_backend app\nbackend app\n  server a 10.0.0.1:80\ncache c\n  total-max-size 4\n";
    assert_eq!(
        shape(source),
        vec![
            "global: daemon",
            "frontend www: bind|:80, default_backend|app",
            "backend app: server|a|10.0.0.1:80",
            "cache c: total-max-size|4",
        ]
    );
    let cfg = parse(source, "h.cfg").unwrap();
    assert_eq!(cfg.sections[1].at(), pos(4, 1));
    assert_eq!(
        cfg.sections[1].statements[0].arg(0).map(|w| w.at),
        Some(pos(5, 8))
    );
    assert_eq!(
        problems(parse("  daemon\nglobal\n", "h.cfg")),
        vec!["1:3 : `daemon` before any section: HAProxy refuses it (\"unknown keyword out of section\")"]
    );
}

#[test]
fn import_haproxy_cfg_reads_the_if_branch_of_each_block_and_says_so() {
    let source = "global\n.if feature(QUIC)\n  a\n  .if defined(X)\n  b\n  .else\n  c\n  .endif\n.elif 1\n  d\n.else\n  e\n.endif\n  f\n";
    assert_eq!(shape(source), vec!["global: a, b, f"]);
    let notes = parse(source, "h.cfg").unwrap().notes;
    let said: Vec<(usize, &str)> = notes.iter().map(|n| (n.at.line, n.key.as_str())).collect();
    assert_eq!(said, vec![(2, ".if"), (4, ".if")]);
    assert!(notes[0]
        .message
        .starts_with("`.if feature(QUIC)`: HAProxy decides it when it starts"));
    // and nothing inside a branch left out is said
    let skipped = "global\n.if 0\n.else\n  .if defined(X)\n  .endif\n.endif\n";
    assert_eq!(parse(skipped, "h.cfg").unwrap().notes.len(), 1);
    assert_eq!(
        problems(parse(
            "global\n.if 1\n.else\n.elif 1\n.endif\n.endif\n.if 1\n",
            "h.cfg"
        )),
        vec![
            "4:1 .elif: after the `.else` on line 3",
            "6:1 .endif: no `.if` before it",
            "7:1 .if: this `.if` has no `.endif` after it",
        ]
    );
    assert_eq!(
        problems(parse("global\n.include x\n", "h.cfg")),
        vec!["2:1 .include: HAProxy has no such directive"]
    );
}

#[test]
fn import_haproxy_cfg_names_what_a_statement_sets() {
    let cfg = parse(
        "backend b\n  timeout server 5s\n  no option httpchk\n  server web1 10.0.0.1:80\n  balance roundrobin\n  option\n",
        "h.cfg",
    )
    .unwrap();
    let named: Vec<(String, String)> = cfg.sections[0]
        .statements
        .iter()
        .map(|s| (s.setting(), s.key()))
        .collect();
    assert_eq!(
        named,
        vec![
            ("timeout server".into(), "timeout server".into()),
            ("no option httpchk".into(), "no option httpchk".into()),
            ("server".into(), "server web1".into()),
            ("balance".into(), "balance".into()),
            ("option".into(), "option".into()),
        ]
    );
}
