//! Translating pgbouncer.ini files: the key mapping, PgBouncer's defaults where Strata's differ,
//! where each database's clients go, what is dropped, kept or left out, and what PgBouncer
//! itself would refuse.

use std::path::PathBuf;

use super::*;
use crate::import::tests::{config, notes, passes_strata_check, problems, translated};

/// A userlist.txt in a directory of its own, removed when dropped.
struct Userlist {
    dir: PathBuf,
}

impl Userlist {
    /// `app` with an md5 hash, `monitor` with a password, `web` with a SCRAM secret only.
    fn new(name: &str) -> Userlist {
        let dir = std::env::temp_dir().join(format!(
            "strata-import-pgbouncer-{}-{name}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("userlist.txt"),
            "\"app\" \"md55afb2fb5ee1832419a8c0fa45bc3255b\"\n\"monitor\" \"monitor-pw\"\n\"web\" \"SCRAM-SHA-256$4096:c3RyYXRhLWZpeHR1cmUtMQ==$KjPjTNW2iVeW7x40erok4BdNyCJrHrtZ3AiAEAeyx7s=:UWSCOG1TU8Fv5FxevcWH+tEnzBg7dHjH3mOBUFFQn0o=\"\n",
        )
        .unwrap();
        Userlist { dir }
    }

    fn path(&self) -> String {
        self.dir.join("userlist.txt").display().to_string()
    }

    /// A pgbouncer.ini listening on 127.0.0.1 with this userlist: `pgbouncer` from line 4, then
    /// `[databases]` and `databases`.
    /// A self-signed certificate for `name` and its key, beside the userlist as `stem`.crt
    /// and `stem`.key, which Strata can load; their paths.
    fn pair(&self, stem: &str, name: &str) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec![name.to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let (c, k) = (
            self.dir.join(format!("{stem}.crt")),
            self.dir.join(format!("{stem}.key")),
        );
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        (c.display().to_string(), k.display().to_string())
    }

    fn ini(&self, pgbouncer: &str, databases: &str) -> String {
        format!(
            "[pgbouncer]\nlisten_addr = 127.0.0.1\nauth_file = {}\n{pgbouncer}[databases]\n{databases}",
            self.path()
        )
    }
}

impl Drop for Userlist {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The translation of `source`, which must succeed.
fn ok(source: &str) -> Translation {
    translated(translate, source, "/etc/pgbouncer/pgbouncer.ini")
}

/// The problems of a refused `source` as `line:column key: message`.
fn refused(source: &str) -> Vec<String> {
    problems(translate(source, "p.ini"))
}

/// The notes' lines and keys, without their messages.
fn noted(t: &Translation) -> Vec<String> {
    t.notes
        .iter()
        .map(|n| format!("{} {}", n.at.line, n.key))
        .collect()
}

/// Whether a note about `key` says `text`.
fn says(t: &Translation, key: &str, text: &str) -> bool {
    t.notes
        .iter()
        .any(|n| n.key == key && n.message.contains(text))
}

#[test]
fn import_pgbouncer_maps_every_key_it_can() {
    let users = Userlist::new("every");
    let t = ok(&users.ini(
        "job_name = main\nlisten_port = 7432\npool_mode = transaction\ndefault_pool_size = 30\nmax_client_conn = 500\nauth_type = scram-sha-256\nauth_user = monitor\nquery_wait_timeout = 45\nserver_connect_timeout = 2.5\nserver_idle_timeout = 60\nserver_lifetime = 1800\n",
        "* = host=10.0.0.1,10.0.0.2 port=5433\n",
    ));
    assert_eq!(
        config(&t),
        vec![
            "[[database]]",
            "name = \"main\"",
            "listen = \"127.0.0.1:7432\"",
            "servers = [",
            "    \"10.0.0.1:5433\",",
            "    \"10.0.0.2:5433\",",
            "]",
            "pool_mode = \"transaction\"",
            "pool_size = 30",
            "auth_type = \"scram-sha-256\"",
            &format!("auth_file = \"{}\"", users.path()),
            "check_user = \"monitor\"",
            "auth_user = \"monitor\"",
            "max_client_connections = 500",
            "query_wait_timeout = \"45s\"",
            "connect_timeout = \"2500ms\"",
            "server_idle_timeout = \"60s\"",
            "server_lifetime = \"1800s\"",
        ]
    );
    // auth_user made check_user (auth_query is lost); the host list goes by role
    assert_eq!(
        noted(&t),
        vec!["10 pgbouncer.auth_user", "16 databases.*.host"]
    );
    assert!(says(&t, "pgbouncer.auth_user", "made `check_user`"));
    assert!(says(
        &t,
        "databases.*.host",
        "sends the primary everything but READ ONLY transactions"
    ));
    assert_eq!((t.sections, t.left_out), (1, 0));
    passes_strata_check(&t);
}

#[test]
fn import_pgbouncer_writes_pgbouncers_defaults_where_strata_differs() {
    let users = Userlist::new("defaults");
    let t = ok(&users.ini("", "app = host=10.0.0.1\n"));
    assert_eq!(
        config(&t),
        vec![
            "[[database]]",
            "name = \"pgbouncer\"",
            "listen = \"127.0.0.1:6432\"",
            "servers = [",
            "    \"10.0.0.1:5432\",",
            "]",
            // PgBouncer's, where Strata's default is transaction, scram-sha-256, 10000 and 5s
            "pool_mode = \"session\"",
            "pool_size = 20",
            "auth_type = \"md5\"",
            &format!("auth_file = \"{}\"", users.path()),
            "max_client_connections = 100",
            "query_wait_timeout = \"120s\"",
            "connect_timeout = \"15s\"",
            "server_idle_timeout = \"600s\"",
            "server_lifetime = \"3600s\"",
        ]
    );
    // only what a listed database means
    assert_eq!(
        notes(&t),
        vec!["4 databases: Strata has no list of databases: a client may ask for any database on `servers` (pg_hba.conf and CONNECT privileges still decide), where PgBouncer refuses one not listed here"]
    );
    passes_strata_check(&t);
}

#[test]
fn import_pgbouncer_prints_notes_on_the_process_apart_from_the_listeners() {
    let users = Userlist::new("layout");
    let t = translated(
        translate,
        &users.ini(
            "logfile = /var/log/pgbouncer.log\nquery_timeout = 30\n",
            "* = host=10.0.0.1\n",
        ),
        "p.ini",
    );
    let path = users.path();
    assert_eq!(
        t.toml,
        format!(
            "# Translated from p.ini by `strata import pgbouncer`: PgBouncer's\n\
             # listener as a [[database]] listener. What could not be translated is listed on stderr,\n\
             # and here: about PgBouncer's process below, about the listener above it.\n\
             \n\
             # line 4: `pgbouncer.logfile`: not translated: Strata logs to stderr, for the service manager's journal (`strata run --log-level`, `--log-format json`)\n\
             \n\
             # line 5: `pgbouncer.query_timeout`: not translated: Strata has no such timeout: PostgreSQL's `statement_timeout` cancels a long query, set on the role or database\n\
             [[database]]\nname = \"pgbouncer\"\nlisten = \"127.0.0.1:6432\"\nservers = [\n    \"10.0.0.1:5432\",\n]\n\
             pool_mode = \"session\"\npool_size = 20\nauth_type = \"md5\"\nauth_file = \"{path}\"\n\
             max_client_connections = 100\nquery_wait_timeout = \"120s\"\nconnect_timeout = \"15s\"\n\
             server_idle_timeout = \"600s\"\nserver_lifetime = \"3600s\"\n"
        )
    );
    assert_eq!(
        noted(&t),
        vec!["4 pgbouncer.logfile", "5 pgbouncer.query_timeout"]
    );
}

#[test]
fn import_pgbouncer_notes_values_strata_behaves_as_only_when_it_does_not() {
    let users = Userlist::new("same");
    let same = "server_reset_query = DISCARD ALL\ntcp_keepalive = 1\nclient_tls_sslmode = disable\nquery_timeout = 0\nlogfile =\npeer_id = 0\n";
    let t = ok(&users.ini(same, "* = host=10.0.0.1\n"));
    assert_eq!(notes(&t), Vec::<String>::new());
    let t = ok(&users.ini(
        "server_reset_query = RESET ALL\ntcp_keepalive = 0\nclient_tls_sslmode = prefer\n",
        "* = host=10.0.0.1\n",
    ));
    assert_eq!(
        noted(&t),
        vec![
            "4 pgbouncer.server_reset_query",
            "5 pgbouncer.tcp_keepalive",
            "6 pgbouncer.client_tls_sslmode",
        ]
    );
}

#[test]
fn import_pgbouncer_translates_authentication_as_near_as_strata_goes() {
    let users = Userlist::new("auth");
    let with = |auth: &str| ok(&users.ini(&format!("auth_type = {auth}\n"), "* = host=10.0.0.1\n"));
    let plain = with("plain");
    assert!(config(&plain).contains(&"auth_type = \"md5\""));
    assert!(says(&plain, "pgbouncer.auth_type", "`plain` made `md5`"));
    passes_strata_check(&plain);
    let any = with("ANY");
    assert!(config(&any).contains(&"auth_type = \"trust\""));
    assert!(says(&any, "pgbouncer.auth_type", "`any` made `trust`"));
    // what Strata can't check is kept for someone to choose
    for (auth, why) in [
        ("cert", "takes no user name from a client certificate"),
        ("hba", "not rules by address"),
        ("pam", "checks passwords against auth_file only"),
        ("ldap", "checks passwords against auth_file only"),
    ] {
        let t = with(auth);
        let line = format!("auth_type = \"{auth}\" # kept as written: see line 4 above");
        assert!(config(&t).contains(&line.as_str()), "{}", t.toml);
        assert!(says(&t, "pgbouncer.auth_type", why), "{:?}", notes(&t));
        let refused = check(&config(&t).join("\n")).unwrap_err();
        assert_eq!(refused.len(), 1, "{refused:?}");
    }
}

#[test]
fn import_pgbouncer_translates_client_tls_with_its_files_written_absolute() {
    let users = Userlist::new("tls");
    // a certificate and key Strata can load, beside the userlist
    let (c, k) = users.pair("db", "db.example");
    let files = format!("client_tls_cert_file = {c}\nclient_tls_key_file = {k}\n");
    let written = format!("tls = [{{ cert = \"{c}\", key = \"{k}\" }}]");
    let with = |tls: &str| ok(&users.ini(tls, "* = host=10.0.0.1\n"));
    // require: the files written as they are, and plain clients refused
    let t = with(&format!("client_tls_sslmode = require\n{files}"));
    assert!(config(&t).contains(&written.as_str()), "{}", t.toml);
    assert!(config(&t).contains(&"tls_mode = \"require\""), "{}", t.toml);
    assert_eq!(notes(&t), Vec::<String>::new());
    passes_strata_check(&t);
    // prefer (and allow): TLS for those who ask, plain for the others: Strata's default
    for mode in ["prefer", "allow"] {
        let t = with(&format!("client_tls_sslmode = {mode}\n{files}"));
        assert!(config(&t).contains(&written.as_str()), "{}", t.toml);
        assert!(
            !config(&t).iter().any(|l| l.starts_with("tls_mode")),
            "{}",
            t.toml
        );
        assert_eq!(notes(&t), Vec::<String>::new());
    }
    // relative files are taken from the ini's directory; files that don't load here are said
    let t = with("client_tls_sslmode = require\nclient_tls_cert_file = tls/db.crt\nclient_tls_key_file = /etc/tls/db.key\n");
    assert!(
        config(&t).contains(
            &"tls = [{ cert = \"/etc/pgbouncer/tls/db.crt\", key = \"/etc/tls/db.key\" }]"
        ),
        "{}",
        t.toml
    );
    assert!(says(&t, "pgbouncer.client_tls_cert_file", "is relative"));
    assert!(says(
        &t,
        "pgbouncer.client_tls_cert_file",
        "Strata can't load the file here (/etc/pgbouncer/tls/db.crt"
    ));
    // verify-ca and verify-full ask for a client certificate signed by client_tls_ca_file:
    // tls_client_ca (the names are not matched, in PgBouncer either)
    for mode in ["verify-ca", "verify-full"] {
        let t = with(&format!(
            "client_tls_sslmode = {mode}\n{files}client_tls_ca_file = /ca.pem\n"
        ));
        assert!(config(&t).contains(&"tls_mode = \"require\""), "{}", t.toml);
        assert!(
            config(&t).contains(&"tls_client_ca = \"/ca.pem\""),
            "{}",
            t.toml
        );
        passes_strata_check(&t);
    }
    // without a CA file, nothing to check against: kept for someone to choose
    let t = with(&format!("client_tls_sslmode = verify-ca\n{files}"));
    assert!(says(
        &t,
        "pgbouncer.client_tls_sslmode",
        "without client_tls_ca_file"
    ));
    assert_eq!(
        check(&config(&t).join("\n")).unwrap_err().len(),
        1,
        "{}",
        t.toml
    );
    // a CA file with a mode that asks for no certificate is said to be unused
    let t = with(&format!(
        "client_tls_sslmode = require\n{files}client_tls_ca_file = /ca.pem\n"
    ));
    assert!(says(
        &t,
        "pgbouncer.client_tls_ca_file",
        "Strata asks for none"
    ));
    // without the files, PgBouncer does not start: noted, no TLS written
    let t = with("client_tls_sslmode = require\n");
    assert!(says(&t, "pgbouncer.client_tls_sslmode", "without both"));
    assert!(
        !config(&t).iter().any(|l| l.starts_with("tls")),
        "{}",
        t.toml
    );
    // files while disabled: noted as unused, and nothing else said of them
    let t = with("client_tls_cert_file = tls/db.crt\n");
    assert_eq!(noted(&t), vec!["4 pgbouncer.client_tls_cert_file"]);
    assert!(says(&t, "pgbouncer.client_tls_cert_file", "not used while"));
    // suites and protocols: rustls's, noted unless PgBouncer's defaults
    let t = with(&format!(
        "client_tls_sslmode = allow\n{files}client_tls_protocols = secure\nclient_tls_ciphers = HIGH:!aNULL\n"
    ));
    assert_eq!(noted(&t), vec!["8 pgbouncer.client_tls_ciphers"]);
}

#[test]
fn import_pgbouncer_translates_server_tls_with_the_name_verify_full_checks() {
    let users = Userlist::new("servertls");
    let (c, k) = users.pair("me", "pgbouncer.example");
    let with = |tls: &str, host: &str| ok(&users.ini(tls, &format!("* = host={host}\n")));
    let mode = |t: &Translation| {
        config(t)
            .iter()
            .find(|l| l.starts_with("server_tls_mode"))
            .map(|l| l.to_string())
    };
    // PgBouncer's default (1.20 on) is Strata's: nothing written
    let t = with("", "10.0.0.1");
    assert_eq!(mode(&t), None);
    assert_eq!(notes(&t), Vec::<String>::new());
    for m in ["disable", "require"] {
        let t = with(&format!("server_tls_sslmode = {m}\n"), "10.0.0.1");
        assert_eq!(mode(&t), Some(format!("server_tls_mode = \"{m}\"")));
        assert_eq!(notes(&t), Vec::<String>::new());
        passes_strata_check(&t);
    }
    // allow (clear first) is asked for TLS first
    let t = with("server_tls_sslmode = allow\n", "10.0.0.1");
    assert_eq!(mode(&t), Some("server_tls_mode = \"prefer\"".into()));
    assert!(says(&t, "pgbouncer.server_tls_sslmode", "made \"prefer\""));
    // verify-full against a host name: the CA, the client pair, and the name checked
    let ca = c.clone();
    let t = with(
        &format!("server_tls_sslmode = verify-full\nserver_tls_ca_file = {ca}\nserver_tls_cert_file = {c}\nserver_tls_key_file = {k}\n"),
        "db.internal",
    );
    for line in [
        "server_tls_mode = \"verify-full\"".to_string(),
        format!("server_tls_ca = \"{ca}\""),
        format!("server_tls_cert = \"{c}\""),
        format!("server_tls_key = \"{k}\""),
        "server_tls_name = \"db.internal\"".to_string(),
    ] {
        assert!(config(&t).contains(&line.as_str()), "{line}\n{}", t.toml);
    }
    assert!(says(&t, "databases.*.host", "written as server_tls_name"));
    // several names: one can't be written
    let t = with(
        &format!("server_tls_sslmode = verify-full\nserver_tls_ca_file = {ca}\n"),
        "a.internal,b.internal",
    );
    assert!(says(&t, "databases.*.host", "Strata checks one name"));
    assert!(!config(&t).iter().any(|l| l.starts_with("server_tls_name")));
    // a CA file where nothing is checked, half a pair, a file that does not load here
    let t = with(
        &format!("server_tls_sslmode = require\nserver_tls_ca_file = {ca}\n"),
        "10.0.0.1",
    );
    assert!(says(
        &t,
        "pgbouncer.server_tls_ca_file",
        "not used while server_tls_sslmode = require"
    ));
    assert!(!config(&t).iter().any(|l| l.starts_with("server_tls_ca")));
    passes_strata_check(&t);
    let t = with(
        &format!("server_tls_sslmode = require\nserver_tls_cert_file = {c}\n"),
        "10.0.0.1",
    );
    assert!(says(
        &t,
        "pgbouncer.server_tls_cert_file",
        "without server_tls_key_file"
    ));
    let t = with(
        "server_tls_sslmode = verify-ca\nserver_tls_ca_file = /nowhere/ca.pem\n",
        "10.0.0.1",
    );
    assert!(says(
        &t,
        "pgbouncer.server_tls_ca_file",
        "Strata can't load the file here (/nowhere/ca.pem"
    ));
    // suites and protocols: rustls's, noted unless PgBouncer's defaults
    let t = with(
        "server_tls_protocols = secure\nserver_tls_ciphers = HIGH\n",
        "10.0.0.1",
    );
    assert_eq!(noted(&t), vec!["5 pgbouncer.server_tls_ciphers"]);
}

#[test]
fn import_pgbouncer_makes_max_db_connections_the_bound_per_server() {
    let users = Userlist::new("maxdb");
    let with = |n: &str| {
        ok(&users.ini(
            &format!("max_db_connections = {n}\n"),
            "* = host=10.0.0.1\n",
        ))
    };
    let t = with("50");
    assert!(
        config(&t).contains(&"max_server_connections = 50"),
        "{}",
        t.toml
    );
    assert!(says(
        &t,
        "pgbouncer.max_db_connections",
        "Strata each server's"
    ));
    passes_strata_check(&t);
    let t = with("200000");
    assert!(
        config(&t).contains(&"max_server_connections = 100000"),
        "{}",
        t.toml
    );
    assert!(says(
        &t,
        "pgbouncer.max_db_connections",
        "200000 made 100000"
    ));
    // 0, PgBouncer's default: no bound, nothing written
    let t = with("0");
    assert!(!t.toml.contains("max_server_connections"), "{}", t.toml);
    assert_eq!(notes(&t), Vec::<String>::new());
}

#[test]
fn import_pgbouncer_takes_a_relative_auth_file_from_the_ini_s_directory() {
    // a file Strata can't read where the import runs is kept, for `strata check` to refuse
    let t = translated(
        translate,
        "[pgbouncer]\nlisten_addr = *\nauth_file = ./userlist.txt\nauth_user = pgbouncer\n[databases]\n* = host=10.0.0.1\n",
        "/nonexistent/pgbouncer.ini",
    );
    assert!(
        config(&t).contains(
            &"auth_file = \"/nonexistent/userlist.txt\" # kept as written: see line 3 above"
        ),
        "{}",
        t.toml
    );
    assert!(says(
        &t,
        "pgbouncer.auth_file",
        "\"./userlist.txt\" is relative"
    ));
    assert!(says(
        &t,
        "pgbouncer.auth_file",
        "cannot read /nonexistent/userlist.txt"
    ));
    assert!(says(
        &t,
        "pgbouncer.auth_user",
        "while Strata can't read the auth_file"
    ));
    assert!(!config(&t).iter().any(|l| l.starts_with("check_user")));
    let refused = check(&config(&t).join("\n")).unwrap_err();
    assert_eq!(refused.len(), 1, "{refused:?}");
}

#[test]
fn import_pgbouncer_makes_auth_user_the_check_user_only_when_strata_can_log_in_as_it() {
    let users = Userlist::new("check_user");
    // `web` has only a SCRAM secret, which can't log in by itself
    let t = ok(&users.ini("auth_user = web\n", "* = host=10.0.0.1\n"));
    assert!(!config(&t).iter().any(|l| l.starts_with("check_user")));
    assert!(says(
        &t,
        "pgbouncer.auth_user",
        "not made `check_user` and `auth_user`, which Strata would refuse (user \"web\" has only a SCRAM secret"
    ));
    passes_strata_check(&t);
    // without an auth_file, every user came from auth_query
    let t =
        ok("[pgbouncer]\nlisten_addr = *\nauth_user = pgbouncer\n[databases]\n* = host=10.0.0.1\n");
    assert!(config(&t).contains(&"auth_user = \"pgbouncer\" # kept as written: see line 3 above"));
    assert_eq!(t.left_out, 0);
}

#[test]
fn import_pgbouncer_looks_users_up_as_auth_user_with_its_query() {
    let users = Userlist::new("auth_query");
    let q = "SELECT usename, passwd FROM pgbouncer.get_auth($1)";
    let t = ok(&users.ini(
        &format!("auth_user = monitor\nauth_query = {q}\nauth_dbname = postgres\n"),
        "* = host=10.0.0.1\n",
    ));
    for line in [
        "auth_user = \"monitor\"".to_string(),
        format!("auth_query = \"{q}\""),
        "auth_dbname = \"postgres\"".to_string(),
    ] {
        assert!(config(&t).contains(&line.as_str()), "{line}\n{}", t.toml);
    }
    assert!(says(&t, "pgbouncer.auth_user", "looked up with auth_query"));
    passes_strata_check(&t);
    // a database's own lookup, where it is not the one for all, is noted
    let t = ok(&users.ini(
        "auth_user = monitor\n",
        "* = host=10.0.0.1 auth_user=other auth_dbname=postgres\n",
    ));
    assert!(says(
        &t,
        "databases.*.auth_user",
        "Strata has one auth_user"
    ));
    assert!(says(
        &t,
        "databases.*.auth_dbname",
        "Strata has one auth_dbname"
    ));
    // without auth_user, PgBouncer looks nobody up: noted, nothing written
    let t = ok(&users.ini(&format!("auth_query = {q}\n"), "* = host=10.0.0.1\n"));
    assert!(says(
        &t,
        "pgbouncer.auth_query",
        "not used without auth_user"
    ));
    assert!(!config(&t).iter().any(|l| l.starts_with("auth_")
        && !l.starts_with("auth_type")
        && !l.starts_with("auth_file")));
}

#[test]
fn import_pgbouncer_leaves_out_a_listener_nobody_could_log_in_to() {
    let t = ok("[pgbouncer]\nlisten_addr = *\n[databases]\n* = host=10.0.0.1\n");
    assert_eq!(t.left_out, 1);
    assert!(says(
        &t,
        "pgbouncer.auth_file",
        "listener left out (its translation is a comment in the output): no `auth_file`"
    ));
    assert!(t.toml.contains("\n# [[database]]\n"), "{}", t.toml);
    // with trust, PgBouncer and Strata alike take only the users they know
    let t = ok("[pgbouncer]\nlisten_addr = *\nauth_type = trust\n[databases]\n* = host=10.0.0.1\n");
    assert_eq!(t.left_out, 0);
    assert!(says(&t, "pgbouncer.auth_file", "nobody could log in"));
}

#[test]
fn import_pgbouncer_listens_where_pgbouncer_listened_over_tcp() {
    let users = Userlist::new("listen");
    let listen = |addr: &str| {
        let ini = users
            .ini("", "* = host=10.0.0.1\n")
            .replace("listen_addr = 127.0.0.1", addr);
        ok(&ini)
    };
    let t = listen("listen_addr = ::1\nlisten_port = 0x1920");
    assert!(config(&t).contains(&"listen = \"[::1]:6432\""));
    let t = listen("listen_addr = localhost, 10.0.0.5");
    assert!(config(&t).contains(&"listen = \"localhost:6432\""));
    assert!(says(&t, "pgbouncer.listen_addr", "10.0.0.5 not translated: Strata's listener listens on one address, \"localhost:6432\": clients that connect to the others must connect there (or listen on 0.0.0.0)"));
    // 0.0.0.0 takes the clients of any other IPv4 address
    let t = listen("listen_addr = *,10.0.0.5");
    assert_eq!(noted(&t), vec!["2 pgbouncer.listen_addr"]);
    // a unix socket only, or a host name: left out
    let t = listen("unix_socket_dir = /run/pgbouncer");
    assert_eq!(t.left_out, 1);
    assert!(says(&t, "pgbouncer.listen_addr", "no `listen_addr`: PgBouncer listens on its unix socket only (/run/pgbouncer/.s.PGSQL.6432)"));
    let t = listen("listen_addr = pooler.internal");
    assert_eq!(t.left_out, 1);
    assert!(says(
        &t,
        "pgbouncer.listen_addr",
        "resolved the host name \"pooler.internal\""
    ));
}

#[test]
fn import_pgbouncer_takes_the_servers_most_databases_share() {
    let users = Userlist::new("servers");
    let t = ok(&users.ini(
        "",
        "a = host=10.0.0.9\nb = host=10.0.0.2,10.0.0.1\nc = host=10.0.0.1,10.0.0.2\n",
    ));
    let servers: Vec<&str> = config(&t)
        .into_iter()
        .skip_while(|l| *l != "servers = [")
        .take(4)
        .collect();
    assert_eq!(
        servers,
        vec![
            "servers = [",
            "    \"10.0.0.2:5432\",",
            "    \"10.0.0.1:5432\",",
            "]"
        ]
    );
    assert!(config(&t)
        .contains(&"\"databases.a\" = \"host=10.0.0.9\" # kept as written: see line 5 above"));
    // on a tie, the first
    let t = ok(&users.ini("", "a = host=10.0.0.9\nb = host=10.0.0.1\n"));
    assert!(config(&t).contains(&"    \"10.0.0.9:5432\","));
    assert!(config(&t)
        .contains(&"\"databases.b\" = \"host=10.0.0.1\" # kept as written: see line 6 above"));
}

#[test]
fn import_pgbouncer_keeps_servers_strata_cannot_reach_as_pgbouncer_did() {
    let users = Userlist::new("reach");
    let t = ok(&users.ini(
        "unix_socket_dir = /run/postgresql\n",
        "* = host=fe80::1,db-1.internal,/var/run/postgresql,10.0.0.1,10.0.0.1 port=5433\nnohost =\n",
    ));
    let servers: Vec<&str> = config(&t)
        .into_iter()
        .skip_while(|l| *l != "servers = [")
        .take(6)
        .collect();
    assert_eq!(
        servers,
        vec![
            "servers = [",
            "    \"[fe80::1]:5433\",",
            "    \"db-1.internal:5433\", # kept as written: see line 6 above",
            "    \"/var/run/postgresql/.s.PGSQL.5433\", # kept as written: see line 6 above",
            "    \"10.0.0.1:5433\",",
            "]",
        ]
    );
    assert!(says(
        &t,
        "databases.*.host",
        "\"db-1.internal\" is a host name"
    ));
    assert!(says(
        &t,
        "databases.*.host",
        "\"/var/run/postgresql\" is a unix socket directory"
    ));
    assert!(says(
        &t,
        "databases.*.host",
        "\"10.0.0.1:5433\" is listed twice"
    ));
    // a database without host= is on the unix socket in unix_socket_dir
    assert!(config(&t).contains(&"\"databases.nohost\" = \"\" # kept as written: see line 7 above"));
    assert!(says(
        &t,
        "databases.nohost.host",
        "to /run/postgresql/.s.PGSQL.5432"
    ));
    // a port PgBouncer takes and TCP does not
    let t = ok(&users.ini("", "* = host=10.0.0.1 port=70000\n"));
    assert!(says(&t, "databases.*.host", "port 70000 is not a TCP port"));
    let refused = check(&config(&t).join("\n")).unwrap_err();
    assert_eq!(refused.len(), 1, "{refused:?}");
}

#[test]
fn import_pgbouncer_keeps_databases_that_would_reach_another_database_or_role() {
    let users = Userlist::new("route");
    let t = ok(&users.ini(
        "",
        "app = host=10.0.0.1\nalias = host=10.0.0.1 dbname=app\nsame = host=10.0.0.1 dbname=same\nforced = host=10.0.0.1 user=app password=x\nignored = host=10.0.0.1 password=x\n* = host=10.0.0.1 dbname=postgres\n",
    ));
    let kept: Vec<&str> = config(&t)
        .into_iter()
        .filter(|l| l.starts_with("\"databases."))
        .collect();
    assert_eq!(
        kept,
        vec![
            "\"databases.alias\" = \"host=10.0.0.1 dbname=app\" # kept as written: see line 6 above",
            "\"databases.forced\" = \"host=10.0.0.1 user=app password=x\" # kept as written: see line 8 above",
            "\"databases.*\" = \"host=10.0.0.1 dbname=postgres\" # kept as written: see line 10 above",
        ]
    );
    assert!(says(
        &t,
        "databases.alias.dbname",
        "PgBouncer sends clients asking for database \"alias\" to database \"app\""
    ));
    assert!(says(
        &t,
        "databases.*.dbname",
        "PgBouncer sends clients asking for a database not listed to database \"postgres\""
    ));
    assert!(says(
        &t,
        "databases.forced.user",
        "PgBouncer logs in to the server as \"app\" for every client"
    ));
    assert!(says(
        &t,
        "databases.ignored.password",
        "PgBouncer uses it only with `user=`"
    ));
    // with a `*`, every database is PgBouncer's too
    assert!(!t.notes.iter().any(|n| n.key == "databases"));
    let refused = check(&config(&t).join("\n")).unwrap_err();
    assert_eq!(refused.len(), 3, "{refused:?}");
}

#[test]
fn import_pgbouncer_notes_what_a_database_sets_only_where_the_listener_differs() {
    let users = Userlist::new("per_db");
    let t = ok(&users.ini(
        "pool_mode = transaction\ndefault_pool_size = 10\nquery_wait_timeout = 30\n",
        "a = host=10.0.0.1 pool_size=10 pool_mode=Transaction query_wait_timeout=30\nb = host=10.0.0.1 pool_size=5 pool_mode=session query_wait_timeout=0 client_encoding=UTF8\n",
    ));
    assert_eq!(
        noted(&t),
        vec![
            "7 databases",
            "9 databases.b.pool_size",
            "9 databases.b.pool_mode",
            "9 databases.b.query_wait_timeout",
            "9 databases.b.client_encoding",
        ]
    );
    assert!(says(&t, "databases.b.pool_mode", "Strata has one pool_mode for every database, transaction: this database's clients would lose what they set in their session"));
    assert!(says(
        &t,
        "databases.b.query_wait_timeout",
        "every database, 30s"
    ));
    passes_strata_check(&t);
}

#[test]
fn import_pgbouncer_writes_server_lifetime_as_strata_reads_it() {
    let users = Userlist::new("lifetime");
    // infinity is no limit, Strata's 0s; a database's 0 is the global value, and no note
    let t = ok(&users.ini(
        "server_lifetime = inf\n",
        "* = host=10.0.0.1 server_lifetime=0\n",
    ));
    assert!(
        config(&t).contains(&"server_lifetime = \"0s\""),
        "{:?}",
        config(&t)
    );
    assert!(says(
        &t,
        "pgbouncer.server_lifetime",
        "inf (no limit) made 0s"
    ));
    assert!(
        !notes(&t)
            .iter()
            .any(|n| n.contains("databases.*.server_lifetime")),
        "{:?}",
        notes(&t)
    );
}

#[test]
fn import_pgbouncer_writes_durations_and_sizes_as_near_as_strata_takes_them() {
    let users = Userlist::new("values");
    let t = ok(&users.ini(
        "query_wait_timeout = 0\nserver_connect_timeout = 0.25\nserver_idle_timeout = 0.0004\nserver_lifetime = 0\ndefault_pool_size = 20000\nmin_pool_size = 50000\nmax_client_conn = 2000000\n",
        "* = host=10.0.0.1\n",
    ));
    let config = config(&t);
    for line in [
        "query_wait_timeout = \"24h\"",
        "connect_timeout = \"250ms\"",
        "server_idle_timeout = \"1ms\"",
        // PgBouncer's 0 uses each server connection once
        "server_lifetime = \"1ms\"",
        "pool_size = 10000",
        "min_pool_size = 10000",
        "max_client_connections = 1000000",
    ] {
        assert!(config.contains(&line), "{line}: {config:?}");
    }
    assert!(says(
        &t,
        "pgbouncer.query_wait_timeout",
        "0 (no limit) made 24h"
    ));
    assert!(says(
        &t,
        "pgbouncer.server_idle_timeout",
        "0.0004s made 1ms"
    ));
    assert!(says(
        &t,
        "pgbouncer.server_lifetime",
        "0 (each server connection used once) made 1ms"
    ));
    assert!(says(&t, "pgbouncer.default_pool_size", "20000 made 10000"));
    assert!(says(&t, "pgbouncer.min_pool_size", "50000 made 10000"));
    assert!(says(
        &t,
        "pgbouncer.max_client_conn",
        "2000000 made 1000000"
    ));
    passes_strata_check(&t);
}

#[test]
fn import_pgbouncer_keeps_what_strata_cannot_run_for_strata_check_to_refuse() {
    let users = Userlist::new("kept");
    let t = ok(&users.ini(
        "pool_mode = statement\ndefault_pool_size = 0\nmax_client_conn = -1\n",
        "* = host=10.0.0.1\n",
    ));
    let kept: Vec<&str> = config(&t)
        .into_iter()
        .filter(|l| l.contains("# kept as written"))
        .collect();
    assert_eq!(
        kept,
        vec![
            "pool_mode = \"statement\" # kept as written: see line 4 above",
            "pool_size = 0 # kept as written: see line 5 above",
            "max_client_connections = -1 # kept as written: see line 6 above",
        ]
    );
    assert!(says(
        &t,
        "pgbouncer.pool_mode",
        "Strata has no statement mode"
    ));
    let refused = check(&config(&t).join("\n")).unwrap_err();
    assert_eq!(refused.len(), 3, "{refused:?}");
}

#[test]
fn import_pgbouncer_sets_keys_back_at_a_second_pgbouncer_section_as_pgbouncer_does() {
    let users = Userlist::new("reset");
    let t = ok(&users.ini(
        "pool_mode = transaction\nauth_user = monitor\n[pgbouncer]\nlisten_addr = 127.0.0.1\n",
        "* = host=10.0.0.1\n",
    ));
    // auth_file and auth_user have no default to go back to
    assert!(config(&t).contains(&"pool_mode = \"session\""));
    assert!(config(&t).contains(&"check_user = \"monitor\""));
    assert!(says(
        &t,
        "pgbouncer.pool_mode",
        "PgBouncer sets it back to its default at the [pgbouncer] on line 6, the section begun again"
    ));
    assert!(says(&t, "pgbouncer.listen_addr", "PgBouncer sets it back"));
}

#[test]
fn import_pgbouncer_notes_users_peers_and_includes() {
    let users = Userlist::new("others");
    let t = ok(&format!(
        "%include /etc/pgbouncer/local.ini\n{}[users]\nalice = pool_size=5\n[peers]\n1 = host=10.0.0.31\n",
        users.ini("peer_id = 1\n", "* = host=10.0.0.1\n* = host=10.0.0.1 port=5432\n")
    ));
    assert_eq!(
        noted(&t),
        vec![
            "1 %include",
            "5 pgbouncer.peer_id",
            "7 databases.*",
            "10 users.alice",
            "12 peers.1",
        ]
    );
    assert!(says(&t, "databases.*", "line 8 sets it again"));
    assert!(says(
        &t,
        "users.alice",
        "Strata has no per-user settings (`pool_size=5`)"
    ));
}

#[test]
fn import_pgbouncer_refuses_a_file_pgbouncer_would_not_start_with() {
    // what it can't read at all first, alone
    assert_eq!(
        refused("[pgbouncer]\nlisten_port = 70000\nlisten_addr\n[databases\n"),
        vec![
            "3:12 : `listen_addr` has no `=` after it",
            "4:1 : this `[` has no `]` after it on its line",
        ]
    );
    assert_eq!(
        refused("listen_port = 1\n[pgbouncer]\nlisten_port = 70000\n"),
        vec![
            "1:1 listen_port: a key before any section: PgBouncer takes keys in [pgbouncer], [databases], [users] and [peers] only",
            "3:15 pgbouncer.listen_port: \"70000\": not a port (0 to 65535), which PgBouncer can't listen on",
        ]
    );
    assert_eq!(
        refused("[pgbouncer]\nlisten_port = 64x\npool_mode = batch\nlog_level = 2\nauth_dbname = pgbouncer\n[Databases]\n"),
        vec![
            "2:15 pgbouncer.listen_port: \"64x\": not a whole number, which PgBouncer refuses",
            "3:13 pgbouncer.pool_mode: \"batch\": not one of session, transaction, statement, which PgBouncer refuses",
            "4:1 pgbouncer.log_level: PgBouncer has no such key (it refuses the file: \"unknown parameter\")",
            "5:15 pgbouncer.auth_dbname: \"pgbouncer\" is PgBouncer's admin console, which it refuses as `auth_dbname`",
            "6:2 : PgBouncer has no section [Databases] (it has [pgbouncer], [databases], [users] and [peers], in lower case, with nothing else between the brackets)",
        ]
    );
    assert_eq!(
        refused("[databases]\npgbouncer = host=10.0.0.1\na = host=10.0.0.1 sslmode=require\nb = host=10.0.0.1 port=x\nc = pool_mode=fast\nd = host\n* = host\n[users]\nu = pool_size=1 application_name=x\n[peers]\n0 = host=x\n2 = port=1\n"),
        vec![
            "1:1 : no [pgbouncer] section: PgBouncer refuses a file without one (\"main section missing\")",
            "2:1 databases.pgbouncer: the database name \"pgbouncer\" is PgBouncer's admin console's, which it refuses here",
            "3:19 databases.a: PgBouncer has no connection parameter `sslmode`",
            "4:24 databases.b: \"x\": not a port",
            "5:15 databases.c: \"fast\": not a pool mode",
            "6:5 databases.d: `host` has no `=` after it",
            "9:17 users.u: PgBouncer has no user setting `application_name`",
            "11:1 peers.0: a peer's id is a number from 1 to 65535",
            "12:5 peers.2: no `host=`, which PgBouncer requires of a peer",
        ]
    );
}

#[test]
fn import_pgbouncer_notes_a_fallback_pgbouncer_reads_only_when_a_client_needs_it() {
    let users = Userlist::new("fallback");
    let t = ok(&users.ini(
        "",
        "app = host=10.0.0.1\n* = host=10.0.0.1 sslmode=require\n",
    ));
    assert!(says(&t, "databases.*", "not translated: PgBouncer has no connection parameter `sslmode`: PgBouncer reads it when a client asks for a database not listed, and fails that client then"));
    assert!(t.notes.iter().any(|n| n.key == "databases"));
    passes_strata_check(&t);
}
