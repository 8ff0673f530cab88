//! Publish/subscribe through the proxy. A channel lives on the server its name hashes to, as a
//! key does: PUBLISH goes there on the shared connections, and SUBSCRIBE there on connections
//! of the subscriber's own. A pattern can match a channel on any server, so PSUBSCRIBE goes to
//! every server. The client sees one Redis: each confirmation once, once every server involved
//! has confirmed (so a message published after the client saw it is delivered), with the
//! count of all its subscriptions; messages as the servers send them.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::client::{Kept, Next};
use crate::pool::Pool;
use crate::resp::{self, Command, Value};
use crate::server::LinkError;
use crate::CacheService;
use strata_upstream::Stage;

/// Messages from the servers held for a subscriber that has not taken them yet.
const FRAMES_QUEUED: usize = 1024;
/// The bytes of them: a subscriber that falls further behind is closed, as Redis closes one
/// past its `client-output-buffer-limit pubsub` hard limit (32 MB).
const BYTES_QUEUED: usize = 32 << 20;
/// A subscriber that takes none of the messages waiting for it for this long is closed, as
/// Redis closes one past its `client-output-buffer-limit pubsub` (8 MB for 60 s): it holds
/// its connections, and the servers' buffers, for nobody. (So is any client that takes none
/// of its answers, when its pool sets no `idle_timeout`.)
pub(crate) const STALLED: std::time::Duration = std::time::Duration::from_secs(60);

/// What a subscription command is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Kind {
    /// SUBSCRIBE / UNSUBSCRIBE: channels.
    Channel,
    /// PSUBSCRIBE / PUNSUBSCRIBE: patterns, on every server.
    Pattern,
    /// SSUBSCRIBE / SUNSUBSCRIBE: shard channels, counted apart.
    Shard,
}

impl Kind {
    fn names(self) -> (&'static [u8], &'static [u8]) {
        match self {
            Kind::Channel => (b"subscribe", b"unsubscribe"),
            Kind::Pattern => (b"psubscribe", b"punsubscribe"),
            Kind::Shard => (b"ssubscribe", b"sunsubscribe"),
        }
    }

    fn of(name: &[u8]) -> Option<(Kind, bool)> {
        [Kind::Channel, Kind::Pattern, Kind::Shard]
            .into_iter()
            .find_map(|k| {
                let (sub, unsub) = k.names();
                if name.eq_ignore_ascii_case(sub) {
                    Some((k, true))
                } else if name.eq_ignore_ascii_case(unsub) {
                    Some((k, false))
                } else {
                    None
                }
            })
    }
}

/// A subscriber's state: its subscriptions, the confirmations owed, its server connections.
struct Subscriber {
    /// The client said HELLO 3: confirmations are pushes, and so are the servers' messages.
    resp3: bool,
    subscribed: HashMap<Kind, BTreeSet<Bytes>>,
    /// (kind, subscribe?, name) -> servers yet to confirm
    /// (kind, subscribe?, name) -> (confirmations still to come, servers per occurrence of
    /// the name in the client's commands)
    owed: HashMap<(Kind, bool, Bytes), (usize, usize)>,
    /// Its connections, by the address of the server (or cluster node) each is to, with the
    /// commands sent on each that are not all confirmed yet, oldest first: an error reply is
    /// the oldest one's.
    writers: Vec<(SocketAddr, OwnedWriteHalf, VecDeque<Sent>)>,
    readers: Vec<JoinHandle<()>>,
    frames_tx: mpsc::Sender<(SocketAddr, Option<Bytes>)>,
    queued: Arc<Backlog>,
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        for r in &self.readers {
            r.abort();
        }
    }
}

/// The messages read from a subscriber's servers and not taken yet.
#[derive(Default)]
struct Backlog {
    bytes: AtomicUsize,
    /// A reader stopped because they came to more than [`BYTES_QUEUED`].
    over: AtomicBool,
    /// Told when `over` is set, to end a write the subscriber is not reading.
    wake: tokio::sync::Notify,
}

/// A (un)subscription sent on a connection: the names it owes confirmations for.
struct Sent {
    kind: Kind,
    subscribe: bool,
    names: Vec<Bytes>,
    /// Confirmations not come yet.
    left: usize,
}

/// The answer to an UNSUBSCRIBE-like command from a client subscribed to nothing.
pub(crate) fn unsubscribed_reply(cmd: &Command, resp3: bool) -> Bytes {
    let mut out = BytesMut::new();
    let name = cmd.arg(0).to_ascii_lowercase();
    if cmd.len() == 1 {
        confirmation(&mut out, resp3, &name, None, 0);
    }
    for i in 1..cmd.len() {
        confirmation(&mut out, resp3, &name, Some(cmd.arg(i)), 0);
    }
    out.freeze()
}

