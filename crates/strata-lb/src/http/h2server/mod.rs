//! HTTP/2 client connections (RFC 9113), framed here rather than by hyper and the `h2` crate:
//! frames are read with [`h2frame`](super::h2frame), header blocks decoded with
//! [`hpack`](super::hpack) straight into the HTTP/1.1 head the request path reads, and each
//! stream's request runs as a future inside the connection's own task, which writes every
//! stream's frames to one buffer. Nothing is spawned per stream and no stream state crosses a
//! channel: a stream costs a map entry and its future.
//!
//! Limits (docs/SECURITY.md "HTTP/2"): `h2_max_concurrent_streams` open streams, more are
//! refused; a header block's compressed bytes at most twice `max_header_size` (at least
//! 64 KiB), and its decoded list at most `max_header_size` (431); per stream a 256 KiB receive
//! window, per connection 1 MiB, opened again only as the request path takes the data; 64 KiB
//! of frames waiting to be written before the connection stops reading (SETTINGS and PING
//! floods are pushed back by TCP); and streams the client resets before their answer ends cost
//! it calm: past 256 more than it let finish, GOAWAY ENHANCE_YOUR_CALM (CVE-2023-44487).

mod body;
mod request;

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::hash::{BuildHasherDefault, Hasher};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use futures_util::stream::{FuturesUnordered, StreamExt};
use http::{HeaderMap, HeaderName, HeaderValue};
use http_body::Body as _;
use http_body_util::BodyExt;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::sync::CancellationToken;

pub(crate) use body::ReqBody;
pub(crate) use request::{Fields, NewRequest};

use super::body::Progress;
use super::h1::codec::ParseError;
use super::h2frame::{self, Code, Frame, FrameError, Setting};
use super::hpack::{Decoder, Encoder, HpackError, DEFAULT_TABLE_SIZE};
use super::{connection_specific, h2, HttpService, Peer};
use strata_net::now_ms;

/// The receive window each stream starts with (SETTINGS_INITIAL_WINDOW_SIZE).
const STREAM_WINDOW: u32 = 256 << 10;
/// The connection's receive window: all streams' unread data together.
const CONN_WINDOW: u32 = 1 << 20;
/// The default frame size, which is all this side takes (no SETTINGS_MAX_FRAME_SIZE sent).
const MAX_FRAME: u32 = h2frame::MIN_MAX_FRAME;
/// Bytes of frames waiting to be written past which streams wait to write data and the
/// connection stops reading.
const OUT_HIGH: usize = 64 << 10;
/// DATA frames are joined in a stream's queue up to this many bytes.
const JOIN: usize = 16 << 10;
/// What a client may reset beyond what it let finish before the connection goes.
const CALM: i32 = 256;
/// The peer's SETTINGS_INITIAL_WINDOW_SIZE and the connection's send window before any
/// SETTINGS or WINDOW_UPDATE says otherwise.
const DEFAULT_WINDOW: i64 = 65_535;

/// Serves one client connection speaking HTTP/2; `read` holds what was read of it already
/// (the preface, when the connection was told apart by it). When `drain` fires or the
/// listener is reloaded the client gets GOAWAY and open streams finish.
pub(crate) async fn serve<I>(
    svc: &Arc<HttpService>,
    io: I,
    read: BytesMut,
    client: SocketAddr,
    tls: bool,
    drain: &CancellationToken,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send,
{
    let site = svc.site.load_full();
    let idle = site.config.idle_timeout;
    let mut conn = Conn::new(svc, io, read, client, tls, &site.config);
    drop(site);
    let mut reloaded = svc.generation.subscribe();
    let mut check =
        tokio::time::interval((idle / 4).clamp(Duration::from_millis(100), Duration::from_secs(5)));
    let mut closing = false;
    let mut ending_ticks = 0;
    let idle_ms = idle.as_millis() as u64;
    loop {
        tokio::select! {
            () = &mut conn => break,
            // on drain and on reload: GOAWAY, the streams in flight finish
            () = drain.cancelled(), if !closing => {
                conn.go_away();
                closing = true;
            }
            _ = reloaded.changed(), if !closing => {
                conn.go_away();
                closing = true;
            }
            _ = check.tick() => {
                let now = now_ms();
                // answers wait and the client has taken nothing for idle_timeout (a zero
                // window), or written frames have not moved (a socket it does not read): the
                // connection goes, and its streams
                let blocked = conn.blocked_since.is_some_and(|t| now.saturating_sub(t) > idle_ms);
                if conn.progress.stalled(idle) || blocked {
                    svc.stats.h2_stalls.inc();
                    tracing::debug!(listener = %svc.name, %client, "HTTP/2 client took no data for idle_timeout: closed");
                    break;
                }
                // the second step of a graceful GOAWAY, should the client not answer its PING
                if conn.away == Away::Announced {
                    conn.shared.lock().final_goaway(&mut conn.away, conn.last_stream);
                }
                // no streams and no frames for idle_timeout, as an idle HTTP/1.1 connection
                if conn.tasks.is_empty() && now.saturating_sub(conn.last_read_ms) > idle_ms {
                    conn.go_away();
                    conn.shared.lock().final_goaway(&mut conn.away, conn.last_stream);
                }
                // a connection error's GOAWAY, or the close, gets a moment to leave, not more
                if conn.dying || conn.shut {
                    ending_ticks += 1;
                    if ending_ticks > 2 {
                        break;
                    }
                }
            }
        }
    }
}

/// Where the connection is in going away (RFC 9113 §6.8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Away {
    Open,
    /// GOAWAY with the highest stream id and a PING sent: streams the client opened before it
    /// saw them are still taken; the PING's answer (or the next check) sends the real GOAWAY.
    Announced,
    /// GOAWAY with this last stream sent: streams above it are refused.
    Sent(u32),
}

