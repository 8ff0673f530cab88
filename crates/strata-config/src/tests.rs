use super::*;

fn problems(src: &str) -> Vec<String> {
    match parse(src, "test.toml", Path::new(".")) {
        Ok(_) => Vec::new(),
        Err(e) => e.problems().iter().map(|p| p.to_string()).collect(),
    }
}

#[test]
fn full_config_parses_with_defaults() {
    let src = r#"
workers = 2
[admin]
listen = "127.0.0.1:9900"

[[http]]
name = "web"
listen = "127.0.0.1:8080"
balance = "hash"
hash_key = "cookie:sid"
backends = ["127.0.0.1:9001 weight=3", "127.0.0.1:9002"]
health = { path = "/healthz", interval = "500ms", rise = 1, fall = 2, expect = "2xx" }

[[tcp]]
name = "smtp"
listen = "127.0.0.1:2525"
backends = ["127.0.0.1:25"]
health = { interval = "1s" }
"#;
    let c = parse(src, "t.toml", Path::new(".")).expect("valid");
    assert_eq!(c.workers, Some(2));
    let h = &c.http[0];
    assert_eq!(h.upstream.backends[0].weight, 3);
    assert_eq!(
        h.upstream.balance,
        Balance::Hash(HashKey::Cookie("sid".into()))
    );
    let check = h.upstream.health.as_ref().expect("health");
    assert_eq!(check.interval, Duration::from_millis(500));
    assert_eq!(
        check.kind,
        CheckKind::Http {
            path: "/healthz".into(),
            host: None,
            expect: (200, 299)
        }
    );
    assert_eq!(h.upstream.retries, 2);
    assert_eq!(h.header_timeout, Duration::from_secs(10));
    assert_eq!(
        c.tcp[0].upstream.health.as_ref().map(|h| &h.kind),
        Some(&CheckKind::Connect)
    );
}

#[test]
fn unknown_key_names_line_and_suggests() {
    let p = problems(
        "[[http]]\nname = \"web\"\nlisten = \"127.0.0.1:80\"\nbackend = [\"127.0.0.1:81\"]\n",
    );
    assert!(
        p.iter().any(|l| l
            == "test.toml:4:1: `http[0].backend`: unknown key (hint: did you mean `backends`?)"),
        "{p:#?}"
    );
    // and the missing required key is reported in the same run
    assert!(
        p.iter()
            .any(|l| l.contains("`http[0].backends`: required key is missing")),
        "{p:#?}"
    );
}

#[test]
fn every_problem_is_reported_at_once() {
    let src = r#"
[[http]]
name = "web"
listen = "127.0.0.1:80"
backends = []
connect_timeout = 5
health = { path = "healthz", interval = "2 fortnights" }

[[tcp]]
name = "db"
listen = "127.0.0.1:80"
backends = ["nowhere"]
balance = "fastest"
"#;
    let p = problems(src);
    let expect = [
        "test.toml:5:12: `http[0].backends`: the backend list is empty",
        "test.toml:6:19: `http[0].connect_timeout`: a bare number (5) has no unit (hint: write \"5s\" or \"5ms\")",
        "`http[0].health.path`: the path must start with /",
        "`http[0].health.interval`: unknown duration unit \"fortnights\"",
        "test.toml:11:10: `tcp[0].listen`: 127.0.0.1:80 is already used by `http[0].listen`",
        "test.toml:12:13: `tcp[0].backends[0]`: \"nowhere\" has no port",
        "`tcp[0].balance`: unknown value \"fastest\" (hint: one of: round_robin, least_conn, ip_hash, random_two)",
    ];
    for e in expect {
        assert!(p.iter().any(|l| l.contains(e)), "missing {e:?} in {p:#?}");
    }
}

#[test]
fn hash_needs_a_key_and_tcp_has_no_hash() {
    let p = problems("[[http]]\nname = \"a\"\nlisten = \"127.0.0.1:1\"\nbackends = [\"127.0.0.1:2\"]\nbalance = \"hash\"\n");
    assert!(
        p.iter()
            .any(|l| l.contains("balance = \"hash\" needs a hash_key")),
        "{p:#?}"
    );
    let p = problems("[[tcp]]\nname = \"a\"\nlisten = \"127.0.0.1:1\"\nbackends = [\"127.0.0.1:2\"]\nbalance = \"hash\"\n");
    assert!(
        p.iter().any(|l| l.contains("unknown value \"hash\"")),
        "{p:#?}"
    );
}