fn confirmation(out: &mut BytesMut, resp3: bool, kind: &[u8], name: Option<&[u8]>, count: usize) {
    if resp3 {
        out.extend_from_slice(b">3\r\n");
    } else {
        resp::array_header(out, 3);
    }
    resp::bulk(out, Some(kind));
    resp::bulk(out, name);
    resp::integer(out, count as i64);
}

/// Serves a client in subscribed mode, starting with `first` (a SUBSCRIBE-like command), until
/// it has no subscription left (then the connection goes back to commands), quits, or leaves.
pub(crate) async fn serve(
    svc: &CacheService,
    kept: &mut Kept,
    buf: &mut BytesMut,
    pool: &Pool,
    first: Command,
    resp3: bool,
) -> Next {
    // bounded, in messages and in bytes: a subscriber that does not read stops the readers
    // (and then Redis's own `client-output-buffer-limit pubsub` applies), and one that falls
    // more than BYTES_QUEUED behind is closed
    let (frames_tx, mut frames) = mpsc::channel(FRAMES_QUEUED);
    let queued = Arc::new(Backlog::default());
    let behind = || {
        tracing::warn!(pool = %svc.name, "a subscriber fell more than {BYTES_QUEUED} bytes of messages behind; closing it");
        Next::Gone
    };
    let mut sub = Subscriber {
        resp3,
        subscribed: HashMap::new(),
        owed: HashMap::new(),
        writers: Vec::new(),
        readers: Vec::new(),
        frames_tx,
        queued: queued.clone(),
    };
    let mut out = BytesMut::new();
    // a command half read when subscribing is read again from its start, once
    let mut partial = None;
    let mut next = sub.command(pool, first, &mut out).await;
    loop {
        if !out.is_empty() {
            let written = tokio::select! {
                written = tokio::time::timeout(STALLED, kept.io.0.write_all(&out)) => written,
                _ = queued.wake.notified() => return behind(),
            };
            match written {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Next::Gone,
                Err(_) => {
                    tracing::warn!(pool = %svc.name, "a subscriber took no message for {STALLED:?}; closing it");
                    return Next::Gone;
                }
            }
            out.clear();
        }
        if let Some(next) = next.take() {
            return next;
        }
        // whole commands already read go first
        match resp::take_command(buf, pool.config.max_bulk_size, &mut partial) {
            Ok(Some(cmd)) => {
                svc.stats.commands.inc();
                next = sub.command(pool, cmd, &mut out).await;
                continue;
            }
            Ok(None) => {}
            Err(e) => {
                svc.stats.protocol_errors.inc();
                out.extend_from_slice(&resp::error_frame(&format!("ERR Protocol error: {e}")));
                next = Some(Next::Close);
                continue;
            }
        }
        tokio::select! {
            read = strata_net::buffers::fill(&mut kept.io, buf) => match read {
                Ok(0) | Err(_) => return Next::Gone,
                Ok(_) => {}
            },
            frame = frames.recv() => match frame {
                Some((from, Some(frame))) => {
                    queued.bytes.fetch_sub(frame.len(), Relaxed);
                    next = sub.server_frame(pool, from, frame, &mut out);
                }
                Some((_, None)) if queued.over.load(Relaxed) => return behind(),
                // a server connection was lost, and the subscriptions on it: the client
                // reconnects and subscribes again (as after a Redis restart)
                Some((server, None)) => {
                    tracing::warn!(pool = %svc.name, %server, "subscriber connection lost; closing the client");
                    return Next::Close;
                }
                None => return Next::Close,
            },
            _ = kept.drain.cancelled() => return Next::Close,
        }
    }
}

impl Subscriber {
    /// Handles one client command in subscribed mode.
    async fn command(&mut self, pool: &Pool, cmd: Command, out: &mut BytesMut) -> Option<Next> {
        let name = cmd.arg(0).to_ascii_lowercase();
        if let Some((kind, subscribe)) = Kind::of(&name) {
            if subscribe && cmd.len() < 2 {
                out.extend_from_slice(&resp::error_frame(&format!(
                    "ERR wrong number of arguments for '{}' command",
                    String::from_utf8_lossy(&name)
                )));
                return None;
            }
            let names: Vec<Bytes> = if cmd.len() > 1 {
                (1..cmd.len())
                    .map(|i| Bytes::copy_from_slice(cmd.arg(i)))
                    .collect()
            } else {
                self.subscribed
                    .get(&kind)
                    .map(|s| s.iter().cloned().collect())
                    .unwrap_or_default()
            };
            if names.is_empty() {
                // unsubscribing from everything while subscribed to nothing of that kind
                confirmation(out, self.resp3, &name, None, self.count(kind));
                return self.finished();
            }
            if let Err(why) = self.send(pool, kind, subscribe, &name, &names).await {
                out.extend_from_slice(&resp::error_frame(&format!("ERR strata: {why}")));
                return Some(Next::Close);
            }
            return None;
        }
        match name.as_slice() {
            // RESP3 answers PING as always; RESP2 in subscribed mode as a message
            b"ping" if self.resp3 && cmd.len() == 1 => {
                resp::simple(out, "PONG");
                None
            }
            b"ping" if self.resp3 => {
                resp::bulk(out, Some(cmd.arg(1)));
                None
            }
            b"ping" => {
                resp::array_header(out, 2);
                resp::bulk(out, Some(b"pong"));
                resp::bulk(out, Some(if cmd.len() > 1 { cmd.arg(1) } else { b"" }));
                None
            }
            b"quit" => {
                resp::simple(out, "OK");
                Some(Next::Close)
            }
            _ => {
                out.extend_from_slice(&resp::error_frame(&format!(
                    "ERR Can't execute '{}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context",
                    String::from_utf8_lossy(&name)
                )));
                None
            }
        }
    }

