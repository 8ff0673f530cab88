//! A ring change without a miss storm: after a reload moves keys to other servers, a read of a
//! key whose server changed first asks the new server whether it has the key; when it does
//! not, the key is copied over from its old server (DUMP/RESTORE, with its time to live) and
//! the read runs on the new server then. So each moved key misses at most once, whatever its
//! type and whatever reads it (GET, HGETALL, LRANGE, ZSCORE, ... and each key of an MGET). In a
//! `strong` pool the old copy is then deleted, so it can't be read stale later.
//!
//! memcached pools do the same for `get` and `gets`: a key the new server misses is read from
//! the old one with a meta get (its flags and the seconds it has left), added to the new one
//! with them, and read there again.
//!
//! A client's write of a key being copied wins over the copy: the write marks the key in
//! [`Copies`], and a copy whose key was written since it began does not send the value it read
//! (a DEL would otherwise be undone by a RESTORE of the value read before it). The mark and the
//! copy's check-and-send are one step under a lock, and a pool's commands to a server go out in
//! the order they were sent on one connection, so the write reaches the new server after the
//! restore or the restore is not sent. A write on another connection (a RESP3 client, one inside
//! MULTI, `server_connections` above 1) can run before a restore already sent: for a delete,
//! the key is deleted again once the restore is answered, if it still holds exactly the value
//! restored (a script compares its DUMP), so a value written since is kept. Nodes of a fleet do
//! not see each other's copies.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use strata_config::Consistency;

use crate::answer::Answer;
use crate::pool::{Pool, Shard};
use crate::resp::{self, Command, Value};
use crate::server::{received, Reply};

/// A read of one key's server, worked out in steps.
type Read = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Bytes, String>> + Send>>;

/// Keys being brought to their new servers before a write that keeps part of them.
pub(crate) type Copying = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// Moved keys being copied to their new servers now, and whether a client wrote each since its
/// copy began.
#[derive(Default)]
pub struct Copies(Mutex<HashMap<Bytes, InFlight>>);

#[derive(Debug)]
struct InFlight {
    /// Copies of the key running now (a read's and a write's may overlap).
    copies: u32,
    /// A client wrote the key (set, deleted, changed it) since the first of them began.
    written: bool,
    /// A copy's restore went out; a client's delete after that may have run before it on
    /// another connection.
    sent: bool,
    /// A client deleted the key after a restore went out.
    deleted_after: bool,
}

/// One copy of a key, registered in [`Copies`] while it lives.
struct CopyOf<'a> {
    copies: &'a Copies,
    key: &'a [u8],
}

impl Copies {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Bytes, InFlight>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A copy of `key` begins; it ends when the value is dropped.
    fn begin<'a>(&'a self, key: &'a [u8]) -> CopyOf<'a> {
        self.lock()
            .entry(Bytes::copy_from_slice(key))
            .or_insert(InFlight {
                copies: 0,
                written: false,
                sent: false,
                deleted_after: false,
            })
            .copies += 1;
        CopyOf { copies: self, key }
    }

    /// A client writes `key` (`deletes`: DEL, UNLINK, GETDEL): a copy of it under way must not
    /// send the value it read; one that sent it already checks, once it is restored, whether
    /// the delete ran first.
    fn written(&self, key: &[u8], deletes: bool) {
        if let Some(entry) = self.lock().get_mut(key) {
            entry.written = true;
            entry.deleted_after |= deletes && entry.sent;
        }
    }
}

impl CopyOf<'_> {
    /// Sends the copy's write with `send`, unless a client wrote the key since the copy began;
    /// the check and the send are one step, so a client's write is either seen here or sent
    /// after this one.
    fn send_unless_written<T>(&self, send: impl FnOnce() -> T) -> Option<T> {
        let mut map = self.copies.lock();
        let entry = map.get_mut(self.key)?;
        if entry.written {
            return None;
        }
        entry.sent = true;
        Some(send())
    }

    /// Whether a client deleted the key after a restore went out: on a connection other than
    /// the restore's (a RESP3 client, `server_connections` above 1) the delete may have run
    /// first.
    fn deleted_after(&self) -> bool {
        self.copies
            .lock()
            .get(self.key)
            .is_some_and(|e| e.deleted_after)
    }
}

/// Deletes the key on the server only while it holds exactly the value restored (its DUMP is
/// the restored payload): a delete that ran before the restore is made good, and a value a
/// client wrote since is kept.
const UNDO_RESTORE: &[u8] = b"if redis.call('DUMP', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0";

impl Drop for CopyOf<'_> {
    fn drop(&mut self) {
        let mut map = self.copies.lock();
        if let Some(entry) = map.get_mut(self.key) {
            entry.copies -= 1;
            if entry.copies == 0 {
                map.remove(self.key);
            }
        }
    }
}