#[test]
fn duplicate_names_and_backends() {
    let src = "[[http]]\nname = \"a\"\nlisten = \"127.0.0.1:1\"\nbackends = [\"127.0.0.1:2\", \"127.0.0.1:2\"]\n\
               [[http]]\nname = \"a\"\nlisten = \"127.0.0.1:3\"\nbackends = [\"127.0.0.1:2\"]\n";
    let p = problems(src);
    assert!(
        p.iter()
            .any(|l| l.contains("backend 127.0.0.1:2 is listed twice")),
        "{p:#?}"
    );
    assert!(
        p.iter().any(|l| l.starts_with(
            "test.toml:6:8: `http[1].name`: another http listener is already named \"a\""
        )),
        "{p:#?}"
    );
}

#[test]
fn database_listeners_are_checked_key_by_key() {
    let p = problems(
        "[[database]]\nname = \"app\"\nlisten = \"127.0.0.1:6432\"\nservers = []\npool_mode = \"statement\"\n\
         [[database.users]]\nname = \"app\"\npassword = \"SCRAM-SHA-256$x\"\n",
    );
    assert_eq!(p.len(), 3, "{p:#?}");
    assert!(
        p[0].contains("4:11: `database[0].servers`: the server list is empty"),
        "{p:#?}"
    );
    assert!(
        p[1].contains("5:13: `database[0].pool_mode`: unknown value \"statement\""),
        "{p:#?}"
    );
    assert!(p[2].contains("8:12: `database[0].users[0].password`: this SCRAM-SHA-256 secret is not in pg_authid's form"), "{p:#?}");
}

#[test]
fn shards_and_sharded_tables_are_checked_key_by_key() {
    let users = "[[database.users]]\nname = \"app\"\npassword = \"p\"\n";
    let p = problems(&format!(
        "[[database]]\nname = \"app\"\nlisten = \"127.0.0.1:6432\"\npool_mode = \"session\"\n\
         shards = [[\"127.0.0.1:1\"], [\"127.0.0.1:2\", \"127.0.0.1:1\"]]\n{users}\
         [[database.sharded_tables]]\nname = \"users\"\ncolumn = \"id\"\nrule = \"range\"\n\
         ranges = [{{ shard = 0, to = 100 }}, {{ shard = 2, from = 100 }}, {{ shard = 1, from = 50, to = 60 }}]\n\
         [[database.sharded_tables]]\nname = \"users\"\ncolumn = \"x\"\ntype = \"uuid\"\n"
    ));
    let want = [
        "`database[0].shards[1]`: 127.0.0.1:1 is in two shards",
        "`database[0].pool_mode`: a sharded database needs pool_mode = \"transaction\"",
        "`database[0].sharded_tables[0].ranges[1].shard`: there is no shard 2",
        "`database[0].sharded_tables[0].ranges[2].from`: this range overlaps another",
        "`database[0].sharded_tables[1].type`: unknown value \"uuid\"",
        "`database[0].sharded_tables[1].name`: table \"users\" is listed twice",
    ];
    for w in want {
        assert!(p.iter().any(|l| l.contains(w)), "{w}: {p:#?}");
    }
    assert_eq!(p.len(), want.len(), "{p:#?}");
    let both = problems(&format!(
        "[[database]]\nname = \"app\"\nlisten = \"127.0.0.1:6432\"\nservers = [\"127.0.0.1:1\"]\n\
         shards = [[\"127.0.0.1:2\"]]\n{users}"
    ));
    assert!(
        both.iter()
            .any(|l| l.contains("both `servers` and `shards` are given")),
        "{both:#?}"
    );
    let bare = problems(&format!(
        "[[database]]\nname = \"app\"\nlisten = \"127.0.0.1:6432\"\nshards = [[\"127.0.0.1:2\"]]\n{users}"
    ));
    assert!(
        bare.iter()
            .any(|l| l.contains("shards without sharded tables")),
        "{bare:#?}"
    );
    let ok = crate::parse(
        &format!(
            "[[database]]\nname = \"app\"\nlisten = \"127.0.0.1:6432\"\n\
             shards = [[\"127.0.0.1:1\", \"127.0.0.1:3\"], [\"127.0.0.1:2\"]]\n{users}\
             [[database.sharded_tables]]\nname = \"users\"\ncolumn = \"id\"\n"
        ),
        "t.toml",
        Path::new("."),
    )
    .unwrap();
    let db = &ok.database[0];
    assert_eq!(db.shards.len(), 2);
    assert_eq!(db.servers.len(), 3);
    assert_eq!(db.sharded_tables[0].rule, ShardRule::Hash);
    assert_eq!(db.sharded_tables[0].key_type, KeyType::Integer);
}

