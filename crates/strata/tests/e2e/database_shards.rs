//! The database layer over shards: two real PostgreSQL servers, each a shard, with tables
//! split by a key column. Keys land where PostgreSQL's own hash partitioning puts them;
//! queries go to their keys' shard; what can't be placed is refused with a clear error;
//! transactions stay on one shard; drivers' prepared statements (pgbench -M prepared and
//! extended) route by their parameters.

use crate::common;

use std::collections::BTreeSet;
use std::net::SocketAddr;

use common::postgres::{
    error_response, log_in, message, pgbench, psql, psql_command, query, unnamed_batch,
    until_closed, until_ready, Postgres, PsqlSession, SUPERUSER_PASSWORD,
};
use common::*;
use tokio::io::AsyncWriteExt;

const SETUP: &str = "create table users (id bigint primary key, name text); \
                     create table tags (k text primary key, n int); create table notes (x int)";

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

/// Queries go to the shard of the keys they pin; a query whose shard can't be told gets a
/// clear error and the session goes on; a transaction stays on the shard of its first
/// statement, and a statement for another shard fails it as PostgreSQL would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_follow_their_keys_and_the_rest_is_refused_clearly() {
    let (a, b, _strata, db) = two_shards("");
    let (on_a, on_b) = keys_on_each(&a, &b, db, 40).await;
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

/// Keys written through Strata, and which server got each: (keys on a, keys on b).
async fn keys_on_each(a: &Postgres, b: &Postgres, db: SocketAddr, n: i64) -> (Vec<i64>, Vec<i64>) {
    let script: String = (1..=n)
        .map(|i| format!("insert into users (id, name) values ({i}, 'n{i}');\n"))
        .collect();
    blocking(move || psql_file(db, &script)).await.unwrap();
    let ids = |pg: &Postgres| -> Vec<i64> {
        rows(pg, "select id from users")
            .iter()
            .map(|s| s.parse().unwrap())
            .collect()
    };
    (ids(a), ids(b))
}