/// The key's old and new servers, when it moved in the last reload and the window lasts.
fn moved(pool: &Pool, key: &[u8]) -> Option<(Arc<Shard>, Arc<Shard>)> {
    let old = pool.old.as_ref()?;
    let before = old.server_for(key)?;
    let now = pool.server_for(key).ok()?;
    let after = &pool.servers[now];
    (before.live.target.get().0 != after.live.target.get().0)
        .then(|| (before.clone(), after.clone()))
}

/// Whether `key` moved in the last reload and may still be on its old server.
pub(crate) fn has_moved(pool: &Pool, key: &[u8]) -> bool {
    moved(pool, key).is_some()
}

/// The answer to a read-only command of one key (`key`, the command's `frame`) that may still
/// be on its server from before the last reload; `None` when it can't have moved.
pub(crate) fn read(pool: &Pool, key: &[u8], frame: Bytes, resp3: bool) -> Option<Answer> {
    Some(Answer::Later(start(pool, key, frame, resp3)?))
}

/// [`read`]'s work: the new server is asked now, in the command's place in the client's
/// pipeline, whether it has the key, and the read itself.
fn start(pool: &Pool, key: &[u8], frame: Bytes, resp3: bool) -> Option<Read> {
    let (before, after) = moved(pool, key)?;
    // the pooler's own commands go on RESP2 connections (where the DELs of `forget_old` are
    // ahead of them), whatever the client speaks
    let exists = after.send(command(&[b"EXISTS", key]), false);
    let first = after.send(frame.clone(), resp3);
    let strong = pool.config.consistency == Consistency::Strong;
    let key = Bytes::copy_from_slice(key);
    let copies = pool.copies.clone();
    Some(Box::pin(async move {
        if received(exists.await)?.as_ref() != b":1\r\n" {
            // not on the new server: copied from the old one, if it is there; then read
            // again (another read may have copied it meanwhile)
            ensure(&copies, &before, &after, &key, strong).await;
            return received(after.send(frame, resp3).await);
        }
        received(first.await)
    }))
}

/// Brings `key` from `before` to `after` when `after` lacks it; a failure on the old server
/// (gone, out) is a miss, not the client's error.
async fn ensure(copies: &Copies, before: &Shard, after: &Shard, key: &[u8], strong: bool) {
    if !before.master.backend.is_available() {
        return;
    }
    if let Err(why) = copy(&copies.begin(key), before, after, strong).await {
        tracing::debug!(key = %String::from_utf8_lossy(key), "read-through copy failed: {why}");
    }
}

/// The copies of the moved `keys` that a write keeping part of them needs first (a key the
/// new server already has is not copied); `None` when none moved.
pub(crate) fn copy_moved(pool: &Pool, keys: &[&[u8]]) -> Option<Copying> {
    let strong = pool.config.consistency == Consistency::Strong;
    let moved: Vec<(Arc<Shard>, Arc<Shard>, Bytes)> = keys
        .iter()
        .filter_map(|k| moved(pool, k).map(|(b, a)| (b, a, Bytes::copy_from_slice(k))))
        .collect();
    if moved.is_empty() {
        return None;
    }
    let copies = pool.copies.clone();
    Some(Box::pin(async move {
        for (before, after, key) in moved {
            let exists = received(after.send(command(&[b"EXISTS", &key]), false).await);
            if exists.as_deref() != Ok(b":1\r\n") {
                ensure(&copies, &before, &after, &key, strong).await;
            }
        }
    }))
}

/// MGET while some of its keys may still be on their old servers: the keys that moved are
/// read one by one through [`read`], the others together from their servers, and the values
/// put back in the order of the keys. `None` when none moved.
pub(crate) fn mget(pool: &Pool, cmd: &Command, resp3: bool) -> Option<Answer> {
    pool.old.as_ref()?;
    let keys: Vec<&[u8]> = (1..cmd.len()).map(|i| cmd.arg(i)).collect();
    if !keys.iter().any(|k| moved(pool, k).is_some()) {
        return None;
    }
    // each key's value on its own: one GET per key, sent now in the pipeline's order
    let reads: Vec<Read> = keys
        .iter()
        .map(|k| {
            let get = command(&[b"GET", k]);
            start(pool, k, get.clone(), resp3).unwrap_or_else(|| {
                let rx = match pool.server_for(k) {
                    Ok(s) => Some(pool.servers[s].send_read(get, resp3, pool.config.read_from)),
                    Err(_) => None,
                };
                plain(rx)
            })
        })
        .collect();
    Some(Answer::Later(Box::pin(async move {
        let mut out = BytesMut::new();
        resp::array_header(&mut out, reads.len());
        for r in reads {
            let value = r.await?;
            if value.starts_with(b"-WRONGTYPE") {
                // a key that is not a string reads as nil in MGET
                out.extend_from_slice(if resp3 { b"_\r\n" } else { b"$-1\r\n" });
            } else if value.starts_with(b"-") {
                // any other error is the answer, as a server's own MGET would give it
                return Ok(value);
            } else {
                out.extend_from_slice(&value);
            }
        }
        Ok(out.freeze())
    })))
}