/// The PING that follows a graceful GOAWAY's first step.
const GOAWAY_PING: [u8; 8] = *b"strata-g";

/// A connection error: GOAWAY with this code, and why (sent as the GOAWAY's debug data).
type ConnError = (Code, &'static str);

/// What the connection and its streams share: the connection's task owns it, stream futures
/// (polled in that task) and request bodies (read by whichever task forwards them) lock it.
pub(crate) struct Shared {
    inner: Mutex<Inner>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Hashes a stream id: ids are distinct small odd numbers, a multiply spreads them.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8 | u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }

    fn write_u32(&mut self, n: u32) {
        self.0 = u64::from(n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

struct Inner {
    /// Frames to be written, in order.
    out: Vec<u8>,
    encoder: Encoder,
    /// Room for encoding a header block, kept between blocks.
    block: Vec<u8>,
    streams: HashMap<u32, Stream, BuildHasherDefault<IdHasher>>,
    /// What this side may still send on the connection.
    send_window: i64,
    /// The client's SETTINGS_INITIAL_WINDOW_SIZE.
    peer_window: i64,
    peer_max_frame: usize,
    /// What the client may still send on the connection.
    recv_window: i64,
    /// Data taken (or dropped) since the connection's window was last opened.
    conn_credit: u32,
    /// Streams waiting for `out` to drain.
    waiting: Vec<Waker>,
    /// Streams waiting for the connection's send window.
    window_waiting: Vec<Waker>,
    /// The connection's task, woken when a request body read elsewhere opens a window.
    conn_waker: Option<Waker>,
    /// See [`CALM`].
    calm: i32,
}

/// One open stream.
struct Stream {
    /// DATA received and not yet read (small frames joined, so that a byte of window costs a
    /// byte of memory), and how many bytes.
    queue: VecDeque<BytesMut>,
    queued: usize,
    trailers: Option<HeaderMap>,
    /// The client ended the stream.
    remote_end: bool,
    /// The request body is not whole: reading it fails.
    failed: bool,
    /// The request body's reader, woken by DATA.
    reader: Option<Waker>,
    /// Nothing reads the request body any more: its DATA is dropped as it comes.
    body_dropped: bool,
    /// content-length, and the DATA received so far.
    expect: Option<u64>,
    received: u64,
    /// What the client may still send on this stream, and what was read since its window was
    /// last opened.
    recv_window: i64,
    credit: u32,
    /// What this side may still send on this stream, and the writer waiting for more.
    send_window: i64,
    sender: Option<Waker>,
    /// The stream's future, woken when the stream is reset.
    task: Option<Waker>,
    /// The answer ended (END_STREAM sent).
    local_end: bool,
}

impl Inner {
    /// `n` bytes of `stream`'s data were read: the client may send as much again, on the
    /// stream and on the connection, told once half a window is owed.
    fn consumed(&mut self, stream: u32, n: usize) {
        let mut wrote = false;
        if let Some(s) = self.streams.get_mut(&stream) {
            s.credit += n as u32;
            if s.credit >= STREAM_WINDOW / 2 && !s.remote_end {
                h2frame::put_window_update(&mut self.out, stream, s.credit);
                s.recv_window += i64::from(s.credit);
                s.credit = 0;
                wrote = true;
            }
        }
        wrote |= self.conn_consumed(n);
        if wrote {
            if let Some(w) = &self.conn_waker {
                w.wake_by_ref();
            }
        }
    }

    /// Opens the connection's window by `n` once half of it is owed; whether it wrote.
    fn conn_consumed(&mut self, n: usize) -> bool {
        self.conn_credit += n as u32;
        if self.conn_credit < CONN_WINDOW / 2 {
            return false;
        }
        h2frame::put_window_update(&mut self.out, 0, self.conn_credit);
        self.recv_window += i64::from(self.conn_credit);
        self.conn_credit = 0;
        true
    }

    /// The request body's reader went: what waits for it, and what comes, is dropped.
    fn body_dropped(&mut self, stream: u32) {
        if let Some(s) = self.streams.get_mut(&stream) {
            s.body_dropped = true;
            s.reader = None;
            let n = std::mem::take(&mut s.queued);
            s.queue.clear();
            s.trailers = None;
            if self.conn_consumed(n) {
                if let Some(w) = &self.conn_waker {
                    w.wake_by_ref();
                }
            }
        }
    }

    /// Ends a stream with RST_STREAM; its future and body reader find it gone.
    fn reset(&mut self, stream: u32, code: Code) {
        h2frame::put_rst(&mut self.out, stream, code);
        self.forget(stream);
    }

    /// Drops a stream's state, waking all that wait on it.
    fn forget(&mut self, stream: u32) -> Option<Stream> {
        let mut s = self.streams.remove(&stream)?;
        for w in [s.task.take(), s.reader.take(), s.sender.take()]
            .into_iter()
            .flatten()
        {
            w.wake();
        }
        self.conn_consumed(s.queued);
        Some(s)
    }

    /// A stream's future is done (or dropped): an answer that ended lets the client calm down
    /// by one; one that did not is reset; a request the client is still sending is told to
    /// stop (RST_STREAM NO_ERROR, §8.1).
    fn finish(&mut self, stream: u32) {
        let Some(s) = self.streams.get(&stream) else {
            return;
        };
        if !s.local_end {
            self.reset(stream, Code::INTERNAL_ERROR);
        } else {
            if !s.remote_end {
                h2frame::put_rst(&mut self.out, stream, Code::NO_ERROR);
            }
            self.forget(stream);
            self.calm = (self.calm + 1).min(CALM);
        }
    }

    /// Writes an answer's head; false when the stream is gone.
    fn send_head(&mut self, stream: u32, head: &http::response::Parts, end: bool) -> bool {
        let Some(s) = self.streams.get_mut(&stream) else {
            return false;
        };
        s.local_end = end;
        let status = head.status.as_str().as_bytes();
        let fields = std::iter::once((b":status".as_slice(), status)).chain(
            head.headers
                .iter()
                .filter(|(n, _)| !connection_specific(n.as_str().as_bytes()))
                .map(|(n, v)| (n.as_str().as_bytes(), v.as_bytes())),
        );
        self.write_block(stream, fields, end);
        true
    }

    /// Writes an answer's trailers, which end it.
    fn send_trailers(&mut self, stream: u32, trailers: &HeaderMap) {
        let Some(s) = self.streams.get_mut(&stream) else {
            return;
        };
        s.local_end = true;
        let fields = trailers
            .iter()
            .filter(|(n, _)| !connection_specific(n.as_str().as_bytes()))
            .map(|(n, v)| (n.as_str().as_bytes(), v.as_bytes()));
        self.write_block(stream, fields, true);
    }

    fn write_block<'a>(
        &mut self,
        stream: u32,
        fields: impl Iterator<Item = (&'a [u8], &'a [u8])>,
        end: bool,
    ) {
        self.block.clear();
        self.encoder.encode(fields, &mut self.block);
        h2frame::put_headers(
            &mut self.out,
            stream,
            &self.block,
            end,
            self.peer_max_frame as u32,
        );
    }

    /// Writes as much of `data` as the windows allow, in frames the client takes; ready when
    /// all of it (and END_STREAM, with `end`) is written, `false` when the stream is gone.
    fn poll_send(
        &mut self,
        stream: u32,
        data: &mut Bytes,
        end: bool,
        cx: &mut Context<'_>,
    ) -> Poll<bool> {
        loop {
            let Some(s) = self.streams.get_mut(&stream) else {
                return Poll::Ready(false);
            };
            if data.is_empty() {
                if end {
                    self.send_end(stream);
                }
                return Poll::Ready(true);
            }
            if self.out.len() >= OUT_HIGH {
                self.waiting.push(cx.waker().clone());
                return Poll::Pending;
            }
            let n = data
                .len()
                .min(s.send_window.max(0) as usize)
                .min(self.send_window.max(0) as usize)
                .min(self.peer_max_frame);
            if n == 0 {
                if s.send_window <= 0 {
                    s.sender = Some(cx.waker().clone());
                } else {
                    self.window_waiting.push(cx.waker().clone());
                }
                return Poll::Pending;
            }
            let last = end && n == data.len();
            h2frame::put_data(&mut self.out, stream, &data[..n], last);
            s.send_window -= n as i64;
            self.send_window -= n as i64;
            data.advance(n);
            if last {
                s.local_end = true;
                return Poll::Ready(true);
            }
        }
    }

    /// Ends an answer with an empty DATA frame, which no window limits.
    fn send_end(&mut self, stream: u32) {
        if let Some(s) = self.streams.get_mut(&stream) {
            if !s.local_end {
                h2frame::put_data(&mut self.out, stream, &[], true);
                s.local_end = true;
            }
        }
    }

    fn wake_waiting(&mut self) {
        for w in self.waiting.drain(..) {
            w.wake();
        }
    }

    /// The second step of a graceful GOAWAY: the last stream the client opened is the last
    /// one taken.
    fn final_goaway(&mut self, away: &mut Away, last_stream: u32) {
        if *away == Away::Announced {
            h2frame::put_goaway(&mut self.out, last_stream, Code::NO_ERROR, b"");
            *away = Away::Sent(last_stream);
        }
    }
}

/// A stream's request and answer, as a future the connection polls.
struct StreamTask {
    shared: Arc<Shared>,
    stream: u32,
    fut: Pin<Box<dyn Future<Output = ()> + Send>>,
}

impl Future for StreamTask {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        {
            let mut inner = self.shared.lock();
            // reset by the client (or by a connection error): the request is dropped where it
            // stands, its backend stream or connection with it
            let Some(s) = inner.streams.get_mut(&self.stream) else {
                return Poll::Ready(());
            };
            if !s.task.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                s.task = Some(cx.waker().clone());
            }
        }
        self.fut.as_mut().poll(cx)
    }
}

