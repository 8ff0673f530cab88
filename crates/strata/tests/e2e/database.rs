//! The database layer against a real PostgreSQL (Debian's), with psql and pgbench as the
//! clients: logins, transaction pooling, parameters carried between clients, a client that
//! leaves inside a transaction, cancel requests, and following a primary that moves.

use crate::common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::postgres::{
    log_in, message, pgbench, psql, psql_command, query, replica_known, until_closed, until_ready,
    Postgres, PsqlSession, SUPERUSER_PASSWORD,
};
use common::*;
use tokio::io::AsyncWriteExt;

/// A `[[database]]` listener in front of `servers`, with users app/secret and the superuser.
fn config(servers: &[SocketAddr], extra: &str) -> String {
    let list: Vec<String> = servers.iter().map(|s| format!("\"{s}\"")).collect();
    format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\n\n[[database]]\nname = \"app\"\nlisten = \"127.0.0.1:0\"\n\
         servers = [{}]\ncheck_user = \"postgres\"\ncheck_interval = \"100ms\"\n{extra}\n\
         [[database.users]]\nname = \"app\"\npassword = \"secret\"\n\
         [[database.users]]\nname = \"postgres\"\npassword = \"{SUPERUSER_PASSWORD}\"\n",
        list.join(", ")
    )
}

/// PostgreSQL with user and database `app`, and Strata in front of it with one server
/// connection that every client shares; the listener's address.
fn one_shared_connection() -> (Postgres, Strata, SocketAddr) {
    app_database("", "pool_size = 1")
}

/// PostgreSQL with user and database `app`, where `app` ran `setup` (unless empty), and
/// Strata in front of it with `extra` in its `[[database]]`; the listener's address.
fn app_database(setup: &str, extra: &str) -> (Postgres, Strata, SocketAddr) {
    let pg = Postgres::start();
    pg.user_and_database("app", "secret");
    if !setup.is_empty() {
        psql(pg.addr, "app", "secret", "app", setup).unwrap();
    }
    let strata = Strata::start(&config(&[pg.addr], extra));
    let db = strata.addr("database:app");
    (pg, strata, db)
}

