//! The cache layer's memcached side, against real memcached servers: the same conversation
//! with one memcached directly and with Strata over two.

use crate::common;

use common::redis::{text_exchange, Memcached};
use common::Strata;
use tokio::net::TcpStream;

fn pool(servers: &[std::net::SocketAddr]) -> String {
    let servers: Vec<String> = servers.iter().map(|a| format!("\"{a}:1\"")).collect();
    format!(
        "[[cache]]\nname = \"m\"\nlisten = \"127.0.0.1:0\"\nprotocol = \"memcache\"\nhash = \"murmur\"\nservers = [{}]\n",
        servers.join(", ")
    )
}

/// A conversation whose every answer ends in one of these, in order.
const CONVERSATION: &[(&str, &str)] = &[
    ("set a 1 0 3\r\none\r\n", "STORED\r\n"),
    ("set b 2 0 3\r\ntwo\r\n", "STORED\r\n"),
    ("add a 0 0 1\r\nx\r\n", "NOT_STORED\r\n"),
    ("append b 0 0 1\r\n!\r\n", "STORED\r\n"),
    ("prepend b 0 0 1\r\n<\r\n", "STORED\r\n"),
    ("replace nope 0 0 1\r\nx\r\n", "NOT_STORED\r\n"),
    ("set n 0 0 2\r\n10\r\n", "STORED\r\n"),
    ("incr n 5\r\n", "15\r\n"),
    ("decr n 20\r\n", "0\r\n"),
    ("incr nope 1\r\n", "NOT_FOUND\r\n"),
    ("touch a 100\r\n", "TOUCHED\r\n"),
    ("get a b nope n a c d e f g h\r\n", "END\r\n"),
    ("delete n\r\n", "DELETED\r\n"),
    ("delete n\r\n", "NOT_FOUND\r\n"),
    ("set q 0 0 1 noreply\r\nq\r\nget q\r\n", "END\r\n"),
    ("get n\r\n", "END\r\n"),
    ("bogus\r\n", "ERROR\r\n"),
    ("get\r\n", "\r\n"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conversation_through_two_servers_goes_as_with_one_memcached() {
    let direct = Memcached::start().await;
    let shards = [Memcached::start().await, Memcached::start().await];
    let strata = Strata::start(&pool(&[shards[0].addr, shards[1].addr]));
    let mut one = TcpStream::connect(direct.addr).await.unwrap();
    let mut via = TcpStream::connect(strata.addr("cache:m")).await.unwrap();
    for (request, end) in CONVERSATION {
        let want = text_exchange(&mut one, request.as_bytes(), end.as_bytes()).await;
        let got = text_exchange(&mut via, request.as_bytes(), end.as_bytes()).await;
        if *request == "get\r\n" {
            // memcached says ERROR; the proxy says why
            assert_eq!(got, "CLIENT_ERROR bad command line format\r\n");
            continue;
        }
        assert_eq!(got, want, "{request:?}");
    }
    // gets carries the cas unique of the server that holds the key; cas with it works
    let got = text_exchange(&mut via, b"gets a\r\n", b"END\r\n").await;
    let unique = got
        .split_whitespace()
        .nth(4)
        .expect("a cas unique")
        .to_string();
    let cas = format!("cas a 0 0 1 {unique}\r\nz\r\n");
    assert_eq!(
        text_exchange(&mut via, cas.as_bytes(), b"\r\n").await,
        "STORED\r\n"
    );
    assert_eq!(
        text_exchange(&mut via, cas.as_bytes(), b"\r\n").await,
        "EXISTS\r\n"
    );
    // a data block that does not end where its length says closes that client only
    let mut bad = TcpStream::connect(strata.addr("cache:m")).await.unwrap();
    let got = text_exchange(&mut bad, b"set x 0 0 2\r\nabcdef\r\n", b"\r\n").await;
    assert_eq!(got, "CLIENT_ERROR bad data chunk\r\n");
    let got = text_exchange(&mut via, b"version\r\n", b"\r\n").await;
    assert!(got.starts_with("VERSION "), "{got}");
    assert_eq!(
        text_exchange(&mut via, b"get a\r\n", b"END\r\n").await,
        "VALUE a 0 1\r\nz\r\nEND\r\n"
    );
}

/// What reaches a memcached server is whole, well-framed commands: a data block that hides a
/// command stays data, `noreply` is taken off, and nothing of a malformed command (a control
/// character in a key, a block longer than its line says) is sent on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_receive_whole_commands_and_nothing_malformed() {
    let server = common::redis::McRecorder::start().await;
    let strata = Strata::start(&pool(&[server.addr]));
    let addr = strata.addr("cache:m");
    let mut c = TcpStream::connect(addr).await.unwrap();
    // a value that carries a command inside stays one data block
    let sneaky = "x\r\ndelete victim\r\n";
    let set = format!("set k 0 0 {}\r\n{sneaky}\r\n", sneaky.len());
    assert_eq!(
        text_exchange(&mut c, set.as_bytes(), b"\r\n").await,
        "STORED\r\n"
    );
    // noreply: nothing comes back, and the server's reply is not mistaken for the next one's
    let got = text_exchange(&mut c, b"set q 0 0 1 noreply\r\nq\r\nget q\r\n", b"END\r\n").await;
    assert_eq!(got, "END\r\n");
    // a key with a control character is refused on the spot; the client carries on
    let got = text_exchange(&mut c, b"get a\x01b\r\nget ok\r\n", b"END\r\n").await;
    assert_eq!(got, "CLIENT_ERROR bad command line format\r\nEND\r\n");
    // a block longer than its line says: this client is closed, nothing reaches the server
    let mut bad = TcpStream::connect(addr).await.unwrap();
    let got = text_exchange(&mut bad, b"set evil 0 0 1\r\nabc\r\nget evil\r\n", b"\r\n").await;
    assert_eq!(got, "CLIENT_ERROR bad data chunk\r\n");
    // the first client is served as before
    assert_eq!(
        text_exchange(&mut c, b"delete k\r\n", b"\r\n").await,
        "DELETED\r\n"
    );
    let commands = server.commands();
    let lines: Vec<String> = commands
        .iter()
        .map(|(w, _)| String::from_utf8_lossy(&w.join(&b' ')).into_owned())
        .collect();
    assert_eq!(
        lines,
        ["set k 0 0 18", "set q 0 0 1", "get q", "get ok", "delete k"]
    );
    assert_eq!(commands[0].1.as_deref(), Some(sneaky.as_bytes()));
}

/// After a reload adds a third memcached, a moved key misses on its new server once and is
/// read through from its old one with its flags and the time it has left: every key is found
/// right after the ring change, by single and by multi-key gets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_memcached_does_not_cause_a_miss_storm() {
    let servers = [
        Memcached::start().await,
        Memcached::start().await,
        Memcached::start().await,
    ];
    let addrs: Vec<std::net::SocketAddr> = servers.iter().map(|s| s.addr).collect();
    let strata = Strata::start(&pool(&addrs[..2]));
    const KEYS: usize = 600;
    let mut c = TcpStream::connect(strata.addr("cache:m")).await.unwrap();
    let mut sets = String::new();
    for i in 0..KEYS {
        let v = format!("v{i}");
        sets.push_str(&format!("set k{i} 7 1000 {}\r\n{v}\r\n", v.len()));
    }
    let stored = text_exchange(
        &mut c,
        sets.as_bytes(),
        b"STORED\r\n".repeat(KEYS).as_slice(),
    )
    .await;
    assert_eq!(stored.matches("STORED\r\n").count(), KEYS);
    std::fs::write(&strata.config, pool(&addrs)).unwrap();
    strata.signal(libc::SIGHUP);
    strata
        .wait_log("SIGHUP: reloaded", std::time::Duration::from_secs(10))
        .await;
    // writes that keep part of a moved key work on its value, brought over first
    for i in 0..60 {
        let r = text_exchange(
            &mut c,
            format!("append k{i} 0 0 1\r\n!\r\n").as_bytes(),
            b"\r\n",
        )
        .await;
        assert_eq!(r, "STORED\r\n", "k{i}");
        let got = text_exchange(&mut c, format!("get k{i}\r\n").as_bytes(), b"END\r\n").await;
        assert!(got.contains(&format!("\r\nv{i}!\r\n")), "{got}");
    }
    // multi-key gets of 50 keys each, then the same keys one by one: every value is there
    let mut found = 0;
    for chunk in (0..KEYS).collect::<Vec<_>>().chunks(50) {
        let keys: Vec<String> = chunk.iter().map(|i| format!("k{i}")).collect();
        let get = format!("get {}\r\n", keys.join(" "));
        let got = text_exchange(&mut c, get.as_bytes(), b"END\r\n").await;
        found += got.matches("VALUE ").count();
    }
    assert_eq!(found, KEYS);
    for i in [KEYS / 2, KEYS - 1] {
        let one = text_exchange(&mut c, format!("get k{i}\r\n").as_bytes(), b"END\r\n").await;
        assert_eq!(
            one,
            format!("VALUE k{i} 7 {}\r\nv{i}\r\nEND\r\n", format!("v{i}").len())
        );
    }
    // the third server holds the keys that moved, with their flags and time left
    let mut third = TcpStream::connect(addrs[2]).await.unwrap();
    let mut moved = None;
    for i in 0..KEYS {
        let r = text_exchange(&mut third, format!("mg k{i} t f\r\n").as_bytes(), b"\r\n").await;
        if r.starts_with("HD") {
            moved = Some(r);
            break;
        }
    }
    let moved = moved.expect("no key moved to the third server");
    let ttl: i64 = moved
        .split(' ')
        .find_map(|w| w.trim().strip_prefix('t').map(|t| t.parse().unwrap()))
        .unwrap();
    assert!((1..=1000).contains(&ttl), "{moved}");
    assert!(moved.contains(" f7"), "{moved}");
}
