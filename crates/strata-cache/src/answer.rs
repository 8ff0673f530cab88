//! A command's answer on its way to the client: ready now, owed by one server, or owed by
//! several and merged (MGET's values back in key order, DEL's counts summed, memcached's VALUE
//! blocks in the order asked). Answers are written in the order the commands came.

use bytes::{Bytes, BytesMut};
use strata_config::CacheProtocol;
use tokio::sync::oneshot;

use crate::memcache;
use crate::resp::{self, Value};
use crate::server::Reply;

/// A command's answer, as it will be written: ready now, or owed by servers.
pub(crate) enum Answer {
    Ready(Bytes),
    One(oneshot::Receiver<Reply>),
    /// A server's reply the client asked not to get (memcached's `noreply`).
    Silent(oneshot::Receiver<Reply>),
    Merge(Box<Merge>),
    /// Worked out in steps (a read through to a key's old server): the reply, or why none.
    Later(std::pin::Pin<Box<dyn std::future::Future<Output = Result<Bytes, String>> + Send>>),
}

/// A command split over several servers: each part's reply, and how they combine.
pub(crate) struct Merge {
    pub(crate) how: Combine,
    /// Each part and, for MGET, the positions of its keys in the client's command.
    pub(crate) parts: Vec<(oneshot::Receiver<Reply>, Vec<usize>)>,
    pub(crate) keys: usize,
}

pub(crate) enum Combine {
    /// Values placed back in the order of the keys (MGET).
    Values,
    /// `+OK` when every part says so (MSET).
    Ok,
    /// The sum of the parts' integers (DEL, EXISTS, DBSIZE, ...).
    Sum,
    /// The parts' arrays, one after the other (KEYS).
    Concat,
    /// memcached `VALUE` blocks put back in the order of these keys, then `END`.
    McValues(Vec<Bytes>),
    /// One server's SCAN reply, its cursor made the client's (see `redis::scan`).
    Scan {
        /// The server scanned.
        server: usize,
        /// How many servers the pool has.
        servers: usize,
    },
}

/// Waits for `answer` and appends it to `out`; true when the answer is an error the proxy
/// made (a lost server, a refusal).
pub(crate) async fn write_answer(
    answer: Answer,
    protocol: CacheProtocol,
    out: &mut BytesMut,
) -> bool {
    let lost = |out: &mut BytesMut, why: &str| match protocol {
        CacheProtocol::Redis => resp::error(out, &format!("ERR strata: {why}")),
        CacheProtocol::Memcache => {
            out.extend_from_slice(format!("SERVER_ERROR strata: {why}\r\n").as_bytes())
        }
    };
    match answer {
        Answer::Ready(bytes) => {
            out.extend_from_slice(&bytes);
            bytes.starts_with(b"-")
        }
        Answer::One(rx) => match crate::server::received(rx.await) {
            Ok(reply) => {
                out.extend_from_slice(&reply);
                false
            }
            Err(why) => {
                lost(out, &why);
                true
            }
        },
        Answer::Silent(rx) => {
            let _ = rx.await;
            false
        }
        Answer::Merge(merge) => Box::pin(merge_replies(*merge, protocol, out)).await,
        Answer::Later(work) => match work.await {
            Ok(reply) => {
                out.extend_from_slice(&reply);
                false
            }
            Err(why) => {
                lost(out, &why);
                true
            }
        },
    }
}

async fn merge_replies(merge: Merge, protocol: CacheProtocol, out: &mut BytesMut) -> bool {
    let mut replies: Vec<(Bytes, Vec<usize>)> = Vec::with_capacity(merge.parts.len());
    let mut lost = None;
    for (rx, positions) in merge.parts {
        match crate::server::received(rx.await) {
            Ok(reply) => replies.push((reply, positions)),
            Err(why) => lost = lost.or(Some(why)),
        }
    }
    if let Some(why) = lost {
        match protocol {
            CacheProtocol::Redis => resp::error(out, &format!("ERR strata: {why}")),
            CacheProtocol::Memcache => {
                out.extend_from_slice(format!("SERVER_ERROR strata: {why}\r\n").as_bytes())
            }
        }
        return true;
    }
    combine(&merge.how, merge.keys, &replies, out)
}

