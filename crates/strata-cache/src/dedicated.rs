//! A Redis client's own connection to one server, for what must not share the pipelined
//! connections: blocking commands (a BLPOP would hold up every client behind it), and
//! transactions (MULTI/EXEC and the WATCH before them act on the connection they are sent
//! on). It is made when first needed and kept while the client stays, so a WATCH and the EXEC
//! after it meet on the same connection.

use std::net::SocketAddr;

use bytes::{Bytes, BytesMut};
use tokio::net::TcpStream;

use crate::pool::Pool;
use crate::redis::Session;
use crate::resp;
use crate::server::LinkError;
use strata_upstream::Stage;

/// What an EXEC after a refused command answers.
pub(crate) const EXECABORT: &str = "EXECABORT Transaction discarded because of previous errors.";

/// The connection, to one server.
pub(crate) struct Dedicated {
    server: SocketAddr,
    /// It said HELLO 3, for a client that did.
    resp3: bool,
    stream: TcpStream,
    /// Keys are watched on it: EXEC must run here, and losing it loses the WATCH.
    watching: bool,
}

impl Dedicated {
    /// The address it is connected to.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.server
    }

    /// The index in `pool` of the server it is connected to, if the pool still has it.
    pub(crate) fn server_index(&self, pool: &Pool) -> Option<usize> {
        pool.group
            .backends
            .iter()
            .position(|b| b.addr == self.server)
    }
}

/// Commands for the client's own connection, and what their replies mean.
pub(crate) struct Own {
    /// The server, by index in the pool.
    pub(crate) server: usize,
    /// Or a server by address (a Redis Cluster's node), which `server` is then not.
    pub(crate) at: Option<SocketAddr>,
    /// Sent back to back; the answer is the last one's reply.
    pub(crate) frames: Vec<Bytes>,
    /// No reply timeout: the command blocks for as long as it says.
    pub(crate) blocking: bool,
    /// What the commands do to the connection's WATCH.
    pub(crate) then: Then,
}

/// What the commands sent do to the connection's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Then {
    /// Nothing (a blocking command).
    Nothing,
    /// WATCH: keys are watched from now.
    Watch,
    /// EXEC, UNWATCH: watches are gone.
    Unwatch,
    /// DISCARD's UNWATCH: watches are gone, and the client is told `+OK`.
    Discard,
    /// An aborted EXEC's UNWATCH: watches are gone (as Redis drops them at any EXEC), and the
    /// client is told `-EXECABORT`.
    Abort,
}

/// Runs `own` on the session's own connection (made, or made again for another server) and
/// answers with the last reply, or an error the client can act on.
pub(crate) async fn run(
    session: &mut Session,
    pool: &Pool,
    own: Own,
    drain: &tokio_util::sync::CancellationToken,
) -> Bytes {
    let addr = match own.at {
        Some(addr) => addr,
        None if own.server >= pool.servers.len() => {
            return resp::error_frame("ERR strata: the pool changed; try again")
        }
        None => pool.master_addr(own.server),
    };
    let mut addr = addr;
    let mut own = own;
    // on a Redis Cluster node, what the own connection runs follows the cluster's
    // redirections, as the shared connections do: a blocking command, a WATCH, and a
    // transaction none of whose commands ran (Redis discards one whose command was redirected)
    let cluster = pool.cluster.as_ref().filter(|_| own.at.is_some());
    for _ in 0..crate::cluster::MAX_REDIRECTS {
        let ran = run_once(session, pool, &own, addr, drain).await;
        let Some(cluster) = cluster else {
            return ran.reply;
        };
        // a transaction's redirection is its first refused command's; the rest is the reply's
        let told = match own.then {
            // (sent again only when EXEC said that nothing ran)
            Then::Unwatch if ran.reply.starts_with(b"-") => {
                ran.first_error.as_ref().unwrap_or(&ran.reply)
            }
            _ => &ran.reply,
        };
        let moved = crate::cluster::redirect(told, b"-MOVED ");
        let ask = crate::cluster::redirect(told, b"-ASK ");
        let Some((slot, to)) = moved.or(ask) else {
            return ran.reply;
        };
        if !cluster.vouch(to).await {
            tracing::warn!(addr = %to, "a redirection to an address that is no node of the cluster: not followed");
            return ran.reply;
        }
        if moved.is_some() {
            cluster.moved(slot, to);
        }
        // what is sent again: without an ASKING an earlier ASK put first
        if own.frames.first().is_some_and(|f| f[..] == ASKING[..]) {
            own.frames.remove(0);
        }
        match own.then {
            Then::Unwatch if ran.watching => {
                // the watched keys' slot moved with the transaction's: what was watched is
                // gone, so the transaction does not run, as when a watched key changes
                session.dedicated = None;
                return Bytes::from_static(if session.resp3 { b"_\r\n" } else { b"*-1\r\n" });
            }
            Then::Nothing | Then::Unwatch => {}
            // a WATCH on the importing node would leave the EXEC to go elsewhere
            Then::Watch if ask.is_some() => {
                return resp::error_frame(
                    "TRYAGAIN the key's slot is moving between cluster nodes; try again",
                )
            }
            Then::Watch => {}
            Then::Discard | Then::Abort => return ran.reply,
        }
        addr = to;
        if ask.is_some() {
            // once, behind ASKING: the next try is without it again
            own.frames.insert(0, Bytes::from_static(ASKING));
        }
    }
    resp::error_frame("ERR strata: the cluster kept redirecting the command")
}