impl Drop for StreamTask {
    fn drop(&mut self) {
        self.shared.lock().finish(self.stream);
    }
}

/// A stream's life after its head: the request path's answer, then the answer's head, data
/// and trailers as the windows let them go.
async fn run_stream(
    svc: Arc<HttpService>,
    peer: Arc<Peer>,
    progress: Arc<Progress>,
    shared: Arc<Shared>,
    stream: u32,
    req: NewRequest,
    body: ReqBody,
) {
    let resp = h2::handle(&svc, req, body, &peer, &progress).await;
    let (head, mut body) = resp.into_parts();
    let end = body.is_end_stream();
    if !shared.lock().send_head(stream, &head, end) || end {
        return;
    }
    drop(head);
    loop {
        let frame = match body.frame().await {
            Some(Ok(frame)) => frame,
            None => {
                shared.lock().send_end(stream);
                return;
            }
            Some(Err(e)) => {
                tracing::debug!(listener = %svc.name, client = %peer.addr, error = %e, "an HTTP/2 answer's body failed: stream reset");
                shared.lock().reset(stream, Code::INTERNAL_ERROR);
                return;
            }
        };
        match frame.into_data() {
            Ok(mut data) => {
                let end = body.is_end_stream();
                let sent =
                    std::future::poll_fn(|cx| shared.lock().poll_send(stream, &mut data, end, cx))
                        .await;
                if !sent || end {
                    return;
                }
            }
            Err(frame) => {
                if let Ok(t) = frame.into_trailers() {
                    shared.lock().send_trailers(stream, &t);
                } else {
                    shared.lock().send_end(stream);
                }
                return;
            }
        }
    }
}

