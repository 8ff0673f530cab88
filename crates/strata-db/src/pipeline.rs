//! Queries that only read, from many clients, pipelined on one server connection.
//!
//! In transaction mode a client holds a server connection from its query to the query's
//! ReadyForQuery. When every connection of a pool is taken, a client whose query runs outside
//! a transaction and only reads (as PostgreSQL's parser reads it: the classification that
//! sends reads to replicas) need not wait for one: its query goes out on a connection that
//! already runs such queries, behind them, up to `read_pipeline` queries on one connection.
//! PostgreSQL answers a connection's queries in order, each with its own ReadyForQuery, and a
//! query that only reads leaves nothing behind in the session, so each client gets exactly
//! its own answer. A busy server's backend then wakes once for several queries instead of
//! once for each, which for a short query is most of its cost.
//!
//! Such a connection (a line) is a task of its own, made from a connection of the pool when
//! the pool is full and a client whose query could share one gets a connection; it gives the
//! connection back to the pool as soon as it owes nothing, and takes no more than [`TAKES`]
//! queries in all, so that clients that wait for a connection of their own (writes,
//! transactions) get one as surely as when reads don't share: every connection, shared or
//! not, comes back to the pool soon. Only clients whose sessions carry the same parameters
//! (`application_name`, `search_path`, `statement_timeout`, ...) share a line.
//!
//! A cancel request for a query waiting behind others is held until the query runs
//! ([`crate::cancel::Turn`]). A slow client holds its line up (its answer is passed on in
//! parts, at most a few in memory), as a slow query does the ones behind it: the price of
//! sharing, paid only when the pool is full.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use bytes::{Buf, Bytes, BytesMut};
use strata_net::lock;
use tokio::sync::mpsc;

use crate::cancel::Turn;
use crate::pool::Lease;
use crate::proto;

/// An answer is passed on in parts of about this size.
const PART: usize = 64 * 1024;

/// Parts of one answer in memory at most, before the line waits for its client.
const PARTS: usize = 4;

/// The most queries a line takes in its life; then it finishes what it owes and its
/// connection goes back to the pool, where clients waiting for one get it in turn.
const TAKES: usize = 64;

/// What a client gets of its query's answer.
pub enum Part {
    /// Some of it; more follows.
    Some(Bytes),
    /// The rest, up to and including its ReadyForQuery.
    Last(Bytes),
}

/// A query sent on a line: its answer comes through `answer` (closed before a
/// [`Part::Last`] when the connection was lost), and `turn` says when it runs.
pub struct Ticket {
    /// The answer, in parts.
    pub answer: mpsc::Receiver<Part>,
    /// Its turn on the connection, for cancel requests.
    pub turn: Arc<Turn>,
}

struct Job {
    query: Bytes,
    answer: mpsc::Sender<Part>,
    turn: Arc<Turn>,
}

fn job(query: &[u8]) -> (Job, Ticket) {
    let (tx, rx) = mpsc::channel(PARTS);
    let turn = Arc::new(Turn::default());
    let job = Job {
        query: Bytes::copy_from_slice(query),
        answer: tx,
        turn: turn.clone(),
    };
    (job, Ticket { answer: rx, turn })
}

/// One line, as its pool sees it.
struct Entry {
    id: u64,
    /// The parameters its session carries ([`Lines::join`]'s `params`).
    params: u64,
    /// Queries sent on it and not yet answered.
    depth: usize,
    /// Queries sent on it in all.
    taken: usize,
    jobs: mpsc::UnboundedSender<Job>,
}

/// The lines of one server pool.
#[derive(Default)]
pub struct Lines(Mutex<Vec<Entry>>);

static NEXT_LINE: AtomicU64 = AtomicU64::new(1);

impl Lines {
    /// Sends `query` (a whole Query message) on the line whose session carries `params` and
    /// that owes fewest answers, if it owes fewer than `max`.
    pub fn join(&self, params: u64, max: usize, query: &[u8]) -> Option<Ticket> {
        let mut lines = lock(&self.0);
        let line = lines
            .iter_mut()
            .filter(|l| l.params == params && l.depth < max && l.taken < TAKES)
            .min_by_key(|l| l.depth)?;
        let (job, ticket) = job(query);
        // a line's task leaves the list before it stops taking jobs, so this can't fail
        line.jobs.send(job).ok()?;
        line.depth += 1;
        line.taken += 1;
        Some(ticket)
    }

    /// Makes `lease` (its session carrying `params`) a line, with `query` its first query.
    pub fn start(self: &Arc<Self>, lease: Lease, params: u64, query: &[u8]) -> Ticket {
        let id = NEXT_LINE.fetch_add(1, Relaxed);
        let (jobs, rx) = mpsc::unbounded_channel();
        let (job, ticket) = job(query);
        let _ = jobs.send(job);
        lock(&self.0).push(Entry {
            id,
            params,
            depth: 1,
            taken: 1,
            jobs,
        });
        tokio::spawn(run(lease, rx, self.clone(), id));
        ticket
    }

    /// Lines of this pool now, for status.
    pub fn len(&self) -> usize {
        lock(&self.0).len()
    }

    /// One query of line `id` answered.
    fn answered(&self, id: u64) {
        if let Some(line) = lock(&self.0).iter_mut().find(|l| l.id == id) {
            line.depth = line.depth.saturating_sub(1);
        }
    }

