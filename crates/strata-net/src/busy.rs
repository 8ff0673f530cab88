//! Busy polling (`busy_poll`): after the runtime's thread wakes for an event, it keeps asking
//! the kernel for new events, without sleeping, for up to a window before it may sleep again.
//!
//! Why: a thread that sleeps in `epoll_wait` is woken by whoever sends it data, and on a
//! virtual machine whose idle CPUs halt (no guest halt polling) that wake is an inter-processor
//! interrupt, which costs the *sender's* CPU a trip through the hypervisor. When the proxy's
//! clients and servers share a saturated CPU (a PostgreSQL server and its clients on one host),
//! those wakes come out of their throughput. A thread that is still polling needs no wake. The
//! cost is the proxy's own CPU: it spends the window asking, even when nothing comes.
//!
//! How: tokio's current-thread runtime calls a hook before it parks, and parks without
//! blocking when that hook made a task runnable. The hook wakes [`poller`]'s task while the
//! window is open; the task does nothing when polled. A park that blocked opens the window
//! again when it ends. Only a current-thread runtime (`workers = 1`) can be driven this way.

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

thread_local! {
    /// Until when this thread polls instead of sleeping.
    static UNTIL: Cell<Option<Instant>> = const { Cell::new(None) };
    /// Whether the park in progress was made a poll (so its end opens no new window).
    static POLLING: Cell<bool> = const { Cell::new(false) };
    /// The poller task's waker, on the thread that runs it.
    static POLLER: RefCell<Option<Waker>> = const { RefCell::new(None) };
    /// Parks made polls, and parks that slept (for tests).
    static COUNTS: Cell<(u64, u64)> = const { Cell::new((0, 0)) };
}

/// Sets `builder` (a current-thread runtime's) to poll for `window` after each wake; spawn
/// [`poller`] on the runtime it builds. A zero window changes nothing.
pub fn install(builder: &mut tokio::runtime::Builder, window: Duration) {
    if window.is_zero() {
        return;
    }
    builder
        .on_thread_park(before_park)
        .on_thread_unpark(move || after_unpark(window));
}

/// The task that keeps the runtime polling while the window is open (spawn it once, on the
/// runtime [`install`] set up); it never ends.
pub async fn poller() {
    poll_fn(|cx| {
        POLLER.with_borrow_mut(|w| match w {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => *w = Some(cx.waker().clone()),
        });
        Poll::<()>::Pending
    })
    .await
}

fn before_park() {
    let poll = UNTIL.get().is_some_and(|until| Instant::now() < until);
    POLLING.set(poll);
    let (polls, sleeps) = COUNTS.get();
    if poll {
        // a runnable task: the runtime looks for events without blocking, runs what they woke,
        // and comes back here
        POLLER.with_borrow(|w| w.as_ref().map(Waker::wake_by_ref));
        COUNTS.set((polls + 1, sleeps));
    } else {
        COUNTS.set((polls, sleeps + 1));
    }
}

fn after_unpark(window: Duration) {
    if !POLLING.get() {
        UNTIL.set(Some(Instant::now() + window));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parks made polls and parks that may have slept, on this thread, while `f` ran.
    fn parks(window: Duration, f: impl std::future::Future<Output = ()>) -> (u64, u64) {
        let mut builder = tokio::runtime::Builder::new_current_thread();
        builder.enable_all();
        install(&mut builder, window);
        let runtime = builder.build().expect("runtime");
        COUNTS.set((0, 0));
        runtime.spawn(poller());
        runtime.block_on(f);
        COUNTS.get()
    }

    #[test]
    fn a_woken_runtime_polls_for_the_window_then_sleeps() {
        let window = Duration::from_millis(50);
        let (polls, sleeps) = parks(window, async {
            // the first wake opens the window; the second sleep outlasts it
            tokio::time::sleep(Duration::from_millis(5)).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        });
        // a park made a poll returns at once and comes back (a park that blocked would wait for
        // the timer, and count once)
        assert!(
            polls > 10,
            "the runtime did not keep polling inside the window: {polls}"
        );
        // the first park, and one after the window closed (a runtime that never stopped
        // polling would have made it to the second timer without another)
        assert!(
            sleeps >= 2,
            "the runtime did not sleep again after the window: {sleeps}"
        );
    }

    #[test]
    fn without_a_window_every_park_may_sleep() {
        let (polls, sleeps) = parks(Duration::ZERO, async {
            tokio::time::sleep(Duration::from_millis(5)).await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        });
        assert_eq!(polls, 0);
        // no hooks are installed: nothing counts
        assert_eq!(sleeps, 0);
    }
}