/// A header block arriving in pieces (HEADERS, then CONTINUATION until END_HEADERS).
struct Block {
    stream: u32,
    end_stream: bool,
    bytes: Vec<u8>,
}

/// One client connection.
struct Conn<I> {
    io: I,
    shared: Arc<Shared>,
    svc: Arc<HttpService>,
    peer: Arc<Peer>,
    progress: Arc<Progress>,
    rbuf: BytesMut,
    /// Frames taken from `Inner::out`, being written, and how much of them is.
    writing: Vec<u8>,
    written: usize,
    /// Bytes the transport (TLS) may hold until flushed.
    unflushed: bool,
    tasks: FuturesUnordered<StreamTask>,
    decoder: Decoder,
    block: Option<Block>,
    /// The highest stream the client opened.
    last_stream: u32,
    preface: bool,
    /// The client's first SETTINGS came.
    settled: bool,
    away: Away,
    peer_goaway: bool,
    read_closed: bool,
    /// Unread frames wait in `rbuf` because writes backed up.
    backlog: bool,
    /// A connection error was sent: only its GOAWAY is still to be written.
    dying: bool,
    /// All is written and the sending side closed: reads are drained until the client closes.
    shut: bool,
    /// When frames were last read (`now_ms`).
    last_read_ms: u64,
    /// Since when the socket has taken none of the frames waiting to be written.
    blocked_since: Option<u64>,
    max_streams: usize,
    max_list: usize,
    max_block: usize,
}

impl<I: AsyncRead + AsyncWrite + Unpin> Conn<I> {
    fn new(
        svc: &Arc<HttpService>,
        io: I,
        read: BytesMut,
        client: SocketAddr,
        tls: bool,
        config: &strata_config::HttpListener,
    ) -> Self {
        let max_streams = config.h2_max_concurrent_streams;
        let max_list = config.max_header_size as usize;
        let mut out = Vec::with_capacity(4096);
        h2frame::put_settings(
            &mut out,
            Some(&[
                (0x2, 0), // ENABLE_PUSH
                (0x3, max_streams),
                (0x4, STREAM_WINDOW),
                (0x6, max_list as u32),
            ]),
        );
        h2frame::put_window_update(&mut out, 0, CONN_WINDOW - DEFAULT_WINDOW as u32);
        let inner = Inner {
            out,
            encoder: Encoder::new(),
            block: Vec::new(),
            streams: HashMap::default(),
            send_window: DEFAULT_WINDOW,
            peer_window: DEFAULT_WINDOW,
            peer_max_frame: h2frame::MIN_MAX_FRAME as usize,
            recv_window: i64::from(CONN_WINDOW),
            conn_credit: 0,
            waiting: Vec::new(),
            window_waiting: Vec::new(),
            conn_waker: None,
            calm: CALM,
        };
        Conn {
            io,
            shared: Arc::new(Shared {
                inner: Mutex::new(inner),
            }),
            svc: svc.clone(),
            peer: Arc::new(Peer::new(client, tls)),
            progress: Arc::new(Progress::new()),
            rbuf: read,
            writing: Vec::new(),
            written: 0,
            unflushed: false,
            tasks: FuturesUnordered::new(),
            decoder: Decoder::new(DEFAULT_TABLE_SIZE),
            block: None,
            last_stream: 0,
            preface: false,
            settled: false,
            away: Away::Open,
            peer_goaway: false,
            read_closed: false,
            backlog: true,
            dying: false,
            shut: false,
            last_read_ms: now_ms(),
            blocked_since: None,
            max_streams: max_streams as usize,
            max_list,
            max_block: (max_list * 2).max(64 << 10),
        }
    }