/// The replies to a split command's parts, as the one answer its client gets; true when the
/// proxy had to answer with an error of its own.
pub(crate) fn combine(
    how: &Combine,
    keys: usize,
    replies: &[(Bytes, Vec<usize>)],
    out: &mut BytesMut,
) -> bool {
    if let Combine::McValues(keys) = how {
        return merge_values(keys, replies, out);
    }
    // a server's own error reply is the answer
    if let Some((reply, _)) = replies.iter().find(|(r, _)| r.starts_with(b"-")) {
        out.extend_from_slice(reply);
        return false;
    }
    let unexpected = |out: &mut BytesMut| {
        resp::error(
            out,
            "ERR strata: a server answered a split command unexpectedly",
        );
        true
    };
    match *how {
        Combine::Ok => {
            resp::simple(out, "OK");
            false
        }
        Combine::Sum => {
            let mut sum = 0i64;
            for (reply, _) in replies {
                match resp::Values::new(reply).next() {
                    Some(Value::Int(n)) => sum = sum.saturating_add(n),
                    _ => return unexpected(out),
                }
            }
            resp::integer(out, sum);
            false
        }
        Combine::Values => {
            // each value as its server wrote it: `$-1` or RESP3's `_` for a missing key
            let mut values: Vec<&[u8]> = vec![&[]; keys + 1];
            for (reply, positions) in replies {
                let mut v = resp::Values::new(reply);
                if v.next() != Some(Value::Array(Some(positions.len()))) {
                    return unexpected(out);
                }
                for &p in positions {
                    match v.whole() {
                        Some(raw) if raw.starts_with(b"$") || raw.starts_with(b"_") => {
                            values[p] = raw
                        }
                        _ => return unexpected(out),
                    }
                }
            }
            resp::array_header(out, keys);
            for v in &values[1..] {
                out.extend_from_slice(v);
            }
            false
        }
        Combine::McValues(_) => unreachable!("merged above"),
        Combine::Scan { server, servers } => {
            let reply = &replies[0].0;
            let mut v = resp::Values::new(reply);
            let (Some(Value::Array(Some(2))), Some(Value::Bulk(Some(cursor)))) =
                (v.next(), v.next())
            else {
                return unexpected(out);
            };
            let Some(cursor) = std::str::from_utf8(cursor)
                .ok()
                .and_then(|c| c.parse::<u128>().ok())
            else {
                return unexpected(out);
            };
            let servers = servers as u128;
            let next = if cursor != 0 {
                let Some(next) = cursor
                    .checked_mul(servers)
                    .and_then(|c| c.checked_add(server as u128))
                else {
                    return unexpected(out);
                };
                next
            } else if (server as u128) + 1 < servers {
                server as u128 + 1
            } else {
                0
            };
            let Some(keys) = v.whole() else {
                return unexpected(out);
            };
            resp::array_header(out, 2);
            resp::bulk(out, Some(next.to_string().as_bytes()));
            out.extend_from_slice(keys);
            false
        }
        Combine::Concat => {
            let mut items: Vec<&[u8]> = Vec::new();
            for (reply, _) in replies {
                let mut v = resp::Values::new(reply);
                let Some(Value::Array(Some(n))) = v.next() else {
                    return unexpected(out);
                };
                for _ in 0..n {
                    match v.whole() {
                        Some(item) => items.push(item),
                        None => return unexpected(out),
                    }
                }
            }
            resp::array_header(out, items.len());
            for item in items {
                out.extend_from_slice(item);
            }
            false
        }
    }
}

/// memcached get replies from several servers, as one: each key's `VALUE` block in the order
/// the client asked, then `END`. A server's error line is the answer.
fn merge_values(keys: &[Bytes], replies: &[(Bytes, Vec<usize>)], out: &mut BytesMut) -> bool {
    let mut found: Vec<Option<&[u8]>> = vec![None; keys.len()];
    for (reply, positions) in replies {
        let Some(values) = memcache::values(reply) else {
            out.extend_from_slice(reply);
            return false;
        };
        // a part's values come in the order of its keys, misses left out
        let mut values = values.into_iter().peekable();
        for &p in positions {
            if values.peek().is_some_and(|(k, _)| *k == &keys[p][..]) {
                found[p] = values.next().map(|(_, block)| block);
            }
        }
    }
    for block in found.into_iter().flatten() {
        out.extend_from_slice(block);
    }
    out.extend_from_slice(b"END\r\n");
    false
}

/// An error the proxy answers itself, as one frame.
pub(crate) fn error(text: &str) -> Answer {
    Answer::Ready(resp::error_frame(text))
}
