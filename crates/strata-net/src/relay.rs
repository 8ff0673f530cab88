//! Relaying bytes both ways between two streams with an inactivity limit: the TCP layer and
//! upgraded HTTP connections (WebSocket) both use it. Buffers exist only while bytes are on
//! their way, so a quiet connection costs its sockets and 32 bytes of [`Relay`].

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;

use crate::buffers;
use crate::deadline::{Deadline, Timers};
use crate::socket::Arrival;

/// Copies `a` <-> `b` until both sides close, either fails, or nothing moves for `idle`.
/// Returns the bytes sent a -> b and b -> a.
pub async fn relay<A, B>(a: A, b: B, timers: &Arc<Timers>, idle: Duration) -> io::Result<(u64, u64)>
where
    A: AsyncRead + AsyncWrite + Arrival + Unpin,
    B: AsyncRead + AsyncWrite + Arrival + Unpin,
{
    run(a, b, timers, idle, false).await
}

/// Copies `a` <-> `b` until `b` ends: its last bytes written to `a`, and `a` shut down (a TLS
/// close_notify, then the socket's FIN). For a relay whose `b` side owns the connection's
/// life (a TLS client's session behind a socket pair): `a`'s end of stream is passed on to
/// `b`, but only `b`'s ends the relay, so it does not wait on a client that never closes.
/// Returns the bytes sent a -> b and b -> a.
pub async fn relay_until_b_ends<A, B>(
    a: A,
    b: B,
    timers: &Arc<Timers>,
    idle: Duration,
) -> io::Result<(u64, u64)>
where
    A: AsyncRead + AsyncWrite + Arrival + Unpin,
    B: AsyncRead + AsyncWrite + Arrival + Unpin,
{
    run(a, b, timers, idle, true).await
}

/// [`relay`], or with `until_b` [`relay_until_b_ends`].
async fn run<A, B>(
    mut a: A,
    mut b: B,
    timers: &Arc<Timers>,
    idle: Duration,
    until_b: bool,
) -> io::Result<(u64, u64)>
where
    A: AsyncRead + AsyncWrite + Arrival + Unpin,
    B: AsyncRead + AsyncWrite + Arrival + Unpin,
{
    let mut relay = Relay::new(timers, idle);
    let mut totals = [0; 2];
    poll_fn(|cx| relay.poll_ending(cx, &mut a, &mut b, &mut totals, until_b)).await?;
    Ok((totals[0], totals[1]))
}

/// The state of a relay between two streams that its owner holds (see the module).
pub struct Relay {
    /// The idle limit, in milliseconds (a connection parked for long holds this struct).
    idle_ms: u32,
    /// The idle limit from the last bytes moved.
    deadline: Deadline,
    /// Bytes read and not yet written, a -> b and b -> a; only while there are some.
    bufs: Option<Box<[BytesMut; 2]>>,
    /// Per direction: the reader reached its end (the writer is being shut down), and the
    /// writer was shut down.
    eof: [bool; 2],
    finished: [bool; 2],
}

impl Relay {
    /// A relay whose streams may be quiet for `idle`, its deadline one of `timers`.
    pub fn new(timers: &Arc<Timers>, idle: Duration) -> Self {
        Relay {
            idle_ms: idle.as_millis().min(u32::MAX as u128) as u32,
            deadline: Deadline::new(timers, Instant::now() + idle),
            bufs: None,
            eof: [false; 2],
            finished: [false; 2],
        }
    }

    fn idle(&self) -> Duration {
        Duration::from_millis(self.idle_ms.into())
    }

    /// Moves what can be moved, adding the bytes written a -> b and b -> a to `moved`;
    /// `Ready(Ok)` once both directions ended, an error when either side fails or nothing moved
    /// for the idle limit.
    pub fn poll<A, B>(
        &mut self,
        cx: &mut Context<'_>,
        a: &mut A,
        b: &mut B,
        moved: &mut [u64; 2],
    ) -> Poll<io::Result<()>>
    where
        A: AsyncRead + AsyncWrite + Arrival + Unpin,
        B: AsyncRead + AsyncWrite + Arrival + Unpin,
    {
        self.poll_ending(cx, a, b, moved, false)
    }

