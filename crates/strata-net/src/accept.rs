//! The accept loop every listener shares: a connection limit, back-off while the process is out
//! of descriptors, a warning that cannot flood the log, and a count of open connections so
//! shutdown can wait for them all.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::task_tracker::TaskTrackerToken;
use tokio_util::task::TaskTracker;

use crate::limit::{Limit, Slot};

/// The first pause after an accept error that is not one connection's own.
const FIRST_PAUSE: Duration = Duration::from_millis(10);
/// The longest pause: a listener starved of descriptors still tries once a second.
const LONGEST_PAUSE: Duration = Duration::from_secs(1);
/// At most one "accept failed" line per listener in this period.
const LOG_EVERY: Duration = Duration::from_secs(1);

/// Accepts on `listener` until `shutdown`, handing each connection to `start` with an
/// [`Admitted`] that it keeps for as long as the connection lives (a slot of `limit`, the
/// listener's for its whole life, which a reload resizes, and the loop's count of open
/// connections); then stops accepting and returns the
/// [`Draining`] connections, for the listener to tell them (if it has a way to) and to wait for.
///
/// An accept error that belongs to one connection (the client gave up before it was accepted, a
/// network error pending on it) is skipped at once. Any other error, above all running out of
/// descriptors (EMFILE, ENFILE), buffers or memory (ENOBUFS, ENOMEM), pauses accepting: 10 ms
/// at first, doubling up to 1 s while it persists, back to no pause after the next success. The
/// pending connections wait in the kernel's backlog meanwhile. `name` labels the warning, written
/// at most once a second with the number of failures suppressed since the previous one.
pub async fn accept_loop<S>(
    name: &str,
    listener: TcpListener,
    shutdown: &CancellationToken,
    limit: Limit,
    mut start: S,
) -> Draining
where
    S: FnMut(TcpStream, SocketAddr, Admitted),
{
    let connections = TaskTracker::new();
    let mut failures = Failures::default();
    loop {
        let permit = tokio::select! {
            _ = shutdown.cancelled() => break,
            p = limit.acquire() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let accepted = tokio::select! {
            // a stopped listener takes nothing more, even a connection already waiting: a
            // listener that took its socket over (a reload renamed it) serves that one
            biased;
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, client) = match accepted {
            Ok(a) => {
                failures.succeeded();
                a
            }
            Err(e) => {
                let verdict = failures.failed(&e, Instant::now());
                if let Some(suppressed) = verdict.log {
                    let pause_ms = verdict.pause.as_millis() as u64;
                    if verdict.pause.is_zero() {
                        tracing::debug!(listener = name, error = %e, suppressed, "accept failed");
                    } else {
                        tracing::warn!(listener = name, error = %e, suppressed, pause_ms, "accept failed; pausing");
                    }
                }
                if !verdict.pause.is_zero() {
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(verdict.pause) => {}
                    }
                }
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        keepalive(&stream);
        let admitted = Admitted {
            _slot: permit,
            _open: connections.token(),
        };
        start(stream, client, admitted);
    }
    drop(listener);
    connections.close();
    Draining(connections)
}

/// TCP keepalive on a connection, timed as Redis times it (`tcp-keepalive 300`): a peer that
/// vanished without closing (its host crashed, a NAT forgot the flow) is found and closed
/// within about ten minutes, instead of holding its place under the connection limit (and,
/// for a database client, a server connection) for good; and a connection kept idle on
/// purpose (a pooler's to its servers) keeps its flow alive in a NAT that forgets quiet ones.
pub fn keepalive(stream: &TcpStream) {
    let probes = socket2::TcpKeepalive::new()
        .with_time(Duration::from_secs(300))
        .with_interval(Duration::from_secs(100))
        .with_retries(3);
    let _ = socket2::SockRef::from(stream).set_tcp_keepalive(&probes);
}

/// A listener's connections after it stopped accepting.
#[must_use = "a drain waits for its connections"]
pub struct Draining(TaskTracker);

impl Draining {
    /// Resolves once every connection admitted by the loop ended.
    pub async fn finished(self) {
        self.0.wait().await;
    }

    /// [`Draining::finished`] for a listener whose connections wait between messages on
    /// deadlines in `timers` (`poll_idle`): they are woken first, so that they see the drain.
    pub async fn finished_waking(self, timers: &crate::Timers) {
        timers.wake_all();
        self.finished().await;
    }
}

/// What an accepted connection holds while it lives, in its task or parked: a slot of its
/// listener's connection limit, and its place in the count that a drain waits for.
pub struct Admitted {
    _slot: Slot,
    _open: TaskTrackerToken,
}

/// What the loop does about one failed accept.
#[derive(Debug, PartialEq, Eq)]
struct Verdict {
    /// How long to wait before accepting again; zero to go on at once.
    pause: Duration,
    /// Write a line now, saying how many failures were suppressed since the previous line.
    log: Option<u64>,
}

/// The accept errors of one listener so far: the current pause and the log rate limit.
#[derive(Debug, Default)]
struct Failures {
    /// The pause after the next failure that is not one connection's own; zero: none yet.
    pause: Duration,
    last_log: Option<Instant>,
    suppressed: u64,
}

impl Failures {
    fn failed(&mut self, error: &io::Error, now: Instant) -> Verdict {
        let pause = if one_connection(error) {
            Duration::ZERO
        } else {
            let pause = self.pause.max(FIRST_PAUSE);
            self.pause = (pause * 2).min(LONGEST_PAUSE);
            pause
        };
        let log = match self.last_log {
            Some(at) if now.saturating_duration_since(at) < LOG_EVERY => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last_log = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        };
        Verdict { pause, log }
    }

    /// The condition has passed: the next failure starts from the shortest pause again. The log
    /// limit stays, so a listener flapping between failure and success still writes little.
    fn succeeded(&mut self) {
        self.pause = Duration::ZERO;
    }
}

/// Errors that concern only the connection being accepted (accept(2) passes pending network
/// errors on as its own): accepting the next one can work at once.
fn one_connection(error: &io::Error) -> bool {
    use io::ErrorKind::*;
    matches!(
        error.kind(),
        ConnectionAborted
            | ConnectionReset
            | ConnectionRefused
            | Interrupted
            | WouldBlock
            | TimedOut
            | PermissionDenied
            | NetworkDown
            | NetworkUnreachable
            | HostUnreachable
    )
}

#[cfg(test)]
mod tests;
