//! The database listener against hostile bytes straight over TCP: startup packets with lengths
//! out of range, truncated, malformed or of another protocol, an SSLRequest before a good
//! startup, and broken message lengths after login, each answered with exactly the bytes
//! expected and a close, while a psql logged in before keeps working; and a fake PostgreSQL
//! server that records exactly what Strata sends it, and one the test plays step by step (reads
//! sharing a connection, and a cancel request that hits the wrong one).

use crate::common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use common::postgres::{
    error_response, log_in, message, query, read_message, startup, unnamed_batch, until_closed,
    until_ready, Postgres, PsqlSession, LIMIT, NO_PARAMETERS, SUPERUSER_PASSWORD,
};
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A `[[database]]` listener in front of `pg` whose clients log in with trust.
fn config(pg: SocketAddr) -> String {
    format!(
        "[[database]]\nname = \"app\"\nlisten = \"127.0.0.1:0\"\nservers = [\"{pg}\"]\n\
         auth_type = \"trust\"\ncheck_user = \"postgres\"\ncheck_interval = \"100ms\"\n\
         [[database.users]]\nname = \"app\"\npassword = \"secret\"\n\
         [[database.users]]\nname = \"postgres\"\npassword = \"{SUPERUSER_PASSWORD}\"\n"
    )
}

/// A first packet: its length word, `code`, then `rest`.
fn first_packet(code: u32, rest: &[u8]) -> Vec<u8> {
    let mut p = ((rest.len() + 8) as u32).to_be_bytes().to_vec();
    p.extend_from_slice(&code.to_be_bytes());
    p.extend_from_slice(rest);
    p
}

/// The ErrorResponse Strata sends before closing a client whose startup broke the protocol.
fn fatal_08p01(text: &str) -> Vec<u8> {
    error_response("FATAL", "08P01", text)
}

/// The psql kept open through the hostile clients: it answers `sql` with `expected`.
async fn still_answers(psql: PsqlSession, sql: &'static str, expected: &str) -> PsqlSession {
    let (psql, line) = tokio::task::spawn_blocking(move || {
        let mut psql = psql;
        let line = psql.line(sql);
        (psql, line)
    })
    .await
    .unwrap();
    assert_eq!(line, expected);
    psql
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_clients_get_exact_answers_and_leave_the_others_alone() {
    let pg = Postgres::start();
    pg.user_and_database("app", "secret");
    let strata = Strata::start(&config(pg.addr));
    let db = strata.addr("database:app");
    let psql =
        tokio::task::spawn_blocking(move || PsqlSession::open(db, "app", "secret", "app", &[]))
            .await
            .unwrap();
    let mut psql = still_answers(psql, "select 'before'", "before").await;

    let not_protocol = |why: &str| {
        fatal_08p01(&format!(
            "client sent bytes that are not the protocol: {why}"
        ))
    };
    let good = startup(&[("user", "app"), ("database", "app")]);
    let mut over_limit = 10_001u32.to_be_bytes().to_vec();
    over_limit.extend_from_slice(&[0; 64]);
    let cases: Vec<(&str, Vec<u8>, Vec<u8>)> = vec![
        (
            "a length of 0",
            b"\0\0\0\0\0\x03\0\0user\0app\0\0".to_vec(),
            not_protocol("message length 0 is too short"),
        ),
        (
            "a length of 7",
            b"\0\0\0\x07".to_vec(),
            not_protocol("message length 7 is too short"),
        ),
        (
            "a length over 10,000, refused before its bytes come",
            over_limit,
            not_protocol("message length 10001 is over the limit"),
        ),
        (
            "a negative length",
            b"\xff\xff\xff\xf8\0\x03\0\0".to_vec(),
            not_protocol("message length 4294967288 is over the limit"),
        ),
        (
            "an HTTP request",
            b"GET / HTTP/1.1\r\nHost: db\r\n\r\n".to_vec(),
            not_protocol("message length 1195725856 is over the limit"),
        ),
        (
            "no terminator after the last pair",
            first_packet(0x0003_0000, b"user\0app\0"),
            not_protocol("malformed startup parameters"),
        ),
        (
            "a parameter without a value",
            first_packet(0x0003_0000, b"user\0app\0database\0"),
            not_protocol("malformed startup parameters"),
        ),
        (
            "junk after the terminator",
            first_packet(0x0003_0000, b"user\0app\0\0junk"),
            not_protocol("malformed startup parameters"),
        ),
        (
            "a name that is not UTF-8",
            first_packet(0x0003_0000, b"user\0\xff\xfe\0\0"),
            not_protocol("malformed startup parameters"),
        ),
        (
            "protocol 2.0",
            first_packet(0x0002_0000, b"user\0app\0\0"),
            not_protocol("unsupported protocol 2.0"),
        ),
        (
            "protocol 3.2",
            first_packet(0x0003_0002, b"user\0app\0\0"),
            not_protocol("unsupported protocol 3.2"),
        ),
        (
            "an SSLRequest (1234.5679) of 12 bytes",
            first_packet(80_877_103, b"\0\0\0\0"),
            not_protocol("unsupported protocol 1234.5679"),
        ),
        (
            "an unknown request code, 1234.5681",
            first_packet(80_877_105, b""),
            not_protocol("unsupported protocol 1234.5681"),
        ),
        (
            "an SSLRequest, answered N, then a length of 3",
            [first_packet(80_877_103, b""), 3u32.to_be_bytes().to_vec()].concat(),
            [&b"N"[..], &not_protocol("message length 3 is too short")].concat(),
        ),
        (
            "an SSLRequest twice: each may be asked once",
            [first_packet(80_877_103, b""), first_packet(80_877_103, b"")].concat(),
            [&b"N"[..], &not_protocol("unsupported protocol 1234.5679")].concat(),
        ),
        (
            "a GSSENCRequest twice, an SSLRequest between",
            [
                first_packet(80_877_104, b""),
                first_packet(80_877_103, b""),
                first_packet(80_877_104, b""),
            ]
            .concat(),
            [&b"NN"[..], &not_protocol("unsupported protocol 1234.5680")].concat(),
        ),
    ];
    for (what, bytes, expected) in cases {
        let mut s = TcpStream::connect(db).await.unwrap();
        s.write_all(&bytes).await.unwrap();
        let got = until_closed(&mut s).await;
        assert_eq!(
            got.escape_ascii().to_string(),
            expected.escape_ascii().to_string(),
            "{what}"
        );
    }

    // a startup cut short, the client's side then closed
    let mut s = TcpStream::connect(db).await.unwrap();
    s.write_all(&good[..good.len() - 5]).await.unwrap();
    s.shutdown().await.unwrap();
    assert_eq!(
        until_closed(&mut s).await,
        fatal_08p01("client left during startup")
    );

    // an SSLRequest is refused with N, and the client goes on in clear
    let mut s = asking_for_tls(db, b'N').await;
    s.write_all(&good).await.unwrap();
    let welcome = until_ready(&mut s).await;
    assert_eq!(welcome[0], (b'R', vec![0, 0, 0, 0]), "AuthenticationOk");
    assert_eq!(welcome[welcome.len() - 2].0, b'K');
    assert_eq!(welcome[welcome.len() - 2].1.len(), 8);
    assert_eq!(welcome[welcome.len() - 1], (b'Z', b"I".to_vec()));
    assert!(
        welcome[1..welcome.len() - 2]
            .iter()
            .all(|(t, _)| *t == b'S'),
        "{welcome:?}"
    );
    let answer = query(&mut s, "select 40 + 2").await;
    let tags: Vec<u8> = answer.iter().map(|m| m.0).collect();
    assert_eq!(tags, b"TDCZ", "{answer:?}");
    assert_eq!(answer[1].1, b"\0\x01\0\0\0\x0242");
    assert_eq!(answer[2].1, b"SELECT 1\0");
    s.write_all(&message(b'X', b"")).await.unwrap();
    assert_eq!(until_closed(&mut s).await, b"");

    // After login a broken length ends the connection with nothing more: the stream has lost
    // its message boundaries. (PostgreSQL does the same: "invalid message length" is logged,
    // not sent.) The largest length PostgreSQL refuses is refused at once, not waited for.
    for (what, answered_first, bytes) in [
        ("a length of 3", false, &b"Q\0\0\0\x03"[..]),
        ("a length of 0 after a query answered", true, b"Q\0\0\0\0"),
        ("a negative length", false, b"Q\xff\xff\xff\xff"),
        ("a length of 0x3fffffff", false, b"d\x3f\xff\xff\xff"),
        // a Sync, Flush, Execute, ... carries no SQL nor data: PostgreSQL allows it 10,000
        ("a Sync of 10,001 bytes", false, b"S\0\0\x27\x11"),
        ("an Execute of 10,001 bytes", true, b"E\0\0\x27\x11"),
        // behind a Parse that waits for its Sync: refused on its header all the same
        (
            "a Sync of 10,001 bytes behind a Parse",
            false,
            b"P\0\0\0\x08s1\0\0S\0\0\x27\x11",
        ),
    ] {
        let (mut s, welcome) = log_in(db, &[]).await;
        assert_eq!(welcome.last(), Some(&(b'Z', b"I".to_vec())));
        if answered_first {
            let answer = query(&mut s, "select 1").await;
            assert_eq!(answer.last(), Some(&(b'Z', b"I".to_vec())));
        }
        s.write_all(bytes).await.unwrap();
        assert_eq!(until_closed(&mut s).await, b"", "{what}");
    }

    psql = still_answers(psql, "select 'after'", "after").await;
    drop(psql);
}

/// What the fake server received, per connection, each packet or message whole.
type Received = Arc<Mutex<Vec<Vec<Vec<u8>>>>>;

/// A PostgreSQL server played by the test: trust, a few ParameterStatus, BackendKeyData and
/// ReadyForQuery; every Query answered with CommandComplete and ReadyForQuery.
async fn fake_server() -> (SocketAddr, Received) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let received: Received = Arc::default();
    let log = received.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let log = log.clone();
            let conn = {
                let mut all = log.lock().unwrap();
                all.push(Vec::new());
                all.len() - 1
            };
            tokio::spawn(async move {
                let record = |bytes: Vec<u8>| log.lock().unwrap()[conn].push(bytes);
                let Some(packet) = opening(&mut s, |p| record(p.to_vec())).await else {
                    return;
                };
                record(packet);
                if s.write_all(&fake_welcome()).await.is_err() {
                    return;
                }
                loop {
                    let Some(m) = read_message(&mut s).await else {
                        return;
                    };
                    let tag = m[0];
                    record(m);
                    match tag {
                        b'Q' => {
                            let answer = [message(b'C', b"OK\0"), message(b'Z', b"I")].concat();
                            if s.write_all(&answer).await.is_err() {
                                return;
                            }
                        }
                        b'X' => return,
                        _ => {}
                    }
                }
            });
        }
    });
    (addr, received)
}