/// A raw client, byte for byte, against a sharded listener: what Strata answers itself (a
/// BEGIN, a refusal) is exactly what PostgreSQL would send; a malformed Bind goes to a server,
/// which says what is wrong; a Bind for another shard in the middle of a batch ends that
/// session alone, with its transaction rolled back; and a batch that grows past 1 MiB without
/// a Sync ends its session. Another client carries on throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_batches_get_exact_answers_and_end_only_their_session() {
    let (a, b, _strata, db) = two_shards("auth_type = \"trust\"");
    let (on_a, on_b) = keys_on_each(&a, &b, db, 20).await;
    let (ka, kb) = (on_a[0], on_b[0]);
    let (mut other, _) = log_in(db, &[]).await;
    let ready = |status: u8| message(b'Z', &[status]);
    let flat = |answers: Vec<(u8, Vec<u8>)>| -> Vec<u8> {
        answers
            .into_iter()
            .flat_map(|(t, body)| message(t, &body))
            .collect()
    };

    // a refusal, made by Strata, as PostgreSQL writes an error
    let (mut c, _) = log_in(db, &[]).await;
    let got = flat(query(&mut c, "select * from users").await);
    let mut want = error_response(
        "ERROR",
        "0A000",
        "the query's shard can't be told: users.id is not pinned to a value (`id = ...` or `id IN (...)`)",
    );
    want.extend(ready(b'I'));
    assert_eq!(
        got.escape_ascii().to_string(),
        want.escape_ascii().to_string()
    );

    // BEGIN answered by Strata
    let got = flat(query(&mut c, "begin").await);
    let mut want = message(b'C', b"BEGIN\0");
    want.extend(ready(b'T'));
    assert_eq!(got, want);
    let got = query(
        &mut c,
        &format!("update users set name = 'x' where id = {ka}"),
    )
    .await;
    assert_eq!(got.last().unwrap(), &(b'Z', vec![b'T']), "{got:?}");
    // Parse and Describe with a Flush: the batch is not over, and goes on to a's server
    let piece = [
        message(b'P', b"\0select name from users where id = $1\0\0\0"),
        message(b'D', b"S\0"),
        message(b'H', b""),
    ]
    .concat();
    c.write_all(&piece).await.unwrap();
    // then a Bind with b's key: the session ends, the update is rolled back
    let key = kb.to_string();
    let mut bind = b"\0\0\0\0\0\x01".to_vec();
    bind.extend_from_slice(&(key.len() as i32).to_be_bytes());
    bind.extend_from_slice(key.as_bytes());
    bind.extend_from_slice(b"\0\0");
    let rest = [
        message(b'B', &bind),
        message(b'E', b"\0\0\0\0\0"),
        message(b'S', b""),
    ]
    .concat();
    c.write_all(&rest).await.unwrap();
    let got = until_closed(&mut c).await;
    let fatal = error_response(
        "FATAL",
        "0A000",
        "a transaction runs on one shard: this statement's keys are on shard 1, the transaction's on shard 0",
    );
    assert!(got.ends_with(&fatal), "{}", got.escape_ascii());
    let name = psql(
        a.addr,
        "app",
        "secret",
        "app",
        &format!("select name from users where id = {ka}"),
    )
    .unwrap();
    assert_eq!(name, format!("n{ka}"), "the update was rolled back");

    // a Bind whose parameters are cut short: PostgreSQL's own error, and the session goes on
    let (mut c, _) = log_in(db, &[]).await;
    let batch = unnamed_batch(
        "select name from users where id = $1",
        b"\0\0\0\x01\0\0\0\x09ab",
        true,
    );
    c.write_all(&batch).await.unwrap();
    let got = until_ready(&mut c).await;
    let error = got.iter().find(|(t, _)| *t == b'E').expect("an error");
    assert!(error.1.windows(6).any(|w| w == b"C08P01"), "{got:?}");
    let got = query(&mut c, &format!("select name from users where id = {kb}")).await;
    assert!(
        got.iter()
            .any(|(t, body)| *t == b'D' && body.ends_with(format!("n{kb}").as_bytes())),
        "{got:?}"
    );

    // a batch of 1.5 MiB with no Sync: the session ends
    let (mut c, _) = log_in(db, &[]).await;
    let mut huge = b"\0select '".to_vec();
    huge.extend(std::iter::repeat_n(b'x', 1_500_000));
    huge.extend_from_slice(b"'\0\0\0");
    c.write_all(&message(b'P', &huge)).await.unwrap();
    let got = until_closed(&mut c).await;
    let fatal = error_response(
        "FATAL",
        "0A000",
        "an extended-protocol batch grew past 1 MiB without a Sync or Flush",
    );
    assert_eq!(
        got.escape_ascii().to_string(),
        fatal.escape_ascii().to_string()
    );

    // START TRANSACTION is answered with its own tag; COMMIT and a query for another shard
    // sent together: the query waits for the COMMIT, and runs on its own shard
    let (mut c, _) = log_in(db, &[]).await;
    // (keys of their own: the first two are read back at the end)
    let (ka2, kb2) = (on_a[1], on_b[1]);
    let got = flat(query(&mut c, "start transaction").await);
    assert_eq!(
        got,
        [message(b'C', b"START TRANSACTION\0"), ready(b'T')].concat()
    );
    let got = query(
        &mut c,
        &format!("update users set name = 'y' where id = {ka2}"),
    )
    .await;
    assert_eq!(got.last().unwrap(), &(b'Z', vec![b'T']), "{got:?}");
    let both = [
        message(b'Q', b"commit\0"),
        message(
            b'Q',
            format!("select name from users where id = {kb}\0").as_bytes(),
        ),
    ]
    .concat();
    c.write_all(&both).await.unwrap();
    let commit = until_ready(&mut c).await;
    assert_eq!(
        flat(commit),
        [message(b'C', b"COMMIT\0"), ready(b'I')].concat()
    );
    let select = until_ready(&mut c).await;
    assert!(
        select
            .iter()
            .any(|(t, body)| *t == b'D' && body.ends_with(format!("n{kb}").as_bytes())),
        "{select:?}"
    );
    // SQL DEALLOCATE of a prepared statement holds no connection: the next query goes to its
    // own shard
    c.write_all(&[message(b'P', b"s1\0select 1\0\0\0"), message(b'S', b"")].concat())
        .await
        .unwrap();
    until_ready(&mut c).await;
    let got = flat(query(&mut c, "deallocate s1").await);
    assert_eq!(got, [message(b'C', b"DEALLOCATE\0"), ready(b'I')].concat());
    for k in [kb, ka] {
        let got = query(&mut c, &format!("select name from users where id = {k}")).await;
        assert!(got.iter().any(|(t, _)| *t == b'D'), "{got:?}");
    }
    // a 2 MiB value in one Bind is one message still arriving, not a batch without end
    let big = "z".repeat(2 << 20);
    let mut params = b"\0\0\0\x02".to_vec();
    for v in [kb2.to_string().as_bytes(), big.as_bytes()] {
        params.extend_from_slice(&(v.len() as i32).to_be_bytes());
        params.extend_from_slice(v);
    }
    params.extend_from_slice(b"\0\0");
    let batch = unnamed_batch("update users set name = $2 where id = $1", &params, true);
    c.write_all(&batch).await.unwrap();
    let got = until_ready(&mut c).await;
    assert!(
        got.iter()
            .any(|(t, body)| *t == b'C' && body.starts_with(b"UPDATE 1")),
        "{got:?}"
    );
    // a client whose strings the parser would read otherwise is refused on sharded tables
    let (mut latin, _) = log_in(db, &[("client_encoding", "LATIN1")]).await;
    let got = query(
        &mut latin,
        &format!("select name from users where id = {ka}"),
    )
    .await;
    let error = got.iter().find(|(t, _)| *t == b'E').expect("an error");
    assert!(
        String::from_utf8_lossy(&error.1).contains("client_encoding UTF8"),
        "{got:?}"
    );
    assert!(query(&mut latin, "select 1")
        .await
        .iter()
        .any(|(t, _)| *t == b'D'));

    // and the client logged in before all this still gets its rows
    let got = query(
        &mut other,
        &format!("select name from users where id = {ka}"),
    )
    .await;
    assert!(
        got.iter()
            .any(|(t, body)| *t == b'D' && body.ends_with(format!("n{ka}").as_bytes())),
        "{got:?}"
    );
}

