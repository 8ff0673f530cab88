//! The differential checks on hostile streams: lengths 0 to 3 and past the limits, negative
//! ones, startup packets without their terminator or with junk after it, a parameter without
//! its value, other protocol versions and request codes, every truncation of good streams,
//! and server messages that are not their format.

use super::*;

fn good_startup() -> Vec<u8> {
    startup_bytes(&[("user", "app"), ("database", "app")])
}

/// A first packet: `code`, then `rest`, its length word counting all of it.
fn packet(code: u32, rest: &[u8]) -> Vec<u8> {
    let mut p = ((rest.len() + 8) as u32).to_be_bytes().to_vec();
    p.extend_from_slice(&code.to_be_bytes());
    p.extend_from_slice(rest);
    p
}

/// A StartupMessage of protocol 3.0 whose parameters are `contents` as they are.
fn raw_startup(contents: &[u8]) -> Vec<u8> {
    packet(proto::PROTOCOL_3, contents)
}

/// `rest` after a good StartupMessage.
fn logged_in(rest: &[u8]) -> Vec<u8> {
    let mut s = good_startup();
    s.extend_from_slice(rest);
    s
}

/// A header of a tagged message announcing `length`.
fn header(tag: u8, length: u32) -> Vec<u8> {
    let mut m = vec![tag];
    m.extend_from_slice(&length.to_be_bytes());
    m
}

/// Runs the property on a client's stream and says what the codec read.
fn frontend(data: &[u8]) -> ProxyRead {
    frontend_stream(data);
    proxy_read(data, Side::Frontend, [data.len()])
}

/// Runs the property on a server's stream and says what the codec read.
fn backend(data: &[u8]) -> ProxyRead {
    backend_stream(data);
    proxy_read(data, Side::Backend, [data.len()])
}

fn refused_with(data: &[u8], error: ProtoError, at: usize) {
    assert_eq!(
        frontend(data).stop,
        ProxyStop::Refused { error, at },
        "{}",
        show(data)
    );
}