/// A PostgreSQL SSLRequest, as Strata sends it to a server (server_tls_mode = "prefer", the
/// default, up) and a client to Strata.
const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];

/// The first packet of a connection after its SSLRequest, if any, which is answered 'N' (as a
/// server without TLS does) and shown to `seen`.
async fn opening(
    s: &mut (impl tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin),
    seen: impl Fn(&[u8]),
) -> Option<Vec<u8>> {
    let packet = read_packet(s).await?;
    if packet != SSL_REQUEST {
        return Some(packet);
    }
    seen(&packet);
    s.write_all(b"N").await.ok()?;
    read_packet(s).await
}

/// A first packet (startup, cancel request), whole.
async fn read_packet(s: &mut (impl tokio::io::AsyncRead + Unpin)) -> Option<Vec<u8>> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).await.ok()?;
    let mut packet = len.to_vec();
    packet.resize((u32::from_be_bytes(len) as usize).max(4), 0);
    s.read_exact(&mut packet[4..]).await.ok()?;
    Some(packet)
}

/// What the fake servers say at login: trust, three ParameterStatus, the backend key
/// (42, 7), ReadyForQuery.
fn fake_welcome() -> Vec<u8> {
    let mut hello = message(b'R', &[0, 0, 0, 0]);
    for (k, v) in [
        ("application_name", ""),
        ("client_encoding", "UTF8"),
        ("server_version", "15.0 (fake)"),
    ] {
        hello.extend_from_slice(&message(b'S', format!("{k}\0{v}\0").as_bytes()));
    }
    hello.extend_from_slice(&message(b'K', &[0, 0, 0, 42, 0, 0, 0, 7]));
    hello.extend_from_slice(&message(b'Z', b"I"));
    hello
}

/// A PostgreSQL server played step by step by the test: it logs Strata in (as
/// [`fake_welcome`]) and then answers nothing by itself. Every message it receives, and every
/// cancel request (its packet), comes out of the first channel; what is put in the second is
/// written to the connection logged in last.
async fn scripted_server() -> (
    SocketAddr,
    tokio::sync::mpsc::UnboundedReceiver<Vec<u8>>,
    tokio::sync::mpsc::UnboundedSender<Vec<u8>>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (heard_tx, heard) = tokio::sync::mpsc::unbounded_channel();
    let (say, said) = tokio::sync::mpsc::unbounded_channel::<Vec<u8>>();
    let said = Arc::new(tokio::sync::Mutex::new(said));
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let (heard_tx, said) = (heard_tx.clone(), said.clone());
            tokio::spawn(async move {
                let Some(packet) = opening(&mut s, |_| {}).await else {
                    return;
                };
                let cancel = packet.get(4..8) == Some(&80_877_102u32.to_be_bytes()[..]);
                let _ = heard_tx.send(packet);
                if cancel || s.write_all(&fake_welcome()).await.is_err() {
                    return;
                }
                let (mut r, mut w) = s.into_split();
                tokio::spawn(async move {
                    let mut said = said.lock().await;
                    while let Some(bytes) = said.recv().await {
                        if w.write_all(&bytes).await.is_err() {
                            return;
                        }
                    }
                });
                while let Some(m) = read_message(&mut r).await {
                    let _ = heard_tx.send(m);
                }
            });
        }
    });
    (addr, heard, say)
}

/// A user's secret that can't log Strata in by itself: with no `check_user`, the one server
/// is taken as the primary without checks, so a fake server sees only the pool's connections.
const SCRAM_ONLY: &str = "SCRAM-SHA-256$4096:c2FsdHNhbHQ=$WdgDeNvIvjOQwS5zAOX4eI6QNAgNaa6VGz5zzNpcTaM=:Sqjr3kNgZo0E7iz0rbkWqAQ3rtVYjc2NTFZdnkU7CMU=";

/// Strata in front of the fake `server` alone: trust, one server connection, and `extra` in
/// its `[[database]]`. The only user has a SCRAM secret, which can't log Strata in by itself
/// (see [`SCRAM_ONLY`]), so the server sees only the pool's connections.
fn before_fake(server: SocketAddr, extra: &str) -> Strata {
    Strata::start(&format!(
        "[[database]]\nname = \"app\"\nlisten = \"127.0.0.1:0\"\nservers = [\"{server}\"]\n\
         auth_type = \"trust\"\npool_size = 1\n{extra}\n\
         [[database.users]]\nname = \"app\"\npassword = \"{SCRAM_ONLY}\"\n"
    ))
}

/// The welcome a client gets, with the BackendKeyData's key (random) zeroed.
fn masked(welcome: Vec<(u8, Vec<u8>)>) -> Vec<(u8, Vec<u8>)> {
    welcome
        .into_iter()
        .map(|(t, c)| {
            if t == b'K' {
                (t, vec![0; c.len()])
            } else {
                (t, c)
            }
        })
        .collect()
}