/// COPY of a table that is not sharded goes through a sharded listener (its data flows while
/// the query waits for its answer).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_of_an_unsharded_table_goes_through() {
    let (a, _b, _strata, db) = two_shards("");
    let dir = TempDir::new();
    let data = write_file(dir.path(), "notes.txt", "1\n2\n3\n");
    let out = blocking(move || {
        psql_command(db, "app", "secret", "app")
            .args(["-v", "ON_ERROR_STOP=1", "-c"])
            .arg(format!("\\copy notes from '{}'", data.display()))
            .output()
            .unwrap()
    })
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        rows(&a, "select count(*) from notes"),
        BTreeSet::from(["3".to_string()])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_larger_than_the_read_buffer_goes_through_inside_a_transaction() {
    let (a, b, _strata, db) = two_shards("auth_type = \"trust\"");
    let (on_a, _) = keys_on_each(&a, &b, db, 4).await;
    let (mut c, _) = log_in(db, &[]).await;
    query(&mut c, "begin").await;
    let got = query(
        &mut c,
        &format!("update users set name = 'z' where id = {}", on_a[0]),
    )
    .await;
    assert_eq!(got.last().unwrap(), &(b'Z', vec![b'T']), "{got:?}");
    // 3 MB: more than the pooler reads ahead while a query's answer is owed
    let big = format!(
        "select length('{}') from users where id = {}",
        "x".repeat(3_000_000),
        on_a[0]
    );
    let got = query(&mut c, &big).await;
    assert!(
        got.iter()
            .any(|(t, body)| *t == b'D' && body.ends_with(b"3000000")),
        "{got:?}"
    );
    let got = query(&mut c, "rollback").await;
    assert_eq!(got.last().unwrap(), &(b'Z', vec![b'I']), "{got:?}");
}
