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
    // a blocking command on a Redis Cluster node follows the cluster's redirections, as the
    // shared connections do (a transaction's are the client's to retry whole)
    let cluster = pool
        .cluster
        .as_ref()
        .filter(|_| own.blocking && own.at.is_some());
    for _ in 0..crate::cluster::MAX_REDIRECTS {
        let reply = run_once(session, pool, &own, addr, drain).await;
        let Some(cluster) = cluster else {
            return reply;
        };
        if let Some((slot, to)) = crate::cluster::redirect(&reply, b"-MOVED ") {
            cluster.moved(slot, to);
            addr = to;
        } else if let Some((_, to)) = crate::cluster::redirect(&reply, b"-ASK ") {
            // once, behind ASKING: the next try is the command alone again
            addr = to;
            let command = own.frames.last().cloned().unwrap_or_default();
            own.frames = vec![Bytes::from_static(b"*1\r\n$6\r\nASKING\r\n"), command];
            continue;
        } else {
            return reply;
        }
        if let Some(command) = own.frames.last().cloned() {
            own.frames = vec![command];
        }
    }
    resp::error_frame("ERR strata: the cluster kept redirecting the command")
}

/// [`run`] on the connection to `addr`, once.
async fn run_once(
    session: &mut Session,
    pool: &Pool,
    own: &Own,
    addr: SocketAddr,
    drain: &tokio_util::sync::CancellationToken,
) -> Bytes {
    let conn = match session.dedicated.take() {
        Some(conn) if conn.server == addr && conn.resp3 == session.resp3 => Some(conn),
        Some(conn) if conn.watching => {
            session.dedicated = Some(conn);
            return resp::error_frame(
                "CROSSSLOT the watched keys and this command's keys live on different servers",
            );
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
                return resp::error_frame(&format!("ERR strata: {told}"));
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
    match result {
        Ok(reply) => {
            conn.watching = match own.then {
                Then::Nothing => conn.watching,
                Then::Watch => !reply.starts_with(b"-"),
                Then::Unwatch | Then::Discard | Then::Abort => false,
            };
            session.dedicated = Some(conn);
            match own.then {
                Then::Discard => Bytes::from_static(b"+OK\r\n"),
                Then::Abort => resp::error_frame(EXECABORT),
                _ => reply,
            }
        }
        Err(why) => {
            // a WATCH lived on that connection: the next EXEC must not run as if it held
            session.watch_lost |= conn.watching;
            match own.then {
                Then::Discard => Bytes::from_static(b"+OK\r\n"),
                Then::Abort => resp::error_frame(EXECABORT),
                _ => resp::error_frame(&format!("ERR strata: {why}")),
            }
        }
    }
}

/// Sends `frames` and reads as many replies; the last one.
async fn exchange(
    stream: &mut TcpStream,
    frames: &[Bytes],
    timeout: Option<std::time::Duration>,
) -> Result<Bytes, LinkError> {
    let mut out = BytesMut::new();
    for f in frames {
        out.extend_from_slice(f);
    }
    crate::server::request(stream, &out, frames.len(), timeout).await
}
