//! Connections that wait without a task. A tokio task costs a 128-byte-aligned cell that holds
//! the connection's largest state; a connection that sits quiet for minutes does not need one.
//! [`spawn_parking`] runs a [`Park`] connection in a task while it is busy, and when it has been
//! waiting for a while it gives the task up: its state moves into a small ticket, the ticket is
//! the waker its sockets and its deadline hold, and the first wake spawns a task for it again.
//!
//! A parked connection still counts against its listener's limit and for its drain: the
//! [`crate::Admitted`] it holds lives in its state, wherever that is.

use std::future::Future;
use std::mem;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

/// A connection that can be run by [`spawn_parking`].
pub trait Park: Send + 'static {
    /// Makes progress, as `Future::poll` would. `Pending` registers `cx`'s waker with what it
    /// waits for; `park` says that it may wait without a task: it has been quiet long enough
    /// that the next wake is likely far off.
    fn poll_run(&mut self, cx: &mut Context<'_>, park: &mut bool) -> Poll<()>;
}

/// Runs `conn` on the current runtime until it finishes (see the module).
pub fn spawn_parking<C: Park>(conn: C) {
    let ticket = Arc::new(Ticket {
        state: Mutex::new(State::Running),
    });
    tokio::spawn(Run {
        ticket,
        conn: Some(conn),
    });
}

/// Where a connection is while it has no task, and how a wake finds it.
struct Ticket<C> {
    state: Mutex<State<C>>,
}

enum State<C> {
    /// In a task. Wakes go to the task itself, except while it parks.
    Running,
    /// In a task that is parking, and woken meanwhile: it stays.
    Woken,
    /// No task: the next wake spawns one.
    Parked(C),
}

impl<C: Park> Wake for Ticket<C> {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref()
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let mut state = lock(self);
        match mem::replace(&mut *state, State::Woken) {
            State::Parked(conn) => {
                *state = State::Running;
                drop(state);
                // a wake from outside the runtime (its I/O driver shutting down) ends it
                if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                    runtime.spawn(Run {
                        ticket: self.clone(),
                        conn: Some(conn),
                    });
                }
            }
            // a wake left over from an earlier park, or one during this park: the task looks
            State::Running | State::Woken => {}
        }
    }
}

/// The task of a connection while it runs.
struct Run<C> {
    ticket: Arc<Ticket<C>>,
    conn: Option<C>,
}

// `conn` is never pinned: `Park::poll_run` takes it by `&mut`.
impl<C> Unpin for Run<C> {}

impl<C: Park> Future for Run<C> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        let Some(conn) = this.conn.as_mut() else {
            return Poll::Ready(());
        };
        let mut park = false;
        if conn.poll_run(cx, &mut park).is_ready() {
            this.conn = None;
            return Poll::Ready(());
        }
        if !park {
            return Poll::Pending;
        }
        // parking: everything it waits for must wake the ticket instead of this task, so it
        // looks once more with the ticket as the waker
        *lock(&this.ticket) = State::Running;
        let waker = Waker::from(this.ticket.clone());
        if conn
            .poll_run(&mut Context::from_waker(&waker), &mut park)
            .is_ready()
        {
            this.conn = None;
            return Poll::Ready(());
        }
        let mut state = lock(&this.ticket);
        if let State::Woken = *state {
            // something happened meanwhile: carry on in this task, after the runtime's other
            // tasks (the wake may have been tokio's budget running out)
            *state = State::Running;
            drop(state);
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        *state = State::Parked(this.conn.take().expect("checked above"));
        Poll::Ready(())
    }
}

fn lock<C>(ticket: &Ticket<C>) -> std::sync::MutexGuard<'_, State<C>> {
    ticket.state.lock().unwrap_or_else(|e| e.into_inner())
}
