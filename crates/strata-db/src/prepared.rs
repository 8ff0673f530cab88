//! Named prepared statements in transaction mode, as PgBouncer 1.21+ does them: a client's
//! statement names are its own, and each server connection holds statements under names made
//! from their text (`strata_` and a hash), so a client's `Parse` works on whichever connection
//! it gets next.
//!
//! Going out, a client's Parse of a statement the connection already holds is answered here
//! (ParseComplete) instead of being sent; a Bind or Describe of a statement the connection
//! lacks is preceded by a Parse whose answer is not passed on; a Close of a statement is
//! answered here (the connection keeps it for the next client). Coming back, every answer is
//! matched to the message it answers, in order, so the answers made here go to the client in
//! the places the server's own would have had. An error ends a batch: the messages after it up
//! to the Sync get no answers, and statements whose Parse did not run are forgotten.

use std::collections::{HashMap, HashSet, VecDeque};

use bytes::{BufMut, BytesMut};

use crate::proto;

/// What a message sent (or answered here) is owed in answers.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Owed {
    /// A Parse sent on: ParseComplete. `hidden` when the pooler added it (its answer is not
    /// the client's); `name` is the server-side name it creates.
    Parse { hidden: bool, name: Option<String> },
    /// Bind: BindComplete.
    Bind,
    /// Describe: ParameterDescription (statements) then RowDescription or NoData.
    Describe,
    /// Execute: rows, then CommandComplete, EmptyQueryResponse or PortalSuspended.
    Execute,
    /// Close sent on: CloseComplete; `evicted` names the statement when the pooler added it
    /// (evicting the one the connection held longest unused), so its answer is not the
    /// client's, and a Close the server skips leaves the statement held.
    Close { evicted: Option<String> },
    /// Sync, a simple Query or a FunctionCall: everything up to ReadyForQuery.
    Sync,
    /// An answer made here, given to the client in its turn.
    Made(u8),
    /// Whole messages made here (a simple query's answer), given to the client in their turn.
    Whole(Vec<u8>),
    /// A BEGIN the pooler sent for the client (one it answered itself) as Parse, Bind and
    /// Execute with no Sync: this many of its answers (ParseComplete, BindComplete,
    /// CommandComplete) are still to be dropped.
    Hidden(u8),
    /// A simple query the pooler sent to fail the client's transaction on the server: its
    /// error is replaced by this one (the pooler's own words), its ReadyForQuery passed on.
    Replaced(Vec<u8>),
}

/// The most prepared statements one server connection holds (PgBouncer's
/// `max_prepared_statements` default): past it, the one unused longest is closed.
pub const MAX_HELD: usize = 200;

/// The prepared statements a server connection holds, by server-side name, least recently
/// used first.
#[derive(Debug, Default)]
pub struct Held {
    names: HashSet<String>,
    order: VecDeque<String>,
}

impl Held {
    /// Whether it holds `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.names.contains(name)
    }

    /// How many it holds.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Records `name` as held and just used.
    pub fn insert(&mut self, name: String) {
        if self.names.insert(name.clone()) {
            self.order.push_back(name);
        } else {
            self.touch(&name);
        }
    }

    /// Records `name` as just used.
    fn touch(&mut self, name: &str) {
        if let Some(at) = self.order.iter().position(|n| n == name) {
            if let Some(n) = self.order.remove(at) {
                self.order.push_back(n);
            }
        }
    }

    /// Forgets `name`.
    pub fn remove(&mut self, name: &str) {
        if self.names.remove(name) {
            self.order.retain(|n| n != name);
        }
    }

    /// Forgets them all (the server dropped them).
    pub fn clear(&mut self) {
        self.names.clear();
        self.order.clear();
    }

    /// When full, the name to close before another is prepared: the one unused longest.
    fn victim(&mut self) -> Option<String> {
        if self.names.len() < MAX_HELD {
            return None;
        }
        let old = self.order.pop_front()?;
        self.names.remove(&old);
        Some(old)
    }
}

/// Named statements one client keeps at most: each costs Strata its text, so a client that
/// prepares ever new names without closing them is ended past this, with 54000 (PostgreSQL
/// itself has no bound; ORMs keep a few hundred to a thousand).
pub const MAX_CLIENT_STATEMENTS: usize = 10_000;

