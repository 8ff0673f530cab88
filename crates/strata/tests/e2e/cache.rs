//! The cache layer against real redis-servers, and against a real nutcracker (twemproxy) for
//! placement: keys written through nutcracker must be found through Strata, on the same server.

use crate::common;

use std::net::SocketAddr;

use common::redis::{text, Nutcracker, Redis, Resp, RespRecorder};
use common::{eventually, python_ok, Strata};

/// One pool, as both proxies are told it.
struct Scenario {
    name: &'static str,
    hash: &'static str,
    distribution: &'static str,
    hash_tag: Option<&'static str>,
    /// (weight, name) per server
    servers: [(u32, Option<&'static str>); 3],
}

fn key(scenario: &str, i: usize) -> Vec<u8> {
    let mut k = if i.is_multiple_of(5) {
        // keys that share a hash tag with others
        format!("{scenario}:{{user{}}}:field{i}", i % 97).into_bytes()
    } else {
        format!("{scenario}:{i}").into_bytes()
    };
    if i.is_multiple_of(7) {
        // bytes >= 0x80: twemproxy widens them as signed chars
        k.extend_from_slice(&[0xc3, 0xa9, 0xff, 0x80]);
    }
    k
}

fn scenarios() -> Vec<Scenario> {
    let equal = [(1, None), (1, None), (1, None)];
    let mut all = vec![
        Scenario {
            name: "equal",
            hash: "fnv1a_64",
            distribution: "ketama",
            hash_tag: None,
            servers: equal,
        },
        Scenario {
            name: "weights",
            hash: "fnv1a_64",
            distribution: "ketama",
            hash_tag: None,
            servers: [(1, None), (2, None), (5, None)],
        },
        Scenario {
            name: "named",
            hash: "fnv1a_64",
            distribution: "ketama",
            hash_tag: None,
            servers: [(1, Some("alpha")), (1, Some("beta")), (2, Some("gamma"))],
        },
        Scenario {
            name: "tagged",
            hash: "fnv1a_64",
            distribution: "ketama",
            hash_tag: Some("{}"),
            servers: equal,
        },
        Scenario {
            name: "modula",
            hash: "md5",
            distribution: "modula",
            hash_tag: None,
            servers: [(1, None), (3, None), (2, None)],
        },
    ];
    for (name, hash) in [
        ("h-oaat", "one_at_a_time"),
        ("h-md5", "md5"),
        ("h-crc16", "crc16"),
        ("h-crc32", "crc32"),
        ("h-crc32a", "crc32a"),
        ("h-fnv164", "fnv1_64"),
        ("h-fnv132", "fnv1_32"),
        ("h-fnv1a32", "fnv1a_32"),
        ("h-hsieh", "hsieh"),
        ("h-murmur", "murmur"),
        ("h-jenkins", "jenkins"),
    ] {
        all.push(Scenario {
            name,
            hash,
            // twemproxy's crc32 is a 15-bit hash: on ketama's 32-bit ring it crowds onto one
            // server, so it is checked with modula, where it spreads
            distribution: if hash == "crc32" { "modula" } else { "ketama" },
            hash_tag: None,
            servers: equal,
        });
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_key_lives_where_nutcracker_put_it() {
    let redis = [
        Redis::start().await,
        Redis::start().await,
        Redis::start().await,
    ];
    let scenarios = scenarios();
    let ports = common::free_ports(scenarios.len());
    let mut yaml = String::new();
    let mut toml = String::new();
    for (s, port) in scenarios.iter().zip(&ports) {
        let lines: Vec<String> = s
            .servers
            .iter()
            .zip(&redis)
            .map(|((w, n), r)| match n {
                Some(n) => format!("{}:{w} {n}", r.addr),
                None => format!("{}:{w}", r.addr),
            })
            .collect();
        yaml.push_str(&format!(
            "{}:\n  listen: 127.0.0.1:{port}\n  hash: {}\n  distribution: {}\n  redis: true\n  auto_eject_hosts: false\n",
            s.name, s.hash, s.distribution
        ));
        if let Some(tag) = s.hash_tag {
            yaml.push_str(&format!("  hash_tag: \"{tag}\"\n"));
        }
        yaml.push_str("  servers:\n");
        for l in &lines {
            yaml.push_str(&format!("   - {l}\n"));
        }
        toml.push_str(&format!(
            "[[cache]]\nname = \"{}\"\nlisten = \"127.0.0.1:0\"\nhash = \"{}\"\ndistribution = \"{}\"\n",
            s.name, s.hash, s.distribution
        ));
        if let Some(tag) = s.hash_tag {
            toml.push_str(&format!("hash_tag = \"{tag}\"\n"));
        }
        let quoted: Vec<String> = lines.iter().map(|l| format!("\"{l}\"")).collect();
        toml.push_str(&format!("servers = [{}]\n\n", quoted.join(", ")));
    }
    let listens: Vec<SocketAddr> = ports
        .iter()
        .map(|p| format!("127.0.0.1:{p}").parse().unwrap())
        .collect();
    let nutcracker = Nutcracker::start(&yaml, &listens).await;
    let listens = nutcracker.listens.clone();
    let strata = Strata::start(&toml);

    const KEYS: usize = 10_000;
    let mut wrong = Vec::new();
    for (s, twemproxy) in scenarios.iter().zip(&listens) {
        let keys: Vec<Vec<u8>> = (0..KEYS).map(|i| key(s.name, i)).collect();
        // write every key through nutcracker, its value its own name
        let mut via = Resp::connect(*twemproxy).await.unwrap();
        for chunk in keys.chunks(500) {
            let sets: Vec<Vec<Vec<u8>>> = chunk
                .iter()
                .map(|k| vec![b"SET".to_vec(), k.clone(), k.clone()])
                .collect();
            for r in via.pipeline(&sets).await {
                assert_eq!(&r[..], b"+OK\r\n", "{}: nutcracker SET", s.name);
            }
        }
        // the keys spread over the servers (else the scenario tests little)
        let mut held = [0usize; 3];
        for (i, r) in redis.iter().enumerate() {
            held[i] = r
                .keys()
                .await
                .iter()
                .filter(|k| k.starts_with(format!("{}:", s.name).as_bytes()))
                .count();
        }
        assert_eq!(held.iter().sum::<usize>(), KEYS, "{}: {held:?}", s.name);
        assert!(held.iter().all(|n| *n > 100), "{}: {held:?}", s.name);
        // every key read through Strata comes from the server nutcracker wrote it to
        let mut client = Resp::connect(strata.addr(&format!("cache:{}", s.name)))
            .await
            .unwrap();
        let mut missing = 0;
        for chunk in keys.chunks(500) {
            let gets: Vec<Vec<Vec<u8>>> = chunk
                .iter()
                .map(|k| vec![b"GET".to_vec(), k.clone()])
                .collect();
            for (k, r) in chunk.iter().zip(client.pipeline(&gets).await) {
                let mut want = format!("${}\r\n", k.len()).into_bytes();
                want.extend_from_slice(k);
                want.extend_from_slice(b"\r\n");
                if r[..] != want[..] {
                    missing += 1;
                }
            }
        }
        if missing > 0 {
            wrong.push(format!("{}: {missing} of {KEYS} keys placed elsewhere than nutcracker placed them (it placed {held:?})", s.name));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    drop(nutcracker);
}

fn pool(servers: &[SocketAddr], extra: &str) -> String {
    let servers: Vec<String> = servers.iter().map(|a| format!("\"{a}:1\"")).collect();
    format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\n\n[[cache]]\nname = \"c\"\nlisten = \"127.0.0.1:0\"\nservers = [{}]\n{extra}\n",
        servers.join(", ")
    )
}

fn cmd(args: &[&str]) -> Vec<Vec<u8>> {
    args.iter().map(|a| a.as_bytes().to_vec()).collect()
}

/// The same pipeline against one redis-server directly and through Strata over two: every
/// reply byte for byte the same, in order, however the keys are spread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipeline_through_two_shards_answers_as_one_redis_does() {
    let direct = Redis::start().await;
    let shards = [Redis::start().await, Redis::start().await];
    // murmur spreads short similar keys; twemproxy's fnv1a_64 can put all of them on one
    let strata = Strata::start(&pool(
        &[shards[0].addr, shards[1].addr],
        "hash = \"murmur\"",
    ));
    let keys: Vec<String> = (0..40).map(|i| format!("k{i}")).collect();
    let mut pipeline = vec![cmd(&["PING"]), cmd(&["ECHO", "hi"]), cmd(&["SELECT", "0"])];
    for k in &keys {
        pipeline.push(cmd(&["SET", k, k]));
        pipeline.push(cmd(&["INCR", &format!("n:{k}")]));
        pipeline.push(cmd(&["LPUSH", &format!("l:{k}"), "a", "b"]));
    }
    let mut mget = vec!["MGET"];
    mget.extend(keys.iter().map(String::as_str));
    mget.push("missing");
    pipeline.push(cmd(&mget));
    pipeline.push(cmd(&["MSET", "x1", "1", "x2", "2", "x3", "3", "x4", "4"]));
    pipeline.push(cmd(&["MGET", "x4", "x3", "x2", "x1", "x4"]));
    pipeline.push(cmd(&["EXISTS", "x1", "x1", "x2", "nope", "k1"]));
    pipeline.push(cmd(&["TOUCH", "x1", "x2", "nope"]));
    pipeline.push(cmd(&["DEL", "x1", "x2", "nope", "k1", "k2", "k3"]));
    pipeline.push(cmd(&["UNLINK", "k4", "k5", "k6"]));
    pipeline.push(cmd(&["MGET", "k1", "k4", "k7"]));
    pipeline.push(cmd(&["LRANGE", "l:k9", "0", "-1"]));
    pipeline.push(cmd(&["GET", "l:k9"]));
    pipeline.push(cmd(&["HSET", "h", "f", "v"]));
    pipeline.push(cmd(&["HGETALL", "h"]));
    pipeline.push(cmd(&["GET"]));
    pipeline.push(cmd(&["DBSIZE"]));
    pipeline.push(cmd(&["EXPIRE", "k9", "100"]));
    pipeline.push(cmd(&["TTL", "k9"]));
    let mut direct_client = direct.client().await;
    let want = direct_client.pipeline(&pipeline).await;
    let mut client = Resp::connect(strata.addr("cache:c")).await.unwrap();
    let got = client.pipeline(&pipeline).await;
    for ((c, w), g) in pipeline.iter().zip(&want).zip(&got) {
        let name = text(&c.join(&b' '));
        assert_eq!(text(g), text(w), "{name}");
    }
    // and the keys really are spread over both shards
    for s in &shards {
        assert!(!s.keys().await.is_empty());
    }
}

/// What reaches a server is whole multibulk commands, never a client's raw bytes: inline
/// commands are re-encoded, a command's bytes never split across another's, and nothing of a
/// malformed command reaches a server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_receive_whole_commands_and_nothing_malformed() {
    let server = RespRecorder::start().await;
    let strata = Strata::start(&pool(&[server.addr], ""));
    let addr = strata.addr("cache:c");

    // inline commands arrive as multibulks
    let mut a = Resp::connect(addr).await.unwrap();
    a.send_raw(b"SET  inline   value\r\nGET inline\n").await;
    assert_eq!(text(&a.reply().await.unwrap()), "+OK\r\n");
    assert_eq!(text(&a.reply().await.unwrap()), "$6\r\ninline\r\n");

    // a key that carries a command in it stays one argument
    let sneaky = "k\r\n*1\r\n$8\r\nFLUSHALL\r\n";
    let r = a.cmd(&[b"GET", sneaky.as_bytes()]).await;
    assert_eq!(r.len(), sneaky.len() + 7);

    // a good command, then a broken one: the first is served, the client gets the protocol
    // error and is closed, and nothing of the broken one reaches the server
    let mut b = Resp::connect(addr).await.unwrap();
    b.send_raw(
        b"*2\r\n$3\r\nGET\r\n$4\r\ngood\r\n*2\r\n$3\r\nGET\r\n$3\r\nbadXX*1\r\n$4\r\nPING\r\n",
    )
    .await;
    assert_eq!(text(&b.reply().await.unwrap()), "$4\r\ngood\r\n");
    let err = text(&b.reply().await.unwrap());
    assert!(err.starts_with("-ERR Protocol error"), "{err}");
    assert!(
        b.reply().await.is_err(),
        "the client is closed after a protocol error"
    );

    // many clients pipelining big values at once over the one shared server connection
    let mut tasks = Vec::new();
    for c in 0..8 {
        tasks.push(tokio::spawn(async move {
            let mut client = Resp::connect(addr).await.unwrap();
            let value = vec![b'a' + c as u8; 100_000];
            let commands: Vec<Vec<Vec<u8>>> = (0..20)
                .map(|i| {
                    vec![
                        b"SET".to_vec(),
                        format!("c{c}:{i}").into_bytes(),
                        value.clone(),
                    ]
                })
                .collect();
            for r in client.pipeline(&commands).await {
                assert_eq!(&r[..], b"+OK\r\n");
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    // the client still open is served as before
    assert_eq!(text(&a.cmd(&[b"GET", b"after"]).await), "$5\r\nafter\r\n");

    let commands = server.commands();
    let names: Vec<String> = commands.iter().map(|c| text(&c[0])).collect();
    assert_eq!(&names[..3], ["SET", "GET", "GET"]);
    assert_eq!(commands[0], cmd(&["SET", "inline", "value"]));
    assert_eq!(commands[2][1], sneaky.as_bytes());
    assert_eq!(commands[3], cmd(&["GET", "good"]));
    assert!(
        !commands
            .iter()
            .any(|c| c.iter().any(|a| a == b"bad" || a == b"FLUSHALL")),
        "a malformed command reached the server"
    );
    let big: Vec<_> = commands
        .iter()
        .filter(|c| c[0] == b"SET" && c.len() == 3 && c[2].len() == 100_000)
        .collect();
    assert_eq!(big.len(), 160);
    for c in big {
        let client = c[1][1] - b'0';
        assert!(
            c[2].iter().all(|&b| b == b'a' + client),
            "a value was mixed with another"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_connect_with_their_default_handshakes() {
    let redis = Redis::start().await;
    let strata = Strata::start(&pool(&[redis.addr], "password = \"s3cret\""));
    let mut c = Resp::connect(strata.addr("cache:c")).await.unwrap();
    assert!(text(&c.cmd(&[b"GET", b"k"]).await).starts_with("-NOAUTH"));
    assert!(text(&c.cmd(&[b"AUTH", b"wrong"]).await).starts_with("-WRONGPASS"));
    assert_eq!(
        text(&c.cmd(&[b"HELLO", b"4"]).await),
        "-NOPROTO sorry, this protocol version is not supported.\r\n"
    );
    assert!(text(&c.cmd(&[b"HELLO", b"3"]).await).starts_with("-NOAUTH HELLO must be called"));
    assert_eq!(
        text(&c.cmd(&[b"AUTH", b"default", b"s3cret"]).await),
        "+OK\r\n"
    );
    // redis-py 5+ on connect
    assert_eq!(
        text(
            &c.cmd(&[b"CLIENT", b"SETINFO", b"LIB-NAME", b"redis-py"])
                .await
        ),
        "+OK\r\n"
    );
    assert_eq!(
        text(&c.cmd(&[b"CLIENT", b"SETINFO", b"LIB-VER", b"5.0.0"]).await),
        "+OK\r\n"
    );
    assert_eq!(
        text(&c.cmd(&[b"CLIENT", b"SETNAME", b"app"]).await),
        "+OK\r\n"
    );
    assert_eq!(
        text(&c.cmd(&[b"CLIENT", b"GETNAME"]).await),
        "$3\r\napp\r\n"
    );
    assert_eq!(text(&c.cmd(&[b"SELECT", b"0"]).await), "+OK\r\n");
    assert!(text(&c.cmd(&[b"SELECT", b"1"]).await).starts_with("-ERR"));
    let hello = text(&c.cmd(&[b"HELLO", b"2"]).await);
    assert!(hello.contains("proto\r\n:2"), "{hello}");
    assert!(text(&c.cmd(&[b"INFO"]).await).contains("redis_version:"));
    assert!(text(&c.cmd(&[b"COMMAND", b"COUNT"]).await).starts_with(':'));
    let unsupported = text(&c.cmd(&[b"FLUSHALL"]).await);
    assert!(
        unsupported.starts_with("-ERR strata: 'flushall' is not supported"),
        "{unsupported}"
    );
    let unknown = text(&c.cmd(&[b"NOSUCH", b"a"]).await);
    assert!(
        unknown.starts_with("-ERR unknown command 'NOSUCH'"),
        "{unknown}"
    );
    assert_eq!(text(&c.cmd(&[b"SET", b"k", b"v"]).await), "+OK\r\n");
    assert_eq!(text(&c.cmd(&[b"QUIT"]).await), "+OK\r\n");
    assert!(c.reply().await.is_err(), "closed after QUIT");
    // a fresh connection authenticates with HELLO 2 AUTH
    let mut d = Resp::connect(strata.addr("cache:c")).await.unwrap();
    let hello = text(
        &d.cmd(&[b"HELLO", b"2", b"AUTH", b"default", b"s3cret"])
            .await,
    );
    assert!(hello.starts_with("*16\r\n"), "{hello}");
    assert_eq!(text(&d.cmd(&[b"GET", b"k"]).await), "$1\r\nv\r\n");
}

/// The proxy's command table against a real redis-server's own: arity and key positions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_table_matches_redis() {
    let redis = Redis::start().await;
    let mut c = redis.client().await;
    let mut wrong = Vec::new();
    for spec in strata_cache::COMMANDS {
        let reply = c.cmd(&[b"COMMAND", b"INFO", spec.name.as_bytes()]).await;
        let mut v = strata_cache::resp::Values::new(&reply);
        use strata_cache::resp::Value;
        assert_eq!(v.next(), Some(Value::Array(Some(1))));
        if v.next() == Some(Value::Array(None)) {
            wrong.push(format!("{}: this redis-server does not know it", spec.name));
            continue;
        }
        let _name = v.next();
        let Some(Value::Int(arity)) = v.next() else {
            panic!("{reply:?}")
        };
        let Some(Value::Array(Some(flags))) = v.next() else {
            panic!("{reply:?}")
        };
        let mut readonly = false;
        for _ in 0..flags {
            readonly |= v.next() == Some(Value::Simple(b"readonly"));
        }
        if readonly != spec.readonly() {
            wrong.push(format!(
                "{}: readonly {} here, {readonly} in redis",
                spec.name,
                spec.readonly()
            ));
        }
        let (Some(Value::Int(first)), Some(Value::Int(last)), Some(Value::Int(step))) =
            (v.next(), v.next(), v.next())
        else {
            panic!("{reply:?}")
        };
        // the proxy may be more lenient than this redis (newer versions take more arguments,
        // as ZRANK's WITHSCORE in 7.2), never stricter
        let accepts = |n: i64| spec.arity_ok(n as usize);
        let stricter = if arity >= 0 {
            !accepts(arity)
        } else {
            !accepts(-arity)
        };
        if stricter {
            wrong.push(format!(
                "{}: arity {} here, {arity} in redis",
                spec.name, spec.arity
            ));
        }
        // a container command (OBJECT, XINFO, ...) has its keys in its subcommands' specs
        let container = (first, last, step) == (0, 0, 0);
        if let (
            strata_cache::Route::Keys {
                first: f,
                last: l,
                step: s,
            },
            false,
        ) = (spec.route, container)
        {
            if (f as i64, l as i64, s as i64) != (first, last, step) {
                wrong.push(format!(
                    "{}: keys ({f}, {l}, {s}) here, ({first}, {last}, {step}) in redis",
                    spec.name
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// A key of `redis`'s, found by writing keys through the proxy until one lands there.
async fn key_on(client: &mut Resp, redis: &Redis, prefix: &str) -> String {
    for i in 0..1000 {
        let k = format!("{prefix}{i}");
        assert_eq!(
            text(&client.cmd(&[b"SET", k.as_bytes(), b"v"]).await),
            "+OK\r\n"
        );
        if redis.keys().await.iter().any(|x| x == k.as_bytes()) {
            return k;
        }
    }
    panic!("no key landed on {}", redis.addr);
}

/// Waits until /status shows the server at `addr` in `state`.
async fn wait_state(strata: &Strata, addr: SocketAddr, state: &str) {
    common::eventually(
        std::time::Duration::from_secs(10),
        &format!("{addr} is {state}"),
        || async move { server_state(strata, addr).await == state },
    )
    .await;
}

async fn server_state(strata: &Strata, addr: SocketAddr) -> String {
    let status = common::admin_get(strata, "/status").await;
    let v: serde_json::Value = serde_json::from_str(&status.body).expect("status JSON");
    v["cache"][0]["servers"]
        .as_array()
        .expect("servers")
        .iter()
        .find(|s| s["address"] == addr.to_string())
        .map(|s| s["state"].as_str().unwrap_or("").to_string())
        .expect("the server in /status")
}

/// `strong` (the default, twemproxy's without auto_eject_hosts): a dead server's keys fail
/// fast with an error, the others carry on, and it serves again once back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_server_fails_only_its_keys_until_it_is_back() {
    let keep = Redis::start().await;
    let mut dead = Redis::start().await;
    let port = dead.addr.port();
    let strata = Strata::start(&pool(
        &[keep.addr, dead.addr],
        "server_failure_limit = 2\nserver_retry_timeout = \"300ms\"\ntimeout = \"500ms\"",
    ));
    let mut c = Resp::connect(strata.addr("cache:c")).await.unwrap();
    let lost = key_on(&mut c, &dead, "a").await;
    let kept = key_on(&mut c, &keep, "b").await;
    dead.kill();
    for _ in 0..3 {
        let r = text(&c.cmd(&[b"GET", lost.as_bytes()]).await);
        // the kind of failure, as an HTTP error page names it: never the server's address
        // or the operating system's words, which go to the log
        // (or, once two failures ejected it, that it is out)
        assert!(
            r == "-ERR strata: the backend closed the connection\r\n"
                || r == "-ERR strata: could not connect to a backend\r\n"
                || r.contains("the server that owns this key is out"),
            "{r}"
        );
        assert!(!r.contains(&port.to_string()), "{r}");
        assert_eq!(
            text(&c.cmd(&[b"GET", kept.as_bytes()]).await),
            "$1\r\nv\r\n"
        );
    }
    assert_eq!(server_state(&strata, dead.addr).await, "ejected");
    let logs = strata.logs();
    assert!(
        logs.contains(&format!("connect to {}: ", dead.addr)),
        "the log names the server and why: {logs}"
    );
    let status = common::admin_get(&strata, "/status").await;
    let v: serde_json::Value = serde_json::from_str(&status.body).unwrap();
    let until = v["cache"][0]["servers"][1]["ejected_for_ms"].as_u64();
    assert!(until.is_some_and(|ms| ms <= 300), "{v}");
    let r = text(&c.cmd(&[b"GET", lost.as_bytes()]).await);
    assert!(r.contains("the server that owns this key is out"), "{r}");
    // the MGET spanning both fails whole rather than answering half
    let r = text(&c.cmd(&[b"MGET", kept.as_bytes(), lost.as_bytes()]).await);
    assert!(r.starts_with("-ERR strata: "), "{r}");
    let _back = Redis::start_at(port, &[]).await;
    common::eventually(
        std::time::Duration::from_secs(10),
        "the server serves again",
        || {
            let addr = strata.addr("cache:c");
            let lost = lost.clone();
            async move {
                let mut c = Resp::connect(addr).await.unwrap();
                // the restarted server is empty: a nil, not an error, says it is reached
                c.cmd(&[b"GET", lost.as_bytes()]).await[..] == b"$-1\r\n"[..]
            }
        },
    )
    .await;
    assert_eq!(server_state(&strata, dead.addr).await, "up");
}

/// `weak` (twemproxy's auto_eject_hosts): once ejected, a dead server's keys go to the next
/// server on the ring.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_weak_pool_moves_the_keys_of_an_ejected_server() {
    let keep = Redis::start().await;
    let mut dead = Redis::start().await;
    let strata = Strata::start(&pool(
        &[keep.addr, dead.addr],
        "consistency = \"weak\"\nserver_failure_limit = 1\nserver_retry_timeout = \"30s\"",
    ));
    let mut c = Resp::connect(strata.addr("cache:c")).await.unwrap();
    let moved = key_on(&mut c, &dead, "a").await;
    dead.kill();
    let r = text(&c.cmd(&[b"GET", moved.as_bytes()]).await);
    assert!(
        r.starts_with("-ERR strata: "),
        "the first failure is the client's: {r}"
    );
    wait_state(&strata, dead.addr, "ejected").await;
    assert_eq!(
        text(&c.cmd(&[b"SET", moved.as_bytes(), b"w"]).await),
        "+OK\r\n"
    );
    assert_eq!(
        text(&c.cmd(&[b"GET", moved.as_bytes()]).await),
        "$1\r\nw\r\n"
    );
    assert!(keep.keys().await.iter().any(|k| k == moved.as_bytes()));
    // what the pool remembers for the dead server is bounded in bytes too (64 MiB): keys of
    // a megabyte past it are counted as maybe stale instead
    let mut big = vec![b'k'; 1 << 20];
    for i in 0..160u32 {
        big[..4].copy_from_slice(&i.to_be_bytes());
        assert_eq!(text(&c.cmd(&[b"SET", &big, b"v"]).await), "+OK\r\n");
    }
    let metrics = common::admin_get(&strata, "/metrics").await.body;
    let stale = common::metric(
        &metrics,
        "strata_cache_maybe_stale_keys_total",
        "pool=\"c\"",
    );
    assert!(stale.is_some_and(|n| n > 0.0), "{stale:?}");
}

/// SIGHUP swaps the ring whole: a client connected before keeps its connection and is served
/// on the new ring; /status and /metrics show every server with its share of the ring.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_changes_the_ring_without_dropping_clients() {
    let a = Redis::start().await;
    let b = Redis::start().await;
    let mut strata = Strata::start(&pool(&[a.addr], "hash = \"murmur\""));
    let mut c = Resp::connect(strata.addr("cache:c")).await.unwrap();
    for i in 0..50 {
        let k = format!("k{i}");
        assert_eq!(text(&c.cmd(&[b"SET", k.as_bytes(), b"1"]).await), "+OK\r\n");
    }
    assert_eq!(a.keys().await.len(), 50);
    let config = pool(&[a.addr, b.addr], "hash = \"murmur\"");
    std::fs::write(&strata.config, config).unwrap();
    strata.signal(libc::SIGHUP);
    strata
        .wait_log("SIGHUP: reloaded", std::time::Duration::from_secs(10))
        .await;
    for i in 50..100 {
        let k = format!("k{i}");
        assert_eq!(text(&c.cmd(&[b"SET", k.as_bytes(), b"1"]).await), "+OK\r\n");
    }
    let on_b = b.keys().await.len();
    assert!(
        (10..=45).contains(&on_b),
        "about half the new keys go to the new server: {on_b}"
    );
    let status = common::admin_get(&strata, "/status").await;
    let v: serde_json::Value = serde_json::from_str(&status.body).unwrap();
    let servers = v["cache"][0]["servers"].as_array().unwrap();
    assert_eq!(servers.len(), 2);
    let shares: f64 = servers
        .iter()
        .map(|s| s["ring_share"].as_f64().unwrap())
        .sum();
    assert!((shares - 1.0).abs() < 1e-9, "{shares}");
    let metrics = common::admin_get(&strata, "/metrics").await.body;
    let commands = common::metric(&metrics, "strata_cache_commands_total", "pool=\"c\"").unwrap();
    assert!(commands >= 100.0, "{commands}");
    assert!(common::metric(
        &metrics,
        "strata_cache_ring_share",
        &format!("backend=\"{}\"", b.addr)
    )
    .is_some());
    strata.signal(libc::SIGTERM);
    assert!(strata
        .wait_exit(std::time::Duration::from_secs(10))
        .success());
}

/// SCAN walks every server in turn behind one cursor: each key once, then cursor 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scan_visits_every_key_of_every_server() {
    let shards = [
        Redis::start().await,
        Redis::start().await,
        Redis::start().await,
    ];
    let strata = Strata::start(&pool(
        &[shards[0].addr, shards[1].addr, shards[2].addr],
        "hash = \"murmur\"",
    ));
    let mut c = Resp::connect(strata.addr("cache:c")).await.unwrap();
    let sets: Vec<Vec<Vec<u8>>> = (0..1000)
        .map(|i| cmd(&["SET", &format!("key:{i}"), "v"]))
        .chain((0..50).map(|i| cmd(&["SET", &format!("other:{i}"), "v"])))
        .collect();
    c.pipeline(&sets).await;
    let mut seen = std::collections::BTreeSet::new();
    let mut cursor = b"0".to_vec();
    let mut calls = 0;
    loop {
        let reply = c
            .cmd(&[b"SCAN", &cursor, b"MATCH", b"key:*", b"COUNT", b"100"])
            .await;
        let mut v = strata_cache::resp::Values::new(&reply);
        use strata_cache::resp::Value;
        assert_eq!(v.next(), Some(Value::Array(Some(2))), "{}", text(&reply));
        let Some(Value::Bulk(Some(next))) = v.next() else {
            panic!("{}", text(&reply))
        };
        let next = next.to_vec();
        let Some(Value::Array(Some(n))) = v.next() else {
            panic!("{}", text(&reply))
        };
        for _ in 0..n {
            let Some(Value::Bulk(Some(k))) = v.next() else {
                panic!()
            };
            seen.insert(k.to_vec());
        }
        calls += 1;
        assert!(calls < 1000, "SCAN does not end");
        if next == b"0" {
            break;
        }
        cursor = next;
    }
    assert_eq!(seen.len(), 1000);
    assert!(seen.iter().all(|k| k.starts_with(b"key:")));
    assert!(text(&c.cmd(&[b"SCAN", b"x"]).await).starts_with("-ERR invalid cursor"));
}

/// MULTI/EXEC and WATCH on keys that share a server (a hash tag), run on the client's own
/// connection; keys on two servers abort the transaction as Redis aborts one with an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_run_whole_on_the_server_of_their_keys() {
    let shards = [Redis::start().await, Redis::start().await];
    let strata = Strata::start(&pool(
        &[shards[0].addr, shards[1].addr],
        "hash = \"murmur\"\nhash_tag = \"{}\"",
    ));
    let addr = strata.addr("cache:c");
    let mut c = Resp::connect(addr).await.unwrap();
    let tx = [
        cmd(&["MULTI"]),
        cmd(&["SET", "{u1}:a", "1"]),
        cmd(&["INCR", "{u1}:n"]),
        cmd(&["PING"]),
        cmd(&["EXEC"]),
    ];
    let replies: Vec<String> = c.pipeline_text(&tx).await;
    assert_eq!(
        replies,
        [
            "+OK\r\n",
            "+QUEUED\r\n",
            "+QUEUED\r\n",
            "+QUEUED\r\n",
            "*3\r\n+OK\r\n:1\r\n+PONG\r\n"
        ]
    );
    assert_eq!(text(&c.cmd(&[b"GET", b"{u1}:a"]).await), "$1\r\n1\r\n");

    // keys on two servers: refused, and EXEC aborts
    let (mut a, mut b) = (None, None);
    for i in 0..100 {
        let k = format!("k{i}");
        c.cmd(&[b"SET", k.as_bytes(), b"x"]).await;
        if shards[0].keys().await.contains(&k.as_bytes().to_vec()) {
            a.get_or_insert(k)
        } else {
            b.get_or_insert(k)
        };
        if a.is_some() && b.is_some() {
            break;
        }
    }
    let (a, b) = (a.unwrap(), b.unwrap());
    let tx = [
        cmd(&["MULTI"]),
        cmd(&["SET", &a, "1"]),
        cmd(&["SET", &b, "1"]),
        cmd(&["EXEC"]),
    ];
    let replies: Vec<String> = c.pipeline_text(&tx).await;
    assert!(replies[2].starts_with("-CROSSSLOT"), "{replies:?}");
    assert!(replies[3].starts_with("-EXECABORT"), "{replies:?}");

    // WATCH: a change by another client aborts the EXEC; an untouched key lets it run
    assert_eq!(text(&c.cmd(&[b"WATCH", b"{u2}:w"]).await), "+OK\r\n");
    let mut other = Resp::connect(addr).await.unwrap();
    assert_eq!(
        text(&other.cmd(&[b"SET", b"{u2}:w", b"changed"]).await),
        "+OK\r\n"
    );
    let tx = [
        cmd(&["MULTI"]),
        cmd(&["SET", "{u2}:w", "mine"]),
        cmd(&["EXEC"]),
    ];
    let replies: Vec<String> = c.pipeline_text(&tx).await;
    assert_eq!(replies[2], "*-1\r\n");
    assert_eq!(
        text(&c.cmd(&[b"GET", b"{u2}:w"]).await),
        "$7\r\nchanged\r\n"
    );
    assert_eq!(text(&c.cmd(&[b"WATCH", b"{u2}:w"]).await), "+OK\r\n");
    let replies: Vec<String> = c.pipeline_text(&tx).await;
    assert_eq!(replies[2], "*1\r\n+OK\r\n");
    // an EXEC aborted by a refused command drops the WATCH too, as in Redis: a later
    // transaction runs though the watched key changed meanwhile
    assert_eq!(text(&c.cmd(&[b"WATCH", b"{u4}:w"]).await), "+OK\r\n");
    let tx = [cmd(&["MULTI"]), cmd(&["NOSUCH"]), cmd(&["EXEC"])];
    let replies: Vec<String> = c.pipeline_text(&tx).await;
    assert!(replies[2].starts_with("-EXECABORT"), "{replies:?}");
    other.cmd(&[b"SET", b"{u4}:w", b"changed"]).await;
    let tx = [
        cmd(&["MULTI"]),
        cmd(&["SET", "{u4}:w", "mine"]),
        cmd(&["EXEC"]),
    ];
    let replies: Vec<String> = c.pipeline_text(&tx).await;
    assert_eq!(
        replies[2], "*1\r\n+OK\r\n",
        "the watch outlived the aborted EXEC"
    );
    // DISCARD, and the errors Redis gives
    let replies: Vec<String> = c
        .pipeline_text(&[
            cmd(&["MULTI"]),
            cmd(&["SET", "{u3}:d", "1"]),
            cmd(&["DISCARD"]),
            cmd(&["EXEC"]),
            cmd(&["GET", "{u3}:d"]),
        ])
        .await;
    assert_eq!(
        &replies[2..],
        ["+OK\r\n", "-ERR EXEC without MULTI\r\n", "$-1\r\n"]
    );
}

/// A pipeline whose answers are large goes out as the answers come (in parts of 64 KiB and
/// more), in order and whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipeline_of_large_answers_comes_back_whole_and_in_order() {
    let shards = [Redis::start().await, Redis::start().await];
    let strata = Strata::start(&pool(&[shards[0].addr, shards[1].addr], ""));
    let mut c = Resp::connect(strata.addr("cache:c")).await.unwrap();
    let big: Vec<String> = (0..3).map(|i| i.to_string().repeat(100_000)).collect();
    for (i, v) in big.iter().enumerate() {
        let key = format!("big{i}");
        let set = c.cmd(&[b"SET", key.as_bytes(), v.as_bytes()]).await;
        assert_eq!(text(&set), "+OK\r\n");
    }
    let mut pipeline = Vec::new();
    for i in 0..30 {
        pipeline.push(cmd(&["GET", &format!("big{}", i % 3)]));
        pipeline.push(cmd(&["PING"]));
    }
    let replies = c.pipeline(&pipeline).await;
    for (i, r) in replies.iter().enumerate() {
        if i % 2 == 1 {
            assert_eq!(text(r), "+PONG\r\n", "reply {i}");
        } else {
            let v = &big[(i / 2) % 3];
            assert_eq!(
                r.as_ref(),
                format!("${}\r\n{v}\r\n", v.len()).as_bytes(),
                "reply {i}"
            );
        }
    }
}

/// The proxy holds a transaction's commands until EXEC: `max_bulk_size` bounds them, so one
/// client can't make it hold without end. The command past the bound is refused, EXEC aborts
/// (as after any refused command), nothing of it ran, and the connection carries on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_past_max_bulk_size_is_refused_and_aborts() {
    let redis = Redis::start().await;
    let strata = Strata::start(&pool(&[redis.addr], "max_bulk_size = \"1KiB\""));
    let mut c = Resp::connect(strata.addr("cache:c")).await.unwrap();
    let value = "v".repeat(600);
    let replies: Vec<String> = c
        .pipeline_text(&[
            cmd(&["MULTI"]),
            cmd(&["SET", "{t}:a", &value]),
            cmd(&["SET", "{t}:b", &value]),
            cmd(&["SET", "{t}:c", "x"]),
            cmd(&["EXEC"]),
            cmd(&["MGET", "{t}:a", "{t}:c"]),
        ])
        .await;
    assert_eq!(&replies[..2], ["+OK\r\n", "+QUEUED\r\n"]);
    assert!(
        replies[2].starts_with(
            "-ERR strata: the transaction's queued commands are over max_bulk_size (1024 bytes)"
        ),
        "{replies:?}"
    );
    assert_eq!(replies[3], "+QUEUED\r\n");
    assert!(replies[4].starts_with("-EXECABORT"), "{replies:?}");
    assert_eq!(replies[5], "*2\r\n$-1\r\n$-1\r\n");
    // a transaction within the bound runs
    let replies: Vec<String> = c
        .pipeline_text(&[
            cmd(&["MULTI"]),
            cmd(&["SET", "{t}:a", &value]),
            cmd(&["EXEC"]),
        ])
        .await;
    assert_eq!(replies[2], "*1\r\n+OK\r\n");
}

/// A blocking command waits on the client's own connection: other clients, and the shared
/// connections, carry on meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_commands_wait_without_holding_up_other_clients() {
    let redis = Redis::start().await;
    let strata = Strata::start(&pool(&[redis.addr], ""));
    let addr = strata.addr("cache:c");
    let waiter = tokio::spawn(async move {
        let mut c = Resp::connect(addr).await.unwrap();
        let r = c.cmd(&[b"BLPOP", b"queue", b"10"]).await;
        // and the connection goes on serving afterwards
        let after = c.cmd(&[b"GET", b"other"]).await;
        (text(&r), text(&after))
    });
    let mut c = Resp::connect(addr).await.unwrap();
    // the waiter is blocked inside Redis before anything is pushed
    common::eventually(
        std::time::Duration::from_secs(10),
        "BLPOP is waiting",
        || {
            let redis = redis.addr;
            async move {
                let mut r = Resp::connect(redis).await.unwrap();
                text(&r.cmd(&[b"INFO", b"clients"]).await).contains("blocked_clients:1")
            }
        },
    )
    .await;
    for i in 0..50 {
        let k = format!("other{i}");
        assert_eq!(text(&c.cmd(&[b"SET", k.as_bytes(), b"v"]).await), "+OK\r\n");
    }
    assert_eq!(text(&c.cmd(&[b"SET", b"other", b"v"]).await), "+OK\r\n");
    assert_eq!(text(&c.cmd(&[b"RPUSH", b"queue", b"job"]).await), ":1\r\n");
    let (popped, after) = waiter.await.unwrap();
    assert_eq!(popped, "*2\r\n$5\r\nqueue\r\n$3\r\njob\r\n");
    assert_eq!(after, "$1\r\nv\r\n");
}

/// `idle_timeout` closes a client that sends half a command and stops, as one that sends
/// nothing; a client in the middle of sending is not idle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_timeout_closes_a_client_stalled_inside_a_command() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let redis = Redis::start().await;
    let strata = Strata::start(&pool(&[redis.addr], "idle_timeout = \"500ms\""));
    let addr = strata.addr("cache:c");
    let mut stalled = tokio::net::TcpStream::connect(addr).await.unwrap();
    stalled.write_all(b"*1\r\n$4\r\nPI").await.unwrap();
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        stalled.read_to_end(&mut rest),
    )
    .await;
    assert!(
        closed.is_ok(),
        "a client stalled inside a command stayed open"
    );
    // one that goes on sending slowly, each piece within the timeout, is served
    let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
    for piece in [&b"*1\r\n"[..], b"$4\r\n", b"PI", b"NG\r\n"] {
        slow.write_all(piece).await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let mut pong = [0u8; 7];
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        slow.read_exact(&mut pong),
    )
    .await
    .expect("answered")
    .unwrap();
    assert_eq!(&pong, b"+PONG\r\n");
}

/// A client that sends a pipeline and reads none of its answers is closed once it has taken
/// nothing for `idle_timeout`, as Redis's `timeout` closes it: the proxy does not keep its
/// answers (and its pool's generation) for good. One that reads them, slowly, gets them all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_reads_none_of_its_answers_is_closed_after_idle_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let redis = Redis::start().await;
    let strata = Strata::start(&pool(&[redis.addr], "idle_timeout = \"1s\""));
    let addr = strata.addr("cache:c");
    let mut c = Resp::connect(addr).await.unwrap();
    let value = "v".repeat(1 << 20);
    assert_eq!(
        text(&c.cmd(&[b"SET", b"big", value.as_bytes()]).await),
        "+OK\r\n"
    );
    // 32 answers of 1 MiB: far more than the sockets' buffers hold
    let answer = format!("${}\r\n{value}\r\n", value.len());
    let pipeline = b"*2\r\n$3\r\nGET\r\n$3\r\nbig\r\n".repeat(32);
    let mut deaf = tokio::net::TcpStream::connect(addr).await.unwrap();
    deaf.write_all(&pipeline).await.unwrap();
    strata
        .wait_log(
            "a client took none of its answers for 1s",
            std::time::Duration::from_secs(20),
        )
        .await;
    let mut got = Vec::new();
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        deaf.read_to_end(&mut got),
    )
    .await;
    assert!(
        matches!(read, Ok(Ok(_)) | Ok(Err(_))),
        "the connection stayed open"
    );
    assert!(
        got.len() < answer.len() * 32,
        "the client got all {} bytes",
        got.len()
    );
    // a client that reads its answers as they come gets every one of them
    let mut reader = tokio::net::TcpStream::connect(addr).await.unwrap();
    reader.write_all(&pipeline).await.unwrap();
    let mut all = vec![0u8; answer.len() * 32];
    tokio::time::timeout(
        std::time::Duration::from_secs(20),
        reader.read_exact(&mut all),
    )
    .await
    .expect("every answer")
    .unwrap();
    assert_eq!(&all[..answer.len()], answer.as_bytes());
}

/// A client that hangs up during a blocking command frees the wait at once: its own server
/// connection closes (Redis sees no blocked client), and its place under max_connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_leaves_during_a_blocking_command_frees_it() {
    let redis = Redis::start().await;
    let strata = Strata::start(&pool(&[redis.addr], "max_connections = 1"));
    let addr = strata.addr("cache:c");
    let blocked = |n: usize| {
        let redis = redis.addr;
        async move {
            let mut r = Resp::connect(redis).await.unwrap();
            text(&r.cmd(&[b"INFO", b"clients"]).await).contains(&format!("blocked_clients:{n}\r"))
        }
    };
    let mut c = Resp::connect(addr).await.unwrap();
    c.send_raw(b"*3\r\n$5\r\nBLPOP\r\n$5\r\nqueue\r\n$1\r\n0\r\n")
        .await;
    common::eventually(
        std::time::Duration::from_secs(10),
        "BLPOP is waiting",
        || blocked(1),
    )
    .await;
    drop(c);
    common::eventually(
        std::time::Duration::from_secs(10),
        "the wait is freed",
        || blocked(0),
    )
    .await;
    // the one place under max_connections is free again
    let mut next = Resp::connect(addr).await.unwrap();
    let pong = tokio::time::timeout(std::time::Duration::from_secs(10), next.cmd(&[b"PING"])).await;
    assert_eq!(pong.map(|r| text(&r)).ok().as_deref(), Some("+PONG\r\n"));
}

/// A subscriber that reads none of its messages holds at most 32 MiB of them in the proxy
/// (Redis's own `client-output-buffer-limit pubsub` hard limit): past that it is closed,
/// and the other clients carry on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_falls_32_mib_behind_is_closed() {
    let redis = Redis::start().await;
    let strata = Strata::start(&pool(&[redis.addr], ""));
    let addr = strata.addr("cache:c");
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(addr).await.unwrap();
    let mut sub = Resp::from_stream(stream);
    assert_eq!(
        text(&sub.cmd(&[b"SUBSCRIBE", b"news"]).await),
        "*3\r\n$9\r\nsubscribe\r\n$4\r\nnews\r\n:1\r\n"
    );
    let mut publisher = Resp::connect(addr).await.unwrap();
    let message = vec![b'm'; 1 << 20];
    // (the count of receivers drops to 0 once the proxy has closed the subscriber)
    for _ in 0..48 {
        let published = text(&publisher.cmd(&[b"PUBLISH", b"news", &message]).await);
        assert!(
            published == ":1\r\n" || published == ":0\r\n",
            "{published}"
        );
    }
    strata
        .wait_log(
            "a subscriber fell more than",
            std::time::Duration::from_secs(10),
        )
        .await;
    assert_eq!(text(&publisher.cmd(&[b"PING"]).await), "+PONG\r\n");
    drop(sub);
}

/// Publish/subscribe over two servers looks like one Redis: confirmations once each with the
/// client's own count, messages on channels and patterns wherever they were published, and
/// commands again once every subscription is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_and_subscribe_across_servers() {
    let shards = [Redis::start().await, Redis::start().await];
    let strata = Strata::start(&pool(
        &[shards[0].addr, shards[1].addr],
        "hash = \"murmur\"",
    ));
    let addr = strata.addr("cache:c");
    let mut sub = Resp::connect(addr).await.unwrap();
    let channels: Vec<String> = (0..6).map(|i| format!("ch{i}")).collect();
    let mut subscribe = vec![b"SUBSCRIBE".to_vec()];
    subscribe.extend(channels.iter().map(|c| c.as_bytes().to_vec()));
    sub.send_raw(&{
        let mut out = bytes::BytesMut::new();
        strata_cache::resp::encode_command(&mut out, subscribe.iter().map(|a| a.as_slice()));
        out
    })
    .await;
    let mut confirmed = std::collections::BTreeSet::new();
    for _ in 0..6 {
        let r = text(&sub.reply().await.unwrap());
        assert!(r.starts_with("*3\r\n$9\r\nsubscribe\r\n"), "{r}");
        confirmed.insert(r.split("\r\n").nth(4).unwrap().to_string());
    }
    assert_eq!(confirmed.len(), 6);
    let r = text(&sub.cmd(&[b"PSUBSCRIBE", b"news.*"]).await);
    assert_eq!(r, "*3\r\n$10\r\npsubscribe\r\n$6\r\nnews.*\r\n:7\r\n");
    assert_eq!(
        text(&sub.cmd(&[b"PING"]).await),
        "*2\r\n$4\r\npong\r\n$0\r\n\r\n"
    );
    // a name twice gets two confirmations, as from Redis
    sub.send_raw(b"*3\r\n$9\r\nSUBSCRIBE\r\n$3\r\nch0\r\n$3\r\nch0\r\n")
        .await;
    for _ in 0..2 {
        let r = text(&sub.reply().await.unwrap());
        assert_eq!(r, "*3\r\n$9\r\nsubscribe\r\n$3\r\nch0\r\n:7\r\n");
    }
    let r = text(&sub.cmd(&[b"GET", b"k"]).await);
    assert!(r.starts_with("-ERR Can't execute 'get'"), "{r}");
    // channels on both servers reach the subscriber
    let mut publisher = Resp::connect(addr).await.unwrap();
    for c in &channels {
        assert_eq!(
            text(&publisher.cmd(&[b"PUBLISH", c.as_bytes(), b"hi"]).await),
            ":1\r\n"
        );
        let m = text(&sub.reply().await.unwrap());
        assert_eq!(
            m,
            format!("*3\r\n$7\r\nmessage\r\n${}\r\n{c}\r\n$2\r\nhi\r\n", c.len())
        );
    }
    for topic in ["news.a", "news.bb", "news.ccc"] {
        assert_eq!(
            text(&publisher.cmd(&[b"PUBLISH", topic.as_bytes(), b"x"]).await),
            ":1\r\n"
        );
        let m = text(&sub.reply().await.unwrap());
        assert!(
            m.starts_with("*4\r\n$8\r\npmessage\r\n$6\r\nnews.*\r\n"),
            "{m}"
        );
        assert!(m.contains(topic), "{m}");
    }
    // unsubscribing from everything: one confirmation each, counting down to 0
    sub.send_raw(b"*1\r\n$11\r\nUNSUBSCRIBE\r\n").await;
    let mut counts = Vec::new();
    for _ in 0..6 {
        let r = text(&sub.reply().await.unwrap());
        assert!(r.starts_with("*3\r\n$11\r\nunsubscribe\r\n"), "{r}");
        counts.push(r.rsplit(':').next().unwrap().trim().to_string());
    }
    assert_eq!(counts, ["6", "5", "4", "3", "2", "1"]);
    let r = text(&sub.cmd(&[b"PUNSUBSCRIBE", b"news.*"]).await);
    assert_eq!(r, "*3\r\n$12\r\npunsubscribe\r\n$6\r\nnews.*\r\n:0\r\n");
    // back to commands
    assert_eq!(text(&sub.cmd(&[b"SET", b"k", b"v"]).await), "+OK\r\n");
}

/// redis-py, as applications use it, through the proxy (scripts/test.sh installs it in
/// target/py).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_py_works_through_the_proxy() {
    let shards = [Redis::start().await, Redis::start().await];
    let strata = Strata::start(&pool(
        &[shards[0].addr, shards[1].addr],
        "hash = \"murmur\"\nhash_tag = \"{}\"",
    ));
    let addr = strata.addr("cache:c");
    python_ok(
        "redis_py.py",
        &[&addr.ip().to_string(), &addr.port().to_string()],
    )
    .await;
    // and its keys really went to both servers
    for s in &shards {
        assert!(!s.keys().await.is_empty());
    }
}

