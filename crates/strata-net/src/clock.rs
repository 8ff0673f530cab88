//! The process's clock: an [`Instant`] read once per turn of a connection's task, and a
//! monotonic count of milliseconds cheap to store in an atomic.
//!
//! Reading the clock costs more than it looks on a virtual machine (27 ns a read on the
//! benchmark machine, where a proxied HTTP/1.1 request costs about 2 µs of user time in all),
//! and one request's path wants the time in several places: its start, the balancer, the
//! backend's deadline, the latency histograms, the pool's idle stamp. Inside a [`Turn`] they
//! all get the instant the turn began, as HAProxy's and nginx's event loops read the clock once
//! a loop.

use std::cell::Cell;
use std::marker::PhantomData;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

static EPOCH: OnceLock<Instant> = OnceLock::new();

thread_local! {
    /// When the turn running on this thread began, inside one.
    static TURN: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// Now: inside a [`Turn`], the instant it began; otherwise read from the clock.
pub fn now() -> Instant {
    TURN.with(Cell::get).unwrap_or_else(Instant::now)
}

/// The time from `earlier` to [`now`] (zero when `earlier` is later).
pub fn since(earlier: Instant) -> Duration {
    now().saturating_duration_since(earlier)
}

/// Milliseconds since the first call in this process (to the turn, as [`now`]); never 0, so 0
/// can mean "never".
pub fn now_ms() -> u64 {
    let epoch = *EPOCH.get_or_init(Instant::now);
    now().saturating_duration_since(epoch).as_millis() as u64 + 1
}

/// One poll of a task, during which [`now`] on this thread stays the instant it began. Made at
/// the top of a `poll` and dropped at its end, never held across an `.await` (it is not
/// `Send`): the next poll is a new turn. A turn begun inside another keeps the outer instant.
pub struct Turn {
    outer: Option<Instant>,
    _not_send: PhantomData<*const ()>,
}

impl Turn {
    /// Reads the clock (unless a turn is running already) and begins a turn.
    pub fn begin() -> Turn {
        let outer = TURN.with(|t| {
            let outer = t.get();
            t.set(Some(outer.unwrap_or_else(Instant::now)));
            outer
        });
        Turn {
            outer,
            _not_send: PhantomData,
        }
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        TURN.with(|t| {
            debug_assert!(t.get().is_some(), "turns end in the order they began");
            t.set(self.outer);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_turn_holds_the_time_it_began_and_the_clock_moves_on_after_it() {
        let before = now();
        let started;
        {
            let _turn = Turn::begin();
            started = now();
            assert!(started >= before);
            // the clock moves on (looked at, not slept on)
            while Instant::now() < started + Duration::from_millis(5) {
                std::hint::spin_loop();
            }
            assert_eq!(now(), started, "the turn's instant");
            assert_eq!(since(started), Duration::ZERO);
            {
                let _inner = Turn::begin();
                assert_eq!(now(), started, "an inner turn keeps the outer instant");
            }
            assert_eq!(now(), started);
        }
        assert!(
            since(started) >= Duration::from_millis(5),
            "read again after the turn"
        );
        assert!(now_ms() >= 1);
    }
}