/// The statements of one client.
#[derive(Debug, Default)]
pub struct ClientStatements {
    /// The client's name to (server name, the Parse body after the name); allocated with the
    /// first (most clients of a pooler never name one, and an idle one holds a pointer).
    #[allow(clippy::box_collection)] // a pointer, where a map is 48 bytes in every session
    named: Option<Box<HashMap<String, (String, BytesMut)>>>,
    /// What the messages sent in order are owed.
    owed: VecDeque<Owed>,
    /// After an error, answers stop until the Sync.
    failed: bool,
}

/// The server-side name of a statement: `strata_` and 128 bits of SHA-256 of its text and
/// parameter types.
fn server_name(body: &[u8]) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, body);
    let hex: String = d.as_ref()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("strata_{hex}")
}

/// The Parse body after its statement name: text, parameter count and types.
fn split_name(body: &[u8]) -> Option<(&str, &[u8])> {
    let end = body.iter().position(|b| *b == 0)?;
    let name = std::str::from_utf8(&body[..end]).ok()?;
    Some((name, &body[end + 1..]))
}

fn message(out: &mut BytesMut, tag: u8, parts: &[&[u8]]) {
    proto::put(out, tag, |b| {
        for p in parts {
            b.put_slice(p);
        }
    });
}

impl ClientStatements {
    /// Whether a Parse it added (for a statement the connection lacked) is still owed its
    /// answer.
    pub fn prepares(&self) -> bool {
        self.owed
            .iter()
            .any(|o| matches!(o, Owed::Parse { hidden: true, .. }))
    }

    /// Whether nothing sent is still owed an answer.
    pub fn settled(&self) -> bool {
        self.owed.is_empty()
    }

    /// The Parse of the client's named statement `name` after its name (the SQL text, its
    /// NUL, the declared parameter types), if it prepared one.
    pub fn parsed(&self, name: &str) -> Option<&[u8]> {
        self.named.as_ref()?.get(name).map(|(_, rest)| &rest[..])
    }

    /// Records a Parse (`body`) answered without a server: a named statement is prepared on
    /// the connection that first binds or describes it.
    pub fn remember(&mut self, body: &[u8]) {
        if let Some((name, rest)) = split_name(body) {
            if !name.is_empty() {
                self.named_mut()
                    .insert(name.to_string(), (server_name(rest), BytesMut::from(rest)));
            }
        }
    }

    /// Forgets the client's named statement `name` (SQL-level `DEALLOCATE name`); its server
    /// name when the client had prepared it.
    pub fn forget(&mut self, name: &str) -> Option<String> {
        self.named.as_mut()?.remove(name).map(|(server, _)| server)
    }

    /// Forgets every statement (DISCARD ALL, DEALLOCATE ALL).
    pub fn clear(&mut self) {
        self.named = None;
    }

    fn named_mut(&mut self) -> &mut HashMap<String, (String, BytesMut)> {
        self.named.get_or_insert_with(Default::default)
    }

    /// The client is idle (nothing owed): what it held for its messages in flight goes back
    /// to the allocator, so that an idle client holds only its named statements.
    pub fn free_owed(&mut self) {
        if self.owed.is_empty() && self.owed.capacity() > 0 {
            self.owed = VecDeque::new();
        }
    }