fn params(pairs: &[(&str, &str)]) -> Startup {
    Startup::Params(
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
}

/// Client streams a pooler reads to the end.
fn good_streams() -> Vec<Vec<u8>> {
    let ssl = packet(proto::SSL_REQUEST, &[]);
    let gss = packet(proto::GSSENC_REQUEST, &[]);
    let mut extended = Vec::new();
    for (tag, contents) in [
        (b'P', &b"s1\0select $1\0\0\0"[..]),
        (b'B', b"\0s1\0\0\0\0\x01\0\0\0\x011\0\0"),
        (b'D', b"P\0"),
        (b'E', b"\0\0\0\0\0"),
        (b'S', b""),
        (b'Q', b"select 1\0"),
        (b'd', b"copy data, any bytes \0\xff"),
        (b'c', b""),
        (b'X', b""),
    ] {
        extended.extend_from_slice(&message_bytes(tag, contents));
    }
    let mut streams = vec![
        good_startup(),
        logged_in(&extended),
        [ssl.clone(), good_startup(), extended.clone()].concat(),
        [gss.clone(), ssl.clone(), good_startup()].concat(),
        proto::cancel_packet(7, 0xdead_beef).to_vec(),
        startup_bytes(&[
            ("user", "app"),
            ("database", "db"),
            ("application_name", "it's psql"),
            ("options", "-c search_path=a,b -c statement_timeout=5s"),
            ("client_encoding", "UTF8"),
            ("DateStyle", "ISO, MDY"),
            ("_pq_.an_extension", ""),
        ]),
        // an empty value, a name twice, non-ASCII text
        startup_bytes(&[("user", "ünïcödé"), ("database", ""), ("user", "other")]),
        // no pairs at all: read; the login refuses it for want of a user
        raw_startup(b"\0"),
    ];
    // a StartupMessage of exactly the most bytes read
    let filler = "x".repeat(proto::MAX_STARTUP - good_startup().len() - "a\0\0".len());
    let most = startup_bytes(&[("user", "app"), ("database", "app"), ("a", &filler)]);
    assert_eq!(most.len(), proto::MAX_STARTUP);
    streams.push(most);
    streams
}

#[test]
fn good_streams_are_read_alike() {
    let streams = good_streams();
    for s in &streams {
        let read = frontend(s);
        assert!(
            matches!(
                read.stop,
                ProxyStop::Waiting { held: 0 } | ProxyStop::Cancel
            ),
            "{:?}: {}",
            read.stop,
            show(s)
        );
    }
    let read = frontend(&streams[1]);
    assert_eq!(
        read.first,
        [(params(&[("user", "app"), ("database", "app")]), 31)]
    );
    assert_eq!(
        read.messages.iter().map(|m| m.0).collect::<Vec<u8>>(),
        b"PBDESQdcX"
    );
    let read = frontend(&streams[3]);
    let kinds: Vec<&Startup> = read.first.iter().map(|(s, _)| s).collect();
    assert_eq!(kinds[..2], [&Startup::Gss, &Startup::Ssl]);
    assert_eq!(
        frontend(&streams[6]).first[0].0,
        params(&[("user", "ünïcödé"), ("database", ""), ("user", "other")])
    );
    assert_eq!(frontend(&streams[7]).first[0].0, params(&[]));
}

#[test]
fn every_truncation_of_a_good_stream_waits_for_the_rest() {
    for s in good_streams() {
        let whole = frontend(&s);
        // past 1 KiB (the packet at the limit), cuts near its ends and every 97th byte
        let cuts: Vec<usize> = if s.len() <= 1024 {
            (0..s.len()).collect()
        } else {
            (0..16)
                .chain((16..s.len() - 16).step_by(97))
                .chain(s.len() - 16..s.len())
                .collect()
        };
        for cut in cuts {
            let part = frontend(&s[..cut]);
            let ProxyStop::Waiting { held } = part.stop else {
                panic!("{} of {} bytes: {:?}", cut, s.len(), part.stop);
            };
            // what was read is what the whole stream reads up to the cut
            let ends: Vec<usize> = part
                .first
                .iter()
                .map(|f| f.1)
                .chain(part.messages.iter().map(|m| m.2))
                .collect();
            let done = ends.last().copied().unwrap_or(0);
            assert_eq!(done + held, cut);
            assert_eq!(part.first[..], whole.first[..part.first.len()]);
            assert_eq!(part.messages[..], whole.messages[..part.messages.len()]);
        }
    }
}

#[test]
fn startup_lengths_under_8_are_refused_on_the_length_word() {
    for n in 0u32..8 {
        refused_with(&n.to_be_bytes(), ProtoError::ShortLength(n as usize), 0);
        // whatever follows
        let mut data = n.to_be_bytes().to_vec();
        data.extend_from_slice(&proto::PROTOCOL_3.to_be_bytes());
        data.extend_from_slice(b"user\0app\0\0");
        refused_with(&data, ProtoError::ShortLength(n as usize), 0);
        // after an SSLRequest
        let mut data = packet(proto::SSL_REQUEST, &[]);
        data.extend_from_slice(&n.to_be_bytes());
        refused_with(&data, ProtoError::ShortLength(n as usize), 8);
    }
}

#[test]
fn startup_lengths_past_the_limit_are_refused_without_waiting() {
    for n in [10_001u32, 65_536, 0x3fff_ffff, 0x7fff_ffff] {
        refused_with(&n.to_be_bytes(), ProtoError::TooLong(n as usize), 0);
    }
    // negative as an Int32: huge as the codec reads it
    for n in [-1i32, -8, i32::MIN] {
        refused_with(&n.to_be_bytes(), ProtoError::TooLong(n as u32 as usize), 0);
    }
    // an HTTP request, a TLS ClientHello and a Redis command sent to the listener
    refused_with(
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        ProtoError::TooLong(0x4745_5420),
        0,
    );
    refused_with(
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
        ProtoError::TooLong(0x1603_0102),
        0,
    );
    refused_with(b"*1\r\n$4\r\nPING\r\n", ProtoError::TooLong(0x2a31_0d0a), 0);
}

#[test]
fn malformed_startup_parameters_are_refused() {
    for contents in [
        // no terminator after the last pair
        &b"user\0app\0"[..],
        b"user\0app\0database\0db\0",
        // nothing at all after the version
        b"",
        // a name without its value, or a value without its NUL
        b"user\0",
        b"user\0app",
        b"user\0\0",
        b"user",
        b"user\0app\0database\0",
        b"user\0app\0database",
        // junk after the terminator
        b"user\0app\0\0x",
        b"user\0app\0\0\0",
        b"\0x\0\0",
        b"\0\0",
        // not UTF-8
        b"user\0\xff\0\0",
        b"us\xc3er\0app\0\0",
    ] {
        refused_with(&raw_startup(contents), ProtoError::Startup, 0);
    }
    // each refused only once all of it is there: less a byte, it waits
    let p = raw_startup(b"user\0app\0");
    assert_eq!(
        frontend(&p[..p.len() - 1]).stop,
        ProxyStop::Waiting { held: p.len() - 1 }
    );
}

#[test]
fn other_protocol_versions_and_request_codes_are_refused() {
    let version = |major: u32, minor: u32| (major << 16) | minor;
    for (major, minor) in [
        (2, 0),
        (3, 1),
        (3, 2),
        (1, 0),
        (0, 0),
        (4, 0),
        (65535, 65535),
    ] {
        refused_with(
            &packet(version(major, minor), b"user\0app\0\0"),
            ProtoError::Protocol {
                major: major as u16,
                minor: minor as u16,
            },
            0,
        );
    }
    // known requests of the wrong length, and 1234.x codes nobody defined
    for (code, rest) in [
        (proto::SSL_REQUEST, &b"\0\0\0\0"[..]),
        (proto::GSSENC_REQUEST, b"x"),
        (proto::CANCEL_REQUEST, b"\0\0\0\x07"),
        (proto::CANCEL_REQUEST, b"\0\0\0\x07\0\0\0\x09\0\0\0\0"),
        (proto::CANCEL_REQUEST, b""),
        (version(1234, 5681), b""),
        (version(1234, 0), b""),
    ] {
        refused_with(
            &packet(code, rest),
            ProtoError::Protocol {
                major: 1234,
                minor: code as u16,
            },
            0,
        );
    }
    // a second SSLRequest is read as the first was (the connection answers each with N)
    let twice = [
        packet(proto::SSL_REQUEST, &[]),
        packet(proto::SSL_REQUEST, &[]),
    ]
    .concat();
    assert_eq!(frontend(&twice).first.len(), 2);
}

#[test]
fn nothing_after_a_cancel_request_is_read() {
    let mut data = proto::cancel_packet(1, 2).to_vec();
    data.extend_from_slice(&good_startup());
    data.extend_from_slice(b"\0\0\0\x01 garbage");
    let read = frontend(&data);
    assert_eq!(read.stop, ProxyStop::Cancel);
    assert_eq!(read.first, [(Startup::Cancel { pid: 1, secret: 2 }, 16)]);
}

#[test]
fn tagged_lengths_under_4_are_refused_on_the_header() {
    let at = good_startup().len();
    for n in 0u32..4 {
        for tag in [b'Q', b'S', b'X', 0, 0xff] {
            refused_with(
                &logged_in(&header(tag, n)),
                ProtoError::ShortLength(n as usize),
                at,
            );
        }
        // after a good message
        let mut rest = message_bytes(b'Q', b"select 1\0");
        rest.extend_from_slice(&header(b'S', n));
        rest.extend_from_slice(b"more");
        refused_with(
            &logged_in(&rest),
            ProtoError::ShortLength(n as usize),
            at + 14,
        );
    }
}

#[test]
fn huge_and_negative_tagged_lengths_are_refused_on_the_header() {
    let at = good_startup().len();
    for n in [
        0x3fff_ffffu32,
        0x4000_0000,
        0x7fff_ffff,
        0x8000_0000,
        u32::MAX,
    ] {
        refused_with(
            &logged_in(&header(b'Q', n)),
            ProtoError::TooLong(n as usize),
            at,
        );
    }
    // the largest length PostgreSQL takes waits for its bytes
    let data = logged_in(&header(b'd', 0x3fff_fffe));
    assert_eq!(frontend(&data).stop, ProxyStop::Waiting { held: 5 });
}

#[test]
fn the_limits_are_postgresqls() {
    assert_eq!(proto::MAX_STARTUP, oracle::FIRST_PACKET_MOST as usize);
    assert_eq!(proto::MAX_MESSAGE, oracle::MESSAGE_MOST as usize);
}

#[test]
fn a_first_packet_over_the_limit_is_refused_even_when_whole() {
    let filler = "x".repeat(proto::MAX_STARTUP - good_startup().len() - "a\0\0".len() + 1);
    let over = startup_bytes(&[("user", "app"), ("database", "app"), ("a", &filler)]);
    assert_eq!(over.len(), proto::MAX_STARTUP + 1);
    refused_with(&over, ProtoError::TooLong(proto::MAX_STARTUP + 1), 0);
}

/// Server streams with messages that are not their format: read as frames all the same.
#[test]
fn hostile_server_streams_are_framed_alike() {
    let streams: Vec<Vec<u8>> = vec![
        // ReadyForQuery without its status byte, then a RowDescription
        [message_bytes(b'Z', b""), message_bytes(b'T', b"\0\0")].concat(),
        // ParameterStatus without a value, with junk after it, not UTF-8, empty
        message_bytes(b'S', b"TimeZone\0"),
        message_bytes(b'S', b"TimeZone\0UTC\0junk"),
        message_bytes(b'S', b"TimeZone\0\xffUTC\0"),
        message_bytes(b'S', b""),
        // ErrorResponse without its terminator, without fields, with a field cut short
        message_bytes(b'E', b"SERROR\0C42000\0Mno"),
        message_bytes(b'E', b"\0"),
        message_bytes(b'E', b""),
        message_bytes(b'E', b"SFATAL\0C08P01\0Mbad\0\0after"),
        // a code given twice: the last counts, as in libpq
        message_bytes(b'N', b"Mfirst\0Msecond\0C01000\0\0"),
        // BackendKeyData short
        message_bytes(b'K', b"\0\0\0\x07"),
        // lengths under 4 and huge, after a good message
        [message_bytes(b'Z', b"I"), header(b'D', 3)].concat(),
        [message_bytes(b'Z', b"I"), header(b'D', 0xffff_ffff)].concat(),
        [message_bytes(b'Z', b"I"), header(b'D', 0x3fff_ffff)].concat(),
        // found by pg_backend (a fault of the check): a name that is not UTF-8, after which
        // the pooler keeps neither string
        message_bytes(b'S', b"\xa0\0\0"),
    ];
    for s in &streams {
        backend(s);
    }
    assert_eq!(
        backend(&streams[0]).messages,
        [(b'Z', vec![], 5), (b'T', b"\0\0".to_vec(), 12)]
    );
    assert_eq!(
        backend(&streams[11]).stop,
        ProxyStop::Refused {
            error: ProtoError::ShortLength(3),
            at: 6
        }
    );
    assert_eq!(
        proto::error_message(&backend(&streams[9]).messages[0].1),
        "second (01000)"
    );
}

#[test]
fn what_the_pooler_writes_the_oracle_reads() {
    for text in [
        &b""[..],
        b"a\x01b",
        b"user\x01app\x01database\x01app\x01application_name\x01it's \"quoted\"",
        b"\x01value without a name\x01x",
        "ünïcödé\u{1}日本語".as_bytes(),
        b"with\0NULs\0dropped",
        b"\xff\xfe not UTF-8",
        &[b'y'; 9000],
    ] {
        encoders(text);
    }
}

#[test]
fn the_fuzz_targets_run_on_shaped_input() {
    for how in 0u8..8 {
        let mut data = vec![how];
        data.extend_from_slice(&message_bytes(b'Q', b"select 1\0"));
        data.extend_from_slice(b"\x05\x40garbage of any length");
        pg_frontend(&data);
        pg_backend(&data);
        pg_ssl_answer(&data);
    }
    let shaped = shape_frontend(7, b"Qxxxxxyyy");
    let read = frontend(&shaped);
    assert_eq!(read.first.len(), 2);
    // the length field's first byte, 'x', asks for 56 bytes: the 4 left are given
    assert_eq!(read.messages, [(b'Q', b"xyyy".to_vec(), shaped.len())]);
}

/// The `pg_shard` checks on the inputs its seeds hold: every key length around the 12-byte
/// blocks, edge integers, and hostile Bind bodies.
#[test]
fn sharding_readers_agree_with_their_oracles() {
    use super::pg_shard;
    for len in 0..40usize {
        let key: Vec<u8> = (0..len as u8).map(|b| b.wrapping_mul(37)).collect();
        for seed in [0u64, 0x7A5B_2236_7996_DCFD, 1] {
            let mut input = vec![1];
            input.extend_from_slice(&seed.to_le_bytes());
            input.extend_from_slice(&key);
            pg_shard(&input);
        }
    }
    let deep = format!("{}1", "1 << ".repeat(200));
    for v in [
        0i64,
        1,
        -1,
        42,
        i64::MAX,
        i64::MIN,
        i64::MIN + 1,
        1 << 32,
        -(1 << 31),
    ] {
        for junk in [
            "true",
            "name = 'x'",
            "true) or (id = 5",
            "true); delete from users; select (1",
            "(((",
            // deeper than serde_json reads a tree (found by the fuzzer: it went anywhere)
            deep.as_str(),
        ] {
            let mut input = vec![2];
            input.extend_from_slice(&v.to_le_bytes());
            input.extend_from_slice(junk.as_bytes());
            pg_shard(&input);
        }
    }
    let binds: [&[u8]; 7] = [
        &[],
        &[0, 0, 0, 0],
        &[0, 1, 0, 1, 0, 1, 0, 0, 0, 2, 1, 2],
        &[
            0, 2, 0, 1, 0, 0, 0, 2, 0, 0, 0, 1, b'x', 0xff, 0xff, 0xff, 0xff,
        ],
        &[0xff, 0xff, 0, 1, 0, 0, 0, 0],
        &[0, 0, 0, 1, 0x7f, 0xff, 0xff, 0xff],
        &[0, 0, 0, 1, 0xff, 0xff, 0xff, 0xfe],
    ];
    for b in binds {
        let mut input = vec![0];
        input.extend_from_slice(b);
        pg_shard(&input);
    }
    for sql in [
        "select * from users where id = 1",
        "select * from users u join tags t on t.k = u.name where u.id in (1, 2, 3)",
        "insert into tags (k) values ('a'), ('b')",
        "select * from tags where k = $1",
    ] {
        let mut input = vec![3];
        input.extend_from_slice(sql.as_bytes());
        pg_shard(&input);
    }
    for sql in [
        "BEGIN",
        "begin work;",
        " Start\tTransaction ; ",
        "END",
        "commit transaction",
        "ABORT;",
        "rollback work",
        "BEGIN\x0b",
        "begin read only",
    ] {
        let mut input = vec![4];
        input.extend_from_slice(sql.as_bytes());
        pg_shard(&input);
    }
}

/// A tagged message `tag` with `body`.
fn tagged(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut m = header(tag, body.len() as u32 + 4);
    m.extend_from_slice(body);
    m
}

#[test]
fn batches_that_may_share_are_judged_alike_and_hostile_ones_do_not_share() {
    let bind = |statement: &[u8]| {
        let mut b = vec![0];
        b.extend_from_slice(statement);
        b.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0]);
        tagged(b'B', &b)
    };
    let (describe, execute, sync) = (
        tagged(b'D', b"P\0"),
        tagged(b'E', &[0, 0, 0, 0, 0]),
        tagged(b'S', b""),
    );
    let stream = |parts: &[&[u8]]| logged_in(&parts.concat());
    // a client's statement, bound twice, described by name: shares, naming it once
    let good = stream(&[
        &tagged(b'D', b"Ss1\0"),
        &bind(b"s1"),
        &describe,
        &execute,
        &sync,
    ]);
    let read = frontend(&good);
    let (len, names) = may_share(&read.messages).expect("it may share");
    assert_eq!(len, good.len() - good_startup().len());
    assert_eq!(names, vec![b"s1".to_vec()]);
    for (why, bad) in [
        (
            "a statement it did not prepare",
            stream(&[&bind(b"s2"), &execute, &sync]),
        ),
        ("no Sync", stream(&[&bind(b"s1"), &execute])),
        (
            "a Describe with more after the name",
            stream(&[&tagged(b'D', b"Ss1\0x"), &sync]),
        ),
        (
            "a portal with a name",
            stream(&[&tagged(b'E', b"p\0\0\0\0\0"), &sync]),
        ),
        (
            "a Bind without its fields",
            stream(&[&tagged(b'B', b"\0s1"), &sync]),
        ),
        (
            "a Query first",
            stream(&[&tagged(b'Q', b"select 1\0"), &sync]),
        ),
    ] {
        frontend(&bad);
        assert_eq!(may_share(&frontend(&bad).messages), None, "{why}");
    }
}