/// A write of `key` while read-through lasts: its copy on the old server, if the key moved,
/// is deleted first, so that a later miss on the new server can't bring back a value the
/// client has since overwritten, deleted or let expire.
pub(crate) fn forget_old(pool: &Pool, key: &[u8], deletes: bool) {
    if let Some((before, _)) = moved(pool, key) {
        pool.copies.written(key, deletes);
        before.master.send_everywhere(&command(&[b"DEL", key]));
    }
}

/// A key's read on its own server (`None`: the pool has no server for it now).
fn plain(rx: Option<tokio::sync::oneshot::Receiver<Reply>>) -> Read {
    Box::pin(async move {
        match rx {
            Some(rx) => received(rx.await),
            None => Err("no server of the pool holds the key now".into()),
        }
    })
}

fn command(args: &[&[u8]]) -> Bytes {
    let mut out = BytesMut::new();
    resp::encode_command(&mut out, args.iter().copied());
    out.freeze()
}

/// Copies `key` from `before` to `after` (whole, with its time to live); true when `after`
/// holds it now (copied, or written there meanwhile), false when `before` did not have it.
/// The pooler's own commands go on RESP2 connections.
async fn copy(
    this: &CopyOf<'_>,
    before: &Shard,
    after: &Shard,
    strong: bool,
) -> Result<bool, String> {
    let key = this.key;
    // the old server, in one pipeline: its time to live, and the key whole
    let pttl = before.send(command(&[b"PTTL", key]), false);
    let dump = before.send(command(&[b"DUMP", key]), false);
    let (pttl, dump) = (received(pttl.await)?, received(dump.await)?);
    let ttl = match resp::Values::new(&pttl).next() {
        Some(Value::Int(ms)) if ms > 0 => ms.to_string(),
        Some(Value::Int(-1)) => "0".to_string(),
        // not there (or gone between the reads)
        _ => return Ok(false),
    };
    let Some(Value::Bulk(Some(payload))) = resp::Values::new(&dump).next() else {
        return Ok(false);
    };
    let restore = command(&[b"RESTORE", key, ttl.as_bytes(), payload]);
    // a client wrote the key since the old server was read: what was read is not the value
    let Some(restored) = this.send_unless_written(|| after.send(restore, false)) else {
        return Ok(false);
    };
    let restored = received(restored.await)?;
    if restored.starts_with(b"+OK") && this.deleted_after() {
        let undo = command(&[b"EVAL", UNDO_RESTORE, b"1", key, payload]);
        received(after.send(undo, false).await)?;
    }
    // BUSYKEY: written on the new server meanwhile, and that value is the newer one
    if restored.starts_with(b"+OK") && strong {
        let _ = before.send(command(&[b"DEL", key]), false).await;
    }
    Ok(restored.starts_with(b"+OK") || restored.starts_with(b"-BUSYKEY"))
}

/// A memcached `get`/`gets` (`name`) of `keys` while some may still be on their old servers:
/// each key read on its own (a moved one through its old server on a miss), the values put
/// back in the order of the keys. `None` when none moved.
pub(crate) fn mc_get(pool: &Pool, name: &[u8], keys: &[Bytes]) -> Option<Answer> {
    pool.old.as_ref()?;
    if !keys.iter().any(|k| moved(pool, k).is_some()) {
        return None;
    }
    let strong = pool.config.consistency == Consistency::Strong;
    let reads: Vec<Read> = keys
        .iter()
        .map(|key| {
            let get = mc_get_frame(name, key);
            let (before, after) = match moved(pool, key) {
                Some(pair) => pair,
                None => {
                    let rx = pool
                        .server_for(key)
                        .ok()
                        .map(|s| pool.servers[s].send(get, false));
                    return plain(rx);
                }
            };
            let first = after.send(get.clone(), false);
            let key = key.clone();
            let copies = pool.copies.clone();
            Box::pin(async move {
                let now = received(first.await)?;
                if crate::memcache::values(&now).is_some_and(|v| v.is_empty()) {
                    // copied from the old server if it is there, then read again (another
                    // read may have copied it meanwhile)
                    mc_ensure(&copies, &before, &after, &key, strong).await;
                    return received(after.send(get, false).await);
                }
                Ok(now)
            }) as Read
        })
        .collect();
    Some(Answer::Later(Box::pin(async move {
        let mut out = BytesMut::new();
        for r in reads {
            let got = r.await?;
            let Some(values) = crate::memcache::values(&got) else {
                // a server's error line is the answer
                return Ok(got);
            };
            for (_, block) in values {
                out.extend_from_slice(block);
            }
        }
        out.extend_from_slice(b"END\r\n");
        Ok(out.freeze())
    })))
}

