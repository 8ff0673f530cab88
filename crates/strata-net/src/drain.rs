//! Draining a listener's connections, and asking whether they drain, without a lock on the
//! way of every request.
//!
//! A listener's connections share its stop token ([`CancellationToken`]) and look at it after
//! every request, to close a keep-alive connection once the listener drains. The token's
//! `is_cancelled` takes a mutex (2-3 lock and unlock pairs a proxied request, each two atomic
//! instructions), though a drain happens only at a reload that removes a listener or at
//! shutdown. Every drain of a listener goes through [`cancel`], which counts it before
//! cancelling the token; [`is_cancelled`] looks at the token only once any drain has been
//! counted in the process, and otherwise reads one atomic counter.

use std::sync::atomic::{AtomicUsize, Ordering};

use tokio_util::sync::CancellationToken;

/// Drains begun in this process.
static DRAINS: AtomicUsize = AtomicUsize::new(0);

/// Cancels `token`, a listener's stop token: its connections finish what they are doing and
/// close. Counted first, so that whoever the cancellation wakes also sees the count.
pub fn cancel(token: &CancellationToken) {
    DRAINS.fetch_add(1, Ordering::SeqCst);
    token.cancel();
}

/// Whether `token` was cancelled, for tokens cancelled only through [`cancel`]: a load of one
/// counter while no drain has begun anywhere in the process.
#[inline]
pub fn is_cancelled(token: &CancellationToken) -> bool {
    DRAINS.load(Ordering::Acquire) != 0 && token.is_cancelled()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_cancelled_once_cancel_was_called_on_it_and_not_another() {
        let (a, b) = (CancellationToken::new(), CancellationToken::new());
        assert!(!is_cancelled(&a) && !is_cancelled(&b));
        cancel(&a);
        assert!(is_cancelled(&a));
        assert!(
            !is_cancelled(&b),
            "another listener's token is not cancelled"
        );
        let clone = b.clone();
        cancel(&clone);
        assert!(is_cancelled(&b), "a clone shares the cancellation");
    }

    #[tokio::test]
    async fn a_task_woken_by_the_cancellation_sees_it() {
        let token = CancellationToken::new();
        let waiting = token.clone();
        let seen = tokio::spawn(async move {
            waiting.cancelled().await;
            is_cancelled(&waiting)
        });
        tokio::task::yield_now().await;
        cancel(&token);
        assert!(seen.await.unwrap());
    }
}