    /// A graceful GOAWAY, in two steps as RFC 9113 §6.8 suggests: first with the highest
    /// stream id and a PING, then, once the PING is answered, with the last stream the client
    /// opened. Requests that crossed the first are served, not refused; the open ones finish.
    fn go_away(&mut self) {
        if self.away == Away::Open && !self.dying {
            let mut inner = self.shared.lock();
            h2frame::put_goaway(&mut inner.out, h2frame::MAX_WINDOW, Code::NO_ERROR, b"");
            h2frame::put_ping(&mut inner.out, GOAWAY_PING, false);
            self.away = Away::Announced;
        }
    }

    /// A connection error: GOAWAY with its code, then the connection closes.
    fn fail(&mut self, inner: &mut Inner, (code, why): ConnError) {
        tracing::debug!(listener = %self.svc.name, client = %self.peer.addr, ?code, why, "HTTP/2 connection error");
        if self.dying {
            return;
        }
        // a last stream id sent before may not go up
        let last = match self.away {
            Away::Sent(last) => last,
            _ => self.last_stream,
        };
        h2frame::put_goaway(&mut inner.out, last, code, why.as_bytes());
        self.away = Away::Sent(last);
        self.dying = true;
    }

    /// Frames wait to be written.
    fn unwritten(&self) -> bool {
        self.written < self.writing.len() || !self.shared.lock().out.is_empty()
    }

    /// Writes what waits; `Ok(true)` if anything moved.
    fn poll_write(&mut self, cx: &mut Context<'_>) -> std::io::Result<bool> {
        let mut moved = false;
        loop {
            if self.written == self.writing.len() {
                self.writing.clear();
                self.written = 0;
                let mut inner = self.shared.lock();
                if inner.out.is_empty() {
                    break;
                }
                std::mem::swap(&mut self.writing, &mut inner.out);
                inner.wake_waiting();
            }
            match Pin::new(&mut self.io).poll_write(cx, &self.writing[self.written..]) {
                Poll::Ready(Ok(0)) => return Err(std::io::ErrorKind::WriteZero.into()),
                Poll::Ready(Ok(n)) => {
                    self.written += n;
                    self.unflushed = true;
                    self.blocked_since = None;
                    moved = true;
                }
                Poll::Ready(Err(e)) => return Err(e),
                Poll::Pending => {
                    self.blocked_since.get_or_insert_with(now_ms);
                    return Ok(moved);
                }
            }
        }
        if self.unflushed {
            match Pin::new(&mut self.io).poll_flush(cx) {
                Poll::Ready(Ok(())) => self.unflushed = false,
                Poll::Ready(Err(e)) => return Err(e),
                Poll::Pending => {}
            }
        }
        Ok(moved)
    }

    /// Whether the frames waiting to be written are few enough to take more from the client.
    fn may_take(&self) -> bool {
        self.writing.len() - self.written + self.shared.lock().out.len() < OUT_HIGH
    }

    /// Takes the frames in `rbuf`, until they run out or writes back up.
    fn take_frames(&mut self) {
        let shared = self.shared.clone();
        let mut inner = shared.lock();
        let inner = &mut *inner;
        let buf = std::mem::take(&mut self.rbuf);
        let mut at = 0;
        self.backlog = false;
        self.last_read_ms = now_ms();
        if !self.preface {
            let n = buf.len().min(h2frame::PREFACE.len());
            if buf[..n] != h2frame::PREFACE[..n] {
                self.fail(inner, (Code::PROTOCOL_ERROR, "not the HTTP/2 preface"));
            } else if n == h2frame::PREFACE.len() {
                self.preface = true;
                at = n;
            }
        }
        while self.preface && !self.dying {
            if inner.out.len() >= OUT_HIGH {
                self.backlog = true;
                break;
            }
            let rest = &buf[at..];
            match h2frame::read(rest, MAX_FRAME) {
                Ok(None) => break,
                Ok(Some((frame, len))) => {
                    at += len;
                    if let Err(e) = self.on_frame(inner, frame) {
                        self.fail(inner, e);
                    }
                }
                Err(FrameError::Stream(stream, code, why)) => {
                    let kind = rest[3];
                    at += h2frame::HEADER
                        + u32::from_be_bytes([0, rest[0], rest[1], rest[2]]) as usize;
                    if kind == 0x1 || self.block.is_some() {
                        // a header block not decoded leaves HPACK out of step
                        self.fail(inner, (Code::PROTOCOL_ERROR, why));
                    } else {
                        self.stream_error(inner, stream, code);
                    }
                }
                Err(FrameError::Connection(code, why)) => self.fail(inner, (code, why)),
            }
        }
        let mut buf = buf;
        buf.advance(at);
        self.rbuf = buf;
    }

    /// A stream error this side found: RST_STREAM, counted against the client's calm.
    fn stream_error(&mut self, inner: &mut Inner, stream: u32, code: Code) {
        inner.reset(stream, code);
        inner.calm -= 1;
        if inner.calm < 0 {
            self.fail(inner, (Code::ENHANCE_YOUR_CALM, "too many streams reset"));
        }
    }