    /// Writes to `out` what goes to the server for the client's message `tag` with `body`,
    /// given the statements the connection holds (`held`, updated as Parses go out).
    pub fn outgoing(&mut self, tag: u8, body: &[u8], held: &mut Held, out: &mut BytesMut) {
        match tag {
            b'P' => {
                let Some((name, rest)) = split_name(body) else {
                    return self.pass(
                        tag,
                        body,
                        Owed::Parse {
                            hidden: false,
                            name: None,
                        },
                        out,
                    );
                };
                if name.is_empty() {
                    return self.pass(
                        tag,
                        body,
                        Owed::Parse {
                            hidden: false,
                            name: None,
                        },
                        out,
                    );
                }
                let server = server_name(rest);
                self.named_mut()
                    .insert(name.to_string(), (server.clone(), BytesMut::from(rest)));
                if held.contains(&server) {
                    held.touch(&server);
                    self.owed.push_back(Owed::Made(b'1'));
                } else {
                    self.evict(held, out);
                    held.insert(server.clone());
                    message(out, b'P', &[server.as_bytes(), &[0], rest]);
                    self.owed.push_back(Owed::Parse {
                        hidden: false,
                        name: Some(server),
                    });
                }
            }
            b'B' => {
                let Some((portal, after)) = split_name(body) else {
                    return self.pass(tag, body, Owed::Bind, out);
                };
                let Some((statement, rest)) = split_name(after) else {
                    return self.pass(tag, body, Owed::Bind, out);
                };
                match self.ensure(statement, held, out) {
                    Some(server) => {
                        message(
                            out,
                            b'B',
                            &[portal.as_bytes(), &[0], server.as_bytes(), &[0], rest],
                        );
                        self.owed.push_back(Owed::Bind);
                    }
                    None => self.pass(tag, body, Owed::Bind, out),
                }
            }
            b'D' | b'C' if body.first() == Some(&b'S') => {
                let Some((statement, _)) = split_name(&body[1..]) else {
                    let owed = if tag == b'D' {
                        Owed::Describe
                    } else {
                        Owed::Close { evicted: None }
                    };
                    return self.pass(tag, body, owed, out);
                };
                if tag == b'C' && self.forget(statement).is_some() {
                    // the connection keeps it for the next client that prepares it
                    self.owed.push_back(Owed::Made(b'3'));
                    return;
                }
                if tag == b'D' {
                    if let Some(server) = self.ensure(statement, held, out) {
                        message(out, b'D', &[b"S", server.as_bytes(), &[0]]);
                        self.owed.push_back(Owed::Describe);
                        return;
                    }
                }
                let owed = if tag == b'D' {
                    Owed::Describe
                } else {
                    Owed::Close { evicted: None }
                };
                self.pass(tag, body, owed, out);
            }
            b'D' => self.pass(tag, body, Owed::Describe, out),
            b'C' => self.pass(tag, body, Owed::Close { evicted: None }, out),
            b'E' => self.pass(tag, body, Owed::Execute, out),
            b'S' | b'Q' | b'F' => self.pass(tag, body, Owed::Sync, out),
            _ => message(out, tag, &[body]),
        }
    }

    /// Writes to `out` a BEGIN (`body`: its text and NUL) the pooler sends for the client, one
    /// it answered itself, ahead of the transaction's first statement: Parse, Bind and Execute
    /// of the unnamed statement, with no Sync. PostgreSQL sends their answers with that
    /// statement's, in one write (a simple query would be answered, and wake the pooler, on
    /// its own); and should the BEGIN fail, it skips everything up to the next Sync, so
    /// nothing sent behind it runs outside the transaction. Its answers are dropped.
    pub fn hidden_begin(&mut self, body: &[u8], out: &mut BytesMut) {
        let text = body.strip_suffix(&[0]).unwrap_or(body);
        // the unnamed statement, no parameter types
        message(out, b'P', &[&[0], text, &[0, 0, 0]]);
        // the unnamed portal of it: no parameter formats, parameters or result formats
        message(out, b'B', &[&[0, 0, 0, 0, 0, 0, 0, 0]]);
        // all its rows (none)
        message(out, b'E', &[&[0, 0, 0, 0, 0]]);
        self.owed.push_back(Owed::Hidden(3));
    }

    /// Writes to `out` a simple query (`body`) sent only to fail the transaction on the
    /// server; the client gets `error` (a whole ErrorResponse) in place of the server's.
    pub fn replaced_query(&mut self, body: &[u8], error: Vec<u8>, out: &mut BytesMut) {
        message(out, b'Q', &[body]);
        self.owed.push_back(Owed::Replaced(error));
    }

    /// Closes the statement the connection has held unused longest, when it holds
    /// [`MAX_HELD`]: on the server too, so a client that prepares ever new text does not grow
    /// the server's memory without bound.
    fn evict(&mut self, held: &mut Held, out: &mut BytesMut) {
        if let Some(old) = held.victim() {
            message(out, b'C', &[b"S", old.as_bytes(), &[0]]);
            self.owed.push_back(Owed::Close { evicted: Some(old) });
        }
    }