/// A client that says HELLO 3 gets RESP3 from its servers as they write it (maps, nulls,
/// doubles), on connections that said HELLO 3 too; merged answers keep RESP3's nulls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resp3_clients_get_resp3_replies() {
    let direct = Redis::start().await;
    let shards = [Redis::start().await, Redis::start().await];
    let strata = Strata::start(&pool(
        &[shards[0].addr, shards[1].addr],
        "hash = \"murmur\"",
    ));
    let mut one = direct.client().await;
    let mut via = Resp::connect(strata.addr("cache:c")).await.unwrap();
    let hello = text(&via.cmd(&[b"HELLO", b"3"]).await);
    assert!(
        hello.starts_with("%8\r\n") && hello.contains("proto\r\n:3"),
        "{hello}"
    );
    one.cmd(&[b"HELLO", b"3"]).await;
    let mut pipeline = vec![
        cmd(&["HSET", "h", "a", "1", "b", "2"]),
        cmd(&["HGETALL", "h"]),
        cmd(&["GET", "missing"]),
        cmd(&["ZADD", "z", "1.5", "m"]),
        cmd(&["ZSCORE", "z", "m"]),
        cmd(&["SADD", "s", "x"]),
        cmd(&["SMEMBERS", "s"]),
    ];
    for i in 0..20 {
        pipeline.push(cmd(&["SET", &format!("k{i}"), "v"]));
    }
    let mut mget = vec!["MGET"];
    let keys: Vec<String> = (0..30).map(|i| format!("k{i}")).collect();
    mget.extend(keys.iter().map(String::as_str));
    pipeline.push(cmd(&mget));
    let want = one.pipeline(&pipeline).await;
    let got = via.pipeline(&pipeline).await;
    for ((c, w), g) in pipeline.iter().zip(&want).zip(&got) {
        assert_eq!(text(g), text(w), "{}", text(&c.join(&b' ')));
    }
    assert!(
        text(got.last().unwrap()).contains("_\r\n"),
        "RESP3 nulls in MGET"
    );
    assert!(text(&got[1]).starts_with("%2\r\n"));
}

