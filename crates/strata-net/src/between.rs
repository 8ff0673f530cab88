//! A client connection between two messages, and at its end: waiting for the next message's
//! first bytes without a buffer, under a deadline and a drain; and closing so that the last
//! answer reaches the client. HTTP/1.x keep-alive and cache clients wait and close this way
//! (database clients wait on their drain's `cancelled()` in their own loop).

use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use crate::{Arrival, Deadline};

/// Waits for a connection's next message to start arriving: true when it does; false when
/// `deadline` passes first, or `drain` is cancelled (through [`crate::drain::cancel`]). A
/// closed or failed socket counts as arrived: reading it will tell.
///
/// `checked` starts false for each wait: readiness found at once may be left from a read that
/// did not come back short, so the socket is asked once whether bytes are really queued
/// (otherwise the connection would take its message state to wait for bytes that are not
/// there). The drain is looked at after the deadline is polled: a layer that drains wakes every
/// deadline's task ([`crate::Timers::wake_all`]) once it has fired, so it cannot slip in
/// between.
pub fn poll_idle<S: Arrival>(
    io: &S,
    checked: &mut bool,
    deadline: &mut Deadline,
    drain: &CancellationToken,
    cx: &mut Context<'_>,
) -> Poll<bool> {
    while io.poll_arrival(cx).is_ready() {
        if *checked || io.queued().unwrap_or(true) {
            return Poll::Ready(true);
        }
        *checked = true;
    }
    // from here a wake is a fresh arrival: no more looking
    *checked = true;
    if deadline.poll_expired(cx).is_ready() || crate::drain::is_cancelled(drain) {
        return Poll::Ready(false);
    }
    Poll::Pending
}

/// Ends a connection: what was written goes out, then a lingering close. Closing with unread
/// bytes makes the kernel send a reset, which can destroy the last answer before the client
/// reads it, so what the client still sends is read and dropped for a moment first (nginx's
/// lingering close).
pub async fn close_lingering<S: AsyncRead + AsyncWrite + Unpin>(io: &mut S) {
    let _ = io.flush().await;
    let _ = io.shutdown().await;
    // on the heap, only while lingering: an array here would sit in every connection's task
    let mut scratch = vec![0u8; 4096];
    let mut left = LINGER_BYTES;
    let _ = tokio::time::timeout(LINGER_TIME, async {
        while left > 0 {
            match io.read(&mut scratch).await {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    })
    .await;
}

const LINGER_TIME: std::time::Duration = std::time::Duration::from_secs(2);
const LINGER_BYTES: usize = 1 << 20;
