//! Connections to one cache server, shared by every client of a pool: each is a pipeline, so
//! commands from many clients go out back to back and replies come back in the same order.
//! A connection is made when the first command needs it and made again after a failure; a
//! failure answers every command in flight on it and counts against the server (after
//! `server_failure_limit` in a row it is ejected for `server_retry_timeout`).

use std::cell::Cell;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use strata_health::{Backend, Group};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use strata_config::CacheProtocol;

thread_local! {
    /// The client whose commands this thread is routing now (0: none), so that a server with
    /// several connections sends each client's commands on one of them.
    static CLIENT: Cell<u64> = const { Cell::new(0) };
}

/// Marks the commands routed on this thread, until the returned guard is dropped, as
/// `client`'s.
pub(crate) fn routing_for(client: u64) -> impl Drop {
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            CLIENT.with(|c| c.set(0));
        }
    }
    CLIENT.with(|c| c.set(client));
    Reset
}

/// Why a command got no reply from its server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Lost {
    /// No connection could be made.
    #[error("the server could not be reached")]
    Connect,
    /// The server did not answer within the pool's `timeout`.
    #[error("the server did not answer in time")]
    Timeout,
    /// The server closed the connection, or it broke.
    #[error("the connection to the server was lost")]
    Closed,
    /// The server's reply could not be read.
    #[error("the server's reply was not valid")]
    Protocol,
}

/// A server's reply frame, or why there is none.
pub type Reply = Result<Bytes, Lost>;

/// One command on its way to a server.
struct Job {
    frame: Bytes,
    reply: oneshot::Sender<Reply>,
    /// Replies to pass over before the one that answers (ASKING's `+OK` before the command
    /// it prefixes).
    skip: u8,
}

/// How a pool talks to its servers.
#[derive(Debug, Clone)]
pub struct LinkSettings {
    /// Connections per server.
    pub connections: usize,
    /// Reply timeout: a command unanswered this long fails its connection.
    pub timeout: Duration,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// Sent as `AUTH` on every new connection (Redis only).
    pub password: Option<String>,
    /// The protocol spoken.
    pub protocol: CacheProtocol,
}

/// Where a server is now. Its address can move (Sentinel names a new master): connections to
/// the old address finish what they owe and are made again to the new one.
#[derive(Debug)]
pub struct Target {
    addr: std::sync::Mutex<SocketAddr>,
    epoch: AtomicU64,
}

impl Target {
    /// A server at `addr`.
    pub fn new(addr: SocketAddr) -> Arc<Target> {
        Arc::new(Target {
            addr: std::sync::Mutex::new(addr),
            epoch: AtomicU64::new(0),
        })
    }

    /// Its address now, and the move it came with.
    pub fn get(&self) -> (SocketAddr, u64) {
        let addr = *self.addr.lock().unwrap_or_else(|e| e.into_inner());
        (addr, self.epoch.load(Relaxed))
    }

    /// Moves it; false when it was there already.
    pub fn set(&self, addr: SocketAddr) -> bool {
        let mut current = self.addr.lock().unwrap_or_else(|e| e.into_inner());
        if *current == addr {
            return false;
        }
        *current = addr;
        self.epoch.fetch_add(1, Relaxed);
        true
    }
}

/// One server of a pool: its health (shared across reloads) and its connections (this
/// generation's).
pub struct Server {
    /// Its health state and counters.
    pub backend: Arc<Backend>,
    /// How fast it answers.
    pub latency: Arc<Latency>,
    /// Connections speaking RESP2 (and memcached's protocol).
    links: Box<[mpsc::UnboundedSender<Job>]>,
    /// Connections that said HELLO 3, for clients that did; made when the first one needs them.
    links3: std::sync::OnceLock<Box<[mpsc::UnboundedSender<Job>]>>,
    next: AtomicUsize,
    link: Link,
}