/// redis-cli and redis-benchmark, as operators run them, through the proxy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cli_and_redis_benchmark_work_through_the_proxy() {
    let shards = [Redis::start().await, Redis::start().await];
    let strata = Strata::start(&pool(&[shards[0].addr, shards[1].addr], ""));
    let port = strata.addr("cache:c").port().to_string();
    let cli = |args: &[&str]| {
        let out = std::process::Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &port])
            .args(args)
            .output()
            .expect("redis-cli is not installed: run ./scripts/test.sh, which installs it");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(cli(&["SET", "greeting", "hello"]), "OK");
    assert_eq!(cli(&["GET", "greeting"]), "hello");
    assert_eq!(cli(&["MSET", "a", "1", "b", "2", "c", "3"]), "OK");
    // the missing key is an empty line, trimmed off the end
    assert_eq!(cli(&["MGET", "a", "b", "c", "nope"]), "1\n2\n3");
    assert_eq!(cli(&["DEL", "a", "b", "c"]), "3");
    assert_eq!(cli(&["PING"]), "PONG");
    let out = std::process::Command::new("redis-benchmark")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-n",
            "2000",
            "-c",
            "10",
            "-P",
            "8",
            "-r",
            "1000",
        ])
        .args([
            "-t",
            "set,get,incr,lpush,rpush,lpop,rpop,sadd,hset,spop,zadd,lrange_100,mset",
            "--csv",
        ])
        .output()
        .expect("redis-benchmark is not installed: run ./scripts/test.sh, which installs it");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        !stderr.contains("ERR") && !stdout.contains("ERR"),
        "{stdout}\n{stderr}"
    );
    for test in [
        "SET", "GET", "INCR", "LPUSH", "LPOP", "SADD", "HSET", "ZADD", "MSET",
    ] {
        assert!(
            stdout.contains(&format!("\"{test}")),
            "no {test} row:\n{stdout}"
        );
    }
}