/// A `[[database]]` listener "app" on one server with `extra` (whole lines) from its line 5,
/// and a user.
fn database(extra: &str) -> String {
    format!(
        "[[database]]\nname = \"app\"\nlisten = \"127.0.0.1:6432\"\nservers = [\"127.0.0.1:1\"]\n{extra}\
         [[database.users]]\nname = \"app\"\npassword = \"p\"\n"
    )
}

/// [`database`] parsed, from a config file in `/etc/strata`.
fn database_listener(extra: &str) -> crate::DatabaseListener {
    crate::parse(&database(extra), "t.toml", Path::new("/etc/strata"))
        .unwrap()
        .database
        .remove(0)
}

#[test]
fn a_server_connection_lives_an_hour_and_a_client_for_good_unless_told_otherwise() {
    let listener = database_listener;
    // PgBouncer's default
    assert_eq!(
        listener("").server_lifetime,
        Some(Duration::from_secs(3600))
    );
    assert_eq!(
        listener("server_lifetime = \"90s\"\n").server_lifetime,
        Some(Duration::from_secs(90))
    );
    assert_eq!(listener("server_lifetime = \"0s\"\n").server_lifetime, None);
    // and a client waits for work for good unless told otherwise
    assert_eq!(listener("").client_idle_timeout, None);
    assert_eq!(
        listener("client_idle_timeout = \"30s\"\n").client_idle_timeout,
        Some(Duration::from_secs(30))
    );
    // no bound per server across pools unless set
    assert_eq!(listener("").max_server_connections, 0);
    assert_eq!(
        listener("max_server_connections = 90\n").max_server_connections,
        90
    );
    // and none kept open, and never more than the pool
    assert_eq!(listener("").min_pool_size, 0);
    assert_eq!(listener("min_pool_size = 5\n").min_pool_size, 5);
    let p = problems(&database("pool_size = 4\nmin_pool_size = 5\n"));
    assert!(
        p.iter()
            .any(|l| l.contains("6:17: `database[0].min_pool_size`")),
        "{p:#?}"
    );
    let p = problems(&database("server_lifetime = 3600\n"));
    assert!(
        p.iter()
            .any(|l| l.contains("5:19: `database[0].server_lifetime`")),
        "{p:#?}"
    );
}

