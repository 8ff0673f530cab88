//! Translating nutcracker pools: the key mapping, server lines and their ring names, what is
//! dropped, kept or left out, and what twemproxy itself would refuse.

use super::*;
use crate::import::check;
use crate::import::tests::{config, notes, passes_strata_check, problems, translated};

/// The translation of `source`, which must succeed.
fn ok(source: &str) -> Translation {
    translated(translate, source, "n.yml")
}

/// The problems of a refused `source` as `line:column key: message`.
fn refused(source: &str) -> Vec<String> {
    problems(translate(source, "n.yml"))
}

const REDIS: &str = "p:\n  listen: 127.0.0.1:22121\n  redis: true\n  timeout: 100\n";

#[test]
fn import_twemproxy_maps_every_key_it_can() {
    let source = format!(
        "{REDIS}  hash: crc32a\n  hash_tag: \"$$\"\n  distribution: modula\n  auto_eject_hosts: true\n  server_connections: 4\n  server_failure_limit: 3\n  server_retry_timeout: 1500\n  redis_auth: pw\n  redis_db: 0\n  reuseport: false\n  tcpkeepalive: false\n  preconnect: false\n  servers:\n   - 127.0.0.1:6379:1\n"
    );
    let t = ok(&source);
    assert_eq!(notes(&t), Vec::<String>::new());
    assert_eq!(
        config(&t),
        vec![
            "[[cache]]",
            "name = \"p\"",
            "listen = \"127.0.0.1:22121\"",
            "protocol = \"redis\"",
            "distribution = \"modula\"",
            "hash = \"crc32a\"",
            "hash_tag = \"$$\"",
            "consistency = \"weak\"",
            "timeout = \"100ms\"",
            "connect_timeout = \"100ms\"",
            "server_connections = 4",
            "server_failure_limit = 3",
            "server_retry_timeout = \"1500ms\"",
            "password = \"pw\"",
            "server_password = \"pw\"",
            "servers = [",
            "    \"127.0.0.1:6379:1\",",
            "]",
        ]
    );
    assert_eq!((t.sections, t.left_out), (1, 0));
}

#[test]
fn import_twemproxy_fills_in_twemproxys_defaults_where_strata_differs() {
    let t = ok("p:\n  listen: 127.0.0.1:22121\n  servers:\n   - 127.0.0.1:11211:1\n");
    let config = config(&t);
    // memcached unless `redis: true`; no ejection unless `auto_eject_hosts: true`
    assert!(config.contains(&"protocol = \"memcache\""), "{config:?}");
    assert!(config.contains(&"consistency = \"strong\""), "{config:?}");
    assert!(config.contains(&"hash = \"fnv1a_64\""), "{config:?}");
    assert!(config.contains(&"distribution = \"ketama\""), "{config:?}");
    assert!(
        notes(&t)[0].starts_with("1 p: no `timeout`"),
        "{:?}",
        notes(&t)
    );
}

#[test]
fn import_twemproxy_keeps_each_servers_ring_name() {
    let t = ok(&format!(
        "{REDIS}  servers:\n   - 10.0.0.1:11211:1\n   - 10.0.0.2:6379:2 named\n   - ::1:6379:1\n   - fe80::1:11211:1\n   - 10.0.0.3:06379:1\n   - localhost:7000:3\n"
    ));
    let servers: Vec<_> = config(&t)
        .into_iter()
        .skip_while(|l| *l != "servers = [")
        .collect();
    assert_eq!(
        servers,
        vec![
            "servers = [",
            "    \"10.0.0.1:11211:1\",",
            "    \"10.0.0.2:6379:2 named\",",
            // twemproxy names an IPv6 server by its address as written, without brackets
            "    \"[::1]:6379:1 ::1:6379\",",
            "    \"[fe80::1]:11211:1 fe80::1\",",
            // and by its port as written
            "    \"10.0.0.3:6379:1 10.0.0.3:06379\",",
            "    \"localhost:7000:3\",",
            "]",
        ]
    );
    assert_eq!(notes(&t), Vec::<String>::new());
}

