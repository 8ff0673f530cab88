//! The RESP codec on the inputs Redis's own parser treats specially, and on replies.

use super::*;

const MAX: u64 = 1 << 20;

type Args = Option<(Vec<Vec<u8>>, usize)>;

fn args(input: &[u8]) -> Result<Args, ProtocolError> {
    let mut buf = BytesMut::from(input);
    let before = buf.len();
    Ok(take_command(&mut buf, MAX, &mut None)?.map(|c| {
        let args = (0..c.len()).map(|i| c.arg(i).to_vec()).collect();
        (args, before - buf.len())
    }))
}

fn words(v: &[&str]) -> Vec<Vec<u8>> {
    v.iter().map(|s| s.as_bytes().to_vec()).collect()
}

#[test]
fn a_multibulk_command_is_read_whole_or_not_at_all() {
    let cmd = b"*2\r\n$3\r\nGET\r\n$3\r\nkey\r\n";
    assert_eq!(args(cmd), Ok(Some((words(&["GET", "key"]), cmd.len()))));
    for cut in 0..cmd.len() {
        assert_eq!(args(&cmd[..cut]), Ok(None), "cut at {cut}");
    }
}

#[test]
fn pipelined_commands_come_one_at_a_time() {
    let mut buf =
        BytesMut::from(&b"*1\r\n$4\r\nPING\r\n*2\r\n$4\r\nECHO\r\n$2\r\nhi\r\nPING\r\n"[..]);
    let a = take_command(&mut buf, MAX, &mut None).unwrap().unwrap();
    let b = take_command(&mut buf, MAX, &mut None).unwrap().unwrap();
    let c = take_command(&mut buf, MAX, &mut None).unwrap().unwrap();
    assert_eq!((a.len(), b.arg(1), c.arg(0)), (1, &b"hi"[..], &b"PING"[..]));
    assert!(c.inline);
    assert!(matches!(take_command(&mut buf, MAX, &mut None), Ok(None)));
    assert!(buf.is_empty());
}

#[test]
fn empty_commands_are_skipped_as_redis_skips_them() {
    assert_eq!(
        args(b"*0\r\n*-1\r\n\r\n*1\r\n$4\r\nPING\r\n"),
        Ok(Some((words(&["PING"]), 25)))
    );
    assert_eq!(args(b"*0\r\n"), Ok(None));
}

#[test]
fn inline_commands_are_split_on_spaces_and_forwarded_as_multibulk() {
    let mut buf = BytesMut::from(&b"SET  k   v\r\n"[..]);
    let c = take_command(&mut buf, MAX, &mut None).unwrap().unwrap();
    assert_eq!(
        (0..c.len()).map(|i| c.arg(i).to_vec()).collect::<Vec<_>>(),
        words(&["SET", "k", "v"])
    );
    assert_eq!(
        &c.to_frame()[..],
        b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n"
    );
    // a bare LF ends an inline line, as in Redis
    assert_eq!(args(b"PING\n"), Ok(Some((words(&["PING"]), 5))));
    // quotes would be read differently by Redis (sdssplitargs): refused
    assert_eq!(args(b"SET k \"a b\"\r\n"), Err(ProtocolError::BadLine));
}

#[test]
fn malformed_multibulks_are_refused_with_redis_s_reasons() {
    assert_eq!(args(b"*x\r\n"), Err(ProtocolError::MultibulkLength));
    assert_eq!(args(b"*+1\r\n"), Err(ProtocolError::MultibulkLength));
    assert_eq!(args(b"*2000000\r\n"), Err(ProtocolError::MultibulkLength));
    assert_eq!(
        args(b"*1\r\n:1\r\n"),
        Err(ProtocolError::ExpectedBulk(b':'))
    );
    assert_eq!(args(b"*1\r\n$-1\r\n"), Err(ProtocolError::BulkLength));
    assert_eq!(
        args(b"*1\r\n$ 3\r\nfoo\r\n"),
        Err(ProtocolError::BulkLength)
    );
    assert_eq!(args(b"*1\r\n$3\r\nfooXX"), Err(ProtocolError::MissingCrlf));
    assert_eq!(args(b"*1\n"), Err(ProtocolError::BadLine));
    assert_eq!(
        args(b"*1\r\n$2000000\r\n"),
        Err(ProtocolError::BulkTooLarge(2_000_000, MAX))
    );
}

#[test]
fn a_line_without_its_end_is_refused_once_too_long() {
    let long = vec![b'a'; MAX_LINE + 10];
    assert_eq!(args(&long), Err(ProtocolError::LineTooLong));
    let mut header = b"*".to_vec();
    header.extend(std::iter::repeat_n(b'1', MAX_LINE + 10));
    assert_eq!(args(&header), Err(ProtocolError::LineTooLong));
    assert_eq!(args(&long[..100]), Ok(None));
}

