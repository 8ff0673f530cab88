//! The accept loop every listener shares: a connection limit, back-off while the process is out
//! of descriptors, a warning that cannot flood the log, and a tracked task per connection so
//! shutdown can wait for them all.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The first pause after an accept error that is not one connection's own.
const FIRST_PAUSE: Duration = Duration::from_millis(10);
/// The longest pause: a listener starved of descriptors still tries once a second.
const LONGEST_PAUSE: Duration = Duration::from_secs(1);
/// At most one "accept failed" line per listener in this period.
const LOG_EVERY: Duration = Duration::from_secs(1);

/// Accepts on `listener` until `shutdown`, running `handle` for each connection while holding a
/// permit of the current `limit`; then stops accepting and returns once every connection ended.
///
/// An accept error that belongs to one connection (the client gave up before it was accepted, a
/// network error pending on it) is skipped at once. Any other error, above all running out of
/// descriptors (EMFILE, ENFILE), buffers or memory (ENOBUFS, ENOMEM), pauses accepting: 10 ms
/// at first, doubling up to 1 s while it persists, back to no pause after the next success. The
/// pending connections wait in the kernel's backlog meanwhile. `name` labels the warning, written
/// at most once a second with the number of failures suppressed since the previous one.
pub async fn accept_loop<L, H, F>(
    name: &str,
    listener: TcpListener,
    shutdown: &CancellationToken,
    limit: L,
    handle: H,
) where
    L: Fn() -> Arc<Semaphore>,
    H: Fn(TcpStream, SocketAddr) -> F,
    F: Future<Output = ()> + Send + 'static,
{
    let connections = TaskTracker::new();
    let mut failures = Failures::default();
    loop {
        let permit = tokio::select! {
            _ = shutdown.cancelled() => break,
            p = limit().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let accepted = tokio::select! {
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
        connections.spawn(Held {
            conn: handle(stream, client),
            _permit: permit,
        });
    }
    drop(listener);
    connections.close();
    connections.wait().await;
}

/// A connection's future and the permit it holds while it runs. Polled in place: an
/// `async move { conn.await }` around it would keep the future twice in the task (once as the
/// captured value, once as the awaited one), and a connection's task is most of what an idle
/// connection costs.
struct Held<F> {
    conn: F,
    _permit: OwnedSemaphorePermit,
}

impl<F: Future> Future for Held<F> {
    type Output = F::Output;

    #[allow(unsafe_code)]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        // SAFETY: `conn` is pinned structurally: `Held` never moves it out of the pinned
        // struct, has no `Drop` that could, and is `Unpin` only when `F` is.
        unsafe { self.map_unchecked_mut(|held| &mut held.conn) }.poll(cx)
    }
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
