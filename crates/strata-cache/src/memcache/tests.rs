//! The memcached text codec on what clients and servers send, and what they must not.

use super::*;

fn take(input: &[u8]) -> (Result<Option<McCommand>, McError>, usize) {
    let mut buf = BytesMut::from(input);
    let r = take_command(&mut buf, 1 << 20);
    (r, input.len() - buf.len())
}

#[test]
fn commands_are_read_whole_or_not_at_all() {
    let set = b"set k 5 0 3\r\nabc\r\n";
    let (r, used) = take(set);
    let c = r.unwrap().unwrap();
    assert_eq!(
        (c.kind, &c.keys[0][..], used),
        (Kind::Store, &b"k"[..], set.len())
    );
    assert_eq!(&c.frame[..], set);
    for cut in 0..set.len() {
        assert!(matches!(take(&set[..cut]).0, Ok(None)), "cut at {cut}");
    }
    let (r, _) = take(b"gets a b  c\r\n");
    let c = r.unwrap().unwrap();
    assert_eq!(c.kind, Kind::Get);
    assert_eq!(c.keys, vec![&b"a"[..], b"b", b"c"]);
}

#[test]
fn padding_is_taken_off_what_the_server_gets() {
    let (r, used) = take(b"  set   k 0  0 2 \r\nhi\r\n");
    assert_eq!(used, 23);
    assert_eq!(&r.unwrap().unwrap().frame[..], b"set k 0 0 2\r\nhi\r\n");
    let c = take(b"gets a b  c\r\n").0.unwrap().unwrap();
    assert_eq!(&c.frame[..], b"gets a b c\r\n");
    // a line without padding goes as it came
    let c = take(b"get a b\r\n").0.unwrap().unwrap();
    assert_eq!(&c.frame[..], b"get a b\r\n");
}

#[test]
fn noreply_is_taken_off_what_the_server_gets() {
    let (r, used) = take(b"set k 0 0 2 noreply\r\nhi\r\nget k\r\n");
    let c = r.unwrap().unwrap();
    assert!(c.noreply);
    assert_eq!(&c.frame[..], b"set k 0 0 2\r\nhi\r\n");
    assert_eq!(used, 25);
    let c = take(b"delete k noreply\r\n").0.unwrap().unwrap();
    assert_eq!((&c.frame[..], c.noreply), (&b"delete k\r\n"[..], true));
}

#[test]
fn bad_lines_are_refused_and_consumed_bad_data_is_fatal() {
    let (r, used) = take(b"stats\r\nget a\r\n");
    assert_eq!((r.err(), used), (Some(McError::Unknown), 7));
    assert_eq!(take(b"get\r\n").0.err(), Some(McError::Format));
    assert_eq!(take(b"incr k x\r\n").0.err(), Some(McError::Format));
    assert_eq!(take(b"get a\n").0.err(), Some(McError::Format));
    // a storage line without its CR: its data block can't be told from commands
    assert_eq!(
        take(b"set k 0 0 9\ndelete x\r\n").0.err(),
        Some(McError::DataChunk)
    );
    let long_key = format!("get {}\r\n", "k".repeat(251));
    assert_eq!(take(long_key.as_bytes()).0.err(), Some(McError::Format));
    assert_eq!(
        take(b"set k 0 0 3\r\nabcXX").0.err(),
        Some(McError::DataChunk)
    );
    assert_eq!(
        take(b"set k 0 0 x\r\nabc\r\n").0.err(),
        Some(McError::DataChunk)
    );
    assert_eq!(
        take(b"set k 0 0 9999999\r\n").0.err(),
        Some(McError::DataChunk)
    );
    assert!(!McError::DataChunk.recoverable() && McError::Format.recoverable());
    let mut long = vec![b'g'; MAX_LINE + 10];
    long.push(b'\n');
    assert_eq!(take(&long).0.err(), Some(McError::LineTooLong));
}

#[test]
fn replies_are_measured_to_their_end() {
    for reply in [
        &b"STORED\r\n"[..],
        b"END\r\n",
        b"VALUE k 0 3\r\nabc\r\nEND\r\n",
        b"VALUE a 1 1 7\r\nx\r\nVALUE b 2 0 8\r\n\r\nEND\r\n",
        b"42\r\n",
        b"SERVER_ERROR out of memory\r\n",
    ] {
        assert_eq!(reply_len(reply), Ok(Some(reply.len())), "{reply:?}");
        for cut in 0..reply.len() {
            assert_eq!(reply_len(&reply[..cut]), Ok(None), "cut at {cut}");
        }
    }
    assert_eq!(reply_len(b"VALUE k 0 3\r\nabcXX"), Err(McError::Reply));
    assert_eq!(
        reply_len(b"VALUE k 0 1\r\na\r\nSTORED\r\n"),
        Err(McError::Reply)
    );
    let v = values(b"VALUE a 1 1\r\nx\r\nVALUE b 2 0\r\n\r\nEND\r\n").unwrap();
    assert_eq!(v.len(), 2);
    assert_eq!(v[0], (&b"a"[..], &b"VALUE a 1 1\r\nx\r\n"[..]));
    assert_eq!(values(b"SERVER_ERROR x\r\n"), None);
}

#[test]
fn a_meta_get_value_is_one_reply() {
    let va = b"VA 3 f7 t99\r\nabc\r\n";
    assert_eq!(reply_len(va), Ok(Some(va.len())));
    for cut in 0..va.len() {
        assert_eq!(reply_len(&va[..cut]), Ok(None), "cut at {cut}");
    }
    assert_eq!(reply_len(b"EN\r\n"), Ok(Some(4)));
    assert_eq!(reply_len(b"VA 3 f7\r\nabcd\r\n"), Err(McError::Reply));
    assert_eq!(reply_len(b"VA x\r\n"), Err(McError::Reply));
}