#[test]
fn a_database_listener_asks_its_servers_for_tls_unless_told_not_and_checks_what_it_is_told() {
    use crate::ServerTlsMode;
    let (db, parsed) = (database, database_listener);
    // PgBouncer's default since 1.20, and libpq's
    let plain = parsed("");
    assert_eq!(plain.server_tls.mode, ServerTlsMode::Prefer);
    assert_eq!(plain.server_tls.ca, None);
    assert_eq!(plain.server_tls.cert, None);
    let full = parsed(
        "server_tls_mode = \"verify-full\"\nserver_tls_ca = \"ca.pem\"\nserver_tls_name = \"db.internal\"\n\
         server_tls_cert = \"me.pem\"\nserver_tls_key = \"/k/me.key\"\n",
    );
    assert_eq!(full.server_tls.mode, ServerTlsMode::VerifyFull);
    assert_eq!(
        full.server_tls.ca.as_deref(),
        Some(Path::new("/etc/strata/ca.pem"))
    );
    assert_eq!(full.server_tls.name.as_deref(), Some("db.internal"));
    let cert = full.server_tls.cert.expect("a client certificate");
    assert_eq!(cert.cert, Path::new("/etc/strata/me.pem"));
    assert_eq!(cert.key, Path::new("/k/me.key"));
    for (mode, want) in [
        ("disable", ServerTlsMode::Disable),
        ("require", ServerTlsMode::Require),
        ("verify-ca", ServerTlsMode::VerifyCa),
    ] {
        let extra = format!("server_tls_mode = \"{mode}\"\n");
        assert_eq!(parsed(&extra).server_tls.mode, want);
    }
    // libpq's allow is not one (it would try in clear first)
    let p = problems(&db("server_tls_mode = \"allow\"\n"));
    assert!(
        p.iter()
            .any(|l| l.contains("5:19: `database[0].server_tls_mode`")),
        "{p:#?}"
    );
    // a CA where nothing is checked, half a pair, a name with TLS off
    let p = problems(&db("server_tls_ca = \"ca.pem\"\n"));
    assert!(
        p.iter().any(|l| l.contains(
            "5:17: `database[0].server_tls_ca`: server_tls_mode = \"prefer\" checks no certificate"
        )),
        "{p:#?}"
    );
    let p = problems(&db("server_tls_cert = \"me.pem\"\n"));
    assert!(
        p.iter().any(|l| l.contains(
            "5:19: `database[0].server_tls_cert`: server_tls_cert without server_tls_key"
        )),
        "{p:#?}"
    );
    let p = problems(&db(
        "server_tls_mode = \"disable\"\nserver_tls_name = \"db\"\n",
    ));
    assert!(
        p.iter()
            .any(|l| l
                .contains("6:19: `database[0].server_tls_name`: server_tls_mode = \"disable\"")),
        "{p:#?}"
    );
}

#[test]
fn a_database_listener_looks_users_up_only_as_an_auth_user_that_can_log_in() {
    let (db, parsed) = (database, database_listener);
    let off = parsed("");
    assert_eq!(off.auth_user, None);
    assert_eq!(off.auth_query, crate::DEFAULT_AUTH_QUERY);
    let on = parsed("auth_user = \"app\"\nauth_dbname = \"postgres\"\n");
    assert_eq!(on.auth_user.as_deref(), Some("app"));
    assert_eq!(on.auth_dbname.as_deref(), Some("postgres"));
    let own = parsed("auth_user = \"app\"\nauth_query = \"SELECT u, p FROM f($1)\"\n");
    assert_eq!(own.auth_query, "SELECT u, p FROM f($1)");
    // a user that is not configured, a query without the name, a query nobody runs
    let p = problems(&db("auth_user = \"nobody\"\n"));
    assert!(
        p.iter()
            .any(|l| l.contains("5:13: `database[0].auth_user`: no user \"nobody\"")),
        "{p:#?}"
    );
    let p = problems(&db("auth_user = \"app\"\nauth_query = \"SELECT 1, 2\"\n"));
    assert!(
        p.iter()
            .any(|l| l.contains("`database[0].auth_query`: the query does not take the user name")),
        "{p:#?}"
    );
    let p = problems(&db("auth_type = \"trust\"\nauth_user = \"app\"\n"));
    assert!(
        p.iter().any(|l| l
            .contains("`database[0].auth_user`: with auth_type = \"trust\" no password is asked")),
        "{p:#?}"
    );
    let p = problems(&db("auth_query = \"SELECT u, p FROM f($1)\"\n"));
    assert!(
        p.iter().any(
            |l| l.contains("`database[0].auth_query`: users are looked up only as `auth_user`")
        ),
        "{p:#?}"
    );
}