/// A reload that keeps a server keeps what was learned of it and of its replicas: their
/// latency histograms go on counting (a Prometheus histogram never goes back).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_keeps_the_histograms_of_the_servers_that_stay() {
    let master = Redis::start().await;
    let port = master.addr.port().to_string();
    let replica = Redis::start_with(&["--replicaof", "127.0.0.1", &port]).await;
    let config = |timeout: &str| {
        format!(
            "[admin]\nlisten = \"127.0.0.1:0\"\n\n[[cache]]\nname = \"c\"\nlisten = \"127.0.0.1:0\"\n\
             servers = [\"{}:1 main\"]\nreplicas = {{ main = [\"{}\"] }}\nread_from = \"replica\"\ntimeout = \"{timeout}\"\n",
            master.addr, replica.addr
        )
    };
    let strata = Strata::start(&config("1s"));
    let mut c = Resp::connect(strata.addr("cache:c")).await.unwrap();
    for i in 0..20 {
        let key = format!("k{i}");
        assert_eq!(
            text(&c.cmd(&[b"SET", key.as_bytes(), b"v"]).await),
            "+OK\r\n"
        );
        c.cmd(&[b"GET", key.as_bytes()]).await;
    }
    let timed = |metrics: &str, server: std::net::SocketAddr| {
        common::metric(
            metrics,
            "strata_cache_server_latency_seconds_count",
            &format!("backend=\"{server}\""),
        )
        .unwrap_or(0.0)
    };
    let before = common::admin_get(&strata, "/metrics").await.body;
    let (m0, r0) = (timed(&before, master.addr), timed(&before, replica.addr));
    assert!(m0 >= 20.0 && r0 >= 20.0, "{m0} {r0}: {before}");
    std::fs::write(&strata.config, config("2s")).unwrap();
    strata.signal(libc::SIGHUP);
    strata
        .wait_log("SIGHUP: reloaded", std::time::Duration::from_secs(5))
        .await;
    let after = common::admin_get(&strata, "/metrics").await.body;
    assert!(timed(&after, master.addr) >= m0, "{after}");
    assert!(timed(&after, replica.addr) >= r0, "{after}");
    c.cmd(&[b"GET", b"k1"]).await;
    let later = common::admin_get(&strata, "/metrics").await.body;
    assert!(timed(&later, replica.addr) > r0, "{later}");
}

