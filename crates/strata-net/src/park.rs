//! Connections that wait without a task of their own. A tokio task costs a cell aligned to 128
//! bytes that holds the connection's largest state; a relayed TCP connection already holds two
//! socket registrations of 256 bytes each, and spends most of its life waiting. [`Lanes`] runs
//! such connections the way an event loop does: each connection is one small allocation (its
//! state, a flag and a pointer), which is also the waker its sockets and its deadline hold, and a
//! woken connection is polled by its lane's one task. A listener has one lane per worker
//! thread, and a connection stays on the lane it was given.
//!
//! A connection still counts against its listener's limit and for its drain: the
//! [`crate::Admitted`] it holds lives in its state.

use std::future::poll_fn;
use std::mem;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Wake, Waker};

/// A connection that [`Lanes`] can run.
pub trait Park: Send + 'static {
    /// Makes progress, as `Future::poll` would: `Pending` registers `cx`'s waker with what it
    /// waits for, `Ready` when the connection is done (it is dropped then).
    fn poll_run(&mut self, cx: &mut Context<'_>) -> Poll<()>;
}

/// The lanes of one listener (see the module).
pub struct Lanes<C: Park> {
    lanes: Box<[Arc<Lane<C>>]>,
    next: AtomicUsize,
}

struct Lane<C> {
    inner: Mutex<LaneInner<C>>,
}

struct LaneInner<C> {
    ready: Vec<Arc<Slot<C>>>,
    /// The lane's task, when it waits for a connection to be woken.
    task: Option<Waker>,
    started: bool,
    /// Connections on the lane.
    live: usize,
    /// The `Lanes` is gone: the task ends once its connections did.
    orphaned: bool,
    /// The task is gone (its runtime shut down): a wake drops the connection.
    closed: bool,
}

/// One connection: its state, and whether it is queued to be polled.
struct Slot<C> {
    lane: Arc<Lane<C>>,
    queued: AtomicBool,
    conn: Mutex<Option<C>>,
}

/// Locks `m`, poisoned or not: a panic while it was held (in a connection's poll, say)
/// poisons only what that code held, and the state stays usable.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl<C: Park> Lanes<C> {
    /// Lanes for the current runtime: one per worker thread (one outside a runtime).
    pub fn new() -> Self {
        let count = tokio::runtime::Handle::try_current()
            .map_or(1, |h| h.metrics().num_workers())
            .max(1);
        let lanes = (0..count)
            .map(|_| {
                Arc::new(Lane {
                    inner: Mutex::new(LaneInner {
                        ready: Vec::new(),
                        task: None,
                        started: false,
                        live: 0,
                        orphaned: false,
                        closed: false,
                    }),
                })
            })
            .collect();
        Lanes {
            lanes,
            next: AtomicUsize::new(0),
        }
    }

    /// Runs `conn` on the next lane, until it is done. Call inside the runtime.
    pub fn run(&self, conn: C) {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.lanes.len();
        let lane = &self.lanes[i];
        let slot = Arc::new(Slot {
            lane: lane.clone(),
            queued: AtomicBool::new(true),
            conn: Mutex::new(Some(conn)),
        });
        let wake = {
            let mut inner = lock(&lane.inner);
            if !inner.started {
                inner.started = true;
                // a lane's turn is bounded by `TURN`: tokio's per-task budget, meant for one
                // connection's task, would cut a turn short after a few connections
                tokio::spawn(tokio::task::unconstrained(drive(lane.clone())));
            }
            inner.live += 1;
            inner.ready.push(slot);
            inner.task.take()
        };
        if let Some(w) = wake {
            w.wake();
        }
    }

    /// Connections running now.
    pub fn len(&self) -> usize {
        self.lanes.iter().map(|l| lock(&l.inner).live).sum()
    }

    /// True when no connection runs.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<C: Park> Default for Lanes<C> {
    fn default() -> Self {
        Self::new()
    }
}

impl<C: Park> Drop for Lanes<C> {
    fn drop(&mut self) {
        for lane in self.lanes.iter() {
            let wake = {
                let mut inner = lock(&lane.inner);
                inner.orphaned = true;
                inner.task.take()
            };
            if let Some(w) = wake {
                w.wake();
            }
        }
    }
}