#[test]
fn a_database_listener_offers_tls_when_given_certificates_and_requires_it_only_when_told() {
    let (db, parsed) = (database, database_listener);
    let plain = parsed("");
    assert!(plain.tls.is_empty());
    assert!(!plain.tls_required);
    let tls = parsed("tls = [{ cert = \"db.pem\", key = \"/k/db.key\" }]\n");
    assert_eq!(tls.tls[0].cert, Path::new("/etc/strata/db.pem"));
    assert_eq!(tls.tls[0].key, Path::new("/k/db.key"));
    assert!(!tls.tls_required, "clients in clear are taken unless told");
    let required =
        parsed("tls = [{ cert = \"db.pem\", key = \"db.key\" }]\ntls_mode = \"require\"\n");
    assert!(required.tls_required);
    // require with nothing to offer, and a mode PgBouncer has that Strata does not
    let p = problems(&db("tls_mode = \"require\"\n"));
    assert!(
        p.iter().any(|l| l
            .contains("5:12: `database[0].tls_mode`: \"require\" needs a certificate to offer")),
        "{p:#?}"
    );
    let p = problems(&db("tls = []\ntls_mode = \"require\"\n"));
    assert!(
        p.iter().any(|l| l
            .contains("6:12: `database[0].tls_mode`: \"require\" needs a certificate to offer")),
        "{p:#?}"
    );
    let p = problems(&db(
        "tls = [{ cert = \"db.pem\", key = \"db.key\" }]\ntls_mode = \"verify-full\"\n",
    ));
    assert!(
        p.iter()
            .any(|l| l.contains("6:12: `database[0].tls_mode`: unknown value \"verify-full\"")),
        "{p:#?}"
    );
    let ca =
        parsed("tls = [{ cert = \"db.pem\", key = \"db.key\" }]\ntls_mode = \"require\"\ntls_client_ca = \"ca.pem\"\n");
    assert_eq!(
        ca.tls_client_ca.as_deref(),
        Some(Path::new("/etc/strata/ca.pem"))
    );
    assert_eq!(plain.tls_client_ca, None);
    let p = problems(&db(
        "tls = [{ cert = \"db.pem\", key = \"db.key\" }]\ntls_client_ca = \"ca.pem\"\n",
    ));
    assert!(
        p.iter().any(|l| l
            .contains("`database[0].tls_client_ca`: clients in clear would skip the certificate")),
        "{p:#?}"
    );
    let p = problems(&db("tls_mode = \"require\"\ntls_client_ca = \"ca.pem\"\n"));
    assert!(
        p.iter().any(|l| l
            .contains("`database[0].tls_client_ca`: client certificates are asked for over TLS")),
        "{p:#?}"
    );
    let p = problems(&db("tls = [{ cert = \"db.pem\" }]\n"));
    assert!(
        p.iter().any(|l| l.contains("`database[0].tls[0].key`")),
        "{p:#?}"
    );
}

#[test]
fn cache_pools_are_checked_key_by_key() {
    let p = problems(
        "[[cache]]\nname = \"s\"\nlisten = \"127.0.0.1:1\"\nhash = \"fnv\"\nhash_tag = \"{\"\n\
         servers = [\"127.0.0.1:2:1\", \"127.0.0.1:2:3\", \"10.0.0.1:3:1 127.0.0.1:2:1\", \"db:6379:1\", \"127.0.0.1:4:0\"]\n\
         max_bulk_size = \"1GiB\"\n",
    );
    let want = [
        "test.toml:4:8: `cache[0].hash`: unknown value \"fnv\"",
        "test.toml:7:17: `cache[0].max_bulk_size`: \"1GiB\" is more than the most it can be, \"512MiB\"",
        "test.toml:5:12: `cache[0].hash_tag`: \"{\" is not two characters",
        "`cache[0].servers[1]`: 127.0.0.1:2 is already servers[0]",
        "`cache[0].servers[3]`: \"db\" is not an IP address",
        "`cache[0].servers[4]`: \"127.0.0.1:4:0\" is not a server line",
    ];
    for w in want {
        assert!(p.iter().any(|l| l.contains(w)), "{w}: {p:#?}");
    }
    let ok = crate::parse(
        "[[cache]]\nname = \"s\"\nlisten = \"127.0.0.1:1\"\nhash = \"murmur\"\ndistribution = \"modula\"\n\
         hash_tag = \"{}\"\nservers = [\"127.0.0.1:2:1 a\", \"127.0.0.1:3:2\"]\n",
        "test.toml",
        std::path::Path::new("."),
    )
    .expect("valid");
    let c = &ok.cache[0];
    assert_eq!(c.hash, strata_ring::KeyHash::Murmur);
    assert_eq!(c.hash_tag, Some(*b"{}"));
    assert_eq!(c.servers[0].ring_name, "a");
    assert_eq!(c.servers[1].weight, 2);
    assert_eq!(c.consistency, crate::Consistency::Strong);
}