#[test]
fn import_twemproxy_keeps_what_would_move_keys_for_strata_check_to_refuse() {
    let t = ok(&format!(
        "{REDIS}  redis_db: 3\n  servers:\n   - cache-1:6379:1\n   - cache-2:11211:1 c2\n   - /tmp/redis.sock:1\n   - 10.0.0.1:6379:10001\n   - 10.0.0.2:6379:1 a\n   - 10.0.0.2:6379:1 b\n"
    ));
    let kept = "kept as written, so `strata check` refuses it until it is changed";
    assert_eq!(
        notes(&t),
        vec![
            format!("5 p.redis_db: {kept}: Strata does not select a database on its server connections, so the keys would be read and written in database 0; move the data, or delete this line to use database 0"),
            format!("7 p.servers[0]: {kept}: \"cache-1\" is a host name, which twemproxy resolves and Strata does not: write the server's IP address, and keep its twemproxy name after the weight so its keys stay on it (\"ADDRESS:6379:1 cache-1:6379\")"),
            format!("8 p.servers[1]: {kept}: \"cache-2\" is a host name, which twemproxy resolves and Strata does not: write the server's IP address, and keep its twemproxy name after the weight so its keys stay on it (\"ADDRESS:11211:1 c2\")"),
            format!("9 p.servers[2]: {kept}: \"/tmp/redis.sock\" is a unix socket; Strata reaches servers over TCP only"),
            format!("10 p.servers[3]: {kept}: a weight of 10001 is more than Strata's 10000: scale the pool's weights down together (keys stay where they are only if the proportions stay exactly the same)"),
            format!("12 p.servers[5]: {kept}: servers[4] is at 10.0.0.2:6379 too, which twemproxy allows and Strata does not"),
        ]
    );
    let config = config(&t);
    assert!(config.contains(&"redis_db = 3 # kept as written: see line 5 above"));
    assert!(config.contains(&"    \"cache-1:6379:1\", # kept as written: see line 7 above"));
    assert!(config.contains(&"    \"10.0.0.2:6379:1 a\","));
    // Strata's own check refuses each kept line
    let problems = check(&config.join("\n")).unwrap_err();
    assert_eq!(problems.len(), 6, "{problems:?}");
}

#[test]
fn import_twemproxy_notes_what_it_drops() {
    let t = ok(&format!(
        "{REDIS}  backlog: 1024\n  client_connections: 10\n  tcpkeepalive: true\n  reuseport: true\n  preconnect: true\n  server_connections: 65\n  server_failure_limit: 5000\n  sentinels: 3\n  servers:\n   - 127.0.0.1:6379:1\n"
    ))
    .notes;
    let messages: Vec<_> = t.iter().map(|n| (n.at.line, n.key.as_str())).collect();
    assert_eq!(
        messages,
        vec![
            (5, "p.backlog"),
            (6, "p.client_connections"),
            (7, "p.tcpkeepalive"),
            (8, "p.reuseport"),
            (9, "p.preconnect"),
            (10, "p.server_connections"),
            (11, "p.server_failure_limit"),
            (12, "p.sentinels"),
        ]
    );
    assert!(t[..5]
        .iter()
        .all(|n| n.message.starts_with("not translated: ")));
    assert_eq!(
        t[5].message,
        "65 made 64: the most Strata opens to one server"
    );
    assert_eq!(t[6].message, "5000 made 1000: the most Strata takes");
    assert_eq!(t[7].message, "not translated: twemproxy has no such key");
}

#[test]
fn import_twemproxy_notes_a_timeout_of_0_and_takes_a_failure_limit_of_0_as_1() {
    let t = ok("p:\n  listen: 127.0.0.1:22121\n  redis: true\n  timeout: 0\n  server_failure_limit: 0\n  servers:\n   - 127.0.0.1:6379:1\n");
    assert!(notes(&t)[0].starts_with("4 p.timeout: not translated: 0 is no timeout"));
    assert!(config(&t).contains(&"server_failure_limit = 1"));
    assert!(!t.toml.contains("timeout = \"0ms\""));
}

#[test]
fn import_twemproxy_translates_listen_addresses_or_leaves_the_pool_out() {
    let pool = |listen: &str| {
        ok(&format!(
            "p:\n  listen: {listen}\n  redis: true\n  timeout: 1\n  servers:\n   - 127.0.0.1:6379:1\n"
        ))
    };
    assert!(config(&pool("::1:22121")).contains(&"listen = \"[::1]:22121\""));
    assert!(config(&pool("localhost:22121")).contains(&"listen = \"localhost:22121\""));
    assert!(config(&pool("0.0.0.0:22121")).contains(&"listen = \"0.0.0.0:22121\""));
    for (listen, why) in [
        ("/var/run/nutcracker.sock 0666", "\"/var/run/nutcracker.sock 0666\" is a unix socket; Strata listens on TCP only"),
        ("proxy.internal:22121", "twemproxy resolved the host name \"proxy.internal\" when it started; Strata listens on an IP address (write the address the name stood for)"),
    ] {
        let t = pool(listen);
        assert_eq!((t.sections, t.left_out), (1, 1));
        assert_eq!(
            notes(&t),
            vec![format!("2 p.listen: pool left out (its translation is a comment in the output): {why}")]
        );
        // the whole pool is a comment, ready to be given an address
        assert!(config(&t).is_empty(), "{}", t.toml);
        assert!(t.toml.contains("\n# [[cache]]\n# name = \"p\"\n"), "{}", t.toml);
    }
}