    fn pass(&mut self, tag: u8, body: &[u8], owed: Owed, out: &mut BytesMut) {
        message(out, tag, &[body]);
        self.owed.push_back(owed);
    }

    /// The server name of the client's statement `name`, parsed on the connection first if
    /// it lacks it; None for the unnamed statement or one the client never prepared (the
    /// message goes as it is, and the server says what is wrong).
    fn ensure(&mut self, name: &str, held: &mut Held, out: &mut BytesMut) -> Option<String> {
        if name.is_empty() {
            return None;
        }
        let (server, rest) = self.named.as_ref()?.get(name)?.clone();
        if held.contains(&server) {
            held.touch(&server);
        } else {
            self.evict(held, out);
            held.insert(server.clone());
            message(out, b'P', &[server.as_bytes(), &[0], &rest]);
            self.owed.push_back(Owed::Parse {
                hidden: true,
                name: Some(server.clone()),
            });
        }
        Some(server.clone())
    }

    /// Handles one message from the server (`tag`, whole `bytes` with header): appends what
    /// the client gets to `to_client`, answers made here included, in order.
    pub fn incoming(&mut self, tag: u8, bytes: &[u8], held: &mut Held, to_client: &mut BytesMut) {
        self.made(to_client);
        // messages that answer nothing in particular
        if matches!(tag, b'N' | b'S' | b'A') {
            to_client.extend_from_slice(bytes);
            return;
        }
        let front = self.owed.front().cloned();
        match &front {
            Some(Owed::Hidden(left)) => {
                if matches!(tag, b'1' | b'2' | b'C') {
                    if *left > 1 {
                        if let Some(Owed::Hidden(n)) = self.owed.front_mut() {
                            *n -= 1;
                        }
                    } else {
                        self.owed.pop_front();
                        self.made(to_client);
                    }
                }
                return;
            }
            Some(Owed::Replaced(error)) => {
                match tag {
                    b'E' => to_client.extend_from_slice(error),
                    b'Z' => {
                        self.owed.pop_front();
                        to_client.extend_from_slice(bytes);
                        self.made(to_client);
                    }
                    _ => {}
                }
                return;
            }
            _ => {}
        }
        let done = match (&front, tag) {
            (_, b'E') => {
                self.failed = true;
                // what the error answers did not happen; a Parse that failed made nothing
                if let Some(Owed::Parse { name: Some(n), .. }) = &front {
                    held.remove(n);
                }
                true
            }
            (Some(Owed::Parse { .. }), b'1')
            | (Some(Owed::Bind), b'2')
            | (Some(Owed::Close { .. }), b'3')
            | (Some(Owed::Describe), b'T' | b'n')
            | (Some(Owed::Execute), b'C' | b'I' | b's') => true,
            (_, b'Z') => {
                // a ReadyForQuery ends everything up to the Sync (or the Query) it answers
                while let Some(o) = self.owed.pop_front() {
                    if let Owed::Parse { name: Some(n), .. } = &o {
                        if self.failed {
                            held.remove(n);
                        }
                    }
                    if o == Owed::Sync {
                        break;
                    }
                }
                self.failed = false;
                to_client.extend_from_slice(bytes);
                self.made(to_client);
                return;
            }
            _ => false,
        };
        let hidden = (matches!(front, Some(Owed::Parse { hidden: true, .. })) && tag == b'1')
            || (matches!(front, Some(Owed::Close { evicted: Some(_) })) && tag == b'3');
        if !hidden {
            to_client.extend_from_slice(bytes);
        }
        if done && front.is_some() && tag != b'E' {
            self.owed.pop_front();
        }
        if tag == b'E' {
            // the failed message, and everything after it up to the Sync, get no answers:
            // nothing made here is sent for them, their Parses made nothing, and the
            // statements their Closes were to evict are still on the server
            while let Some(o) = self.owed.front() {
                if *o == Owed::Sync {
                    break;
                }
                match self.owed.pop_front() {
                    Some(Owed::Parse { name: Some(n), .. }) => held.remove(&n),
                    Some(Owed::Close { evicted: Some(n) }) => held.insert(n),
                    _ => {}
                }
            }
        }
        self.made(to_client);
    }

