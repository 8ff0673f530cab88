//! The database layer over shards: two real PostgreSQL servers, each a shard, with tables
//! split by a key column. Keys land where PostgreSQL's own hash partitioning puts them;
//! queries go to their keys' shard; what can't be placed is refused with a clear error;
//! transactions stay on one shard; drivers' prepared statements (pgbench -M prepared and
//! extended) route by their parameters.

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;

use common::postgres::{pgbench, psql, psql_command, Postgres, PsqlSession, SUPERUSER_PASSWORD};
use common::*;

const SETUP: &str = "create table users (id bigint primary key, name text); \
                     create table tags (k text primary key, n int)";

const TABLES: &str = "[[database.sharded_tables]]\nname = \"users\"\ncolumn = \"id\"\n\
                      [[database.sharded_tables]]\nname = \"tags\"\ncolumn = \"k\"\ntype = \"text\"\n";

/// Two servers with user and database `app` where `app` ran SETUP, and Strata in front of
/// them as shards 0 and 1, with `extra` in the listener.
fn two_shards(extra: &str) -> (Postgres, Postgres, Strata, SocketAddr) {
    let (a, b) = (Postgres::start(), Postgres::start());
    for pg in [&a, &b] {
        pg.user_and_database("app", "secret");
        psql(pg.addr, "app", "secret", "app", SETUP).unwrap();
    }
    let strata = Strata::start(&format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\n\n[[database]]\nname = \"app\"\nlisten = \"127.0.0.1:0\"\n\
         shards = [[\"{}\"], [\"{}\"]]\ncheck_user = \"postgres\"\ncheck_interval = \"100ms\"\n{extra}\n\
         [[database.users]]\nname = \"app\"\npassword = \"secret\"\n\
         [[database.users]]\nname = \"postgres\"\npassword = \"{SUPERUSER_PASSWORD}\"\n{TABLES}",
        a.addr, b.addr
    ));
    let db = strata.addr("database:app");
    (a, b, strata, db)
}

