//! Which shard keys a statement names: for each table split by a key column, the values its
//! `WHERE` (or `VALUES`) pins that column to, read from PostgreSQL's own parse tree.
//!
//! A table is pinned in one query level (a `SELECT`, `UPDATE`, `DELETE` or `INSERT`) when its
//! key column is compared with `=` or `IN` to constants or parameters in a conjunct of the
//! level's `WHERE` (under `OR`, every branch must pin it), or is joined with `=` (in `ON` or
//! `WHERE`) to the key column of a table that is pinned; an `INSERT ... VALUES` pins by the
//! key column of each row. Every sharded table the statement names, anywhere, must be pinned:
//! anything else (a statement of another kind on a sharded table, a subquery that does not pin
//! its own tables, an `UPDATE` that sets the key) is unpinned, with the reason.

use serde_json::Value;

use crate::{builtin_name, node, parse_json, ParseError};

/// A table split over shards by a key column.
#[derive(Debug, Clone, Copy)]
pub struct KeyColumn<'a> {
    /// The table's name (matched without its schema).
    pub table: &'a str,
    /// The key column.
    pub column: &'a str,
}

/// A value a statement compares a shard key with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyValue {
    /// An integer constant.
    Int(i64),
    /// A string constant, or a number too long for an `i64`, as written.
    Text(String),
    /// The statement's parameter `$n` (from 1): its value comes with Bind.
    Param(usize),
    /// `NULL`: no row has it.
    Null,
}

/// One pinned value: the table (by its index in the list given) and the key's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pin {
    /// Which of the sharded tables.
    pub table: usize,
    /// The value its key is pinned to.
    pub value: KeyValue,
}

/// What a query says about the shard keys of the tables given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Keys {
    /// It names no sharded table: any shard can run it.
    Unsharded,
    /// Every sharded table it names is pinned to these values.
    Pinned(Vec<Pin>),
    /// It names a sharded table whose key it does not pin; why.
    Unpinned(String),
    /// One `BEGIN` or `START TRANSACTION`.
    Begin,
    /// One `COMMIT` or `END` (`rollback` false), or `ROLLBACK` or `ABORT` (true).
    End {
        /// Whether it rolls back.
        rollback: bool,
    },
}

