//! One client connection: read what the client sent, route each command, and answer in the
//! order the commands came, whichever servers answer first. A malformed command gets Redis's
//! protocol error and closes this client only.
//!
//! Cache clients sit idle far more than they talk, so a connection between commands is a
//! small state machine holding only [`Kept`]; what a batch of commands needs (the read buffer,
//! the answers owed, the config generation) lives in a box made when bytes arrive.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use strata_metrics::Open;
use strata_net::{buffers, Admitted, Deadline, UpstreamIo};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::command::{self, FanOut, Local, Route, Split};
use crate::pool::Pool;
use crate::resp::{self, Command, Value};
use crate::server::Reply;
use crate::CacheService;

/// What the proxy says in HELLO and INFO: the Redis version whose commands it routes.
const REDIS_VERSION: &str = "7.0.0";

/// How long a client may stay idle when the pool sets no `idle_timeout`: in effect never, but a
/// deadline all the same, so that a drain can wake the connection through its timers.
const FOREVER: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// A client's state between commands.
struct Session {
    authenticated: bool,
    name: Option<Box<[u8]>>,
    id: u64,
}

/// What a client connection keeps between commands, and nothing more.
pub(crate) struct Kept {
    open: Open<CacheService>,
    io: UpstreamIo,
    session: Session,
    deadline: Deadline,
    drain: CancellationToken,
    _admitted: Admitted,
}

/// Whether the connection carries on after a batch of commands.
pub(crate) enum Next {
    KeepAlive,
    /// Close once the answers are out (QUIT, a protocol error).
    Close,
    /// The client left, or its socket failed: nothing more to send.
    Gone,
}

/// One client connection, the whole of its task.
pub(crate) enum Client {
    /// Waiting for the next command's first bytes.
    Idle {
        kept: Kept,
        checked: bool,
    },
    /// Reading, routing and answering what arrived.
    Busy(Batch),
    Closing(Pin<Box<dyn Future<Output = ()> + Send>>),
    Done,
}

/// The commands in progress: they hand back the connection and what next.
type Batch = Pin<Box<dyn Future<Output = (Kept, Next)> + Send>>;

static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

impl Client {
    /// A new client connection of `open`'s pool, waiting for its first command.
    pub(crate) fn new(
        open: Open<CacheService>,
        stream: TcpStream,
        admitted: Admitted,
        drain: CancellationToken,
    ) -> Client {
        let _ = stream.set_nodelay(true);
        let (authenticated, deadline) = {
            let pool = open.service().pool.load();
            let at = Instant::now() + pool.config.idle_timeout.unwrap_or(FOREVER);
            (
                pool.config.password.is_none(),
                Deadline::new(&pool.timers, at),
            )
        };
        Client::Idle {
            kept: Kept {
                open,
                io: UpstreamIo(stream),
                session: Session {
                    authenticated,
                    name: None,
                    id: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
                },
                deadline,
                drain,
                _admitted: admitted,
            },
            checked: false,
        }
    }
}

impl Future for Client {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        loop {
            match this {
                Client::Idle { kept, checked } => {
                    let arrived = ready!(strata_net::poll_idle(
                        &kept.io,
                        checked,
                        &mut kept.deadline,
                        &kept.drain,
                        cx
                    ));
                    let Client::Idle { kept, .. } = std::mem::replace(this, Client::Done) else {
                        unreachable!()
                    };
                    *this = if arrived {
                        Client::Busy(Box::pin(batch(kept)))
                    } else {
                        Client::Closing(Box::pin(close(kept)))
                    };
                }
                Client::Busy(batch) => {
                    let (mut kept, next) = ready!(batch.as_mut().poll(cx));
                    *this = match next {
                        Next::KeepAlive if !kept.drain.is_cancelled() => {
                            let idle = kept.open.service().pool.load().config.idle_timeout;
                            kept.deadline.set(Instant::now() + idle.unwrap_or(FOREVER));
                            Client::Idle {
                                kept,
                                checked: false,
                            }
                        }
                        Next::KeepAlive | Next::Close => Client::Closing(Box::pin(close(kept))),
                        Next::Gone => Client::Done,
                    };
                }
                Client::Closing(closing) => {
                    ready!(closing.as_mut().poll(cx));
                    *this = Client::Done;
                }
                Client::Done => return Poll::Ready(()),
            }
        }
    }
}

