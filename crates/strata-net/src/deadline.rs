//! Connection deadlines on one timer per listener: a [`Deadline`] is a slot in its listener's
//! [`Timers`], not a tokio timer of its own, so an idle connection's timeout costs a few dozen
//! bytes in a shared table rather than a boxed timer entry, and one task sleeps until the
//! earliest deadline of them all.
//!
//! Deadlines move lazily, the way event-driven proxies move theirs: moving one later only
//! stores the new instant; the queue entry that was made for the earlier instant finds, when
//! its time comes, that the deadline moved on and queues it again. A busy keep-alive connection
//! touches the queue about once per timeout period, not twice per request.
//!
//! [`Timers::wake_all`] wakes every waiting deadline's task without expiring it: a listener that
//! drains calls it, so that connections waiting between requests look at the drain and close.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::time::{sleep_until, Instant, Sleep};

/// The deadlines of one listener's connections (see the module).
pub struct Timers {
    origin: Instant,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Indexed by a deadline's key; free slots are reused.
    slots: Vec<Slot>,
    free: Vec<u32>,
    /// (milliseconds from `origin`, key), earliest first. An entry is only a hint to look at
    /// its slot then: a slot's `at` is the truth, and entries whose slot has moved on are
    /// skipped.
    queue: BinaryHeap<Reverse<(u64, u32)>>,
    /// When the driver task wakes next (`u64::MAX`: not before it is woken).
    driver_at: u64,
    driver: Option<Waker>,
    started: bool,
}

#[derive(Default)]
struct Slot {
    /// The deadline, in milliseconds from `origin`, rounded up.
    at: u64,
    /// The time of this slot's live queue entry, `u64::MAX` when it has none.
    queued: u64,
    waker: Option<Waker>,
    expired: bool,
}