#[test]
fn import_twemproxy_refuses_what_twemproxy_refuses_all_at_once() {
    let source = "\
a:
  hash: fnv9
  hash_tag: \"{\"
  distribution: rendezvous
  timeout: 400ms
  redis: yes
  server_connections: 0
  redis_auth: pw
b:
  listen: 127.0.0.1:99999
  servers:
   - 127.0.0.1:6379
   - 127.0.0.1:6379:0
   - 127.0.0.1:6379:x
   - :6379:1
   - 127.0.0.1:6379:1 dup
   - 127.0.0.2:6379:1 dup
c:
  listen: 127.0.0.1:1
  servers: 127.0.0.1:6379:1
d:
  listen: 127.0.0.1:1
  servers:
e:
  listen: :22121
  timeout:
  servers:
   - 127.0.0.1:6379:1
";
    assert_eq!(
        refused(source),
        vec![
            "1:1 a: `listen` is missing (twemproxy refuses a pool without one)",
            "1:1 a: no `servers` (twemproxy refuses a pool without one)",
            "2:9 a.hash: \"fnv9\" is not a twemproxy hash (one of: one_at_a_time, md5, crc16, crc32, crc32a, fnv1_64, fnv1a_64, fnv1_32, fnv1a_32, hsieh, murmur, jenkins)",
            "3:13 a.hash_tag: \"{\" is not two characters, such as \"{}\"",
            "4:17 a.distribution: \"rendezvous\" is not a twemproxy distribution (one of: ketama, modula, random)",
            "5:12 a.timeout: \"400ms\": not a number (twemproxy takes digits only)",
            "6:10 a.redis: \"yes\" is not `true` or `false`",
            "7:3 a.server_connections: 0: twemproxy refuses it; a pool needs at least one connection per server",
            "8:15 a.redis_auth: twemproxy takes it on a redis pool only (`redis: true`)",
            "10:11 b.listen: \"127.0.0.1:99999\": \"99999\" is not a port (1 to 65535)",
            "12:6 b.servers[0]: \"127.0.0.1:6379\" is not \"host:port:weight [name]\" (or \"/path/to/socket:weight [name]\")",
            "13:6 b.servers[1]: \"127.0.0.1:6379:0\" has a weight of 0",
            "14:6 b.servers[2]: the weight of \"127.0.0.1:6379:x\": not a number (twemproxy takes digits only)",
            "15:6 b.servers[3]: \":6379:1\" has no host",
            "17:6 b.servers[5]: servers[4] has the name \"dup\" too: twemproxy refuses two servers with one name",
            "20:12 c.servers: expected a list of servers, one `- host:port:weight [name]` per line",
            "23:3 d.servers: the list is empty (twemproxy refuses a pool without servers)",
            "25:11 e.listen: \":22121\" has no host",
            "26:3 e.timeout: has no value",
        ]
    );
    assert_eq!(
        refused("a:\n  listen: 127.0.0.1:1\n  servers:\n   - 127.0.0.1:6379:1\nb:\n  listen: 127.0.0.1:1\n  servers:\n   - 127.0.0.1:6379:1\n"),
        vec!["6:11 b.listen: pool `a` listens on \"127.0.0.1:1\" too"]
    );
    assert_eq!(
        refused("# only comments\n"),
        vec!["1:1 : no pools: twemproxy refuses a config without one"]
    );
}

#[test]
fn import_twemproxy_translations_of_twemproxys_own_configs_pass_strata_check() {
    for source in [
        include_str!("../../../tests/fixtures/twemproxy/nutcracker.yml"),
        include_str!("../../../tests/fixtures/twemproxy/nutcracker.leaf.yml"),
        include_str!("../../../tests/fixtures/twemproxy/nutcracker.root.yml"),
    ] {
        passes_strata_check(&ok(source));
    }
}

/// Found by the `import` fuzz target: `localhost` and 127.0.0.1 on one port are one server to
/// Strata, and both were written, a config `strata check` refuses.
#[test]
fn import_twemproxy_takes_localhost_for_127_0_0_1_when_servers_repeat() {
    let t = ok(&format!(
        "{REDIS}  servers:\n    - localhost:6379:1\n    - 127.0.0.1:6379:1\n"
    ));
    let kept = format!("{KEPT}: servers[0] is at 127.0.0.1:6379 too");
    assert!(
        notes(&t).iter().any(|n| n.contains(&kept)),
        "{:?}",
        notes(&t)
    );
}
