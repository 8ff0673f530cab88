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
use std::future::Future;
use strata_health::{Backend, Group};
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use strata_config::CacheProtocol;
use strata_upstream::{Failure, Kind, Retry, Stage};

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

/// What broke a connection to a server: the error underneath the [`Failure`] that every
/// command it owed gets (and the log line; a client is told only the failure's kind).
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// Connecting failed.
    #[error(transparent)]
    Connect(#[from] strata_net::ConnectError),
    /// Writing to the server failed.
    #[error("write: {0}")]
    Write(#[source] std::io::Error),
    /// Reading from the server failed.
    #[error("read: {0}")]
    Read(#[source] std::io::Error),
    /// The server closed the connection while replies were owed.
    #[error("the server closed the connection")]
    Closed,
    /// A Redis reply that is not RESP.
    #[error("invalid reply: {0}")]
    Resp(#[from] crate::resp::ProtocolError),
    /// A memcached reply that is not the text protocol.
    #[error("invalid reply: {0}")]
    Memcache(#[from] crate::memcache::McError),
    /// A reply came when none was owed.
    #[error("a reply to no command")]
    Unasked,
    /// The oldest command owed waited past the pool's `timeout`.
    #[error("no reply within {0:?}")]
    NoReply(Duration),
    /// A command of the connection's greeting (`AUTH`, `HELLO`, `READONLY`) was refused.
    #[error("{what} refused: {reply}")]
    Refused {
        /// The command.
        what: String,
        /// The server's error reply.
        reply: String,
    },
    /// A command of the greeting got no answer.
    #[error("{what}: {source}")]
    Greeting {
        /// The command.
        what: String,
        /// What went wrong.
        #[source]
        source: Box<LinkError>,
    },
}

impl LinkError {
    /// What kind of failure it is, as a client is told.
    fn kind(&self) -> Kind {
        match self {
            LinkError::Connect(_) => Kind::Connect,
            LinkError::Refused { .. } => Kind::Refused,
            LinkError::Greeting { source, .. } => source.kind(),
            LinkError::NoReply(_) => Kind::Timeout,
            LinkError::Write(_) | LinkError::Read(_) | LinkError::Closed => Kind::Closed,
            LinkError::Resp(_) | LinkError::Memcache(_) | LinkError::Unasked => Kind::Protocol,
        }
    }

    /// The failure it makes for the commands it leaves unanswered: `stage` says how far they
    /// got (not written: `Connect`; written: `Request`), and so whether another server may be
    /// sent them.
    pub fn failure(self, stage: Stage) -> Failure {
        let retry = match stage {
            Stage::Client | Stage::Connect => Retry::Always,
            Stage::Request | Stage::Answer => Retry::IfIdempotent,
        };
        Failure::new(stage, self.kind(), retry).because(self)
    }

    /// On a connection of a client's own (blocking commands, transactions, subscriptions):
    /// the failure logged with its server (`on` says which connection), and what the client
    /// is told, its kind.
    pub(crate) fn told(self, stage: Stage, server: SocketAddr, on: &str) -> String {
        let failure = self.failure(stage);
        tracing::warn!(%server, "{on}: {failure}");
        failure.kind.to_string()
    }
}

/// A server's reply frame, or why there is none.
pub type Reply = Result<Bytes, Failure>;

/// A reply as it came back to a command: the frame, or what a client is told instead (the
/// kind of failure only: the server's address and the error underneath went to the log).
pub(crate) fn received(r: Result<Reply, oneshot::error::RecvError>) -> Result<Bytes, String> {
    match r {
        Ok(Ok(frame)) => Ok(frame),
        Ok(Err(failure)) => Err(failure.kind.to_string()),
        // the connection's task ended without answering: its pool generation is gone
        Err(_) => Err(Kind::Closed.to_string()),
    }
}

/// One command on its way to a server.
struct Job {
    frame: Bytes,
    reply: oneshot::Sender<Reply>,
    /// Replies to pass over before the one that answers (ASKING's `+OK` before the command
    /// it prefixes).
    skip: u8,
}

/// How a pool talks to its servers.
#[derive(Debug, Clone, PartialEq)]
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
    /// Each connection says `READONLY` first: a Redis Cluster replica's, which then serves
    /// reads of its master's slots.
    pub readonly: bool,
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
    /// `latency`: its histogram so far (the same server in the generation before a reload),
    /// or a new one.
    pub fn start(
        group: &Arc<Group>,
        index: usize,
        settings: &Arc<LinkSettings>,
        target: Arc<Target>,
        latency: Arc<Latency>,
    ) -> Server {
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

/// A command this connection took and still owes a reply for: whom to answer, when it was
/// taken, and replies to pass over first.
type InFlight = (oneshot::Sender<Reply>, Instant, u8);

/// One connection's life: wait for work, connect, pipeline until the connection fails or the
/// pool generation goes away, and again. One task does it all (taking commands, writing them,
/// reading replies, the reply timeout), so a command costs no hop between tasks.
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
            Err(e) => {
                let failure = e.failure(Stage::Connect);
                // a failure at an address the server has moved away from meanwhile (Sentinel
                // named a new master) is the old address's, not the server's
                if target.get().1 == epoch {
                    blame(&group, backend, &failure);
                }
                tracing::warn!(server = %backend.name, %addr, "{failure}");
                fail(batch.drain(..), &failure);
                while let Ok(job) = jobs.try_recv() {
                    let _ = job.reply.send(Err(failure.clone()));
                }
                continue;
            }
        };
        let mut pipe = Pipe {
            io: strata_net::UpstreamIo(stream),
            out: BytesMut::new(),
            buf: BytesMut::with_capacity(strata_net::buffers::BUFFER),
            scan: Default::default(),
            owed: VecDeque::new(),
            timer: Box::pin(tokio::time::sleep_until(Instant::now())),
            armed: false,
            ending: None,
            waiting: false,
            unsent: 0,
            settings: &settings,
            latency: &latency,
        };
        pipe.take(&mut batch);
        let ended =
            std::future::poll_fn(|cx| pipe.poll(cx, &mut jobs, &mut batch, &target, epoch)).await;
        match ended {
            Ended::Gone => return,
            // the server moved (what this connection took was sent on it and came back on it;
            // what it did not take goes to the new address), or closed the connection while it
            // owed nothing
            Ended::Moved | Ended::Idle => {}
            Ended::Failed(e) => {
                let failure = e.failure(Stage::Request);
                // counted before the commands are answered, so that a client's next command
                // already sees the server ejected when this failure ejects it (unless the
                // server has moved away from this connection's address)
                if target.get().1 == epoch {
                    blame(&group, backend, &failure);
                }
                tracing::warn!(server = %backend.name, %addr, "{failure}");
                for (tx, _, _) in pipe.owed.drain(..) {
                    let _ = tx.send(Err(failure.clone()));
                }
            }
        }
    }
}

/// Why a connection's pipeline stopped.
enum Ended {
    /// Its pool generation is gone, and nothing is owed.
    Gone,
    /// Its server moved to another address, and nothing is owed.
    Moved,
    /// The server closed it while nothing was owed (Redis's `timeout`): no failure.
    Idle,
    /// It failed: every command owed gets the failure, and the log says why.
    Failed(LinkError),
}

/// One open connection to a server, as a pipeline.
struct Pipe<'a> {
    io: strata_net::UpstreamIo,
    /// Commands taken and not yet written.
    out: BytesMut,
    /// Replies read and not yet handed out.
    buf: BytesMut,
    /// How far the reply at the front of `buf` has been scanned.
    scan: crate::ReplyScan,
    owed: VecDeque<InFlight>,
    /// The reply timeout of the oldest command owed; armed lazily: when it fires early (the
    /// command it was set for was answered), it is set again for the oldest one now.
    timer: std::pin::Pin<Box<tokio::time::Sleep>>,
    armed: bool,
    /// Taking no more commands: the generation went, or the server moved.
    ending: Option<Ended>,
    /// Everything taken was written, and no reply bytes were read since: commands taken
    /// meanwhile wait for the next (or, at the reply timeout, fail unsent with the rest).
    waiting: bool,
    /// How many of the commands owed (the newest) are not written yet.
    unsent: usize,
    settings: &'a LinkSettings,
    latency: &'a Latency,
}

impl Pipe<'_> {
    /// Takes commands to write; each is owed a reply from now on.
    fn take(&mut self, batch: &mut Vec<Job>) {
        let now = Instant::now();
        self.unsent += batch.len();
        for job in batch.drain(..) {
            self.out.extend_from_slice(&job.frame);
            self.owed.push_back((job.reply, now, job.skip));
        }
    }

    /// Everything taken is written: a reply's time counts from now (not from when its
    /// command waited to be written), and what is taken next waits for reply bytes.
    fn written(&mut self) {
        let now = Instant::now();
        for (_, sent, _) in self.owed.iter_mut().rev().take(self.unsent) {
            *sent = now;
        }
        self.unsent = 0;
        self.waiting = true;
    }

    fn poll(
        &mut self,
        cx: &mut std::task::Context<'_>,
        jobs: &mut mpsc::UnboundedReceiver<Job>,
        batch: &mut Vec<Job>,
        target: &Target,
        epoch: u64,
    ) -> std::task::Poll<Ended> {
        use std::task::Poll;
        loop {
            let mut moved = false;
            if self.ending.is_none() {
                match jobs.poll_recv_many(cx, batch, 256) {
                    Poll::Ready(0) => self.ending = Some(Ended::Gone),
                    Poll::Ready(_) => {
                        moved = true;
                        if target.get().1 != epoch {
                            // not taken: they go to the new address
                            self.ending = Some(Ended::Moved);
                        } else {
                            self.take(batch);
                        }
                    }
                    Poll::Pending => {}
                }
            }
            // Commands taken after a write, before any reply bytes came back, wait for the
            // next ones, then go out together: a busy server reads many commands at a time
            // instead of one per wakeup, and the proxy makes one write for them. The server
            // runs a connection's commands in order, so while it works on the earlier ones
            // they would have waited there; what they lose is a reply's trip back (no more: a
            // large reply's first bytes end the wait, not its last). Once the connection is
            // ending (the server moved), nothing waits: what it took goes out at once.
            while (!self.waiting || self.ending.is_some()) && !self.out.is_empty() {
                match std::pin::Pin::new(&mut self.io).poll_write(cx, &self.out) {
                    Poll::Ready(Ok(0)) => {
                        let closed = std::io::ErrorKind::WriteZero.into();
                        return Poll::Ready(Ended::Failed(LinkError::Write(closed)));
                    }
                    Poll::Ready(Ok(n)) => {
                        bytes::Buf::advance(&mut self.out, n);
                        moved = true;
                        if self.out.is_empty() {
                            self.written();
                        }
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Ended::Failed(LinkError::Write(e))),
                    Poll::Pending => break,
                }
            }
            if self.buf.capacity() - self.buf.len() < 1024 {
                self.buf
                    .reserve(strata_net::buffers::BUFFER.max(self.buf.len()));
            }
            match tokio_util::io::poll_read_buf(std::pin::Pin::new(&mut self.io), cx, &mut self.buf)
            {
                Poll::Ready(Ok(0)) if self.owed.is_empty() => {
                    return Poll::Ready(self.ending.take().unwrap_or(Ended::Idle));
                }
                Poll::Ready(Ok(0)) => return Poll::Ready(Ended::Failed(LinkError::Closed)),
                Poll::Ready(Ok(_)) => {
                    self.waiting = false;
                    if let Err(e) = self.hand_out() {
                        return Poll::Ready(Ended::Failed(e));
                    }
                    moved = true;
                }
                // a reset while nothing is owed (a firewall's idle timeout, a restart) is no
                // failure, as a close is not
                Poll::Ready(Err(_)) if self.owed.is_empty() => {
                    return Poll::Ready(self.ending.take().unwrap_or(Ended::Idle));
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Ended::Failed(LinkError::Read(e))),
                Poll::Pending => {}
            }
            if self.owed.is_empty() && self.out.is_empty() {
                if let Some(end) = self.ending.take() {
                    return Poll::Ready(end);
                }
            }
            if !moved {
                break;
            }
        }
        self.poll_timeout(cx)
    }

    /// Hands every complete reply to the command it answers, in order; one clock reading
    /// serves them all.
    fn hand_out(&mut self) -> Result<(), LinkError> {
        let arrived = Instant::now();
        loop {
            let scanned = crate::reply_len_from(self.settings.protocol, &self.buf, &mut self.scan);
            let Some(len) = scanned? else {
                return Ok(());
            };
            if let Some((_, _, skip)) = self.owed.front_mut() {
                if *skip > 0 {
                    *skip -= 1;
                    let _ = self.buf.split_to(len);
                    continue;
                }
            }
            let Some((tx, sent, _)) = self.owed.pop_front() else {
                return Err(LinkError::Unasked);
            };
            self.latency
                .observe(arrived.saturating_duration_since(sent));
            let _ = tx.send(Ok(self.buf.split_to(len).freeze()));
        }
    }

    /// Fails the connection when its oldest command has waited past the pool's `timeout`.
    fn poll_timeout(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Ended> {
        use std::task::Poll;
        let Some(&(_, sent, _)) = self.owed.front() else {
            self.armed = false;
            return Poll::Pending;
        };
        let deadline = sent + self.settings.timeout;
        if !self.armed {
            self.timer.as_mut().reset(deadline);
            self.armed = true;
        }
        while self.timer.as_mut().poll(cx).is_ready() {
            if Instant::now() >= deadline {
                return Poll::Ready(Ended::Failed(LinkError::NoReply(self.settings.timeout)));
            }
            self.timer.as_mut().reset(deadline);
        }
        Poll::Pending
    }
}

/// Sends `frame` (holding `replies` commands) on a connection of its own and reads as many
/// replies, within `timeout` if one is given; the last reply. For the connections that are
/// not pipelines: handshakes, a client's own connection, Sentinel and Cluster questions.
pub(crate) async fn request(
    stream: &mut tokio::net::TcpStream,
    frame: &[u8],
    replies: usize,
    timeout: Option<Duration>,
) -> Result<Bytes, LinkError> {
    replies_of(stream, frame, replies, timeout)
        .await
        .map(|(_, last)| last)
}

/// [`request`]'s exchange: the first error reply if any came (a handshake whose every command
/// must succeed; a transaction one of whose commands was redirected), and the last reply.
pub(crate) async fn replies_of(
    stream: &mut tokio::net::TcpStream,
    frame: &[u8],
    replies: usize,
    timeout: Option<Duration>,
) -> Result<(Option<Bytes>, Bytes), LinkError> {
    let exchange = async {
        stream.write_all(frame).await.map_err(LinkError::Write)?;
        let mut buf = BytesMut::with_capacity(1024);
        let mut scan = crate::resp::ReplyScan::default();
        let mut last = Bytes::new();
        let mut error = None;
        for _ in 0..replies {
            loop {
                if let Some(len) = crate::resp::reply_len_from(&buf, &mut scan)? {
                    last = buf.split_to(len).freeze();
                    if error.is_none() && last.starts_with(b"-") {
                        error = Some(last.clone());
                    }
                    break;
                }
                match stream.read_buf(&mut buf).await {
                    Ok(0) => return Err(LinkError::Closed),
                    Ok(_) => {}
                    Err(e) => return Err(LinkError::Read(e)),
                }
            }
        }
        Ok((error, last))
    };
    match timeout {
        Some(t) => tokio::time::timeout(t, exchange)
            .await
            .unwrap_or(Err(LinkError::NoReply(t))),
        None => exchange.await,
    }
}

/// Connects to a server and, for Redis with a `server_password`, authenticates.
pub(crate) async fn open(
    addr: SocketAddr,
    settings: &LinkSettings,
    resp3: bool,
) -> Result<tokio::net::TcpStream, LinkError> {
    let mut stream = strata_net::connect(addr, settings.connect_timeout).await?;
    let mut hello: Vec<&[u8]> = Vec::new();
    if resp3 {
        hello.extend([&b"HELLO"[..], b"3"]);
        if let Some(password) = &settings.password {
            hello.extend([&b"AUTH"[..], b"default", password.as_bytes()]);
        }
    } else if let (Some(password), CacheProtocol::Redis) = (&settings.password, settings.protocol) {
        hello.extend([&b"AUTH"[..], password.as_bytes()]);
    }
    if !hello.is_empty() || settings.readonly {
        let mut auth = BytesMut::new();
        let mut replies = 0;
        if !hello.is_empty() {
            crate::resp::encode_command(&mut auth, hello.iter().copied());
            replies += 1;
        }
        if settings.readonly {
            crate::resp::encode_command(&mut auth, [&b"READONLY"[..]].into_iter());
            replies += 1;
        }
        let what =
            String::from_utf8_lossy(hello.first().copied().unwrap_or(b"READONLY")).into_owned();
        let answered = replies_of(&mut stream, &auth, replies, Some(settings.timeout)).await;
        match answered.map(|(error, last)| error.unwrap_or(last)) {
            Ok(reply) if reply.starts_with(b"+OK") || (resp3 && reply.starts_with(b"%")) => {}
            Ok(reply) => {
                let reply = String::from_utf8_lossy(&reply).trim_end().to_string();
                return Err(LinkError::Refused { what, reply });
            }
            Err(e) => {
                return Err(LinkError::Greeting {
                    what,
                    source: Box::new(e),
                })
            }
        }
    }
    Ok(stream)
}

fn fail(jobs: impl Iterator<Item = Job>, failure: &Failure) {
    for job in jobs {
        let _ = job.reply.send(Err(failure.clone()));
    }
}

/// Counts `failure` against the server (passive health: enough in a row eject it).
fn blame(group: &Group, backend: &Backend, failure: &Failure) {
    backend.stats.failures.inc();
    group.report_failure(backend, &failure.to_string());
}