/// A server's error answering an SSLRequest, in both of its forms and cut or stretched every
/// way: read alike however it arrives, and never waited on past the limit.
#[test]
fn ssl_refusals_are_read_alike_however_they_arrive() {
    let text = b"could not fork new process for connection: Resource temporarily unavailable\n\0";
    let body = b"SFATAL\0VFATAL\0C53300\0Msorry, too many clients already\0\0";
    let framed = [&((body.len() + 4) as u32).to_be_bytes()[..], body].concat();
    let cases: Vec<Vec<u8>> = vec![
        text.to_vec(),
        framed.clone(),
        // a length word that says less than a body, or more than the limit: text
        [&[0, 0, 0, 7][..], b"x\0"].concat(),
        [&[0, 0, 0x20, 1][..], body].concat(),
        // cut short, with and without the NUL; bytes after the answer
        text[..20].to_vec(),
        framed[..framed.len() - 3].to_vec(),
        [&framed[..], b"junk"].concat(),
        // two codes: the last is kept, as libpq keeps it
        [&(20u32 + 4).to_be_bytes()[..], b"C11111\0C22222\0Mm\0\0\0"].concat(),
        // no NUL within the limit, and not UTF-8
        vec![b'a'; proto::SSL_REFUSAL_MAX + 10],
        vec![0xff; 40],
        Vec::new(),
    ];
    for case in &cases {
        ssl_answer(case);
    }
    assert_eq!(
        proto::ssl_refusal(text, false),
        Some((
            None,
            "could not fork new process for connection: Resource temporarily unavailable".into()
        ))
    );
    assert_eq!(
        proto::ssl_refusal(&framed, false),
        Some((
            Some("53300".into()),
            "sorry, too many clients already (53300)".into()
        ))
    );
    assert_eq!(proto::ssl_refusal(&framed[..10], false), None);
}
