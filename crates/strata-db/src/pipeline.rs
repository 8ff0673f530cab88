//! Queries that only read, from many clients, pipelined on one server connection.
//!
//! In transaction mode a client holds a server connection from its query to the query's
//! ReadyForQuery. When a pool is busy (`read_pipeline_from` of its connections in use: by
//! default all of them), or trials found more reads answered sharing ([`crate::trial`]), a
//! client whose query (a simple
//! query, or a whole extended-protocol batch of the unnamed statement or of statements it
//! prepared by name, which the connection prepares where it lacks them) runs outside a
//! transaction and only reads (as PostgreSQL's parser reads it: the classification that
//! sends reads to replicas) need not wait for one: its query goes out on a connection that
//! already runs such queries, behind them, up to `read_pipeline` queries on one connection.
//! PostgreSQL answers a connection's queries in order, each with its own ReadyForQuery, and a
//! query that only reads leaves nothing behind in the session, so each client gets exactly
//! its own answer. A busy server's backend then wakes once for several queries instead of
//! once for each, which for a short query is most of its cost.
//!
//! Such a connection (a line) is a task of its own, made from a connection of the pool when
//! the pool is busy and a client whose query could share one gets a connection; it gives the
//! connection back to the pool as soon as it owes nothing, and takes no more than [`TAKES`]
//! queries in all, so that clients that wait for a connection of their own (writes,
//! transactions) get one as surely as when reads don't share: every connection, shared or
//! not, comes back to the pool soon. Only clients whose sessions carry the same parameters
//! (`application_name`, `search_path`, `statement_timeout`, ...) share a line.
//!
//! A cancel request for a query waiting behind others is held until the query is the
//! connection's oldest ([`crate::cancel::Turn`]). One that comes for a query whose answer is
//! still being read may find the server on the next query already, and cancel that one; a
//! query cancelled without its client asking, before any of its answer went out, is sent again
//! (once, and only when a cancel request went to that server connection in the last second
//! and has not been seen to cancel another query: a statement timeout is not mistaken for
//! one). A slow query holds up the queries behind it: the price of sharing, paid only when
//! the pool is busy or sharing answered more reads. A slow client does not for long: its answer is
//! passed on in parts, a few at most in memory, and one it does not take within [`TAKE`] is
//! dropped and its session ended.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use bytes::{Buf, Bytes, BytesMut};
use strata_net::lock;
use tokio::sync::mpsc;

use crate::cancel::{Sent, Turn};
use crate::pool::Lease;
use crate::prepared::{ClientStatements, Held};
use crate::proto;

/// An answer is passed on in parts of about this size.
const PART: usize = 64 * 1024;

/// Parts of one answer in memory at most, before the line waits for its client.
const PARTS: usize = 4;

/// How long a line waits for a client to take a part of its answer.
pub const TAKE: std::time::Duration = std::time::Duration::from_secs(10);

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
    /// The Parse (body) of each client's named statement the query binds or describes.
    named: Vec<Vec<u8>>,
    answer: mpsc::Sender<Part>,
    turn: Arc<Turn>,
}