/// `read_from = "replica"` sends reads to a replica of the key's server, writes to its master.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_go_to_replicas_when_asked() {
    let master = Redis::start().await;
    let port = master.addr.port().to_string();
    let replica = Redis::start_with(&[
        "--replicaof",
        "127.0.0.1",
        &port,
        "--replica-read-only",
        "no",
    ])
    .await;
    let config = |read_from: &str| {
        format!(
            "[admin]\nlisten = \"127.0.0.1:0\"\n\n[[cache]]\nname = \"c\"\nlisten = \"127.0.0.1:0\"\n\
             servers = [\"{}:1 main\"]\nreplicas = {{ main = [\"{}\"] }}\nread_from = \"{read_from}\"\n",
            master.addr, replica.addr
        )
    };
    // a key only the replica holds tells who answered
    let mut r = replica.client().await;
    assert_eq!(
        text(&r.cmd(&[b"SET", b"only-on-replica", b"r"]).await),
        "+OK\r\n"
    );
    let via_replica = Strata::start(&config("replica"));
    let via_master = Strata::start(&config("master"));
    let mut c = Resp::connect(via_replica.addr("cache:c")).await.unwrap();
    assert_eq!(
        text(&c.cmd(&[b"GET", b"only-on-replica"]).await),
        "$1\r\nr\r\n"
    );
    assert_eq!(
        text(&c.cmd(&[b"MGET", b"only-on-replica"]).await),
        "*1\r\n$1\r\nr\r\n"
    );
    // writes go to the master
    assert_eq!(text(&c.cmd(&[b"SET", b"w", b"1"]).await), "+OK\r\n");
    assert_eq!(
        text(&master.client().await.cmd(&[b"GET", b"w"]).await),
        "$1\r\n1\r\n"
    );
    let mut m = Resp::connect(via_master.addr("cache:c")).await.unwrap();
    assert_eq!(text(&m.cmd(&[b"GET", b"only-on-replica"]).await), "$-1\r\n");
    let status = common::admin_get(&via_replica, "/status").await;
    let v: serde_json::Value = serde_json::from_str(&status.body).unwrap();
    let server = &v["cache"][0]["servers"][0];
    assert_eq!(server["replicas"][0]["address"], replica.addr.to_string());
    assert_eq!(server["roles_from"], "config");
}

/// With Sentinel, the master of each server is whatever Sentinel says: when it fails over,
/// writes follow the new master without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_follow_a_sentinel_failover() {
    let mut master = Redis::start().await;
    let port = master.addr.port().to_string();
    let replica = Redis::start_with(&["--replicaof", "127.0.0.1", &port]).await;
    let sentinel = Redis::start_sentinel(master.addr, "shard1").await;
    let config = format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\n\n[[cache]]\nname = \"c\"\nlisten = \"127.0.0.1:0\"\n\
         servers = [\"{}:1 shard1\"]\nsentinels = [\"{}\"]\ntimeout = \"300ms\"\nserver_failure_limit = 1000\n",
        master.addr, sentinel.addr
    );
    let strata = Strata::start(&config);
    let addr = strata.addr("cache:c");
    let mut c = Resp::connect(addr).await.unwrap();
    assert_eq!(text(&c.cmd(&[b"SET", b"before", b"1"]).await), "+OK\r\n");
    // wait until the replica has caught up and Sentinel knows it
    common::eventually(
        std::time::Duration::from_secs(20),
        "sentinel sees the replica",
        || {
            let sentinel = sentinel.addr;
            async move {
                let mut s = Resp::connect(sentinel).await.unwrap();
                let r = s.cmd(&[b"SENTINEL", b"replicas", b"shard1"]).await;
                text(&r).contains("slave") && !text(&r).contains("s_down")
            }
        },
    )
    .await;
    master.kill();
    let killed = std::time::Instant::now();
    let mut first_ok_after = None;
    let mut failed = 0;
    while killed.elapsed() < std::time::Duration::from_secs(40) {
        let r = c.try_cmd(&[b"SET", b"after", b"2"]).await;
        match r {
            Ok(r) if &r[..] == b"+OK\r\n" => {
                first_ok_after = Some(killed.elapsed());
                break;
            }
            Ok(_) => failed += 1,
            Err(_) => {
                failed += 1;
                c = Resp::connect(addr).await.unwrap();
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let took = first_ok_after.expect("writes never came back after the failover");
    println!("writes failed for {took:?} after the master was killed ({failed} failed SETs)");
    assert_eq!(
        text(&replica.client().await.cmd(&[b"GET", b"after"]).await),
        "$1\r\n2\r\n",
        "the write went to the promoted replica"
    );
    let status = common::admin_get(&strata, "/status").await;
    let v: serde_json::Value = serde_json::from_str(&status.body).unwrap();
    let server = &v["cache"][0]["servers"][0];
    assert_eq!(server["master"], replica.addr.to_string());
    assert_eq!(server["roles_from"], format!("sentinel {}", sentinel.addr));
    let metrics = common::admin_get(&strata, "/metrics").await.body;
    assert_eq!(
        common::metric(
            &metrics,
            "strata_cache_master_switches_total",
            "server=\"shard1\""
        ),
        Some(1.0)
    );
}

/// A Sentinel that asks for a password (`requirepass` in sentinel.conf) is logged in to
/// with `sentinel_password`; with a wrong one, the servers stay where the config put them and
/// the log says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sentinel_with_a_password_is_followed() {
    let master = Redis::start().await;
    let sentinel = Redis::start_sentinel_with(master.addr, "shard1", "requirepass s3cret").await;
    let listener = |password: &str| {
        format!(
            "[admin]\nlisten = \"127.0.0.1:0\"\n\n[[cache]]\nname = \"c\"\nlisten = \"127.0.0.1:0\"\n\
             servers = [\"127.0.0.1:1:1 shard1\"]\nsentinels = [\"{}\"]\nsentinel_password = \"{password}\"\n",
            sentinel.addr
        )
    };
    // the server line's address is a wrong guess: only Sentinel knows the master
    let strata = Strata::start(&listener("s3cret"));
    let addr = strata.addr("cache:c");
    common::eventually(
        std::time::Duration::from_secs(10),
        "the master learned from the sentinel",
        || async {
            let mut c = Resp::connect(addr).await.unwrap();
            text(&c.cmd(&[b"SET", b"k", b"v"]).await) == "+OK\r\n"
        },
    )
    .await;
    assert_eq!(
        text(&master.client().await.cmd(&[b"GET", b"k"]).await),
        "$1\r\nv\r\n"
    );
    let status = common::admin_get(&strata, "/status").await;
    let v: serde_json::Value = serde_json::from_str(&status.body).unwrap();
    assert_eq!(
        v["cache"][0]["servers"][0]["master"],
        master.addr.to_string()
    );
    // a wrong password: refused, said in the log, and nothing moves
    let wrong = Strata::start(&listener("nope"));
    wrong
        .wait_log("AUTH refused", std::time::Duration::from_secs(10))
        .await;
    let status = common::admin_get(&wrong, "/status").await;
    let v: serde_json::Value = serde_json::from_str(&status.body).unwrap();
    assert_eq!(v["cache"][0]["servers"][0]["master"], "127.0.0.1:1");
}

/// Adding a third server to a full two-server pool moves a third of the keys; read-through
/// finds each on its old server at the first GET and copies it over (with its TTL), so the
/// hit ratio stays at 100% instead of dropping to about two thirds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_server_does_not_cause_a_miss_storm() {
    let with = [
        Redis::start().await,
        Redis::start().await,
        Redis::start().await,
    ];
    let without = [
        Redis::start().await,
        Redis::start().await,
        Redis::start().await,
    ];
    let config = |n: usize| {
        let list = |r: &[Redis; 3]| {
            r[..n]
                .iter()
                .map(|r| format!("\"{}:1\"", r.addr))
                .collect::<Vec<_>>()
                .join(", ")
        };
        format!(
            "[[cache]]\nname = \"with\"\nlisten = \"127.0.0.1:0\"\nhash = \"murmur\"\nservers = [{}]\n\n\
             [[cache]]\nname = \"without\"\nlisten = \"127.0.0.1:0\"\nhash = \"murmur\"\nread_through = \"0s\"\nservers = [{}]\n",
            list(&with),
            list(&without)
        )
    };
    let strata = Strata::start(&config(2));
    const KEYS: usize = 3000;
    // hashes too: read-through is not for strings alone
    const HASHES: usize = 300;
    let mut clients = Vec::new();
    for pool in ["with", "without"] {
        let mut c = Resp::connect(strata.addr(&format!("cache:{pool}")))
            .await
            .unwrap();
        let sets: Vec<Vec<Vec<u8>>> = (0..KEYS)
            .map(|i| cmd(&["SET", &format!("k{i}"), &format!("v{i}"), "EX", "1000"]))
            .collect();
        for r in c.pipeline(&sets).await {
            assert_eq!(&r[..], b"+OK\r\n");
        }
        let hsets: Vec<Vec<Vec<u8>>> = (0..HASHES)
            .map(|i| cmd(&["HSET", &format!("h{i}"), "f", &format!("v{i}")]))
            .collect();
        for r in c.pipeline(&hsets).await {
            assert_eq!(&r[..], b":1\r\n");
        }
        let counters: Vec<Vec<Vec<u8>>> = (0..HASHES)
            .map(|i| cmd(&["SET", &format!("c{i}"), "10"]))
            .collect();
        c.pipeline(&counters).await;
        clients.push(c);
    }
    std::fs::write(&strata.config, config(3)).unwrap();
    strata.signal(libc::SIGHUP);
    strata
        .wait_log("SIGHUP: reloaded", std::time::Duration::from_secs(10))
        .await;
    // keys deleted right after the reload stay deleted: read-through must not bring back
    // the copy their old server still holds
    const DELETED: usize = 50;
    let dels: Vec<Vec<Vec<u8>>> = (0..DELETED)
        .map(|i| cmd(&["DEL", &format!("k{i}")]))
        .collect();
    clients[0].pipeline(&dels).await;
    let gone: Vec<Vec<Vec<u8>>> = (0..DELETED)
        .map(|i| cmd(&["GET", &format!("k{i}")]))
        .collect();
    for (i, r) in clients[0].pipeline(&gone).await.iter().enumerate() {
        assert_eq!(text(r), "$-1\r\n", "k{i} came back after its DEL");
    }
    // writes that keep part of a moved key work on its value, brought over first: every
    // counter goes from 10 to 11, and a hash given a new field keeps its old one
    let incrs: Vec<Vec<Vec<u8>>> = (0..HASHES)
        .map(|i| cmd(&["INCR", &format!("c{i}")]))
        .collect();
    for (i, r) in clients[0].pipeline(&incrs).await.iter().enumerate() {
        assert_eq!(text(r), ":11\r\n", "c{i}");
    }
    let more: Vec<Vec<Vec<u8>>> = (0..HASHES)
        .map(|i| cmd(&["HSET", &format!("h{i}"), "g", "1"]))
        .collect();
    for r in clients[0].pipeline(&more).await {
        assert_eq!(text(&r), ":1\r\n");
    }
    // an MGET across servers finds every value, those of moved keys too
    let mget: Vec<String> = (DELETED..DELETED + 100).map(|i| format!("k{i}")).collect();
    let mut args: Vec<&[u8]> = vec![b"MGET"];
    args.extend(mget.iter().map(|k| k.as_bytes()));
    let values = text(&clients[0].cmd(&args).await);
    assert!(
        values.starts_with("*100\r\n") && !values.contains("$-1"),
        "{values}"
    );
    // and every hash, by HGET
    let hgets: Vec<Vec<Vec<u8>>> = (0..HASHES)
        .map(|i| cmd(&["HGET", &format!("h{i}"), "f"]))
        .collect();
    for (i, r) in clients[0].pipeline(&hgets).await.iter().enumerate() {
        assert_eq!(text(r), format!("${}\r\nv{i}\r\n", format!("v{i}").len()));
    }
    let gets: Vec<Vec<Vec<u8>>> = (DELETED..KEYS)
        .map(|i| cmd(&["GET", &format!("k{i}")]))
        .collect();
    let mut ratios = Vec::new();
    for c in &mut clients {
        let hits = c
            .pipeline(&gets)
            .await
            .iter()
            .filter(|r| r[..] != b"$-1\r\n"[..])
            .count();
        ratios.push(hits as f64 / (KEYS - DELETED) as f64);
    }
    println!(
        "hit ratio right after adding a third server: {:.3} with read-through, {:.3} without",
        ratios[0], ratios[1]
    );
    assert_eq!(ratios[0], 1.0);
    assert!((0.55..0.8).contains(&ratios[1]), "{}", ratios[1]);
    // the moved keys now live on the new server, with their TTL; the old copies are gone
    // (the pool is strong)
    let moved = with[2].keys().await;
    assert!(moved.len() > KEYS / 5, "{}", moved.len());
    let mut third = with[2].client().await;
    // (a string: the hashes were written without one)
    let string = moved.iter().find(|k| k.starts_with(b"k")).unwrap();
    let ttl = text(&third.cmd(&[b"TTL", string]).await);
    assert!(ttl.starts_with(':') && ttl != ":-1\r\n", "{ttl}");
    let old = with[0].keys().await.len() + with[1].keys().await.len();
    assert_eq!(old + moved.len(), KEYS - DELETED + 2 * HASHES);
    // and the second read of a moved key is a plain hit on its new server
    let again = clients[0].pipeline(&gets).await;
    assert!(again.iter().all(|r| r[..] != b"$-1\r\n"[..]));
}