    /// Line `id` leaves the list if it owes nothing (nothing sent on it is on its way either):
    /// true when it did, and ends.
    fn retire(&self, id: u64) -> bool {
        let mut lines = lock(&self.0);
        match lines.iter().position(|l| l.id == id) {
            Some(i) if lines[i].depth == 0 => {
                lines.swap_remove(i);
                true
            }
            Some(_) => false,
            None => true,
        }
    }

    /// Line `id` takes no more queries.
    fn remove(&self, id: u64) {
        let mut lines = lock(&self.0);
        if let Some(i) = lines.iter().position(|l| l.id == id) {
            lines.swap_remove(i);
        }
    }
}

/// A query sent and not yet answered: whom to answer.
struct Owed {
    answer: Option<mpsc::Sender<Part>>,
    turn: Arc<Turn>,
}

/// One line's life: send the queries it is given, pass each answer to its client, and give
/// the connection back once nothing is owed (or close it: it broke, or a query left the
/// session other than it found it).
async fn run(mut lease: Lease, mut jobs: mpsc::UnboundedReceiver<Job>, lines: Arc<Lines>, id: u64) {
    let addr = lease.conn.addr;
    let backend = lease.conn.key;
    let mut owed: VecDeque<Owed> = VecDeque::new();
    let mut out = BytesMut::new();
    let mut answer = BytesMut::new();
    // a query ended outside an idle session: the connection is closed, not reused
    let mut spoilt = false;
    let take = |job: Job, out: &mut BytesMut, owed: &mut VecDeque<Owed>| {
        out.extend_from_slice(&job.query);
        if owed.is_empty() {
            job.turn.starts(addr, backend);
        }
        owed.push_back(Owed {
            answer: Some(job.answer),
            turn: job.turn,
        });
    };
    // the line left the list (it spoilt its session): nothing more comes
    let mut closed = false;
    let failed: Option<String> = loop {
        while let Ok(job) = jobs.try_recv() {
            take(job, &mut out, &mut owed);
        }
        if owed.is_empty() {
            if lines.retire(id) {
                break None;
            }
            // a query is on its way
            match jobs.recv().await {
                Some(job) => take(job, &mut out, &mut owed),
                None => break None,
            }
        }
        if !out.is_empty() {
            match lease.conn.stream.try_write(&out) {
                Ok(n) => out.advance(n),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => break Some(format!("write: {e}")),
            }
        }
        tokio::select! {
            job = jobs.recv(), if !closed => match job {
                Some(job) => take(job, &mut out, &mut owed),
                None => closed = true,
            },
            r = lease.conn.stream.writable(), if !out.is_empty() => {
                if let Err(e) = r {
                    break Some(format!("write: {e}"));
                }
            }
            r = lease.conn.stream.readable() => {
                if let Err(e) = r {
                    break Some(format!("read: {e}"));
                }
                match lease.conn.stream.try_read_buf(&mut lease.conn.buf) {
                    Ok(0) => break Some("the server closed the connection".into()),
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                    Err(e) => break Some(format!("read: {e}")),
                }
                if let Err(why) = hand_out(&mut lease, &mut owed, &mut answer, &mut spoilt, &lines, id).await {
                    break Some(why);
                }
            }
        }
    };
    lines.remove(id);
    if let Some(why) = failed {
        tracing::warn!(server = %addr, "a connection shared by queries that only read was lost: {why}");
        // what is owed, and what is on its way, is answered by the channels closing
        jobs.close();
        while jobs.try_recv().is_ok() {}
        for o in owed {
            o.turn.ends();
        }
        lease.close();
    } else if spoilt || !lease.conn.buf.is_empty() {
        lease.close();
    } else {
        lease.release();
    }
}

/// Passes the whole messages the server has sent to the clients they answer.
async fn hand_out(
    lease: &mut Lease,
    owed: &mut VecDeque<Owed>,
    answer: &mut BytesMut,
    spoilt: &mut bool,
    lines: &Lines,
    id: u64,
) -> Result<(), String> {
    let (addr, backend) = (lease.conn.addr, lease.conn.key);
    while let Some(total) = proto::message_len(&lease.conn.buf).map_err(|e| e.to_string())? {
        let Some(head) = owed.front_mut() else {
            return Err("the server sent what no query asked for".into());
        };
        let tag = lease.conn.buf[0];
        match tag {
            b'S' => {
                let mut body = BytesMut::from(&lease.conn.buf[5..total]);
                lease.conn.param(&mut body);
            }
            b'C' if crate::client::changes_session(&lease.conn.buf[5..total]) => {
                lease.conn.dirty = true;
            }
            _ => {}
        }
        answer.extend_from_slice(&lease.conn.buf[..total]);
        lease.conn.buf.advance(total);
        if tag == b'Z' {
            if answer.last() != Some(&b'I') {
                // not what a query that only reads does: no more queries go on this
                // connection, and it is closed once it owes nothing
                tracing::warn!(server = %addr, "a query that only reads left its session in a transaction: the connection will close");
                *spoilt = true;
                lines.remove(id);
            }
            let part = Part::Last(answer.split().freeze());
            if let Some(tx) = head.answer.take() {
                // a client that left is not waited for
                let _ = tx.send(part).await;
            }
            head.turn.ends();
            owed.pop_front();
            lines.answered(id);
            if let Some(next) = owed.front() {
                next.turn.starts(addr, backend);
            }
        } else if answer.len() >= PART {
            let part = Part::Some(answer.split().freeze());
            if let Some(tx) = &head.answer {
                if tx.send(part).await.is_err() {
                    head.answer = None;
                }
            }
        }
    }
    if owed.is_empty() && !answer.is_empty() {
        return Err("the server sent what no query asked for".into());
    }
    Ok(())
}