#[test]
fn broken_toml_points_at_the_line() {
    let p = problems("[[http]]\nname = \"a\n");
    assert_eq!(p.len(), 1, "{p:#?}");
    assert!(p[0].starts_with("test.toml:2:"), "{p:#?}");
    assert!(p[0].contains("invalid TOML"), "{p:#?}");
}

#[test]
fn wrong_types_are_named() {
    let p = problems("workers = \"many\"\n[[http]]\nname = 1\nlisten = \"127.0.0.1:1\"\nbackends = \"127.0.0.1:2\"\n");
    assert!(
        p.iter()
            .any(|l| l.contains("`workers`: expected an integer, found string")),
        "{p:#?}"
    );
    assert!(
        p.iter()
            .any(|l| l.contains("`http[0].name`: expected a string, found integer")),
        "{p:#?}"
    );
    assert!(
        p.iter()
            .any(|l| l.contains("`http[0].backends`: expected an array")),
        "{p:#?}"
    );
}

#[test]
fn backend_protocols_and_grpc_checks() {
    let base =
        "[[http]]\nname = \"rpc\"\nlisten = \"127.0.0.1:0\"\nbackends = [\"127.0.0.1:50051\"]\n";
    let c = parse(
        &format!("{base}backend_protocol = \"h2c\"\nhealth = {{ grpc_service = \"app.Users\" }}\n"),
        "t.toml",
        Path::new("/etc/strata"),
    )
    .expect("valid");
    assert_eq!(c.http[0].backend_protocol, BackendProtocol::H2c);
    assert_eq!(
        c.http[0].upstream.health.as_ref().map(|h| &h.kind),
        Some(&CheckKind::Grpc {
            service: "app.Users".into()
        })
    );
    let c = parse(
        &format!("{base}backend_protocol = \"h2\"\nbackend_ca = \"ca.pem\"\nbackend_sni = \"api.internal\"\n"),
        "t.toml",
        Path::new("/etc/strata"),
    )
    .expect("valid");
    assert_eq!(
        c.http[0].backend_protocol,
        BackendProtocol::H2(BackendTls {
            ca: "/etc/strata/ca.pem".into(),
            sni: Some("api.internal".into())
        })
    );
    // the default
    let c = parse(base, "t.toml", Path::new(".")).expect("valid");
    assert_eq!(c.http[0].backend_protocol, BackendProtocol::Http1);

    let p = problems(&format!("{base}backend_protocol = \"h2\"\n"));
    assert!(
        p.iter()
            .any(|p| p.contains("http[0].backend_ca") && p.contains("test.toml:5:")),
        "{p:?}"
    );
    let p = problems(&format!("{base}backend_protocol = \"h3\"\n"));
    assert!(p.iter().any(|p| p.contains("backend_protocol")), "{p:?}");
    let p = problems(&format!("{base}backend_ca = \"ca.pem\"\n"));
    assert!(
        p.iter()
            .any(|p| p.contains("only used with backend_protocol = \"h2\"")),
        "{p:?}"
    );
    let p = problems(&format!("{base}health = {{ grpc_service = \"\" }}\n"));
    assert!(
        p.iter().any(|p| p.contains("needs HTTP/2 to the backends")),
        "{p:?}"
    );
    let p = problems(&format!(
        "{base}backend_protocol = \"h2c\"\nhealth = {{ grpc_service = \"\", path = \"/x\" }}\n"
    ));
    assert!(
        p.iter()
            .any(|p| p.contains("health.path") && p.contains("gRPC check")),
        "{p:?}"
    );
}