/// `weak`: while a server is out its keys are written elsewhere; when it is back, those keys
/// are deleted on it before it serves again, so it never answers with the value from before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_weak_pool_does_not_serve_a_stale_value_after_a_server_returns() {
    let keep = Redis::start().await;
    let flaky = Redis::start().await;
    let strata = Strata::start(&pool(
        &[keep.addr, flaky.addr],
        "consistency = \"weak\"\nserver_failure_limit = 1\nserver_retry_timeout = \"2s\"\ntimeout = \"300ms\"",
    ));
    let mut c = Resp::connect(strata.addr("cache:c")).await.unwrap();
    let key = key_on(&mut c, &flaky, "k").await;
    assert_eq!(
        text(&c.cmd(&[b"SET", key.as_bytes(), b"old"]).await),
        "+OK\r\n"
    );
    // the server stops answering for a while (its data stays)
    let mut admin = flaky.client().await;
    assert_eq!(
        text(&admin.cmd(&[b"CLIENT", b"PAUSE", b"1500", b"ALL"]).await),
        "+OK\r\n"
    );
    let r = text(&c.cmd(&[b"GET", key.as_bytes()]).await);
    assert!(r.starts_with("-ERR strata: "), "{r}");
    wait_state(&strata, flaky.addr, "ejected").await;
    // ejected: the write goes to the other server
    assert_eq!(
        text(&c.cmd(&[b"SET", key.as_bytes(), b"new"]).await),
        "+OK\r\n"
    );
    assert!(keep.keys().await.iter().any(|k| k == key.as_bytes()));
    // back after its retry timeout: the key it holds from before is gone, never served
    wait_state(&strata, flaky.addr, "up").await;
    let r = text(&c.cmd(&[b"GET", key.as_bytes()]).await);
    assert_ne!(
        r, "$3\r\nold\r\n",
        "the returning server served the value from before"
    );
    assert_eq!(r, "$-1\r\n");
}

/// `backend = "cluster"` with `read_from = "replica"`: reads go to the replicas the cluster's
/// slot map names (on connections that said READONLY), writes to the masters; a client that
/// reads what it wrote waits for replication, as with any replica read. (A loaded machine's
/// slow answers must not eject a replica here: the test is about where reads go.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_cluster_s_replicas_take_the_reads() {
    let cluster = common::redis::RedisCluster::start_with_replicas(3, 1).await;
    let config = format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\n\n[[cache]]\nname = \"c\"\nlisten = \"127.0.0.1:0\"\n\
         backend = \"cluster\"\nread_from = \"replica\"\nservers = [\"{}\"]\n\
         timeout = \"10s\"\nserver_failure_limit = 1000\n",
        cluster.nodes[0].addr
    );
    let strata = Strata::start(&config);
    // the replicas come with the slot map (asked for again every few seconds)
    common::eventually(
        std::time::Duration::from_secs(15),
        "the replicas in the map",
        || async {
            let status = common::admin_get(&strata, "/status").await.body;
            let v: serde_json::Value = serde_json::from_str(&status).unwrap();
            let nodes = v["cache"][0]["cluster"]["nodes"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            nodes.len() == 3
                && nodes
                    .iter()
                    .all(|n| n["replicas"].as_array().is_some_and(|r| r.len() == 1))
        },
    )
    .await;
    let mut c = Resp::connect(strata.addr("cache:c")).await.unwrap();
    for i in 0..200 {
        let k = format!("k{i}");
        assert_eq!(text(&c.cmd(&[b"SET", k.as_bytes(), b"v"]).await), "+OK\r\n");
    }
    // replication is asynchronous: read until every key is there
    common::eventually(
        std::time::Duration::from_secs(10),
        "every key read back from the replicas",
        || async {
            let mut c = Resp::connect(strata.addr("cache:c")).await.unwrap();
            let mut all = true;
            for i in 0..200 {
                let k = format!("k{i}");
                all &= text(&c.cmd(&[b"GET", k.as_bytes()]).await) == "$1\r\nv\r\n";
            }
            all
        },
    )
    .await;
    let before = cluster.calls("get").await;
    for i in 0..200 {
        let k = format!("k{i}");
        assert_eq!(text(&c.cmd(&[b"GET", k.as_bytes()]).await), "$1\r\nv\r\n");
    }
    let keys: Vec<Vec<u8>> = (0..50).map(|i| format!("k{i}").into_bytes()).collect();
    let mut mget: Vec<&[u8]> = vec![b"MGET"];
    mget.extend(keys.iter().map(|k| &k[..]));
    assert!(text(&c.cmd(&mget).await).starts_with("*50\r\n"));
    let after = cluster.calls("get").await;
    let replicas: Vec<std::net::SocketAddr> =
        cluster.replicas().await.iter().map(|r| r.addr).collect();
    let (mut on_replicas, mut on_masters) = (0, 0);
    for (node, (b, a)) in cluster.nodes.iter().zip(before.iter().zip(&after)) {
        if replicas.contains(&node.addr) {
            on_replicas += a - b;
        } else {
            on_masters += a - b;
        }
    }
    assert_eq!(
        (on_replicas, on_masters),
        (200, 0),
        "GETs on replicas, on masters: {}",
        common::admin_get(&strata, "/status").await.body
    );
    let mget_calls: u64 = cluster.calls("mget").await.iter().sum();
    assert!(mget_calls > 0);
    let status = common::admin_get(&strata, "/status").await;
    assert!(
        replicas
            .iter()
            .all(|r| status.body.contains(&r.to_string())),
        "{}",
        status.body
    );
}

/// A node of a Redis Cluster dies and its replica takes over: a command that could not reach
/// the dead node (nothing was sent) is sent once more where the fresh slot map puts its slot,
/// so the client sees its answer, not an error, even before the proxy's own refresh.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_for_a_dead_cluster_node_goes_to_the_replica_that_took_over() {
    let mut cluster = common::redis::RedisCluster::start_with_replicas(3, 1).await;
    let config = format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\n\n[[cache]]\nname = \"c\"\nlisten = \"127.0.0.1:0\"\n\
         backend = \"cluster\"\nservers = [\"{}\"]\n",
        cluster.nodes[0].addr
    );
    let strata = Strata::start(&config);
    let mut c = Resp::connect(strata.addr("cache:c")).await.unwrap();
    assert_eq!(text(&c.cmd(&[b"SET", b"k", b"v"]).await), "+OK\r\n");
    // the master that holds it, and its replica, which has it too
    let mut master = None;
    for (i, node) in cluster.nodes.iter().enumerate() {
        let mut n = node.client().await;
        let role = text(&n.cmd(&[b"ROLE"]).await);
        if role.contains("master") && text(&n.cmd(&[b"EXISTS", b"k"]).await) == ":1\r\n" {
            assert_eq!(text(&n.cmd(&[b"WAIT", b"1", b"5000"]).await), ":1\r\n");
            master = Some(i);
        }
    }
    let master = master.expect("a master holds the key");
    let port = cluster.nodes[master].addr.port();
    let mut replica = None;
    for (i, node) in cluster.nodes.iter().enumerate() {
        let role = text(&node.client().await.cmd(&[b"ROLE"]).await);
        // ROLE of a replica: "slave", its master's host and port, ...
        if role.contains("slave") && role.contains(&format!("127.0.0.1\r\n:{port}\r\n")) {
            replica = Some(i);
        }
    }
    let replica = replica.expect("the master has a replica");
    cluster.nodes[master].kill();
    // the replica takes over at once (without waiting for the cluster to see the master fail)
    let mut r = cluster.nodes[replica].client().await;
    assert_eq!(
        text(&r.cmd(&[b"CLUSTER", b"FAILOVER", b"TAKEOVER"]).await),
        "+OK\r\n"
    );
    let promoted = cluster.nodes[replica].addr.port();
    common::eventually(
        std::time::Duration::from_secs(10),
        "every live node names the replica as a master",
        || async {
            let mut all = true;
            for (i, node) in cluster.nodes.iter().enumerate() {
                if i != master {
                    let nodes = text(&node.client().await.cmd(&[b"CLUSTER", b"NODES"]).await);
                    all &= nodes
                        .lines()
                        .any(|l| l.contains(&format!(":{promoted}@")) && l.contains("master"));
                }
            }
            all
        },
    )
    .await;
    // CLUSTER SLOTS answered by the live nodes so far
    let slots_asked = || async {
        let mut n = 0;
        for (i, node) in cluster.nodes.iter().enumerate() {
            if i != master {
                let info = text(&node.client().await.cmd(&[b"INFO", b"commandstats"]).await);
                n += info
                    .lines()
                    .find_map(|l| l.strip_prefix("cmdstat_cluster|slots:calls="))
                    .and_then(|l| l.split(',').next())
                    .and_then(|n| n.parse::<u64>().ok())
                    .unwrap_or(0);
            }
        }
        n
    };
    let before = slots_asked().await;
    // the proxy's map still names the dead master: the GETs meet a refused connection, one
    // refresh asks for the map, and each goes to the promoted replica
    let gets: Vec<Vec<Vec<u8>>> = (0..8).map(|_| cmd(&["GET", "k"])).collect();
    for r in c.pipeline(&gets).await {
        assert_eq!(text(&r), "$1\r\nv\r\n");
    }
    let asked = slots_asked().await - before;
    // one refresh for the eight (and perhaps the proxy's own, every 5 s)
    assert!(
        (1..=2).contains(&asked),
        "CLUSTER SLOTS asked {asked} times"
    );
    assert_eq!(text(&c.cmd(&[b"SET", b"k", b"w"]).await), "+OK\r\n");
    assert_eq!(
        text(
            &cluster.nodes[replica]
                .client()
                .await
                .cmd(&[b"GET", b"k"])
                .await
        ),
        "$1\r\nw\r\n"
    );
}