fn parameter_status(name: &str, value: &str) -> (u8, Vec<u8>) {
    (b'S', format!("{name}\0{value}\0").into_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fake_server_receives_exactly_the_startup_and_the_parameters_strata_sends() {
    let (server, received) = fake_server().await;
    // no check_user (the only user has a SCRAM secret, which can't log in by itself): the
    // single server is taken as the primary; the fake server asks for no password
    let strata = before_fake(server, "");
    let db = strata.addr("database:app");

    // a client that sets application_name (with a quote), and a parameter the pooler has no
    // slot for
    let (mut a, welcome) = log_in(
        db,
        &[
            ("application_name", "it's a"),
            ("client_encoding", "UTF8"),
            ("not_a_carried_one", "x"),
        ],
    )
    .await;
    let hello = |app: &str| {
        vec![
            (b'R', vec![0, 0, 0, 0]),
            parameter_status("application_name", app),
            parameter_status("client_encoding", "UTF8"),
            parameter_status("server_version", "15.0 (fake)"),
            (b'K', vec![0; 8]),
            (b'Z', b"I".to_vec()),
        ]
    };
    assert_eq!(masked(welcome), hello("it's a"));
    let ok = vec![(b'C', b"OK\0".to_vec()), (b'Z', b"I".to_vec())];
    assert_eq!(query(&mut a, "select 1").await, ok);
    a.write_all(&message(b'X', b"")).await.unwrap();
    assert_eq!(until_closed(&mut a).await, b"");

    // a client that sets nothing gets the server's default back on the same connection
    let (mut b, welcome) = log_in(db, &[]).await;
    assert_eq!(masked(welcome), hello(""));
    assert_eq!(query(&mut b, "select 2").await, ok);

    let q = |sql: &str| message(b'Q', format!("{sql}\0").as_bytes());
    let expected = vec![vec![
        // TLS asked for first (server_tls_mode = "prefer", the default), and on 'N' the
        // login goes on in clear on the same connection
        SSL_REQUEST.to_vec(),
        // the startup packet: user and database only
        b"\0\0\0\x1f\0\x03\0\0user\0app\0database\0app\0\0".to_vec(),
        // a parameter the pooler has no slot for is checked at login, which leaves it set...
        q("SELECT set_config(E'not_a_carried_one', E'x', false)"),
        // ...so the client's own transaction sets only what differs
        q("SELECT set_config(E'application_name', E'it''s a', false)"),
        q("select 1"),
        // another client gets the connection reset first, its identity included
        q("SET SESSION AUTHORIZATION DEFAULT; RESET ROLE; RESET ALL; DEALLOCATE ALL"),
        q("SELECT set_config(E'application_name', E'', false)"),
        q("select 2"),
    ]];
    let got = received.lock().unwrap().clone();
    let show = |all: &Vec<Vec<Vec<u8>>>| {
        all.iter()
            .map(|c| {
                c.iter()
                    .map(|m| m.escape_ascii().to_string())
                    .collect::<Vec<_>>()
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(show(&got), show(&expected));
}

/// Reads whole tagged messages until one of type `tag` (included).
async fn until_tag(stream: &mut TcpStream, tag: u8) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    loop {
        let mut head = [0u8; 5];
        tokio::time::timeout(LIMIT, stream.read_exact(&mut head))
            .await
            .unwrap_or_else(|_| panic!("no {} after {out:?}", tag as char))
            .expect("read");
        let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
        let mut contents = vec![0u8; len - 4];
        stream.read_exact(&mut contents).await.expect("read");
        out.push((head[0], contents));
        if head[0] == tag {
            return out;
        }
    }
}

/// PostgreSQL with user and database `app` (where `app` ran `setup`, unless empty), and
/// Strata in front of it (trust) with `extra` in its listener; the listener's address.
fn trusting(setup: &str, extra: &str) -> (Postgres, Strata, SocketAddr) {
    let pg = Postgres::start();
    pg.user_and_database("app", "secret");
    if !setup.is_empty() {
        common::postgres::psql(pg.addr, "app", "secret", "app", setup).unwrap();
    }
    let cfg = config(pg.addr).replace(
        "auth_type = \"trust\"\n",
        &format!("auth_type = \"trust\"\n{extra}\n"),
    );
    let strata = Strata::start(&cfg);
    let db = strata.addr("database:app");
    (pg, strata, db)
}

/// PostgreSQL with user and database `app`, and Strata in front of it (trust) with one server
/// connection; the listener's address.
fn one_server_connection() -> (Postgres, Strata, SocketAddr) {
    trusting("", "pool_size = 1")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_extended_protocol_copy_gives_its_connection_back() {
    let (pg, _strata, db) = one_server_connection();
    common::postgres::psql(pg.addr, "app", "secret", "app", "create table t (n int)").unwrap();
    let (mut s, _) = log_in(db, &[]).await;
    // as libpq sends COPY through PQexecParams: Parse, Bind, Execute and a Sync, which the
    // server reads in copy mode and ignores
    let batch = unnamed_batch("COPY t FROM STDIN", NO_PARAMETERS, true);
    s.write_all(&batch).await.unwrap();
    let got = until_tag(&mut s, b'G').await;
    assert_eq!(got.iter().map(|(t, _)| *t).collect::<Vec<_>>(), b"12G");
    let rest = [
        message(b'd', b"1\n2\n3\n"),
        message(b'c', b""),
        message(b'S', b""),
    ]
    .concat();
    s.write_all(&rest).await.unwrap();
    let done = until_ready(&mut s).await;
    assert_eq!(
        done.iter().map(|(t, _)| *t).collect::<Vec<_>>(),
        b"CZ",
        "{done:?}"
    );
    assert_eq!(done[1].1, b"I");
    // the only server connection is free again: another client gets it at once
    let count = query(&mut log_in(db, &[]).await.0, "select count(*) from t").await;
    let row = count.iter().find(|(t, _)| *t == b'D').expect("a row");
    assert!(row.1.ends_with(b"3"), "{count:?}");
}

/// `client_idle_timeout` reaches a client that holds nothing though it stopped half-way
/// through a message (which a client that vanished leaves behind): it is told 57P05, exactly,
/// and closed, and the listener serves on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_mid_message_is_let_go_at_client_idle_timeout() {
    let (_pg, _strata, db) = trusting("", "client_idle_timeout = \"1s\"");
    let (mut stalled, _) = log_in(db, &[]).await;
    // a Query that says 100 bytes follow, and 9 of them
    let mut half = vec![b'Q'];
    half.extend_from_slice(&104u32.to_be_bytes());
    half.extend_from_slice(b"select 1;");
    stalled.write_all(&half).await.unwrap();
    let told = until_closed(&mut stalled).await;
    assert_eq!(
        told,
        error_response(
            "FATAL",
            "57P05",
            "terminating connection due to idle-session timeout (client_idle_timeout)"
        ),
        "{}",
        told.escape_ascii()
    );
    // meanwhile a client that talks is served
    let (mut talking, _) = log_in(db, &[]).await;
    let answer = query(&mut talking, "select 'served'").await;
    assert!(
        answer
            .iter()
            .any(|(t, body)| *t == b'D' && body.ends_with(b"served")),
        "{answer:?}"
    );
}

/// PostgreSQL with user and database `app` and a table `t (n int)`, and Strata in front of it
/// (trust) with one server connection, waited for up to `wait`; the listener's address.
fn one_connection_and_a_table(wait: &str) -> (Postgres, Strata, SocketAddr) {
    trusting(
        "create table t (n int)",
        &format!("pool_size = 1\nquery_wait_timeout = \"{wait}\""),
    )
}

/// In transaction mode a lone plain BEGIN is answered by Strata and goes to the server ahead
/// of the transaction's first statement: a client's BEGIN (simple, extended, or a prepared
/// statement's) does not wait for a server connection, a transaction that ran nothing ends
/// without one, and what runs after the BEGIN is still one transaction on the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_begin_waits_for_no_connection_and_its_transaction_runs_whole_on_the_server() {
    let (pg, _strata, db) = one_connection_and_a_table("3s");
    let tags = |got: &[(u8, Vec<u8>)]| got.iter().map(|(t, _)| *t).collect::<Vec<u8>>();
    // the command tags and the transaction status an answer says, as text
    let said = |got: &[(u8, Vec<u8>)]| {
        let text = |tag: u8| {
            got.iter()
                .filter(|(t, _)| *t == tag)
                .map(|(_, body)| {
                    String::from_utf8_lossy(body)
                        .trim_end_matches('\0')
                        .to_string()
                })
                .collect::<Vec<_>>()
                .join(",")
        };
        format!("{} {}", text(b'C'), text(b'Z'))
    };
    // the only server connection, held by a transaction that has written
    let (mut holder, _) = log_in(db, &[]).await;
    query(&mut holder, "begin").await;
    let held = query(&mut holder, "insert into t values (1)").await;
    assert_eq!(said(&held), "INSERT 0 1 T", "{held:?}");

    // a simple BEGIN, and a transaction that runs nothing
    let (mut c, _) = log_in(db, &[]).await;
    let got = query(&mut c, "BEGIN;").await;
    assert_eq!(tags(&got), b"CZ", "{got:?}");
    assert_eq!(said(&got), "BEGIN T");
    let got = query(&mut c, "end").await;
    assert_eq!(said(&got), "COMMIT I");
    // an extended-protocol one (as libpq's PQexecParams sends it), and a ROLLBACK
    c.write_all(&unnamed_batch("START TRANSACTION", NO_PARAMETERS, true))
        .await
        .unwrap();
    let got = until_ready(&mut c).await;
    assert_eq!(tags(&got), b"12CZ", "{got:?}");
    assert_eq!(said(&got), "START TRANSACTION T");
    let got = query(&mut c, "rollback").await;
    assert_eq!(said(&got), "ROLLBACK I");
    // a prepared BEGIN (pgbench -M prepared): prepared, then bound and run
    let prepare = [message(b'P', b"b\0BEGIN\0\0\0"), message(b'S', b"")].concat();
    c.write_all(&prepare).await.unwrap();
    assert_eq!(tags(&until_ready(&mut c).await), b"1Z");
    let run = [
        message(b'B', b"\0b\0\0\0\0\0\0\0"),
        message(b'E', b"\0\0\0\0\0"),
        message(b'S', b""),
    ]
    .concat();
    c.write_all(&run).await.unwrap();
    let got = until_ready(&mut c).await;
    assert_eq!(tags(&got), b"2CZ", "{got:?}");
    assert_eq!(said(&got), "BEGIN T");

    // its first statement waits for the connection, and runs in the transaction begun
    let insert = [message(b'Q', b"insert into t values (2)\0")].concat();
    c.write_all(&insert).await.unwrap();
    let committed = query(&mut holder, "commit").await;
    assert_eq!(said(&committed), "COMMIT I", "{committed:?}");
    let got = until_ready(&mut c).await;
    assert_eq!(said(&got), "INSERT 0 1 T");
    let got = query(&mut c, "select count(*) from t").await;
    assert!(
        got.iter()
            .any(|(t, body)| *t == b'D' && body.ends_with(b"2")),
        "{got:?}"
    );
    let got = query(&mut c, "rollback").await;
    assert_eq!(said(&got), "ROLLBACK I");
    // rolled back on the server: the row inserted after the BEGIN is gone
    let count = common::postgres::psql(pg.addr, "app", "secret", "app", "select count(*) from t");
    assert_eq!(count.as_deref(), Ok("1"));
}

/// A transaction begun by Strata fails as PostgreSQL's would when its first statement can't
/// get a connection: the client is told the transaction failed (status E), what it sends next
/// is refused until it ends the transaction, and nothing of it runs on its own. And a client
/// that leaves right after its BEGIN went to the server (behind a message the server ignores)
/// leaves the connection rolled back, so the next client's statements commit as they should.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_begun_by_strata_fails_whole_and_leaves_nothing_open() {
    let (pg, _strata, db) = one_connection_and_a_table("1s");
    let status = |got: &[(u8, Vec<u8>)]| {
        let z = got.last().map(|(_, body)| body.clone()).unwrap_or_default();
        String::from_utf8_lossy(&z).into_owned()
    };
    let errors = |got: &[(u8, Vec<u8>)]| {
        got.iter()
            .filter(|(t, _)| *t == b'E')
            .map(|(_, body)| String::from_utf8_lossy(body).into_owned())
            .collect::<Vec<_>>()
    };
    let (mut holder, _) = log_in(db, &[]).await;
    query(&mut holder, "begin").await;
    query(&mut holder, "insert into t values (1)").await;

    let (mut c, _) = log_in(db, &[]).await;
    assert_eq!(status(&query(&mut c, "begin").await), "T");
    // no connection within query_wait_timeout: the transaction has failed
    let got = query(&mut c, "insert into t values (2)").await;
    assert!(errors(&got)[0].contains("query_wait_timeout"), "{got:?}");
    assert_eq!(status(&got), "E");
    // the next statement is refused, not run on its own; the end of the transaction is a
    // ROLLBACK, whatever it says
    let got = query(&mut c, "insert into t values (3)").await;
    assert!(errors(&got)[0].contains("C25P02"), "{got:?}");
    assert_eq!(status(&got), "E");
    let got = query(&mut c, "commit").await;
    assert_eq!(got[0], (b'C', b"ROLLBACK\0".to_vec()));
    assert_eq!(status(&got), "I");
    query(&mut holder, "commit").await;
    drop(holder);

    // a BEGIN sent behind a CopyData (which PostgreSQL ignores out of COPY), then gone
    let (mut leaver, _) = log_in(db, &[]).await;
    assert_eq!(status(&query(&mut leaver, "begin").await), "T");
    leaver.write_all(&message(b'd', b"junk")).await.unwrap();
    // the one connection is taken for it: another client gets it only once the leaver is gone
    drop(leaver);
    let (mut next, _) = log_in(db, &[]).await;
    let got = query(&mut next, "insert into t values (4)").await;
    assert_eq!(status(&got), "I", "{got:?}");
    drop(next);
    let rows = common::postgres::psql(
        pg.addr,
        "app",
        "secret",
        "app",
        "select string_agg(n::text, ',' order by n) from t",
    );
    assert_eq!(rows.as_deref(), Ok("1,4"));
}

/// A login the server refuses keeps the server's SQLSTATE: a database that does not exist is
/// 3D000 to the client, as it would be straight from PostgreSQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_refusal_keeps_its_sqlstate() {
    let (_pg, _strata, db) = one_server_connection();
    let mut s = TcpStream::connect(db).await.unwrap();
    s.write_all(&startup(&[("user", "app"), ("database", "nope")]))
        .await
        .unwrap();
    let got = until_closed(&mut s).await;
    assert!(
        got.windows(6).any(|w| w == b"C3D000")
            && String::from_utf8_lossy(&got).contains("\"nope\" does not exist"),
        "{}",
        got.escape_ascii()
    );
}

/// SQL-level `DEALLOCATE name` of a statement the client prepared with Parse (as pgx and
/// older psycopg do): the server knows the statement by another name, so Strata answers it,
/// forgets the client's name, and leaves the statement on the connection for other clients.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_deallocate_forgets_a_protocol_level_statement() {
    let (_pg, _strata, db) = one_server_connection();
    let (mut s, _) = log_in(db, &[]).await;
    let tags = |answers: &[(u8, Vec<u8>)]| answers.iter().map(|(t, _)| *t).collect::<Vec<_>>();
    let prepare = |name: &str, sql: &str| {
        [
            message(b'P', format!("{name}\0{sql}\0\0\0").as_bytes()),
            message(b'S', b""),
        ]
        .concat()
    };
    let run = |name: &str| {
        [
            message(b'B', format!("\0{name}\0\0\0\0\0\0\0").as_bytes()),
            message(b'E', b"\0\0\0\0\0"),
            message(b'S', b""),
        ]
        .concat()
    };
    let sqlstate = |answers: &[(u8, Vec<u8>)]| {
        let (_, body) = answers.iter().find(|(t, _)| *t == b'E').expect("an error");
        let at = body.windows(6).position(|w| w[0] == b'C').expect("a code");
        String::from_utf8_lossy(&body[at + 1..at + 6]).into_owned()
    };
    let complete = |tag: &str, status: u8| {
        vec![
            (b'C', format!("{tag}\0").into_bytes()),
            (b'Z', vec![status]),
        ]
    };

    // outside a transaction, the quoted name as it was prepared
    s.write_all(&prepare("Up", "select 1")).await.unwrap();
    assert_eq!(tags(&until_ready(&mut s).await), b"1Z");
    assert_eq!(
        query(&mut s, "DEALLOCATE \"Up\"").await,
        complete("DEALLOCATE", b'I')
    );
    s.write_all(&run("Up")).await.unwrap();
    assert_eq!(sqlstate(&until_ready(&mut s).await), "26000");

    // inside a transaction, an unquoted name folded to lower case
    s.write_all(&prepare("s2", "select 2")).await.unwrap();
    assert_eq!(tags(&until_ready(&mut s).await), b"1Z");
    assert_eq!(query(&mut s, "begin").await, complete("BEGIN", b'T'));
    assert_eq!(
        query(&mut s, "deallocate prepare S2;").await,
        complete("DEALLOCATE", b'T')
    );
    assert_eq!(query(&mut s, "commit").await, complete("COMMIT", b'I'));

    // sent behind its own Parse without waiting: the server deallocates it, by its name there
    let mut both = prepare("s3", "select 3");
    both.extend(message(b'Q', b"DEALLOCATE s3\0"));
    s.write_all(&both).await.unwrap();
    assert_eq!(tags(&until_ready(&mut s).await), b"1Z");
    assert_eq!(until_ready(&mut s).await, complete("DEALLOCATE", b'I'));
    s.write_all(&run("s3")).await.unwrap();
    assert_eq!(sqlstate(&until_ready(&mut s).await), "26000");

    // a name it never prepared: the server's own error
    assert_eq!(sqlstate(&query(&mut s, "DEALLOCATE nope").await), "26000");

    // another client on the one server connection prepares and runs the same text
    let (mut t, _) = log_in(db, &[]).await;
    s.write_all(&prepare("mine", "select 3")).await.unwrap();
    assert_eq!(tags(&until_ready(&mut s).await), b"1Z");
    t.write_all(&[prepare("theirs", "select 1"), run("theirs")].concat())
        .await
        .unwrap();
    let answers = [until_ready(&mut t).await, until_ready(&mut t).await].concat();
    assert_eq!(tags(&answers), b"1Z2DCZ", "{answers:?}");
}