    fn on_frame(&mut self, inner: &mut Inner, frame: Frame<'_>) -> Result<(), ConnError> {
        if let Some(block) = &mut self.block {
            let Frame::Continuation {
                stream,
                end_headers,
                block: piece,
            } = frame
            else {
                return Err((Code::PROTOCOL_ERROR, "a frame inside a header block"));
            };
            if stream != block.stream {
                return Err((Code::PROTOCOL_ERROR, "CONTINUATION of another stream"));
            }
            if block.bytes.len() + piece.len() > self.max_block {
                return Err((Code::ENHANCE_YOUR_CALM, "a header block without end"));
            }
            block.bytes.extend_from_slice(piece);
            if end_headers {
                if let Some(Block {
                    stream,
                    end_stream,
                    bytes,
                }) = self.block.take()
                {
                    return self.on_block(inner, stream, end_stream, &bytes);
                }
            }
            return Ok(());
        }
        if !self.settled {
            if !matches!(frame, Frame::Settings { ack: false, .. }) {
                return Err((Code::PROTOCOL_ERROR, "the first frame is not SETTINGS"));
            }
            self.settled = true;
        }
        match frame {
            Frame::Data {
                stream,
                end_stream,
                data,
                flow,
            } => self.on_data(inner, stream, end_stream, data, flow),
            Frame::Headers {
                stream,
                end_stream,
                end_headers,
                block,
                ..
            } => {
                if end_headers {
                    return self.on_block(inner, stream, end_stream, block);
                }
                if block.len() > self.max_block {
                    return Err((Code::ENHANCE_YOUR_CALM, "a header block without end"));
                }
                self.block = Some(Block {
                    stream,
                    end_stream,
                    bytes: block.to_vec(),
                });
                Ok(())
            }
            Frame::Continuation { .. } => {
                Err((Code::PROTOCOL_ERROR, "CONTINUATION outside a header block"))
            }
            Frame::Priority { .. } | Frame::Unknown { .. } => Ok(()),
            Frame::RstStream { stream, .. } => {
                if self.idle(stream) {
                    return Err((Code::PROTOCOL_ERROR, "RST_STREAM on a stream never opened"));
                }
                if let Some(s) = inner.forget(stream) {
                    if !s.local_end {
                        // CVE-2023-44487: a stream opened and cancelled cost work for nothing
                        inner.calm -= 1;
                        if inner.calm < 0 {
                            return Err((Code::ENHANCE_YOUR_CALM, "too many streams reset"));
                        }
                    }
                }
                Ok(())
            }
            Frame::Settings { ack: true, .. } => Ok(()),
            Frame::Settings { ack: false, params } => {
                for setting in h2frame::settings(params) {
                    match setting.map_err(|e| match e {
                        FrameError::Connection(code, why) | FrameError::Stream(_, code, why) => {
                            (code, why)
                        }
                    })? {
                        Setting::HeaderTableSize(n) => inner.encoder.set_table_limit(n as usize),
                        Setting::InitialWindowSize(n) => {
                            let delta = i64::from(n) - inner.peer_window;
                            inner.peer_window = i64::from(n);
                            for s in inner.streams.values_mut() {
                                s.send_window += delta;
                                if s.send_window > i64::from(h2frame::MAX_WINDOW) {
                                    return Err((Code::FLOW_CONTROL_ERROR, "a window past 2^31-1"));
                                }
                                if delta > 0 {
                                    if let Some(w) = s.sender.take() {
                                        w.wake();
                                    }
                                }
                            }
                        }
                        Setting::MaxFrameSize(n) => inner.peer_max_frame = n as usize,
                        _ => {}
                    }
                }
                h2frame::put_settings(&mut inner.out, None);
                Ok(())
            }
            Frame::Ping { ack: false, data } => {
                h2frame::put_ping(&mut inner.out, data, true);
                Ok(())
            }
            Frame::Ping { ack: true, data } => {
                if data == GOAWAY_PING {
                    inner.final_goaway(&mut self.away, self.last_stream);
                }
                Ok(())
            }
            Frame::GoAway { .. } => {
                self.peer_goaway = true;
                Ok(())
            }
            Frame::WindowUpdate {
                stream: 0,
                increment,
            } => {
                inner.send_window += i64::from(increment);
                if inner.send_window > i64::from(h2frame::MAX_WINDOW) {
                    return Err((Code::FLOW_CONTROL_ERROR, "a window past 2^31-1"));
                }
                for w in inner.window_waiting.drain(..) {
                    w.wake();
                }
                Ok(())
            }
            Frame::WindowUpdate { stream, increment } => {
                if self.idle(stream) {
                    return Err((
                        Code::PROTOCOL_ERROR,
                        "WINDOW_UPDATE on a stream never opened",
                    ));
                }
                if let Some(s) = inner.streams.get_mut(&stream) {
                    s.send_window += i64::from(increment);
                    if s.send_window > i64::from(h2frame::MAX_WINDOW) {
                        self.stream_error(inner, stream, Code::FLOW_CONTROL_ERROR);
                    } else if let Some(w) = s.sender.take() {
                        w.wake();
                    }
                }
                Ok(())
            }
        }
    }