    /// Sends a (un)subscription to the servers it concerns, and notes the confirmations owed;
    /// or what the client is told instead.
    async fn send(
        &mut self,
        pool: &Pool,
        kind: Kind,
        subscribe: bool,
        command: &[u8],
        names: &[Bytes],
    ) -> Result<(), String> {
        // (server, the slot of a cluster's shard channels, names for it): a cluster node
        // refuses a command whose shard channels are in several slots
        let mut groups: Vec<(SocketAddr, Option<u16>, Vec<&Bytes>)> = Vec::new();
        for n in names {
            let servers: Vec<SocketAddr> = match (kind, &pool.cluster) {
                // a Redis Cluster sends every message to every node: one node is enough
                (Kind::Pattern, Some(_)) => vec![pool.master_addr(0)],
                // a shard channel lives on the node of its slot, as a key does
                (Kind::Shard, Some(cluster)) => {
                    let node = cluster.node(crate::cluster::slot(n));
                    vec![node.map_or(pool.master_addr(0), |n| n.live.target.get().0)]
                }
                (Kind::Pattern, None) => (0..pool.servers.len())
                    .map(|i| pool.master_addr(i))
                    .collect(),
                _ => vec![pool.master_addr(pool.server_for(n).map_err(|e| e.to_string())?)],
            };
            let owed = self
                .owed
                .entry((kind, subscribe, n.clone()))
                .or_insert((0, servers.len()));
            owed.0 += servers.len();
            let slot =
                (kind == Kind::Shard && pool.cluster.is_some()).then(|| crate::cluster::slot(n));
            for s in servers {
                match groups.iter_mut().find(|(g, at, _)| *g == s && *at == slot) {
                    Some((_, _, list)) => list.push(n),
                    None => groups.push((s, slot, vec![n])),
                }
            }
        }
        for (addr, _, list) in groups {
            let mut frame = BytesMut::new();
            resp::array_header(&mut frame, 1 + list.len());
            resp::bulk(&mut frame, Some(command));
            for n in &list {
                resp::bulk(&mut frame, Some(n));
            }
            let at = self
                .writer(pool, addr)
                .await
                .map_err(|e| e.told(Stage::Connect, addr, "subscription"))?;
            let (_, writer, sent) = &mut self.writers[at];
            if let Err(e) = writer.write_all(&frame).await {
                return Err(LinkError::Write(e).told(Stage::Request, addr, "subscription"));
            }
            sent.push_back(Sent {
                kind,
                subscribe,
                left: list.len(),
                names: list.into_iter().cloned().collect(),
            });
        }
        Ok(())
    }

    /// The subscriber's connection to `addr` (its index in `writers`), made on first use with
    /// a reader task that passes the server's frames on.
    async fn writer(&mut self, pool: &Pool, addr: SocketAddr) -> Result<usize, LinkError> {
        let at = match self.writers.iter().position(|(a, _, _)| *a == addr) {
            Some(at) => at,
            None => {
                let server = addr;
                let stream = crate::server::open(addr, &pool.link, self.resp3).await?;
                let (mut read, write) = stream.into_split();
                let tx = self.frames_tx.clone();
                let queued = self.queued.clone();
                self.readers.push(tokio::spawn(async move {
                    let mut buf = BytesMut::with_capacity(4096);
                    let mut scan = resp::ReplyScan::default();
                    loop {
                        let broken = loop {
                            match resp::reply_len_from(&buf, &mut scan) {
                                Ok(Some(len)) => {
                                    let frame = buf.split_to(len).freeze();
                                    if queued.bytes.fetch_add(len, Relaxed) + len > BYTES_QUEUED {
                                        queued.over.store(true, Relaxed);
                                        queued.wake.notify_one();
                                        let _ = tx.send((server, None)).await;
                                        return;
                                    }
                                    if tx.send((server, Some(frame))).await.is_err() {
                                        return;
                                    }
                                }
                                Ok(None) => break false,
                                Err(_) => break true,
                            }
                        };
                        if broken || matches!(read.read_buf(&mut buf).await, Ok(0) | Err(_)) {
                            let _ = tx.send((server, None)).await;
                            return;
                        }
                    }
                }));
                self.writers.push((addr, write, VecDeque::new()));
                self.writers.len() - 1
            }
        };
        Ok(at)
    }