/// A client that sends a write right behind a read, without waiting (as asynchronous drivers
/// do): the read runs on the replica, and the write waits for it and goes to the primary, not
/// to the replica the read was given.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_sent_behind_a_read_reaches_the_primary() {
    let primary = Postgres::start();
    primary.user_and_database("app", "secret");
    common::postgres::psql(
        primary.addr,
        "app",
        "secret",
        "app",
        "create table w (x int)",
    )
    .unwrap();
    let replica = primary.replica();
    let cfg = config(primary.addr).replace(
        &format!("servers = [\"{}\"]", primary.addr),
        &format!("servers = [\"{}\", \"{}\"]", primary.addr, replica.addr),
    );
    let strata = Strata::start(&format!("[admin]\nlisten = \"127.0.0.1:0\"\n\n{cfg}"));
    let r = replica.addr.to_string();
    common::postgres::replica_known(&strata, &r).await;
    const READ: &str = "select pg_is_in_recovery()";
    const WRITE: &str = "insert into w values (1) returning pg_is_in_recovery()";
    let simple = |sql: &str| message(b'Q', format!("{sql}\0").as_bytes());
    let extended = |sql: &str, sync: bool| unnamed_batch(sql, NO_PARAMETERS, sync);
    // what, the bytes sent at once, how many ReadyForQuery they get, the rows' values
    type Case = (&'static str, Vec<u8>, usize, &'static [&'static [u8]]);
    let cases: [Case; 3] = [
        (
            "a simple read, then a simple write",
            [simple(READ), simple(WRITE)].concat(),
            2,
            &[b"t", b"f"],
        ),
        (
            "a read batch, then a write batch",
            [extended(READ, true), extended(WRITE, true)].concat(),
            2,
            &[b"t", b"f"],
        ),
        (
            "one batch that reads, then writes",
            [extended(READ, false), extended(WRITE, true)].concat(),
            1,
            &[b"f", b"f"],
        ),
    ];
    for (what, bytes, batches, expected) in cases {
        // each on its own session: a write keeps its session's reads on the primary
        let (mut c, _) = log_in(strata.addr("database:app"), &[]).await;
        c.write_all(&bytes).await.unwrap();
        let mut answers = Vec::new();
        for _ in 0..batches {
            answers.extend(until_ready(&mut c).await);
        }
        let rows: Vec<&[u8]> = answers
            .iter()
            .filter(|(t, _)| *t == b'D')
            .map(|(_, body)| &body[6..])
            .collect();
        let errors: Vec<String> = answers
            .iter()
            .filter(|(t, _)| *t == b'E')
            .map(|(_, body)| String::from_utf8_lossy(body).into_owned())
            .collect();
        assert!(errors.is_empty(), "{what}: {errors:?}");
        assert_eq!(rows, expected, "{what}");
    }
}

/// The next Query the scripted server heard (other messages passed over), as its text.
async fn next_query(heard: &mut tokio::sync::mpsc::UnboundedReceiver<Vec<u8>>) -> String {
    loop {
        let m = tokio::time::timeout(LIMIT, heard.recv())
            .await
            .expect("a query in time")
            .expect("the server runs");
        if m[0] == b'Q' {
            return String::from_utf8_lossy(&m[5..m.len() - 1]).into_owned();
        }
    }
}

/// A DataRow of one text column.
fn data_row(value: &str) -> Vec<u8> {
    let mut body = 1u16.to_be_bytes().to_vec();
    body.extend_from_slice(&(value.len() as u32).to_be_bytes());
    body.extend_from_slice(value.as_bytes());
    message(b'D', &body)
}

/// Strata in front of `server` with one connection, which reads share whenever it is in use;
/// clients log in without a password.
fn one_shared_connection(server: SocketAddr) -> (Strata, SocketAddr) {
    let strata = before_fake(server, "read_pipeline_from = 1\n");
    let db = strata.addr("database:app");
    (strata, db)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_that_hits_the_next_read_on_a_shared_connection_sends_that_read_again() {
    let (server, mut heard, say) = scripted_server().await;
    let (_strata, db) = one_shared_connection(server);
    let q = |sql: &str| message(b'Q', format!("{sql}\0").as_bytes());
    let row_and_ready = |v: &str| {
        [
            data_row(v),
            message(b'C', b"SELECT 1\0"),
            message(b'Z', b"I"),
        ]
        .concat()
    };

    // A's read runs; B's is sent behind it on the same connection
    let (mut a, welcome) = log_in(db, &[]).await;
    let a_key = welcome.iter().find(|(t, _)| *t == b'K').unwrap().1.clone();
    a.write_all(&q("select 'a'")).await.unwrap();
    assert_eq!(next_query(&mut heard).await, "select 'a'");
    let (mut b, _) = log_in(db, &[]).await;
    b.write_all(&q("select 'b'")).await.unwrap();
    assert_eq!(next_query(&mut heard).await, "select 'b'");

    // A's client cancels: A runs as far as Strata knows, so the request goes to the server
    let mut cancel = TcpStream::connect(db).await.unwrap();
    let mut packet = 16u32.to_be_bytes().to_vec();
    packet.extend_from_slice(&80_877_102u32.to_be_bytes());
    packet.extend_from_slice(&a_key);
    cancel.write_all(&packet).await.unwrap();
    let got = tokio::time::timeout(LIMIT, heard.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        got.escape_ascii().to_string(),
        b"\0\0\0\x10\x04\xd2\x16\x2e\0\0\0\x2a\0\0\0\x07"
            .escape_ascii()
            .to_string(),
        "the cancel request, with the server's key"
    );
    // ...where A had ended already: the cancel hits B, which its client did not cancel
    say.send(
        [
            row_and_ready("a"),
            error_response("ERROR", "57014", "canceling statement due to user request"),
            message(b'Z', b"I"),
        ]
        .concat(),
    )
    .unwrap();
    let got = until_ready(&mut a).await;
    assert_eq!(
        got.first(),
        Some(&(b'D', data_row("a")[5..].to_vec())),
        "{got:?}"
    );
    // B is sent again, and gets its own answer
    assert_eq!(next_query(&mut heard).await, "select 'b'");
    say.send(row_and_ready("b")).unwrap();
    let got = until_ready(&mut b).await;
    assert_eq!(
        got.first(),
        Some(&(b'D', data_row("b")[5..].to_vec())),
        "{got:?}"
    );
    assert!(!got.iter().any(|(t, _)| *t == b'E'), "{got:?}");

    // a cancel its own client asked for is not sent again: A's next read gets the error
    a.write_all(&q("select 'a2'")).await.unwrap();
    assert_eq!(next_query(&mut heard).await, "select 'a2'");
    cancel = TcpStream::connect(db).await.unwrap();
    cancel.write_all(&packet).await.unwrap();
    let got = tokio::time::timeout(LIMIT, heard.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&got[8..], &[0, 0, 0, 42, 0, 0, 0, 7], "the cancel request");
    say.send(
        [
            error_response("ERROR", "57014", "canceling statement due to user request"),
            message(b'Z', b"I"),
        ]
        .concat(),
    )
    .unwrap();
    let got = until_ready(&mut a).await;
    assert_eq!(got.first().map(|(t, _)| *t), Some(b'E'), "{got:?}");
    // and a cancel with none asked for (a statement timeout) reaches its client too
    b.write_all(&q("select 'b2'")).await.unwrap();
    assert_eq!(next_query(&mut heard).await, "select 'b2'");
    say.send(
        [
            error_response(
                "ERROR",
                "57014",
                "canceling statement due to statement timeout",
            ),
            message(b'Z', b"I"),
        ]
        .concat(),
    )
    .unwrap();
    let got = until_ready(&mut b).await;
    assert_eq!(got.first().map(|(t, _)| *t), Some(b'E'), "{got:?}");
}

/// A BEGIN answered by Strata reaches the server ahead of the transaction's first statement,
/// as Parse, Bind and Execute of it with no Sync, in the same write; the client gets the
/// statement's answers only. When the server refuses such a BEGIN, the client is told why and
/// its session ends (it was told the transaction had begun); the statement behind it, sent
/// under no Sync, is skipped by the server, so nothing runs outside the transaction.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_begin_answered_by_strata_reaches_the_server_with_the_first_statement() {
    let (server, mut heard, say) = scripted_server().await;
    let strata = before_fake(server, "");
    let db = strata.addr("database:app");
    let (mut c, _) = log_in(db, &[]).await;
    let tags = |got: &[(u8, Vec<u8>)]| got.iter().map(|(t, _)| *t).collect::<Vec<u8>>();
    // answered by Strata: the server hears nothing of it yet
    let got = query(&mut c, "begin").await;
    assert_eq!(got, [(b'C', b"BEGIN\0".to_vec()), (b'Z', b"T".to_vec())]);
    c.write_all(&message(b'Q', b"select 1\0")).await.unwrap();
    let startup = heard_next(&mut heard).await;
    assert!(startup.windows(4).any(|w| w == b"user"), "{startup:?}");
    let hidden_begin = [
        message(b'P', b"\0begin\0\0\0"),
        message(b'B', &[0; 8]),
        message(b'E', &[0; 5]),
    ];
    for expected in hidden_begin.iter().chain([&message(b'Q', b"select 1\0")]) {
        assert_eq!(heard_next(&mut heard).await, *expected);
    }
    let answer = [
        message(b'1', b""),
        message(b'2', b""),
        message(b'C', b"BEGIN\0"),
        data_row("1"),
        message(b'C', b"SELECT 1\0"),
        message(b'Z', b"T"),
    ];
    say.send(answer.concat()).unwrap();
    assert_eq!(tags(&until_ready(&mut c).await), b"DCZ");
    c.write_all(&message(b'Q', b"commit\0")).await.unwrap();
    assert_eq!(next_query(&mut heard).await, "commit");
    say.send([message(b'C', b"COMMIT\0"), message(b'Z', b"I")].concat())
        .unwrap();
    assert_eq!(tags(&until_ready(&mut c).await), b"CZ");

    // the server refuses the next one
    query(&mut c, "begin").await;
    c.write_all(&message(b'Q', b"insert into t values (1)\0"))
        .await
        .unwrap();
    for expected in hidden_begin
        .iter()
        .chain([&message(b'Q', b"insert into t values (1)\0")])
    {
        assert_eq!(heard_next(&mut heard).await, *expected);
    }
    say.send(error_response("ERROR", "53200", "out of memory"))
        .unwrap();
    let got = until_closed(&mut c).await;
    let text = String::from_utf8_lossy(&got);
    assert!(
        text.contains("FATAL")
            && text.contains("could not begin")
            && text.contains("out of memory"),
        "{}",
        got.escape_ascii()
    );
}

/// The next message the scripted server heard.
async fn heard_next(heard: &mut tokio::sync::mpsc::UnboundedReceiver<Vec<u8>>) -> Vec<u8> {
    tokio::time::timeout(LIMIT, heard.recv())
        .await
        .expect("a message in time")
        .expect("the server runs")
}

/// The types of the messages the scripted server hears next, up to a Sync, after `so_far`.
async fn heard_until_sync(
    heard: &mut tokio::sync::mpsc::UnboundedReceiver<Vec<u8>>,
    mut so_far: String,
) -> String {
    loop {
        let m = heard_next(heard).await;
        so_far.push(m[0] as char);
        if m[0] == b'S' {
            return so_far;
        }
    }
}

/// On a shared connection, a batch that prepares a statement the connection lacks (a Parse
/// Strata adds) may fail before that Parse runs, and the server then skips it. A batch of
/// another client sent behind it that uses the same statement must not take it for prepared:
/// it waits for the first batch's answer, and then comes with a Parse of its own. (Sent at
/// once, it would have failed with "prepared statement does not exist", for the first
/// client's error.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_behind_one_whose_prepare_the_server_skipped_prepares_the_statement_itself() {
    let (server, mut heard, say) = scripted_server().await;
    let (_strata, db) = one_shared_connection(server);
    let parse = |name: &str, sql: &str| message(b'P', format!("{name}\0{sql}\0\0\0").as_bytes());
    let bind = |stmt: &str| message(b'B', format!("\0{stmt}\0\0\0\0\0\0\0").as_bytes());
    let execute = message(b'E', b"\0\0\0\0\0");
    let sync = message(b'S', b"");
    let tags = |got: &[(u8, Vec<u8>)]| got.iter().map(|(t, _)| *t as char).collect::<String>();

    // H's read holds the one connection (a line): the server has not answered it
    let (mut h, _) = log_in(db, &[]).await;
    h.write_all(&message(b'Q', b"select 'h'\0")).await.unwrap();
    assert_eq!(next_query(&mut heard).await, "select 'h'");
    // A and B prepare s1 while the pool is full: answered by Strata, nothing sent
    let (mut a, _) = log_in(db, &[]).await;
    let (mut b, _) = log_in(db, &[]).await;
    for c in [&mut a, &mut b] {
        c.write_all(&[parse("s1", "select 1"), sync.clone()].concat())
            .await
            .unwrap();
        assert_eq!(tags(&until_ready(c).await), "1Z");
    }
    // A's batch joins H's line: its Parse of s1 (under Strata's name) comes after an
    // Execute that will fail
    a.write_all(
        &[
            parse("", "select 1/0"),
            bind(""),
            execute.clone(),
            bind("s1"),
            execute.clone(),
            sync.clone(),
        ]
        .concat(),
    )
    .await
    .unwrap();
    assert_eq!(heard_until_sync(&mut heard, String::new()).await, "PBEPBES");
    // B's batch binds s1 too
    b.write_all(&[bind("s1"), execute.clone(), sync.clone()].concat())
        .await
        .unwrap();
    // the server answers H, then fails A's first Execute: the rest of A's batch is skipped
    say.send(
        [
            data_row("h"),
            message(b'C', b"SELECT 1\0"),
            message(b'Z', b"I"),
            message(b'1', b""),
            message(b'2', b""),
            error_response("ERROR", "22012", "division by zero"),
            message(b'Z', b"I"),
        ]
        .concat(),
    )
    .unwrap();
    assert_eq!(tags(&until_ready(&mut h).await), "DCZ");
    assert_eq!(tags(&until_ready(&mut a).await), "12EZ");
    // B's batch comes only now, with the Parse the connection still lacks
    let first = heard_next(&mut heard).await;
    assert_eq!(first[0], b'P', "B's batch took s1 for prepared: {first:?}");
    assert!(first[5..].starts_with(b"strata_"), "{first:?}");
    assert_eq!(heard_until_sync(&mut heard, "P".into()).await, "PBES");
    say.send(
        [
            message(b'1', b""),
            message(b'2', b""),
            data_row("1"),
            message(b'C', b"SELECT 1\0"),
            message(b'Z', b"I"),
        ]
        .concat(),
    )
    .unwrap();
    // B gets its own answers only: not the ParseComplete of the Parse Strata added
    assert_eq!(tags(&until_ready(&mut b).await), "2DCZ");
}