    /// [`Relay::poll`], or with `until_b`, as [`relay_until_b_ends`] relays: done once b -> a
    /// is, and `b` failing (a write to it, a reset read from it) is its end, not an error:
    /// what `a` still sends has nowhere to go, and what `b` wrote before goes on to `a`.
    fn poll_ending<A, B>(
        &mut self,
        cx: &mut Context<'_>,
        a: &mut A,
        b: &mut B,
        moved: &mut [u64; 2],
        until_b: bool,
    ) -> Poll<io::Result<()>>
    where
        A: AsyncRead + AsyncWrite + Arrival + Unpin,
        B: AsyncRead + AsyncWrite + Arrival + Unpin,
    {
        let mut active = false;
        let polled = self.both(cx, a, b, moved, &mut active, until_b);
        if self
            .bufs
            .as_ref()
            .is_some_and(|b| b.iter().all(|b| b.is_empty()))
        {
            let [x, y] = *self.bufs.take().expect("checked");
            buffers::give(x);
            buffers::give(y);
        }
        if polled.is_ready() {
            return polled;
        }
        if active {
            self.deadline.set(Instant::now() + self.idle());
        }
        ready!(self.deadline.poll_expired(cx));
        Poll::Ready(Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("idle for {:?}", self.idle()),
        )))
    }

    fn both<A, B>(
        &mut self,
        cx: &mut Context<'_>,
        a: &mut A,
        b: &mut B,
        moved: &mut [u64; 2],
        active: &mut bool,
        until_b: bool,
    ) -> Poll<io::Result<()>>
    where
        A: AsyncRead + AsyncWrite + Arrival + Unpin,
        B: AsyncRead + AsyncWrite + Arrival + Unpin,
    {
        // b -> a first: with `until_b`, what b wrote last is what matters
        let back = self
            .direction(
                1,
                cx,
                b,
                a,
                &mut moved[1],
                active,
                Failing::FromEnds(until_b),
            )?
            .is_ready();
        let there = self
            .direction(0, cx, a, b, &mut moved[0], active, Failing::ToEnds(until_b))?
            .is_ready();
        if back && (there || until_b) {
            Poll::Ready(Ok(()))
        } else {
            Poll::Pending
        }
    }

    /// One direction: read from `from`, write to `to`, until it waits or ends; `failing` says
    /// which side's failure ends it quietly.
    #[allow(clippy::too_many_arguments)] // one private step of `both`, called twice
    fn direction<R, W>(
        &mut self,
        i: usize,
        cx: &mut Context<'_>,
        from: &mut R,
        to: &mut W,
        moved: &mut u64,
        active: &mut bool,
        failing: Failing,
    ) -> Poll<io::Result<()>>
    where
        R: AsyncRead + Arrival + Unpin,
        W: AsyncWrite + Unpin,
    {
        match self.step(i, cx, from, to, moved, active) {
            Poll::Ready(Err(Fault::Write(_))) if failing == Failing::ToEnds(true) => {
                // the writer is gone: what is read from now on goes nowhere
                self.finished[i] = true;
                if let Some(bufs) = self.bufs.as_mut() {
                    bufs[i].clear();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(Fault::Read(_))) if failing == Failing::FromEnds(true) => {
                // the reader is gone: its end of stream, with what it sent before passed on
                self.eof[i] = true;
                self.step(i, cx, from, to, moved, active)
                    .map_err(Fault::into_inner)
            }
            other => other.map_err(Fault::into_inner),
        }
    }

    /// What [`Relay::direction`] does, its failures told apart by side.
    fn step<R, W>(
        &mut self,
        i: usize,
        cx: &mut Context<'_>,
        from: &mut R,
        to: &mut W,
        moved: &mut u64,
        active: &mut bool,
    ) -> Poll<Result<(), Fault>>
    where
        R: AsyncRead + Arrival + Unpin,
        W: AsyncWrite + Unpin,
    {
        loop {
            if self.finished[i] {
                return Poll::Ready(Ok(()));
            }
            let buf = self.bufs.as_mut().map(|b| &mut b[i]);
            if let Some(buf) = buf.filter(|b| !b.is_empty()) {
                let n = ready!(Pin::new(&mut *to).poll_write(cx, buf)).map_err(Fault::Write)?;
                if n == 0 {
                    return Poll::Ready(Err(Fault::Write(io::ErrorKind::WriteZero.into())));
                }
                buf.advance(n);
                *moved += n as u64;
                *active = true;
                continue;
            }
            // everything read so far went out (TLS keeps records until flushed)
            ready!(Pin::new(&mut *to).poll_flush(cx)).map_err(Fault::Write)?;
            if self.eof[i] {
                ready!(Pin::new(&mut *to).poll_shutdown(cx)).map_err(Fault::Write)?;
                self.finished[i] = true;
                continue;
            }
            let bufs = self.bufs.get_or_insert_with(Default::default);
            match ready!(buffers::poll_fill(from, cx, &mut bufs[i])).map_err(Fault::Read)? {
                0 => self.eof[i] = true,
                _ => *active = true,
            }
        }
    }
}