/// What `sql` says about the keys of `tables` (see the module's doc).
pub fn shard_keys(sql: &str, tables: &[KeyColumn<'_>]) -> Result<Keys, ParseError> {
    let json = parse_json(sql)?;
    let tree: Value = serde_json::from_str(&json).map_err(|e| ParseError {
        message: format!("the parse tree did not read back: {e}"),
        position: None,
    })?;
    let stmts: Vec<&Value> = tree
        .get("stmts")
        .and_then(Value::as_array)
        .map(|s| s.iter().filter_map(|s| s.get("stmt")).collect())
        .unwrap_or_default();
    if let [only] = stmts.as_slice() {
        if let Some(("TransactionStmt", t)) = node(only) {
            match t.get("kind").and_then(Value::as_str) {
                Some("TRANS_STMT_BEGIN" | "TRANS_STMT_START") => return Ok(Keys::Begin),
                Some(kind @ ("TRANS_STMT_COMMIT" | "TRANS_STMT_ROLLBACK"))
                    if t.get("chain").is_none_or(|c| c != &Value::Bool(true)) =>
                {
                    return Ok(Keys::End {
                        rollback: kind == "TRANS_STMT_ROLLBACK",
                    })
                }
                _ => {}
            }
        }
    }
    let mut pins = Vec::new();
    let mut named = 0;
    let mut handled = 0;
    for stmt in stmts {
        named += count_named(stmt, tables);
        if let Err(why) = levels(stmt, tables, &mut pins, &mut handled) {
            return Ok(Keys::Unpinned(why));
        }
    }
    if named == 0 {
        return Ok(Keys::Unsharded);
    }
    if handled < named {
        return Ok(Keys::Unpinned(
            "a sharded table is named where its key can't be read (a statement of this kind, \
             or a place other than FROM, USING or INSERT INTO)"
                .into(),
        ));
    }
    Ok(Keys::Pinned(pins))
}

/// Which sharded table a relation (a RangeVar's fields) is.
fn sharded(rel: &Value, tables: &[KeyColumn<'_>]) -> Option<usize> {
    let name = rel.get("relname")?.as_str()?;
    tables.iter().position(|t| t.table == name)
}

/// How many times sharded tables are named under `v`.
fn count_named(v: &Value, tables: &[KeyColumn<'_>]) -> usize {
    match v {
        Value::Array(items) => items.iter().map(|i| count_named(i, tables)).sum(),
        Value::Object(map) => {
            let here = usize::from(map.contains_key("relname") && sharded(v, tables).is_some());
            here + map.values().map(|i| count_named(i, tables)).sum::<usize>()
        }
        _ => 0,
    }
}

/// A sharded table named in one query level.
struct Named {
    table: usize,
    /// What its columns are qualified with: its alias, else its name.
    refname: String,
    values: Option<Vec<KeyValue>>,
}

/// Finds every query level under `v` and pins the sharded tables each names.
fn levels(
    v: &Value,
    tables: &[KeyColumn<'_>],
    pins: &mut Vec<Pin>,
    handled: &mut usize,
) -> Result<(), String> {
    match v {
        Value::Array(items) => {
            for i in items {
                levels(i, tables, pins, handled)?;
            }
        }
        Value::Object(map) => {
            for (kind, body) in map {
                match kind.as_str() {
                    "SelectStmt" | "UpdateStmt" | "DeleteStmt" | "InsertStmt" => {
                        level(kind, body, tables, pins, handled)?
                    }
                    _ => {}
                }
                levels(body, tables, pins, handled)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// One query level: its tables (FROM, USING, the target of UPDATE, DELETE or INSERT) and what
/// pins their keys.
fn level(
    kind: &str,
    body: &Value,
    tables: &[KeyColumn<'_>],
    pins: &mut Vec<Pin>,
    handled: &mut usize,
) -> Result<(), String> {
    let mut named: Vec<Named> = Vec::new();
    let mut joins: Vec<&Value> = Vec::new();
    if let Some(rel) = body.get("relation") {
        add(rel, tables, &mut named);
    }
    for list in ["fromClause", "usingClause"] {
        for item in body
            .get(list)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            from_item(item, tables, &mut named, &mut joins);
        }
    }
    if named.is_empty() {
        return Ok(());
    }
    *handled += named.len();
    if kind == "UpdateStmt" {
        for target in body
            .get("targetList")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let column = target
                .get("ResTarget")
                .and_then(|r| r.get("name"))
                .and_then(Value::as_str);
            if let Some(n) = named
                .iter()
                .find(|n| Some(tables[n.table].column) == column)
            {
                return Err(format!(
                    "an UPDATE that sets the shard key {}.{} (moving a row between shards is not done)",
                    tables[n.table].table,
                    tables[n.table].column
                ));
            }
        }
    }
    if kind == "InsertStmt" {
        insert_values(body, tables, &mut named[0])?;
        let sets = body
            .get("onConflictClause")
            .and_then(|c| c.get("targetList"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten();
        for target in sets {
            let column = target
                .get("ResTarget")
                .and_then(|r| r.get("name"))
                .and_then(Value::as_str);
            let t = &tables[named[0].table];
            if column == Some(t.column) {
                return Err(format!(
                    "an INSERT ... ON CONFLICT DO UPDATE that sets the shard key {}.{} (moving a row between shards is not done)",
                    t.table, t.column
                ));
            }
        }
    }
    if let Some(cond) = body.get("whereClause") {
        for n in named.iter_mut().filter(|n| n.values.is_none()) {
            n.values = pinned_by(cond, &n.refname, tables[n.table].column);
        }
        joins.push(cond);
    }
    // a key joined with `=` to a pinned key is pinned to the same values
    let mut equal = Vec::new();
    for cond in joins {
        equalities(cond, &named, tables, &mut equal);
    }
    loop {
        let mut moved = false;
        for &(a, b) in &equal {
            for (from, to) in [(a, b), (b, a)] {
                if named[to].values.is_none() {
                    if let Some(v) = named[from].values.clone() {
                        named[to].values = Some(v);
                        moved = true;
                    }
                }
            }
        }
        if !moved {
            break;
        }
    }
    for n in named {
        let t = &tables[n.table];
        let Some(values) = n.values else {
            return Err(format!(
                "{}.{} is not pinned to a value (`{} = ...` or `{} IN (...)`)",
                t.table, t.column, t.column, t.column
            ));
        };
        pins.extend(values.into_iter().map(|value| Pin {
            table: n.table,
            value,
        }));
    }
    Ok(())
}

/// Records `rel` if it is a sharded table.
fn add(rel: &Value, tables: &[KeyColumn<'_>], named: &mut Vec<Named>) {
    if let Some(table) = sharded(rel, tables) {
        let alias = rel
            .get("alias")
            .and_then(|a| a.get("aliasname"))
            .and_then(Value::as_str);
        named.push(Named {
            table,
            refname: alias.unwrap_or(tables[table].table).to_string(),
            values: None,
        });
    }
}

/// A FROM item: a table, or a join of items (whose ON condition may equate keys).
fn from_item<'v>(
    item: &'v Value,
    tables: &[KeyColumn<'_>],
    named: &mut Vec<Named>,
    joins: &mut Vec<&'v Value>,
) {
    match node(item) {
        Some(("RangeVar", rel)) => add(rel, tables, named),
        Some(("JoinExpr", j)) => {
            for side in ["larg", "rarg"] {
                if let Some(s) = j.get(side) {
                    from_item(s, tables, named, joins);
                }
            }
            if let Some(q) = j.get("quals") {
                joins.push(q);
            }
        }
        _ => {}
    }
}

/// An INSERT's rows: each `VALUES` row's key column.
fn insert_values(body: &Value, tables: &[KeyColumn<'_>], target: &mut Named) -> Result<(), String> {
    let t = &tables[target.table];
    let cols: Vec<&str> = body
        .get("cols")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| c.get("ResTarget")?.get("name")?.as_str())
        .collect();
    let Some(at) = cols.iter().position(|c| *c == t.column) else {
        return Err(format!(
            "an INSERT into {} that does not name its key column {} in its column list",
            t.table, t.column
        ));
    };
    let rows = body
        .get("selectStmt")
        .and_then(|s| s.get("SelectStmt"))
        .and_then(|s| s.get("valuesLists"))
        .and_then(Value::as_array)
        .ok_or_else(|| format!("an INSERT into {} that is not a VALUES list", t.table))?;
    let mut values = Vec::new();
    for row in rows {
        let item = row
            .get("List")
            .and_then(|l| l.get("items"))
            .and_then(Value::as_array)
            .and_then(|items| items.get(at));
        match item.and_then(value) {
            Some(v) => values.push(v),
            None => {
                return Err(format!(
                    "an INSERT into {} whose {} is not a constant or a parameter",
                    t.table, t.column
                ))
            }
        }
    }
    target.values = Some(values);
    Ok(())
}

/// The values `cond` pins `refname.column` to, if it does.
fn pinned_by(cond: &Value, refname: &str, column: &str) -> Option<Vec<KeyValue>> {
    match node(cond)? {
        ("A_Expr", e) if is_eq(e) => {
            let (l, r) = (e.get("lexpr")?, e.get("rexpr")?);
            match e.get("kind").and_then(Value::as_str)? {
                "AEXPR_OP" => {
                    if refers(l, refname, column) {
                        Some(vec![value(r)?])
                    } else if refers(r, refname, column) {
                        Some(vec![value(l)?])
                    } else {
                        None
                    }
                }
                "AEXPR_IN" if refers(l, refname, column) => r
                    .get("List")?
                    .get("items")?
                    .as_array()?
                    .iter()
                    .map(value)
                    .collect(),
                _ => None,
            }
        }
        ("BoolExpr", b) => {
            let args = b.get("args")?.as_array()?;
            match b.get("boolop").and_then(Value::as_str)? {
                "AND_EXPR" => args.iter().find_map(|a| pinned_by(a, refname, column)),
                "OR_EXPR" => {
                    let mut all = Vec::new();
                    for a in args {
                        all.extend(pinned_by(a, refname, column)?);
                    }
                    Some(all)
                }
                _ => None,
            }
        }
        _ => None,
    }
}

/// Pairs of named tables whose keys `cond` (its conjuncts) says are equal.
fn equalities(
    cond: &Value,
    named: &[Named],
    tables: &[KeyColumn<'_>],
    out: &mut Vec<(usize, usize)>,
) {
    match node(cond) {
        Some(("A_Expr", e))
            if is_eq(e) && e.get("kind").and_then(Value::as_str) == Some("AEXPR_OP") =>
        {
            let (Some(l), Some(r)) = (e.get("lexpr"), e.get("rexpr")) else {
                return;
            };
            let key_of = |side: &Value| {
                named
                    .iter()
                    .position(|n| refers(side, &n.refname, tables[n.table].column))
            };
            if let (Some(a), Some(b)) = (key_of(l), key_of(r)) {
                out.push((a, b));
            }
        }
        Some(("BoolExpr", b)) if b.get("boolop").and_then(Value::as_str) == Some("AND_EXPR") => {
            for a in b
                .get("args")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                equalities(a, named, tables, out);
            }
        }
        _ => {}
    }
}

/// Whether an A_Expr's operator is a plain `=`.
fn is_eq(e: &Value) -> bool {
    let name: Vec<&str> = e
        .get("name")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|n| n.get("String")?.get("sval")?.as_str())
        .collect();
    matches!(name.as_slice(), ["="] | ["pg_catalog", "="])
}

/// Whether `v` is a reference to `column` of the table known in its level as `refname`
/// (unqualified, or qualified by that name, or by a schema and that name).
fn refers(v: &Value, refname: &str, column: &str) -> bool {
    let Some(("ColumnRef", c)) = node(v) else {
        return false;
    };
    let fields: Vec<&str> = c
        .get("fields")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|f| f.get("String")?.get("sval")?.as_str())
        .collect();
    match fields.as_slice() {
        [col] => *col == column,
        [q, col] | [_, q, col] => *q == refname && *col == column,
        _ => false,
    }
}

/// A constant or a parameter, as a key value. Casts are looked through only where they
/// leave the value as the key compares it: to `smallint`, `integer` or `bigint` (a string that
/// is an integer becomes that integer) and to `text` or `varchar` without a length (an
/// integer becomes its digits); any other cast (`varchar(2)`, `numeric`, a type of the
/// user's), or a cast of a number that is not an integer, pins nothing.
fn value(v: &Value) -> Option<KeyValue> {
    match node(v)? {
        ("TypeCast", t) => {
            let inner = value(t.get("arg")?)?;
            let ty = t.get("typeName")?;
            if ty.get("typmods").is_some() || ty.get("arrayBounds").is_some() {
                return None;
            }
            let name = builtin_name(ty.get("names")?)?;
            match (name, inner) {
                (_, KeyValue::Null) => Some(KeyValue::Null),
                (_, KeyValue::Param(n))
                    if INTEGER_TYPES.contains(&name) || TEXT_TYPES.contains(&name) =>
                {
                    Some(KeyValue::Param(n))
                }
                (n, KeyValue::Int(i)) if INTEGER_TYPES.contains(&n) => Some(KeyValue::Int(i)),
                (n, KeyValue::Text(s)) if INTEGER_TYPES.contains(&n) => {
                    s.trim().parse().ok().map(KeyValue::Int)
                }
                (n, KeyValue::Int(i)) if TEXT_TYPES.contains(&n) => {
                    Some(KeyValue::Text(i.to_string()))
                }
                (n, KeyValue::Text(s)) if TEXT_TYPES.contains(&n) => Some(KeyValue::Text(s)),
                _ => None,
            }
        }
        ("ParamRef", p) => Some(KeyValue::Param(p.get("number")?.as_u64()? as usize)),
        ("A_Const", c) => {
            if c.get("isnull").is_some_and(|n| n == &Value::Bool(true)) {
                return Some(KeyValue::Null);
            }
            if let Some(i) = c.get("ival") {
                // libpg_query leaves a zero out
                return Some(KeyValue::Int(
                    i.get("ival").and_then(Value::as_i64).unwrap_or(0),
                ));
            }
            if let Some(f) = c
                .get("fval")
                .and_then(|f| f.get("fval"))
                .and_then(Value::as_str)
            {
                // an integer too long for `ival`; anything else (1.5, 1e3) is no key value
                return f.parse::<i64>().ok().map(KeyValue::Int);
            }
            let s = c.get("sval")?;
            Some(KeyValue::Text(
                s.get("sval")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
            ))
        }
        _ => None,
    }
}

/// The integer types a cast may name and leave an integer key as it is.
const INTEGER_TYPES: &[&str] = &["int2", "int4", "int8"];
/// The string types a cast may name and leave a text key as it is.
const TEXT_TYPES: &[&str] = &["text", "varchar"];

#[cfg(test)]
mod tests {
    use super::*;

    const TABLES: &[KeyColumn<'static>] = &[
        KeyColumn {
            table: "users",
            column: "id",
        },
        KeyColumn {
            table: "orders",
            column: "user_id",
        },
    ];

    fn keys(sql: &str) -> Keys {
        shard_keys(sql, TABLES).unwrap()
    }

    fn pinned(sql: &str) -> Vec<(usize, KeyValue)> {
        match keys(sql) {
            Keys::Pinned(p) => p.into_iter().map(|p| (p.table, p.value)).collect(),
            other => panic!("{sql}: {other:?}"),
        }
    }

    use KeyValue::*;

    #[test]
    fn keys_pinned_by_where_values_and_joins() {
        assert_eq!(pinned("select * from users where id = 42"), [(0, Int(42))]);
        assert_eq!(
            pinned("select * from users u where 7 = u.id and name = 'x'"),
            [(0, Int(7))]
        );
        assert_eq!(
            pinned("SELECT * FROM public.users WHERE public.users.id = $2"),
            [(0, Param(2))]
        );
        assert_eq!(
            pinned("select * from users where id = '12'::bigint"),
            [(0, Int(12))]
        );
        assert_eq!(
            pinned("select * from users where id = 12::text::int8"),
            [(0, Int(12))]
        );
        assert_eq!(
            pinned("select * from orders where user_id = 12::varchar"),
            [(1, Text("12".into()))]
        );
        assert_eq!(
            pinned("select * from users where id = $1::bigint"),
            [(0, Param(1))]
        );
        // casts as PostgreSQL computes them: '007' as an integer is 7, whose text is "7"
        assert_eq!(
            pinned("select * from orders where user_id = '007'::int::text"),
            [(1, Text("7".into()))]
        );
        assert_eq!(pinned("select * from users where id = 0"), [(0, Int(0))]);
        assert_eq!(pinned("select * from users where id = -5"), [(0, Int(-5))]);
        assert_eq!(
            pinned("select * from users where id = 9223372036854775807"),
            [(0, Int(i64::MAX))]
        );
        assert_eq!(
            pinned("select * from users where id in (1, 2) or (id = 3 and name is null)"),
            [(0, Int(1)), (0, Int(2)), (0, Int(3))]
        );
        assert_eq!(
            pinned("update users set name = 'x' where id = 5"),
            [(0, Int(5))]
        );
        assert_eq!(
            pinned("delete from orders where user_id = $1"),
            [(1, Param(1))]
        );
        assert_eq!(
            pinned("insert into orders (amount, user_id) values (10, 4), (20, $1)"),
            [(1, Int(4)), (1, Param(1))]
        );
        // a join of keys: both tables pinned by one value
        assert_eq!(
            pinned("select * from users u join orders o on o.user_id = u.id where u.id = 3"),
            [(0, Int(3)), (1, Int(3))]
        );
        assert_eq!(
            pinned("select * from users u, orders o where o.user_id = u.id and o.user_id = 8"),
            [(0, Int(8)), (1, Int(8))]
        );
        // a subquery pins its own table
        assert_eq!(
            pinned("select * from users where id = 1 and exists (select 1 from orders where user_id = 1)"),
            [(0, Int(1)), (1, Int(1))]
        );
        assert_eq!(pinned("select * from users where id = null"), [(0, Null)]);
    }

    #[test]
    fn what_names_no_sharded_table_is_unsharded() {
        for sql in [
            "select 1",
            "set search_path = a",
            "show work_mem",
            "select * from items where id = 1",
            "create table t (x int)",
        ] {
            assert_eq!(keys(sql), Keys::Unsharded, "{sql}");
        }
    }

    #[test]
    fn transactions_are_told_apart() {
        for sql in [
            "begin",
            "BEGIN ISOLATION LEVEL SERIALIZABLE",
            "start transaction read only",
        ] {
            assert_eq!(keys(sql), Keys::Begin, "{sql}");
        }
        for (sql, rollback) in [
            ("commit", false),
            ("end", false),
            ("rollback", true),
            ("abort", true),
        ] {
            assert_eq!(keys(sql), Keys::End { rollback }, "{sql}");
        }
        // COMMIT AND CHAIN starts another: not an end
        assert_eq!(keys("commit and chain"), Keys::Unsharded);
        assert_eq!(keys("begin; select 1"), Keys::Unsharded);
    }

    #[test]
    fn keys_left_open_are_unpinned_with_a_reason() {
        for sql in [
            "select * from users",
            "select * from users where id > 5",
            "select * from users where id = 1 or name = 'x'",
            "select * from users where id = other_id",
            "select * from users u join orders o on o.user_id = u.id",
            "update users set id = 2 where id = 1",
            "delete from orders",
            "insert into users values (1, 'a')",
            "insert into users (id) select 1",
            "insert into users (id) values (1 + 1)",
            "insert into users (id) values ('12345'::varchar(2)::int)",
            "select * from orders where user_id = 1e3::text",
            "select * from orders where user_id = 'abc'::char(2)",
            "select * from users where id = 1.5",
            "insert into users (id) values (1) on conflict (id) do update set id = 2",
            "select * from users where id = 1 and exists (select 1 from orders)",
            "truncate users",
            "copy users from stdin",
            "create index on orders (user_id)",
            "select * from users where id = 1; select * from orders",
        ] {
            assert!(
                matches!(keys(sql), Keys::Unpinned(_)),
                "{sql}: {:?}",
                keys(sql)
            );
        }
    }
}