/// A primary with user and database `app` (password `secret`) where `app` ran `setup`, and a
/// streaming replica made from it afterwards.
fn primary_and_replica(setup: &str) -> (Postgres, Postgres) {
    let primary = Postgres::start();
    primary.user_and_database("app", "secret");
    psql(primary.addr, "app", "secret", "app", setup).unwrap();
    let replica = primary.replica();
    (primary, replica)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_and_pgbench_share_two_server_connections_in_transaction_mode() {
    let pg = Postgres::start();
    pg.user_and_database("app", "secret");
    let strata = Strata::start(&config(&[pg.addr], "pool_size = 2"));
    let db = strata.addr("database:app");
    let out =
        blocking(move || psql(db, "app", "secret", "app", "select 40 + 2, current_user")).await;
    assert_eq!(out.as_deref(), Ok("42|app"));
    let init =
        blocking(move || pgbench(db, "app", "secret", "app", &["-i", "-s", "1", "-q"])).await;
    assert!(init.contains("done in"), "{init}");
    // pgbench prepares a statement synchronously, blocking its thread: with clients sharing a
    // thread and fewer server connections than clients, one waiting for a connection would
    // stall a sibling that holds one (so with any pooler): one client per thread there
    for (mode, clients, threads, each) in [
        ("simple", "8", "2", 200),
        ("extended", "8", "2", 200),
        ("prepared", "4", "4", 400),
    ] {
        let out = blocking(move || {
            let t = each.to_string();
            pgbench(
                db,
                "app",
                "secret",
                "app",
                &["-c", clients, "-j", threads, "-t", &t, "-M", mode],
            )
        })
        .await;
        assert!(
            out.contains("number of transactions actually processed: 1600/1600"),
            "{mode}: {out}"
        );
        assert!(
            out.contains("number of failed transactions: 0"),
            "{mode}: {out}"
        );
    }
    // many clients, never more than two server connections
    let direct = pg.admin("select count(*) from pg_stat_activity where usename = 'app'");
    assert!(direct.parse::<u32>().unwrap() <= 2, "{direct}");
    let s = admin_status(&strata).await;
    let pool = &s["database"][0]["pools"][0];
    assert_eq!(pool["user"], "app", "{s}");
    assert_eq!(pool["server_in_use"], 0, "{s}");
    assert_eq!(s["database"][0]["clients_active"], 0, "{s}");
    assert_eq!(s["database"][0]["primary"], pg.addr.to_string(), "{s}");
    let metrics = admin_get(&strata, "/metrics").await.body;
    assert_eq!(
        metric(&metrics, "strata_db_server_role", "role=\"primary\""),
        Some(1.0),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_and_an_unknown_user_are_refused_alike() {
    let pg = Postgres::start();
    pg.user_and_database("app", "secret");
    let strata = Strata::start(&config(&[pg.addr], ""));
    let db = strata.addr("database:app");
    let wrong = blocking(move || psql(db, "app", "nope", "app", "select 1")).await;
    let unknown = blocking(move || psql(db, "mallory", "nope", "app", "select 1")).await;
    assert!(
        wrong
            .as_ref()
            .unwrap_err()
            .contains("password authentication failed for user \"app\""),
        "{wrong:?}"
    );
    assert!(
        unknown
            .as_ref()
            .unwrap_err()
            .contains("password authentication failed for user \"mallory\""),
        "{unknown:?}"
    );
    // md5 works too, for a user Strata knows the password of
    let strata_md5 = Strata::start(&config(&[pg.addr], "auth_type = \"md5\""));
    let db = strata_md5.addr("database:app");
    let ok = blocking(move || psql(db, "app", "secret", "app", "select 'md5 ok'")).await;
    assert_eq!(ok.as_deref(), Ok("md5 ok"));
    let metrics = admin_get(&strata, "/metrics").await.body;
    assert_eq!(
        metric(
            &metrics,
            "strata_db_auth_failures_total",
            "listener=\"app\""
        ),
        Some(2.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scram_secret_from_pg_authid_logs_clients_in_and_strata_on() {
    let pg = Postgres::start();
    pg.user_and_database("app", "secret");
    let secret = pg.admin("select rolpassword from pg_authid where rolname = 'app'");
    assert!(secret.starts_with("SCRAM-SHA-256$"), "{secret}");
    let cfg = config(&[pg.addr], "")
        .replace("password = \"secret\"", &format!("password = \"{secret}\""));
    let strata = Strata::start(&cfg);
    let db = strata.addr("database:app");
    // no plaintext password anywhere in Strata's config: the client's proof opens the server
    let out = blocking(move || psql(db, "app", "secret", "app", "select 'scram ok'")).await;
    assert_eq!(out.as_deref(), Ok("scram ok"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_client_keeps_its_own_parameters_on_a_shared_connection() {
    let (pg, _strata, db) = one_shared_connection();
    let default_tz = pg.admin("show timezone");
    let tokyo = blocking(move || {
        let mut a = PsqlSession::open(
            db,
            "app",
            "secret",
            "app",
            &[("PGOPTIONS", "-c TimeZone=Asia/Tokyo")],
        );
        let mut b = PsqlSession::open(db, "app", "secret", "app", &[("PGAPPNAME", "client-b")]);
        let mut seen = Vec::new();
        for _ in 0..3 {
            seen.push(a.line("show timezone"));
            seen.push(b.line("show timezone"));
            seen.push(b.line("select current_setting('application_name')"));
            a.send("set application_name = 'client-a'");
            seen.push(a.line("select current_setting('application_name')"));
        }
        seen
    })
    .await;
    for round in tokyo.chunks(4) {
        assert_eq!(
            round,
            [
                "Asia/Tokyo".to_string(),
                default_tz.clone(),
                "client-b".to_string(),
                "client-a".to_string()
            ]
        );
    }
}

/// A startup parameter the pooler has no slot for (here `work_mem`, through `options`) is not
/// dropped: it is set on each server connection the client gets, and gone for the next client
/// on that connection; one PostgreSQL does not know refuses the login with PostgreSQL's words
/// (PgBouncer refuses every such parameter unless told to ignore it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_startup_parameter_is_carried_and_an_unknown_one_refused() {
    let (pg, _strata, db) = one_shared_connection();
    let default = pg.admin("show work_mem");
    let seen = blocking(move || {
        let mut a = PsqlSession::open(
            db,
            "app",
            "secret",
            "app",
            &[("PGOPTIONS", "-c work_mem=1234kB")],
        );
        let mut b = PsqlSession::open(db, "app", "secret", "app", &[]);
        let mut seen = Vec::new();
        for _ in 0..3 {
            seen.push(a.line("show work_mem"));
            seen.push(b.line("show work_mem"));
        }
        seen
    })
    .await;
    for round in seen.chunks(2) {
        assert_eq!(round, ["1234kB".to_string(), default.clone()]);
    }
    // what psql says when it logs in with these options and is refused
    let refused = |options: &'static str| {
        blocking(move || {
            let out = psql_command(db, "app", "secret", "app")
                .env("PGOPTIONS", options)
                .args(["-c", "select 1"])
                .output()
                .unwrap();
            assert!(!out.status.success(), "{options}: logged in");
            String::from_utf8_lossy(&out.stderr).into_owned()
        })
    };
    let err = refused("-c no_such_setting=1").await;
    assert!(
        err.contains("unrecognized configuration parameter"),
        "{err}"
    );
    // a role is the login's identity: RESET ALL would not undo it on a shared connection
    let err = refused("-c role=postgres").await;
    assert!(
        err.contains("\"role\" is not supported by the pooler"),
        "{err}"
    );
}

/// In session mode a client's end resets its connection (DISCARD ALL), startup parameters the
/// pooler has no slot for included: each client gets its own on that connection, and one that
/// gives none gets the server's default.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_startup_parameter_is_set_again_for_the_next_session_that_gives_it() {
    let (pg, _strata, db) = app_database("", "pool_size = 1\npool_mode = \"session\"");
    let default = pg.admin("show work_mem");
    let seen = blocking(move || {
        let options = [("PGOPTIONS", "-c work_mem=1234kB")];
        let mut seen = Vec::new();
        for with in [&options[..], &options[..], &[], &options[..]] {
            // one at a time, on the pool's only connection
            let mut client = PsqlSession::open(db, "app", "secret", "app", with);
            seen.push(client.line("show work_mem"));
        }
        seen
    })
    .await;
    assert_eq!(seen, ["1234kB", "1234kB", default.as_str(), "1234kB"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_leaves_inside_a_transaction_leaves_nothing_behind() {
    let pg = Postgres::start();
    pg.user_and_database("app", "secret");
    psql(pg.addr, "app", "secret", "app", "create table t (n int)").unwrap();
    let strata = Strata::start(&config(&[pg.addr], "pool_size = 1"));
    let db = strata.addr("database:app");
    let after = blocking(move || {
        let mut a = PsqlSession::open(db, "app", "secret", "app", &[]);
        a.send("begin");
        a.send("insert into t values (1)");
        assert_eq!(a.line("select count(*) from t"), "1");
        a.child.kill().unwrap(); // gone, mid-transaction, holding the only connection
        let _ = a.child.wait();
        // the next client gets the same server connection, rolled back
        psql(db, "app", "secret", "app", "select count(*), (select state from pg_stat_activity where pid = pg_backend_pid()) from t")
    })
    .await;
    assert_eq!(after.as_deref(), Ok("0|active"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_request_reaches_the_query_on_its_server() {
    let pg = Postgres::start();
    pg.user_and_database("app", "secret");
    let strata = Strata::start(&config(&[pg.addr], ""));
    let db = strata.addr("database:app");
    let (took, err) = blocking(move || {
        let child = psql_command(db, "app", "secret", "app")
            .args(["-c", "select pg_sleep(60)"])
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // wait until the query runs on the server, then interrupt psql: it sends a cancel
        let deadline = Instant::now() + Duration::from_secs(10);
        while psql(
            db,
            "app",
            "secret",
            "app",
            "select count(*) from pg_stat_activity where query = 'select pg_sleep(60)'",
        )
        .as_deref()
            != Ok("1")
        {
            assert!(Instant::now() < deadline, "the query never ran");
            std::thread::sleep(Duration::from_millis(50));
        }
        let start = Instant::now();
        // SAFETY: kill(2) on our own child's pid.
        #[allow(unsafe_code)]
        unsafe {
            libc::kill(child.id() as i32, libc::SIGINT)
        };
        let out = child.wait_with_output().unwrap();
        (
            start.elapsed(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    })
    .await;
    // psql reports the cancellation (a query that ran its 60 s would end without it)
    assert!(
        err.contains("canceling statement due to user request"),
        "{err} after {took:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_follow_a_promoted_replica() {
    let mut primary = Postgres::start();
    primary.user_and_database("app", "secret");
    psql(
        primary.addr,
        "app",
        "secret",
        "app",
        "create table t (n int)",
    )
    .unwrap();
    let replica = primary.replica();
    let strata = Strata::start(&config(&[primary.addr, replica.addr], ""));
    let db = strata.addr("database:app");
    let (p, r) = (primary.addr.to_string(), replica.addr.to_string());
    eventually(Duration::from_secs(10), "the roles are found", || async {
        let s = admin_status(&strata).await;
        let servers = &s["database"][0]["servers"];
        s["database"][0]["primary"] == p.as_str()
            && servers.as_array().unwrap().iter().any(|x| {
                x["address"] == r.as_str() && x["role"] == "replica" && x["lag_bytes"].is_u64()
            })
    })
    .await;
    let metrics = admin_get(&strata, "/metrics").await.body;
    assert!(
        metric(
            &metrics,
            "strata_db_replica_lag_bytes",
            &format!("server=\"{r}\"")
        )
        .is_some(),
        "{metrics}"
    );
    let wrote =
        blocking(move || psql(db, "app", "secret", "app", "insert into t values (1)")).await;
    assert_eq!(wrote.as_deref(), Ok(""));
    // the primary dies; the replica is promoted (as Patroni would); writes follow
    primary.kill();
    // meanwhile a write fails with the kind of failure, not the server's address or the
    // operating system's words (those go to the log)
    let failed =
        blocking(move || psql(db, "app", "secret", "app", "insert into t values (3)")).await;
    let failed = failed.expect_err("no primary: the write fails");
    assert!(
        !failed.contains(&primary.addr.port().to_string()) && !failed.contains("os error"),
        "{failed}"
    );
    let promoted = psql(
        replica.addr,
        "postgres",
        SUPERUSER_PASSWORD,
        "postgres",
        "select pg_promote()",
    );
    assert_eq!(promoted.as_deref(), Ok("t"));
    eventually(
        Duration::from_secs(10),
        "the promoted replica takes the writes",
        || async {
            let r = blocking(move || psql(db, "app", "secret", "app", "insert into t values (2)"))
                .await;
            r.is_ok()
        },
    )
    .await;
    let rows = blocking(move || {
        psql(
            db,
            "app",
            "secret",
            "app",
            "select string_agg(n::text, ',' order by n) from t",
        )
    })
    .await;
    assert_eq!(rows.as_deref(), Ok("1,2"));
    let s = admin_status(&strata).await;
    assert_eq!(s["database"][0]["primary"], replica.addr.to_string(), "{s}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_run_on_the_replica_unless_the_client_just_wrote() {
    let (primary, replica) = primary_and_replica("create table w (x int)");
    let strata = Strata::start(&config(
        &[primary.addr, replica.addr],
        "read_your_writes = \"300ms\"",
    ));
    let db = strata.addr("database:app");
    let r = replica.addr.to_string();
    replica_known(&strata, &r).await;
    let seen = blocking(move || {
        let mut c = PsqlSession::open(db, "app", "secret", "app", &[]);
        let mut seen = Vec::new();
        // a statement PostgreSQL's parser finds only reads: the replica
        seen.push(c.line("select pg_is_in_recovery()"));
        // one that calls a function that is not known to only read: the primary
        seen.push(c.line("select pg_is_in_recovery() where pg_try_advisory_xact_lock(1)"));
        // right after it, reads stay on the primary (read-your-writes), in a transaction
        // that says READ ONLY too
        seen.push(c.line("select pg_is_in_recovery()"));
        c.send("begin read only");
        seen.push(c.line("select pg_is_in_recovery()"));
        c.send("commit");
        // and once the window has passed, the replica again
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            c.send("begin read only");
            let on = c.line("select pg_is_in_recovery()");
            c.send("commit");
            if on == "t" {
                break;
            }
            assert!(Instant::now() < deadline, "never ran on the replica: {on}");
            std::thread::sleep(Duration::from_millis(100));
        }
        seen.push(c.line("select lower('X'), pg_is_in_recovery()"));
        // a write: the primary, whatever it starts with
        seen.push(c.line(
            "with i as (insert into w select 1 returning x) select pg_is_in_recovery() from i",
        ));
        seen
    })
    .await;
    assert_eq!(seen[..4], ["t", "f", "f", "f"], "{}", strata.logs());
    assert_eq!(seen[4], "x|t", "{}", strata.logs());
    assert!(
        seen[5] != "t",
        "a data-modifying WITH ran on the replica: {seen:?}"
    );
}

/// Reads go where fewer of the pool's connections are taken: to the primary while a replica's
/// are held and the primary's are not (with `primary_reads = false`, to the replica whatever
/// its load); a read that ran on the primary does not keep the client's next reads there, as a
/// write would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_go_to_the_primary_too_while_the_replicas_are_busier() {
    let (primary, replica) = primary_and_replica("create table w (x int)");
    let r = replica.addr.to_string();
    for (extra, busy_replica_gives) in [("", "f"), ("primary_reads = false", "t")] {
        let strata = Strata::start(&config(
            &[primary.addr, replica.addr],
            &format!("pool_size = 2\n{extra}"),
        ));
        let db = strata.addr("database:app");
        replica_known(&strata, &r).await;
        let seen = blocking(move || {
            let mut reader = PsqlSession::open(db, "app", "secret", "app", &[]);
            let mut seen = vec![reader.line("select pg_is_in_recovery()")];
            // another client holds one of the replica's connections
            let mut holder = PsqlSession::open(db, "app", "secret", "app", &[]);
            holder.send("begin read only");
            seen.push(holder.line("select pg_is_in_recovery()"));
            seen.push(reader.line("select pg_is_in_recovery()"));
            seen.push(reader.line("select count(*), pg_is_in_recovery() from w"));
            holder.send("commit");
            (reader, seen)
        })
        .await;
        let (mut reader, mut seen) = seen;
        eventually(
            Duration::from_secs(10),
            "the replica's connection given back",
            || async {
                admin_status(&strata).await["database"][0]["pools"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .all(|p| p["server_in_use"] == 0)
            },
        )
        .await;
        // equal again: the replica, with no read-your-writes window from the reads above
        let seen = blocking(move || {
            seen.push(reader.line("select pg_is_in_recovery()"));
            seen
        })
        .await;
        assert_eq!(
            seen,
            [
                "t",
                "t",
                busy_replica_gives,
                &format!("0|{busy_replica_gives}"),
                "t"
            ],
            "{extra}: {}",
            strata.logs()
        );
    }
}

/// Session mode: a session holds its server connection from login, so when another server
/// becomes the primary (here a promoted replica, with the old primary still up and still
/// taking writes: the split brain a failover can leave) the session ends between two
/// transactions with 57P01, and the client's reconnect lands on the new primary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_on_an_old_primary_ends_when_another_takes_the_writes() {
    let (primary, replica) = primary_and_replica("create table t (n int)");
    let strata = Strata::start(&config(
        &[primary.addr, replica.addr],
        "pool_mode = \"session\"\nauth_type = \"trust\"",
    ));
    let db = strata.addr("database:app");
    replica_known(&strata, &replica.addr.to_string()).await;
    let (mut s, _) = common::postgres::log_in(db, &[]).await;
    let got = common::postgres::query(&mut s, "insert into t values (1)").await;
    assert_eq!(got.last().unwrap(), &(b'Z', vec![b'I']), "{got:?}");
    let promoted = psql(
        replica.addr,
        "postgres",
        SUPERUSER_PASSWORD,
        "postgres",
        "select pg_promote()",
    );
    assert_eq!(promoted.as_deref(), Ok("t"));
    let r = replica.addr.to_string();
    eventually(
        Duration::from_secs(10),
        "the promoted replica is the primary",
        || async { admin_status(&strata).await["database"][0]["primary"] == r.as_str() },
    )
    .await;
    let sql = b"insert into t values (2)\0";
    s.write_all(&common::postgres::message(b'Q', sql))
        .await
        .unwrap();
    let closed = common::postgres::until_closed(&mut s).await;
    assert!(
        closed.windows(6).any(|w| w == b"C57P01")
            && String::from_utf8_lossy(&closed).contains("no longer the primary"),
        "{}",
        closed.escape_ascii()
    );
    // the write did not reach the old primary; a new session writes on the new one
    assert_eq!(
        psql(
            primary.addr,
            "app",
            "secret",
            "app",
            "select count(*) from t"
        )
        .as_deref(),
        Ok("1")
    );
    let wrote =
        blocking(move || psql(db, "app", "secret", "app", "insert into t values (3)")).await;
    assert_eq!(wrote.as_deref(), Ok(""));
    assert_eq!(
        psql(
            replica.addr,
            "app",
            "secret",
            "app",
            "select string_agg(n::text, ',' order by n) from t"
        )
        .as_deref(),
        Ok("1,3")
    );
}

/// psycopg 3, a real driver as applications use it (it prepares statements, pipelines, copies
/// and cancels), through a listener in transaction mode over a primary and a replica with one
/// server connection each: its statements read on the replica and write on the primary, and
/// every answer is the one it expects (crates/strata/tests/clients/psycopg_db.py says what).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psycopg_works_through_the_pooler_and_reads_on_the_replica() {
    let (primary, replica) =
        primary_and_replica("create table items (id int primary key, name text)");
    let strata = Strata::start(&config(&[primary.addr, replica.addr], "pool_size = 1"));
    let db = strata.addr("database:app");
    replica_known(&strata, &replica.addr.to_string()).await;
    python_ok(
        "psycopg_db.py",
        &[&db.ip().to_string(), &db.port().to_string()],
    )
    .await;
    // what it wrote is on the primary
    let count = psql(
        primary.addr,
        "app",
        "secret",
        "app",
        "select count(*) from items",
    )
    .unwrap();
    assert_eq!(count.trim(), "1052");
}

/// A replica that refuses a client's login (here its own pg_hba.conf rejects the user; in
/// life, a replica starting up or out of connection slots) is banned at once, and the read
/// goes to the primary: the client sees its answer, not the replica's refusal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_refuses_a_login_is_banned_and_the_read_goes_to_the_primary() {
    let (primary, replica) = primary_and_replica("create table w (x int)");
    let hba = replica.dir.path().join("data/pg_hba.conf");
    let rules = std::fs::read_to_string(&hba).unwrap();
    std::fs::write(&hba, format!("host all app 127.0.0.1/32 reject\n{rules}")).unwrap();
    replica.admin("select pg_reload_conf()");
    let strata = Strata::start(&config(&[primary.addr, replica.addr], "ban_time = \"60s\""));
    let db = strata.addr("database:app");
    let r = replica.addr.to_string();
    replica_known(&strata, &r).await;
    let answer =
        blocking(move || psql(db, "app", "secret", "app", "select pg_is_in_recovery()")).await;
    assert_eq!(answer.as_deref(), Ok("f"), "{}", strata.logs());
    let s = admin_status(&strata).await;
    let server = s["database"][0]["servers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["address"] == r.as_str())
        .cloned()
        .unwrap();
    assert_eq!(server["role"], "down", "{s}");
    assert!(
        strata.logs().contains("replica refused a connection"),
        "{}",
        strata.logs()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_client_ever_gets_another_clients_rows_while_clients_are_killed() {
    let pg = Postgres::start();
    pg.user_and_database("app", "secret");
    let strata = Strata::start(&config(&[pg.addr], "pool_size = 2"));
    let db = strata.addr("database:app");
    // each transaction asks for a number only it knows and fails if it gets anything else
    let script = write_file(
        strata.dir.path(),
        "check.sql",
        "\\set id random(1, 1000000000)\n\
         select :id as got, pg_sleep(0.001) \\gset\n\
         \\if :got != :id\n\
         select 1 / 0;\n\
         \\endif\n",
    );
    // meanwhile, clients that die in the middle of their queries, at random moments
    let killer = Killer::start(
        db,
        &[
            "begin",
            "select pg_sleep(0.02)",
            "select repeat('x', 1000) from generate_series(1, 2000)",
        ],
    );
    for mode in ["extended", "prepared"] {
        every_transaction_passes(db, 4, 300, mode, &script).await;
    }
    assert!(killer.stop().await > 0);
    // nothing left behind: no server connection idles in a transaction (probed: the last
    // victim's connection may still be finishing its statements before its rollback, for
    // at most the pooler's 10 s of cleanup)
    let until = Instant::now() + Duration::from_secs(15);
    let stuck = std::iter::repeat_with(|| {
        pg.admin("select count(*) from pg_stat_activity where usename = 'app' and state like 'idle in transaction%'")
    })
    .find(|n| n == "0" || Instant::now() > until)
    .unwrap_or_default();
    assert_eq!(stuck, "0");
}

/// Runs pgbench's `script` through `db` (`clients` clients, `transactions` each, in
/// protocol `mode`), and asserts that every transaction ran and none failed.
async fn every_transaction_passes(
    db: SocketAddr,
    clients: usize,
    transactions: usize,
    mode: &'static str,
    script: &std::path::Path,
) {
    every_transaction_passes_on(db, clients, 4, transactions, mode, script).await
}

/// [`every_transaction_passes`], the clients run by `threads` pgbench threads.
async fn every_transaction_passes_on(
    db: SocketAddr,
    clients: usize,
    threads: usize,
    transactions: usize,
    mode: &'static str,
    script: &std::path::Path,
) {
    let path = script.display().to_string();
    let out = blocking(move || {
        let (c, j, t) = (
            clients.to_string(),
            threads.to_string(),
            transactions.to_string(),
        );
        pgbench(
            db,
            "app",
            "secret",
            "app",
            &["-n", "-c", &c, "-j", &j, "-t", &t, "-M", mode, "-f", &path],
        )
    })
    .await;
    let all = clients * transactions;
    assert!(
        out.contains(&format!(
            "number of transactions actually processed: {all}/{all}"
        )),
        "{mode}: {out}"
    );
    assert!(
        out.contains("number of failed transactions: 0"),
        "{mode}: {out}"
    );
}

/// psql clients that send statements (without waiting for answers) and are killed a few
/// milliseconds later, one after another, until stopped.
struct Killer {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<usize>,
}

impl Killer {
    fn start(db: SocketAddr, statements: &[&str]) -> Killer {
        let statements: Vec<String> = statements.iter().map(|s| s.to_string()).collect();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut killed = 0;
            let mut n: u64 = 7;
            while !flag.load(std::sync::atomic::Ordering::SeqCst) {
                let mut victim = PsqlSession::open(db, "app", "secret", "app", &[]);
                for s in &statements {
                    victim.send(s);
                }
                n = n
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                std::thread::sleep(Duration::from_millis(2 + (n >> 58)));
                victim.child.kill().unwrap();
                let _ = victim.child.wait();
                killed += 1;
            }
            killed
        });
        Killer { stop, thread }
    }

    /// Stops; how many were killed.
    async fn stop(self) -> usize {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        blocking(move || self.thread.join().unwrap()).await
    }
}

/// `strata_db_shared_queries_total` now.
async fn shared_queries(strata: &Strata) -> f64 {
    let text = admin_get(strata, "/metrics").await.body;
    metric(&text, "strata_db_shared_queries_total", "").unwrap_or(0.0)
}

/// pgbench `-M prepared` prepares each statement the first time it runs it, synchronously:
/// one of its threads, running many clients, waits for the prepare of one while the others
/// hold transactions on every connection of the pool. The prepare (Parse, Sync) is answered
/// by Strata then, so the thread goes on and the transactions end; before, the prepare waited
/// for a connection only that thread could free, until `query_wait_timeout`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prepare_while_the_pool_is_held_by_the_same_threads_transactions_does_not_wait() {
    let (pg, strata, db) = app_database(
        "create table t (n int); insert into t values (0)",
        "pool_size = 2\nquery_wait_timeout = \"3s\"",
    );
    let script = write_file(
        strata.dir.path(),
        "tx.sql",
        "BEGIN;\nupdate t set n = n + 1;\nselect n from t;\nEND;\n",
    );
    every_transaction_passes_on(db, 6, 1, 20, "prepared", &script).await;
    let n = psql(pg.addr, "app", "secret", "app", "select n from t");
    assert_eq!(n.as_deref(), Ok("120"));
}

/// The same, with the prepare's Parse and its Sync in two reads (a client's writes may be cut
/// anywhere): Strata waits for the batch to end before it routes it, so the prepare is still
/// answered at once while the one connection is held; before, the Parse alone took the road
/// of a batch that runs something, and waited for the connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prepare_in_two_reads_while_every_connection_is_taken_does_not_wait() {
    let (_pg, _strata, db) = app_database(
        "",
        "pool_size = 1\nauth_type = \"trust\"\nquery_wait_timeout = \"30s\"",
    );
    let (mut holder, _) = log_in(db, &[]).await;
    for sql in ["begin", "select 1"] {
        let got = query(&mut holder, sql).await;
        assert_eq!(got.last(), Some(&(b'Z', b"T".to_vec())), "{got:?}");
    }
    let (mut client, _) = log_in(db, &[]).await;
    client.set_nodelay(true).unwrap();
    client
        .write_all(&message(b'P', b"s1\0select 40 + 2\0\0\0"))
        .await
        .unwrap();
    // the point of the test: Strata reads the Parse before the Sync is sent
    tokio::time::sleep(Duration::from_millis(200)).await;
    client.write_all(&message(b'S', b"")).await.unwrap();
    let got = until_ready(&mut client).await;
    assert_eq!(got, [(b'1', vec![]), (b'Z', b"I".to_vec())]);
    // the statement runs once the connection is free
    let got = query(&mut holder, "commit").await;
    assert_eq!(got.last(), Some(&(b'Z', b"I".to_vec())), "{got:?}");
    let run = [
        message(b'B', b"\0s1\0\0\0\0\0\0\0"),
        message(b'E', b"\0\0\0\0\0"),
        message(b'S', b""),
    ]
    .concat();
    client.write_all(&run).await.unwrap();
    let got = until_ready(&mut client).await;
    assert!(
        got.iter()
            .any(|(tag, body)| *tag == b'D' && body.ends_with(b"42")),
        "{got:?}"
    );
    assert_eq!(got.last(), Some(&(b'Z', b"I".to_vec())), "{got:?}");
}

/// A client that prepares ever new statements by name without closing them is ended once it
/// keeps 10,000 (each costs Strata its text), with 54000 and why; the ones before it were
/// prepared, and other clients go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_prepares_without_end_is_closed_at_the_bound() {
    let (_pg, _strata, db) = app_database("", "auth_type = \"trust\"");
    let (mut client, _) = log_in(db, &[]).await;
    for batch in 0..20 {
        let mut out = Vec::new();
        for i in 0..500 {
            let n = batch * 500 + i;
            out.extend(message(b'P', format!("s{n}\0select {n}\0\0\0").as_bytes()));
        }
        out.extend(message(b'S', b""));
        client.write_all(&out).await.unwrap();
        let got = until_ready(&mut client).await;
        assert_eq!(got.len(), 501, "batch {batch}: {:?}", &got[got.len() - 1]);
        assert!(got[..500].iter().all(|(tag, _)| *tag == b'1'));
    }
    let one_more = [
        message(b'P', b"one_more\0select 1\0\0\0"),
        message(b'S', b""),
    ]
    .concat();
    client.write_all(&one_more).await.unwrap();
    let closed = until_closed(&mut client).await;
    let text = String::from_utf8_lossy(&closed);
    assert!(
        text.contains("C54000") && text.contains("too many prepared statements"),
        "{}",
        closed.escape_ascii()
    );
    let (mut other, _) = log_in(db, &[]).await;
    let got = query(&mut other, "select 1").await;
    assert_eq!(got.last(), Some(&(b'Z', b"I".to_vec())), "{got:?}");
}

/// Statements prepared by name (pgbench `-M prepared` names them P0_0, P0_1, ... by their
/// place in the script) sharing connections: two scripts whose statements have the same names
/// and other text each run their own, on connections that hold the other's too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_of_the_same_name_and_other_text_share_connections_and_stay_apart() {
    let (_pg, strata, db) = app_database("", "pool_size = 2\nread_pipeline_from = 1");
    let script = |who: u32, extra: &str| {
        write_file(
            strata.dir.path(),
            &format!("{who}.sql"),
            &format!(
                "\\set id random(1, 1000000000)\n\
                 select :id as got, {who} as who{extra} \\gset\n\
                 \\if :got != :id\n\
                 select 1 / 0;\n\
                 \\elif :who != {who}\n\
                 select 1 / 0;\n\
                 \\endif\n"
            ),
        )
    };
    let (a, b) = (script(1, ""), script(2, ", 3 as three"));
    let before = shared_queries(&strata).await;
    tokio::join!(
        every_transaction_passes(db, 4, 300, "prepared", &a),
        every_transaction_passes(db, 4, 300, "prepared", &b),
    );
    let shared = shared_queries(&strata).await - before;
    assert!(shared > 100.0, "{shared} queries shared a connection");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_that_share_a_connection_each_get_their_own_answer() {
    // two server connections for eight readers, a writer and clients that die: reads share
    // connections whenever one is in use
    let (pg, strata, db) = app_database(
        "create table log (n int)",
        "pool_size = 2\nread_pipeline_from = 1",
    );
    // each query (simple protocol, outside a transaction: one that may share) asks for a
    // number only it knows, with an answer of its own length, and fails on anything else
    let script = write_file(
        strata.dir.path(),
        "check.sql",
        "\\set id random(1, 1000000000)\n\
         select :id as got, length(repeat('y', :id % 20000)) as len \\gset\n\
         \\if :got != :id\n\
         select 1 / 0;\n\
         \\elif :len != :id % 20000\n\
         select 1 / 0;\n\
         \\endif\n",
    );
    // meanwhile, clients that die while a long answer to a read is on its way to them
    let killer = Killer::start(
        db,
        &["select repeat('x', 1000) from generate_series(1, 3000)"],
    );
    // and a writer, which must get connections of its own in turn
    let writer = std::thread::spawn(move || {
        (0..30)
            .map(|i| {
                psql(
                    db,
                    "app",
                    "secret",
                    "app",
                    &format!("insert into log values ({i})"),
                )
            })
            .filter(Result::is_ok)
            .count()
    });
    // simple queries, batches of the unnamed statement (Parse, Bind, Describe, Execute,
    // Sync), and Bind/Execute/Sync of statements prepared by name: all may share
    for mode in ["simple", "extended", "prepared"] {
        let before = shared_queries(&strata).await;
        every_transaction_passes(db, 8, 200, mode, &script).await;
        // the reads did share (else this test proves nothing)
        let shared = shared_queries(&strata).await - before;
        assert!(
            shared > 100.0,
            "{mode}: {shared} queries shared a connection"
        );
    }
    assert_eq!(blocking(move || writer.join().unwrap()).await, 30);
    assert!(killer.stop().await > 0);
    let written = psql(pg.addr, "app", "secret", "app", "select count(*) from log");
    assert_eq!(written.as_deref(), Ok("30"));
    // and nothing is left behind on the server
    let stuck = pg.admin("select count(*) from pg_stat_activity where usename = 'app' and state like 'idle in transaction%'");
    assert_eq!(stuck, "0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_for_a_read_queued_behind_another_waits_for_its_turn() {
    // one server connection, which reads share as soon as it is in use
    let (pg, strata, db) = app_database(
        "create table t (n int); create table u (n int); insert into t values (7)",
        "pool_size = 1\nread_pipeline_from = 1",
    );
    // two sessions straight to the server hold t and u locked
    let mut lock_t = PsqlSession::open(pg.addr, "app", "secret", "app", &[]);
    let mut lock_u = PsqlSession::open(pg.addr, "app", "secret", "app", &[]);
    for (session, table) in [(&mut lock_t, "t"), (&mut lock_u, "u")] {
        session.send("begin");
        session.send(&format!("lock table {table} in access exclusive mode"));
        assert_eq!(session.line("select 'locked'"), "locked");
    }
    let spawn = |sql: &str| {
        psql_command(db, "app", "secret", "app")
            .args(["-c", sql])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    // A waits for t's lock on the connection; B's read of u is sent behind it
    let a = spawn("select n from t");
    let waits = "select count(*) from pg_stat_activity where query = 'select n from t' and wait_event_type = 'Lock'";
    eventually(Duration::from_secs(10), "A waits for the lock", || async {
        pg.admin(waits) == "1"
    })
    .await;
    let b = spawn("select n from u");
    eventually(
        Duration::from_secs(10),
        "B shares A's connection",
        || async { shared_queries(&strata).await >= 2.0 },
    )
    .await;
    // psql sends B's cancel request on ^C; B is not running yet, A is: A must not be cancelled
    // SAFETY: kill(2) on our own child's pid.
    #[allow(unsafe_code)]
    unsafe {
        libc::kill(b.id() as i32, libc::SIGINT)
    };
    // once t is unlocked A gets its row; then B runs, and its cancel goes: it ends while u is
    // still locked
    lock_t.send("commit");
    let a = blocking(move || a.wait_with_output().unwrap()).await;
    assert!(
        a.status.success(),
        "A: {}",
        String::from_utf8_lossy(&a.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&a.stdout).trim(), "7");
    let b = blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut b = b;
        while b.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = b.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        b.wait_with_output().unwrap()
    })
    .await;
    let err = String::from_utf8_lossy(&b.stderr);
    assert!(
        err.contains("canceling statement due to user request"),
        "B: {err}"
    );
    drop(lock_u);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_holds_up_a_shared_connection_for_a_while_only() {
    let (_pg, strata, db) = app_database(
        "",
        "pool_size = 1\nread_pipeline_from = 1\nauth_type = \"trust\"",
    );
    // X asks for 30 MB and reads none of it
    let (mut x, _) = log_in(db, &[]).await;
    x.write_all(&message(
        b'Q',
        b"select repeat('x', 1000) from generate_series(1, 30000)\0",
    ))
    .await
    .unwrap();
    eventually(
        Duration::from_secs(10),
        "X's read on a shared connection",
        || async { shared_queries(&strata).await >= 1.0 },
    )
    .await;
    // Y's read is sent behind it, and answered once X's answer is given up
    let y = blocking(move || {
        psql_command(db, "app", "", "app")
            .args(["-c", "select 42"])
            .output()
    });
    let y = tokio::time::timeout(Duration::from_secs(60), y)
        .await
        .expect("Y's answer within a minute")
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&y.stdout).trim(), "42");
    assert!(
        shared_queries(&strata).await >= 2.0,
        "Y shared X's connection"
    );
    // X gets what was on its way, then a FATAL that says why, and the connection closes
    let rest = until_closed(&mut x).await;
    let text = String::from_utf8_lossy(&rest);
    assert!(
        text.contains("was not read for 10 s"),
        "{}",
        &text[text.len().saturating_sub(300)..]
    );
}

/// Ends the one backend of user `app` (as a restart, an idle timeout or an administrator
/// would: it says FATAL and closes), and waits until it is gone.
async fn end_the_app_backend(pg: &Postgres) {
    let ended = pg.admin(
        "select count(pg_terminate_backend(pid)) from pg_stat_activity where usename = 'app'",
    );
    assert_eq!(ended, "1");
    eventually(Duration::from_secs(10), "the backend is gone", || async {
        pg.admin("select count(*) from pg_stat_activity where usename = 'app'") == "0"
    })
    .await;
}

/// Waits until the role check's `reason` for the listener's first server says `what`.
async fn reason_says(strata: &Strata, what: &str, context: &str) {
    eventually(
        Duration::from_secs(10),
        &format!("{context}: {what}"),
        || async {
            let s = admin_status(strata).await;
            s["database"][0]["servers"][0]["reason"]
                .to_string()
                .contains(what)
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_server_connection_the_server_closed_is_not_handed_out() {
    let (pg, _strata, db) = one_shared_connection();
    let first = blocking(move || psql(db, "app", "secret", "app", "select 1")).await;
    assert_eq!(first.as_deref(), Ok("1"));
    // the server ends the pooled connection while it idles (a restart, an idle timeout, an
    // administrator): it says FATAL and closes
    end_the_app_backend(&pg).await;
    // the next client gets a new connection, not the dead one (which would fail its query)
    let next = blocking(move || psql(db, "app", "secret", "app", "select 2")).await;
    assert_eq!(next.as_deref(), Ok("2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_goes_both_ways_through_the_pooler() {
    let (_pg, strata, db) = app_database("create table t (n int, s text)", "pool_size = 1");
    let rows: String = (1..=5000).map(|i| format!("{i}\trow {i}\n")).collect();
    let file = write_file(strata.dir.path(), "rows.tsv", &rows);
    let path = file.display().to_string();
    let out = blocking(move || {
        // psql's \copy sends COPY FROM STDIN and streams the file as CopyData
        let copied_in = psql(
            db,
            "app",
            "secret",
            "app",
            &format!("\\copy t from '{path}'"),
        );
        let back = psql(
            db,
            "app",
            "secret",
            "app",
            "copy (select n, s from t order by n) to stdout",
        );
        let count = psql(db, "app", "secret", "app", "select count(*), sum(n) from t");
        (copied_in, back, count)
    })
    .await;
    assert!(out.0.is_ok(), "{:?}", out.0);
    assert_eq!(out.1.unwrap() + "\n", rows);
    assert_eq!(out.2.as_deref(), Ok("5000|12502500"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_waits_too_long_for_a_connection_gets_a_clear_error_and_can_retry() {
    let pg = Postgres::start();
    pg.user_and_database("app", "secret");
    let strata = Strata::start(&config(
        &[pg.addr],
        "pool_size = 1\nquery_wait_timeout = \"300ms\"",
    ));
    let db = strata.addr("database:app");
    let (waited, after) = blocking(move || {
        let mut holder = PsqlSession::open(db, "app", "secret", "app", &[]);
        holder.send("begin");
        assert_eq!(holder.line("select 'holding'"), "holding");
        let waited = psql(db, "app", "secret", "app", "select 1");
        holder.send("commit");
        assert_eq!(holder.line("select 'done'"), "done");
        (
            waited,
            psql(db, "app", "secret", "app", "select 'free again'"),
        )
    })
    .await;
    let err = waited.unwrap_err();
    assert!(
        err.contains("no server connection became free within query_wait_timeout"),
        "{err}"
    );
    assert_eq!(after.as_deref(), Ok("free again"));
    let s = admin_status(&strata).await;
    assert_eq!(s["database"][0]["pools"][0]["clients_waiting"], 0, "{s}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_check_user_added_by_a_reload_starts_the_role_checks() {
    let pg = Postgres::start();
    pg.user_and_database("app", "secret");
    // app with its SCRAM secret only, which the role checks can't log in with: no check_user
    let secret = pg.admin("select rolpassword from pg_authid where rolname = 'app'");
    let checked = config(&[pg.addr], "")
        .replace("password = \"secret\"", &format!("password = \"{secret}\""));
    let unchecked = checked.replace("check_user = \"postgres\"\n", "").replace(
        &format!("[[database.users]]\nname = \"postgres\"\npassword = \"{SUPERUSER_PASSWORD}\"\n"),
        "",
    );
    assert!(!unchecked.contains("postgres"), "{unchecked}");
    let with = |check_user: bool| {
        if check_user {
            checked.clone()
        } else {
            unchecked.clone()
        }
    };
    let strata = Strata::start(&with(false));
    let db = strata.addr("database:app");
    let role = |s: &serde_json::Value| s["database"][0]["servers"][0]["role"].clone();
    let before = admin_status(&strata).await;
    assert_eq!(role(&before), "unknown", "{before}");
    std::fs::write(&strata.config, with(true)).unwrap();
    strata.signal(libc::SIGHUP);
    strata
        .wait_log("SIGHUP: reloaded", Duration::from_secs(5))
        .await;
    common::eventually(
        Duration::from_secs(10),
        "the server checked as the primary after the reload",
        || async { role(&admin_status(&strata).await) == "primary" },
    )
    .await;
    let answer = blocking(move || psql(db, "app", "secret", "app", "select 'still served'")).await;
    assert_eq!(answer.as_deref(), Ok("still served"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_a_reload_removes_leaves_the_pools() {
    let (primary, replica) = primary_and_replica("create table w (x int)");
    let both = config(&[primary.addr, replica.addr], "");
    let strata = Strata::start(&both);
    let db = strata.addr("database:app");
    let r = replica.addr.to_string();
    replica_known(&strata, &r).await;
    let on = blocking(move || psql(db, "app", "secret", "app", "select pg_is_in_recovery()")).await;
    assert_eq!(on.as_deref(), Ok("t"), "a read went to the replica");
    let pooled = |s: &serde_json::Value| -> Vec<String> {
        s["database"][0]["pools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["server"].as_str().unwrap().to_string())
            .collect()
    };
    assert!(pooled(&admin_status(&strata).await).contains(&r));
    std::fs::write(&strata.config, config(&[primary.addr], "")).unwrap();
    strata.signal(libc::SIGHUP);
    strata
        .wait_log("SIGHUP: reloaded", Duration::from_secs(5))
        .await;
    let s = admin_status(&strata).await;
    assert!(!pooled(&s).contains(&r), "{s}");
    let on = blocking(move || psql(db, "app", "secret", "app", "select pg_is_in_recovery()")).await;
    assert_eq!(on.as_deref(), Ok("f"));
    // the replica's pooled connection was closed: PostgreSQL soon shows no session of app
    let replica = std::sync::Arc::new(replica);
    common::eventually(
        Duration::from_secs(10),
        "app's session on the replica ends",
        || {
            let replica = replica.clone();
            async move {
                blocking(move || {
                    replica.admin("select count(*) from pg_stat_activity where usename = 'app'")
                        == "0"
                })
                .await
            }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_client_between_transactions_is_told_and_let_go_at_shutdown() {
    // drain_timeout is the default 30 s: Strata must not wait for the idle session that long
    let (_pg, mut strata, db) = app_database("", "pool_mode = \"session\"");
    let mut session = blocking(move || {
        let mut s = PsqlSession::open(db, "app", "secret", "app", &[]);
        assert_eq!(s.line("select 'in session'"), "in session");
        s
    })
    .await;
    strata.signal(libc::SIGTERM);
    let status = blocking(move || {
        let status = strata.wait_exit(Duration::from_secs(15));
        (status, strata)
    })
    .await
    .0;
    assert!(status.success(), "{status:?}");
    let told = blocking(move || session.line("select 1")).await;
    assert!(
        told.contains("terminating connection: the listener is closing"),
        "{told}"
    );
}

/// A transaction the pooler began for its client (a BEGIN answered here, no server connection
/// held yet) is a transaction open like any other: at shutdown it may finish.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_begun_before_shutdown_finishes_though_nothing_had_run() {
    let (pg, mut strata, db) = app_database("create table t (n int)", "");
    let mut session = blocking(move || {
        let mut s = PsqlSession::open(db, "app", "secret", "app", &[]);
        assert_eq!(s.line("select 'connected'"), "connected");
        s.send("begin");
        // psql runs its input in order: this prints once BEGIN has been answered
        assert_eq!(s.line("\\echo begun"), "begun;");
        s
    })
    .await;
    strata.signal(libc::SIGTERM);
    // the listener closes first: the drain has begun
    common::eventually(
        Duration::from_secs(10),
        "the listener closed",
        || async move { tokio::net::TcpStream::connect(db).await.is_err() },
    )
    .await;
    let (in_transaction, after) = blocking(move || {
        session.send("insert into t values (1)");
        let counted = session.line("select count(*) from t");
        session.send("commit");
        // with its transaction over, the client is let go
        (counted, session.line("select 'after'"))
    })
    .await;
    assert_eq!(in_transaction, "1");
    assert!(
        after.contains("terminating connection: the listener is closing"),
        "{after}"
    );
    let status = blocking(move || strata.wait_exit(Duration::from_secs(15))).await;
    assert!(status.success(), "{status:?}");
    assert_eq!(
        psql(pg.addr, "app", "secret", "app", "select count(*) from t").as_deref(),
        Ok("1")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_idle_in_a_transaction_past_the_timeout_is_closed_and_frees_the_pool() {
    let (_pg, strata, db) = app_database(
        "create table t (n int)",
        "pool_size = 1\nidle_transaction_timeout = \"500ms\"\nquery_wait_timeout = \"20s\"",
    );
    let (told, waited) = blocking(move || {
        let mut idle = PsqlSession::open(db, "app", "secret", "app", &[]);
        idle.send("begin");
        idle.send("insert into t values (1)");
        assert_eq!(idle.line("select count(*) from t"), "1");
        // the one server connection is held by the idle transaction until the timeout
        let waited = psql(db, "app", "secret", "app", "select count(*) from t");
        (idle.line("select 1"), waited)
    })
    .await;
    assert_eq!(
        waited.as_deref(),
        Ok("0"),
        "the idle transaction was rolled back"
    );
    assert!(told.contains("idle-in-transaction timeout"), "{told}");
    assert!(
        strata.logs().contains("idle_transaction_timeout"),
        "{}",
        strata.logs()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logins_to_databases_that_do_not_exist_leave_no_pools_behind() {
    let (_pg, strata, db) = app_database("", "");
    let refused = blocking(move || {
        (0..20)
            .map(|i| psql(db, "app", "secret", &format!("nowhere{i}"), "select 1"))
            .filter(|r| r.as_ref().is_err_and(|e| e.contains("does not exist")))
            .count()
    })
    .await;
    assert_eq!(refused, 20);
    let ok = blocking(move || psql(db, "app", "secret", "app", "select 'here'")).await;
    assert_eq!(ok.as_deref(), Ok("here"));
    let s = admin_status(&strata).await;
    let pools = s["database"][0]["pools"].as_array().unwrap();
    assert!(pools.len() <= 2, "{s}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_raises_pool_size_gives_a_second_client_a_connection_while_one_is_held() {
    let pg = Postgres::start();
    pg.user_and_database("app", "secret");
    let with = |size: u32| {
        config(
            &[pg.addr],
            &format!("pool_size = {size}\nquery_wait_timeout = \"5s\""),
        )
    };
    let strata = Strata::start(&with(1));
    let db = strata.addr("database:app");
    let holder = blocking(move || {
        let mut holder = PsqlSession::open(db, "app", "secret", "app", &[]);
        holder.send("begin");
        assert_eq!(holder.line("select 'holding'"), "holding");
        holder
    })
    .await;
    std::fs::write(&strata.config, with(2)).unwrap();
    strata.signal(libc::SIGHUP);
    strata
        .wait_log("SIGHUP: reloaded", Duration::from_secs(5))
        .await;
    // the pool made before the reload has the new size: no wait for the holder
    let second = blocking(move || psql(db, "app", "secret", "app", "select 'second'")).await;
    assert_eq!(second.as_deref(), Ok("second"));
    let s = admin_status(&strata).await;
    assert_eq!(s["database"][0]["pool_size"], 2, "{s}");
    drop(holder);
}

/// A server connection idle for `server_idle_timeout` is closed (PgBouncer's janitor), not
/// kept until a client would reuse it: idle ones are reused newest first, so the oldest
/// stayed open for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_connections_idle_past_server_idle_timeout_are_closed() {
    let pg = Postgres::start();
    pg.user_and_database("app", "secret");
    let strata = Strata::start(&config(&[pg.addr], "server_idle_timeout = \"1s\""));
    let db = strata.addr("database:app");
    let answer = blocking(move || psql(db, "app", "secret", "app", "select 'once'")).await;
    assert_eq!(answer.as_deref(), Ok("once"));
    eventually(
        Duration::from_secs(10),
        "the idle server connection closed",
        || async { pg.admin("select count(*) from pg_stat_activity where usename = 'app'") == "0" },
    )
    .await;
    let s = admin_status(&strata).await;
    assert_eq!(
        s["database"][0]["pools"].as_array().map(Vec::len),
        Some(0),
        "{s}"
    );
}

/// A server connection open for `server_lifetime` is not used again once no client holds it
/// (PgBouncer's server_lifetime): the client's next transaction gets a new backend, and the old
/// one is closed; a transaction that outlives the lifetime keeps its connection to its end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_connections_open_past_server_lifetime_are_replaced() {
    let (pg, _strata, db) = app_database("", "pool_size = 1\nserver_lifetime = \"2s\"");
    let (inside, still, after, later) = blocking(move || {
        let mut s = PsqlSession::open(db, "app", "secret", "app", &[]);
        s.send("begin");
        let inside = s.line("select pg_backend_pid()");
        // the server waits past the lifetime, inside the transaction
        assert_eq!(s.line("select pg_sleep(2.2)"), "");
        let still = s.line("select pg_backend_pid()");
        s.send("commit");
        let after = s.line("select pg_backend_pid()");
        let later = s.line("select pg_backend_pid()");
        (inside, still, after, later)
    })
    .await;
    assert_eq!(still, inside, "a transaction keeps its connection");
    assert_ne!(
        after, inside,
        "the connection past its lifetime was used again"
    );
    // the new one serves the next transaction
    assert_eq!(later, after);
    eventually(Duration::from_secs(10), "the old backend gone", || async {
        pg.admin(&format!(
            "select count(*) from pg_stat_activity where pid = {inside}"
        )) == "0"
    })
    .await;
}

/// `min_pool_size` connections are opened while a client holds the pool, and kept open past
/// `server_idle_timeout` (PgBouncer's min_pool_size): the same backends stay, and serve the
/// client's next transaction.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn min_pool_size_connections_open_and_outlive_the_idle_timeout() {
    let (pg, _strata, db) = app_database(
        "",
        "pool_size = 4\nmin_pool_size = 2\nserver_idle_timeout = \"1s\"",
    );
    let mut session = blocking(move || {
        let mut s = PsqlSession::open(db, "app", "secret", "app", &[]);
        assert_eq!(s.line("select 'used'"), "used");
        s
    })
    .await;
    let backends = "select string_agg(pid::text, ',' order by pid) from pg_stat_activity \
                    where usename = 'app' and backend_type = 'client backend'";
    eventually(Duration::from_secs(10), "two connections open", || async {
        pg.admin(backends).split(',').count() == 2
    })
    .await;
    let two = pg.admin(backends);
    // the server waits past the idle timeout (and the janitor's seconds)
    pg.admin("select pg_sleep(3)");
    assert_eq!(
        pg.admin(backends),
        two,
        "the kept connections were closed and opened again"
    );
    // the client's next transaction runs on one of them, not on a new one
    let pid = blocking(move || session.line("select pg_backend_pid()")).await;
    assert!(two.split(',').any(|p| p == pid), "{pid} not in {two}");
    assert_eq!(pg.admin(backends), two);
}

/// A client that holds no server connection for `client_idle_timeout` is told 57P05 and let
/// go (PgBouncer's client_idle_timeout); one inside a transaction is not: that is
/// `idle_transaction_timeout`'s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_idle_past_client_idle_timeout_are_told_and_let_go() {
    let (_pg, strata, db) = app_database("", "client_idle_timeout = \"1s\"");
    let (mut idle, mut inside) = blocking(move || {
        let mut idle = PsqlSession::open(db, "app", "secret", "app", &[]);
        assert_eq!(idle.line("select 'idle'"), "idle");
        let mut inside = PsqlSession::open(db, "app", "secret", "app", &[]);
        inside.send("begin");
        assert_eq!(inside.line("select 'inside'"), "inside");
        (idle, inside)
    })
    .await;
    eventually(
        Duration::from_secs(10),
        "the idle client let go",
        || async { admin_status(&strata).await["database"][0]["clients"] == 1 },
    )
    .await;
    let (told, still) = blocking(move || {
        let told = idle.line("select 1");
        // the server waits past the timeout, with the client inside its transaction
        assert_eq!(inside.line("select pg_sleep(1.1)"), "");
        let still = inside.line("select 'still here'");
        inside.send("commit");
        (told, still)
    })
    .await;
    assert!(
        told.contains("terminating connection due to idle-session timeout (client_idle_timeout)"),
        "{told}"
    );
    assert_eq!(still, "still here");
    // a query that ran past the timeout, its answer larger than the sockets hold, arrives
    // whole: the time it held a server connection, and the time it reads, are not idle
    let long = blocking(move || {
        let mut s = PsqlSession::open(db, "app", "secret", "app", &[]);
        let answer = s.line("select repeat('x', 8000000) from pg_sleep(1.2)");
        let after = s.line("select 'after'");
        (answer.len(), after)
    })
    .await;
    assert_eq!(long, (8_000_000, "after".to_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_one_client_sets_never_reaches_the_next_one_on_a_shared_connection() {
    let (pg, _strata, db) = one_shared_connection();
    let default_timeout = pg.admin("show statement_timeout");
    let seen = blocking(move || {
        let mut seen = Vec::new();
        // a SET the pooler can't follow (statement_timeout is not reported), then gone
        psql(
            db,
            "app",
            "secret",
            "app",
            "set statement_timeout = '1234ms'",
        )
        .unwrap();
        seen.push(psql(db, "app", "secret", "app", "show statement_timeout").unwrap());
        // a startup option the server does not report, on the next client only
        let mut a = PsqlSession::open(
            db,
            "app",
            "secret",
            "app",
            &[("PGOPTIONS", "-c lock_timeout=777ms -c search_path=a,public")],
        );
        seen.push(a.line("show lock_timeout"));
        seen.push(a.line("show search_path"));
        seen.push(psql(db, "app", "secret", "app", "show lock_timeout").unwrap());
        seen.push(a.line("show lock_timeout"));
        // prepared statements dropped inside a longer query don't break the next client
        psql(db, "app", "secret", "app", "select 1; deallocate all").unwrap();
        seen
    })
    .await;
    assert_eq!(
        seen,
        [default_timeout.as_str(), "777ms", "a,public", "0", "777ms"]
    );
    let out = blocking(move || {
        pgbench(db, "app", "secret", "app", &["-i", "-s", "1", "-q"]);
        pgbench(
            db,
            "app",
            "secret",
            "app",
            &["-c", "2", "-j", "2", "-t", "50", "-M", "prepared", "-S"],
        )
    })
    .await;
    assert!(out.contains("number of failed transactions: 0"), "{out}");
}

/// Differential, against PostgreSQL itself: every query Strata's classifier sends to a replica
/// runs on a real hot standby without "cannot execute ... in a read-only transaction" (or any
/// other refusal a standby gives a write), over a corpus of reads, writes and the cases
/// between (functions that write, row locks, data-modifying WITH, SELECT INTO). The
/// classifier may send a read to the primary; it must never send a write to a replica.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_goes_to_a_replica_runs_on_a_real_standby() {
    let (_primary, replica) = primary_and_replica(
        "create table t (a int); insert into t values (1), (2); create sequence s; \
         create function f() returns int language sql as 'insert into t values (3) returning a'",
    );
    let on_replica = |sql: &str| psql(replica.addr, "app", "secret", "app", sql);
    eventually(Duration::from_secs(10), "the replica has the table", || {
        let ok = on_replica("select count(*) from t").is_ok();
        async move { ok }
    })
    .await;
    let corpus = [
        "SELECT count(*) FROM t",
        "select a from t where a = 1; select 2",
        "TABLE t",
        "VALUES (1), (2)",
        "SHOW work_mem",
        "EXPLAIN SELECT * FROM t",
        "EXPLAIN ANALYZE SELECT * FROM t",
        "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 5) SELECT sum(n) FROM r",
        "SELECT lower(x), upper(x), length(x) FROM (VALUES ('A')) v(x)",
        "SELECT now(), random(), gen_random_uuid(), version(), pg_is_in_recovery()",
        "SELECT string_agg(a::text, ',' ORDER BY a), jsonb_agg(a) FROM t",
        "SELECT * FROM t WHERE a IN (SELECT generate_series(1, 3))",
        "SELECT 'INSERT INTO t VALUES (9)' AS text",
        "SELECT nextval('s')",
        "SELECT currval('s')",
        "SELECT txid_current()",
        "SELECT f()",
        "SELECT * FROM t FOR UPDATE",
        "SELECT * FROM t FOR KEY SHARE",
        "SELECT 1 FROM t WHERE EXISTS (SELECT 1 FROM t FOR SHARE)",
        "SELECT * INTO t2 FROM t",
        "WITH d AS (DELETE FROM t WHERE a = 0 RETURNING a) SELECT count(*) FROM d",
        "WITH i AS (INSERT INTO t VALUES (4) RETURNING a) SELECT * FROM i",
        "SELECT pg_advisory_lock(1)",
        "SELECT set_config('application_name', 'x', false)",
        "INSERT INTO t VALUES (5)",
        "UPDATE t SET a = a",
        "SELECT FROM WHERE",
    ];
    let mut to_replica = 0;
    for sql in corpus {
        if !strata_pgparse::read_only(sql) {
            continue;
        }
        to_replica += 1;
        let ran = blocking({
            let sql = sql.to_string();
            let addr = replica.addr;
            move || psql(addr, "app", "secret", "app", &sql)
        })
        .await;
        assert!(
            ran.is_ok(),
            "classified a read, refused by a standby: {sql}: {ran:?}"
        );
    }
    // the reads above, and none of the rest
    assert_eq!(to_replica, 13);
}

/// An operator drains a replica through the admin API (what the dashboard's button calls): its
/// reads go to the primary until it is restored; the primary can't be drained.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drained_replica_takes_no_reads_until_restored() {
    let (primary, replica) = primary_and_replica("create table w (x int)");
    let strata = Strata::start(&config(&[primary.addr, replica.addr], ""));
    let db = strata.addr("database:app");
    let r = replica.addr.to_string();
    replica_known(&strata, &r).await;
    let on_replica = || {
        blocking(move || psql(db, "app", "secret", "app", "select pg_is_in_recovery()").unwrap())
    };
    assert_eq!(on_replica().await, "t");
    // a transaction on the replica when it is drained finishes there, and its connection is
    // closed when given back
    let mut busy = blocking(move || {
        let mut c = PsqlSession::open(db, "app", "secret", "app", &[]);
        c.send("begin read only");
        let on = c.line("select pg_is_in_recovery()");
        (c, on)
    })
    .await;
    assert_eq!(busy.1, "t");

    let drained = admin_post(&strata, &format!("/backends/database/app/{r}/drain")).await;
    assert_eq!(drained.status, 200, "{}", drained.body);
    assert!(
        drained.body.contains("\"drained\": true"),
        "{}",
        drained.body
    );
    busy = blocking(move || {
        busy.1 = busy.0.line("select pg_is_in_recovery()");
        busy.0.send("commit");
        busy
    })
    .await;
    assert_eq!(busy.1, "t", "the open transaction finished on the replica");
    eventually(
        Duration::from_secs(10),
        "the replica's connections closed",
        || async {
            let s = admin_status(&strata).await;
            s["database"][0]["pools"]
                .as_array()
                .unwrap()
                .iter()
                .all(|p| {
                    p["server"] != r.as_str() || (p["server_idle"] == 0 && p["server_in_use"] == 0)
                })
        },
    )
    .await;
    drop(busy);
    for _ in 0..5 {
        assert_eq!(
            on_replica().await,
            "f",
            "a read reached the drained replica"
        );
    }
    let s = admin_status(&strata).await;
    let server = s["database"][0]["servers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["address"] == r.as_str())
        .cloned()
        .unwrap();
    assert_eq!(server["drained"], true, "{s}");

    let p = primary.addr.to_string();
    let refused = admin_post(&strata, &format!("/backends/database/app/{p}/drain")).await;
    assert_eq!(refused.status, 409, "{}", refused.body);
    assert!(refused.body.contains("is the primary"), "{}", refused.body);

    let restored = admin_post(&strata, &format!("/backends/database/app/{r}/restore")).await;
    assert_eq!(restored.status, 200, "{}", restored.body);
    assert_eq!(on_replica().await, "t");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_verifies_the_listeners_certificate_and_a_plain_client_is_refused_where_tls_is_required(
) {
    let dir = TempDir::new();
    self_signed(dir.path(), "db", &["localhost", "127.0.0.1"]);
    let root = dir.path().join("db.pem");
    let extra = format!(
        "tls = [{{ cert = \"{0}/db.pem\", key = \"{0}/db.key\" }}]\ntls_mode = \"require\"",
        dir.path().display()
    );
    let (_pg, strata, _) = app_database("", &extra);
    let db = strata.addr("database:app");
    let run = |mode: &str, sql: &str| {
        let out = psql_command(db, "app", "secret", "app")
            .env("PGSSLMODE", mode)
            .env("PGSSLROOTCERT", &root)
            .args(["-v", "ON_ERROR_STOP=1", "-c", sql])
            .output()
            .expect("run psql");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).trim().to_string(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // verify-full: the certificate must chain to the root and name the host psql dialled;
    // the SCRAM login and the query then run over TLS
    let (ok, out, err) = run("verify-full", "select 'over tls'");
    assert!(ok, "{err}");
    assert_eq!(out, "over tls");
    // psql's own report of the connection
    let (ok, out, err) = run("require", "\\conninfo");
    assert!(ok, "{err}");
    assert!(out.contains("SSL connection (protocol: TLSv1.3"), "{out}");
    // sslmode=disable: refused, saying why
    let (ok, _, err) = run("disable", "select 1");
    assert!(!ok);
    assert!(
        err.contains("this listener takes TLS connections only"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_server_connections_bounds_every_pool_together_and_an_idle_one_makes_room() {
    let (pg, strata, db) = app_database(
        "",
        "pool_size = 2\nmax_server_connections = 1\nquery_wait_timeout = \"500ms\"",
    );
    let app_backends = move || {
        psql(
            pg.addr,
            "postgres",
            SUPERUSER_PASSWORD,
            "postgres",
            "select count(*) from pg_stat_activity where usename = 'app'",
        )
        .unwrap()
    };
    let (waited, evicted, after) = blocking(move || {
        // app's pool opens the one connection the server may have, and keeps it idle
        assert_eq!(
            psql(db, "app", "secret", "app", "select 'app'").unwrap(),
            "app"
        );
        assert_eq!(app_backends(), "1");
        // the superuser's pool needs one: app's idle one is closed to make room
        let other = psql(db, "postgres", SUPERUSER_PASSWORD, "app", "select 'other'");
        assert_eq!(other.as_deref(), Ok("other"));
        // (the backend goes as it reads the close: probed until it has, or 10 s)
        let until = Instant::now() + Duration::from_secs(10);
        let evicted = std::iter::repeat_with(app_backends)
            .find(|n| n == "0" || Instant::now() > until)
            .unwrap_or_default();
        // while app holds the one connection in a transaction, the other pool waits, and is
        // told why at query_wait_timeout
        let mut holder = PsqlSession::open(db, "app", "secret", "app", &[]);
        holder.send("begin");
        assert_eq!(holder.line("select 'holding'"), "holding");
        let waited = psql(db, "postgres", SUPERUSER_PASSWORD, "app", "select 1");
        holder.send("commit");
        assert_eq!(holder.line("select 'done'"), "done");
        drop(holder);
        let after = psql(
            db,
            "postgres",
            SUPERUSER_PASSWORD,
            "app",
            "select 'room again'",
        );
        (waited, evicted, after)
    })
    .await;
    assert_eq!(
        evicted, "0",
        "app's idle connection closed for the other pool"
    );
    let err = waited.unwrap_err();
    assert!(
        err.contains("the server's connections (max_server_connections) stayed in use"),
        "{err}"
    );
    assert_eq!(after.as_deref(), Ok("room again"));
    let s = admin_status(&strata).await;
    let server = &s["database"][0]["servers"][0];
    assert_eq!(server["max_server_connections"], 1, "{s}");
    assert_eq!(server["connections_open"], 1, "{s}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_waiting_at_max_server_connections_gets_the_connection_given_back() {
    let (_pg, strata, db) = app_database(
        "",
        "pool_size = 4\nmax_server_connections = 1\nquery_wait_timeout = \"20s\"",
    );
    // one client holds the server's one connection in a transaction
    let mut holder = blocking(move || {
        let mut holder = PsqlSession::open(db, "app", "secret", "app", &[]);
        holder.send("begin");
        assert_eq!(holder.line("select 'holding'"), "holding");
        holder
    })
    .await;
    // another of the same pool has a slot of its four, and waits for a place at the server
    let waiter =
        tokio::task::spawn_blocking(move || psql(db, "app", "secret", "app", "select 'served'"));
    eventually(
        common::postgres::LIMIT,
        "the second client waiting",
        || async { admin_status(&strata).await["database"][0]["pools"][0]["clients_waiting"] == 1 },
    )
    .await;
    // the transaction ends: its connection goes to the waiting client (closed and opened
    // again for it), not idle in the pool while the client waits on
    holder = blocking(move || {
        holder.send("commit");
        assert_eq!(holder.line("select 'done'"), "done");
        holder
    })
    .await;
    let served = tokio::time::timeout(Duration::from_secs(15), waiter)
        .await
        .expect("served well inside query_wait_timeout")
        .unwrap();
    assert_eq!(served.as_deref(), Ok("served"));
    drop(holder);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_tls_client_ca_only_a_client_with_a_certificate_from_that_ca_gets_in() {
    let dir = TempDir::new();
    self_signed(dir.path(), "db", &["localhost", "127.0.0.1"]);
    // a CA of the test's, and a client certificate it signed
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "test client CA");
    write_file(
        dir.path(),
        "ca.pem",
        &ca.self_signed(&ca_key).unwrap().pem(),
    );
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let mut client = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    client
        .distinguished_name
        .push(rcgen::DnType::CommonName, "app");
    client.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    write_file(
        dir.path(),
        "client.pem",
        &client.signed_by(&key, &issuer).unwrap().pem(),
    );
    let client_key = write_file(dir.path(), "client.key", &key.serialize_pem());
    // libpq takes a key only when nobody else may read it
    std::fs::set_permissions(
        &client_key,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let pg = Postgres::start();
    pg.user_and_database("app", "secret");
    let extra = format!(
        "tls = [{{ cert = \"{0}/db.pem\", key = \"{0}/db.key\" }}]\ntls_mode = \"require\"\n\
         tls_client_ca = \"{0}/ca.pem\"",
        dir.path().display()
    );
    let strata = Strata::start(&config(&[pg.addr], &extra));
    let db = strata.addr("database:app");
    let run = |with_certificate: bool| {
        let mut c = psql_command(db, "app", "secret", "app");
        c.env("PGSSLMODE", "verify-full")
            .env("PGSSLROOTCERT", dir.path().join("db.pem"));
        if with_certificate {
            c.env("PGSSLCERT", dir.path().join("client.pem"))
                .env("PGSSLKEY", &client_key);
        } else {
            // (not the one in ~/.postgresql either)
            c.env("PGSSLCERT", dir.path().join("none.pem"));
        }
        let out = c
            .args(["-c", "select 'with a certificate'"])
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).trim().to_string(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, out, err) = run(true);
    assert!(ok, "{err}");
    assert_eq!(out, "with a certificate");
    let (ok, _, err) = run(false);
    assert!(!ok, "a client without a certificate got in");
    assert!(err.contains("certificate"), "{err}");
}

/// A PostgreSQL that takes TLS only (`hostssl` in pg_hba.conf, as cloud databases are set
/// up) is reached over TLS by default, and its certificate is checked as `server_tls_mode`
/// says; where no connection can be made, /status says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_takes_only_tls_is_reached_over_it_and_its_certificate_checked_as_configured()
{
    let dir = TempDir::new();
    self_signed(dir.path(), "pg", &["db.internal", "127.0.0.1"]);
    self_signed(dir.path(), "other", &["db.internal", "127.0.0.1"]);
    let pg = Postgres::start();
    pg.user_and_database("app", "secret");
    pg.tls_only(&dir.path().join("pg.pem"), &dir.path().join("pg.key"));
    let d = dir.path().display();
    let ssl = "select ssl from pg_stat_ssl where pid = pg_backend_pid()";
    let served = [
        // the default, prefer: TLS, as the server offers it
        String::new(),
        "server_tls_mode = \"require\"".to_string(),
        format!("server_tls_mode = \"verify-ca\"\nserver_tls_ca = \"{d}/pg.pem\""),
        format!(
            "server_tls_mode = \"verify-full\"\nserver_tls_ca = \"{d}/pg.pem\"\nserver_tls_name = \"db.internal\""
        ),
        // no name: the server's IP address, which the certificate carries too
        format!("server_tls_mode = \"verify-full\"\nserver_tls_ca = \"{d}/pg.pem\""),
        // verify-ca checks no name
        format!(
            "server_tls_mode = \"verify-ca\"\nserver_tls_ca = \"{d}/pg.pem\"\nserver_tls_name = \"elsewhere.internal\""
        ),
    ];
    for extra in &served {
        let strata = Strata::start(&config(&[pg.addr], extra));
        let db = strata.addr("database:app");
        // the server's own view of the connection Strata made
        assert_eq!(
            psql(db, "app", "secret", "app", ssl).as_deref(),
            Ok("t"),
            "{extra}"
        );
        let s = admin_status(&strata).await;
        assert_eq!(s["database"][0]["servers"][0]["tls"], "TLSv1.3", "{extra}");
    }
    let refused = [
        // in clear: the server's pg_hba.conf refuses it, and its words are the reason
        ("server_tls_mode = \"disable\"".to_string(), "no encryption"),
        (
            format!(
                "server_tls_mode = \"verify-full\"\nserver_tls_ca = \"{d}/pg.pem\"\nserver_tls_name = \"elsewhere.internal\""
            ),
            "certificate not valid for name",
        ),
        (
            format!("server_tls_mode = \"verify-ca\"\nserver_tls_ca = \"{d}/other.pem\""),
            "invalid peer certificate",
        ),
    ];
    for (extra, why) in &refused {
        let strata = Strata::start(&config(&[pg.addr], extra));
        let db = strata.addr("database:app");
        reason_says(&strata, why, extra).await;
        let err = psql(db, "app", "secret", "app", "select 1").expect_err(extra);
        assert!(!err.contains(&pg.addr.to_string()), "{err}");
    }

    // a pooled TLS connection the server ends while it idles is not handed out again
    let strata = Strata::start(&config(&[pg.addr], ""));
    let db = strata.addr("database:app");
    assert_eq!(psql(db, "app", "secret", "app", ssl).as_deref(), Ok("t"));
    end_the_app_backend(&pg).await;
    assert_eq!(psql(db, "app", "secret", "app", ssl).as_deref(), Ok("t"));
    // a reload that asks more of the certificate than the open connections were made with:
    // they are not used again (the pooled one, the role check's, and one a transaction holds
    // across the reload, which finishes on it), so nothing goes on under the old settings
    let mut held = PsqlSession::open(db, "app", "secret", "app", &[]);
    held.send("BEGIN");
    assert_eq!(held.line(ssl), "t");
    strata
        .reload_to(&config(
            &[pg.addr],
            &format!(
                "server_tls_mode = \"verify-full\"\nserver_tls_ca = \"{d}/pg.pem\"\nserver_tls_name = \"elsewhere.internal\""
            ),
        ))
        .await;
    assert_eq!(held.line("select 'mine'"), "mine");
    held.send("COMMIT");
    eventually(
        Duration::from_secs(10),
        "the connection given back",
        || async { admin_status(&strata).await["database"][0]["pools"][0]["server_in_use"] == 0 },
    )
    .await;
    let err = psql(db, "app", "secret", "app", "select 1").expect_err("after the reload");
    assert!(!err.contains(&pg.addr.to_string()), "{err}");
    reason_says(
        &strata,
        "certificate not valid for name",
        "after the reload",
    )
    .await;
}

/// Users PostgreSQL knows and the config does not log in as PgBouncer's `auth_query` lets
/// them: their secret looked up as `auth_user` at each login (a changed password holds at
/// once); a wrong password, a role without one, no such role and
/// a name that tries to reach into the query are refused alike; and a reload keeps a found
/// user's clients going.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_only_the_server_knows_are_looked_up_with_auth_query() {
    let lookups = "auth_user = \"postgres\"";
    // (the roles are looked up at each login: made after Strata started)
    let (pg, strata, db) = app_database("", lookups);
    pg.admin("CREATE ROLE dyn LOGIN PASSWORD 'dyn-pw'");
    pg.admin("CREATE ROLE nopw LOGIN");
    pg.admin("CREATE ROLE \"it's\\x\" LOGIN PASSWORD 'q-pw'");
    let me = "select current_user";
    for (user, password) in [("dyn", "dyn-pw"), ("it's\\x", "q-pw")] {
        assert_eq!(psql(db, user, password, "app", me).as_deref(), Ok(user));
    }
    let refused = [
        ("dyn", "wrong"),
        ("nopw", "x"),
        ("ghost", "x"),
        // were the name pasted into the query, this would find dyn's secret
        ("x' OR rolname = 'dyn", "dyn-pw"),
    ];
    for (user, password) in refused {
        let err = psql(db, user, password, "app", "select 1").expect_err(user);
        let said = format!("password authentication failed for user \"{user}\"");
        assert!(err.contains(&said), "{user}: {err}");
    }
    // a changed password holds at the next login
    pg.admin("ALTER ROLE dyn PASSWORD 'new-pw'");
    assert!(psql(db, "dyn", "dyn-pw", "app", "select 1").is_err());
    assert_eq!(
        psql(db, "dyn", "new-pw", "app", "select 2").as_deref(),
        Ok("2")
    );
    // a reload keeps a found user's client going: its next server connection logs in as it
    let mut session = PsqlSession::open(db, "dyn", "new-pw", "app", &[]);
    assert_eq!(session.line("select 'before'"), "before");
    strata
        .reload_to(&config(&[pg.addr], &format!("{lookups}\npool_size = 3")))
        .await;
    pg.admin("select pg_terminate_backend(pid) from pg_stat_activity where usename = 'dyn'");
    eventually(Duration::from_secs(10), "dyn's backends gone", || async {
        pg.admin("select count(*) from pg_stat_activity where usename = 'dyn'") == "0"
    })
    .await;
    assert_eq!(session.line("select current_user"), "dyn");
    drop(session);

    // the SCRAM challenge does not tell which users exist: a found user is salted as the
    // server salted it, an unknown name as if it existed (the same salt each time for the
    // same name, another for another name)
    let stored = pg.admin("select rolpassword from pg_authid where rolname = 'dyn'");
    let dyn_salt = stored
        .split(['$', ':'])
        .nth(2)
        .expect("a SCRAM secret")
        .to_string();
    assert_eq!(scram_salt(db, "dyn").await, dyn_salt);
    let ghost = scram_salt(db, "ghost").await;
    assert_eq!(scram_salt(db, "ghost").await, ghost);
    assert_ne!(scram_salt(db, "ghost2").await, ghost);
    assert_eq!(ghost.len(), dyn_salt.len());
    // a configured user with a password in clear keeps its salt across a reload, as a
    // stored secret does
    let app_salt = scram_salt(db, "app").await;
    strata
        .reload_to(&config(&[pg.addr], &format!("{lookups}\npool_size = 4")))
        .await;
    assert_eq!(scram_salt(db, "app").await, app_salt);
    assert_eq!(scram_salt(db, "ghost").await, ghost);
    // a database that does not exist is answered as an unknown user is, not told apart
    let err = psql(db, "ghost", "x", "nodb", "select 1").expect_err("nodb");
    assert!(
        err.contains("password authentication failed for user \"ghost\""),
        "{err}"
    );
    // what the lookups found, counted
    let text = admin_get(&strata, "/metrics").await.body;
    let count = |result: &str| {
        metric(
            &text,
            "strata_db_user_lookups_total",
            &format!("result=\"{result}\""),
        )
        .unwrap_or(-1.0)
    };
    assert!(count("found") >= 3.0, "{text}");
    assert!(count("none") >= 3.0, "{text}");
    assert_eq!(count("failed"), 0.0, "{text}");

    // with auth_type = "md5", an unknown name is still asked as a found SCRAM role is
    let md5 = Strata::start(&config(
        &[pg.addr],
        &format!("{lookups}\nauth_type = \"md5\""),
    ));
    let db = md5.addr("database:app");
    assert_eq!(psql(db, "dyn", "new-pw", "app", me).as_deref(), Ok("dyn"));
    assert_eq!(scram_salt(db, "dyn").await, dyn_salt);
    assert_eq!(scram_salt(db, "ghost").await.len(), dyn_salt.len());
}

/// The salt in Strata's SCRAM challenge to a client logging in as `user` (the exchange is
/// left there).
async fn scram_salt(db: SocketAddr, user: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(db).await.unwrap();
    let startup = common::postgres::startup(&[("user", user), ("database", "app")]);
    s.write_all(&startup).await.unwrap();
    let m = common::postgres::read_message(&mut s)
        .await
        .expect("a message");
    assert_eq!((m[0], &m[5..9]), (b'R', &10u32.to_be_bytes()[..]), "{user}");
    let first = b"n,,n=,r=0123456789abcdefghijklmn";
    let mut answer = b"SCRAM-SHA-256\0".to_vec();
    answer.extend_from_slice(&(first.len() as i32).to_be_bytes());
    answer.extend_from_slice(first);
    s.write_all(&message(b'p', &answer)).await.unwrap();
    let m = common::postgres::read_message(&mut s)
        .await
        .expect("a message");
    assert_eq!((m[0], &m[5..9]), (b'R', &11u32.to_be_bytes()[..]), "{user}");
    let server_first = String::from_utf8_lossy(&m[9..]).into_owned();
    server_first
        .split(',')
        .find_map(|p| p.strip_prefix("s="))
        .expect("a salt")
        .to_string()
}
