//! PostgreSQL's own parser, through libpg_query (vendored under `libpg_query/`, compiled by
//! build.rs), and what the database layer asks of it: whether a statement only reads, so that
//! a replica may run it, and ([`shard`]) which shard keys it pins.
//!
//! The classification is conservative: a statement reads only if PostgreSQL parses it, every
//! statement in it is a `SELECT` (or `SHOW`, or `EXPLAIN` of such a `SELECT`), nothing in it
//! writes (no data-modifying `WITH`, no `SELECT INTO`), locks (`FOR UPDATE`/`SHARE`) or calls a
//! function outside a list of built-in ones that neither write nor depend on the session
//! (`nextval`, `set_config`, advisory locks, any user-defined function: all go to the primary).
//! What can't be parsed goes to the primary too, where PostgreSQL gives its own error.

use serde_json::Value;

mod ffi;
#[cfg(any(test, feature = "fuzz"))]
pub mod fuzz;
pub mod shard;

pub use shard::{shard_keys, KeyColumn, KeyValue, Keys, Pin};

/// Why a statement could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// PostgreSQL's message.
    pub message: String,
    /// Where in the statement (1-based character), when it says.
    pub position: Option<usize>,
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.position {
            Some(p) => write!(f, "{} at character {p}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for ParseError {}

/// The parse tree of `sql` as libpg_query's JSON (`{"version":...,"stmts":[...]}`).
pub fn parse_json(sql: &str) -> Result<String, ParseError> {
    ffi::parse(sql)
}

/// Queries longer than this go to the primary unclassified.
pub const MAX_CLASSIFIED: usize = 16 << 10;

/// Answers kept per thread, by a query's text with its literals blanked out: what a query
/// does depends on its words, not on the numbers and strings it compares with, and the same
/// query comes back with other values all the time. Emptied when full.
const KEPT: usize = 4096;

thread_local! {
    static ANSWERS: std::cell::RefCell<std::collections::HashMap<Box<str>, bool>> =
        std::cell::RefCell::new(std::collections::HashMap::new());
}

/// Whether every statement in `sql` only reads (see the crate's doc): `false` for anything
/// PostgreSQL can't parse, and for an empty query. Answers are kept by [`shape`], so a query
/// seen before with other literals costs a scan, not a parse.
pub fn read_only(sql: &str) -> bool {
    // a long query is not worth the parse, nor its shape the room
    if sql.len() > MAX_CLASSIFIED {
        return false;
    }
    let Some(key) = shape(sql) else {
        return classify(sql);
    };
    if let Some(known) = ANSWERS.with(|a| a.borrow().get(key.as_str()).copied()) {
        return known;
    }
    let answer = classify(sql);
    ANSWERS.with(|a| {
        let mut a = a.borrow_mut();
        if a.len() >= KEPT {
            a.clear();
        }
        a.insert(key.into_boxed_str(), answer);
    });
    answer
}

/// `sql` with each numeric literal (digits, at most one dot) and each plain string literal (`'...'`,
/// quotes doubled inside) replaced by a mark, or `None` when it has anything a plain scan
/// could misread: a NUL, comments, dollar quotes (a `$n` parameter is kept as written), strings with a prefix (`E'...'`,
/// `U&'...'`, `B'...'`), a number followed by a letter (`1e5`, `0x1F`), or a string or quoted
/// name that does not end. Two queries of the same shape differ only in
/// constants, which no classification looks at.
pub fn shape(sql: &str) -> Option<String> {
    let b = sql.as_bytes();
    // a NUL ends a query on the wire; no parse sees past it
    if b.contains(&0) {
        return None;
    }
    let mut out = String::with_capacity(sql.len());
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c >= 0x80;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let after_ident = i > 0 && ident(b[i - 1]);
        match c {
            // a parameter ($1, as drivers send with Parse) is kept as written; any other `$`
            // (dollar quoting, `$` inside a name) is not scanned
            b'$' => {
                let digits = b[i + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
                if digits == 0 || after_ident {
                    return None;
                }
                out.push_str(&sql[i..i + 1 + digits]);
                i += 1 + digits;
                // `$1a` is not a parameter followed by a word: not scanned either
                if b.get(i).is_some_and(|&c| ident(c) || c == b'$') {
                    return None;
                }
            }
            b'-' if b.get(i + 1) == Some(&b'-') => return None,
            b'/' if b.get(i + 1) == Some(&b'*') => return None,
            b'\'' => {
                // E'', B'', X'', N'' and U&'' strings read their insides otherwise
                if after_ident || (i > 0 && b[i - 1] == b'&') {
                    return None;
                }
                i += 1;
                loop {
                    match b.get(i) {
                        None => return None,
                        Some(b'\'') if b.get(i + 1) == Some(&b'\'') => i += 2,
                        Some(b'\'') => break,
                        Some(_) => i += 1,
                    }
                }
                out.push_str("'?'");
                i += 1;
            }
            // U&"..." reads its insides by its UESCAPE character, a string this scan blanks
            b'"' if i > 0 && b[i - 1] == b'&' => return None,
            b'"' => {
                // a quoted identifier is a word: kept whole
                let end = b[i + 1..].iter().position(|&x| x == b'"')? + i + 2;
                out.push_str(&sql[i..end]);
                i = end;
            }
            b'0'..=b'9' if !after_ident => {
                let digits = |i: &mut usize| {
                    while b.get(*i).is_some_and(u8::is_ascii_digit) {
                        *i += 1;
                    }
                };
                digits(&mut i);
                if b.get(i) == Some(&b'.') {
                    i += 1;
                    digits(&mut i);
                }
                // an exponent, a hex or binary literal, a second dot, or a number run into a
                // word: the lexer decides what that is, not this scan
                if b.get(i).is_some_and(|&c| ident(c) || c == b'.') {
                    return None;
                }
                out.push('0');
            }
            _ => {
                // up to the next byte an arm above looks at, copied whole: those are ASCII, so
                // the run ends on a character's boundary
                let end = b[i + 1..]
                    .iter()
                    .position(|c| matches!(c, b'$' | b'-' | b'/' | b'\'' | b'"' | b'0'..=b'9'))
                    .map_or(b.len(), |p| i + 1 + p);
                out.push_str(&sql[i..end]);
                i = end;
            }
        }
    }
    Some(out)
}

/// [`read_only`] without the kept answers.
fn classify(sql: &str) -> bool {
    // most statements that write start with a word no read starts with: not worth a parse
    let first = sql
        .trim_start_matches(|c: char| c.is_whitespace() || c == '(')
        .split(|c: char| !c.is_ascii_alphabetic())
        .next()
        .unwrap_or("");
    const READS: [&str; 6] = ["select", "with", "show", "explain", "table", "values"];
    if !READS.iter().any(|r| first.eq_ignore_ascii_case(r)) {
        return false;
    }
    let Ok(json) = parse_json(sql) else {
        return false;
    };
    let Ok(tree) = serde_json::from_str::<Value>(&json) else {
        return false;
    };
    let Some(stmts) = tree.get("stmts").and_then(Value::as_array) else {
        return false;
    };
    !stmts.is_empty()
        && stmts.iter().all(|s| {
            s.get("stmt").is_some_and(|stmt| match node(stmt) {
                Some(("SelectStmt", select)) => reads(select),
                Some(("VariableShowStmt", _)) => true,
                Some(("ExplainStmt", explain)) => explain
                    .get("query")
                    .and_then(node)
                    .is_some_and(|(kind, q)| kind == "SelectStmt" && reads(q)),
                _ => false,
            })
        })
}

/// A node as libpg_query writes it: `{"Kind": {fields}}`.
fn node(v: &Value) -> Option<(&str, &Value)> {
    let map = v.as_object()?;
    if map.len() != 1 {
        return None;
    }
    map.iter().next().map(|(k, v)| (k.as_str(), v))
}

/// Whether nothing under `v` writes, locks, or calls a function not known to only read.
fn reads(v: &Value) -> bool {
    match v {
        Value::Array(items) => items.iter().all(reads),
        Value::Object(map) => map.iter().all(|(key, value)| match key.as_str() {
            // writes, wherever they sit (a data-modifying WITH)
            "InsertStmt" | "UpdateStmt" | "DeleteStmt" | "MergeStmt" => false,
            // SELECT INTO makes a table; FOR UPDATE/SHARE takes row locks a standby refuses
            "intoClause" | "lockingClause" => false,
            "FuncCall" => function_reads(value) && reads(value),
            _ => reads(value),
        }),
        _ => true,
    }
}

/// A function call's name is one of the built-ins that read only (qualified, if at all, by
/// `pg_catalog`).
fn function_reads(call: &Value) -> bool {
    call.get("funcname")
        .and_then(builtin_name)
        .is_some_and(|name| READ_ONLY_FUNCTIONS.binary_search(&name).is_ok())
}

/// A name list (`funcname`, a type's `names`) that names a built-in: unqualified or qualified
/// by `pg_catalog`; its last part.
fn builtin_name(parts: &Value) -> Option<&str> {
    let names: Vec<&str> = parts
        .as_array()?
        .iter()
        .filter_map(|p| p.get("String")?.get("sval")?.as_str())
        .collect();
    match names.as_slice() {
        [name] | ["pg_catalog", name] => Some(*name),
        _ => None,
    }
}

/// Built-in functions that neither write nor read session state another connection would not
/// have (sorted, for the binary search).
pub(crate) const READ_ONLY_FUNCTIONS: &[&str] = &[
    "abs",
    "age",
    "array_agg",
    "array_length",
    "array_position",
    "array_to_string",
    "avg",
    "bit_length",
    "bool_and",
    "bool_or",
    "btrim",
    "cardinality",
    "ceil",
    "ceiling",
    "char_length",
    "character_length",
    "clock_timestamp",
    "concat",
    "concat_ws",
    "count",
    "date_part",
    "date_trunc",
    "decode",
    "encode",
    "every",
    "exp",
    "extract",
    "floor",
    "format",
    "gen_random_uuid",
    "generate_series",
    "greatest",
    "initcap",
    "json_agg",
    "json_array_length",
    "json_build_array",
    "json_build_object",
    "json_extract_path",
    "json_extract_path_text",
    "json_object_agg",
    "jsonb_agg",
    "jsonb_array_length",
    "jsonb_build_array",
    "jsonb_build_object",
    "jsonb_extract_path",
    "jsonb_extract_path_text",
    "jsonb_object_agg",
    "jsonb_path_exists",
    "jsonb_path_query",
    "jsonb_typeof",
    "least",
    "left",
    "length",
    "ln",
    "log",
    "lower",
    "lpad",
    "ltrim",
    "make_date",
    "make_interval",
    "make_timestamp",
    "max",
    "md5",
    "min",
    "mod",
    "now",
    "octet_length",
    "pg_is_in_recovery",
    "pg_last_wal_receive_lsn",
    "pg_last_wal_replay_lsn",
    "position",
    "power",
    "random",
    "regexp_match",
    "regexp_matches",
    "regexp_replace",
    "regexp_split_to_array",
    "repeat",
    "replace",
    "reverse",
    "right",
    "round",
    "row_number",
    "row_to_json",
    "rpad",
    "rtrim",
    "sign",
    "split_part",
    "sqrt",
    "starts_with",
    "statement_timestamp",
    "stddev",
    "string_agg",
    "string_to_array",
    "strpos",
    "substr",
    "substring",
    "sum",
    "timezone",
    "to_char",
    "to_date",
    "to_json",
    "to_jsonb",
    "to_number",
    "to_timestamp",
    "transaction_timestamp",
    "translate",
    "trim",
    "trunc",
    "unnest",
    "upper",
    "variance",
    "version",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_function_list_is_sorted() {
        assert!(READ_ONLY_FUNCTIONS.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn reads_are_told_from_writes_by_postgresqls_parser() {
        let reads = [
            "SELECT abalance FROM pgbench_accounts WHERE aid = 42",
            "select 1; select 2",
            "  (SELECT 1) UNION (SELECT 2)",
            "WITH t AS (SELECT * FROM a) SELECT count(*) FROM t JOIN b USING (id)",
            "SELECT lower(name), pg_catalog.now() FROM users WHERE id IN (SELECT id FROM admins)",
            "SHOW search_path",
            "EXPLAIN SELECT * FROM a",
            "SELECT 'INSERT INTO a VALUES (1)', \"UpdateStmt\" FROM x",
            "VALUES (1), (2)",
            "TABLE accounts",
        ];
        for sql in reads {
            assert!(read_only(sql), "{sql}");
        }
        let writes = [
            "INSERT INTO a VALUES (1)",
            "UPDATE a SET x = 1",
            "select 1; delete from a",
            "WITH d AS (DELETE FROM a RETURNING *) SELECT * FROM d",
            "SELECT * FROM a FOR UPDATE",
            "SELECT * FROM a FOR SHARE",
            "SELECT * INTO b FROM a",
            "SELECT nextval('s')",
            "SELECT set_config('search_path', 'x', false)",
            "SELECT pg_advisory_lock(1)",
            "SELECT my_function(1)",
            "SELECT public.lower('x')",
            "SELECT count(*) FROM a WHERE f(b)",
            "EXPLAIN ANALYZE DELETE FROM a",
            "SELECT FROM WHERE",
            "",
            "BEGIN",
            "SET x = 1",
        ];
        for sql in writes {
            assert!(!read_only(sql), "{sql}");
        }
    }

    #[test]
    fn queries_that_differ_in_constants_share_a_shape_and_nothing_else_does() {
        let same = [
            (
                "SELECT a FROM t WHERE id = 42",
                "SELECT a FROM t WHERE id = 7",
            ),
            ("select 'x''y', 1.5 from t1", "select 'zz', 2 from t1"),
            (
                "SELECT \"a'b\" FROM t WHERE x = 'q'",
                "SELECT \"a'b\" FROM t WHERE x = 'r'",
            ),
        ];
        for (a, b) in same {
            assert_eq!(shape(a), shape(b), "{a} / {b}");
            assert!(shape(a).is_some());
        }
        // parameters are part of the shape, as written
        assert_eq!(
            shape("SELECT a FROM t WHERE id = $1 AND b = 5").as_deref(),
            Some("SELECT a FROM t WHERE id = $1 AND b = 0")
        );
        // digits inside names stay, others are constants; text between is copied whole,
        // multibyte characters too
        assert_eq!(
            shape("SELECT ü, x1 FROM t2 WHERE a = 5 AND b-1 = 2/3.5 AND ö1 = 'ä'").as_deref(),
            Some("SELECT ü, x1 FROM t2 WHERE a = 0 AND b-0 = 0/0 AND ö1 = '?'")
        );
        assert_ne!(shape("SELECT $1"), shape("SELECT $2"));
        assert_ne!(shape("SELECT lower('x')"), shape("SELECT nextval('x')"));
        assert_ne!(shape("SELECT a FROM t1"), shape("SELECT a FROM t2"));
        for unsure in [
            "SELECT 1 -- ' comment",
            "SELECT /* x */ 1",
            "SELECT $$a$$",
            "SELECT $tag$a$tag$",
            "SELECT a$1 FROM t",
            "SELECT $1a",
            "SELECT $1$x$1$",
            "SELECT E'\\''",
            "SELECT 'open",
            "SELECT \"open",
            "SELECT 1e5",
            "SELECT 1.2.3",
            "SELECT U&'\\0041'",
            "SELECT U&\"lowe!0072\" UESCAPE '!' ('x')",
            "SELECT 'a\0b'",
            "SELECT 0x1F",
        ] {
            assert_eq!(shape(unsure), None, "{unsure}");
        }
        // the kept answer is the parse's, whichever query of the shape came first
        assert!(read_only("SELECT a FROM t WHERE id = 1"));
        assert!(read_only("SELECT a FROM t WHERE id = 2"));
        assert!(!read_only("SELECT nextval('a') FROM t WHERE id = 1"));
        assert!(!read_only("SELECT nextval('b') FROM t WHERE id = 2"));
    }

    #[test]
    fn a_statement_that_does_not_parse_says_why() {
        let e = parse_json("SELECT FROM WHERE").unwrap_err();
        assert!(e.message.contains("syntax error"), "{e}");
        assert!(e.position.is_some());
        assert!(parse_json("SELECT 1").unwrap().contains("SelectStmt"));
    }

    #[test]
    fn threads_parse_at_once() {
        let threads: Vec<_> = (0..4)
            .map(|i| {
                std::thread::spawn(move || {
                    for j in 0..200 {
                        assert!(read_only(&format!("SELECT {i} + {j} FROM t")));
                        assert!(!read_only(&format!("UPDATE t SET a = {j}")));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
    }
}