/// A client may send its first query right behind its startup packet, without waiting for
/// ReadyForQuery (the bytes come in the read that takes the login): it is answered, not left
/// waiting for the socket to say more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_sent_with_the_startup_packet_is_answered() {
    let (_pg, _strata, db) = one_connection_and_a_table("3s");
    let mut s = TcpStream::connect(db).await.unwrap();
    let mut both = startup(&[("user", "app"), ("database", "app")]);
    both.extend_from_slice(&message(b'Q', b"select 'behind the login'\0"));
    s.write_all(&both).await.unwrap();
    let welcome = until_ready(&mut s).await;
    assert_eq!(welcome.last().map(|(t, _)| *t), Some(b'Z'));
    let answer = until_ready(&mut s).await;
    let row = answer
        .iter()
        .find(|(t, _)| *t == b'D')
        .unwrap_or_else(|| panic!("no row in {answer:?}"));
    assert!(
        row.1.ends_with(b"behind the login"),
        "{:?}",
        String::from_utf8_lossy(&row.1)
    );
}

/// A listener offering TLS with a certificate for localhost and 127.0.0.1 (written to `dir`),
/// with `tls_mode = mode`; PostgreSQL, Strata, the listener's address and the certificate.
fn offering_tls(
    dir: &TempDir,
    mode: &str,
) -> (
    Postgres,
    Strata,
    SocketAddr,
    rustls_pki_types::CertificateDer<'static>,
) {
    let cert = self_signed(dir.path(), "db", &["localhost", "127.0.0.1"]);
    let extra = format!(
        "tls = [{{ cert = \"{0}/db.pem\", key = \"{0}/db.key\" }}]\ntls_mode = \"{mode}\"",
        dir.path().display()
    );
    let (pg, strata, db) = trusting("", &extra);
    (pg, strata, db, cert)
}