    /// A COPY FROM STDIN started: the last `ignored` Syncs sent will get no answers (the
    /// server ignores Sync in copy mode).
    pub fn copy_started(&mut self, ignored: u32) {
        for _ in 0..ignored {
            match self.owed.iter().rposition(|o| *o == Owed::Sync) {
                Some(at) => {
                    self.owed.remove(at);
                }
                None => break,
            }
        }
    }

    /// Sends the answers made here that are next in line.
    pub fn made(&mut self, to_client: &mut BytesMut) {
        loop {
            match self.owed.front() {
                Some(Owed::Made(tag)) => {
                    if !self.failed {
                        proto::put(to_client, *tag, |_| {});
                    }
                }
                Some(Owed::Whole(bytes)) => to_client.extend_from_slice(bytes),
                _ => return,
            }
            self.owed.pop_front();
        }
    }

    /// Queues `bytes` (whole messages made here) for the client, after the answers owed now.
    pub fn answer(&mut self, bytes: Vec<u8>) {
        self.owed.push_back(Owed::Whole(bytes));
    }

    /// Whether the Parse `body` names a statement the client does not have yet, while it has
    /// as many as [`MAX_CLIENT_STATEMENTS`].
    pub fn too_many(&self, body: &[u8]) -> bool {
        self.named.as_ref().map_or(0, |n| n.len()) >= MAX_CLIENT_STATEMENTS
            && split_name(body).is_some_and(|(name, _)| !name.is_empty() && !self.knows(name))
    }

    /// Whether the client has a named statement `name`.
    pub fn knows(&self, name: &str) -> bool {
        self.named.as_ref().is_some_and(|n| n.contains_key(name))
    }

    /// Whether the next answer owed is the pooler's own hidden query's.
    pub fn hidden_next(&self) -> bool {
        matches!(self.owed.front(), Some(Owed::Hidden(_)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(name: &str, sql: &str) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(name.as_bytes());
        b.push(0);
        b.extend_from_slice(sql.as_bytes());
        b.extend_from_slice(&[0, 0, 0]);
        b
    }

    fn bind(statement: &str) -> Vec<u8> {
        let mut b = vec![0];
        b.extend_from_slice(statement.as_bytes());
        b.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0]);
        b
    }

    fn frames(mut b: BytesMut) -> Vec<u8> {
        let mut tags = Vec::new();
        while let Some((t, _)) = proto::message(&mut b).unwrap() {
            tags.push(t);
        }
        tags
    }

    fn reply(s: &mut ClientStatements, held: &mut Held, tags: &[u8]) -> Vec<u8> {
        let mut out = BytesMut::new();
        for t in tags {
            let mut m = BytesMut::new();
            proto::put(&mut m, *t, |b| {
                if *t == b'Z' {
                    b.put_u8(b'I')
                }
            });
            s.incoming(*t, &m, held, &mut out);
        }
        frames(out)
    }

    #[test]
    fn a_statement_prepared_once_runs_on_a_connection_that_already_holds_it() {
        let mut held = Held::default();
        let mut a = ClientStatements::default();
        let mut out = BytesMut::new();
        for (t, b) in [
            (b'P', parse("s1", "select 1")),
            (b'B', bind("s1")),
            (b'E', vec![0, 0, 0, 0, 0]),
            (b'S', vec![]),
        ] {
            a.outgoing(t, &b, &mut held, &mut out);
        }
        assert_eq!(frames(out), b"PBES");
        assert_eq!(reply(&mut a, &mut held, b"12DCZ"), b"12DCZ");
        // a second client prepares the same text under its own name: nothing is sent for its
        // Parse, and it still gets its ParseComplete first
        let mut b2 = ClientStatements::default();
        let mut out = BytesMut::new();
        for (t, b) in [
            (b'P', parse("mine", "select 1")),
            (b'B', bind("mine")),
            (b'E', vec![0, 0, 0, 0, 0]),
            (b'S', vec![]),
        ] {
            b2.outgoing(t, &b, &mut held, &mut out);
        }
        assert_eq!(frames(out), b"BES");
        assert_eq!(reply(&mut b2, &mut held, b"2DCZ"), b"12DCZ");
        assert!(b2.settled());
    }

