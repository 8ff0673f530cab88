//! The classifier's fuzz entry point (the `pg_classify` target in fuzz/).

/// Any text, as a client could send it in a simple query. Differential: when the classifier
/// (which walks the parse tree as JSON values) says a query only reads, a second reading of
/// the same tree, done on its text with no JSON parser, must agree: every statement a
/// `SelectStmt`, `VariableShowStmt` or `ExplainStmt`, no write, `INTO` or row lock anywhere,
/// and every function it calls on the read-only list. And the answer is the same when asked
/// twice (libpg_query keeps per-thread state between calls).
pub fn classify(data: &[u8]) {
    let Ok(sql) = std::str::from_utf8(data) else {
        return;
    };
    let first = crate::read_only(sql);
    assert_eq!(first, crate::read_only(sql), "asked twice: {sql:?}");
    // the kept answer (by the query's shape) is the one a parse gives
    assert_eq!(first, crate::classify(sql), "kept answer differs: {sql:?}");
    if !first {
        return;
    }
    let json = crate::parse_json(sql).expect("a read that does not parse");
    for key in [
        "\"InsertStmt\":",
        "\"UpdateStmt\":",
        "\"DeleteStmt\":",
        "\"MergeStmt\":",
        "\"intoClause\":",
        "\"lockingClause\":",
    ] {
        assert!(!json.contains(key), "{key} in a read: {sql:?}: {json}");
    }
    let stmts = json.matches("{\"stmt\":{").count();
    let reads = ["SelectStmt", "VariableShowStmt", "ExplainStmt"]
        .iter()
        .map(|k| json.matches(&format!("{{\"stmt\":{{\"{k}\":")).count())
        .sum::<usize>();
    assert!(
        stmts > 0 && stmts == reads,
        "a statement that is no read: {sql:?}: {json}"
    );
    let mut rest = json.as_str();
    while let Some(at) = rest.find("\"FuncCall\":{\"funcname\":[") {
        rest = &rest[at + "\"FuncCall\":{\"funcname\":[".len()..];
        let end = rest.find(']').expect("a name list ends");
        let names: Vec<&str> = rest[..end]
            .split("\"sval\":\"")
            .skip(1)
            .map(|s| &s[..s.find('"').expect("a name ends")])
            .collect();
        let known = match names.as_slice() {
            [name] | ["pg_catalog", name] => crate::READ_ONLY_FUNCTIONS.contains(name),
            _ => false,
        };
        assert!(known, "a call to {names:?} in a read: {sql:?}");
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_target_holds_on_its_seeds() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fuzz/seeds/pg_classify");
        let mut n = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            super::classify(&std::fs::read(entry.unwrap().path()).unwrap());
            n += 1;
        }
        assert!(n >= 10);
    }
}