/// A slot moves while Strata's map of the cluster still has it on its old node: a transaction
/// whose command the old node redirects (Redis discards the transaction) is sent again to the
/// new node, a WATCH follows the redirection, and a shard channel is subscribed on the node
/// of its slot (not on the one seed the pool names).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_watches_and_shard_channels_follow_a_cluster_slot_that_moved() {
    let cluster = common::redis::RedisCluster::start(3).await;
    let config = format!(
        "[[cache]]\nname = \"c\"\nlisten = \"127.0.0.1:0\"\nbackend = \"cluster\"\nservers = [\"{}\"]\n",
        cluster.nodes[0].addr
    );
    let strata = Strata::start(&config);
    let mut c = Resp::connect(strata.addr("cache:c")).await.unwrap();
    assert_eq!(text(&c.cmd(&[b"SET", b"warm", b"1"]).await), "+OK\r\n");
    // (redis-cli gives the first node slots 0-5460, the second 5461-10922)
    let slot = |k: &str| strata_cache::cluster::slot(k.as_bytes());
    let key_in = |prefix: &str, lo: u16, hi: u16| {
        (0..)
            .map(|i| format!("{prefix}{i}"))
            .find(|k| (lo..=hi).contains(&slot(k)) && slot(k) != slot("warm"))
            .unwrap()
    };
    let k = key_in("tx", 0, 5460);
    cluster.give_slot(slot(&k), 1).await;
    let tx = [cmd(&["MULTI"]), cmd(&["SET", &k, "1"]), cmd(&["EXEC"])];
    let replies: Vec<String> = c.pipeline_text(&tx).await;
    assert_eq!(replies[2], "*1\r\n+OK\r\n", "{replies:?}");
    let on_new = cluster.nodes[1]
        .client()
        .await
        .cmd(&[b"GET", k.as_bytes()])
        .await;
    assert_eq!(text(&on_new), "$1\r\n1\r\n");

    let w = key_in("watch", 0, 5460);
    assert_ne!(slot(&w), slot(&k));
    cluster.give_slot(slot(&w), 1).await;
    let tx = [
        cmd(&["WATCH", &w]),
        cmd(&["MULTI"]),
        cmd(&["SET", &w, "2"]),
        cmd(&["EXEC"]),
    ];
    let replies: Vec<String> = c.pipeline_text(&tx).await;
    assert_eq!(replies[0], "+OK\r\n", "{replies:?}");
    assert_eq!(replies[3], "*1\r\n+OK\r\n", "{replies:?}");

    let ch = key_in("ch", 5461, 10922);
    let mut sub = Resp::connect(strata.addr("cache:c")).await.unwrap();
    assert_eq!(
        text(&sub.cmd(&[b"SSUBSCRIBE", ch.as_bytes()]).await),
        format!("*3\r\n$10\r\nssubscribe\r\n${}\r\n{ch}\r\n:1\r\n", ch.len())
    );
    assert_eq!(
        text(&c.cmd(&[b"SPUBLISH", ch.as_bytes(), b"hi"]).await),
        ":1\r\n"
    );
    assert_eq!(
        text(&sub.reply().await.unwrap()),
        format!(
            "*3\r\n$8\r\nsmessage\r\n${}\r\n{ch}\r\n$2\r\nhi\r\n",
            ch.len()
        )
    );

    // two shard channels of one node in two slots: one command each (a node refuses one
    // command for two slots), and a confirmation each
    let a = key_in("sa", 10923, 16383);
    let b = (0..)
        .map(|i| format!("sb{i}"))
        .find(|k| (10923..=16383).contains(&slot(k)) && slot(k) != slot(&a))
        .unwrap();
    let mut two = Resp::connect(strata.addr("cache:c")).await.unwrap();
    let first = text(&two.cmd(&[b"SSUBSCRIBE", a.as_bytes(), b.as_bytes()]).await);
    let second = text(&two.reply().await.unwrap());
    let confirm = |name: &str, n: usize| {
        format!(
            "*3\r\n$10\r\nssubscribe\r\n${}\r\n{name}\r\n:{n}\r\n",
            name.len()
        )
    };
    assert_eq!([first, second], [confirm(&a, 1), confirm(&b, 2)]);

    // a shard channel whose slot moved after the map was read: the old node's MOVED is told
    // as TRYAGAIN, and subscribing again reaches the new owner (unless the map's periodic
    // refresh came between the move and the first try: then that one reaches it)
    let m = key_in("sm", 0, 5460);
    cluster.give_slot(slot(&m), 2).await;
    let mut moved = Resp::connect(strata.addr("cache:c")).await.unwrap();
    let first = text(&moved.cmd(&[b"SSUBSCRIBE", m.as_bytes()]).await);
    let confirmed = if first.starts_with("-TRYAGAIN") {
        text(&moved.cmd(&[b"SSUBSCRIBE", m.as_bytes()]).await)
    } else {
        first
    };
    assert_eq!(confirmed, confirm(&m, 1));
    assert_eq!(
        text(&c.cmd(&[b"SPUBLISH", m.as_bytes(), b"hi"]).await),
        ":1\r\n"
    );

    // a node just added to the cluster owns no slot, so the map does not name it: an ASK to
    // it, while a slot migrates to it, is followed once CLUSTER NODES names it
    let fourth =
        Redis::start_with(&["--cluster-enabled", "yes", "--cluster-node-timeout", "2000"]).await;
    let port = fourth.addr.port().to_string();
    let met = cluster.nodes[0]
        .client()
        .await
        .cmd(&[b"CLUSTER", b"MEET", b"127.0.0.1", port.as_bytes()])
        .await;
    assert_eq!(text(&met), "+OK\r\n");
    let (id0, id3) = (cluster.nodes[0].node_id().await, fourth.node_id().await);
    let nodes_of = |r: &Redis| {
        let r = r.addr;
        async move {
            let mut c = Resp::connect(r).await.unwrap();
            text(&c.cmd(&[b"CLUSTER", b"NODES"]).await)
        }
    };
    eventually(
        std::time::Duration::from_secs(10),
        "the new node is met",
        || async {
            let info = text(&fourth.client().await.cmd(&[b"CLUSTER", b"INFO"]).await);
            nodes_of(&cluster.nodes[0]).await.contains(&id3)
                && nodes_of(&fourth).await.contains(&id0)
                && info.contains("cluster_state:ok")
        },
    )
    .await;
    let n = key_in("new", 0, 5460);
    let s = slot(&n).to_string();
    let setslot = |node: &Redis, state: &'static [u8], id: String| {
        let (addr, s) = (node.addr, s.clone());
        async move {
            let mut c = Resp::connect(addr).await.unwrap();
            let asked = [
                &b"CLUSTER"[..],
                b"SETSLOT",
                s.as_bytes(),
                state,
                id.as_bytes(),
            ];
            assert_eq!(text(&c.cmd(&asked).await), "+OK\r\n");
        }
    };
    setslot(&fourth, b"IMPORTING", id0.clone()).await;
    setslot(&cluster.nodes[0], b"MIGRATING", id3.clone()).await;
    assert_eq!(text(&c.cmd(&[b"SET", n.as_bytes(), b"1"]).await), "+OK\r\n");
    let mut on_fourth = fourth.client().await;
    let asking = [cmd(&["ASKING"]), cmd(&["GET", &n])];
    assert_eq!(text(&on_fourth.pipeline(&asking).await[1]), "$1\r\n1\r\n");

    // a script can return any error, a MOVED too: one to an address that is no node of the
    // cluster is the client's answer, not a redirection (following it would send the command,
    // and the pool's server password, to an address the client chose)
    let decoy = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let forged = format!("MOVED 0 {}", decoy.local_addr().unwrap());
    let script = format!("return redis.error_reply('{forged}')");
    let zero = key_in("z", 0, 0);
    let reply = text(
        &c.cmd(&[b"EVAL", script.as_bytes(), b"1", zero.as_bytes()])
            .await,
    );
    assert_eq!(reply, format!("-{forged}\r\n"));
    // a short wait to show that something does not happen: no connection to the decoy
    let accepted =
        tokio::time::timeout(std::time::Duration::from_millis(300), decoy.accept()).await;
    assert!(
        accepted.is_err(),
        "the proxy connected to a forged MOVED's address"
    );
    assert_eq!(
        text(&c.cmd(&[b"SET", zero.as_bytes(), b"1"]).await),
        "+OK\r\n"
    );
}

/// `backend = "cluster"`: a client that knows nothing of Redis Cluster uses one through the
/// proxy, and keeps finding every key while slots move between nodes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_cluster_serves_clients_that_know_nothing_of_it() {
    let cluster = common::redis::RedisCluster::start(3).await;
    let config = format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\n\n[[cache]]\nname = \"c\"\nlisten = \"127.0.0.1:0\"\nbackend = \"cluster\"\nservers = [\"{}\"]\n",
        cluster.nodes[0].addr
    );
    let strata = Strata::start(&config);
    let mut c = Resp::connect(strata.addr("cache:c")).await.unwrap();
    let sets: Vec<Vec<Vec<u8>>> = (0..2000)
        .map(|i| cmd(&["SET", &format!("key:{i}"), &format!("v{i}")]))
        .collect();
    for r in c.pipeline(&sets).await {
        assert_eq!(text(&r), "+OK\r\n");
    }
    // spread over every node
    for node in &cluster.nodes {
        let n = text(&node.client().await.cmd(&[b"DBSIZE"]).await);
        assert_ne!(n, ":0\r\n");
    }
    // each node's latency is in /metrics, not only the seed's
    let metrics = common::admin_get(&strata, "/metrics").await.body;
    for node in &cluster.nodes {
        let timed = common::metric(
            &metrics,
            "strata_cache_server_latency_seconds_count",
            &format!("backend=\"{}\"", node.addr),
        );
        assert!(timed.is_some_and(|n| n > 0.0), "{}: {metrics}", node.addr);
    }
    assert_eq!(text(&c.cmd(&[b"DBSIZE"]).await), ":2000\r\n");
    // a reload that leaves the cluster as it was keeps its map: no moment without one
    strata.signal(libc::SIGHUP);
    strata
        .wait_log("SIGHUP: reloaded", std::time::Duration::from_secs(5))
        .await;
    assert_eq!(text(&c.cmd(&[b"DBSIZE"]).await), ":2000\r\n");
    // SCAN walks every node behind one cursor
    let mut seen = std::collections::BTreeSet::new();
    let mut cursor = b"0".to_vec();
    for _ in 0..1000 {
        let reply = c.cmd(&[b"SCAN", &cursor, b"COUNT", b"500"]).await;
        let mut v = strata_cache::resp::Values::new(&reply);
        use strata_cache::resp::Value;
        v.next();
        let Some(Value::Bulk(Some(next))) = v.next() else {
            panic!("{}", text(&reply))
        };
        let next = next.to_vec();
        let Some(Value::Array(Some(n))) = v.next() else {
            panic!("{}", text(&reply))
        };
        for _ in 0..n {
            if let Some(Value::Bulk(Some(k))) = v.next() {
                seen.insert(k.to_vec());
            }
        }
        if next == b"0" {
            break;
        }
        cursor = next;
    }
    assert_eq!(seen.len(), 2000);
    let mget = text(
        &c.cmd(&[b"MGET", b"key:1", b"key:2", b"key:3", b"nope"])
            .await,
    );
    assert_eq!(mget, "*4\r\n$2\r\nv1\r\n$2\r\nv2\r\n$2\r\nv3\r\n$-1\r\n");
    assert_eq!(
        text(&c.cmd(&[b"DEL", b"key:1", b"key:2", b"nope"]).await),
        ":2\r\n"
    );
    let r = text(&c.cmd(&[b"RENAME", b"key:3", b"key:4"]).await);
    assert!(r.starts_with("-CROSSSLOT"), "{r}");
    assert_eq!(
        text(&c.cmd(&[b"MSET", b"{u}a", b"1", b"{u}b", b"2"]).await),
        "+OK\r\n"
    );
    assert_eq!(
        text(&c.cmd(&[b"RENAME", b"{u}a", b"{u}c"]).await),
        "+OK\r\n"
    );
    // publish/subscribe: a cluster broadcasts, so a subscriber hears each message once
    let mut sub = Resp::connect(strata.addr("cache:c")).await.unwrap();
    assert!(text(&sub.cmd(&[b"SUBSCRIBE", b"news"]).await).contains("subscribe"));
    let r = text(&sub.cmd(&[b"PSUBSCRIBE", b"n*"]).await);
    assert!(r.ends_with(":2\r\n"), "{r}");
    c.cmd(&[b"PUBLISH", b"news", b"hi"]).await;
    let first = text(&sub.reply().await.unwrap());
    let second = text(&sub.reply().await.unwrap());
    let mut got = [first, second];
    got.sort();
    assert!(
        got[0].contains("message") && got[1].contains("pmessage"),
        "{got:?}"
    );
    assert_eq!(
        text(&sub.cmd(&[b"PING"]).await),
        "*2\r\n$4\r\npong\r\n$0\r\n\r\n",
        "no duplicate message"
    );
    // a transaction runs on the node of its keys' slot
    let tx = [
        cmd(&["WATCH", "{t}a"]),
        cmd(&["MULTI"]),
        cmd(&["SET", "{t}a", "1"]),
        cmd(&["INCR", "{t}b"]),
        cmd(&["EXEC"]),
    ];
    let replies: Vec<String> = c.pipeline_text(&tx).await;
    assert_eq!(replies[4], "*2\r\n+OK\r\n:1\r\n", "{replies:?}");
    let tx = [
        cmd(&["MULTI"]),
        cmd(&["SET", "{t}a", "1"]),
        cmd(&["SET", "{other}a", "1"]),
        cmd(&["EXEC"]),
    ];
    let replies: Vec<String> = c.pipeline_text(&tx).await;
    assert!(
        replies[2].starts_with("-CROSSSLOT") && replies[3].starts_with("-EXECABORT"),
        "{replies:?}"
    );
    // a blocking command waits on the node of its key's slot
    assert_eq!(text(&c.cmd(&[b"RPUSH", b"queue", b"job"]).await), ":1\r\n");
    assert_eq!(
        text(&c.cmd(&[b"BLPOP", b"queue", b"1"]).await),
        "*2\r\n$5\r\nqueue\r\n$3\r\njob\r\n"
    );
    // slots move to another node: MOVED is followed, every key is still found
    cluster.reshard(1000);
    // a blocking command too: a list put straight on the node a moved slot went to is
    // popped through Strata, whose map may not know the move yet
    let mut second = cluster.nodes[1].client().await;
    let moved_key = (0..)
        .map(|i| format!("q{i}"))
        .find(|k| strata_cache::cluster::slot(k.as_bytes()) < 1000)
        .unwrap();
    assert_eq!(
        text(&second.cmd(&[b"RPUSH", moved_key.as_bytes(), b"job"]).await),
        ":1\r\n",
        "slot {} did not move to the second node",
        strata_cache::cluster::slot(moved_key.as_bytes())
    );
    let popped = text(&c.cmd(&[b"BLPOP", moved_key.as_bytes(), b"2"]).await);
    assert_eq!(
        popped,
        format!("*2\r\n${}\r\n{moved_key}\r\n$3\r\njob\r\n", moved_key.len())
    );
    let gets: Vec<Vec<Vec<u8>>> = (3..2000)
        .map(|i| cmd(&["GET", &format!("key:{i}")]))
        .collect();
    for (i, r) in (3..2000).zip(c.pipeline(&gets).await) {
        let want = format!("v{i}");
        assert_eq!(
            text(&r),
            format!("${}\r\n{want}\r\n", want.len()),
            "key:{i}"
        );
    }
    let status = common::admin_get(&strata, "/status").await;
    let v: serde_json::Value = serde_json::from_str(&status.body).unwrap();
    assert_eq!(
        v["cache"][0]["cluster"]["nodes"]
            .as_array()
            .map(|n| n.len()),
        Some(3),
        "{v}"
    );
    // the dashboard's latency graph counts the cluster's nodes (the commands' servers), not
    // only its seeds
    eventually(
        std::time::Duration::from_secs(15),
        "a latency point in the pool's history",
        || async {
            let mut c = Resp::connect(strata.addr("cache:c")).await.unwrap();
            c.cmd(&[b"GET", b"key:5"]).await;
            let h = common::admin_get(&strata, "/history").await;
            let h: serde_json::Value = serde_json::from_str(&h.body).unwrap();
            h["series"][0]["points"]
                .as_array()
                .is_some_and(|p| p.iter().any(|p| !p[3].is_null()))
        },
    )
    .await;
}