    /// A frame from a server: a message passed on, or a confirmation counted and, from the
    /// last server owing it, passed on with the client's own count.
    fn server_frame(
        &mut self,
        pool: &Pool,
        from: SocketAddr,
        frame: Bytes,
        out: &mut BytesMut,
    ) -> Option<Next> {
        let (_, _, sent) = self.writers.iter_mut().find(|(a, _, _)| *a == from)?;
        if frame.starts_with(b"-") {
            // the server refused the oldest command on this connection: it owes nothing
            // more for it, and the client is told why instead of its confirmations
            let refused = sent.pop_front()?;
            for name in refused.names {
                let key = (refused.kind, refused.subscribe, name);
                if let Some((left, _)) = self.owed.get_mut(&key) {
                    *left = left.saturating_sub(1);
                    if *left == 0 {
                        self.owed.remove(&key);
                    }
                }
            }
            match (&pool.cluster, crate::cluster::redirect(&frame, b"-MOVED ")) {
                // a shard channel's slot moved: it goes to the new owner next time
                (Some(cluster), Some((slot, to))) => {
                    if cluster.knows(to) {
                        cluster.moved(slot, to);
                    } else {
                        cluster.refresh_soon();
                    }
                    out.extend_from_slice(&resp::error_frame(
                        "TRYAGAIN the shard channel's slot moved to another node; subscribe again",
                    ));
                }
                _ => out.extend_from_slice(&frame),
            }
            return self.finished();
        }
        let mut v = resp::Values::new(&frame);
        let (Some(Value::Array(Some(_))) | Some(Value::Push(_))) = v.next() else {
            return None;
        };
        let Some(Value::Bulk(Some(kind_name))) = v.next() else {
            return None;
        };
        let Some((kind, subscribe)) = Kind::of(kind_name) else {
            // message, pmessage, smessage
            out.extend_from_slice(&frame);
            return None;
        };
        let name = match v.next() {
            Some(Value::Bulk(Some(n))) => Bytes::copy_from_slice(n),
            _ => return None,
        };
        let key = (kind, subscribe, name.clone());
        // one confirmation to the client per occurrence of the name (`SUBSCRIBE a a` gets two,
        // as from Redis), once every server involved has confirmed it
        let (left, per) = match self.owed.get_mut(&key) {
            Some((left, per)) => {
                *left -= 1;
                if let Some(front) = sent.front_mut() {
                    front.left = front.left.saturating_sub(1);
                    if front.left == 0 {
                        sent.pop_front();
                    }
                }
                (*left, *per)
            }
            // a cluster node that no longer serves a shard channel's slot unsubscribes its
            // clients on its own (Redis 7): passed on, as Redis tells a client connected to it
            None if kind == Kind::Shard && !subscribe => {
                if self.subscribed.entry(kind).or_default().remove(&name) {
                    confirmation(
                        out,
                        self.resp3,
                        b"sunsubscribe",
                        Some(&name),
                        self.count(kind),
                    );
                    return self.finished();
                }
                return None;
            }
            None => return None,
        };
        if left % per.max(1) != 0 {
            return None;
        }
        if left == 0 {
            self.owed.remove(&key);
        }
        let set = self.subscribed.entry(kind).or_default();
        if subscribe {
            set.insert(name.clone());
        } else {
            set.remove(&name);
        }
        let (sub, unsub) = kind.names();
        confirmation(
            out,
            self.resp3,
            if subscribe { sub } else { unsub },
            Some(&name),
            self.count(kind),
        );
        if subscribe {
            None
        } else {
            self.finished()
        }
    }

    /// Subscriptions counted as Redis counts them for `kind`'s confirmations.
    fn count(&self, kind: Kind) -> usize {
        let n = |k: Kind| self.subscribed.get(&k).map_or(0, BTreeSet::len);
        match kind {
            Kind::Shard => n(Kind::Shard),
            _ => n(Kind::Channel) + n(Kind::Pattern),
        }
    }

    /// Back to commands once nothing is subscribed or owed.
    fn finished(&self) -> Option<Next> {
        let none = self.subscribed.values().all(BTreeSet::is_empty) && self.owed.is_empty();
        none.then_some(Next::KeepAlive)
    }
}