/// A connection that sent an SSLRequest and was answered `expected` ('S' or 'N').
async fn asking_for_tls(db: SocketAddr, expected: u8) -> TcpStream {
    let mut s = TcpStream::connect(db).await.unwrap();
    s.write_all(&first_packet(80_877_103, b"")).await.unwrap();
    let mut answer = [0u8; 1];
    tokio::time::timeout(LIMIT, s.read_exact(&mut answer))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(answer[0], expected);
    s
}

/// An SSLRequest answered 'S', then the TLS handshake (trusting `cert`).
async fn tls_client(
    db: SocketAddr,
    cert: &rustls_pki_types::CertificateDer<'static>,
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let s = asking_for_tls(db, b'S').await;
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    tls_connector(std::slice::from_ref(cert), &[])
        .connect(name, s)
        .await
        .expect("TLS handshake")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_is_taken_only_from_a_clean_start_and_required_where_configured() {
    let dir = TempDir::new();
    let (_pg, strata, db, cert) = offering_tls(&dir, "require");
    let good = startup(&[("user", "app"), ("database", "app")]);

    // a client on TLS logs in and runs a query through the pooler
    let mut tls = tls_client(db, &cert).await;
    tls.write_all(&good).await.unwrap();
    let welcome = until_ready(&mut tls).await;
    assert_eq!(welcome[0], (b'R', vec![0, 0, 0, 0]), "AuthenticationOk");
    let answer = query(&mut tls, "select 40 + 2").await;
    assert_eq!(answer[1].1, b"\0\x01\0\0\0\x0242", "{answer:?}");
    tls.write_all(&message(b'X', b"")).await.unwrap();
    assert_eq!(until_closed(&mut tls).await, b"");

    // bytes sent in clear behind the SSLRequest, before its answer, are not taken as if
    // they came over TLS (CVE-2021-23214's lesson): no 'S', an error, the close
    let mut s = TcpStream::connect(db).await.unwrap();
    s.write_all(&[first_packet(80_877_103, b""), good.clone()].concat())
        .await
        .unwrap();
    assert_eq!(
        until_closed(&mut s).await.escape_ascii().to_string(),
        fatal_08p01(
            "client sent bytes that are not the protocol: received unencrypted data after SSL request"
        )
        .escape_ascii()
        .to_string()
    );

    // a second SSLRequest, or a GSSENCRequest, inside TLS is a protocol this is not (as in
    // PostgreSQL)
    for (code, version) in [(80_877_103, "1234.5679"), (80_877_104, "1234.5680")] {
        let mut tls = tls_client(db, &cert).await;
        tls.write_all(&first_packet(code, b"")).await.unwrap();
        assert_eq!(
            until_closed(&mut tls).await.escape_ascii().to_string(),
            fatal_08p01(&format!(
                "client sent bytes that are not the protocol: unsupported protocol {version}"
            ))
            .escape_ascii()
            .to_string()
        );
    }

    // a client in clear is refused: tls_mode = "require"
    let mut s = TcpStream::connect(db).await.unwrap();
    s.write_all(&good).await.unwrap();
    assert_eq!(
        until_closed(&mut s).await.escape_ascii().to_string(),
        error_response(
            "FATAL",
            "28000",
            "this listener takes TLS connections only (tls_mode = \"require\"): connect with sslmode=require"
        )
        .escape_ascii()
        .to_string()
    );

    // a handshake that is not TLS at all closes that client only
    let mut s = asking_for_tls(db, b'S').await;
    s.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    // (closed within the limit, with at most a TLS alert: never a PostgreSQL message)
    let rest = until_closed(&mut s).await;
    assert!(rest.is_empty() || rest[0] == 0x15, "{rest:?}");

    // and TLS clients carry on
    let mut tls = tls_client(db, &cert).await;
    tls.write_all(&good).await.unwrap();
    assert_eq!(until_ready(&mut tls).await[0].0, b'R');

    // a session's end closes its client's connection, though the client keeps its end open
    // and reads nothing more: its three descriptors (the socket, the socket pair's two ends)
    // go
    let pid = strata.child.id();
    let before = open_descriptors(pid);
    tls.write_all(&message(b'X', b"")).await.unwrap();
    eventually(
        LIMIT,
        "the ended TLS client's descriptors closed",
        || async { open_descriptors(pid) + 3 <= before },
    )
    .await;
    drop(tls);
}

/// Strata asks a server for TLS before anything else (server_tls_mode = "prefer", the
/// default, and up). A server that answers 'S' with bytes of the protocol in clear behind it
/// in the same write (a login made up for Strata: libpq's CVE-2021-23222) has them go to the
/// TLS handshake, which refuses them: Strata never takes them as the server's answer. A
/// server that answers 'N' where TLS is required gets no startup packet. Either way the
/// client is told it could not be served, and nothing the server made up reaches it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_gets_asked_for_tls_first_and_cant_slip_bytes_in_clear_behind_its_yes() {
    let dir = TempDir::new();
    self_signed(dir.path(), "pg", &["db.internal"]);
    let acceptor = tls_acceptor(dir.path(), "pg");
    let busy = error_response("FATAL", "53300", "sorry, too many clients already");
    // what PostgreSQL sends when it can't fork a backend: the old protocol's error
    let no_fork =
        b"Ecould not fork new process for connection: Resource temporarily unavailable\n\0";
    for (answer, mode, next, told_why) in [
        // a real handshake follows: it fails, as Strata's TLS reads the bytes in clear as
        // records; a Strata that had read them with the 'S' would pass it, and then take
        // them as the server's login
        (b"S".to_vec(), "prefer", b"no handshake".to_vec(), None),
        // nothing: closed
        (b"N".to_vec(), "require", vec![], None),
        // a server that can't take the connection at all answers with its error, which the
        // client is told as it would be at a login
        (
            no_fork.to_vec(),
            "prefer",
            vec![],
            Some("could not fork new process"),
        ),
        (
            busy,
            "prefer",
            vec![],
            Some("sorry, too many clients already"),
        ),
        // not an answer PostgreSQL gives
        (b"X".to_vec(), "prefer", vec![], None),
    ] {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server = listener.local_addr().unwrap();
        // each connection's first packet, as soon as it is read (before it is answered), and
        // then the first bytes after the answer
        let (opened, mut openings) = tokio::sync::mpsc::unbounded_channel();
        let (heard, mut hears) = tokio::sync::mpsc::unbounded_channel();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let (opened, heard) = (opened.clone(), heard.clone());
                let (answer, acceptor) = (answer.clone(), acceptor.clone());
                tokio::spawn(async move {
                    let _ = opened.send(read_packet(&mut s).await.unwrap_or_default());
                    let yes = answer == b"S";
                    let _ = s.write_all(&[answer, fake_welcome()].concat()).await;
                    if yes {
                        let done = acceptor.accept(s).await.is_ok();
                        let said: &[u8] = if done { b"handshake" } else { b"no handshake" };
                        let _ = heard.send(said.to_vec());
                        return;
                    }
                    let mut then = [0u8; 2];
                    let n = match s.read_exact(&mut then).await {
                        Ok(_) => 2,
                        Err(_) => 0,
                    };
                    let _ = heard.send(then[..n].to_vec());
                });
            }
        });
        let strata = before_fake(server, &format!("server_tls_mode = \"{mode}\"\n"));
        let db = strata.addr("database:app");
        let mut c = TcpStream::connect(db).await.unwrap();
        c.write_all(&startup(&[("user", "app"), ("database", "app")]))
            .await
            .unwrap();
        let told = until_closed(&mut c).await;
        assert_eq!(told.first(), Some(&b'E'), "{mode}: {}", told.escape_ascii());
        assert!(
            !told.windows(4).any(|w| w == b"fake"),
            "{mode}: {}",
            told.escape_ascii()
        );
        if let Some(why) = told_why {
            let text = String::from_utf8_lossy(&told);
            assert!(text.contains(why), "{text}");
        }
        let then = tokio::time::timeout(LIMIT, hears.recv())
            .await
            .expect("the server heard from Strata")
            .unwrap();
        assert_eq!(then, next, "{mode}");
        // every connection Strata made before the client was told asked for TLS first: none
        // went on in clear after the failed handshake or the 'N'
        let mut first = Vec::new();
        while let Ok(p) = openings.try_recv() {
            first.push(p);
        }
        assert!(!first.is_empty(), "{mode}");
        assert!(first.iter().all(|p| p == &SSL_REQUEST), "{mode}: {first:?}");
    }
}