/// Runs the statements of `script` through psql as a file (one query each), stopping at the
/// first error.
fn psql_file(addr: SocketAddr, script: &str) -> Result<String, String> {
    let dir = TempDir::new();
    let path = write_file(dir.path(), "script.sql", script);
    let out = psql_command(addr, "app", "secret", "app")
        .args(["-v", "ON_ERROR_STOP=1", "-f"])
        .arg(&path)
        .output()
        .expect("run psql");
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// The lines `sql` answers on `pg`, straight from the server, as a set.
fn rows(pg: &Postgres, sql: &str) -> BTreeSet<String> {
    psql(pg.addr, "app", "secret", "app", sql)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Keys written through Strata land on the shard where PostgreSQL's own `PARTITION BY HASH`
/// (modulus 2) puts them: integers of every size and sign, and text with bytes past ASCII.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_land_where_postgresql_hash_partitioning_puts_them() {
    let (a, b, _strata, db) = two_shards("");
    let mut ints: Vec<i64> = (-20..=300).collect();
    ints.extend([
        1 << 31,
        (1 << 32) + 7,
        -(1 << 40),
        i64::MAX,
        i64::MIN + 1,
        4_294_967_295,
    ]);
    let mut texts: Vec<String> = (0..150).map(|i| format!("user-{i}")).collect();
    texts.extend(
        [
            "",
            "é",
            "日本語のキー",
            "a much longer key that runs over several twelve-byte blocks",
            "it's",
            "\u{1F600}",
        ]
        .map(String::from),
    );
    let mut script = String::new();
    for i in &ints {
        script.push_str(&format!(
            "insert into users (id, name) values ({i}, 'n{i}');\n"
        ));
    }
    for (n, t) in texts.iter().enumerate() {
        script.push_str(&format!(
            "insert into tags (n, k) values ({n}, {});\n",
            quote(t)
        ));
    }
    let out = blocking(move || psql_file(db, &script)).await;
    out.unwrap_or_else(|e| panic!("inserts through Strata failed: {e}"));

    // the reference: the same keys in hash-partitioned tables on one server
    psql(
        a.addr,
        "app",
        "secret",
        "app",
        "create table ref_users (id bigint) partition by hash (id); \
         create table ref_users_0 partition of ref_users for values with (modulus 2, remainder 0); \
         create table ref_users_1 partition of ref_users for values with (modulus 2, remainder 1); \
         create table ref_tags (k text, n int) partition by hash (k); \
         create table ref_tags_0 partition of ref_tags for values with (modulus 2, remainder 0); \
         create table ref_tags_1 partition of ref_tags for values with (modulus 2, remainder 1)",
    )
    .unwrap();
    let mut reference = String::new();
    for i in &ints {
        reference.push_str(&format!("insert into ref_users values ({i});\n"));
    }
    for (n, t) in texts.iter().enumerate() {
        reference.push_str(&format!(
            "insert into ref_tags values ({}, {n});\n",
            quote(t)
        ));
    }
    let a_addr = a.addr;
    blocking(move || {
        let dir = TempDir::new();
        let path = write_file(dir.path(), "ref.sql", &reference);
        let out = psql_command(a_addr, "app", "secret", "app")
            .args(["-v", "ON_ERROR_STOP=1", "-f"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    })
    .await;

    for (shard, pg) in [(0, &a), (1, &b)] {
        let users = rows(pg, "select id from users");
        let expected = rows(&a, &format!("select id from ref_users_{shard}"));
        assert_eq!(users, expected, "integer keys on shard {shard}");
        // text keys compared by their number n (an empty key prints as an empty line)
        let tags = rows(pg, "select n from tags");
        let expected = rows(&a, &format!("select n from ref_tags_{shard}"));
        assert_eq!(tags, expected, "text keys on shard {shard}");
    }
    // every key went somewhere, and both shards got some
    let (ua, ub) = (
        rows(&a, "select id from users"),
        rows(&b, "select id from users"),
    );
    assert_eq!(ua.len() + ub.len(), ints.len());
    assert!(
        ua.len() > 50 && ub.len() > 50,
        "{} / {}",
        ua.len(),
        ub.len()
    );
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

/// Queries go to the shard of the keys they pin; a query whose shard can't be told gets a
/// clear error and the session goes on; a transaction stays on the shard of its first
/// statement, and a statement for another shard fails it as PostgreSQL would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_follow_their_keys_and_the_rest_is_refused_clearly() {
    let (a, b, _strata, db) = two_shards("");
    let script: String = (1..=40)
        .map(|i| format!("insert into users (id, name) values ({i}, 'n{i}');\n"))
        .collect();
    blocking(move || psql_file(db, &script)).await.unwrap();
    let on_a: Vec<i64> = rows(&a, "select id from users")
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
    let on_b: Vec<i64> = rows(&b, "select id from users")
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
    assert!(!on_a.is_empty() && !on_b.is_empty());
    let (ka, kb) = (on_a[0], on_b[0]);
    let seen = blocking(move || {
        let mut c = PsqlSession::open(db, "app", "secret", "app", &[]);
        let mut seen = Vec::new();
        seen.push(c.line(&format!("select name from users where id = {ka}")));
        seen.push(c.line(&format!(
            "select name from users u where u.id in ({kb}, {kb})"
        )));
        // no key: refused, and the session carries on
        seen.push(c.line("select count(*) from users"));
        seen.push(c.line(&format!("select name from users where id = {kb}")));
        // keys on both shards in one query
        seen.push(c.line(&format!("select name from users where id in ({ka}, {kb})")));
        // a transaction on a's shard: b's key fails it, as PostgreSQL fails a transaction
        c.send("begin");
        c.send(&format!("update users set name = 'tx' where id = {ka}"));
        seen.push(c.line(&format!("select name from users where id = {kb}")));
        seen.push(c.line(&format!("select name from users where id = {ka}")));
        c.send("rollback");
        seen.push(c.line(&format!("select name from users where id = {ka}")));
        // one that commits, reading its own write inside
        c.send("begin");
        c.send(&format!("update users set name = 'done' where id = {kb}"));
        seen.push(c.line(&format!("select name from users where id = {kb}")));
        c.send("commit");
        // a transaction with nothing in it
        c.send("begin");
        c.send("commit");
        // statements that name no sharded table run anywhere
        seen.push(c.line("select 1 + 1"));
        seen
    })
    .await;
    assert_eq!(seen[0], format!("n{ka}"));
    assert_eq!(seen[1], format!("n{kb}"));
    assert!(
        seen[2].starts_with("ERROR:") && seen[2].contains("users.id is not pinned"),
        "{}",
        seen[2]
    );
    assert_eq!(seen[3], format!("n{kb}"));
    assert!(seen[4].contains("shards 0 and 1"), "{}", seen[4]);
    assert!(
        seen[5].starts_with("ERROR:") && seen[5].contains("a transaction runs on one shard"),
        "{}",
        seen[5]
    );
    assert!(
        seen[6].contains("current transaction is aborted"),
        "{}",
        seen[6]
    );
    assert_eq!(seen[7], format!("n{ka}"), "the rolled-back update is gone");
    assert_eq!(seen[8], "done");
    assert_eq!(seen[9], "2");
    // on the servers themselves
    let name_b = psql(
        b.addr,
        "app",
        "secret",
        "app",
        &format!("select name from users where id = {kb}"),
    )
    .unwrap();
    assert_eq!(name_b, "done");
}

/// pgbench's prepared and extended modes (Parse once, Bind with parameters) read and write
/// by key over both shards without an error, and each row is where its key says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_statements_route_by_their_parameters() {
    let (a, b, strata, db) = two_shards("pool_size = 2\nquery_wait_timeout = \"5s\"");
    let script: String = (1..=100)
        .map(|i| format!("insert into users (id, name) values ({i}, 'n');\n"))
        .collect();
    blocking(move || psql_file(db, &script)).await.unwrap();
    let dir = TempDir::new();
    let bench = write_file(
        dir.path(),
        "bench.sql",
        "\\set id random(1, 100)\n\
         begin;\n\
         select name from users where id = :id;\n\
         update users set name = name || 'x' where id = :id;\n\
         commit;\n\
         select count(*) from users where id in (:id);\n",
    );
    let bench = bench.to_string_lossy().into_owned();
    for mode in ["prepared", "extended"] {
        let bench = bench.clone();
        let out = blocking(move || {
            pgbench(
                db,
                "app",
                "secret",
                "app",
                &["-n", "-c", "4", "-t", "100", "-M", mode, "-f", &bench],
            )
        })
        .await;
        assert!(
            out.contains("number of failed transactions: 0")
                && out.contains("number of transactions actually processed: 400/400"),
            "pgbench -M {mode}:\n{out}\n{}",
            strata.logs()
        );
    }
    // 800 updates in all, each on its key's shard
    let total = |pg: &Postgres| -> usize {
        psql(
            pg.addr,
            "app",
            "secret",
            "app",
            "select coalesce(sum(length(name) - 1), 0) from users",
        )
        .unwrap()
        .parse()
        .unwrap()
    };
    assert_eq!(total(&a) + total(&b), 800);
}