async fn close(mut kept: Kept) {
    strata_net::close_lingering(&mut kept.io).await;
}

/// Reads what arrived, routes each whole command and writes the answers in order; goes on
/// reading while a command is only partly there. The connection holds the read buffer only
/// for this long.
async fn batch(mut kept: Kept) -> (Kept, Next) {
    let next = serve_batch(&mut kept).await;
    (kept, next)
}

async fn serve_batch(kept: &mut Kept) -> Next {
    let svc = kept.open.service().clone();
    let mut buf = buffers::take();
    let mut answers: VecDeque<Answer> = VecDeque::new();
    let next = loop {
        match buffers::fill(&mut kept.io, &mut buf).await {
            Ok(0) | Err(_) => break Next::Gone,
            Ok(_) => {}
        }
        let pool = svc.pool.load_full();
        let mut close = false;
        loop {
            match resp::take_command(&mut buf, pool.config.max_bulk_size) {
                Ok(Some(cmd)) => {
                    svc.stats.commands.inc();
                    let (answer, quit) = dispatch(&svc, &pool, &mut kept.session, cmd);
                    answers.push_back(answer);
                    if quit {
                        close = true;
                        break;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    svc.stats.protocol_errors.inc();
                    tracing::debug!(pool = %svc.name, error = %e, "protocol error; closing the client");
                    answers.push_back(Answer::Ready(resp::error_frame(&format!(
                        "ERR Protocol error: {e}"
                    ))));
                    close = true;
                    break;
                }
            }
        }
        drop(pool);
        if !answers.is_empty() {
            let mut out = BytesMut::new();
            for answer in answers.drain(..) {
                if write_answer(answer, &mut out).await {
                    svc.stats.errors.inc();
                }
            }
            if kept.io.0.write_all(&out).await.is_err() {
                break Next::Gone;
            }
        }
        if close {
            break Next::Close;
        }
        if buf.is_empty() {
            break Next::KeepAlive;
        }
    };
    buffers::give(buf);
    next
}

/// A command's answer, as it will be written: ready now, or owed by servers.
enum Answer {
    Ready(Bytes),
    One(oneshot::Receiver<Reply>),
    Merge(Box<Merge>),
}

/// A command split over several servers: each part's reply, and how they combine.
struct Merge {
    how: Combine,
    /// Each part and, for MGET, the positions of its keys in the client's command.
    parts: Vec<(oneshot::Receiver<Reply>, Vec<usize>)>,
    keys: usize,
}

#[derive(Clone, Copy)]
enum Combine {
    /// Values placed back in the order of the keys (MGET).
    Values,
    /// `+OK` when every part says so (MSET).
    Ok,
    /// The sum of the parts' integers (DEL, EXISTS, DBSIZE, ...).
    Sum,
    /// The parts' arrays, one after the other (KEYS).
    Concat,
}

/// Routes one command; the flag says the connection closes after its answer (QUIT).
fn dispatch(
    svc: &CacheService,
    pool: &Pool,
    session: &mut Session,
    cmd: Command,
) -> (Answer, bool) {
    let mut upper = [0u8; 24];
    let name = cmd.name(&mut upper);
    let Some(spec) = command::lookup(name) else {
        return (unknown_command(&cmd), false);
    };
    if !spec.arity_ok(cmd.len()) {
        let text = format!("ERR wrong number of arguments for '{}' command", spec.name);
        return (error(&text), false);
    }
    if !session.authenticated
        && !matches!(
            spec.route,
            Route::Local(Local::Auth | Local::Hello | Local::Quit)
        )
    {
        return (error("NOAUTH Authentication required."), false);
    }
    let answer = match spec.route {
        Route::Local(local) => return local_command(svc, pool, session, local, &cmd),
        Route::Unsupported(why) => error(&format!(
            "ERR strata: '{}' is not supported by the proxy: {why}",
            spec.name
        )),
        Route::Keys { .. } | Route::NumKeys { .. } => same_shard(pool, spec, &cmd),
        Route::Split(split) => split_by_shard(pool, split, &cmd),
        Route::FanOut(fan) => fan_out(pool, fan, &cmd),
    };
    (answer, false)
}

fn error(text: &str) -> Answer {
    Answer::Ready(resp::error_frame(text))
}

fn unknown_command(cmd: &Command) -> Answer {
    let mut text = format!(
        "ERR unknown command '{}', with args beginning with: ",
        String::from_utf8_lossy(cmd.arg(0))
    );
    for i in 1..cmd.len().min(4) {
        text.push_str(&format!("'{}' ", String::from_utf8_lossy(cmd.arg(i))));
    }
    error(&text)
}

fn unavailable(e: crate::pool::Unavailable) -> Answer {
    error(&format!("ERR strata: {e}"))
}

/// A command whose keys must all live on one server: sent there whole, or refused.
fn same_shard(pool: &Pool, spec: &command::Spec, cmd: &Command) -> Answer {
    let args: Vec<&[u8]> = (0..cmd.len()).map(|i| cmd.arg(i)).collect();
    let Some(keys) = command::key_positions(&spec.route, &args) else {
        return error(&format!(
            "ERR strata: '{}' needs at least one key, and a key count that matches its arguments",
            spec.name
        ));
    };
    let mut target = None;
    for k in keys {
        match pool.server_for(cmd.arg(k)) {
            Ok(s) if target.is_none() || target == Some(s) => target = Some(s),
            Ok(_) => return crossslot(pool),
            Err(e) => return unavailable(e),
        }
    }
    match target {
        Some(s) => Answer::One(pool.servers[s].send(cmd.to_frame())),
        None => error(&format!(
            "ERR strata: '{}' has no key to choose a server by",
            spec.name
        )),
    }
}

fn crossslot(pool: &Pool) -> Answer {
    let hint = match pool.config.hash_tag {
        Some([open, close]) => format!(
            " (keys that share a hash tag, such as {}user1{}.a and {}user1{}.b, live together)",
            open as char, close as char, open as char, close as char
        ),
        None => " (set hash_tag on the pool to keep related keys together)".into(),
    };
    error(&format!(
        "CROSSSLOT Keys in request don't hash to the same server{hint}"
    ))
}

/// MGET, MSET, DEL, UNLINK, EXISTS, TOUCH: one command per server holding some of the keys,
/// the replies combined in the order of the keys.
fn split_by_shard(pool: &Pool, split: Split, cmd: &Command) -> Answer {
    let step = if split == Split::Mset { 2 } else { 1 };
    if split == Split::Mset && cmd.len().is_multiple_of(2) {
        return error("ERR wrong number of arguments for 'mset' command");
    }
    // (server, positions of its keys)
    let mut groups: Vec<(usize, Vec<usize>)> = Vec::new();
    for k in (1..cmd.len()).step_by(step) {
        let server = match pool.server_for(cmd.arg(k)) {
            Ok(s) => s,
            Err(e) => return unavailable(e),
        };
        match groups.iter_mut().find(|(s, _)| *s == server) {
            Some((_, positions)) => positions.push(k),
            None => groups.push((server, vec![k])),
        }
    }
    if let [(server, _)] = groups.as_slice() {
        return Answer::One(pool.servers[*server].send(cmd.to_frame()));
    }
    let keys = groups.iter().map(|(_, p)| p.len()).sum();
    let parts = groups
        .into_iter()
        .map(|(server, positions)| {
            let mut frame = BytesMut::new();
            resp::array_header(&mut frame, 1 + positions.len() * step);
            resp::bulk(&mut frame, Some(cmd.arg(0)));
            for &k in &positions {
                for i in k..k + step {
                    resp::bulk(&mut frame, Some(cmd.arg(i)));
                }
            }
            (pool.servers[server].send(frame.freeze()), positions)
        })
        .collect();
    let how = match split {
        Split::Mget => Combine::Values,
        Split::Mset => Combine::Ok,
        Split::Sum => Combine::Sum,
    };
    Answer::Merge(Box::new(Merge { how, parts, keys }))
}

/// DBSIZE and KEYS: every server, combined.
fn fan_out(pool: &Pool, fan: FanOut, cmd: &Command) -> Answer {
    let now = strata_net::now_ms();
    if let Some(out) = pool.group.backends.iter().find(|b| !b.is_available_at(now)) {
        // a partial count or key list would look complete
        return error(&format!(
            "ERR strata: a server of the pool is out ({}), so the answer would be incomplete",
            out.state().as_str()
        ));
    }
    let frame = cmd.to_frame();
    let parts = pool
        .servers
        .iter()
        .map(|s| (s.send(frame.clone()), Vec::new()))
        .collect();
    let how = match fan {
        FanOut::Dbsize => Combine::Sum,
        FanOut::Keys => Combine::Concat,
    };
    Answer::Merge(Box::new(Merge {
        how,
        parts,
        keys: 0,
    }))
}

/// Commands the proxy answers itself.
fn local_command(
    svc: &CacheService,
    pool: &Pool,
    session: &mut Session,
    local: Local,
    cmd: &Command,
) -> (Answer, bool) {
    let mut out = BytesMut::new();
    let arg_upper = |i: usize| cmd.arg(i).to_ascii_uppercase();
    match local {
        Local::Ping if cmd.len() == 1 => resp::simple(&mut out, "PONG"),
        Local::Ping if cmd.len() == 2 => resp::bulk(&mut out, Some(cmd.arg(1))),
        Local::Ping => {
            return (
                error("ERR wrong number of arguments for 'ping' command"),
                false,
            )
        }
        Local::Echo => resp::bulk(&mut out, Some(cmd.arg(1))),
        Local::Quit => {
            resp::simple(&mut out, "OK");
            return (Answer::Ready(out.freeze()), true);
        }
        Local::Select if cmd.arg(1) == b"0" => resp::simple(&mut out, "OK"),
        Local::Select => {
            return (
                error("ERR strata: only database 0 is served through the proxy"),
                false,
            )
        }
        Local::Auth => {
            let (user, password) = match cmd.len() {
                2 => (&b"default"[..], cmd.arg(1)),
                3 => (cmd.arg(1), cmd.arg(2)),
                _ => return (error("ERR syntax error"), false),
            };
            return (authenticate(pool, session, user, password), false);
        }
        Local::Hello => return (hello(svc, pool, session, cmd), false),
        Local::Command => return (command_info(cmd), false),
        Local::Client => {
            let sub = arg_upper(1);
            match sub.as_slice() {
                b"SETNAME" if cmd.len() == 3 => {
                    session.name = Some(cmd.arg(2).into());
                    resp::simple(&mut out, "OK");
                }
                b"SETINFO" if cmd.len() == 4 => resp::simple(&mut out, "OK"),
                b"GETNAME" => resp::bulk(&mut out, session.name.as_deref()),
                b"ID" => resp::integer(&mut out, session.id as i64),
                _ => {
                    return (
                        error(&format!(
                            "ERR strata: 'CLIENT {}' is not supported by the proxy",
                            String::from_utf8_lossy(&sub)
                        )),
                        false,
                    )
                }
            }
        }
        Local::Info => {
            let text = format!(
                "# Server\r\nredis_version:{REDIS_VERSION}\r\nredis_mode:standalone\r\nstrata_version:{}\r\nstrata_pool:{}\r\nservers:{}\r\n",
                env!("CARGO_PKG_VERSION"),
                svc.name,
                pool.servers.len()
            );
            resp::bulk(&mut out, Some(text.as_bytes()));
        }
    }
    (Answer::Ready(out.freeze()), false)
}

fn authenticate(pool: &Pool, session: &mut Session, user: &[u8], password: &[u8]) -> Answer {
    let Some(expected) = &pool.config.password else {
        return error("ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?");
    };
    if user == b"default" && constant_time_eq(password, expected.as_bytes()) {
        session.authenticated = true;
        Answer::Ready(Bytes::from_static(b"+OK\r\n"))
    } else {
        error("WRONGPASS invalid username-password pair or user is disabled.")
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// HELLO [protover [AUTH user pass] [SETNAME name]]: RESP2 only; 3 gets `-NOPROTO`, so clients
/// fall back to RESP2.
fn hello(svc: &CacheService, pool: &Pool, session: &mut Session, cmd: &Command) -> Answer {
    let mut i = 1;
    if cmd.len() > 1 {
        match cmd.arg(1) {
            b"2" => {}
            v if v.iter().all(u8::is_ascii_digit) && !v.is_empty() => {
                return error("NOPROTO sorry, this protocol version is not supported.")
            }
            _ => return error("ERR Protocol version is not an integer or out of range"),
        }
        i = 2;
    }
    while i < cmd.len() {
        let opt = cmd.arg(i).to_ascii_uppercase();
        match opt.as_slice() {
            b"AUTH" if i + 2 < cmd.len() => {
                if let Answer::Ready(e) =
                    authenticate(pool, session, cmd.arg(i + 1), cmd.arg(i + 2))
                {
                    if e.starts_with(b"-") {
                        return Answer::Ready(e);
                    }
                }
                i += 3;
            }
            b"SETNAME" if i + 1 < cmd.len() => {
                session.name = Some(cmd.arg(i + 1).into());
                i += 2;
            }
            _ => {
                return error(&format!(
                    "ERR Syntax error in HELLO option '{}'",
                    String::from_utf8_lossy(cmd.arg(i))
                ))
            }
        }
    }
    if !session.authenticated {
        return error("NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time");
    }
    let _ = svc;
    let mut out = BytesMut::new();
    resp::array_header(&mut out, 14);
    for (k, v) in [
        ("server", "redis"),
        ("version", REDIS_VERSION),
        ("proxy", "strata"),
    ] {
        resp::bulk(&mut out, Some(k.as_bytes()));
        resp::bulk(&mut out, Some(v.as_bytes()));
    }
    resp::bulk(&mut out, Some(b"proto"));
    resp::integer(&mut out, 2);
    resp::bulk(&mut out, Some(b"id"));
    resp::integer(&mut out, session.id as i64);
    resp::bulk(&mut out, Some(b"mode"));
    resp::bulk(&mut out, Some(b"standalone"));
    resp::bulk(&mut out, Some(b"role"));
    resp::bulk(&mut out, Some(b"master"));
    Answer::Ready(out.freeze())
}

/// COMMAND, COMMAND COUNT, COMMAND INFO name..., COMMAND DOCS: what the proxy routes.
fn command_info(cmd: &Command) -> Answer {
    let routed = || {
        command::COMMANDS
            .iter()
            .filter(|s| !matches!(s.route, Route::Unsupported(_)))
    };
    let mut out = BytesMut::new();
    let sub = if cmd.len() > 1 {
        cmd.arg(1).to_ascii_uppercase()
    } else {
        Vec::new()
    };
    match sub.as_slice() {
        b"" => {
            let all: Vec<_> = routed().collect();
            resp::array_header(&mut out, all.len());
            for spec in all {
                spec_entry(&mut out, spec);
            }
        }
        b"COUNT" => resp::integer(&mut out, routed().count() as i64),
        b"DOCS" => resp::array_header(&mut out, 0),
        b"INFO" => {
            resp::array_header(&mut out, cmd.len() - 2);
            for i in 2..cmd.len() {
                let name = cmd.arg(i).to_ascii_uppercase();
                match command::lookup(&name).filter(|s| !matches!(s.route, Route::Unsupported(_))) {
                    Some(spec) => spec_entry(&mut out, spec),
                    None => out.extend_from_slice(b"*-1\r\n"),
                }
            }
        }
        _ => {
            return error(&format!(
                "ERR strata: 'COMMAND {}' is not supported by the proxy",
                String::from_utf8_lossy(&sub)
            ))
        }
    }
    Answer::Ready(out.freeze())
}

/// One command's entry as COMMAND gives it: name, arity, flags, first key, last key, step.
fn spec_entry(out: &mut BytesMut, spec: &command::Spec) {
    let (first, last, step) = match spec.route {
        Route::Keys { first, last, step } => (first as i64, last as i64, step as i64),
        Route::Split(Split::Mset) => (1, -1, 2),
        Route::Split(_) => (1, -1, 1),
        _ => (0, 0, 0),
    };
    resp::array_header(out, 6);
    resp::bulk(out, Some(spec.name.as_bytes()));
    resp::integer(out, spec.arity as i64);
    resp::array_header(out, 0);
    resp::integer(out, first);
    resp::integer(out, last);
    resp::integer(out, step);
}

/// Waits for `answer` and appends it to `out`; true when the answer is an error the proxy
/// made (a lost server, a refusal).
async fn write_answer(answer: Answer, out: &mut BytesMut) -> bool {
    match answer {
        Answer::Ready(bytes) => {
            out.extend_from_slice(&bytes);
            bytes.starts_with(b"-")
        }
        Answer::One(rx) => match rx.await {
            Ok(Ok(reply)) => {
                out.extend_from_slice(&reply);
                false
            }
            Ok(Err(lost)) => {
                resp::error(out, &format!("ERR strata: {lost}"));
                true
            }
            Err(_) => {
                resp::error(out, "ERR strata: the connection to the server was lost");
                true
            }
        },
        Answer::Merge(merge) => merge_replies(*merge, out).await,
    }
}

async fn merge_replies(merge: Merge, out: &mut BytesMut) -> bool {
    let mut replies: Vec<(Bytes, Vec<usize>)> = Vec::with_capacity(merge.parts.len());
    let mut lost = None;
    for (rx, positions) in merge.parts {
        match rx.await {
            Ok(Ok(reply)) => replies.push((reply, positions)),
            Ok(Err(l)) => lost = lost.or(Some(l.to_string())),
            Err(_) => lost = lost.or(Some("the connection to the server was lost".into())),
        }
    }
    if let Some(why) = lost {
        resp::error(out, &format!("ERR strata: {why}"));
        return true;
    }
    // a server's own error reply is the answer
    if let Some((reply, _)) = replies.iter().find(|(r, _)| r.starts_with(b"-")) {
        out.extend_from_slice(reply);
        return false;
    }
    let unexpected = |out: &mut BytesMut| {
        resp::error(
            out,
            "ERR strata: a server answered a split command unexpectedly",
        );
        true
    };
    match merge.how {
        Combine::Ok => {
            resp::simple(out, "OK");
            false
        }
        Combine::Sum => {
            let mut sum = 0i64;
            for (reply, _) in &replies {
                match resp::Values::new(reply).next() {
                    Some(Value::Int(n)) => sum = sum.saturating_add(n),
                    _ => return unexpected(out),
                }
            }
            resp::integer(out, sum);
            false
        }
        Combine::Values => {
            let mut values: Vec<Option<&[u8]>> = vec![None; merge.keys + 1];
            for (reply, positions) in &replies {
                let mut v = resp::Values::new(reply);
                if v.next() != Some(Value::Array(Some(positions.len()))) {
                    return unexpected(out);
                }
                for &p in positions {
                    match v.next() {
                        Some(Value::Bulk(b)) => values[p] = b,
                        _ => return unexpected(out),
                    }
                }
            }
            resp::array_header(out, merge.keys);
            for v in &values[1..] {
                resp::bulk(out, *v);
            }
            false
        }
        Combine::Concat => {
            let mut items: Vec<&[u8]> = Vec::new();
            for (reply, _) in &replies {
                let mut v = resp::Values::new(reply);
                let Some(Value::Array(Some(n))) = v.next() else {
                    return unexpected(out);
                };
                for _ in 0..n {
                    match v.whole() {
                        Some(item) => items.push(item),
                        None => return unexpected(out),
                    }
                }
            }
            resp::array_header(out, items.len());
            for item in items {
                out.extend_from_slice(item);
            }
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_idle_client_is_small() {
        // the whole of an idle client's task, beside tokio's own header: keep it so
        let size = std::mem::size_of::<Client>();
        assert!(size <= 136, "Client is {size} bytes");
    }
}