    /// A stream the client has not opened yet, or may never open (even ids are the server's).
    fn idle(&self, stream: u32) -> bool {
        stream > self.last_stream || stream.is_multiple_of(2)
    }

    fn on_data(
        &mut self,
        inner: &mut Inner,
        stream: u32,
        end_stream: bool,
        data: &[u8],
        flow: u32,
    ) -> Result<(), ConnError> {
        inner.recv_window -= i64::from(flow);
        if inner.recv_window < 0 {
            return Err((
                Code::FLOW_CONTROL_ERROR,
                "DATA past the connection's window",
            ));
        }
        if self.idle(stream) {
            return Err((Code::PROTOCOL_ERROR, "DATA on a stream never opened"));
        }
        // padding is flow-controlled, and never read
        let padding = flow as usize - data.len();
        let Some(s) = inner.streams.get_mut(&stream) else {
            // a stream already closed (reset, or answered): what was in flight is dropped
            inner.conn_consumed(flow as usize);
            return Ok(());
        };
        if s.remote_end {
            inner.conn_consumed(flow as usize);
            self.stream_error(inner, stream, Code::STREAM_CLOSED);
            return Ok(());
        }
        s.recv_window -= i64::from(flow);
        s.received += data.len() as u64;
        let over = s
            .expect
            .is_some_and(|n| s.received > n || (end_stream && s.received != n));
        if s.recv_window < 0 || over {
            s.failed = true;
            if let Some(w) = s.reader.take() {
                w.wake();
            }
            inner.conn_consumed(flow as usize);
            let code = if over {
                Code::PROTOCOL_ERROR
            } else {
                Code::FLOW_CONTROL_ERROR
            };
            self.stream_error(inner, stream, code);
            return Ok(());
        }
        s.remote_end = end_stream;
        if s.body_dropped {
            inner.conn_consumed(flow as usize);
        } else {
            if !data.is_empty() {
                match s.queue.back_mut() {
                    Some(last) if last.len() + data.len() <= JOIN => last.extend_from_slice(data),
                    _ => s.queue.push_back(BytesMut::from(data)),
                }
                s.queued += data.len();
            }
            if let Some(w) = s.reader.take() {
                w.wake();
            }
            if padding > 0 {
                inner.consumed(stream, padding);
            }
        }
        Ok(())
    }

    /// A whole header block: a new stream's request, or trailers.
    fn on_block(
        &mut self,
        inner: &mut Inner,
        stream: u32,
        end_stream: bool,
        block: &[u8],
    ) -> Result<(), ConnError> {
        if inner.streams.contains_key(&stream) {
            return self.on_trailers(inner, stream, end_stream, block);
        }
        if stream.is_multiple_of(2) {
            return Err((Code::PROTOCOL_ERROR, "a client stream with an even id"));
        }
        if !self.idle(stream) {
            // trailers of a stream already closed: read to keep HPACK in step, and dropped;
            // a request, on a stream id below one already used, is an error (§5.1.1)
            let mut request = false;
            self.decode(block, |n, _| request |= n.starts_with(b":"))?;
            if request {
                return Err((
                    Code::PROTOCOL_ERROR,
                    "a new stream below one already opened",
                ));
            }
            return Ok(());
        }
        self.last_stream = stream;
        let mut fields = Fields::new();
        let oversize = self.decode(block, |n, v| fields.field(n, v))?;
        let refused = matches!(self.away, Away::Sent(last) if stream > last);
        if refused || inner.streams.len() >= self.max_streams {
            // the client may send it again, elsewhere or later
            inner.reset(stream, Code::REFUSED_STREAM);
            return Ok(());
        }
        let req = if oversize {
            Ok(NewRequest {
                raw: Err(ParseError::TooLarge(self.max_list)),
                grpc: None,
                te_trailers: false,
                length: None,
            })
        } else {
            fields.finish(!end_stream)
        };
        let req = match req {
            Ok(req) => req,
            Err(why) => {
                tracing::debug!(listener = %self.svc.name, client = %self.peer.addr, why, "malformed HTTP/2 request: stream reset");
                h2frame::put_rst(&mut inner.out, stream, Code::PROTOCOL_ERROR);
                inner.calm -= 1;
                if inner.calm < 0 {
                    return Err((Code::ENHANCE_YOUR_CALM, "too many malformed requests"));
                }
                return Ok(());
            }
        };
        inner.streams.insert(
            stream,
            Stream {
                queue: VecDeque::new(),
                queued: 0,
                trailers: None,
                remote_end: end_stream,
                failed: false,
                reader: None,
                body_dropped: false,
                expect: req.length,
                received: 0,
                recv_window: i64::from(STREAM_WINDOW),
                credit: 0,
                send_window: inner.peer_window,
                sender: None,
                task: None,
                local_end: false,
            },
        );
        let body = ReqBody::new(self.shared.clone(), stream, end_stream);
        let fut = run_stream(
            self.svc.clone(),
            self.peer.clone(),
            self.progress.clone(),
            self.shared.clone(),
            stream,
            req,
            body,
        );
        self.tasks.push(StreamTask {
            shared: self.shared.clone(),
            stream,
            fut: Box::pin(fut),
        });
        Ok(())
    }