/// A TLS acceptor with the certificate `stem`.pem and key `stem`.key in `dir`.
fn tls_acceptor(dir: &std::path::Path, stem: &str) -> tokio_rustls::TlsAcceptor {
    use rustls_pki_types::pem::PemObject;
    let chain =
        vec![
            rustls_pki_types::CertificateDer::from_pem_file(dir.join(format!("{stem}.pem")))
                .unwrap(),
        ];
    let key =
        rustls_pki_types::PrivateKeyDer::from_pem_file(dir.join(format!("{stem}.key"))).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .unwrap();
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

/// A PostgreSQL server on TLS only, played by the test (with `refuse_after_first`, on its
/// first connection only: later ones are answered 'N', and what follows is reported as in
/// clear, or "closed"): an SSLRequest is answered 'S' and the
/// handshake taken with the certificate `stem` in `dir`; a first packet that is anything else
/// is reported (`false`) and the connection closed. Inside TLS, a cancel request is reported
/// (`true`) and the connection closed; a startup packet is reported, Strata is logged in
/// ([`fake_welcome`]), and every message after is reported. No query is answered.
async fn tls_server(
    dir: &std::path::Path,
    stem: &str,
    refuse_after_first: bool,
) -> (
    SocketAddr,
    tokio::sync::mpsc::UnboundedReceiver<(bool, Vec<u8>)>,
) {
    let acceptor = tls_acceptor(dir, stem);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (heard, hears) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut connections = 0;
        while let Ok((mut s, _)) = listener.accept().await {
            let (heard, acceptor) = (heard.clone(), acceptor.clone());
            connections += 1;
            let refuse = refuse_after_first && connections > 1;
            tokio::spawn(async move {
                let Some(first) = read_packet(&mut s).await else {
                    return;
                };
                if first != SSL_REQUEST {
                    let _ = heard.send((false, first));
                    return;
                }
                if refuse {
                    // as someone answering in the server's place would: what comes next, in
                    // clear, or the connection closed
                    let _ = s.write_all(b"N").await;
                    let next = read_packet(&mut s).await;
                    let _ = heard.send((false, next.unwrap_or_else(|| b"closed".to_vec())));
                    return;
                }
                if s.write_all(b"S").await.is_err() {
                    return;
                }
                let Ok(mut tls) = acceptor.accept(s).await else {
                    return;
                };
                let Some(packet) = read_packet(&mut tls).await else {
                    return;
                };
                let cancel = packet.get(4..8) == Some(&80_877_102u32.to_be_bytes()[..]);
                let _ = heard.send((true, packet));
                if cancel || tls.write_all(&fake_welcome()).await.is_err() {
                    return;
                }
                while let Some(m) = read_message(&mut tls).await {
                    let _ = heard.send((true, m));
                }
            });
        }
    });
    (addr, hears)
}