#[test]
fn replies_are_measured_to_their_end() {
    for reply in [
        &b"+OK\r\n"[..],
        b"-ERR no\r\n",
        b":42\r\n",
        b"$-1\r\n",
        b"$0\r\n\r\n",
        b"$3\r\nfoo\r\n",
        b"*-1\r\n",
        b"*0\r\n",
        b"*2\r\n$1\r\na\r\n*2\r\n:1\r\n*1\r\n+x\r\n",
    ] {
        assert_eq!(reply_len(reply), Ok(Some(reply.len())), "{reply:?}");
        let mut twice = reply.to_vec();
        twice.extend_from_slice(reply);
        assert_eq!(reply_len(&twice), Ok(Some(reply.len())));
        for cut in 0..reply.len() {
            assert_eq!(reply_len(&reply[..cut]), Ok(None), "{reply:?} cut at {cut}");
        }
    }
    assert_eq!(reply_len(b"?x\r\n"), Err(ProtocolError::ReplyType(b'?')));
    assert_eq!(reply_len(b"$3\r\nfooXX"), Err(ProtocolError::MissingCrlf));
    let deep = "*1\r\n".repeat(MAX_REPLY_DEPTH + 1) + ":1\r\n";
    assert_eq!(reply_len(deep.as_bytes()), Err(ProtocolError::ReplyDepth));
}

#[test]
fn values_walk_a_reply_in_order() {
    let reply = b"*3\r\n$1\r\na\r\n$-1\r\n*1\r\n:7\r\n";
    let mut v = Values::new(reply);
    assert_eq!(v.next(), Some(Value::Array(Some(3))));
    assert_eq!(v.next(), Some(Value::Bulk(Some(b"a"))));
    assert_eq!(v.next(), Some(Value::Bulk(None)));
    assert_eq!(v.whole(), Some(&b"*1\r\n:7\r\n"[..]));
    assert_eq!(v.next(), None);
}

#[test]
fn encoding_round_trips_through_the_parser() {
    let mut out = BytesMut::new();
    encode_command(&mut out, [&b"SET"[..], b"k\r\n", b""].into_iter());
    let c = take_command(&mut out, MAX, &mut None).unwrap().unwrap();
    assert_eq!((c.arg(1), c.arg(2)), (&b"k\r\n"[..], &b""[..]));
    assert_eq!(&error_frame("ERR a\r\nb")[..], b"-ERR a  b\r\n");
}

/// A command of many arguments arriving over many reads is read on from where the last read
/// stopped (each argument once), after empty commands before it too, and comes out as it
/// does read whole.
#[test]
fn a_command_arriving_in_pieces_is_read_on_not_again() {
    let mut cmd = b"*0\r\n\r\n".to_vec();
    let n = 10_000;
    cmd.extend_from_slice(format!("*{}\r\n$4\r\nMSET\r\n", n + 1).as_bytes());
    for i in 0..n {
        let k = format!("k{i}");
        cmd.extend_from_slice(format!("${}\r\n{k}\r\n", k.len()).as_bytes());
    }
    cmd.extend_from_slice(b"*1\r\n$4\r\nPING\r\n");
    let mut buf = BytesMut::new();
    let mut partial = None;
    let mut got = Vec::new();
    let mut resumed = 0;
    for piece in cmd.chunks(7) {
        buf.extend_from_slice(piece);
        while let Some(c) = take_command(&mut buf, MAX, &mut partial).unwrap() {
            got.push(c.len());
        }
        if let Some(p) = &partial {
            // what was read is kept: the next read starts at the next argument
            assert!(p.at >= p.args.last().map_or(0, |a| a.end as usize));
            resumed += 1;
        }
    }
    assert!(buf.is_empty());
    assert_eq!(got, [n + 1, 1]);
    assert!(resumed > 1000);
}

/// Empty commands that lead an incomplete one leave the buffer at once: endless `*0` can't
/// make it grow.
#[test]
fn empty_commands_do_not_pile_up() {
    let mut buf = BytesMut::new();
    let mut partial = None;
    for _ in 0..10_000 {
        buf.extend_from_slice(b"*0\r\n\r\n");
        assert!(take_command(&mut buf, MAX, &mut partial).unwrap().is_none());
    }
    assert!(buf.is_empty());
    buf.extend_from_slice(b"*0\r\n*2\r\n$3\r\nGET\r\n$1");
    assert!(take_command(&mut buf, MAX, &mut partial).unwrap().is_none());
    assert!(buf.starts_with(b"*2"));
    buf.extend_from_slice(b"\r\nk\r\n");
    let c = take_command(&mut buf, MAX, &mut partial).unwrap().unwrap();
    assert_eq!(c.arg(1), b"k");
    assert!(buf.is_empty());
}