#[test]
fn connect_tunnels_need_http1_backends() {
    let src = "[[http]]\nname = \"p\"\nlisten = \"127.0.0.1:0\"\nbackends = [\"127.0.0.1:3128\"]\nallow_connect = true\nbackend_protocol = \"h2c\"\n";
    let p = problems(src);
    assert!(
        p.iter()
            .any(|p| p.contains("http[0].allow_connect") && p.contains("HTTP/1.1")),
        "{p:?}"
    );
}

#[test]
fn busy_polling_is_for_a_node_of_one_worker() {
    let tcp = "[[tcp]]\nname = \"t\"\nlisten = \"127.0.0.1:1\"\nbackends = [\"127.0.0.1:2\"]\n";
    let c = parse(
        &format!("workers = 1\nbusy_poll = \"50us\"\n{tcp}"),
        "test.toml",
        Path::new("."),
    )
    .expect("valid");
    assert_eq!(c.busy_poll, Duration::from_micros(50));
    let c = parse(&format!("workers = 4\n{tcp}"), "test.toml", Path::new(".")).expect("valid");
    assert_eq!(c.busy_poll, Duration::ZERO);
    // one worker per core by default: refused, on its line
    let p = problems(&format!("busy_poll = \"50us\"\n{tcp}"));
    assert!(
        p.iter().any(|l| l.starts_with("test.toml:1:")
            && l.contains("`busy_poll`")
            && l.contains("one worker thread")
            && l.contains("workers = 1")),
        "{p:#?}"
    );
    let p = problems(&format!("workers = 1\nbusy_poll = \"1s\"\n{tcp}"));
    assert!(
        p.iter()
            .any(|l| l.starts_with("test.toml:2:") && l.contains("the most it can be, 10ms")),
        "{p:#?}"
    );
}

#[test]
fn a_backend_takes_max_conns_and_a_listener_waits_queue_timeout_for_room() {
    let src = r#"
[[http]]
name = "web"
listen = "127.0.0.1:8080"
backends = ["127.0.0.1:9001 max_conns=32 weight=2", "127.0.0.1:9002"]
connect_timeout = "3s"

[[tcp]]
name = "db"
listen = "127.0.0.1:5433"
backends = ["127.0.0.1:5432 max_conns=100"]
queue_timeout = "500ms"
queue_size = 200
"#;
    let c = parse(src, "t.toml", Path::new(".")).expect("valid");
    let web = &c.http[0].upstream;
    assert_eq!((web.backends[0].max_conns, web.backends[0].weight), (32, 2));
    assert_eq!(web.backends[1].max_conns, 0, "no limit unless written");
    // unset, it is the connect timeout, as HAProxy's `timeout queue`
    assert_eq!(web.queue_timeout, Duration::from_secs(3));
    let db = &c.tcp[0].upstream;
    assert_eq!(db.backends[0].max_conns, 100);
    assert_eq!(db.queue_timeout, Duration::from_millis(500));
    assert_eq!(
        (db.queue_size, web.queue_size),
        (200, 0),
        "no bound unless written"
    );

    let p = problems(
        "[[http]]\nname = \"web\"\nlisten = \"127.0.0.1:80\"\nbackends = [\"127.0.0.1:81 max_conns=0\", \"127.0.0.1:82 maxconn=5\"]\n",
    );
    assert!(
        p.iter().any(|l| l
            == "test.toml:4:13: `http[0].backends[0]`: bad max_conns in \"max_conns=0\": use 1 to 1000000"),
        "{p:#?}"
    );
    assert!(
        p.iter()
            .any(|l| l.contains("`http[0].backends[1]`: unknown backend option \"maxconn=5\"")),
        "{p:#?}"
    );
    let p = problems(
        "[[tcp]]\nname = \"db\"\nlisten = \"127.0.0.1:80\"\nbackends = [\"127.0.0.1:81\"]\nqueue_size = -1\n",
    );
    assert!(
        p.iter()
            .any(|l| l.starts_with("test.toml:5:") && l.contains("`tcp[0].queue_size`")),
        "{p:#?}"
    );
}