    #[test]
    fn a_bind_on_a_connection_without_the_statement_prepares_it_silently() {
        let mut a = ClientStatements::default();
        let mut first = Held::default();
        let mut out = BytesMut::new();
        a.outgoing(b'P', &parse("s", "select 2"), &mut first, &mut out);
        a.outgoing(b'S', &[], &mut first, &mut out);
        reply(&mut a, &mut first, b"1Z");
        // the next transaction lands on a connection that never saw it
        let mut other = Held::default();
        let mut out = BytesMut::new();
        a.outgoing(b'B', &bind("s"), &mut other, &mut out);
        a.outgoing(b'E', &[0, 0, 0, 0, 0], &mut other, &mut out);
        a.outgoing(b'S', &[], &mut other, &mut out);
        assert_eq!(frames(out), b"PBES");
        assert_eq!(reply(&mut a, &mut other, b"12CZ"), b"2CZ");
    }

    #[test]
    fn an_error_ends_the_batch_and_forgets_what_did_not_run() {
        let mut a = ClientStatements::default();
        let mut held = Held::default();
        let mut out = BytesMut::new();
        a.outgoing(b'P', &parse("bad", "selec 1"), &mut held, &mut out);
        a.outgoing(b'B', &bind("bad"), &mut held, &mut out);
        a.outgoing(b'S', &[], &mut held, &mut out);
        assert_eq!(reply(&mut a, &mut held, b"EZ"), b"EZ");
        assert!(held.is_empty(), "the failed Parse made nothing");
        assert!(a.settled());
        // a Close of a named statement is answered here, in its turn
        let mut out = BytesMut::new();
        a.outgoing(b'P', &parse("ok", "select 3"), &mut held, &mut out);
        a.outgoing(b'C', b"Sok\0", &mut held, &mut out);
        a.outgoing(b'S', &[], &mut held, &mut out);
        assert_eq!(frames(out), b"PS");
        assert_eq!(reply(&mut a, &mut held, b"1Z"), b"13Z");
    }

    #[test]
    fn a_full_connection_closes_the_statement_unused_longest() {
        let mut a = ClientStatements::default();
        let mut held = Held::default();
        for i in 0..MAX_HELD {
            let mut out = BytesMut::new();
            a.outgoing(
                b'P',
                &parse(&format!("s{i}"), &format!("select {i}")),
                &mut held,
                &mut out,
            );
            a.outgoing(b'S', &[], &mut held, &mut out);
            reply(&mut a, &mut held, b"1Z");
        }
        assert_eq!(held.len(), MAX_HELD);
        // s0 used again: s1 is now the one unused longest
        let mut out = BytesMut::new();
        a.outgoing(b'B', &bind("s0"), &mut held, &mut out);
        a.outgoing(b'S', &[], &mut held, &mut out);
        reply(&mut a, &mut held, b"2Z");
        let mut out = BytesMut::new();
        a.outgoing(b'P', &parse("new", "select 'new'"), &mut held, &mut out);
        a.outgoing(b'S', &[], &mut held, &mut out);
        assert_eq!(frames(out), b"CPS", "a Close of s1 goes first");
        // its CloseComplete is the pooler's, not the client's
        assert_eq!(reply(&mut a, &mut held, b"31Z"), b"1Z");
        assert_eq!(held.len(), MAX_HELD);
        assert!(!held.contains(&server_name(&parse("", "select 1")[1..])));
        // an eviction the server skips (an error before it in the batch) leaves the
        // statement held, as it is on the server
        let victim = held.order.front().cloned().unwrap();
        let mut out = BytesMut::new();
        a.outgoing(b'E', b"\0\0\0\0\0", &mut held, &mut out);
        a.outgoing(b'P', &parse("newer", "select 'newer'"), &mut held, &mut out);
        a.outgoing(b'S', &[], &mut held, &mut out);
        assert_eq!(frames(out), b"ECPS");
        assert!(!held.contains(&victim));
        assert_eq!(reply(&mut a, &mut held, b"EZ"), b"EZ");
        assert!(
            held.contains(&victim),
            "the skipped Close left it on the server"
        );
        assert!(!held.contains(&server_name(b"select 'newer'\0\0\0")));
    }
}
