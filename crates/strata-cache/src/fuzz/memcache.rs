//! Entry points for the cargo-fuzz targets `mc_command` and `mc_reply`: the memcached text codec
//! in [`crate::memcache`], checked against a second framer written only for this, which reads a
//! byte stream as memcached's own parser does (a line split on spaces; for a storage command,
//! exactly the data block its line announces, then CRLF).

use bytes::BytesMut;

use crate::memcache::{reply_len, take_command, values, Kind, McError};

const MAX_VALUE: u64 = 1 << 20;

/// One command as memcached reads it: its line's words and its data block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Framed {
    /// The words of its line.
    pub words: Vec<Vec<u8>>,
    /// The data block of a storage command.
    pub data: Option<Vec<u8>>,
}

/// Reads one command off `buf` as memcached does; `None` when it is not whole (or not one).
pub fn oracle(buf: &[u8]) -> Option<(Framed, usize)> {
    let lf = buf.iter().position(|&b| b == b'\n')?;
    let line = buf[..lf].strip_suffix(b"\r").unwrap_or(&buf[..lf]);
    let words: Vec<Vec<u8>> = line
        .split(|&b| b == b' ')
        .filter(|w| !w.is_empty())
        .map(<[u8]>::to_vec)
        .collect();
    let storage = [
        &b"set"[..],
        b"add",
        b"replace",
        b"append",
        b"prepend",
        b"cas",
    ];
    let name = words.first()?;
    if !storage.contains(&name.as_slice()) {
        return Some((Framed { words, data: None }, lf + 1));
    }
    let len: usize = std::str::from_utf8(words.get(4)?).ok()?.parse().ok()?;
    let data = lf + 1;
    let end = data.checked_add(len)?.checked_add(2)?;
    if buf.len() < end || &buf[data + len..end] != b"\r\n" {
        return None;
    }
    let data_block = buf[data..data + len].to_vec();
    Some((
        Framed {
            words,
            data: Some(data_block),
        },
        end,
    ))
}

/// What the proxy read from `data` fed in pieces of `piece` bytes (0: whole): each command as
/// it is forwarded, framed by the oracle, and the error it stopped on, if any.
fn proxy_read(data: &[u8], piece: usize) -> (Vec<(Framed, Kind, bool)>, Option<McError>) {
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut fed = 0;
    while fed < data.len() {
        let n = if piece == 0 {
            data.len()
        } else {
            piece.min(data.len() - fed)
        };
        buf.extend_from_slice(&data[fed..fed + n]);
        fed += n;
        loop {
            match take_command(&mut buf, MAX_VALUE) {
                Ok(Some(cmd)) => {
                    // the forwarded frame is exactly one command memcached reads whole
                    let (framed, used) = oracle(&cmd.frame).unwrap_or_else(|| {
                        panic!(
                            "the proxy forwards what memcached can't frame: {:?}",
                            cmd.frame
                        )
                    });
                    assert_eq!(
                        used,
                        cmd.frame.len(),
                        "more than one command in {:?}",
                        cmd.frame
                    );
                    // its line is canonical: words one space apart, none before or after
                    let line_end = cmd.frame.iter().position(|&b| b == b'\n').unwrap_or(0);
                    let line = &cmd.frame[..line_end.saturating_sub(1)];
                    assert!(
                        !line.starts_with(b" ")
                            && !line.ends_with(b" ")
                            && !line.windows(2).any(|w| w == b"  "),
                        "padding forwarded: {:?}",
                        cmd.frame
                    );
                    // noreply is not forwarded (its answer is waited for and dropped): a last
                    // word "noreply" may only be a key ("delete noreply", which memcached
                    // reads as the key noreply, with a reply)
                    if cmd.noreply {
                        let last_is_noreply =
                            framed.words.last().map(|w| &w[..]) == Some(&b"noreply"[..]);
                        assert!(
                            !last_is_noreply || framed.words.len() == 2,
                            "noreply forwarded: {:?}",
                            cmd.frame
                        );
                    }
                    // what the proxy routes by is what memcached reads
                    let keys: Vec<&[u8]> = cmd.keys.iter().map(|k| &k[..]).collect();
                    match cmd.kind {
                        Kind::Get => {
                            let read: Vec<&[u8]> =
                                framed.words[1..].iter().map(|w| &w[..]).collect();
                            assert_eq!(keys, read, "get keys in {:?}", cmd.frame);
                        }
                        Kind::Store | Kind::Key => {
                            assert_eq!(keys, [&framed.words[1][..]], "key in {:?}", cmd.frame)
                        }
                        _ => {}
                    }
                    out.push((framed, cmd.kind, cmd.noreply));
                }
                Ok(None) => break,
                Err(e) if e.recoverable() => continue,
                Err(e) => return (out, Some(e)),
            }
        }
    }
    (out, None)
}