fn job(query: &[u8], named: &[Vec<u8>]) -> (Job, Ticket) {
    let (tx, rx) = mpsc::channel(PARTS);
    let turn = Arc::new(Turn::default());
    let job = Job {
        query: Bytes::copy_from_slice(query),
        named: named.to_vec(),
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
    /// Sends `query` (a whole Query message, or a batch up to its Sync whose named statements'
    /// Parses are `named`) on the line whose session carries `params` and that owes fewest
    /// answers, if it owes fewer than `max`.
    pub fn join(&self, params: u64, max: usize, query: &[u8], named: &[Vec<u8>]) -> Option<Ticket> {
        let mut lines = lock(&self.0);
        let line = lines
            .iter_mut()
            .filter(|l| l.params == params && l.depth < max && l.taken < TAKES)
            .min_by_key(|l| l.depth)?;
        let (job, ticket) = job(query, named);
        // a line's task leaves the list before it stops taking jobs, so this can't fail
        line.jobs.send(job).ok()?;
        line.depth += 1;
        line.taken += 1;
        Some(ticket)
    }

    /// Makes `lease` (its session carrying `params`) a line, with `query` its first query.
    pub fn start(
        self: &Arc<Self>,
        lease: Lease,
        params: u64,
        query: &[u8],
        named: &[Vec<u8>],
    ) -> Ticket {
        let id = NEXT_LINE.fetch_add(1, Relaxed);
        let (jobs, rx) = mpsc::unbounded_channel();
        let (job, ticket) = job(query, named);
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

/// A query sent and not yet answered: whom to answer, and the query (to send again if
/// another client's cancel request hit it).
struct Owed {
    query: Bytes,
    named: Vec<Vec<u8>>,
    /// For a batch of named statements: their names on the server, and its answers matched to
    /// its messages (a Parse added for a statement the connection lacked is not the client's).
    statements: Option<Box<ClientStatements>>,
    /// It was written out (see [`Conn::write_waiting`]).
    written: bool,
    answer: Option<mpsc::Sender<Part>>,
    turn: Arc<Turn>,
    /// Part of its answer went out already.
    begun: bool,
    /// It was sent again once.
    again: bool,
    /// It was cancelled without its client asking: its answer is dropped and it is sent again.
    hit: bool,
}

impl Owed {
    /// Writes the query to `out`: as it is, or, using named statements (`named`: their
    /// Parses), with their names on the server and a Parse first for each the connection
    /// (holding `held`) lacks; keeps what matches its answers.
    fn write(&mut self, held: &mut Held, out: &mut BytesMut) {
        self.written = true;
        if self.named.is_empty() {
            out.extend_from_slice(&self.query);
            return;
        }
        let mut statements = Box::<ClientStatements>::default();
        for parse in &self.named {
            statements.remember(parse);
        }
        let mut at = 0;
        while let Ok(Some(len)) = proto::message_len(&self.query[at..]) {
            statements.outgoing(self.query[at], &self.query[at + 5..at + len], held, out);
            at += len;
        }
        self.statements = Some(statements);
    }
}

/// A line's connection and what it owes.
struct Conn {
    lease: Lease,
    owed: VecDeque<Owed>,
    /// Queries not yet written.
    out: BytesMut,
    /// The oldest query's answer so far.
    answer: BytesMut,
    /// A query changed the session (or it could have): the connection is closed, not reused.
    spoilt: bool,
    /// Cancel requests sent to the connection's backend.
    sent: Sent,
    lines: Arc<Lines>,
    id: u64,
}

impl Conn {
    fn take(&mut self, job: Job) {
        let first = self.owed.is_empty();
        self.owed.push_back(Owed {
            statements: None,
            written: false,
            named: job.named,
            query: job.query,
            answer: Some(job.answer),
            turn: job.turn,
            begun: false,
            again: false,
            hit: false,
        });
        self.write_waiting();
        if first {
            self.starts();
        }
    }

    /// Writes the queries taken and not yet written, in order, up to one that uses named
    /// statements while a query before it, unanswered, prepares statements on the connection:
    /// that one waits for its answer. A Parse the server skips (an error earlier in its batch)
    /// leaves the connection without the statement, and a query written behind it that took
    /// the statement for held would fail for another client's error.
    fn write_waiting(&mut self) {
        let Conn {
            owed, lease, out, ..
        } = self;
        let mut preparing = false;
        for o in owed.iter_mut() {
            if !o.written {
                if preparing && !o.named.is_empty() {
                    return;
                }
                o.write(&mut lease.conn.statements, out);
            }
            preparing |= o.statements.as_ref().is_some_and(|s| s.prepares());
        }
    }

    /// The oldest query is the one the server runs now (or next).
    fn starts(&self) {
        if let Some(head) = self.owed.front() {
            head.turn.starts(self.lease.cancel_to(), &self.sent);
        }
    }

    /// Takes no more queries, and closes the connection once it owes nothing.
    fn spoil(&mut self, why: &str) {
        if !self.spoilt {
            tracing::warn!(server = %self.lease.conn.addr, "{why}: the shared connection will close");
            self.spoilt = true;
            self.lines.remove(self.id);
        }
    }

    /// Passes the whole messages the server has sent to the clients they answer.
    async fn hand_out(&mut self) -> Result<(), String> {
        while let Some(total) =
            proto::message_len(&self.lease.conn.buf).map_err(|e| e.to_string())?
        {
            if self.owed.is_empty() {
                return Err("the server sent what no query asked for".into());
            }
            let tag = self.lease.conn.buf[0];
            let body = &self.lease.conn.buf[5..total];
            // a parameter that changed (a server reload) or a notification (LISTEN, from a
            // function that only reads by its name) is not what a line's session keeps
            let changed =
                matches!(tag, b'S' | b'A') || (tag == b'C' && crate::client::changes_session(body));
            let cancelled = tag == b'E' && proto::error_code(body).as_deref() == Some("57014");
            if changed {
                self.spoil("a query that only reads changed its session");
            }
            if cancelled {
                self.cancelled();
            }
            let head = &mut self.owed[0];
            let message = &self.lease.conn.buf[..total];
            match &mut head.statements {
                // (answers to a query sent again are matched all the same, then dropped: the
                // connection's statements follow them)
                Some(st) if head.hit => st.incoming(
                    tag,
                    message,
                    &mut self.lease.conn.statements,
                    &mut BytesMut::new(),
                ),
                Some(st) => st.incoming(
                    tag,
                    message,
                    &mut self.lease.conn.statements,
                    &mut self.answer,
                ),
                None if head.hit => {}
                None => self.answer.extend_from_slice(message),
            }
            self.lease.conn.buf.advance(total);
            if tag == b'Z' {
                if self.answer.last() != Some(&b'I') && !self.owed[0].hit {
                    // not what a query that only reads does
                    self.spoil("a query that only reads left its session in a transaction");
                }
                self.answered().await;
            } else if self.answer.len() >= PART {
                let part = Part::Some(self.answer.split().freeze());
                self.owed[0].begun = true;
                self.pass(part).await;
            }
        }
        Ok(())
    }

    /// The oldest query was cancelled (57014): a cancel its client did not ask for, before any of its
    /// answer went out, and with a cancel request sent to this backend lately and not yet
    /// seen to cancel anything, was meant for another query; the query is sent again.
    fn cancelled(&mut self) {
        let head = &self.owed[0];
        if head.turn.asked() {
            self.sent.take();
            return;
        }
        if !head.begun && !head.again && self.sent.take() {
            self.owed[0].hit = true;
            self.answer.clear();
        }
    }

    /// The oldest query's ReadyForQuery came: its answer goes to its client (or it is sent
    /// again, behind the others), and the next query is the oldest.
    async fn answered(&mut self) {
        if self.owed[0].hit {
            let Some(mut head) = self.owed.pop_front() else {
                return;
            };
            head.hit = false;
            head.again = true;
            head.turn.waits();
            head.statements = None;
            head.written = false;
            self.owed.push_back(head);
            self.write_waiting();
            self.starts();
            return;
        }
        self.lease.pool().trial.answered();
        let part = Part::Last(self.answer.split().freeze());
        self.pass(part).await;
        if let Some(head) = self.owed.pop_front() {
            head.turn.ends();
        }
        self.lines.answered(self.id);
        self.write_waiting();
        self.starts();
    }

    /// Passes a part of the oldest query's answer to its client, waiting up to [`TAKE`] for it
    /// to take it; a client that left is not waited for, and one that does not take it in time
    /// gets no more of it.
    async fn pass(&mut self, part: Part) {
        let head = &mut self.owed[0];
        let Some(tx) = &head.answer else {
            return;
        };
        match tokio::time::timeout(TAKE, tx.send(part)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => head.answer = None,
            Err(_) => {
                tracing::warn!(server = %self.lease.conn.addr, "a client did not take its answer on a shared connection for {TAKE:?}: dropped, and its session ends");
                head.turn.drop_answer();
                head.answer = None;
            }
        }
    }
}

/// One line's life: send the queries it is given, pass each answer to its client, and give
/// the connection back once nothing is owed (or close it: it broke, or a query left the
/// session other than it found it).
async fn run(lease: Lease, mut jobs: mpsc::UnboundedReceiver<Job>, lines: Arc<Lines>, id: u64) {
    let mut c = Conn {
        lease,
        owed: VecDeque::new(),
        out: BytesMut::new(),
        answer: BytesMut::new(),
        spoilt: false,
        sent: Sent::default(),
        lines,
        id,
    };
    // the line left the list (it spoilt its session): nothing more comes
    let mut closed = false;
    let failed: Option<String> = loop {
        while let Ok(job) = jobs.try_recv() {
            c.take(job);
        }
        if c.owed.is_empty() {
            if c.lines.retire(id) {
                break None;
            }
            // a query is on its way
            match jobs.recv().await {
                Some(job) => c.take(job),
                None => break None,
            }
        }
        if !c.out.is_empty() {
            match c.lease.conn.stream.try_write(&c.out) {
                Ok(n) => c.out.advance(n),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => break Some(format!("write: {e}")),
            }
        }
        tokio::select! {
            job = jobs.recv(), if !closed => match job {
                Some(job) => c.take(job),
                None => closed = true,
            },
            r = c.lease.conn.stream.writable(), if !c.out.is_empty() => {
                if let Err(e) = r {
                    break Some(format!("write: {e}"));
                }
            }
            r = c.lease.conn.stream.readable() => {
                if let Err(e) = r {
                    break Some(format!("read: {e}"));
                }
                match c.lease.conn.stream.try_recv_buf(&mut c.lease.conn.buf) {
                    Ok(0) => break Some("the server closed the connection".into()),
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                    Err(e) => break Some(format!("read: {e}")),
                }
                if let Err(why) = c.hand_out().await {
                    break Some(why);
                }
            }
        }
    };
    c.lines.remove(id);
    if let Some(why) = failed {
        tracing::warn!(server = %c.lease.conn.addr, "a connection shared by queries that only read was lost: {why}");
        // what is owed, and what is on its way, is answered by the channels closing
        jobs.close();
        while jobs.try_recv().is_ok() {}
        for o in c.owed {
            o.turn.ends();
        }
        c.lease.close();
    } else if c.spoilt || !c.lease.conn.buf.is_empty() {
        c.lease.close();
    } else {
        c.lease.release();
    }
}