/// Redis Cluster's ASKING: the next command (or transaction) is for a slot being imported.
const ASKING: &[u8] = b"*1\r\n$6\r\nASKING\r\n";

/// What [`run_once`] came to.
struct Ran {
    /// The client's answer.
    reply: Bytes,
    /// The first error reply of the commands sent (a transaction's redirected command).
    first_error: Option<Bytes>,
    /// Keys were watched on the connection before these commands.
    watching: bool,
}

/// [`run`] on the connection to `addr`, once.
async fn run_once(
    session: &mut Session,
    pool: &Pool,
    own: &Own,
    addr: SocketAddr,
    drain: &tokio_util::sync::CancellationToken,
) -> Ran {
    let answer = |reply: Bytes| Ran {
        reply,
        first_error: None,
        watching: false,
    };
    let conn = match session.dedicated.take() {
        Some(conn) if conn.server == addr && conn.resp3 == session.resp3 => Some(conn),
        Some(conn) if conn.watching => {
            session.dedicated = Some(conn);
            return answer(resp::error_frame(
                "CROSSSLOT the watched keys and this command's keys live on different servers",
            ));
        }
        _ => None,
    };
    let mut conn = match conn {
        Some(conn) => conn,
        None => match crate::server::open(addr, &pool.link, session.resp3).await {
            Ok(stream) => Box::new(Dedicated {
                server: addr,
                resp3: session.resp3,
                stream,
                watching: false,
            }),
            Err(e) => {
                let told = e.told(Stage::Connect, addr, "own connection");
                return answer(resp::error_frame(&format!("ERR strata: {told}")));
            }
        },
    };
    // a blocking command waits as long as it asks; the rest within the pool's timeout
    let timeout = (!own.blocking).then_some(pool.link.timeout);
    let exchange = exchange(&mut conn.stream, &own.frames, timeout);
    // the client is told the kind of failure; the log says what it was
    let result = tokio::select! {
        r = exchange => r.map_err(|e| e.told(Stage::Request, addr, "own connection")),
        // a wait with no end of its own ends when the listener drains: the connection it held
        // is dropped with the client's state
        _ = drain.cancelled(), if own.blocking => Err("the proxy is shutting down".into()),
    };
    let watching = conn.watching;
    let (first_error, reply) = match result {
        Ok((first_error, reply)) => {
            conn.watching = match own.then {
                Then::Nothing => conn.watching,
                // a refused WATCH leaves what an earlier one watches watched
                Then::Watch => conn.watching || !reply.starts_with(b"-"),
                Then::Unwatch | Then::Discard | Then::Abort => false,
            };
            session.dedicated = Some(conn);
            let reply = match own.then {
                Then::Discard => Bytes::from_static(b"+OK\r\n"),
                Then::Abort => resp::error_frame(EXECABORT),
                _ => reply,
            };
            (first_error, reply)
        }
        Err(why) => {
            // a WATCH lived on that connection: the next EXEC must not run as if it held
            session.watch_lost |= conn.watching;
            let reply = match own.then {
                Then::Discard => Bytes::from_static(b"+OK\r\n"),
                Then::Abort => resp::error_frame(EXECABORT),
                _ => resp::error_frame(&format!("ERR strata: {why}")),
            };
            (None, reply)
        }
    };
    Ran {
        reply,
        first_error,
        watching,
    }
}

/// Sends `frames` and reads as many replies: the first error among them, and the last one.
async fn exchange(
    stream: &mut TcpStream,
    frames: &[Bytes],
    timeout: Option<std::time::Duration>,
) -> Result<(Option<Bytes>, Bytes), LinkError> {
    let mut out = BytesMut::new();
    for f in frames {
        out.extend_from_slice(f);
    }
    crate::server::replies_of(stream, &out, frames.len(), timeout).await
}
