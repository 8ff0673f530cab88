//! Busy polling (`busy_poll`): for up to a window after bytes last arrived on a socket, the
//! runtime's thread keeps asking the kernel for new events instead of sleeping.
//!
//! Why: a thread that sleeps in `epoll_wait` is woken by whoever sends it data, and on a
//! virtual machine whose idle CPUs halt (no guest halt polling) that wake is an inter-processor
//! interrupt, which costs the *sender's* CPU a trip through the hypervisor. When the proxy's
//! clients and servers share a saturated CPU (a PostgreSQL server and its clients on one host),
//! those wakes come out of their throughput. A thread that is still polling needs no wake. The
//! cost is the proxy's own CPU: it spends the window asking, even when nothing comes.
//!
//! How: tokio's current-thread runtime calls a hook before it parks, and parks without
//! blocking (polling its IO and timer drivers once) when that hook made a task runnable; tokio
//! 1.53 is the first to poll the drivers then (earlier ones skipped them, stalling IO for the
//! window). The hook wakes [`poller`]'s task while the window is open; the task does nothing
//! when polled. The window runs from the last park before which a read (this crate's `recv`,
//! which the layers' connections read through) brought bytes: it closes only after that long
//! with nothing coming, and a wake that reads nothing (a timer's) opens none. Only a
//! current-thread runtime (`workers = 1`) can be driven this way.

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

thread_local! {
    /// Until when this thread polls instead of sleeping.
    static UNTIL: Cell<Option<Instant>> = const { Cell::new(None) };
    /// Bytes arrived on a socket since the last park.
    static ARRIVED: Cell<bool> = const { Cell::new(false) };
    /// The poller task's waker, on the thread that runs it.
    static POLLER: RefCell<Option<Waker>> = const { RefCell::new(None) };
    /// Parks made polls, and parks that may have slept (for tests).
    static COUNTS: Cell<(u64, u64)> = const { Cell::new((0, 0)) };
}

/// Sets `builder` (a current-thread runtime's) to poll for `window` after bytes last arrived;
/// spawn [`poller`] on the runtime it builds. A zero window changes nothing.
pub fn install(builder: &mut tokio::runtime::Builder, window: Duration) {
    if window.is_zero() {
        return;
    }
    builder.on_thread_park(move || before_park(window));
}

/// Bytes arrived on a socket (called by every read that got some).
pub(crate) fn arrived() {
    ARRIVED.set(true);
}

/// The task that keeps the runtime polling while the window is open (spawn it once, on the
/// runtime [`install`] set up); it never ends, and forgets this thread's state when dropped
/// (its runtime shut down).
pub async fn poller() {
    struct Forget;
    impl Drop for Forget {
        fn drop(&mut self) {
            POLLER.take();
            UNTIL.take();
        }
    }
    let _forget = Forget;
    poll_fn(|cx| {
        POLLER.with_borrow_mut(|w| match w {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => *w = Some(cx.waker().clone()),
        });
        Poll::<()>::Pending
    })
    .await
}

fn before_park(window: Duration) {
    let now = Instant::now();
    if ARRIVED.replace(false) {
        // work came since the last park: the window runs from here
        UNTIL.set(Some(now + window));
    }
    let (polls, sleeps) = COUNTS.get();
    if UNTIL.get().is_some_and(|until| now < until) {
        // a runnable task: the runtime looks for events without blocking, runs what they woke,
        // and comes back here
        POLLER.with_borrow(|w| w.as_ref().map(Waker::wake_by_ref));
        COUNTS.set((polls + 1, sleeps));
    } else {
        COUNTS.set((polls, sleeps + 1));
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

    /// Bytes arriving on a socket of this runtime, read.
    async fn read_some() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let mut peer = tokio::net::TcpStream::connect(listener.local_addr().expect("addr"))
            .await
            .expect("connect");
        let (ours, _) = listener.accept().await.expect("accept");
        tokio::io::AsyncWriteExt::write_all(&mut peer, b"work")
            .await
            .expect("write");
        let mut buf = bytes::BytesMut::with_capacity(64);
        loop {
            ours.readable().await.expect("readable");
            if crate::try_recv_buf(&ours, &mut buf).is_ok_and(|n| n > 0) {
                return;
            }
        }
    }

    #[test]
    fn after_bytes_arrive_the_runtime_polls_for_the_window_then_sleeps() {
        let mut at_work = (0, 0);
        // long enough that a loaded machine still lets the thread turn many times in it
        let (polls, sleeps) = parks(Duration::from_millis(200), async {
            read_some().await;
            at_work = COUNTS.get();
            // the window opens once the bytes are read; this sleep outlasts it
            tokio::time::sleep(Duration::from_millis(400)).await;
        });
        let (polls, sleeps) = (polls - at_work.0, sleeps - at_work.1);
        // a park made a poll returns at once and comes back (a park that blocked would wait for
        // the timer, and count once)
        assert!(
            polls > 10,
            "the runtime did not keep polling inside the window: {polls}"
        );
        // and once the window closed with nothing more arriving it slept (a runtime that never
        // stopped polling would have made it to the timer without)
        assert!(
            sleeps >= 1,
            "the runtime did not sleep again after the window: {sleeps}"
        );
    }

    #[test]
    fn timers_fire_while_the_runtime_polls() {
        let (polls, _) = parks(Duration::from_secs(1), async {
            read_some().await;
            // inside the window: each poll runs the timer driver too (a runtime that skipped
            // its drivers while polling would fire this only once the window had passed)
            let start = Instant::now();
            tokio::time::sleep(Duration::from_millis(1)).await;
            assert!(
                start.elapsed() < Duration::from_millis(500),
                "a 1 ms timer took {:?}",
                start.elapsed()
            );
        });
        assert!(polls > 10, "{polls}");
    }

    #[test]
    fn wakes_that_read_nothing_open_no_window() {
        let (polls, sleeps) = parks(Duration::from_millis(50), async {
            for _ in 0..5 {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        });
        assert_eq!(polls, 0);
        assert!(sleeps >= 5, "{sleeps}");
    }
}