/// Which side's failure ends a direction quietly (its `bool`: whether that applies).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Failing {
    /// Reading `from` failing is its end of stream.
    FromEnds(bool),
    /// Writing `to` failing ends the direction.
    ToEnds(bool),
}

/// A direction's failure, by side.
enum Fault {
    Read(io::Error),
    Write(io::Error),
}

impl Fault {
    fn into_inner(self) -> io::Error {
        match self {
            Fault::Read(e) | Fault::Write(e) => e,
        }
    }
}
#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// An in-memory stream can't tell arrival from bytes: it reads straight away, as TLS does.
    impl Arrival for tokio::io::DuplexStream {
        const TELLS_ARRIVAL: bool = false;
        fn poll_arrival(&self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test(start_paused = true)]
    async fn relays_both_ways_then_times_out_after_the_idle_limit() {
        let timers = Timers::new();
        let (mut a, mut client) = tokio::io::duplex(64);
        let (mut b, mut server) = tokio::io::duplex(64);
        let mut relay = Relay::new(&timers, Duration::from_secs(10));
        let start = Instant::now();
        let mut totals = [0; 2];
        let run = async {
            let r = poll_fn(|cx| relay.poll(cx, &mut a, &mut b, &mut totals)).await;
            (r, Instant::now() - start)
        };
        let talk = async {
            client.write_all(b"ping").await.unwrap();
            let mut got = [0u8; 4];
            server.read_exact(&mut got).await.unwrap();
            assert_eq!(&got, b"ping");
            server.write_all(b"pong").await.unwrap();
            client.read_exact(&mut got).await.unwrap();
            assert_eq!(&got, b"pong");
        };
        let ((result, took), ()) = tokio::join!(run, talk);
        assert_eq!(result.unwrap_err().kind(), io::ErrorKind::TimedOut);
        assert_eq!(took, Duration::from_secs(10));
        assert_eq!(totals, [4, 4]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_relay_until_b_ends_does_not_wait_for_a_to_close() {
        let timers = Timers::new();
        let (a, mut client) = tokio::io::duplex(64);
        let (b, mut session) = tokio::io::duplex(64);
        let relay = relay_until_b_ends(a, b, &timers, Duration::from_secs(3600));
        let run = tokio::time::timeout(Duration::from_secs(60), relay);
        let talk = async {
            client.write_all(b"ping").await.unwrap();
            let mut got = [0u8; 4];
            session.read_exact(&mut got).await.unwrap();
            session.write_all(b"bye").await.unwrap();
            // the session ends; the client says nothing more and keeps its end open
            drop(session);
            let mut rest = Vec::new();
            client.read_to_end(&mut rest).await.unwrap();
            assert_eq!(rest, b"bye");
            client
        };
        let (moved, _client) = tokio::join!(run, talk);
        assert_eq!(moved.expect("ended with b").unwrap(), (4, 3));
    }

    #[tokio::test(start_paused = true)]
    async fn a_relay_until_b_ends_passes_on_what_b_wrote_though_b_left_reading_nothing() {
        let timers = Timers::new();
        let (a, client) = tokio::io::duplex(64);
        let (b, mut session) = tokio::io::duplex(64);
        // the session says its last words and goes, while the client is still sending
        session.write_all(b"bye").await.unwrap();
        drop(session);
        let (mut from_client, mut to_client) = tokio::io::split(client);
        to_client.write_all(&[7; 64]).await.unwrap();
        let relay = relay_until_b_ends(a, b, &timers, Duration::from_secs(3600));
        let relayed = tokio::time::timeout(Duration::from_secs(60), relay)
            .await
            .expect("ended with b");
        let mut heard = Vec::new();
        from_client.read_to_end(&mut heard).await.unwrap();
        assert_eq!(heard, b"bye");
        let (_, back) = relayed.expect("b leaving is its end, not a failure");
        assert_eq!(back, 3);
    }
}