/// With `server_tls_mode = "verify-full"`, everything Strata sends a server goes inside TLS:
/// the login, the queries, and a cancel request, whose backend key would otherwise cross the
/// network in clear (libpq 17 sends it so too; PostgreSQL takes one after an SSLRequest).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_on_tls_gets_the_login_the_queries_and_the_cancel_request_inside_it() {
    let dir = TempDir::new();
    self_signed(dir.path(), "pg", &["db.internal"]);
    let (server, mut heard) = tls_server(dir.path(), "pg", false).await;
    let strata = before_fake(server, &format!("server_tls_mode = \"verify-full\"\nserver_tls_ca = \"{}/pg.pem\"\nserver_tls_name = \"db.internal\"\n", dir.path().display()));
    let db = strata.addr("database:app");
    let mut next = async || {
        let (tls, bytes) = tokio::time::timeout(LIMIT, heard.recv())
            .await
            .expect("the server heard from Strata")
            .unwrap();
        assert!(tls, "in clear: {}", bytes.escape_ascii());
        bytes.escape_ascii().to_string()
    };
    let (mut a, key) = logged_in_with_key(db).await;
    assert_eq!(
        next().await,
        b"\0\0\0\x1f\0\x03\0\0user\0app\0database\0app\0\0"
            .escape_ascii()
            .to_string()
    );
    a.write_all(&message(b'Q', b"select pg_sleep(60)\0"))
        .await
        .unwrap();
    assert_eq!(
        next().await,
        message(b'Q', b"select pg_sleep(60)\0")
            .escape_ascii()
            .to_string()
    );
    let _cancel = send_cancel(db, &key).await;
    assert_eq!(
        next().await,
        b"\0\0\0\x10\x04\xd2\x16\x2e\0\0\0\x2a\0\0\0\x07"
            .escape_ascii()
            .to_string(),
        "the cancel request, with the server's key"
    );
}

/// Under `prefer`, a cancel request for a query whose connection is on TLS goes on TLS or not
/// at all: whoever answers the cancel's SSLRequest 'N' in the server's place gets nothing,
/// not the backend's key in clear.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_for_a_connection_on_tls_is_not_sent_in_clear_when_tls_is_refused() {
    let dir = TempDir::new();
    self_signed(dir.path(), "pg", &["db.internal"]);
    let (server, mut heard) = tls_server(dir.path(), "pg", true).await;
    let strata = before_fake(server, "");
    let db = strata.addr("database:app");
    let mut next = async || {
        tokio::time::timeout(LIMIT, heard.recv())
            .await
            .expect("the server heard from Strata")
            .unwrap()
    };
    let (mut a, key) = logged_in_with_key(db).await;
    // the login, on TLS (prefer, and the server said 'S')
    assert!(next().await.0);
    a.write_all(&message(b'Q', b"select pg_sleep(60)\0"))
        .await
        .unwrap();
    assert!(next().await.0);
    let _cancel = send_cancel(db, &key).await;
    let (tls, after_no) = next().await;
    assert!(!tls);
    assert_eq!(after_no, b"closed", "{}", after_no.escape_ascii());
}

/// A client logged in to `db`, and the cancel key Strata gave it.
async fn logged_in_with_key(db: SocketAddr) -> (TcpStream, Vec<u8>) {
    let (a, welcome) = log_in(db, &[]).await;
    let key = welcome
        .iter()
        .find(|(t, _)| *t == b'K')
        .map(|(_, k)| k.clone())
        .expect("a cancel key");
    (a, key)
}

/// A cancel request with `key`, sent to `db` on a connection of its own (returned, open).
async fn send_cancel(db: SocketAddr, key: &[u8]) -> TcpStream {
    let mut cancel = TcpStream::connect(db).await.unwrap();
    cancel
        .write_all(&first_packet(80_877_102, key))
        .await
        .unwrap();
    cancel
}