/// A memcached write of `key` while read-through lasts: its copy on its old server goes
/// first, as for Redis.
pub(crate) fn mc_forget_old(pool: &Pool, key: &[u8]) {
    if let Some((before, _)) = moved(pool, key) {
        pool.copies.written(key, false);
        before.master.send_everywhere(&mc_delete(key));
    }
}

fn mc_delete(key: &[u8]) -> Bytes {
    let mut delete = BytesMut::from(&b"delete "[..]);
    delete.extend_from_slice(key);
    delete.extend_from_slice(b"\r\n");
    delete.freeze()
}

/// [`ensure`] for memcached.
async fn mc_ensure(copies: &Copies, before: &Shard, after: &Shard, key: &[u8], strong: bool) {
    if !before.master.backend.is_available() {
        return;
    }
    if let Err(why) = mc_copy(&copies.begin(key), before, after, strong).await {
        tracing::debug!(key = %String::from_utf8_lossy(key), "read-through copy failed: {why}");
    }
}

/// [`copy_moved`] for a memcached write of `key`.
pub(crate) fn mc_copy_moved(pool: &Pool, key: &[u8]) -> Option<Copying> {
    let (before, after) = moved(pool, key)?;
    let strong = pool.config.consistency == Consistency::Strong;
    let key = Bytes::copy_from_slice(key);
    let copies = pool.copies.clone();
    Some(Box::pin(async move {
        let got = received(after.send(mc_get_frame(b"get", &key), false).await);
        let missing = got.as_deref().map_or(true, |r| {
            crate::memcache::values(r).is_some_and(|v| v.is_empty())
        });
        if missing {
            mc_ensure(&copies, &before, &after, &key, strong).await;
        }
    }))
}

fn mc_get_frame(name: &[u8], key: &[u8]) -> Bytes {
    let mut out = BytesMut::new();
    crate::memcache::encode_get(&mut out, name, std::iter::once(Bytes::copy_from_slice(key)));
    out.freeze()
}

/// The longest relative expiry memcached takes: past it, an expiry is a Unix time.
const MC_RELATIVE: i64 = 30 * 24 * 3600;

/// Copies `key` from `before` to `after` with its flags and the time it has left; true when
/// `after` holds it now (added, or there already), false when `before` did not have it.
async fn mc_copy(
    this: &CopyOf<'_>,
    before: &Shard,
    after: &Shard,
    strong: bool,
) -> Result<bool, String> {
    let key = this.key;
    let mut mg = BytesMut::from(&b"mg "[..]);
    mg.extend_from_slice(key);
    mg.extend_from_slice(b" v f t\r\n");
    let got = received(before.send(mg.freeze(), false).await)?;
    let Some(rest) = got.strip_prefix(b"VA ") else {
        // EN: not there
        return Ok(false);
    };
    let Some(lf) = rest.iter().position(|&b| b == b'\n') else {
        return Ok(false);
    };
    let Ok(line) = std::str::from_utf8(&rest[..lf.saturating_sub(1)]) else {
        return Ok(false);
    };
    let mut words = line.split(' ');
    let Some(size) = words.next().and_then(|w| w.parse::<usize>().ok()) else {
        return Ok(false);
    };
    let (mut flags, mut ttl) = ("0".to_string(), -1i64);
    for w in words {
        if let Some(f) = w.strip_prefix('f') {
            flags = f.to_string();
        } else if let Some(t) = w.strip_prefix('t') {
            ttl = t.parse().unwrap_or(-1);
        }
    }
    let Some(data) = rest.get(lf + 1..lf + 1 + size) else {
        return Ok(false);
    };
    let exptime = match ttl {
        t if t < 0 => 0,
        // about to expire: not worth a copy
        0 => return Ok(false),
        t if t <= MC_RELATIVE => t,
        t => {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64)
                + t
        }
    };
    let mut add = BytesMut::from(&b"add "[..]);
    add.extend_from_slice(key);
    add.extend_from_slice(format!(" {flags} {exptime} {size}\r\n").as_bytes());
    add.extend_from_slice(data);
    add.extend_from_slice(b"\r\n");
    let Some(added) = this.send_unless_written(|| after.send(add.freeze(), false)) else {
        return Ok(false);
    };
    let added = received(added.await)?;
    // NOT_STORED: written on the new server meanwhile, and that value is the newer one
    if added.starts_with(b"STORED") && strong {
        let _ = before.send(mc_delete(key), false).await;
    }
    Ok(added.starts_with(b"STORED") || added.starts_with(b"NOT_STORED"))
}