/// The property for a client's byte stream: every command the proxy forwards is one whole
/// command as memcached frames it, with the keys the proxy routed it by, without `noreply`;
/// reading the stream whole or a byte at a time forwards the same commands and stops on the
/// same error.
pub fn command_stream(data: &[u8]) {
    let whole = proxy_read(data, 0);
    let bytewise = proxy_read(data, 1);
    // a recoverable error in the middle of a line that arrived in pieces can't differ: lines
    // are only looked at once whole
    assert_eq!(whole, bytewise, "whole and byte by byte differ");
}

/// The property for a server's byte stream: `reply_len` is the same on every prefix that holds
/// the whole reply and `None` (or the same error) before, and `values` walks a measured get
/// reply without reading past it.
pub fn reply_stream(data: &[u8]) {
    let whole = reply_len(data);
    // resumed byte by byte as the bytes come, the scan ends where one of the whole does
    let mut from = 0;
    let mut resumed = Ok(None);
    for cut in 0..=data.len() {
        resumed = crate::memcache::reply_len_from(&data[..cut], &mut from);
        if !matches!(resumed, Ok(None)) {
            break;
        }
    }
    assert_eq!(resumed, whole, "resumed byte by byte");
    if let Ok(Some(len)) = whole {
        assert!(len <= data.len());
        for cut in 0..len {
            match reply_len(&data[..cut]) {
                Ok(None) => {}
                Err(e) => assert_eq!(Err(e), whole.clone().map(|_| None::<usize>), "cut {cut}"),
                Ok(Some(n)) => panic!("a reply of {n} bytes inside one of {len} (cut {cut})"),
            }
        }
        assert_eq!(reply_len(&data[..len]), Ok(Some(len)));
        if let Some(blocks) = values(&data[..len]) {
            let total: usize = blocks.iter().map(|(_, b)| b.len()).sum();
            assert!(total <= len);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_client_streams_keep_the_property() {
        for data in [
            &b"set k 0 0 5\r\nhello\r\nget k\r\n"[..],
            b"set k 0 0 20\r\nx\r\ndelete victim\r\n123\r\n",
            b"set k 0 0 5 noreply\r\nhello\r\nget a  b\r\n",
            b"get a\x01b\r\nget ok\r\n",
            b"set k 0 0 1\r\nabc\r\nget evil\r\n",
            b"set k 0 0 -1\r\n\r\n",
            b"cas k 0 0 1 x\r\na\r\n",
            b"incr k 18446744073709551616\r\nget k\r\n",
            b"\r\n\n get\n",
            b"get k\nset x 0 0 1\r\na\r\n",
            b"touch k -1 noreply\r\nversion\r\nquit\r\n",
            b"set  k  1  2  3\r\nabc\r\n",
            b"delete noreply noreply\r\ndelete  noreply\r\n",
        ] {
            command_stream(data);
        }
    }

    #[test]
    fn hostile_server_streams_keep_the_property() {
        for data in [
            &b"VALUE k 0 3\r\nabc\r\nEND\r\n"[..],
            b"VALUE k 0 99999999999999999999\r\n",
            b"VALUE k 0 1\r\nab\r\nEND\r\n",
            b"VALUE k 0 3 5\r\nabc\r\nVALUE j 1 0\r\n\r\nEND\r\nSTORED\r\n",
            b"STORED\r\n",
            b"\r\n",
            b"VALUE\r\nEND\r\n",
        ] {
            reply_stream(data);
        }
    }
}
