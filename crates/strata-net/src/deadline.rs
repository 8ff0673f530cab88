//! A timeout that a connection moves on every request without touching the timer wheel: moving
//! it later only stores the new instant, and the armed timer, when it goes off before that
//! instant, is armed again for it (the lazy timers of event-driven proxies). A busy keep-alive
//! connection re-arms about once per timeout period instead of twice per request.

use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::time::{sleep_until, Instant, Sleep};

/// A connection's one timeout, moved on every request and armed lazily (see the module).
pub struct Deadline {
    sleep: Pin<Box<Sleep>>,
    at: Instant,
}

impl Deadline {
    /// A deadline armed for `at`.
    pub fn new(at: Instant) -> Self {
        Deadline {
            sleep: Box::pin(sleep_until(at)),
            at,
        }
    }

    /// Moves the deadline; only moving it earlier than the armed timer re-arms it.
    pub fn set(&mut self, at: Instant) {
        self.at = at;
        if at < self.sleep.deadline() {
            self.sleep.as_mut().reset(at);
        }
    }

    /// Resolves once the deadline has passed.
    pub fn expired(&mut self) -> impl Future<Output = ()> + '_ {
        poll_fn(|cx| self.poll_expired(cx))
    }

    /// [`Deadline::expired`] for hand-written futures: `Ready` once the deadline has passed.
    pub fn poll_expired(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            ready!(self.sleep.as_mut().poll(cx));
            // the timer went off at its own deadline: past ours too unless ours moved later
            if self.sleep.deadline() >= self.at {
                return Poll::Ready(());
            }
            let at = self.at;
            self.sleep.as_mut().reset(at);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn moving_later_waits_for_the_new_instant_and_earlier_takes_effect() {
        let start = Instant::now();
        let mut d = Deadline::new(start + Duration::from_secs(10));
        d.set(start + Duration::from_secs(30));
        d.expired().await;
        assert_eq!(Instant::now() - start, Duration::from_secs(30));
        d.set(Instant::now() + Duration::from_secs(60));
        d.set(Instant::now() + Duration::from_secs(5));
        let t = Instant::now();
        d.expired().await;
        assert_eq!(Instant::now() - t, Duration::from_secs(5));
    }
}