/// How fast a server answers: every reply's time in a histogram (for /metrics), and an
/// average over the last few (for `read_from = "nearest"`).
#[derive(Default)]
pub struct Latency {
    /// Every reply, from the command's write to its reply.
    pub histogram: strata_metrics::Histogram,
    /// The last few replies' average, in microseconds; 0 before the first.
    pub recent_us: AtomicU64,
}

impl Latency {
    fn observe(&self, took: std::time::Duration) {
        self.histogram.observe(took);
        let us = took.as_micros() as u64;
        let was = self.recent_us.load(Relaxed);
        let now = if was == 0 { us } else { was - was / 8 + us / 8 };
        self.recent_us.store(now.max(1), Relaxed);
    }
}

/// What a connection task needs to know of its server.
#[derive(Clone)]
struct Link {
    group: Arc<Group>,
    index: usize,
    settings: Arc<LinkSettings>,
    target: Arc<Target>,
    latency: Arc<Latency>,
}

impl Server {
    /// The server at `index` of `group`, with its connection tasks started (they connect on
    /// first use, and end once this value and every command sent through it are gone).
    pub fn start(
        group: &Arc<Group>,
        index: usize,
        settings: &Arc<LinkSettings>,
        target: Arc<Target>,
    ) -> Server {
        let latency = Arc::new(Latency::default());
        let link = Link {
            group: group.clone(),
            index,
            settings: settings.clone(),
            target,
            latency: latency.clone(),
        };
        Server {
            backend: group.backends[index].clone(),
            latency,
            links: spawn_links(&link, false),
            links3: std::sync::OnceLock::new(),
            next: AtomicUsize::new(0),
            link,
        }
    }

    /// Sends `frame` on a connection that speaks RESP3 (`resp3`) or RESP2; the receiver gets
    /// the server's reply.
    pub fn send(&self, frame: Bytes, resp3: bool) -> oneshot::Receiver<Reply> {
        self.send_skipping(frame, 0, resp3)
    }

    /// Sends `frame`, which holds `skip + 1` commands, on one connection; the receiver gets the
    /// last one's reply.
    pub fn send_skipping(&self, frame: Bytes, skip: u8, resp3: bool) -> oneshot::Receiver<Reply> {
        let links = if resp3 {
            self.links3.get_or_init(|| spawn_links(&self.link, true))
        } else {
            &self.links
        };
        let (tx, rx) = oneshot::channel();
        let i = if links.len() == 1 {
            0
        } else {
            // one client's commands all take one connection, so they run in the order sent;
            // commands sent for no client in particular are spread
            match CLIENT.with(Cell::get) {
                0 => self.next.fetch_add(1, Relaxed) % links.len(),
                client => (client % links.len() as u64) as usize,
            }
        };
        self.backend.stats.requests.inc();
        // the task only ends once every sender is gone, so this can't fail while `self` lives
        let _ = links[i].send(Job {
            frame,
            reply: tx,
            skip,
        });
        rx
    }
}

impl Server {
    /// Sends `frame` on every connection to the server, RESP2 and RESP3 alike: whatever is
    /// sent on any of them afterwards runs after it. One receiver per connection.
    pub fn send_everywhere(&self, frame: &Bytes) -> Vec<oneshot::Receiver<Reply>> {
        let all = self
            .links
            .iter()
            .chain(self.links3.get().into_iter().flatten());
        all.map(|link| {
            let (tx, rx) = oneshot::channel();
            let _ = link.send(Job {
                frame: frame.clone(),
                reply: tx,
                skip: 0,
            });
            rx
        })
        .collect()
    }
}

fn spawn_links(link: &Link, resp3: bool) -> Box<[mpsc::UnboundedSender<Job>]> {
    (0..link.settings.connections.max(1))
        .map(|_| {
            let (tx, rx) = mpsc::unbounded_channel();
            tokio::spawn(run(rx, link.clone(), resp3));
            tx
        })
        .collect()
}

