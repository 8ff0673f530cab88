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
use strata_config::CacheProtocol;
use strata_metrics::Open;
use strata_net::{buffers, Admitted, Deadline, UpstreamIo};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::answer::{write_answer, Answer, Combine, Merge};
use crate::dedicated::{self, Own};
use crate::memcache::{self, Kind as McKind, McCommand, McError};
use crate::pool::Pool;
use crate::pubsub;
use crate::redis::{dispatch, Dispatched, Session};
use crate::resp;
use crate::resp::Command;
use crate::CacheService;

/// How long a client may stay idle when the pool sets no `idle_timeout`: in effect never, but a
/// deadline all the same, so that a drain can wake the connection through its timers.
const FOREVER: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// What a client connection keeps between commands, and nothing more.
pub(crate) struct Kept {
    open: Open<CacheService>,
    pub(crate) io: UpstreamIo,
    session: Session,
    deadline: Deadline,
    /// The deadline is an idle timeout, not the far-away one.
    timed: bool,
    pub(crate) drain: CancellationToken,
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
        let (authenticated, deadline, timed) = {
            let pool = open.service().pool.load();
            let at = Instant::now() + pool.config.idle_timeout.unwrap_or(FOREVER);
            (
                pool.config.password.is_none(),
                Deadline::new(&pool.timers, at),
                pool.config.idle_timeout.is_some(),
            )
        };
        Client::Idle {
            kept: Kept {
                open,
                io: UpstreamIo(stream),
                session: Session::new(
                    authenticated,
                    NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
                ),
                deadline,
                timed,
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
                        Next::KeepAlive if !strata_net::drain::is_cancelled(&kept.drain) => {
                            // without an idle timeout the deadline stays where it is, far
                            // away: no need to touch the timers after every command
                            let idle = kept.open.service().pool.load().config.idle_timeout;
                            match idle {
                                Some(idle) => kept.deadline.set(Instant::now() + idle),
                                None if kept.timed => kept.deadline.set(Instant::now() + FOREVER),
                                None => {}
                            }
                            kept.timed = idle.is_some();
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

/// How many bytes of answers a batch gathers before it writes them.
const FLUSH_AT: usize = 64 << 10;

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
    // how far the command at the front of `buf` was read, while it is not whole
    let mut partial = None;
    let mut answers: VecDeque<Answer> = VecDeque::new();
    // whether `buf` may hold whole commands not read yet (after one that ran on the client's
    // own connection, the rest of the pipeline waits in the buffer)
    let mut parked = false;
    // the first read finds bytes that arrived; a later one waits for the rest of a command,
    // which `idle_timeout` bounds as it bounds the wait between commands (a client that sends
    // half a command and stops is idle)
    let mut rest_of_command = false;
    let next = loop {
        if !parked {
            let idle = match rest_of_command {
                true => svc.pool.load().config.idle_timeout,
                false => None,
            };
            let read = buffers::fill(&mut kept.io, &mut buf);
            let read = match idle {
                Some(idle) => match tokio::time::timeout(idle, read).await {
                    Ok(read) => read,
                    Err(_) => break Next::Close,
                },
                None => read.await,
            };
            match read {
                Ok(0) | Err(_) => break Next::Gone,
                Ok(_) => {}
            }
        }
        rest_of_command = true;
        let pool = svc.pool.load_full();
        let routing = crate::server::routing_for(kept.session.id);
        let step = match pool.config.protocol {
            CacheProtocol::Redis => read_redis(
                &svc,
                &pool,
                &mut kept.session,
                (&mut buf, &mut partial),
                &mut answers,
            ),
            CacheProtocol::Memcache => read_memcache(&svc, &pool, &mut buf, &mut answers),
        };
        drop(routing);
        let protocol = pool.config.protocol;
        let mut out = BytesMut::new();
        let mut gone = false;
        for answer in answers.drain(..) {
            if write_answer(answer, protocol, &mut out).await {
                svc.stats.errors.inc();
            }
            // large answers go out as they come, so that a pipeline of them is not copied
            // whole into one buffer first
            if out.len() >= FLUSH_AT {
                if !answered(kept, &out, &pool).await {
                    gone = true;
                    break;
                }
                out.clear();
            }
        }
        if gone {
            break Next::Gone;
        }
        parked = step.own.is_some() || step.subscribe.is_some() || step.copy_first.is_some();
        let mut own = step.own;
        if let Some((copying, deferred)) = step.copy_first {
            // the answers before it are out; the key is on its new server now
            copying.await;
            let answer = match deferred {
                Deferred::Redis(cmd) => {
                    match crate::redis::dispatch_copied(&svc, &pool, &mut kept.session, cmd) {
                        Dispatched::Answer(answer) => Some(answer),
                        // an EXEC whose moved keys came over: it runs on the client's own
                        // connection, below
                        Dispatched::Own(o) => {
                            own = Some(o);
                            None
                        }
                        _ => Some(crate::answer::error(
                            "ERR strata: the command could not be routed",
                        )),
                    }
                }
                Deferred::Memcache(cmd) => Some(dispatch_memcache(&pool, cmd)),
            };
            if let Some(answer) = answer {
                if write_answer(answer, protocol, &mut out).await {
                    svc.stats.errors.inc();
                }
            }
        }
        if let Some(own) = own {
            let blocking = own.blocking;
            // boxed: a rare path, kept out of the batch's own state (which is moved into a box
            // for every batch)
            let running = Box::pin(dedicated::run(&mut kept.session, &pool, own, &kept.drain));
            let reply = if blocking {
                // a client that hangs up while it waits frees the wait and its own server
                // connection at once, as Redis frees a blocked client that leaves
                tokio::select! {
                    reply = running => reply,
                    _ = hung_up(&kept.io.0) => break Next::Gone,
                }
            } else {
                running.await
            };
            out.extend_from_slice(&reply);
        }
        if !out.is_empty() && !answered(kept, &out, &pool).await {
            break Next::Gone;
        }
        if let Some(first) = step.subscribe {
            let resp3 = kept.session.resp3;
            match Box::pin(pubsub::serve(&svc, kept, &mut buf, &pool, first, resp3)).await {
                Next::KeepAlive => {}
                next => break next,
            }
        }
        drop(pool);
        if step.close {
            break Next::Close;
        }
        if buf.is_empty() {
            break Next::KeepAlive;
        }
    };
    buffers::give(buf);
    next
}

/// Writes `out` to the client: false when it is gone, or took none of it for its pool's
/// `idle_timeout` (else [`pubsub::STALLED`]), as Redis's `timeout` closes a client that neither
/// sends nor takes anything. A client that reads none of its answers would otherwise keep
/// them, and the pool's config generation, for good.
async fn answered(kept: &mut Kept, out: &[u8], pool: &Pool) -> bool {
    let stalled = pool.config.idle_timeout.unwrap_or(pubsub::STALLED);
    match strata_net::write_all_within(&mut kept.io, out, stalled).await {
        Ok(()) => true,
        Err(e) => {
            if e.kind() == std::io::ErrorKind::TimedOut {
                tracing::info!(pool = %pool.config.name, "a client took none of its answers for {stalled:?}: closed");
            }
            false
        }
    }
}

/// What reading a buffer's commands came to.
struct Step {
    /// The connection closes once the answers are out.
    close: bool,
    /// A command that runs on the client's own connection, after the answers before it; the
    /// commands after it wait in the buffer.
    own: Option<Own>,
    /// A subscription: subscribed mode, after the answers before it.
    subscribe: Option<Command>,
    /// A write routed once its moved keys are copied, after the answers before it; the
    /// commands after it wait in the buffer.
    copy_first: Option<(crate::migrate::Copying, Deferred)>,
}

/// A command routed after a copy.
enum Deferred {
    Redis(Command),
    Memcache(McCommand),
}

/// Routes every whole Redis command in `buf`; true when the connection closes after the
/// answers (QUIT, a protocol error).
fn read_redis(
    svc: &CacheService,
    pool: &Pool,
    session: &mut Session,
    (buf, partial): (&mut BytesMut, &mut Option<Box<resp::Partial>>),
    answers: &mut VecDeque<Answer>,
) -> Step {
    let go_on = |own| Step {
        close: false,
        own,
        subscribe: None,
        copy_first: None,
    };
    loop {
        match resp::take_command(buf, pool.config.max_bulk_size, partial) {
            Ok(Some(cmd)) => {
                svc.stats.commands.inc();
                match dispatch(svc, pool, session, cmd) {
                    Dispatched::Answer(answer) => answers.push_back(answer),
                    Dispatched::Quit(answer) => {
                        answers.push_back(answer);
                        return Step {
                            close: true,
                            ..go_on(None)
                        };
                    }
                    Dispatched::CopyFirst(copying, cmd) => {
                        return Step {
                            copy_first: Some((copying, Deferred::Redis(cmd))),
                            ..go_on(None)
                        }
                    }
                    Dispatched::Own(own) => return go_on(Some(own)),
                    Dispatched::Subscribe(cmd) => {
                        return Step {
                            subscribe: Some(cmd),
                            ..go_on(None)
                        }
                    }
                }
            }
            Ok(None) => return go_on(None),
            Err(e) => {
                svc.stats.protocol_errors.inc();
                tracing::debug!(pool = %svc.name, error = %e, "protocol error; closing the client");
                answers.push_back(Answer::Ready(resp::error_frame(&format!(
                    "ERR Protocol error: {e}"
                ))));
                return Step {
                    close: true,
                    ..go_on(None)
                };
            }
        }
    }
}
/// Routes every whole memcached command in `buf`; true when the connection closes after the
/// answers (quit, a data block that can't be delimited).
fn read_memcache(
    svc: &CacheService,
    pool: &Pool,
    buf: &mut BytesMut,
    answers: &mut VecDeque<Answer>,
) -> Step {
    let step = |close| Step {
        close,
        own: None,
        subscribe: None,
        copy_first: None,
    };
    loop {
        match memcache::take_command(buf, pool.config.max_bulk_size) {
            Ok(Some(cmd)) => {
                svc.stats.commands.inc();
                if cmd.kind == McKind::Quit {
                    return step(true);
                }
                // a write that keeps part of a moved key: the key is brought over first
                let overwrites = matches!(&cmd.name[..], b"set" | b"delete");
                let writes = matches!(cmd.kind, McKind::Store | McKind::Key);
                if pool.old.is_some() && writes && !overwrites {
                    if let Some(copying) = crate::migrate::mc_copy_moved(pool, &cmd.keys[0]) {
                        return Step {
                            copy_first: Some((copying, Deferred::Memcache(cmd))),
                            ..step(false)
                        };
                    }
                }
                answers.push_back(dispatch_memcache(pool, cmd));
            }
            Ok(None) => return step(false),
            Err(e) => {
                let text = match &e {
                    McError::Unknown => "ERROR\r\n".to_string(),
                    e => format!("CLIENT_ERROR {e}\r\n"),
                };
                answers.push_back(Answer::Ready(Bytes::from(text)));
                if !e.recoverable() {
                    svc.stats.protocol_errors.inc();
                    tracing::debug!(pool = %svc.name, error = %e, "protocol error; closing the client");
                    return step(true);
                }
            }
        }
    }
}
/// Routes one memcached command: a get split by server, anything else to its key's server.
fn dispatch_memcache(pool: &Pool, cmd: McCommand) -> Answer {
    let unavailable = |e: crate::pool::Unavailable| {
        Answer::Ready(Bytes::from(format!("SERVER_ERROR strata: {e}\r\n")))
    };
    match cmd.kind {
        McKind::Version => Answer::Ready(Bytes::from(format!(
            "VERSION 1.6.0 strata-{}\r\n",
            env!("CARGO_PKG_VERSION")
        ))),
        McKind::Get => {
            // keys that may still be on their servers from before the last reload
            if let Some(answer) = crate::migrate::mc_get(pool, &cmd.name, &cmd.keys) {
                return answer;
            }
            let mut groups: Vec<(usize, Vec<usize>)> = Vec::new();
            for (i, key) in cmd.keys.iter().enumerate() {
                let server = match pool.server_for(key) {
                    Ok(s) => s,
                    Err(e) => return unavailable(e),
                };
                match groups.iter_mut().find(|(s, _)| *s == server) {
                    Some((_, positions)) => positions.push(i),
                    None => groups.push((server, vec![i])),
                }
            }
            if let [(server, _)] = groups.as_slice() {
                return Answer::One(pool.servers[*server].send(cmd.frame, false));
            }
            let parts = groups
                .into_iter()
                .map(|(server, positions)| {
                    let mut frame = BytesMut::new();
                    let keys = positions.iter().map(|&p| cmd.keys[p].clone());
                    memcache::encode_get(&mut frame, &cmd.name, keys);
                    (pool.servers[server].send(frame.freeze(), false), positions)
                })
                .collect();
            Answer::Merge(Box::new(Merge {
                how: Combine::McValues(cmd.keys),
                parts,
                keys: 0,
            }))
        }
        _ => {
            if pool.old.is_some() {
                crate::migrate::mc_forget_old(pool, &cmd.keys[0]);
            }
            let server = match pool.server_for_write(&cmd.keys[0]) {
                Ok(s) => s,
                Err(_) if cmd.noreply => return Answer::Ready(Bytes::new()),
                Err(e) => return unavailable(e),
            };
            let rx = pool.servers[server].send(cmd.frame, false);
            if cmd.noreply {
                Answer::Silent(rx)
            } else {
                Answer::One(rx)
            }
        }
    }
}

/// Resolves when the client has closed its side (or its connection broke); never when it
/// sends more (a command pipelined behind a blocking one: only the wait's end tells then).
async fn hung_up(client: &tokio::net::TcpStream) {
    let mut byte = [0u8; 1];
    if let Ok(1..) = client.peek(&mut byte).await {
        std::future::pending::<()>().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_idle_client_is_small() {
        // the whole of an idle client's task, beside tokio's own header: keep it so
        let size = std::mem::size_of::<Client>();
        assert!(size <= 160, "Client is {size} bytes");
    }
}