/// A TCP proxy in front of a server whose answers can be held back: what the server is sent
/// goes through at once (and is recorded), its replies wait while the gate is shut.
struct Gate {
    addr: SocketAddr,
    open: tokio::sync::watch::Sender<bool>,
    /// While true, the gate shuts itself as it passes on the next PTTL (what Strata sends first
    /// when it copies a moved key), and the flag goes back to false: replies to commands before
    /// it pass (a shared connection may hold the PTTL back until they have).
    shut_at_pttl: tokio::sync::watch::Sender<bool>,
    /// While true, bytes sent to the server that hold a RESTORE wait (other connections
    /// carry on).
    hold_restore: tokio::sync::watch::Sender<bool>,
    sent: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    task: tokio::task::AbortHandle,
}

impl Gate {
    async fn start(server: SocketAddr) -> Gate {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (open, _) = tokio::sync::watch::channel(true);
        let (hold_restore, _) = tokio::sync::watch::channel(false);
        let (shut_at_pttl, _) = tokio::sync::watch::channel(false);
        let sent: std::sync::Arc<std::sync::Mutex<Vec<u8>>> = Default::default();
        let (gate, log, hold) = (open.clone(), sent.clone(), hold_restore.clone());
        let shut_at = shut_at_pttl.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(upstream) = tokio::net::TcpStream::connect(server).await else {
                    continue;
                };
                let (mut cr, mut cw) = client.into_split();
                let (mut ur, mut uw) = upstream.into_split();
                let log = log.clone();
                let mut held = hold.subscribe();
                let (shut, shut_at) = (gate.clone(), shut_at.clone());
                tokio::spawn(async move {
                    let mut buf = [0u8; 65536];
                    while let Ok(n @ 1..) = cr.read(&mut buf).await {
                        // shut before the PTTL reaches the server, so its reply waits, and
                        // before it is logged, which the test waits for; once
                        if buf[..n].windows(4).any(|w| w == b"PTTL")
                            && shut_at.send_if_modified(std::mem::take)
                        {
                            shut.send_replace(false);
                        }
                        log.lock().unwrap().extend_from_slice(&buf[..n]);
                        if buf[..n].windows(7).any(|w| w == b"RESTORE")
                            && held.wait_for(|h| !*h).await.is_err()
                        {
                            return;
                        }
                        if uw.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                });
                let mut open = gate.subscribe();
                tokio::spawn(async move {
                    let mut buf = [0u8; 65536];
                    while let Ok(n @ 1..) = ur.read(&mut buf).await {
                        if open.wait_for(|o| *o).await.is_err()
                            || cw.write_all(&buf[..n]).await.is_err()
                        {
                            return;
                        }
                    }
                });
            }
        })
        .abort_handle();
        Gate {
            addr,
            open,
            shut_at_pttl,
            hold_restore,
            sent,
            task,
        }
    }

    fn sent(&self) -> String {
        String::from_utf8_lossy(&self.sent.lock().unwrap()).into_owned()
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A pool with hash tags (`{tN}` places every key of N together) over the first two of
/// `servers`, given `setup` through a client, then reloaded to all three: the node and that
/// client.
async fn grown_pool(servers: [SocketAddr; 3], setup: &[Vec<Vec<u8>>]) -> (Strata, Resp) {
    let config = |n: usize| {
        let list: Vec<String> = servers[..n].iter().map(|a| format!("\"{a}:1\"")).collect();
        format!(
            "[[cache]]\nname = \"c\"\nlisten = \"127.0.0.1:0\"\nhash = \"murmur\"\nhash_tag = \"{{}}\"\n\
             servers = [{}]\n",
            list.join(", ")
        )
    };
    let strata = Strata::start(&config(2));
    let mut c = Resp::connect(strata.addr("cache:c")).await.unwrap();
    c.pipeline(setup).await;
    std::fs::write(&strata.config, config(3)).unwrap();
    strata.signal(libc::SIGHUP);
    strata
        .wait_log("SIGHUP: reloaded", std::time::Duration::from_secs(10))
        .await;
    (strata, c)
}

/// The first N of `tags` whose keys the reload of [`grown_pool`] moved to the server `new`:
/// a probe `{tN}:probe` written through `c` lands there.
async fn moved_tag(
    c: &mut Resp,
    new: &Redis,
    tags: impl IntoIterator<Item = usize>,
) -> Option<usize> {
    let mut direct = new.client().await;
    for i in tags {
        let probe = format!("{{t{i}}}:probe");
        c.cmd(&[b"SET", probe.as_bytes(), b"x"]).await;
        if text(&direct.cmd(&[b"EXISTS", probe.as_bytes()]).await) == ":1\r\n" {
            return Some(i);
        }
    }
    None
}

/// A DEL of a moved key while read-through is copying it: the copy read the old server before
/// the DEL, and must not restore that value on the new server after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_during_a_read_through_copy_is_not_undone() {
    let redis = [
        Redis::start().await,
        Redis::start().await,
        Redis::start().await,
    ];
    // the first server is reached through a gate that can hold its answers
    let gate = Gate::start(redis[0].addr).await;
    let sets: Vec<Vec<Vec<u8>>> = (0..200)
        .map(|i| cmd(&["SET", &format!("{{t{i}}}:victim"), "old-value"]))
        .collect();
    let (strata, mut a) = grown_pool([gate.addr, redis[1].addr, redis[2].addr], &sets).await;

    // a key on the gated server whose owner is now the new one: a probe with the same hash
    // tag, written through Strata, lands on the new server
    let mut direct = [
        redis[0].client().await,
        redis[1].client().await,
        redis[2].client().await,
    ];
    let mut on_gated = Vec::new();
    for i in 0..200 {
        let key = format!("{{t{i}}}:victim");
        if text(&direct[0].cmd(&[b"EXISTS", key.as_bytes()]).await) == ":1\r\n" {
            on_gated.push(i);
        }
    }
    let victim = moved_tag(&mut a, &redis[2], on_gated)
        .await
        .map(|i| format!("{{t{i}}}:victim"))
        .expect("a key that moved from the first server to the third");

    // A reads the key: the new server lacks it, so Strata reads the old one, whose answers
    // the gate holds (from the copy's first read on: the DEL of the probe's old copy that
    // Strata sent the old server may still be on its way back)
    gate.shut_at_pttl.send_replace(true);
    let mut reader = Resp::connect(strata.addr("cache:c")).await.unwrap();
    let get = cmd(&["GET", &victim]);
    let read = tokio::spawn(async move { reader.pipeline(&[get]).await });
    // (its first read is enough: the connection may hold the second, DUMP, until the first
    // one's answer comes back through the gate)
    eventually(
        std::time::Duration::from_secs(10),
        "the copy read the old server",
        || async { gate.sent().contains("PTTL") },
    )
    .await;
    // B deletes it meanwhile, and is answered
    let mut b = Resp::connect(strata.addr("cache:c")).await.unwrap();
    b.cmd(&[b"DEL", victim.as_bytes()]).await;
    // the old server answers the copy's reads, made before the DEL
    gate.open.send_replace(true);
    let _ = read.await.unwrap();
    assert_eq!(
        text(&b.cmd(&[b"GET", victim.as_bytes()]).await),
        "$-1\r\n",
        "the copy brought back the deleted key"
    );
    assert_eq!(
        text(&direct[2].cmd(&[b"EXISTS", victim.as_bytes()]).await),
        ":0\r\n"
    );
    drop(direct);
}

/// A transaction right after a ring change: its writes that keep part of a moved key (INCR,
/// HSET) work on the value brought over from the old server, as they do outside one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_after_a_ring_change_works_on_the_moved_values() {
    let redis = [
        Redis::start().await,
        Redis::start().await,
        Redis::start().await,
    ];
    let setup: Vec<Vec<Vec<u8>>> = (0..100)
        .flat_map(|i| {
            [
                cmd(&["SET", &format!("{{t{i}}}:n"), "10"]),
                cmd(&["HSET", &format!("{{t{i}}}:h"), "f", "kept"]),
                cmd(&["RPUSH", &format!("{{t{i}}}:l"), "first"]),
            ]
        })
        .collect();
    let (_strata, mut c) = grown_pool([redis[0].addr, redis[1].addr, redis[2].addr], &setup).await;
    // a tag whose keys now belong to the new server: a probe with it lands there
    let tag = moved_tag(&mut c, &redis[2], 0..100)
        .await
        .map(|i| format!("{{t{i}}}"))
        .expect("a hash tag that moved to the new server");
    let (n, h) = (format!("{tag}:n"), format!("{tag}:h"));
    // optimistic locking as clients do it: WATCH first, on a key that still lives on its old
    // server (WATCH must not delete that copy, and no copy may change the key behind it)
    assert_eq!(text(&c.cmd(&[b"WATCH", n.as_bytes()]).await), "+OK\r\n");
    let replies = c
        .pipeline(&[
            cmd(&["MULTI"]),
            cmd(&["INCR", &n]),
            cmd(&["HSET", &h, "g", "1"]),
            cmd(&["HGET", &h, "f"]),
            cmd(&["EXEC"]),
        ])
        .await;
    assert_eq!(
        text(&replies[4]),
        "*3\r\n:11\r\n:1\r\n$4\r\nkept\r\n",
        "the transaction ran on the values from before the ring change"
    );
    // a blocking pop of a moved list pops what the list held (it was deleted unread before)
    let l = format!("{tag}:l");
    assert_eq!(
        text(&c.cmd(&[b"BLPOP", l.as_bytes(), b"1"]).await),
        format!("*2\r\n${}\r\n{l}\r\n$5\r\nfirst\r\n", l.len())
    );
    // and the old copies are gone, as after any write of a moved key
    for old in &redis[..2] {
        let mut o = old.client().await;
        assert_eq!(
            text(&o.cmd(&[b"EXISTS", n.as_bytes(), h.as_bytes()]).await),
            ":0\r\n"
        );
    }
}

/// The same race where ordering can't help: the copy's RESTORE has gone out on the pooler's
/// connection to the new server but not run yet, and a RESP3 client's DEL runs first on its own
/// connection. Once the restore is answered, Strata deletes the key again if it still holds
/// exactly the restored value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resp3_delete_that_runs_before_a_restore_already_sent_is_made_good() {
    let redis = [
        Redis::start().await,
        Redis::start().await,
        Redis::start().await,
    ];
    // the new server is reached through a gate that can hold a RESTORE
    let gate = Gate::start(redis[2].addr).await;
    let sets: Vec<Vec<Vec<u8>>> = (0..200)
        .map(|i| cmd(&["SET", &format!("{{t{i}}}:victim"), "old-value"]))
        .collect();
    let (strata, mut a) = grown_pool([redis[0].addr, redis[1].addr, gate.addr], &sets).await;
    let victim = moved_tag(&mut a, &redis[2], 0..200)
        .await
        .map(|i| format!("{{t{i}}}:victim"))
        .expect("a key that moved to the third server");

    gate.hold_restore.send_replace(true);
    let mut reader = Resp::connect(strata.addr("cache:c")).await.unwrap();
    let get = cmd(&["GET", &victim]);
    let read = tokio::spawn(async move { reader.pipeline(&[get]).await });
    eventually(
        std::time::Duration::from_secs(10),
        "the restore went out",
        || async { gate.sent().contains("RESTORE") },
    )
    .await;
    let mut b = Resp::connect(strata.addr("cache:c")).await.unwrap();
    let hello = b.cmd(&[b"HELLO", b"3"]).await;
    assert!(text(&hello).starts_with('%'), "{}", text(&hello));
    assert_eq!(
        text(&b.cmd(&[b"DEL", victim.as_bytes()]).await),
        ":0\r\n",
        "it ran before the restore"
    );
    gate.hold_restore.send_replace(false);
    let _ = read.await.unwrap();
    assert_eq!(
        text(&b.cmd(&[b"GET", victim.as_bytes()]).await),
        "_\r\n",
        "the restore brought back the deleted key"
    );
}