/// Commands this connection wrote and still owes replies for, oldest first.
type InFlight = (oneshot::Sender<Reply>, Instant, u8);

/// One connection's life: wait for work, connect, pipeline until the connection fails or the
/// pool generation goes away, and again.
async fn run(mut jobs: mpsc::UnboundedReceiver<Job>, link: Link, resp3: bool) {
    let Link {
        group,
        index,
        settings,
        target,
        latency,
    } = link;
    let backend = &group.backends[index];
    let mut batch: Vec<Job> = Vec::new();
    loop {
        if batch.is_empty() && jobs.recv_many(&mut batch, 256).await == 0 {
            return;
        }
        let (addr, epoch) = target.get();
        let stream = match open(addr, &settings, resp3).await {
            Ok(stream) => stream,
            Err((lost, why)) => {
                backend.stats.failures.inc();
                group.report_failure(backend, &why);
                tracing::warn!(server = %backend.name, %addr, "{why}");
                fail(batch.drain(..), lost);
                while let Ok(job) = jobs.try_recv() {
                    let _ = job.reply.send(Err(lost));
                }
                continue;
            }
        };
        let (read, mut write) = stream.into_split();
        let (owed_tx, owed_rx) = mpsc::unbounded_channel();
        let mut reader = tokio::spawn(read_replies(
            read,
            owed_rx,
            settings.clone(),
            latency.clone(),
        ));
        let mut out = BytesMut::new();
        let ended = loop {
            let now = Instant::now();
            for job in batch.drain(..) {
                out.extend_from_slice(&job.frame);
                // sent before the bytes go out, so the reader knows whom a reply is for
                let _ = owed_tx.send((job.reply, now, job.skip));
            }
            let written = tokio::select! {
                r = write_out(&mut write, &out) => r,
                r = &mut reader => break Ended::Reader(r),
            };
            out.clear();
            if let Err(e) = written {
                reader.abort();
                break Ended::Reader(Ok(Err(Failed {
                    lost: Lost::Closed,
                    why: format!("write: {e}"),
                    owed: VecDeque::new(),
                })));
            }
            tokio::select! {
                n = jobs.recv_many(&mut batch, 256) => if n == 0 { break Ended::Gone },
                r = &mut reader => break Ended::Reader(r),
            }
            if target.get().1 != epoch {
                break Ended::Moved;
            }
        };
        match ended {
            // the generation went away: let the replies still owed arrive, then stop
            Ended::Gone => {
                drop(owed_tx);
                let _ = reader.await;
                return;
            }
            // the server moved: what this connection owes comes back on it, what is not sent
            // yet goes to the new address
            Ended::Moved => {
                drop(owed_tx);
                let _ = reader.await;
            }
            // the server closed a connection that owed nothing: commands sent to it meanwhile
            // (the writer's alone, now that it sends no more) fail, and count as a failure
            Ended::Reader(Ok(Ok(Some(mut sent)))) => {
                drop(owed_tx);
                let mut unanswered = Vec::new();
                while let Ok((tx, _, _)) = sent.try_recv() {
                    unanswered.push(tx);
                }
                if !unanswered.is_empty() {
                    let why = "the server closed the connection".to_string();
                    backend.stats.failures.inc();
                    group.report_failure(backend, &why);
                    tracing::warn!(server = %backend.name, %addr, "{why}");
                    for tx in unanswered {
                        let _ = tx.send(Err(Lost::Closed));
                    }
                }
            }
            Ended::Reader(Ok(Err(failed))) => {
                // counted before the commands are answered, so that a client's next command
                // already sees the server ejected when this failure ejects it
                backend.stats.failures.inc();
                group.report_failure(backend, &failed.why);
                tracing::warn!(server = %backend.name, %addr, "{}", failed.why);
                for (tx, _, _) in failed.owed {
                    let _ = tx.send(Err(failed.lost));
                }
            }
            Ended::Reader(_) => {}
        }
    }
}