    /// Decodes a block; `Ok(true)` when its fields are over the list limit (the table is in
    /// step all the same).
    fn decode(&mut self, block: &[u8], field: impl FnMut(&[u8], &[u8])) -> Result<bool, ConnError> {
        match self.decoder.decode(block, self.max_list, field) {
            Ok(()) => Ok(false),
            Err(HpackError::Oversize) => Ok(true),
            Err(_) => Err((
                Code::COMPRESSION_ERROR,
                "a header block HPACK cannot decode",
            )),
        }
    }

    fn on_trailers(
        &mut self,
        inner: &mut Inner,
        stream: u32,
        end_stream: bool,
        block: &[u8],
    ) -> Result<(), ConnError> {
        let mut map = HeaderMap::new();
        let mut bad = false;
        let oversize = self.decode(block, |n, v| {
            if request::check_trailer(n, v).is_err() {
                bad = true;
            } else if let (Ok(n), Ok(v)) = (HeaderName::from_bytes(n), HeaderValue::from_bytes(v)) {
                map.append(n, v);
            }
        })?;
        let Some(s) = inner.streams.get_mut(&stream) else {
            return Ok(());
        };
        if s.remote_end {
            self.stream_error(inner, stream, Code::STREAM_CLOSED);
            return Ok(());
        }
        if !end_stream || bad || oversize || s.expect.is_some_and(|n| n != s.received) {
            s.failed = true;
            self.stream_error(inner, stream, Code::PROTOCOL_ERROR);
            return Ok(());
        }
        s.remote_end = true;
        if !s.body_dropped {
            s.trailers = Some(map);
            if let Some(w) = s.reader.take() {
                w.wake();
            }
        }
        Ok(())
    }

    /// Everything is done: no streams, nothing to write, and no more coming.
    fn done(&self) -> bool {
        let no_more = self.dying
            || self.read_closed
            || matches!(self.away, Away::Sent(_))
            || self.peer_goaway;
        no_more
            && (self.dying || (self.tasks.is_empty() && !self.backlog))
            && !self.unflushed
            && !self.unwritten()
    }

    /// The client closed its side: requests whose bodies had not ended never will.
    fn client_closed(&mut self) {
        self.read_closed = true;
        let mut inner = self.shared.lock();
        for s in inner.streams.values_mut() {
            if !s.remote_end {
                s.failed = true;
                if let Some(w) = s.reader.take() {
                    w.wake();
                }
            }
        }
    }

    /// After the last frame: the sending side is closed (a TLS close_notify first), then
    /// what the client still sends is read and dropped until it closes too, so that the
    /// kernel does not answer it with a reset that could destroy the last frames in flight.
    fn poll_close(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if !self.shut {
            if Pin::new(&mut self.io).poll_shutdown(cx).is_pending() {
                return Poll::Pending;
            }
            self.shut = true;
        }
        if self.read_closed {
            return Poll::Ready(());
        }
        loop {
            self.rbuf.clear();
            if self.rbuf.capacity() < 4096 {
                self.rbuf.reserve(4096);
            }
            match tokio_util::io::poll_read_buf(Pin::new(&mut self.io), cx, &mut self.rbuf) {
                Poll::Ready(Ok(0) | Err(_)) => return Poll::Ready(()),
                Poll::Ready(Ok(_)) => {}
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl<I: AsyncRead + AsyncWrite + Unpin> Future for Conn<I> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        {
            let mut inner = this.shared.lock();
            if !inner
                .conn_waker
                .as_ref()
                .is_some_and(|w| w.will_wake(cx.waker()))
            {
                inner.conn_waker = Some(cx.waker().clone());
            }
        }
        loop {
            if this.dying && !this.tasks.is_empty() {
                // the streams go with the connection; dropped outside the lock they take
                this.tasks = FuturesUnordered::new();
            }
            while let Poll::Ready(Some(())) = this.tasks.poll_next_unpin(cx) {}
            let mut busy = match this.poll_write(cx) {
                Ok(moved) => moved,
                Err(e) => {
                    tracing::debug!(listener = %this.svc.name, client = %this.peer.addr, error = %e, "HTTP/2 connection lost");
                    return Poll::Ready(());
                }
            };
            if this.shut || this.done() {
                return this.poll_close(cx);
            }
            if this.backlog && this.may_take() {
                this.take_frames();
                busy = true;
            }
            if !this.read_closed && !this.dying && !this.backlog && this.may_take() {
                if this.rbuf.capacity() - this.rbuf.len() < MAX_FRAME as usize {
                    this.rbuf.reserve(MAX_FRAME as usize + h2frame::HEADER);
                }
                match tokio_util::io::poll_read_buf(Pin::new(&mut this.io), cx, &mut this.rbuf) {
                    Poll::Ready(Ok(0)) => {
                        this.client_closed();
                        busy = true;
                    }
                    Poll::Ready(Ok(_)) => {
                        this.take_frames();
                        busy = true;
                    }
                    Poll::Ready(Err(e)) => {
                        tracing::debug!(listener = %this.svc.name, client = %this.peer.addr, error = %e, "HTTP/2 connection lost");
                        return Poll::Ready(());
                    }
                    Poll::Pending => {}
                }
            }
            if !busy {
                return Poll::Pending;
            }
        }
    }
}
