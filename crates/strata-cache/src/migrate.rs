//! A ring change without a miss storm: after a reload moves keys to other servers, a GET that
//! misses on a key's new server reads its old server, answers with the value found there and
//! copies the key over (DUMP/RESTORE, with its time to live), so each moved key misses at
//! most once. In a `strong` pool the old copy is then deleted, so it can't be read stale later.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use strata_config::Consistency;

use crate::answer::Answer;
use crate::pool::{Pool, Shard};
use crate::resp::{self, Command, Value};
use crate::server::Reply;

/// The answer to `GET key` when the key may still be on its server from before the last
/// reload; `None` when it can't have moved.
pub(crate) fn get(pool: &Pool, cmd: &Command, resp3: bool) -> Option<Answer> {
    let old = pool.old.as_ref()?;
    let key = cmd.arg(1);
    let before = old.server_for(key)?;
    let now = pool.server_for(key).ok()?;
    let after = &pool.servers[now];
    if before.live.target.get().0 == after.live.target.get().0 {
        return None;
    }
    // the GET on the key's new server goes out now, in its place in the client's pipeline
    let frame = cmd.to_frame();
    let first = after.send(frame.clone(), resp3);
    let work = read_through(
        first,
        after.clone(),
        before.clone(),
        Bytes::copy_from_slice(key),
        frame,
        resp3,
        pool.config.consistency == Consistency::Strong,
    );
    Some(Answer::Later(Box::pin(work)))
}

/// A write of `key` while read-through lasts: its copy on the old server, if the key moved,
/// is deleted first, so that a later miss on the new server can't bring back a value the
/// client has since overwritten, deleted or let expire.
pub(crate) fn forget_old(pool: &Pool, key: &[u8]) {
    let Some(old) = pool.old.as_ref() else {
        return;
    };
    let Some(before) = old.server_for(key) else {
        return;
    };
    let Ok(now) = pool.server_for(key) else {
        return;
    };
    if before.live.target.get().0 != pool.servers[now].live.target.get().0 {
        before.master.send_everywhere(&command(&[b"DEL", key]));
    }
}

fn command(args: &[&[u8]]) -> Bytes {
    let mut out = BytesMut::new();
    resp::encode_command(&mut out, args.iter().copied());
    out.freeze()
}

fn reply(r: Result<Reply, tokio::sync::oneshot::error::RecvError>) -> Result<Bytes, String> {
    match r {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(lost)) => Err(lost.to_string()),
        Err(_) => Err("the connection to the server was lost".into()),
    }
}

fn is_null(reply: &[u8]) -> bool {
    reply == b"$-1\r\n" || reply == b"_\r\n"
}

async fn read_through(
    first: tokio::sync::oneshot::Receiver<Reply>,
    after: Arc<Shard>,
    before: Arc<Shard>,
    key: Bytes,
    get: Bytes,
    resp3: bool,
    strong: bool,
) -> Result<Bytes, String> {
    let now = reply(first.await)?;
    if !is_null(&now) {
        return Ok(now);
    }
    // the old server, in one pipeline: the value, its time to live, and the key whole
    let value = before.send(get, resp3);
    let pttl = before.send(command(&[b"PTTL", &key]), resp3);
    let dump = before.send(command(&[b"DUMP", &key]), resp3);
    let (value, pttl, dump) = (reply(value.await)?, reply(pttl.await)?, reply(dump.await)?);
    if !value.starts_with(b"$") || is_null(&value) {
        // not there either (or not a string: the new server's answer stands)
        return Ok(now);
    }
    let ttl = match resp::Values::new(&pttl).next() {
        Some(Value::Int(ms)) if ms > 0 => ms.to_string(),
        Some(Value::Int(-1)) => "0".to_string(),
        // gone between the reads
        _ => return Ok(now),
    };
    let Some(Value::Bulk(Some(payload))) = resp::Values::new(&dump).next() else {
        return Ok(now);
    };
    let restored = reply(
        after
            .send(command(&[b"RESTORE", &key, ttl.as_bytes(), payload]), resp3)
            .await,
    )?;
    if restored.starts_with(b"-BUSYKEY") {
        // written on the new server meanwhile: that value is the newer one
        return reply(after.send(command(&[b"GET", &key]), resp3).await);
    }
    if restored.starts_with(b"+OK") && strong {
        let _ = before.send(command(&[b"DEL", &key]), resp3).await;
    }
    Ok(value)
}