/// Why a connection's pipeline stopped.
enum Ended {
    /// Its pool generation is gone.
    Gone,
    /// Its server moved to another address.
    Moved,
    /// The reader stopped: the connection failed, or closed while idle.
    Reader(
        Result<Result<Option<mpsc::UnboundedReceiver<InFlight>>, Failed>, tokio::task::JoinError>,
    ),
}

/// A connection that failed: why, and the commands it still owed replies for.
struct Failed {
    lost: Lost,
    why: String,
    owed: VecDeque<InFlight>,
}

async fn write_out(write: &mut OwnedWriteHalf, out: &[u8]) -> std::io::Result<()> {
    write.write_all(out).await
}

/// Sends `frame` (holding `replies` commands) on a connection of its own and reads as many
/// replies, within `timeout` if one is given; the last reply. For the connections that are
/// not pipelines: handshakes, a client's own connection, Sentinel and Cluster questions.
pub(crate) async fn request(
    stream: &mut tokio::net::TcpStream,
    frame: &[u8],
    replies: usize,
    timeout: Option<Duration>,
) -> Result<Bytes, String> {
    let exchange = async {
        stream
            .write_all(frame)
            .await
            .map_err(|e| format!("write: {e}"))?;
        let mut buf = BytesMut::with_capacity(1024);
        let mut last = Bytes::new();
        for _ in 0..replies {
            loop {
                match crate::resp::reply_len(&buf) {
                    Ok(Some(len)) => {
                        last = buf.split_to(len).freeze();
                        break;
                    }
                    Ok(None) => {}
                    Err(e) => return Err(format!("invalid reply: {e}")),
                }
                match stream.read_buf(&mut buf).await {
                    Ok(0) => return Err("the server closed the connection".to_string()),
                    Ok(_) => {}
                    Err(e) => return Err(format!("read: {e}")),
                }
            }
        }
        Ok(last)
    };
    match timeout {
        Some(t) => tokio::time::timeout(t, exchange)
            .await
            .unwrap_or_else(|_| Err("no answer in time".into())),
        None => exchange.await,
    }
}

/// Connects to a server and, for Redis with a `server_password`, authenticates.
pub(crate) async fn open(
    addr: SocketAddr,
    settings: &LinkSettings,
    resp3: bool,
) -> Result<tokio::net::TcpStream, (Lost, String)> {
    let mut stream = strata_net::connect(addr, settings.connect_timeout)
        .await
        .map_err(|e| (Lost::Connect, e.to_string()))?;
    let mut hello: Vec<&[u8]> = Vec::new();
    if resp3 {
        hello.extend([&b"HELLO"[..], b"3"]);
        if let Some(password) = &settings.password {
            hello.extend([&b"AUTH"[..], b"default", password.as_bytes()]);
        }
    } else if let (Some(password), CacheProtocol::Redis) = (&settings.password, settings.protocol) {
        hello.extend([&b"AUTH"[..], password.as_bytes()]);
    }
    if !hello.is_empty() {
        let mut auth = BytesMut::new();
        crate::resp::encode_command(&mut auth, hello.iter().copied());
        let what = String::from_utf8_lossy(hello[0]).into_owned();
        match request(&mut stream, &auth, 1, Some(settings.timeout)).await {
            Ok(reply) if reply.starts_with(b"+OK") || (resp3 && reply.starts_with(b"%")) => {}
            Ok(reply) => {
                return Err((
                    Lost::Connect,
                    format!(
                        "{what} refused: {}",
                        String::from_utf8_lossy(&reply).trim_end()
                    ),
                ))
            }
            Err(why) if why == "no answer in time" => {
                return Err((Lost::Timeout, format!("{what}: {why}")))
            }
            Err(why) => return Err((Lost::Connect, format!("{what}: {why}"))),
        }
    }
    Ok(stream)
}

fn fail(jobs: impl Iterator<Item = Job>, lost: Lost) {
    for job in jobs {
        let _ = job.reply.send(Err(lost));
    }
}