impl<C: Park> Wake for Slot<C> {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref()
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if self.queued.swap(true, Ordering::AcqRel) {
            return;
        }
        let mut inner = lock(&self.lane.inner);
        if inner.closed {
            // the runtime shut down: nobody will poll it again
            drop(inner);
            let conn = lock(&self.conn).take();
            drop(conn);
            return;
        }
        inner.ready.push(self.clone());
        let task = inner.task.take();
        drop(inner);
        if let Some(w) = task {
            w.wake();
        }
    }
}

/// Most connections polled in one turn of a lane's task before it lets the runtime's other
/// tasks run (tokio's budget for I/O is per turn, too).
const TURN: usize = 256;

/// A lane's task: polls woken connections until the lane is orphaned and empty.
async fn drive<C: Park>(lane: Arc<Lane<C>>) {
    let _closing = Closing(&lane);
    // the queue and this batch swap buffers, so a turn allocates nothing
    let mut batch: Vec<Arc<Slot<C>>> = Vec::new();
    poll_fn(|cx| {
        {
            let mut inner = lock(&lane.inner);
            if inner.ready.is_empty() {
                return inner.wait(cx);
            }
            if inner.ready.len() <= TURN {
                mem::swap(&mut inner.ready, &mut batch);
            } else {
                batch.extend(inner.ready.drain(..TURN));
            }
        }
        let mut ended = 0;
        for slot in batch.drain(..) {
            // a wake from now on queues it again
            slot.queued.store(false, Ordering::Release);
            let waker = Waker::from(slot.clone());
            let mut conn = lock(&slot.conn);
            let Some(c) = conn.as_mut() else { continue };
            if c.poll_run(&mut Context::from_waker(&waker)).is_ready() {
                let done = conn.take();
                drop(conn);
                drop(done);
                ended += 1;
            }
        }
        let mut inner = lock(&lane.inner);
        inner.live -= ended;
        if inner.ready.is_empty() {
            return inner.wait(cx);
        }
        // more woke during the turn: the next one after the runtime's other tasks
        drop(inner);
        cx.waker().wake_by_ref();
        Poll::Pending
    })
    .await
}

impl<C> LaneInner<C> {
    /// Nothing queued: the task ends if the lane is orphaned and empty, else waits for a wake.
    fn wait(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.orphaned && self.live == 0 {
            return Poll::Ready(());
        }
        if !self.task.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            self.task = Some(cx.waker().clone());
        }
        Poll::Pending
    }
}

/// Marks a lane closed when its task ends, however it ends (a runtime shutting down drops it),
/// and drops the connections queued on it.
struct Closing<'a, C>(&'a Lane<C>);

impl<C> Drop for Closing<'_, C> {
    fn drop(&mut self) {
        let queued = {
            let mut inner = lock(&self.0.inner);
            inner.closed = true;
            inner.task = None;
            mem::take(&mut inner.ready)
        };
        for slot in queued {
            let conn = lock(&slot.conn).take();
            drop(conn);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::sync::mpsc;

    /// Counts its polls; done once it received `until` messages.
    struct Counter {
        rx: mpsc::UnboundedReceiver<()>,
        seen: usize,
        until: usize,
        done: Option<tokio::sync::oneshot::Sender<usize>>,
    }

    impl Park for Counter {
        fn poll_run(&mut self, cx: &mut Context<'_>) -> Poll<()> {
            while let Poll::Ready(Some(())) = self.rx.poll_recv(cx) {
                self.seen += 1;
                if self.seen == self.until {
                    let _ = self.done.take().unwrap().send(self.seen);
                    return Poll::Ready(());
                }
            }
            Poll::Pending
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn connections_run_on_their_lanes_until_done() {
        let lanes = Lanes::new();
        let mut senders = Vec::new();
        let mut dones = Vec::new();
        for i in 0..100 {
            let (tx, rx) = mpsc::unbounded_channel();
            let (done, got) = tokio::sync::oneshot::channel();
            lanes.run(Counter {
                rx,
                seen: 0,
                until: i + 1,
                done: Some(done),
            });
            senders.push(tx);
            dones.push(got);
        }
        assert_eq!(lanes.len(), 100);
        for round in 0..100 {
            for (i, tx) in senders.iter().enumerate() {
                if i >= round {
                    tx.send(()).unwrap();
                }
            }
            tokio::task::yield_now().await;
        }
        for (i, got) in dones.into_iter().enumerate() {
            assert_eq!(got.await.unwrap(), i + 1);
        }
        // the lane's count drops once its task saw them end
        for _ in 0..100 {
            if lanes.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(lanes.is_empty());
    }
}