impl Timers {
    /// An empty set; its driver task starts with the first deadline (inside a tokio runtime).
    pub fn new() -> Arc<Self> {
        Arc::new(Timers {
            origin: Instant::now(),
            inner: Mutex::new(Inner {
                driver_at: u64::MAX,
                ..Inner::default()
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // a panic while holding the lock leaves consistent data: every update is one assignment
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `at` in milliseconds from the origin, rounded up so that a deadline never fires early.
    fn ms(&self, at: Instant) -> u64 {
        // u64 arithmetic: `as_millis` divides a u128, and this runs a few times per request
        let d = at.saturating_duration_since(self.origin);
        d.as_secs() * 1000 + u64::from(d.subsec_nanos().div_ceil(1_000_000))
    }

    fn now_ms(&self) -> u64 {
        let d = self.origin.elapsed();
        d.as_secs() * 1000 + u64::from(d.subsec_millis())
    }

    /// Wakes the task of every deadline that waits, without expiring any: each looks at why
    /// (a drain, say) and waits again if it has nothing to do.
    pub fn wake_all(&self) {
        let wakers: Vec<Waker> = {
            let mut inner = self.lock();
            inner
                .slots
                .iter_mut()
                .filter_map(|s| s.waker.take())
                .collect()
        };
        wakers.into_iter().for_each(Waker::wake);
    }

    /// Deadlines in use now.
    pub fn len(&self) -> usize {
        let inner = self.lock();
        inner.slots.len() - inner.free.len()
    }

    /// True when no deadline is in use.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for Timers {
    fn drop(&mut self) {
        // the driver holds only a weak reference: wake it so that it sees it is done
        let driver = self.inner.get_mut().ok().and_then(|i| i.driver.take());
        if let Some(w) = driver {
            w.wake();
        }
    }
}

/// Fires every due deadline and sleeps until the next, until the `Timers` is gone.
async fn drive(timers: Weak<Timers>) {
    let mut sleep: Option<Pin<Box<Sleep>>> = None;
    let mut due = Vec::new();
    poll_fn(|cx| loop {
        let Some(timers) = timers.upgrade() else {
            return Poll::Ready(());
        };
        let next = {
            let mut inner = timers.lock();
            let now = timers.now_ms();
            while let Some(&Reverse((t, key))) = inner.queue.peek() {
                if t > now {
                    break;
                }
                inner.queue.pop();
                let Some(slot) = inner.slots.get_mut(key as usize) else {
                    continue;
                };
                if slot.queued != t {
                    continue; // a stale hint
                }
                if slot.at <= now {
                    slot.queued = u64::MAX;
                    slot.expired = true;
                    due.extend(slot.waker.take());
                } else {
                    slot.queued = slot.at;
                    let at = slot.at;
                    inner.queue.push(Reverse((at, key)));
                }
            }
            let next = inner.queue.peek().map_or(u64::MAX, |&Reverse((t, _))| t);
            inner.driver_at = next;
            if !inner
                .driver
                .as_ref()
                .is_some_and(|w| w.will_wake(cx.waker()))
            {
                due.extend(inner.driver.replace(cx.waker().clone()));
            }
            next
        };
        // (an old driver waker lands in `due` too: waking it once more is harmless)
        due.drain(..).for_each(Waker::wake);
        if next == u64::MAX {
            return Poll::Pending;
        }
        let at = timers.origin + Duration::from_millis(next);
        drop(timers);
        let sleep = match &mut sleep {
            Some(s) => {
                if s.deadline() != at {
                    s.as_mut().reset(at);
                }
                s
            }
            None => sleep.insert(Box::pin(sleep_until(at))),
        };
        if sleep.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
    })
    .await
}

/// One connection's timeout, a slot in its listener's [`Timers`] (see the module). Moved on
/// every request; expired once its instant has passed, until it is set again.
pub struct Deadline {
    timers: Arc<Timers>,
    key: u32,
}

impl Deadline {
    /// A deadline for `at` in `timers`. The first one starts the timers' driver task, so it
    /// must be made inside a tokio runtime.
    pub fn new(timers: &Arc<Timers>, at: Instant) -> Self {
        let ms = timers.ms(at);
        let (key, wake_driver) = {
            let mut inner = timers.lock();
            if !inner.started {
                inner.started = true;
                tokio::spawn(drive(Arc::downgrade(timers)));
            }
            let key = match inner.free.pop() {
                Some(k) => k,
                None => {
                    inner.slots.push(Slot::default());
                    (inner.slots.len() - 1) as u32
                }
            };
            inner.slots[key as usize] = Slot {
                at: ms,
                queued: ms,
                waker: None,
                expired: false,
            };
            inner.queue.push(Reverse((ms, key)));
            (key, wake_driver(&mut inner, ms))
        };
        if let Some(w) = wake_driver {
            w.wake();
        }
        Deadline {
            timers: timers.clone(),
            key,
        }
    }

    /// Moves the deadline to `at`, earlier or later, and makes it unexpired.
    pub fn set(&mut self, at: Instant) {
        let ms = self.timers.ms(at);
        let wake = {
            let mut inner = self.timers.lock();
            let slot = &mut inner.slots[self.key as usize];
            slot.at = ms;
            slot.expired = false;
            if ms < slot.queued {
                slot.queued = ms;
                inner.queue.push(Reverse((ms, self.key)));
                wake_driver(&mut inner, ms)
            } else {
                None
            }
        };
        if let Some(w) = wake {
            w.wake();
        }
    }

    /// `Ready` once the deadline has passed; otherwise the task is woken when it does (or by
    /// [`Timers::wake_all`]).
    pub fn poll_expired(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let mut inner = self.timers.lock();
        let slot = &mut inner.slots[self.key as usize];
        if slot.expired {
            return Poll::Ready(());
        }
        if slot.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            return Poll::Pending;
        }
        let old = slot.waker.replace(cx.waker().clone());
        drop(inner);
        // a waker's drop may free what holds another deadline: never under the lock
        drop(old);
        Poll::Pending
    }

    /// Resolves once the deadline has passed.
    pub fn expired(&mut self) -> impl Future<Output = ()> + '_ {
        poll_fn(|cx| self.poll_expired(cx))
    }
}

/// The driver's waker when a deadline at `ms` is earlier than its next wake.
fn wake_driver(inner: &mut Inner, ms: u64) -> Option<Waker> {
    if ms < inner.driver_at {
        inner.driver_at = ms;
        inner.driver.clone()
    } else {
        None
    }
}

impl Drop for Deadline {
    fn drop(&mut self) {
        let mut inner = self.timers.lock();
        let slot = &mut inner.slots[self.key as usize];
        let waker = slot.waker.take();
        slot.queued = u64::MAX;
        slot.expired = false;
        inner.free.push(self.key);
        drop(inner);
        drop(waker);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn moving_later_waits_for_the_new_instant_and_earlier_takes_effect() {
        let timers = Timers::new();
        let start = Instant::now();
        let mut d = Deadline::new(&timers, start + Duration::from_secs(10));
        d.set(start + Duration::from_secs(30));
        d.expired().await;
        assert_eq!(Instant::now() - start, Duration::from_secs(30));
        d.set(Instant::now() + Duration::from_secs(60));
        d.set(Instant::now() + Duration::from_secs(5));
        let t = Instant::now();
        d.expired().await;
        assert_eq!(Instant::now() - t, Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn many_deadlines_fire_in_their_order_and_slots_are_reused() {
        let timers = Timers::new();
        let start = Instant::now();
        let mut tasks = Vec::new();
        for i in (1..=20u64).rev() {
            let timers = timers.clone();
            tasks.push(tokio::spawn(async move {
                let mut d = Deadline::new(&timers, start + Duration::from_millis(100 * i));
                d.expired().await;
                (i, Instant::now() - start)
            }));
        }
        for t in tasks {
            let (i, took) = t.await.unwrap();
            assert_eq!(took, Duration::from_millis(100 * i));
        }
        assert!(timers.is_empty());
        let _reused = Deadline::new(&timers, start + Duration::from_secs(60));
        assert_eq!(timers.lock().slots.len(), 20);
    }

    #[tokio::test(start_paused = true)]
    async fn wake_all_wakes_without_expiring() {
        let timers = Timers::new();
        let mut d = Deadline::new(&timers, Instant::now() + Duration::from_secs(60));
        let mut woken = 0;
        let start = Instant::now();
        poll_fn(|cx| {
            if d.poll_expired(cx).is_ready() {
                panic!("expired early");
            }
            woken += 1;
            if woken == 1 {
                timers.wake_all();
                return Poll::Pending;
            }
            Poll::Ready(())
        })
        .await;
        assert_eq!(woken, 2);
        assert_eq!(Instant::now(), start);
    }
}