/// Reads replies and hands each to the command it answers, in order. Ends when the writer is
/// done and nothing is owed (`Ok(None)`), when the server closes the connection while nothing
/// is owed (`Ok(Some(owed_rx))`: the writer looks there for commands it sent meanwhile, which
/// the closed connection will never answer), or when the connection fails: every command owed
/// then gets the reason, and the error says it for the log.
async fn read_replies(
    mut read: OwnedReadHalf,
    mut owed_rx: mpsc::UnboundedReceiver<InFlight>,
    settings: Arc<LinkSettings>,
    latency: Arc<Latency>,
) -> Result<Option<mpsc::UnboundedReceiver<InFlight>>, Failed> {
    let mut owed: VecDeque<InFlight> = VecDeque::new();
    let mut buf = BytesMut::with_capacity(strata_net::buffers::BUFFER);
    let result = loop {
        while let Ok(w) = owed_rx.try_recv() {
            owed.push_back(w);
        }
        // hand out every complete reply; one clock reading serves them all
        let arrived = Instant::now();
        loop {
            let len = match crate::reply_len(settings.protocol, &buf) {
                Ok(Some(len)) => len,
                Ok(None) => break,
                Err(e) => {
                    return finish(
                        owed,
                        &mut owed_rx,
                        Lost::Protocol,
                        format!("invalid reply: {e}"),
                    )
                }
            };
            if owed.is_empty() {
                if let Ok(w) = owed_rx.try_recv() {
                    owed.push_back(w);
                }
            }
            if let Some((_, _, skip)) = owed.front_mut() {
                if *skip > 0 {
                    *skip -= 1;
                    let _ = buf.split_to(len);
                    continue;
                }
            }
            let Some((tx, sent, _)) = owed.pop_front() else {
                return finish(
                    owed,
                    &mut owed_rx,
                    Lost::Protocol,
                    "a reply to no command".into(),
                );
            };
            latency.observe(arrived.saturating_duration_since(sent));
            let _ = tx.send(Ok(buf.split_to(len).freeze()));
        }
        if buf.capacity() - buf.len() < 1024 {
            buf.reserve(strata_net::buffers::BUFFER.max(buf.len()));
        }
        let Some((_, sent, _)) = owed.front() else {
            tokio::select! {
                w = owed_rx.recv() => match w {
                    Some(w) => owed.push_back(w),
                    None => break Ok(false),
                },
                // a server closing an idle connection (Redis's `timeout`) is no failure,
                // unless a command was on its way to it meanwhile (the writer looks)
                n = read.read_buf(&mut buf) => match n {
                    Ok(0) | Err(_) => break Ok(true),
                    Ok(_) => {}
                },
            }
            continue;
        };
        let deadline = *sent + settings.timeout;
        tokio::select! {
            n = read.read_buf(&mut buf) => match n {
                Ok(0) => break Err((Lost::Closed, "the server closed the connection".into())),
                Ok(_) => {}
                Err(e) => break Err((Lost::Closed, format!("read: {e}"))),
            },
            _ = tokio::time::sleep_until(deadline) => {
                break Err((Lost::Timeout, format!("no reply within {:?}", settings.timeout)))
            }
            w = owed_rx.recv() => if let Some(w) = w { owed.push_back(w) },
        }
    };
    match result {
        Ok(false) => Ok(None),
        Ok(true) => Ok(Some(owed_rx)),
        Err((lost, why)) => finish(owed, &mut owed_rx, lost, why),
    }
}

fn finish<T>(
    mut owed: VecDeque<InFlight>,
    owed_rx: &mut mpsc::UnboundedReceiver<InFlight>,
    lost: Lost,
    why: String,
) -> Result<T, Failed> {
    // commands written after the failing one are owed too: they get the same reason
    while let Ok(w) = owed_rx.try_recv() {
        owed.push_back(w);
    }
    Err(Failed { lost, why, owed })
}
