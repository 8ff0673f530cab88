//! One client connection: startup (TLS when certificates are configured, else SSL refused
//! with 'N'; GSS refused; cancel requests routed),
//! authentication, then its messages relayed to a server connection that it holds for a
//! transaction (or its session) and gives back clean.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use bytes::{Buf, BufMut, BytesMut};
use strata_config::{AuthType, PoolMode, Secret};
use strata_net::{buffers, Admitted};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use crate::auth::{self, ScramServer};
use crate::cancel::{self, CancelKey};
use crate::pipeline::{Part, Ticket};
use crate::pool::{Lease, Pool};
use crate::prepared::ClientStatements;
use crate::proto::{self, ProtoError, Sqlstate, Startup};
use crate::shard::{Bound, Route, Sharding};
use crate::stream::{self, PgStream};
use crate::DatabaseService;

/// Bytes buffered toward one side before the other side is no longer read.
const HIGH_WATER: usize = 256 * 1024;
/// Whole messages of a batch that asks for nothing to run yet held back until it ends (see
/// `still_preparing`).
const PREPARING_WAIT: usize = 64 * 1024;
/// How long a connection whose client left may take to finish what it was doing.
const CLEANUP: Duration = Duration::from_secs(10);

/// A client must have sent its startup packet, and then finished logging in, within this.
const LOGIN_TIMEOUT: Duration = Duration::from_secs(60);
/// The largest message a client may send before it has logged in.
const MAX_LOGIN_MESSAGE: usize = 65_536;

/// How a server connection another client changed is made clean: its identity, its settings
/// and its prepared statements as a new session's.
const RESET: &str = "SET SESSION AUTHORIZATION DEFAULT; RESET ROLE; RESET ALL; DEALLOCATE ALL";

/// Parameters a client sets that the pooler carries to each server connection it gets.
const CARRIED: &[&str] = &[
    "client_encoding",
    "DateStyle",
    "TimeZone",
    "IntervalStyle",
    "application_name",
    "search_path",
    "extra_float_digits",
    "standard_conforming_strings",
    "statement_timeout",
    "lock_timeout",
    "idle_in_transaction_session_timeout",
];

// a carried parameter's place is kept in a byte
const _: () = assert!(CARRIED.len() < 256);

/// Of [`CARRIED`], those the server reports with ParameterStatus when they change.
const REPORTED: &[&str] = &[
    "client_encoding",
    "DateStyle",
    "TimeZone",
    "IntervalStyle",
    "application_name",
    "standard_conforming_strings",
];

/// Why a client connection ended early.
#[derive(Debug, thiserror::Error)]
enum ClientError {
    #[error("client: {0}")]
    Io(#[from] std::io::Error),
    #[error("client sent bytes that are not the protocol: {0}")]
    Protocol(#[from] ProtoError),
    #[error("client left during startup")]
    Gone,
}

/// A client connection as accepted, in one allocation: the connection's task holds a
/// pointer to it (an async fn keeps its arguments for its whole life, beside whatever it
/// moves them into), and what it holds while the client is idle is the session itself.
pub(crate) struct Accepted {
    pub svc: Arc<DatabaseService>,
    pub stream: TcpStream,
    pub peer: SocketAddr,
    pub admitted: Admitted,
    pub shutdown: CancellationToken,
}

/// Serves one client connection to its end.
pub(crate) async fn serve(accepted: Box<Accepted>) {
    // moved out in a block of its own, so that the allocation goes now (the box an async
    // fn's argument leaves emptied would go only at its end)
    let accepted = {
        let boxed = accepted;
        *boxed
    };
    let Accepted {
        svc,
        stream,
        peer,
        admitted,
        shutdown,
    } = accepted;
    // the login's state (startup parameters, the server's, the welcome) is gone once it
    // returns: a session holds only what it needs
    // (a TLS client's relay takes it: the connection holds its place until its socket closes)
    let mut admitted = Some(admitted);
    let Some(mut session) = Box::pin(login(svc, stream, peer, &mut admitted)).await else {
        return;
    };
    session.svc.stats.clients.inc();
    // an idle client waits in a small future; what serving it takes is boxed only while it
    // talks (so an idle client costs its session and little more)
    let end = loop {
        // (what the client sent right behind its login is in the buffer already)
        if session.cbuf.is_empty() {
            // with nothing held: on the socket's own wake-up slot (no waiter in the future,
            // as `readable` would add), the drain's, and client_idle_timeout's when set (a
            // timer made only then); all gone before an answer is written, so that the
            // future does not keep them
            let told = {
                let mut drained = std::pin::pin!(shutdown.cancelled());
                let mut idle_limit = session
                    .svc
                    .client_idle_timeout()
                    .map(|t| Box::pin(tokio::time::sleep(t)));
                let client = &session.client;
                let woke: Woke = std::future::poll_fn(|cx| {
                    if let Poll::Ready(r) = client.poll_read_ready(cx) {
                        return Poll::Ready(Woke::Readable(r));
                    }
                    if drained.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(Woke::Drained);
                    }
                    match idle_limit.as_mut().map(|t| t.as_mut().poll(cx)) {
                        Some(Poll::Ready(())) => Poll::Ready(Woke::IdleTooLong),
                        _ => Poll::Pending,
                    }
                })
                .await;
                // (whether it drained, or went idle too long: a byte, not what woke it)
                match woke {
                    Woke::Readable(Ok(())) => None,
                    Woke::Readable(Err(e)) => break Err(e.into()),
                    Woke::Drained => Some(true),
                    Woke::IdleTooLong => Some(false),
                }
            };
            match told {
                None => {}
                // told, as PostgreSQL tells its sessions at a shutdown
                Some(true) => {
                    Box::pin(session.let_go(Sqlstate::ADMIN_SHUTDOWN, SHUTTING_DOWN)).await;
                    break Ok(());
                }
                Some(false) => {
                    Box::pin(session.idle_too_long()).await;
                    break Ok(());
                }
            }
        }
        match Box::pin(session.run(&shutdown)).await {
            Ok(Burst::Idle) => {}
            Ok(Burst::Ended) => break Ok(()),
            Err(e) => break Err(e),
        }
    };
    session.svc.stats.clients.dec();
    session.ended(end);
    Box::pin(session.finish()).await;
    drop(admitted);
}

/// Startup and authentication: the logged-in client's session, or `None` once it has been
/// refused (or has gone, or only sent a cancel request).
async fn login(
    svc: Arc<DatabaseService>,
    tcp: TcpStream,
    peer: SocketAddr,
    admitted: &mut Option<Admitted>,
) -> Option<Session> {
    let _ = tcp.set_nodelay(true);
    let mut stream = PgStream::Tcp(tcp);
    let mut buf = buffers::take();
    // one deadline for every step (TLS included), as PostgreSQL's authentication_timeout and
    // PgBouncer's client_login_timeout are one
    let deadline = tokio::time::Instant::now() + LOGIN_TIMEOUT;
    let (acceptor, tls_required) = svc.tls();
    let started = loop {
        let step = startup(&mut stream, &mut buf, acceptor.is_some());
        let Ok(step) = tokio::time::timeout_at(deadline, step).await else {
            refuse(&mut stream, Sqlstate::PROTOCOL, "no startup packet in time").await;
            return None;
        };
        let (Ok(Started::Tls), Some(acceptor), PgStream::Tcp(_)) = (&step, &acceptor, &stream)
        else {
            break step;
        };
        let PgStream::Tcp(tcp) = stream else {
            return None;
        };
        let upgrade = stream::upgrade(tcp, acceptor.clone(), svc.timers.clone(), admitted.take());
        match tokio::time::timeout_at(deadline, upgrade).await {
            Ok(Ok(tls)) => stream = tls,
            Ok(Err(e)) => {
                tracing::debug!(listener = %svc.name, %peer, "TLS handshake: {e}");
                return None;
            }
            Err(_) => {
                tracing::debug!(listener = %svc.name, %peer, "TLS handshake: not done in time");
                return None;
            }
        }
    };
    let params = match started {
        Ok(Started::Params(p)) => p,
        Ok(Started::Tls) | Ok(Started::Done) => return None,
        Err(e) => {
            refuse(&mut stream, Sqlstate::PROTOCOL, &e.to_string()).await;
            tracing::debug!(listener = %svc.name, %peer, "startup: {e}");
            return None;
        }
    };
    if tls_required && !stream.is_tls() {
        return refused(
            &mut stream,
            Sqlstate::INVALID_AUTHORIZATION,
            "this listener takes TLS connections only (tls_mode = \"require\"): connect with sslmode=require",
        )
        .await;
    }
    // (an empty name is none, as PostgreSQL takes it)
    let user = params
        .iter()
        .rfind(|(k, _)| k == "user")
        .map(|(_, v)| v.clone())
        .filter(|u| !u.is_empty());
    let Some(user) = user else {
        return refused(
            &mut stream,
            Sqlstate::INVALID_AUTHORIZATION,
            "no user in the startup packet",
        )
        .await;
    };
    let database = params
        .iter()
        .rfind(|(k, _)| k == "database")
        .map_or_else(|| user.clone(), |(_, v)| v.clone());
    if params.iter().any(|(k, _)| k == "replication") {
        return refused(
            &mut stream,
            Sqlstate::FEATURE_NOT_SUPPORTED,
            "replication connections are not pooled",
        )
        .await;
    }
    let config = svc.config();
    let mut known = config
        .users
        .iter()
        .find(|u| u.name == user)
        .map(|u| u.secret.clone());
    if known.is_none() && config.auth_user.is_some() {
        // PgBouncer's auth_query: the user's secret from the server, at each login
        match tokio::time::timeout_at(deadline, svc.look_up(&config, &user, &database)).await {
            Ok(Ok(found)) => {
                if let Some(secret) = &found {
                    svc.found_user(&user, secret);
                }
                svc.stats.lookups[usize::from(found.is_none())].inc();
                known = found;
            }
            Ok(Err(failure)) => {
                svc.stats.lookups[2].inc();
                // the kind of failure only: the client has not logged in (the log has the
                // server's words)
                tracing::warn!(listener = %svc.name, %user, %database, "looking the user up: {failure}");
                let message = format!("could not look the user up: {}", failure.kind);
                return refused(&mut stream, Sqlstate::CANNOT_CONNECT_NOW, &message).await;
            }
            Err(_) => {
                svc.stats.lookups[2].inc();
                return refused(
                    &mut stream,
                    Sqlstate::CANNOT_CONNECT_NOW,
                    "could not look the user up in time",
                )
                .await;
            }
        }
    }
    if known.is_none() && config.auth_type == AuthType::Trust {
        return refused(
            &mut stream,
            Sqlstate::INVALID_AUTHORIZATION,
            &format!("no user \"{user}\" is configured"),
        )
        .await;
    }
    // an unknown user is asked for a password as a known one is (against a secret nobody
    // has), so the answers don't tell which users exist
    let secret = known.clone().unwrap_or_else(|| svc.nobody(&config, &user));
    let checked = tokio::time::timeout_at(
        deadline,
        authenticate(
            &svc,
            &mut stream,
            &mut buf,
            config.auth_type,
            &user,
            &secret,
        ),
    )
    .await;
    let Ok(checked) = checked else {
        return refused(
            &mut stream,
            Sqlstate::PROTOCOL,
            "authentication took too long",
        )
        .await;
    };
    match checked {
        Ok(true) if known.is_some() => {}
        Ok(_) => {
            svc.stats.auth_failures.inc();
            let why = if known.is_some() {
                "wrong password"
            } else {
                "no such user"
            };
            tracing::info!(listener = %svc.name, %peer, %user, "login refused: {why}");
            return refused(
                &mut stream,
                Sqlstate::INVALID_PASSWORD,
                &format!("password authentication failed for user \"{user}\""),
            )
            .await;
        }
        Err(e) => {
            tracing::debug!(listener = %svc.name, %peer, "authentication: {e}");
            return None;
        }
    }
    let pool = svc.pool(&user, &database);
    let mut wanted = Wanted::default();
    let mut extra: Vec<(Box<str>, Box<str>)> = Vec::new();
    let mut want = |k: &str, v: &str| {
        if Wanted::place(k).is_some() {
            wanted.set(k, v);
        } else if !k.starts_with("_pq_.") {
            // protocol options (`_pq_.`) are the protocol's, not settings
            extra.retain(|(name, _)| &**name != k);
            extra.push((k.into(), v.into()));
        }
    };
    for (k, v) in &params {
        match k.as_str() {
            "user" | "database" => {}
            "options" => {
                for (k, v) in options(v) {
                    want(&k, &v);
                }
            }
            _ => want(k, v),
        }
    }
    // the session's identity is the login's: a pooled connection's RESET ALL would not undo it
    if let Some((k, _)) = extra.iter().find(|(k, _)| {
        k.eq_ignore_ascii_case("role") || k.eq_ignore_ascii_case("session_authorization")
    }) {
        let message = format!(
            "the startup parameter \"{k}\" is not supported by the pooler: log in as that user"
        );
        return refused(&mut stream, Sqlstate::FEATURE_NOT_SUPPORTED, &message).await;
    }
    wanted.set_extra(extra);
    // The welcome needs a server's parameters: the first client of a pool logs in to one.
    let welcome = strata_net::lock(&pool.welcome).clone();
    let welcome = match welcome {
        Some(w) => w,
        None => match svc.acquire(&pool, 0, false).await {
            Ok((lease, _)) => {
                // the pool's own (its first connection set it), else a copy of this one's
                let w = strata_net::lock(&pool.welcome).clone();
                let w = w.unwrap_or_else(|| Arc::new(lease.conn.params().clone()));
                lease.release();
                w
            }
            Err(e) => {
                tracing::warn!(listener = %svc.name, %user, %database, "no server for a new client: {e}");
                // a server's refusal keeps its SQLSTATE (3D000 for a database that does not
                // exist), which clients act on
                let (code, message) = crate::pool::told(&e);
                let mut out = BytesMut::new();
                proto::put_error_code(
                    &mut out,
                    true,
                    code,
                    &format!("no server available: {message}"),
                );
                let _ = stream.write_all(&out).await;
                return None;
            }
        },
    };
    // Other parameters are checked by a server now, as PostgreSQL checks them at login: one it
    // does not know refuses the login with its own words, not the client's first query.
    if wanted.extra.is_some() {
        let calls: Vec<String> = wanted.extra_calls().collect();
        let checked = match svc.acquire(&pool, 0, false).await {
            Ok((mut lease, _)) => {
                let r = lease
                    .conn
                    .run(&format!("SELECT {}", calls.join(", ")))
                    .await;
                // the session has them now: this client's next transaction there sets nothing,
                // another client's resets it first
                lease.conn.extras = wanted.extra_hash();
                match r {
                    Ok(_) => {
                        lease.release();
                        Ok(())
                    }
                    Err(crate::server::ServerError::Refused { message, .. }) => {
                        lease.release();
                        Err((Sqlstate::FEATURE_NOT_SUPPORTED, message))
                    }
                    Err(e) => {
                        lease.close();
                        // the kind of failure; the log has the server and the error underneath
                        let failure = crate::pool::AcquireError::Server(e).failure();
                        tracing::warn!(listener = %svc.name, %user, %database, "checking startup parameters: {failure}");
                        Err((Sqlstate::CANNOT_CONNECT_NOW, failure.kind.to_string()))
                    }
                }
            }
            Err(e) => {
                tracing::warn!(listener = %svc.name, %user, %database, "no server to check startup parameters: {e}");
                let (_, message) = crate::pool::told(&e);
                Err((
                    Sqlstate::CANNOT_CONNECT_NOW,
                    format!("no server available: {message}"),
                ))
            }
        };
        if let Err((code, message)) = checked {
            tracing::info!(listener = %svc.name, %peer, %user, "login refused: startup parameters: {message}");
            return refused(&mut stream, code, &message).await;
        }
    }
    wanted.set_defaults(welcome.clone());
    let key = cancel::register();
    // the client's number (its cancel key's process id) names it in the log from now on
    tracing::debug!(listener = %svc.name, %peer, %user, %database, client = key.pid, "logged in");
    let mut out = BytesMut::new();
    proto::put(&mut out, b'R', |b| b.put_u32(0));
    let mut shown: Vec<(&String, &String)> = welcome.iter().collect();
    shown.sort();
    for (k, v) in shown {
        let v = wanted.get(k).unwrap_or(v.as_str());
        proto::put(&mut out, b'S', |b| {
            proto::put_cstr(b, k);
            proto::put_cstr(b, v);
        });
    }
    proto::put(&mut out, b'K', |b| {
        b.put_u32(key.pid);
        b.put_u32(key.secret);
    });
    proto::put(&mut out, b'Z', |b| b.put_u8(b'I'));
    if stream.write_all(&out).await.is_err() {
        cancel::unregister(&key);
        return None;
    }
    // the read buffer goes back to the thread's pool until the client sends again
    if buf.is_empty() {
        buffers::give(buf);
        buf = BytesMut::new();
    }
    Some(Session {
        svc,
        pool,
        client: stream,
        cbuf: buf,
        to_server: BytesMut::new(),
        to_client: BytesMut::new(),
        server: None,
        wanted,
        pending: 0,
        idle_since: None,
        unsynced: false,
        copy_in: false,
        status: b'I',
        key,
        mode: config.pool_mode,
        closing: false,
        discarding: false,
        statements: ClientStatements::default(),
        syncs_after_execute: 0,
        on_replica: false,
        read_only: false,
        held: false,
        hold_at_sync: false,
        last_primary: None,
        shard: 0,
        deferred: None,
        discard_status: b'I',
        unnamed: None,
        lost: None,
        line: None,
    })
}

/// Refuses a login: `None` for [`login`] to return once the error is written.
async fn refused<T>(stream: &mut PgStream, code: Sqlstate, message: &str) -> Option<T> {
    refuse(stream, code, message).await;
    None
}

/// Tells a client why it is refused, if it takes the words within a second (a client that
/// reads nothing holds nothing longer).
async fn refuse(stream: &mut PgStream, code: Sqlstate, message: &str) {
    let mut out = BytesMut::new();
    proto::put_error(&mut out, true, code, message);
    let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(&out)).await;
}

/// How a client's startup ended.
enum Started {
    /// Protocol 3.0 parameters: the client logs in.
    Params(Vec<(String, String)>),
    /// An SSLRequest, on a listener that offers TLS: the handshake comes next.
    Tls,
    /// A cancel request, passed on: the connection closes.
    Done,
}

/// Reads startup packets until protocol 3.0 parameters or an SSLRequest that `offers_tls`
/// takes up; otherwise SSL and GSS are refused with 'N' (the client may go on in clear), a
/// cancel request is passed on and the connection closed. As in PostgreSQL, each of SSL and
/// GSS may be asked once, and neither inside TLS: another is a protocol this is not.
async fn startup(
    stream: &mut PgStream,
    buf: &mut BytesMut,
    offers_tls: bool,
) -> Result<Started, ClientError> {
    let (mut ssl_done, mut gss_done) = (stream.is_tls(), stream.is_tls());
    loop {
        match proto::startup(buf)? {
            Some(Startup::Params(p)) => return Ok(Started::Params(p)),
            Some(Startup::Ssl) if ssl_done => {
                return Err(ProtoError::Protocol {
                    major: 1234,
                    minor: 5679,
                }
                .into())
            }
            Some(Startup::Gss) if gss_done => {
                return Err(ProtoError::Protocol {
                    major: 1234,
                    minor: 5680,
                }
                .into())
            }
            Some(Startup::Ssl) if offers_tls => {
                // bytes sent behind the request, before the answer, were sent in clear and
                // could be anyone's (CVE-2021-23214): not taken as if they came over TLS
                if !buf.is_empty() {
                    return Err(ProtoError::Unexpected(
                        "received unencrypted data after SSL request",
                    )
                    .into());
                }
                return Ok(Started::Tls);
            }
            Some(Startup::Ssl) => {
                ssl_done = true;
                stream.write_all(b"N").await?;
            }
            Some(Startup::Gss) => {
                gss_done = true;
                stream.write_all(b"N").await?;
            }
            Some(Startup::Cancel { pid, secret }) => {
                cancel::forward(pid, secret).await;
                return Ok(Started::Done);
            }
            None => {
                if stream.read_buf(buf).await? == 0 {
                    return Err(ClientError::Gone);
                }
            }
        }
    }
}

/// Reads one tagged message from the client during authentication.
async fn read_message(
    stream: &mut PgStream,
    buf: &mut BytesMut,
) -> Result<(u8, BytesMut), ClientError> {
    loop {
        // before it has logged in, a client sends passwords and SASL messages: small ones
        // (PostgreSQL's own limit), never a buffer's worth
        if buf.len() >= 5 {
            let declared = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
            if declared > MAX_LOGIN_MESSAGE {
                return Err(ProtoError::TooLong(declared).into());
            }
        }
        if let Some(m) = proto::message(buf)? {
            return Ok(m);
        }
        if stream.read_buf(buf).await? == 0 {
            return Err(ClientError::Gone);
        }
    }
}

/// Asks the client for its password the way `auth_type` and its secret allow; Ok(false) for
/// a wrong one.
async fn authenticate(
    svc: &DatabaseService,
    stream: &mut PgStream,
    buf: &mut BytesMut,
    auth_type: AuthType,
    user: &str,
    secret: &Secret,
) -> Result<bool, ClientError> {
    let use_md5 = match (auth_type, secret) {
        (AuthType::Trust, _) => return Ok(true),
        (AuthType::Md5, Secret::Plain(_) | Secret::Md5(_)) => true,
        (_, Secret::Md5(_)) => {
            // an md5 hash can't check a SCRAM proof: such a user is asked md5 (where
            // PostgreSQL would refuse the login), as PgBouncer's userlists often hold them
            true
        }
        _ => false,
    };
    let mut out = BytesMut::new();
    if use_md5 {
        let salt = auth::random::<4>();
        proto::put(&mut out, b'R', |b| {
            b.put_u32(5);
            b.put_slice(&salt);
        });
        stream.write_all(&out).await?;
        let (tag, mut body) = read_message(stream, buf).await?;
        if tag != b'p' {
            return Err(ProtoError::Malformed("PasswordMessage").into());
        }
        let answer = proto::cstr(&mut body, "PasswordMessage")?;
        return Ok(auth::md5_check(secret, user, salt, &answer));
    }
    let Some(keys) = svc.scram_keys(user, secret) else {
        return Ok(false);
    };
    proto::put(&mut out, b'R', |b| {
        b.put_u32(10);
        proto::put_cstr(b, "SCRAM-SHA-256");
        b.put_u8(0);
    });
    stream.write_all(&out).await?;
    let (tag, mut body) = read_message(stream, buf).await?;
    if tag != b'p' {
        return Err(ProtoError::Malformed("SASLInitialResponse").into());
    }
    let mechanism = proto::cstr(&mut body, "SASLInitialResponse")?;
    if mechanism != "SCRAM-SHA-256" || body.len() < 4 {
        return Ok(false);
    }
    let len = body.get_i32();
    if len < 0 || len as usize != body.len() {
        return Err(ProtoError::Malformed("SASLInitialResponse").into());
    }
    let client_first = String::from_utf8_lossy(&body).into_owned();
    let (server, server_first) = match ScramServer::start(keys, &client_first) {
        Ok(s) => s,
        Err(_) => return Ok(false),
    };
    out.clear();
    proto::put(&mut out, b'R', |b| {
        b.put_u32(11);
        b.put_slice(server_first.as_bytes());
    });
    stream.write_all(&out).await?;
    let (tag, body) = read_message(stream, buf).await?;
    if tag != b'p' {
        return Err(ProtoError::Malformed("SASLResponse").into());
    }
    match server.finish(&String::from_utf8_lossy(&body)) {
        Ok((server_final, client_key)) => {
            svc.learned_client_key(user, secret, client_key);
            out.clear();
            proto::put(&mut out, b'R', |b| {
                b.put_u32(12);
                b.put_slice(server_final.as_bytes());
            });
            stream.write_all(&out).await?;
            Ok(true)
        }
        Err(_) => Ok(false),
    }
}

/// What a client wants of the parameters the pooler carries ([`CARRIED`]): what it asked
/// for at startup or set since (as the servers reported), else the server's default; and any
/// other parameter it gave at startup (`extra`), set on every server connection it gets
/// (PgBouncer refuses those unless told to ignore them).
#[derive(Debug, Default)]
struct Wanted {
    /// The server's values, one map shared by every client of the pool (an idle client
    /// should not carry its own copy of what nearly all of them hold).
    defaults: Option<Arc<HashMap<String, String>>>,
    /// What the client asked for itself, by place in [`CARRIED`]; none equal to its default.
    own: Box<[(u8, Box<str>)]>,
    /// The other parameters it gave at startup, if any.
    extra: Option<Box<Extra>>,
    /// [`Wanted::key`] once worked out (0: not yet, or changed since): it is asked for at
    /// every query that may share a connection, and changes only with a `SET`. (Atomic only
    /// so that a session stays `Sync`; one task uses it.)
    key: std::sync::atomic::AtomicU64,
}

/// Startup parameters the pooler does not carry, set on each server connection a client gets.
#[derive(Debug)]
struct Extra {
    /// A hash of them (never 0): a server connection that holds these needs nothing set again.
    hash: u64,
    params: Box<[(Box<str>, Box<str>)]>,
}

impl Wanted {
    fn place(name: &str) -> Option<usize> {
        CARRIED.iter().position(|c| c.eq_ignore_ascii_case(name))
    }

    fn get(&self, name: &str) -> Option<&str> {
        Self::place(name).and_then(|i| self.carried(i))
    }

    /// The value of `CARRIED[i]`: the client's own, else the server's default.
    fn carried(&self, i: usize) -> Option<&str> {
        match self.own.iter().find(|(at, _)| usize::from(*at) == i) {
            Some((_, v)) => Some(v),
            None => self.server_default(i),
        }
    }

    fn server_default(&self, i: usize) -> Option<&str> {
        self.defaults.as_ref()?.get(CARRIED[i]).map(String::as_str)
    }

    fn set(&mut self, name: &str, value: &str) {
        let Some(i) = Self::place(name) else {
            return;
        };
        // (a server reports a parameter at every set_config of it, mostly to the same value)
        if self.carried(i) == Some(value) {
            return;
        }
        let mut own = std::mem::take(&mut self.own).into_vec();
        own.retain(|(at, _)| usize::from(*at) != i);
        if self.server_default(i) != Some(value) {
            own.push((i as u8, value.into()));
        }
        self.own = own.into_boxed_slice();
        *self.key.get_mut() = 0;
    }

    /// The server's values, for what the client did not ask for: a connection another
    /// client changed (SET TimeZone ...) is set back before this one uses it.
    fn set_defaults(&mut self, defaults: Arc<HashMap<String, String>>) {
        self.defaults = Some(defaults);
        let mut own = std::mem::take(&mut self.own).into_vec();
        own.retain(|(at, v)| self.server_default(usize::from(*at)) != Some(&**v));
        self.own = own.into_boxed_slice();
        *self.key.get_mut() = 0;
    }

    /// The parameters given at startup that the pooler does not carry.
    fn set_extra(&mut self, extra: Vec<(Box<str>, Box<str>)>) {
        use std::hash::{Hash, Hasher};
        self.extra = (!extra.is_empty()).then(|| {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            extra.hash(&mut h);
            Box::new(Extra {
                hash: h.finish() | 1,
                params: extra.into_boxed_slice(),
            })
        });
        *self.key.get_mut() = 0;
    }

    /// A hash of the extra parameters; 0 when there are none.
    fn extra_hash(&self) -> u64 {
        self.extra.as_ref().map_or(0, |e| e.hash)
    }

    /// What a server connection's session holds once it carries these parameters: equal for
    /// two clients whose queries may share one.
    fn key(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        use std::sync::atomic::Ordering::Relaxed;
        let mut key = self.key.load(Relaxed);
        if key == 0 {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            for i in 0..CARRIED.len() {
                self.carried(i).hash(&mut h);
            }
            self.extra_hash().hash(&mut h);
            key = h.finish() | 1;
            self.key.store(key, Relaxed);
        }
        key
    }

    /// The `set_config` calls that give a server connection the extra parameters.
    fn extra_calls(&self) -> impl Iterator<Item = String> + '_ {
        let params = self.extra.as_ref().map_or(&[][..], |e| &e.params[..]);
        params
            .iter()
            .map(|(k, v)| format!("set_config({}, {}, false)", literal(k), literal(v)))
    }
}

/// `-c name=value` pairs of the `options` startup parameter.
fn options(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut words = text.split_whitespace();
    while let Some(w) = words.next() {
        let pair = if w == "-c" {
            words.next()
        } else {
            w.strip_prefix("-c").or_else(|| w.strip_prefix("--"))
        };
        if let Some((k, v)) = pair.and_then(|p| p.split_once('=')) {
            out.push((canonical(&k.replace('-', "_")), v.to_string()));
        }
    }
    out
}

/// Parameter names as the server reports them (`datestyle` is `DateStyle`).
fn canonical(name: &str) -> String {
    CARRIED
        .iter()
        .find(|c| c.eq_ignore_ascii_case(name))
        .map_or_else(|| name.to_string(), |c| c.to_string())
}

/// Whether a CommandComplete tag says the session's state changed in a way the pooler does
/// not follow (SET, RESET, DISCARD, PREPARE, DEALLOCATE, LISTEN...): the connection is reset
/// before another client gets it.
pub(crate) fn changes_session(body: &[u8]) -> bool {
    let tag = body.split(|b| *b == 0).next().unwrap_or(&[]);
    let word = tag.split(|b| *b == b' ').next().unwrap_or(&[]);
    matches!(
        word,
        b"SET" | b"RESET" | b"DISCARD" | b"PREPARE" | b"DEALLOCATE" | b"LISTEN" | b"UNLISTEN"
    )
}

/// Whether a simple query's statements all only read, as PostgreSQL's own parser reads them
/// (strata-pgparse says what counts: a `SELECT` that calls no function that writes, locks no
/// rows, makes no table).
fn reads_only(body: &[u8]) -> bool {
    let text = body.strip_suffix(b"\0").unwrap_or(body);
    std::str::from_utf8(text).is_ok_and(strata_pgparse::read_only)
}

/// Whether an extended-protocol batch only reads: it ends with a Sync and holds nothing but
/// Parse, Bind, Describe, Execute, Close and Flush, every statement it parses reads only, and
/// every statement it binds was parsed in it or is one of the client's named statements that
/// reads only. A batch not yet whole is not waited for: it goes to the primary.
fn batch_reads_only(batch: &Batch<'_>, statements: &ClientStatements) -> bool {
    let allowed = batch.synced
        && batch
            .messages
            .iter()
            .all(|(tag, _)| matches!(tag, b'P' | b'B' | b'D' | b'E' | b'C' | b'H' | b'S'));
    allowed
        && batch
            .messages
            .iter()
            .filter(|(tag, _)| *tag == b'P')
            .all(|(_, body)| parse_text(body).is_some_and(reads_only))
        && batch
            .bound(statements, None)
            .iter()
            .all(|(_, parse)| parse.map(parsed_text).is_some_and(reads_only))
}

/// An extended-protocol batch, when it may be sent on a connection that other clients' reads
/// share: its length, and the Parse (its body: the name, the text,
/// the declared types) of each of the client's named statements it binds or describes, which
/// the shared connection prepares where it lacks them. The batch must be whole up to its Sync
/// and hold nothing but Bind (of the unnamed portal), Describe, Execute (of the unnamed portal)
/// and Parse of the unnamed statement; a statement it binds or describes is one parsed before
/// it in the batch (unnamed) or one the client prepared by name. A Parse or Close of a named
/// statement, a named portal, or the unnamed statement parsed in an earlier batch (it is
/// on the connection the client had then) keep a batch on a connection of its own.
pub(crate) fn shared_batch(
    batch: &Batch<'_>,
    statements: &ClientStatements,
) -> Option<(usize, Vec<Vec<u8>>)> {
    if !batch.synced {
        return None;
    }
    let mut parsed = false;
    let mut named: Vec<Vec<u8>> = Vec::new();
    let mut known = |name: &[u8], parsed: bool| -> bool {
        if name.is_empty() {
            return parsed;
        }
        let Some(rest) = std::str::from_utf8(name)
            .ok()
            .and_then(|n| statements.parsed(n))
        else {
            return false;
        };
        let mut body = Vec::with_capacity(name.len() + 1 + rest.len());
        body.extend_from_slice(name);
        body.push(0);
        body.extend_from_slice(rest);
        if !named.contains(&body) {
            named.push(body);
        }
        true
    };
    let name_at = |body: &[u8]| -> Option<usize> { body.iter().position(|&b| b == 0) };
    for (tag, body) in &batch.messages {
        let ok = match tag {
            b'P' => {
                parsed = true;
                body.first() == Some(&0)
            }
            // the portal's name (unnamed), then the statement's
            b'B' => {
                body.first() == Some(&0)
                    && name_at(&body[1..]).is_some_and(|end| known(&body[1..1 + end], parsed))
            }
            b'D' => match body.split_first() {
                Some((b'P', rest)) => rest == b"\0",
                Some((b'S', rest)) => name_at(rest)
                    .is_some_and(|end| end + 1 == rest.len() && known(&rest[..end], parsed)),
                _ => false,
            },
            b'E' => body.first() == Some(&0),
            b'S' => true,
            _ => false,
        };
        if !ok {
            return None;
        }
    }
    Some((batch.len, named))
}

/// The statement name of a simple query that is exactly `DEALLOCATE [PREPARE] name` (not
/// `ALL`), as PostgreSQL reads the name: folded to lower case unless double-quoted.
fn deallocate_name(body: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(body)
        .ok()?
        .trim_end_matches('\0')
        .trim();
    let text = text.strip_suffix(';').unwrap_or(text).trim_end();
    let rest = strip_keyword(text, "deallocate")?;
    let rest = strip_keyword(rest, "prepare").unwrap_or(rest);
    let name = if let Some(quoted) = rest.strip_prefix('"') {
        let inner = quoted.strip_suffix('"')?;
        // a lone quote inside ends the name early: not one name
        if inner.replace("\"\"", "").contains('"') {
            return None;
        }
        inner.replace("\"\"", "\"")
    } else {
        let ok = !rest.is_empty()
            && !rest.starts_with(|c: char| c.is_ascii_digit() || c == '$')
            && rest
                .chars()
                .all(|c| c.is_alphanumeric() || c == '_' || c == '$');
        if !ok || rest.eq_ignore_ascii_case("all") {
            return None;
        }
        rest.to_lowercase()
    };
    (!name.is_empty()).then_some(name)
}

/// Whether a simple query is exactly `DEALLOCATE [PREPARE] ALL` or `DISCARD ALL`.
fn forgets_all(body: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(body) else {
        return false;
    };
    let text = text.trim_end_matches('\0').trim();
    let text = text.strip_suffix(';').unwrap_or(text).trim_end();
    let all = |rest: &str| rest.eq_ignore_ascii_case("all");
    match strip_keyword(text, "deallocate") {
        Some(rest) => all(strip_keyword(rest, "prepare").unwrap_or(rest)),
        None => strip_keyword(text, "discard").is_some_and(all),
    }
}

/// `text` after the keyword `word` (any case) and the whitespace behind it.
fn strip_keyword<'a>(text: &'a str, word: &str) -> Option<&'a str> {
    let head = text.get(..word.len())?;
    let rest = &text[word.len()..];
    (head.eq_ignore_ascii_case(word) && rest.starts_with(char::is_whitespace))
        .then(|| rest.trim_start())
}

/// An extended-protocol batch at the start of a client's buffer, once it is whole: its
/// messages up to the Sync or Flush that ends it.
pub(crate) struct Batch<'a> {
    /// Each message's tag and body.
    messages: Vec<(u8, &'a [u8])>,
    /// Its bytes, the last message's included.
    len: usize,
    /// Whether a Sync ends it (else a Flush).
    synced: bool,
}

impl<'a> Batch<'a> {
    /// The batch at the start of `buf`; None while it has no Sync or Flush yet.
    pub(crate) fn read(buf: &'a [u8]) -> Option<Batch<'a>> {
        let mut messages = Vec::new();
        let mut at = 0;
        loop {
            let len = proto::message_len(&buf[at..]).ok().flatten()?;
            let tag = buf[at];
            messages.push((tag, &buf[at + 5..at + len]));
            at += len;
            if matches!(tag, b'S' | b'H') {
                return Some(Batch {
                    messages,
                    len: at,
                    synced: tag == b'S',
                });
            }
        }
    }

    /// Each Bind's body with the Parse of the statement it binds (after its name: the text
    /// and the declared parameter types): parsed earlier in the batch, one of the client's
    /// named statements, or (`unnamed`) the unnamed statement the client parsed last; None
    /// when unknown.
    fn bound(
        &self,
        statements: &'a ClientStatements,
        unnamed: Option<&'a [u8]>,
    ) -> Vec<(&'a [u8], Option<&'a [u8]>)> {
        let mut parsed: Vec<(&[u8], &[u8])> = Vec::new();
        let mut out = Vec::new();
        for (tag, body) in &self.messages {
            match tag {
                b'P' => parsed.push((
                    body.split(|b| *b == 0).next().unwrap_or(&[]),
                    after_name(body).unwrap_or(&[]),
                )),
                b'B' => out.push((*body, statement_parse(body, &parsed, statements, unnamed))),
                _ => {}
            }
        }
        out
    }
}

/// The Parse (after its name) of the statement a Bind (`body`) binds: the last of `parsed` by
/// that name, one of the client's named statements, or `unnamed` for the unnamed one.
fn statement_parse<'a>(
    body: &[u8],
    parsed: &[(&[u8], &'a [u8])],
    statements: &'a ClientStatements,
    unnamed: Option<&'a [u8]>,
) -> Option<&'a [u8]> {
    let statement = body.split(|b| *b == 0).nth(1)?;
    parsed
        .iter()
        .rev()
        .find(|(n, _)| *n == statement)
        .map(|(_, t)| *t)
        .or_else(|| match std::str::from_utf8(statement) {
            Ok("") => unnamed,
            Ok(n) => statements.parsed(n),
            Err(_) => None,
        })
}

/// Where a whole batch goes: every statement it binds routed with its parameters (they must
/// agree); statements only parsed pin nothing yet. A batch that only runs one BEGIN, COMMIT
/// or ROLLBACK to its Sync is one, as a simple query would be.
fn batch_route(
    batch: &Batch<'_>,
    statements: &ClientStatements,
    unnamed: Option<&[u8]>,
    sharding: &Sharding,
    plain: bool,
) -> Route {
    let mut found = Route::Any;
    let mut control = None;
    let bound = batch.bound(statements, unnamed);
    let binds = bound.len();
    for (body, text) in bound {
        let route = bind_route(body, text, sharding, plain);
        if matches!(route, Route::Begin | Route::End { .. }) {
            control = Some(route.clone());
        }
        found = match (found, route) {
            (Route::Refused(why), _) | (_, Route::Refused(why)) => return Route::Refused(why),
            (Route::Shard(a), Route::Shard(b)) if a != b => {
                return Route::Refused(format!(
                    "the batch's statements run on shards {} and {}: a batch runs on one shard",
                    a.min(b),
                    a.max(b)
                ))
            }
            (Route::Shard(a), _) | (_, Route::Shard(a)) => Route::Shard(a),
            _ => Route::Any,
        };
    }
    let executes = batch.messages.iter().filter(|(t, _)| *t == b'E').count();
    match control {
        Some(c) if batch.synced && binds == 1 && executes == 1 && found == Route::Any => c,
        _ => found,
    }
}

/// Where one Bind (`body`) of the statement `parse` (its Parse after the name) goes, with its
/// parameters and their declared types.
fn bind_route(body: &[u8], parse: Option<&[u8]>, sharding: &Sharding, plain: bool) -> Route {
    // a statement never prepared gets the server's error, wherever it runs
    let Some(parse) = parse else {
        return Route::Any;
    };
    let text = parsed_text(parse);
    let mut names = body.splitn(3, |b| *b == 0);
    let (Some(_portal), Some(_statement), Some(rest)) = (names.next(), names.next(), names.next())
    else {
        return Route::Any; // malformed: the server says so
    };
    match Bound::read(rest) {
        Some(bound) => sharding.route(text, Some(&bound.with_types(parsed_types(parse))), plain),
        None => Route::Any,
    }
}

/// Whether a batch is whole (to its Sync) and only parses named statements and closes
/// statements (an unnamed one is the connection's, and must be parsed on it).
fn only_prepares(batch: &Batch<'_>) -> bool {
    batch.synced
        && batch.messages.iter().all(|(tag, body)| match tag {
            b'P' => body.first().is_some_and(|b| *b != 0),
            b'C' | b'S' => true,
            _ => false,
        })
}

/// Whether the whole messages at the start of `buf` begin an extended-protocol batch that asks
/// for nothing to run yet: Parse, Bind, Describe and Close only, with no Execute, Sync or Flush
/// among them, and under [`PREPARING_WAIT`] bytes. Such a batch is routed once it is whole (a
/// batch that only prepares is answered here when every connection is taken, and its Parse
/// and Sync may come in two reads); one with an Execute goes on as it comes (a COPY's client
/// may wait for the CopyInResponse before it sends the rest).
fn still_preparing(buf: &[u8]) -> bool {
    let mut at = 0;
    while let Ok(Some(len)) = proto::message_len(&buf[at..]) {
        if !matches!(buf[at], b'P' | b'B' | b'D' | b'C') {
            return false;
        }
        at += len;
    }
    at > 0 && at <= PREPARING_WAIT
}

/// The bytes of the whole messages at the start of `buf`.
fn whole_messages(buf: &[u8]) -> usize {
    let mut at = 0;
    while let Ok(Some(len)) = proto::message_len(&buf[at..]) {
        at += len;
    }
    at
}

/// The SQL text of a Parse message's body (after the statement's name).
fn parse_text(body: &[u8]) -> Option<&[u8]> {
    after_name(body).map(parsed_text)
}

/// A Parse message's body after the statement's name: the text, its NUL, the parameter types.
fn after_name(body: &[u8]) -> Option<&[u8]> {
    let end = body.iter().position(|b| *b == 0)?;
    Some(&body[end + 1..])
}

/// The text of a Parse after its name.
fn parsed_text(parse: &[u8]) -> &[u8] {
    parse.split(|b| *b == 0).next().unwrap_or(&[])
}

/// The parameter types (OIDs, 0 for unspecified) a Parse after its name declares.
fn parsed_types(parse: &[u8]) -> Vec<u32> {
    let Some(end) = parse.iter().position(|b| *b == 0) else {
        return Vec::new();
    };
    let rest = &parse[end + 1..];
    let Some(count) = rest
        .get(..2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]) as usize)
    else {
        return Vec::new();
    };
    rest[2..]
        .chunks_exact(4)
        .take(count)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// PostgreSQL's words for a statement refused in a failed transaction (25P02).
const IN_FAILED: &str =
    "current transaction is aborted, commands ignored until end of transaction block";

/// A transaction's start or end, said by a statement alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Bracket {
    /// `BEGIN`, `BEGIN WORK`, `BEGIN TRANSACTION` (`start`: `START TRANSACTION`), no modes.
    Begin { start: bool },
    /// `COMMIT` or `END` (`rollback`: `ROLLBACK` or `ABORT`), optionally `WORK` or
    /// `TRANSACTION`; not `AND CHAIN`.
    End { rollback: bool },
}

/// What a query's text (with or without its NUL) says, when it is nothing but a plain
/// transaction start or end, in any case, with whitespace and one trailing semicolon.
pub(crate) fn bracket(text: &[u8]) -> Option<Bracket> {
    // whitespace to every PostgreSQL: space, tab, newline, carriage return, form feed (not
    // the vertical tab, which only PostgreSQL 16 and later take as one)
    let space = |c: &u8| matches!(c, b' ' | b'\t' | b'\n' | b'\r' | 0x0c);
    let text = text.strip_suffix(b"\0").unwrap_or(text);
    let mut end = text.len();
    while end > 0 && space(&text[end - 1]) {
        end -= 1;
    }
    let text = text[..end].strip_suffix(b";").unwrap_or(&text[..end]);
    let mut words = text.split(space).filter(|w| !w.is_empty());
    let is = |w: &[u8], of: &[u8]| w.eq_ignore_ascii_case(of);
    let first = words.next()?;
    // most queries are told by their first word, without more
    let said = if is(first, b"begin") {
        Bracket::Begin { start: false }
    } else if is(first, b"start") {
        if !words.next().is_some_and(|w| is(w, b"transaction")) {
            return None;
        }
        Bracket::Begin { start: true }
    } else if is(first, b"commit") || is(first, b"end") {
        Bracket::End { rollback: false }
    } else if is(first, b"rollback") || is(first, b"abort") {
        Bracket::End { rollback: true }
    } else {
        return None;
    };
    let rest: Vec<&[u8]> = words.collect();
    let plain = match (said, rest.as_slice()) {
        (_, []) => true,
        (Bracket::Begin { start: true }, _) => false,
        (_, [w]) => is(w, b"work") || is(w, b"transaction"),
        _ => false,
    };
    plain.then_some(said)
}

/// Whether a simple query is exactly one `BEGIN` (or `START TRANSACTION`) that says `READ
/// ONLY`, with nothing else but isolation and deferrable modes: a transaction that promises
/// not to write, which PostgreSQL enforces, so a replica can run it.
fn begins_read_only(body: &[u8]) -> bool {
    // nearly every query is no BEGIN: its first word tells, without a copy (PostgreSQL's
    // whitespace: space, tab, newline, carriage return, vertical tab, form feed)
    let start = body
        .iter()
        .position(|c| !matches!(c, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c))
        .unwrap_or(body.len());
    let first = |word: &[u8]| {
        body[start..]
            .get(..word.len())
            .is_some_and(|w| w.eq_ignore_ascii_case(word))
    };
    if !first(b"begin") && !first(b"start") {
        return false;
    }
    let text = String::from_utf8_lossy(body).to_ascii_lowercase();
    let text = text
        .trim_end_matches('\0')
        .trim()
        .trim_end_matches(';')
        .trim();
    if text.contains(';') {
        return false;
    }
    let words: Vec<&str> = text
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|w| !w.is_empty())
        .collect();
    let modes = match words.as_slice() {
        ["begin", "transaction" | "work", rest @ ..] | ["start", "transaction", rest @ ..] => rest,
        ["begin", rest @ ..] => rest,
        _ => return false,
    };
    // (not SERIALIZABLE: a hot standby refuses it)
    const MODES: &[&str] = &[
        "read",
        "only",
        "isolation",
        "level",
        "repeatable",
        "committed",
        "uncommitted",
        "deferrable",
        "not",
    ];
    modes.iter().all(|w| MODES.contains(w)) && modes.windows(2).any(|p| p == ["read", "only"])
}

/// Records that `conn`'s session was reset (RESET ALL or DISCARD ALL, with DEALLOCATE ALL):
/// the reported parameters come back by ParameterStatus, the others the pooler set are gone
/// without a word, and so are the extra startup parameters and the prepared statements.
fn session_reset(conn: &mut crate::server::ServerConn) {
    for k in CARRIED.iter().filter(|k| !REPORTED.contains(k)) {
        conn.forget_param(k);
    }
    conn.extras = 0;
    conn.statements.clear();
    conn.dirty = false;
}

/// A value as a SQL string literal.
fn literal(value: &str) -> String {
    // an E'' string reads backslashes the same whatever standard_conforming_strings is
    format!("E'{}'", value.replace('\\', "\\\\").replace('\'', "''"))
}

/// A logged-in client and the server connection it holds, if any.
struct Session {
    svc: Arc<DatabaseService>,
    pool: Arc<Pool>,
    client: PgStream,
    cbuf: BytesMut,
    to_server: BytesMut,
    to_client: BytesMut,
    /// Boxed: a session holds one only in a transaction (or its session), and an idle
    /// client should not carry its size.
    server: Option<Box<Lease>>,
    /// A query that only reads, sent on a connection shared with other clients' such queries
    /// ([`crate::pipeline`]); what the client sent behind it waits for its answer.
    line: Option<Box<Ticket>>,
    /// The parameters the client asked for (startup, `options`, and what the servers reported
    /// it set).
    wanted: Wanted,
    /// Queries and Syncs sent whose ReadyForQuery has not come back.
    pending: u32,
    /// Extended-protocol messages sent since the last Sync.
    unsynced: bool,
    /// The server is in COPY FROM STDIN.
    copy_in: bool,
    /// The last ReadyForQuery's transaction status.
    status: u8,
    /// Since when the client has been idle inside a transaction (`idle_transaction_timeout`).
    idle_since: Option<tokio::time::Instant>,
    key: CancelKey,
    mode: PoolMode,
    /// A FATAL is on its way to the client; the session ends once it is written.
    closing: bool,
    /// No server connection could be had for an extended-protocol batch: its messages are
    /// dropped up to its Sync.
    discarding: bool,
    /// The client's named prepared statements (transaction mode).
    statements: ClientStatements,
    /// Syncs sent since the last Execute (or Query): ignored by the server if that Execute
    /// starts a COPY FROM STDIN.
    syncs_after_execute: u32,
    /// The connection it holds is a replica's.
    on_replica: bool,
    /// The transaction it holds the connection for said READ ONLY.
    read_only: bool,
    /// The server connection was taken for one query that only reads: nothing else goes to
    /// it; what the client sent behind it waits for it to come back, and is routed then.
    held: bool,
    /// The server connection was taken for an extended-protocol batch that only reads: it is
    /// held (as above) once the batch's Sync has gone.
    hold_at_sync: bool,
    /// When its last transaction on the primary ended (read-your-writes).
    last_primary: Option<std::time::Instant>,
    /// The shard of the connection it holds or is about to get.
    shard: usize,
    /// A BEGIN answered here whose shard is not known yet: it goes, unseen, ahead of the
    /// transaction's first statement, to that statement's shard.
    deferred: Option<Box<Deferred>>,
    /// The ReadyForQuery status a batch dropped up to its Sync ends with.
    discard_status: u8,
    /// On a sharded listener, the text of the unnamed statement the client parsed last.
    unnamed: Option<Box<[u8]>>,
    /// Why the server connection is given up, when not for being lost.
    lost: Option<Box<str>>,
}

/// A transaction begun (for the client) before its shard is known.
struct Deferred {
    /// The BEGIN query's body (its text and NUL).
    begin: Vec<u8>,
    /// A statement in it was refused: as in a failed transaction, everything but its end
    /// is refused until COMMIT or ROLLBACK.
    failed: bool,
}

/// What sharding made of a message.
enum Step {
    /// On as usual (to the shard in `Session::shard` when a connection is attached).
    Go,
    /// Answered or dropped here.
    Done,
    /// The batch is not whole yet: wait for more.
    Wait,
}

/// What woke a client waiting with nothing held.
enum Woke {
    /// Its socket (it sent something, or failed).
    Readable(std::io::Result<()>),
    /// The listener drains.
    Drained,
    /// `client_idle_timeout` passed.
    IdleTooLong,
}

/// What a client idle past `client_idle_timeout` is told (as PostgreSQL's
/// `idle_session_timeout` words it).
const IDLE_TOO_LONG: &str =
    "terminating connection due to idle-session timeout (client_idle_timeout)";

/// What a client that is let go at a shutdown is told.
const SHUTTING_DOWN: &str = "terminating connection: the listener is closing (the pooler stops, or a reload removed or moved it)";

/// The most an extended-protocol batch may hold, on a sharded listener, before its Sync
/// or Flush: its shard is known only once it is whole.
const MAX_SHARDED_BATCH: usize = 1 << 20;

/// Sleeps until `at`; never without one.
async fn sleep_until_some(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// How a turn of [`Session::run`] ended.
enum Burst {
    /// The client is idle: nothing held, buffered or owed, and no transaction open.
    Idle,
    /// The client is gone, or was let go.
    Ended,
}

impl Session {
    /// Serves the client until it is idle again ([`Burst::Idle`]: nothing held, buffered or
    /// owed, no transaction open; [`serve`] waits then) or ends.
    async fn run(&mut self, shutdown: &CancellationToken) -> Result<Burst, ClientError> {
        // it was woken for a reason: the first turn goes to the loop
        let mut woken = true;
        // client_idle_timeout reaches a client here too once it holds nothing (no server
        // connection, no line) and has neither sent nor read anything for that long, though
        // it left a message half sent or its answers unread: counted from `heard`
        let idle_limit = self.svc.client_idle_timeout();
        let mut heard = tokio::time::Instant::now();
        if !self.cbuf.is_empty() && self.holds_nothing() {
            // bytes read behind the login (a client that sent its first query without waiting
            // for ReadyForQuery): the socket may have nothing more to say, so they go now
            if !self.received().await? {
                return Ok(Burst::Ended);
            }
        }
        loop {
            if self.closing && self.to_client.is_empty() {
                return Ok(Burst::Ended);
            }
            let idle = self.holds_nothing() && self.to_client.is_empty();
            if idle && self.cbuf.is_empty() && self.to_server.is_empty() {
                self.give_buffers();
                if !woken && self.deferred.is_none() && !self.closing {
                    self.idle_since = None;
                    return Ok(Burst::Idle);
                }
            }
            woken = false;
            // a client with no transaction open leaves when the node drains: in session mode
            // too, between transactions on the connection it keeps (one begun here, that holds
            // no server connection yet, is open all the same, and may finish)
            let between = (idle && self.deferred.is_none())
                || (self.mode == PoolMode::Session
                    && self.clean()
                    && self.line.is_none()
                    && self.to_client.is_empty());
            // a client that holds a server connection inside a transaction, with nothing in
            // flight: how long it may stay so
            let idle_in_transaction = self.idle_in_transaction();
            let idle_client = match idle_limit {
                Some(limit) if self.holds_nothing() => Some(heard + limit),
                // time holding a connection (or waiting on a line) is not idle
                Some(_) => {
                    heard = tokio::time::Instant::now();
                    None
                }
                None => None,
            };
            tokio::select! {
                _ = shutdown.cancelled(), if between => {
                    // as PostgreSQL ends its sessions at a shutdown
                    self.let_go(Sqlstate::ADMIN_SHUTDOWN, SHUTTING_DOWN).await;
                    return Ok(Burst::Ended);
                }
                _ = sleep_until_some(idle_in_transaction) => {
                    tracing::info!(listener = %self.svc.name, "a client idle in a transaction past idle_transaction_timeout: closed, its transaction rolled back");
                    self.let_go(Sqlstate::IDLE_IN_TRANSACTION_TIMEOUT, "terminating connection due to idle-in-transaction timeout (idle_transaction_timeout)").await;
                    return Ok(Burst::Ended);
                }
                _ = sleep_until_some(idle_client) => {
                    self.idle_too_long().await;
                    return Ok(Burst::Ended);
                }
                // what a client sends behind a query it waits for (held, or on a line)
                // stays unread past a bound, and so does what it sends while its answers
                // pile up unread (those the pooler makes itself too), as PostgreSQL stops
                // reading a client that does not read
                r = self.client.readable(), if self.to_server.len() < HIGH_WATER && !self.closing
                    && self.to_client.len() < HIGH_WATER
                    && (self.cbuf.len() < HIGH_WATER || !self.waits_for_answer()) => {
                    r?;
                    self.take_buffers();
                    match self.client.try_recv_buf(&mut self.cbuf) {
                        Ok(0) => return Ok(Burst::Ended),
                        Ok(_) => {
                            heard = tokio::time::Instant::now();
                            if !self.received().await? {
                                return Ok(Burst::Ended);
                            }
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                r = self.client.writable(), if !self.to_client.is_empty() => {
                    r?;
                    let unread = self.to_client.len();
                    self.flush_to_client()?;
                    // a client reading its answers, however slowly, is not idle
                    if self.to_client.len() < unread && idle_limit.is_some() {
                        heard = tokio::time::Instant::now();
                    }
                }
                r = readable(&self.server), if self.server.is_some() && self.to_client.len() < HIGH_WATER => {
                    if r.is_err() || !self.server_sent() {
                        self.server_lost();
                    }
                    // what the client sent behind a query held on its own connection goes now
                    if !self.cbuf.is_empty() && (self.server.is_none() || self.held) {
                        if !Box::pin(self.client_sent()).await? {
                            return Ok(Burst::Ended);
                        }
                        self.flush_to_server();
                    }
                    self.flush_to_client()?;
                }
                part = answer(&mut self.line), if self.line.is_some() && self.to_client.len() < HIGH_WATER => {
                    self.line_answered(part);
                    if self.line.is_none() && !self.cbuf.is_empty() {
                        if !Box::pin(self.client_sent()).await? {
                            return Ok(Burst::Ended);
                        }
                        self.flush_to_server();
                    }
                    self.flush_to_client()?;
                }
                r = writable(&self.server), if self.server.is_some() && !self.to_server.is_empty() => {
                    match r {
                        Ok(()) => self.flush_to_server(),
                        Err(_) => self.server_lost(),
                    }
                }
            }
        }
    }

    /// Handles what the client sent (now in `cbuf`) and writes what it leads to; false when
    /// the client said Terminate.
    async fn received(&mut self) -> Result<bool, ClientError> {
        proto::check_client_headers(&self.cbuf)?;
        // boxed: what a message may lead to (waiting for a server) is large, and the loop
        // should not carry it
        if !Box::pin(self.client_sent()).await? {
            return Ok(false);
        }
        self.flush_to_server();
        self.flush_to_client()?;
        Ok(true)
    }

    /// What the client sent is not handled until an answer comes: its query that only reads
    /// is held on its connection, or sent on a line.
    fn waits_for_answer(&self) -> bool {
        self.line.is_some()
            || (self.held && self.server.is_some() && (self.pending > 0 || self.unsynced))
    }

    /// Between transactions a session holds no buffer: they go back to the thread's pool,
    /// and come from it when the client sends again (and the list of what its messages are
    /// owed goes back to the allocator).
    fn give_buffers(&mut self) {
        for buf in [&mut self.cbuf, &mut self.to_server, &mut self.to_client] {
            if buf.capacity() > 0 {
                buffers::give(std::mem::take(buf));
            }
        }
        self.statements.free_owed();
    }

    fn take_buffers(&mut self) {
        for buf in [&mut self.cbuf, &mut self.to_server, &mut self.to_client] {
            if buf.capacity() == 0 {
                *buf = buffers::take();
            }
        }
    }

    /// Writes what it can to the server now, without waiting (the socket is nearly always
    /// writable); the rest waits for the loop.
    fn flush_to_server(&mut self) {
        let Some(lease) = self.server.as_mut() else {
            return;
        };
        if self.to_server.is_empty() {
            return;
        }
        match lease.conn.stream.try_write(&self.to_server) {
            Ok(n) => self.to_server.advance(n),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => self.server_lost(),
        }
    }

    /// Writes what it can to the client now, without waiting.
    fn flush_to_client(&mut self) -> Result<(), ClientError> {
        if self.to_client.is_empty() {
            return Ok(());
        }
        match self.client.try_write(&self.to_client) {
            Ok(n) => {
                self.to_client.advance(n);
                Ok(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Handles the whole messages the client has sent; false when it said Terminate.
    async fn client_sent(&mut self) -> Result<bool, ClientError> {
        // the listener's sharding now (a reload may change it between two transactions)
        let sharding = self.svc.sharding();
        while let Some(total) = proto::client_message_len(&self.cbuf)? {
            if self.line.is_some() {
                break;
            }
            // (in COPY FROM STDIN the data must flow: its answer comes after it)
            if self.held && self.server.is_some() && !self.copy_in {
                // held until what it was held for is answered (a read then gives its
                // connection back; a sharded statement that began a transaction keeps it)
                if self.pending > 0 || !self.statements.settled() || self.unsynced {
                    break;
                }
                self.held = false;
            }
            let tag = self.cbuf[0];
            if tag == b'X' {
                self.cbuf.advance(total);
                return Ok(false);
            }
            if self.discarding {
                // after a failed attach, an extended-protocol batch is dropped to its Sync,
                // which gets the one ReadyForQuery the client waits for
                if tag == b'S' {
                    self.discarding = false;
                    let status = std::mem::replace(&mut self.discard_status, b'I');
                    proto::put(&mut self.to_client, b'Z', |b| b.put_u8(status));
                }
                self.cbuf.advance(total);
                continue;
            }
            if self.mode == PoolMode::Session && matches!(tag, b'Q' | b'P' | b'B' | b'F') {
                if let Some(primary) = self.left_behind() {
                    // a session holds its connection from login: one on a server that is no
                    // longer the primary would see its writes refused (or, with two servers
                    // claiming to be primary, go to the old one), so between transactions it
                    // ends, and the client's reconnect lands on the new primary
                    tracing::info!(listener = %self.svc.name, %primary, "a session on a server that is no longer the primary ends");
                    self.lost = Some(
                        "the server this session ran on is no longer the primary: reconnect".into(),
                    );
                    self.server_lost_as(Sqlstate::ADMIN_SHUTDOWN);
                    return Ok(true);
                }
            }
            if tag == b'Q' && self.mode == PoolMode::Transaction && self.deallocated(total) {
                self.cbuf.advance(total);
                continue;
            }
            if tag == b'P'
                && self.mode == PoolMode::Transaction
                && self.statements.too_many(&self.cbuf[5..total])
            {
                self.too_many_statements();
                continue;
            }
            let step = match &sharding {
                Some(sharding) => self.shard_step(sharding, tag, total),
                None if self.mode == PoolMode::Transaction && self.server.is_none() => {
                    self.defer_step(tag, total)
                }
                None => Step::Go,
            };
            match step {
                Step::Go => {}
                Step::Done => continue,
                Step::Wait => break,
            }
            // a batch that prepares, outside a transaction, is taken whole before it is routed
            if self.server.is_none()
                && self.mode == PoolMode::Transaction
                && !self.unsynced
                && still_preparing(&self.cbuf)
            {
                break;
            }
            // a transaction that says READ ONLY, or a query or extended-protocol batch outside
            // a transaction that PostgreSQL's parser finds only reads, may run on a replica,
            // unless the client's last transaction on the primary may have written, too
            // recently
            let between = self.server.is_none()
                && self.mode == PoolMode::Transaction
                && self.deferred.is_none();
            let declared = (between
                && match tag {
                    b'Q' => begins_read_only(&self.cbuf[5..total]),
                    b'P' => parse_text(&self.cbuf[5..total]).is_some_and(begins_read_only),
                    _ => false,
                })
                || (self.server.is_none()
                    && self
                        .deferred
                        .as_ref()
                        .is_some_and(|d| begins_read_only(&d.begin)));
            // the parser reads strings as the server will only with standard_conforming_strings
            // (queries are classified for replicas, and to share a connection when the pool
            // is busy)
            let replicas = self.svc.replica_ready();
            // queries that only read may share a connection, this many (1: they don't)
            let pipeline = if sharding.is_none() && matches!(tag, b'Q' | b'P' | b'B' | b'D') {
                self.svc.read_pipeline()
            } else {
                1
            };
            // an extended-protocol batch outside a transaction, read once for what follows
            let batch = match tag {
                b'P' | b'B' | b'D' | b'C' if self.server.is_none() => Batch::read(&self.cbuf),
                _ => None,
            };
            // (with trials, every such query is classified: its answer's time counts)
            let sharing = || {
                pipeline > 1
                    && (self.svc.trials()
                        || self
                            .svc
                            .busy_pool(&self.pool, self.shard, false, 1)
                            .is_some())
            };
            let classified = between
                && !declared
                && self.wanted.get("standard_conforming_strings") != Some("off")
                && (replicas || sharing())
                && match tag {
                    b'Q' => reads_only(&self.cbuf[5..total]),
                    b'P' | b'B' | b'D' => batch
                        .as_ref()
                        .is_some_and(|b| batch_reads_only(b, &self.statements)),
                    _ => false,
                };
            // (a read classified only to share a connection is routed as any query: no replica
            // could take it)
            let reads = declared || (classified && replicas);
            let to_replica = reads
                && self
                    .last_primary
                    .is_none_or(|t| t.elapsed() >= self.svc.read_your_writes());
            // a query that only reads (or a batch of the unnamed statement that only reads)
            // may share a connection when the pool is busy: its bytes, whole
            // (with the Parses of the named statements it uses)
            let shares = match tag {
                _ if !classified || pipeline <= 1 => None,
                b'Q' => Some((total, Vec::new())),
                b'P' | b'B' | b'D' => batch
                    .as_ref()
                    .and_then(|b| shared_batch(b, &self.statements)),
                _ => None,
            };
            let prepares_only =
                matches!(tag, b'P' | b'C') && batch.as_ref().is_some_and(only_prepares);
            if let (None, Some((len, named))) = (&self.server, &shares) {
                if self.join_line(to_replica, *len, named, pipeline) {
                    continue;
                }
            }
            // a batch that only prepares statements by name (libpq's PQprepare: Parse, Sync)
            // is answered here when every connection is taken: the statements are prepared on
            // the connection that binds them. A client that prepares synchronously while its
            // other connections hold transactions (pgbench -M prepared, one thread for many
            // clients) would otherwise wait for a connection only it can free.
            if self.server.is_none()
                && self.mode == PoolMode::Transaction
                && prepares_only
                && self.svc.pool_full(&self.pool, self.shard, to_replica)
            {
                let status = self.status_here();
                self.answer_here(tag, total, b"", status);
                continue;
            }
            if self.server.is_none() {
                if !self.attach(to_replica, reads).await {
                    // in a transaction begun here, the transaction has failed, as PostgreSQL's
                    // would: everything but its end is refused until COMMIT or ROLLBACK (what
                    // the client sent behind the statement must not run on its own)
                    let status = match self.deferred.as_mut() {
                        Some(d) => {
                            d.failed = true;
                            b'E'
                        }
                        None => b'I',
                    };
                    match tag {
                        b'Q' | b'F' | b'S' => {
                            proto::put(&mut self.to_client, b'Z', |b| b.put_u8(status))
                        }
                        _ => {
                            self.discarding = true;
                            self.discard_status = status;
                        }
                    }
                    self.cbuf.advance(total);
                    continue;
                }
                // a classified query holds the connection alone; a batch, up to its Sync;
                // so does any query outside a transaction on a sharded listener (what comes
                // behind it may be another shard's)
                if shares
                    .as_ref()
                    .is_some_and(|(len, named)| self.start_line(*len, named))
                {
                    continue;
                }
                if let (Some(lease), Some(_)) = (self.server.as_mut(), &shares) {
                    lease.asked();
                }
                let hold =
                    (classified && replicas) || (sharding.is_some() && self.deferred.is_none());
                self.held = hold && tag == b'Q';
                self.hold_at_sync = hold && tag != b'Q';
                if let Some(d) = self.deferred.take() {
                    // the transaction begun here starts with its first statement, in the same
                    // write (on a sharded listener, on that statement's shard)
                    self.statements.hidden_begin(&d.begin, &mut self.to_server);
                    // the server is in the transaction from here, though no ReadyForQuery
                    // has said so yet: a client that leaves now leaves it to be rolled back
                    self.status = b'T';
                }
            }
            if self.copy_in && matches!(tag, b'S' | b'H') {
                // the server ignores Sync and Flush in COPY FROM STDIN: no answer is owed
                self.to_server.extend_from_slice(&self.cbuf[..total]);
                self.cbuf.advance(total);
                continue;
            }
            // on a sharded listener, what follows a query (or a batch's Sync) waits for its
            // answer: the transaction may end there, and the next one be another shard's
            let sharded = sharding.is_some();
            match tag {
                b'Q' | b'F' => {
                    self.pending += 1;
                    self.syncs_after_execute = 0;
                    self.held |= sharded;
                }
                b'E' => {
                    self.unsynced = true;
                    self.syncs_after_execute = 0;
                }
                b'S' => {
                    self.pending += 1;
                    self.unsynced = false;
                    self.syncs_after_execute += 1;
                    self.held |= std::mem::take(&mut self.hold_at_sync) || sharded;
                }
                b'P' | b'B' | b'D' | b'C' | b'H' => self.unsynced = true,
                b'c' | b'f' => self.copy_in = false,
                _ => {}
            }
            match (self.mode, self.server.as_mut()) {
                (PoolMode::Transaction, Some(lease)) => self.statements.outgoing(
                    tag,
                    &self.cbuf[5..total],
                    &mut lease.conn.statements,
                    &mut self.to_server,
                ),
                _ => self.to_server.extend_from_slice(&self.cbuf[..total]),
            }
            self.cbuf.advance(total);
        }
        // answers made here that nothing sent is ahead of (a Parse of a statement the
        // connection holds, then Flush) go now, not with the next answer from the server
        self.statements.made(&mut self.to_client);
        Ok(true)
    }

    /// Where a message goes on a sharded listener. Outside a transaction, a query (or a whole
    /// extended-protocol batch) picks the shard of the keys it pins; a lone BEGIN is answered
    /// here and sent later, ahead of the transaction's first statement, to that statement's
    /// shard. Inside a transaction, a statement for another shard (or one whose shard can't
    /// be told) is refused by the server itself, so the transaction fails as PostgreSQL's
    /// would; a Bind for another shard in the middle of a batch ends the session.
    fn shard_step(&mut self, sharding: &Sharding, tag: u8, total: usize) -> Step {
        let attached = self.server.is_some();
        if tag == b'P' {
            // the unnamed statement's text, for a Bind of it in a later piece or batch
            let body = &self.cbuf[5..total];
            if body.first() == Some(&0) {
                self.unnamed = after_name(body).map(Box::from);
            }
        }
        // the keys read from the text are the values stored only if the server reads the
        // text as the parser does
        let encoding = self.wanted.get("client_encoding").unwrap_or("UTF8");
        let encoding = encoding.to_ascii_lowercase().replace(['-', '_'], "");
        let plain = matches!(encoding.as_str(), "utf8" | "unicode")
            && self.wanted.get("standard_conforming_strings") != Some("off");
        let route = match tag {
            b'Q' => {
                let body = &self.cbuf[5..total];
                sharding.route(body.strip_suffix(b"\0").unwrap_or(body), None, plain)
            }
            b'P' | b'B' | b'D' | b'E' | b'C' | b'H' if !self.unsynced => {
                let Some(batch) = Batch::read(&self.cbuf) else {
                    // (what has arrived whole: a large message still arriving is no batch
                    // growing without end)
                    if whole_messages(&self.cbuf) > MAX_SHARDED_BATCH {
                        return self.end_session(
                            Sqlstate::FEATURE_NOT_SUPPORTED,
                            "an extended-protocol batch grew past 1 MiB without a Sync or Flush",
                        );
                    }
                    return Step::Wait;
                };
                if !attached && only_prepares(&batch) {
                    // statements prepared (or closed) with no connection held: the connection
                    // that binds them later prepares them; nothing pins a shard now (and a
                    // client that prepares synchronously, as pgbench does, waits for none)
                    let status = self.status_here();
                    self.answer_here(tag, total, b"", status);
                    return Step::Done;
                }
                batch_route(
                    &batch,
                    &self.statements,
                    self.unnamed.as_deref(),
                    sharding,
                    plain,
                )
            }
            // a Bind inside a batch sent in pieces (after a Flush): checked on its own
            b'B' => {
                let body = &self.cbuf[5..total];
                let parse = statement_parse(body, &[], &self.statements, self.unnamed.as_deref());
                bind_route(body, parse, sharding, plain)
            }
            // a function call or a lone Sync pins nothing: shard 0 when no connection is held
            _ => {
                if !attached {
                    self.shard = 0;
                }
                return Step::Go;
            }
        };
        let failed = self.deferred.as_ref().is_some_and(|d| d.failed);
        match route {
            Route::Begin if !attached && self.deferred.is_none() => {
                let begin = match tag {
                    b'Q' => self.cbuf[5..total].to_vec(),
                    _ => {
                        let batch = Batch::read(&self.cbuf);
                        let bound = batch
                            .as_ref()
                            .map(|b| b.bound(&self.statements, self.unnamed.as_deref()));
                        let parse = bound.and_then(|b| b.last().and_then(|(_, p)| *p));
                        let mut text = parse.map_or(&b"BEGIN"[..], parsed_text).to_vec();
                        text.push(0);
                        text
                    }
                };
                // PostgreSQL's tag says which was written
                let start = String::from_utf8_lossy(&begin)
                    .trim_start()
                    .to_ascii_lowercase()
                    .starts_with("start");
                self.begin_here(tag, total, begin, start)
            }
            Route::End { rollback } if self.deferred.is_some() => {
                self.end_here(tag, total, rollback)
            }
            _ if failed => self.refuse_in_failed(tag, total),
            Route::Refused(why) => self.refuse_route(tag, total, &why),
            Route::Shard(shard) if attached && shard != self.shard => {
                let why = format!(
                    "a transaction runs on one shard: this statement's keys are on shard {shard}, \
                     the transaction's on shard {}",
                    self.shard
                );
                self.refuse_route(tag, total, &why)
            }
            Route::Shard(shard) if !attached => {
                self.shard = shard;
                Step::Go
            }
            _ => {
                if !attached {
                    self.shard = 0;
                }
                Step::Go
            }
        }
    }

    /// Answers a BEGIN here, with no server connection held: the transaction begins for the
    /// client now and on a server ahead of its first statement (`begin`: the query's body,
    /// its text and NUL).
    fn begin_here(&mut self, tag: u8, total: usize, begin: Vec<u8>, start: bool) -> Step {
        let command: &[u8] = if start {
            b"START TRANSACTION"
        } else {
            b"BEGIN"
        };
        self.deferred = Some(Box::new(Deferred {
            begin,
            failed: false,
        }));
        self.answer_here(tag, total, command, b'T');
        Step::Done
    }

    /// Ends here a transaction begun here in which nothing ran.
    fn end_here(&mut self, tag: u8, total: usize, rollback: bool) -> Step {
        let failed = self.deferred.take().is_some_and(|d| d.failed);
        let command: &[u8] = if rollback || failed {
            b"ROLLBACK"
        } else {
            b"COMMIT"
        };
        self.answer_here(tag, total, command, b'I');
        Step::Done
    }

    /// On a listener without sharding, in transaction mode with no server connection held:
    /// a lone plain BEGIN (a simple query, or a batch that binds and runs only it) is
    /// answered here and goes to the server ahead of the transaction's first statement, in
    /// the same write. Each transaction then waits on its server one round trip less and
    /// holds a connection only from its first statement. A transaction in which nothing ran
    /// ends here. A BEGIN with modes (READ ONLY, an isolation level) goes as it is: only a
    /// BEGIN that can't fail on an idle connection is answered for the server.
    fn defer_step(&mut self, tag: u8, total: usize) -> Step {
        let failed = self.deferred.as_ref().is_some_and(|d| d.failed);
        let body = &self.cbuf[5..total];
        let said = match tag {
            b'Q' => bracket(body),
            // the statement a batch parses or binds first: most are no BEGIN or COMMIT, and
            // are told so without reading the batch
            b'P' => parse_text(body).and_then(bracket),
            b'B' => statement_parse(body, &[], &self.statements, None)
                .map(parsed_text)
                .and_then(bracket),
            _ => None,
        };
        // in a failed transaction: a Sync gets its ReadyForQuery, a Flush nothing, anything
        // else PostgreSQL's refusal
        let refused = |s: &mut Self| match tag {
            b'S' | b'H' => {
                if tag == b'S' {
                    let status = s.status_here();
                    proto::put(&mut s.to_client, b'Z', |b| b.put_u8(status));
                }
                s.cbuf.advance(total);
                Step::Done
            }
            _ => s.refuse_in_failed(tag, total),
        };
        let Some(said) = said else {
            return if failed { refused(self) } else { Step::Go };
        };
        if tag != b'Q' {
            // a batch that runs only that statement, to its Sync
            let Some(batch) = Batch::read(&self.cbuf) else {
                return Step::Go;
            };
            let tags: Vec<u8> = batch.messages.iter().map(|(t, _)| *t).collect();
            let lone = matches!(
                tags.as_slice(),
                [b'P', b'B', b'E', b'S']
                    | [b'P', b'B', b'D', b'E', b'S']
                    | [b'B', b'E', b'S']
                    | [b'B', b'D', b'E', b'S']
            );
            let bound = batch.bound(&self.statements, None);
            let same =
                matches!(bound.as_slice(), [(_, Some(p))] if bracket(parsed_text(p)) == Some(said));
            // the Describe and the Execute name what the Bind made (its portal, or the
            // statement it bound), and the Bind passes no parameters
            let cstr = |b: &[u8], n: usize| b.split(|c| *c == 0).nth(n).map(<[u8]>::to_vec);
            let (mut portal, mut statement, mut aimed) = (None, None, true);
            for (tag, body) in &batch.messages {
                match tag {
                    b'B' => {
                        (portal, statement) = (cstr(body, 0), cstr(body, 1));
                        // after the two names: no parameter formats, no parameters
                        let names = portal.as_ref().zip(statement.as_ref());
                        let rest = names.and_then(|(p, s)| body.get(p.len() + s.len() + 2..));
                        aimed &= rest.is_some_and(|r| r.starts_with(&[0, 0, 0, 0]));
                    }
                    b'D' => {
                        aimed &= match body.first() {
                            Some(b'P') => cstr(&body[1..], 0) == portal,
                            Some(b'S') => cstr(&body[1..], 0) == statement,
                            _ => false,
                        }
                    }
                    b'E' => aimed &= cstr(body, 0) == portal,
                    _ => {}
                }
            }
            if !lone || !same || !aimed {
                return if failed { refused(self) } else { Step::Go };
            }
        }
        match said {
            Bracket::Begin { start } if self.deferred.is_none() => {
                let begin = match tag {
                    b'Q' => body.to_vec(),
                    _ if start => b"START TRANSACTION\0".to_vec(),
                    _ => b"BEGIN\0".to_vec(),
                };
                self.begin_here(tag, total, begin, start)
            }
            Bracket::End { rollback } if self.deferred.is_some() => {
                self.end_here(tag, total, rollback)
            }
            _ if failed => refused(self),
            _ => Step::Go,
        }
    }

    /// The transaction status a ReadyForQuery made here says, with no server connection held:
    /// idle, or in the transaction begun here (failed or not).
    fn status_here(&self) -> u8 {
        match &self.deferred {
            None => b'I',
            Some(d) if d.failed => b'E',
            Some(_) => b'T',
        }
    }

    /// Answers here a simple query, or a batch (to its Sync) that runs one statement, as a
    /// server answers a statement that returns no rows: CommandComplete with `command`, then
    /// ReadyForQuery with `status`. A named statement the batch parses is remembered, to be
    /// prepared on whichever connection binds it later.
    fn answer_here(&mut self, tag: u8, total: usize, command: &[u8], status: u8) {
        let end = if tag == b'Q' {
            proto::put(&mut self.to_client, b'C', |b| {
                b.put_slice(command);
                b.put_u8(0)
            });
            total
        } else {
            let Some(batch) = Batch::read(&self.cbuf) else {
                return;
            };
            for (tag, body) in &batch.messages {
                let body = *body;
                match tag {
                    // each Parse of the batch counts against the limit, not only its first
                    b'P' if self.statements.too_many(body) => {
                        self.too_many_statements();
                        return;
                    }
                    b'P' => {
                        self.statements.remember(body);
                        proto::put(&mut self.to_client, b'1', |_| {});
                    }
                    b'B' => proto::put(&mut self.to_client, b'2', |_| {}),
                    b'D' => {
                        if body.first() == Some(&b'S') {
                            // a statement without parameters
                            proto::put(&mut self.to_client, b't', |b| b.put_u16(0));
                        }
                        proto::put(&mut self.to_client, b'n', |_| {});
                    }
                    b'E' => proto::put(&mut self.to_client, b'C', |b| {
                        b.put_slice(command);
                        b.put_u8(0)
                    }),
                    b'C' => {
                        if let (Some(b'S'), Some(name)) = (body.first(), body.get(1..)) {
                            let name = name.split(|b| *b == 0).next().unwrap_or(&[]);
                            if let Ok(name) = std::str::from_utf8(name) {
                                self.statements.forget(name);
                            }
                        }
                        proto::put(&mut self.to_client, b'3', |_| {})
                    }
                    _ => {}
                }
            }
            batch.len
        };
        proto::put(&mut self.to_client, b'Z', |b| b.put_u8(status));
        self.cbuf.advance(end);
    }

    /// Refuses a message sharding can't place: answered here when no server connection is
    /// held; in a transaction on a server, refused by the server (a simple query or a whole
    /// batch is swapped for one that raises the error, so the transaction fails there as it
    /// would on PostgreSQL); anything else ends the session.
    fn refuse_route(&mut self, tag: u8, total: usize, why: &str) -> Step {
        if self.server.is_none() {
            if let Some(d) = self.deferred.as_mut() {
                d.failed = true;
            }
            return self.refuse_here(tag, total, Sqlstate::FEATURE_NOT_SUPPORTED, why);
        }
        // the whole of what gets the one answer: the query, or the batch to its Sync
        let end = if tag == b'Q' {
            Some(total)
        } else if self.unsynced {
            None
        } else {
            Batch::read(&self.cbuf).filter(|b| b.synced).map(|b| b.len)
        };
        let Some(end) = end else {
            return self.end_session(Sqlstate::FEATURE_NOT_SUPPORTED, why);
        };
        // the server fails the transaction (so a COMMIT rolls it back, as PostgreSQL's would);
        // the client reads the pooler's error, not the raise's
        const RAISE: &[u8] = b"DO $$BEGIN RAISE EXCEPTION USING ERRCODE = '0A000'; END$$\0";
        let mut error = BytesMut::new();
        proto::put_error(&mut error, false, Sqlstate::FEATURE_NOT_SUPPORTED, why);
        self.cbuf.advance(end);
        self.pending += 1;
        self.statements
            .replaced_query(RAISE, error.to_vec(), &mut self.to_server);
        Step::Done
    }

    /// Refuses a message with no server connection involved: a simple query gets its error
    /// and ReadyForQuery now; a batch, its error now and ReadyForQuery at its Sync.
    fn refuse_here(&mut self, tag: u8, total: usize, code: Sqlstate, why: &str) -> Step {
        proto::put_error(&mut self.to_client, false, code, why);
        let status = if self.deferred.is_some() { b'E' } else { b'I' };
        if matches!(tag, b'Q' | b'F') {
            // (a function call, as a query, is answered on its own)
            proto::put(&mut self.to_client, b'Z', |b| b.put_u8(status));
            self.cbuf.advance(total);
        } else {
            self.discarding = true;
            self.discard_status = status;
        }
        Step::Done
    }

    /// Refuses a message in a transaction that failed here, as PostgreSQL does (25P02).
    fn refuse_in_failed(&mut self, tag: u8, total: usize) -> Step {
        self.refuse_here(tag, total, Sqlstate::IN_FAILED_TRANSACTION, IN_FAILED)
    }

    /// Ends the session of a client past [`crate::prepared::MAX_CLIENT_STATEMENTS`].
    fn too_many_statements(&mut self) {
        self.end_session(
            Sqlstate::PROGRAM_LIMIT_EXCEEDED,
            &format!(
                "too many prepared statements: a client keeps at most {} (close some, or DEALLOCATE them)",
                crate::prepared::MAX_CLIENT_STATEMENTS
            ),
        );
    }

    /// Ends the session with a FATAL error: its server connection, mid-batch, is closed (and
    /// its transaction rolled back by the server) rather than reused.
    fn end_session(&mut self, code: Sqlstate, why: &str) -> Step {
        tracing::info!(listener = %self.svc.name, "client closed: {why}");
        proto::put_error(&mut self.to_client, true, code, why);
        self.cbuf.clear();
        self.closing = true;
        Step::Done
    }

    /// SQL-level `DEALLOCATE name` of one of the client's protocol-level statements, whose
    /// server name differs from the client's (and which the server connection keeps for
    /// the next client that prepares it): the client's name is forgotten and the answer made
    /// here. With answers in flight, or in a failed transaction, the server gets it instead,
    /// under the statement's server name (and the connection forgets holding it). False for
    /// anything else, which goes on as it is.
    fn deallocated(&mut self, total: usize) -> bool {
        let body = &self.cbuf[5..total];
        // most queries start with another word: not worth reading further
        let first = body.iter().find(|b| !b.is_ascii_whitespace());
        if !matches!(first, Some(b'd' | b'D')) {
            return false;
        }
        if forgets_all(body) {
            // the client asks to have no statements: its names go now, before anything it
            // sends behind this (the server connection's go when the server says it did it)
            self.statements.clear();
            return false;
        }
        let Some(name) = deallocate_name(body) else {
            return false;
        };
        if !self.statements.knows(&name) {
            // not one of its protocol-level statements: the server's business
            return false;
        }
        // the transaction status the answer ends with, as the client sees it
        let status = match (&self.deferred, self.server.is_some()) {
            (Some(d), _) if d.failed => b'E',
            (Some(_), _) => b'T',
            (None, true) => self.status,
            (None, false) => b'I',
        };
        let in_flight = self.pending > 0 || !self.statements.settled() || self.unsynced;
        let mut answer = BytesMut::new();
        if status == b'E' && !in_flight {
            // a failed transaction ignores it, as PostgreSQL does, and the name stays
            proto::put_error(
                &mut answer,
                false,
                Sqlstate::IN_FAILED_TRANSACTION,
                IN_FAILED,
            );
        } else {
            self.statements.forget(&name);
            proto::put(&mut answer, b'C', |b| b.put_slice(b"DEALLOCATE\0"));
        }
        proto::put(&mut answer, b'Z', |b| b.put_u8(status));
        if in_flight {
            // after the answers the client waits for first
            self.statements.answer(answer.to_vec());
        } else {
            self.to_client.extend_from_slice(&answer);
        }
        true
    }

    /// Sends the query (or batch) at the start of `cbuf` (`total` bytes), which only reads, on
    /// a line of the pool it would get a connection from, when that pool is busy and one of
    /// its lines carries this client's parameters and has fewer than `max` queries; `named`:
    /// the Parse of each named statement it uses ([`shared_batch`]).
    fn join_line(&mut self, to_replica: bool, total: usize, named: &[Vec<u8>], max: usize) -> bool {
        let Some(server) = self.svc.busy_pool(&self.pool, self.shard, to_replica, 0) else {
            return false;
        };
        let Some(ticket) = server
            .lines
            .join(self.wanted.key(), max, &self.cbuf[..total], named)
        else {
            return false;
        };
        if to_replica {
            self.svc.turn_taken();
        }
        self.svc.stats.assigned.inc();
        self.svc.stats.wait.observe(Duration::ZERO);
        self.svc.stats.active.inc();
        self.on_line(ticket, total);
        true
    }

    /// Makes the connection just attached for the query at the start of `cbuf` (`total`
    /// bytes), which only reads, a line that other clients' such queries can join, when its
    /// pool is busy; the query is the line's first.
    fn start_line(&mut self, total: usize, named: &[Vec<u8>]) -> bool {
        let Some(lease) = self.server.take_if(|l| self.svc.shares(l.pool())) else {
            return false;
        };
        let lines = lease.pool().lines.clone();
        let ticket = lines.start(*lease, self.wanted.key(), &self.cbuf[..total], named);
        self.on_line(ticket, total);
        true
    }

    fn on_line(&mut self, ticket: Ticket, total: usize) {
        self.svc.stats.shared.inc();
        cancel::point(&self.key, cancel::Target::Queued(ticket.turn.clone()));
        self.line = Some(Box::new(ticket));
        self.cbuf.advance(total);
    }

    /// Passes on what came of the query sent on a line; once it is answered (or its
    /// connection lost, which fails the query alone), the client holds nothing again.
    fn line_answered(&mut self, part: Option<Part>) {
        match part {
            Some(Part::Some(bytes)) => {
                self.to_client.extend_from_slice(&bytes);
                return;
            }
            Some(Part::Last(bytes)) => self.to_client.extend_from_slice(&bytes),
            None if self.line.as_ref().is_some_and(|l| l.turn.dropped()) => {
                // what it was sent of its answer is cut short: nothing more can follow it
                let why = format!(
                    "the answer to a query on a shared server connection was not read for {} s: dropped, so that the queries behind it get theirs",
                    crate::pipeline::TAKE.as_secs()
                );
                proto::put_error(
                    &mut self.to_client,
                    true,
                    Sqlstate::CONNECTION_FAILURE,
                    &why,
                );
                self.closing = true;
            }
            None => {
                proto::put_error(
                    &mut self.to_client,
                    false,
                    Sqlstate::CONNECTION_FAILURE,
                    "the server connection was lost",
                );
                proto::put(&mut self.to_client, b'Z', |b| b.put_u8(b'I'));
            }
        }
        self.line = None;
        self.status = b'I';
        self.svc.stats.active.dec();
        cancel::point(&self.key, cancel::Target::None);
    }

    /// Gets a server connection with the client's parameters; on failure tells the client.
    async fn attach(&mut self, to_replica: bool, read_only: bool) -> bool {
        // boxed: held inline, the wait (timed) made every client's state, idle ones too, 300
        // bytes bigger (bench/db.sh's idle slope: 2,397 bytes a client against 2,097)
        let lease = match Box::pin(self.svc.assign(&self.pool, self.shard, to_replica)).await {
            Ok((l, replica)) => {
                self.on_replica = replica;
                self.read_only = read_only;
                l
            }
            Err(e) => {
                self.svc.stats.no_server.inc();
                tracing::warn!(listener = %self.svc.name, user = %self.pool.user, "{e}");
                let (_, message) = crate::pool::told(&e);
                proto::put_error(
                    &mut self.to_client,
                    false,
                    Sqlstate::CANNOT_CONNECT_NOW,
                    &message,
                );
                return false;
            }
        };
        let mut lease = lease;
        if let Err(e) = self.carry_parameters(&mut lease.conn).await {
            tracing::warn!(listener = %self.svc.name, "carrying the client's parameters failed: {e}");
            lease.close();
            proto::put_error(
                &mut self.to_client,
                false,
                Sqlstate::CONNECTION_FAILURE,
                "could not set the session's parameters on a server connection",
            );
            return false;
        }
        cancel::point(&self.key, cancel::Target::Held(lease.cancel_to()));
        self.svc.stats.active.inc();
        self.server = Some(Box::new(lease));
        true
    }

    /// Makes `conn`'s session this client's: a connection another client changed (SET,
    /// DISCARD, PREPARE...) is reset first (RESET ALL, and its prepared statements dropped);
    /// then each carried parameter the client wants is set (with set_config, which takes list
    /// values such as search_path as written) and each one another client set is reset.
    async fn carry_parameters(
        &self,
        conn: &mut crate::server::ServerConn,
    ) -> Result<(), crate::server::ServerError> {
        // most often the connection's last client had the same parameters, or this one
        let key = self.wanted.key();
        if !conn.dirty && conn.carried == key && conn.extras == self.wanted.extra_hash() {
            return Ok(());
        }
        // a connection that holds another client's extra parameters is reset too
        if conn.dirty || (conn.extras != 0 && conn.extras != self.wanted.extra_hash()) {
            // RESET ALL reports the reported parameters back (conn.params follows); the others
            // are gone without a word. Role and session authorization are not RESET ALL's.
            conn.run(RESET).await?;
            session_reset(conn);
        }
        let mut calls = Vec::new();
        for k in CARRIED {
            match (self.wanted.get(k), conn.params().get(*k)) {
                (Some(v), now) if now.map(String::as_str) != Some(v) => {
                    calls.push(format!("set_config({}, {}, false)", literal(k), literal(v)))
                }
                (None, Some(_)) if !REPORTED.contains(k) => {
                    calls.push(format!("set_config({}, NULL, false)", literal(k)))
                }
                _ => {}
            }
        }
        // the extra parameters, unless the connection holds this client's already
        if conn.extras != self.wanted.extra_hash() {
            calls.extend(self.wanted.extra_calls());
        }
        if calls.is_empty() {
            conn.carried = key;
            return Ok(());
        }
        conn.run(&format!("SELECT {}", calls.join(", "))).await?;
        conn.extras = self.wanted.extra_hash();
        for k in CARRIED {
            match self.wanted.get(k) {
                Some(v) => {
                    conn.set_param(k.to_string(), v.to_string());
                }
                None if !REPORTED.contains(k) => {
                    conn.forget_param(k);
                }
                None => {}
            }
        }
        conn.carried = key;
        Ok(())
    }

    /// Handles what the server has sent; false when it closed or broke the protocol.
    fn server_sent(&mut self) -> bool {
        let Some(lease) = self.server.as_mut() else {
            return true; // nothing attached: nothing to read
        };
        match lease.conn.stream.try_recv_buf(&mut lease.conn.buf) {
            Ok(0) => return false,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return true,
            Err(_) => return false,
        }
        loop {
            let total = match proto::message_len(&lease.conn.buf) {
                Ok(Some(t)) => t,
                Ok(None) => break,
                Err(_) => return false,
            };
            let tag = lease.conn.buf[0];
            if tag == b'E' && self.mode == PoolMode::Transaction && self.statements.hidden_next() {
                // the BEGIN sent ahead of a transaction's first statement failed: the client,
                // told it had begun, can't be put right; the session ends, its connection with
                // it
                let why = proto::error_message(&lease.conn.buf[5..total]);
                self.lost =
                    Some(format!("the transaction could not begin on its server: {why}").into());
                return false;
            }
            match tag {
                b'Z' => {
                    lease.answered();
                    self.pending = self.pending.saturating_sub(1);
                    // ReadyForQuery's one byte, inside this message (a short one reads as idle)
                    self.status = if total >= 6 { lease.conn.buf[5] } else { b'I' };
                }
                b'S' => {
                    let mut body = BytesMut::from(&lease.conn.buf[5..total]);
                    if let Some((k, v)) = lease.conn.param(&mut body) {
                        self.wanted.set(k, v);
                    }
                }
                b'G' => {
                    self.copy_in = true;
                    // Syncs sent after the Execute that started this COPY reach the server in
                    // copy mode, where it ignores them: they will get no ReadyForQuery
                    let ignored = std::mem::take(&mut self.syncs_after_execute);
                    self.pending = self.pending.saturating_sub(ignored);
                    self.statements.copy_started(ignored);
                }
                b'C' if changes_session(&lease.conn.buf[5..total]) => {
                    lease.conn.dirty = true;
                    let body = &lease.conn.buf[5..total];
                    if body.starts_with(b"DEALLOCATE ALL") || body.starts_with(b"DISCARD ALL") {
                        // the connection holds no prepared statements now (the client's
                        // names went when it sent this)
                        lease.conn.statements.clear();
                    }
                }
                _ => {}
            }
            if self.mode == PoolMode::Transaction {
                self.statements.incoming(
                    tag,
                    &lease.conn.buf[..total],
                    &mut lease.conn.statements,
                    &mut self.to_client,
                );
            } else {
                self.to_client.extend_from_slice(&lease.conn.buf[..total]);
            }
            lease.conn.buf.advance(total);
        }
        if self.mode == PoolMode::Transaction && self.clean() {
            self.detach();
        }
        true
    }

    /// When a client idle inside a transaction is closed: set from the first moment it is
    /// so (a server connection held, the transaction open or failed, nothing in flight),
    /// cleared when it is not; `None` without `idle_transaction_timeout`.
    fn idle_in_transaction(&mut self) -> Option<tokio::time::Instant> {
        // as PostgreSQL starts its own timer: after a ReadyForQuery, with nothing sent since
        // (an Execute flushed without a Sync is still running, or a cursor still being read)
        let idle = matches!(self.status, b'T' | b'E')
            && self.pending == 0
            && !self.unsynced
            && !self.copy_in
            && self.statements.settled()
            && self.to_server.is_empty()
            && self.to_client.is_empty()
            && self.server.as_ref().is_some_and(|l| l.conn.buf.is_empty());
        let limit = self.svc.idle_transaction_timeout().filter(|_| idle);
        match limit {
            Some(limit) => Some(
                *self
                    .idle_since
                    .get_or_insert_with(tokio::time::Instant::now)
                    + limit,
            ),
            None => {
                self.idle_since = None;
                None
            }
        }
    }

    /// Nothing in flight and no transaction open: the connection can serve another client.
    fn clean(&self) -> bool {
        self.pending == 0
            && self.statements.settled()
            && !self.unsynced
            && !self.copy_in
            && self.status == b'I'
            && self.to_server.is_empty()
            && self.server.as_ref().is_some_and(|l| l.conn.buf.is_empty())
    }

    fn detach(&mut self) {
        if let Some(lease) = self.server.take() {
            self.svc.stats.active.dec();
            if !self.on_replica && !self.read_only {
                // what ran on the primary may have written (a transaction that said READ
                // ONLY did not): read it there for a while
                self.last_primary = Some(std::time::Instant::now());
            }
            cancel::point(&self.key, cancel::Target::None);
            lease.release();
        }
    }

    /// In session mode, between transactions: the primary of the session's shard, when it is
    /// another server than the one the session's connection is on.
    fn left_behind(&self) -> Option<SocketAddr> {
        let lease = self.server.as_ref()?;
        if self.status != b'I' || self.pending > 0 || self.unsynced || self.copy_in {
            return None;
        }
        let primary = self.svc.roles().primary(self.shard)?;
        (primary != lease.conn.addr).then_some(primary)
    }

    /// The server connection broke while the client held it: the client's transaction is
    /// lost, and the client is told so and closed (the next connection gets a healthy one).
    fn server_lost(&mut self) {
        self.server_lost_as(Sqlstate::CONNECTION_FAILURE);
    }

    /// [`Session::server_lost`], telling the client `code`.
    fn server_lost_as(&mut self, code: Sqlstate) {
        if let Some(lease) = self.server.take() {
            self.svc.stats.active.dec();
            cancel::point(&self.key, cancel::Target::None);
            let why = self
                .lost
                .as_deref()
                .unwrap_or("server connection lost in a transaction");
            tracing::warn!(listener = %self.svc.name, server = %lease.conn.addr, "{why}");
            lease.close();
        }
        let why = self.lost.take();
        proto::put_error(
            &mut self.to_client,
            true,
            code,
            why.as_deref().unwrap_or("the server connection was lost"),
        );
        self.pending = 0;
        self.unsynced = false;
        self.copy_in = false;
        self.status = b'I';
        self.to_server.clear();
        // nothing the client sent behind what was lost runs (it may have been meant for the
        // transaction): a FATAL ends the session once it has reached the client
        self.cbuf.clear();
        self.deferred = None;
        self.closing = true;
    }

    /// Tells the client why it is let go, unless answers it has not read stand in the way
    /// (the message would land inside one); a client that reads nothing holds up the task no
    /// more than a second.
    async fn let_go(&mut self, code: Sqlstate, message: &str) {
        if self.to_client.is_empty() {
            let told = refuse(&mut self.client, code, message);
            let _ = tokio::time::timeout(Duration::from_secs(1), told).await;
        }
    }

    /// The client passed client_idle_timeout: logged, told, let go (the caller ends it).
    async fn idle_too_long(&mut self) {
        tracing::info!(listener = %self.svc.name, client = self.key.pid, "a client idle past client_idle_timeout: closed");
        self.let_go(Sqlstate::IDLE_SESSION_TIMEOUT, IDLE_TOO_LONG)
            .await;
    }

    /// It holds no server connection and waits on no line.
    fn holds_nothing(&self) -> bool {
        self.server.is_none() && self.line.is_none()
    }

    /// Logs why the session ended, when it failed: the client by its number, which the log
    /// of its login ties to its address (kept for the whole session, the address would cost
    /// every idle client its bytes).
    fn ended(&self, end: Result<(), ClientError>) {
        if let Err(e) = end {
            tracing::debug!(listener = %self.svc.name, client = self.key.pid, "client ended: {e}");
        }
    }

    /// The client is gone: its server connection, if any, goes back to the pool only once it
    /// is clean (what was in flight read to its end, an open transaction rolled back, and in
    /// session mode the session reset); otherwise it is closed.
    async fn finish(&mut self) {
        cancel::unregister(&self.key);
        if self.line.take().is_some() {
            // its answer is dropped as it comes; the line goes on
            self.svc.stats.active.dec();
        }
        let Some(mut lease) = self.server.take() else {
            return;
        };
        self.svc.stats.active.dec();
        let mode = self.mode;
        let (mut pending, unsynced, copy_in, status) =
            (self.pending, self.unsynced, self.copy_in, self.status);
        let settled = self.statements.settled() || mode == PoolMode::Session;
        if unsynced {
            // a Sync now would commit what the client sent without one (PostgreSQL rolls it
            // back when a client leaves so): close the connection instead
            lease.close();
            return;
        }
        let to_server = std::mem::take(&mut self.to_server);
        let name = self.svc.name.clone();
        tokio::spawn(async move {
            let cleaned = tokio::time::timeout(CLEANUP, async {
                let mut out = to_server;
                if copy_in {
                    proto::put(&mut out, b'f', |b| {
                        proto::put_cstr(b, "client disconnected")
                    });
                }
                lease.conn.write(&out).await?;
                let mut status = status;
                while pending > 0 {
                    let (tag, body) = lease.conn.read().await?;
                    match tag {
                        b'Z' => {
                            pending -= 1;
                            status = body.first().copied().unwrap_or(b'I');
                        }
                        b'S' => {
                            let mut body = body;
                            lease.conn.param(&mut body);
                        }
                        b'C' if changes_session(&body) => lease.conn.dirty = true,
                        b'G' => {
                            let mut fail = BytesMut::new();
                            proto::put(&mut fail, b'f', |b| {
                                proto::put_cstr(b, "client disconnected")
                            });
                            lease.conn.write(&fail).await?;
                        }
                        _ => {}
                    }
                }
                if status != b'I' {
                    status = lease.conn.run("ROLLBACK").await?.1;
                }
                if !settled {
                    // which of the statements sent for it exist is not known: none, now
                    status = lease.conn.run("DEALLOCATE ALL").await?.1;
                    lease.conn.statements.clear();
                }
                if status != b'I' {
                    // still in a transaction (one the pooler's view had missed): never handed
                    // to another client so
                    return Err(crate::server::ServerError::InTransaction(lease.conn.addr));
                }
                if mode == PoolMode::Session {
                    // RESET ALL inside reports the parameters the server reports; the others
                    // the pooler set are gone without a word
                    lease.conn.run("DISCARD ALL").await?;
                    session_reset(&mut lease.conn);
                }
                Ok::<_, crate::server::ServerError>(())
            })
            .await;
            match cleaned {
                Ok(Ok(())) if lease.conn.buf.is_empty() => lease.release(),
                Ok(Err(e)) => {
                    tracing::debug!(listener = %name, "closing a server connection its client left dirty: {e}");
                    lease.close();
                }
                _ => lease.close(),
            }
        });
    }
}

/// The next part of the answer to a query sent on a line (`None`: its connection was lost).
async fn answer(line: &mut Option<Box<Ticket>>) -> Option<Part> {
    match line {
        Some(t) => t.answer.recv().await,
        None => std::future::pending().await,
    }
}

async fn readable(server: &Option<Box<Lease>>) -> std::io::Result<()> {
    match server {
        Some(l) => l.conn.stream.readable().await,
        None => std::future::pending().await,
    }
}

async fn writable(server: &Option<Box<Lease>>) -> std::io::Result<()> {
    match server {
        Some(l) => l.conn.stream.writable().await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deallocate_names_are_read_as_postgresql_reads_them() {
        let name = |q: &str| deallocate_name(format!("{q}\0").as_bytes());
        assert_eq!(name("DEALLOCATE s1"), Some("s1".into()));
        assert_eq!(name("  deallocate prepare S1 ;"), Some("s1".into()));
        assert_eq!(name("DEALLOCATE \"Mixed\"\"q\""), Some("Mixed\"q".into()));
        assert_eq!(name("DEALLOCATE _pg3_0"), Some("_pg3_0".into()));
        // PREPARE is not reserved: alone, it is the name
        assert_eq!(name("DEALLOCATE prepare"), Some("prepare".into()));
        for not in [
            "DEALLOCATE ALL",
            "deallocate prepare all",
            "DEALLOCATE a; select 1",
            "DEALLOCATE \"a\"b\"",
            "DEALLOCATEa",
            "DEALLOCATE 1a",
            "select 1",
            "DEALLOCATE",
        ] {
            assert_eq!(name(not), None, "{not}");
        }
    }

    #[test]
    fn only_whole_batches_of_known_statements_may_share_a_connection() {
        let none = ClientStatements::default();
        let shared = |b: &[u8], known: &ClientStatements| {
            Batch::read(b).and_then(|b| shared_batch(&b, known))
        };
        let len = |b: &[u8]| shared(b, &none).map(|(len, _)| len);
        let m = |tag: u8, body: &[u8]| {
            let mut out = vec![tag];
            out.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
            out.extend_from_slice(body);
            out
        };
        let parse = |name: &str| m(b'P', format!("{name}\0select 1\0\0\0").as_bytes());
        let bind = |portal: &str, stmt: &str| {
            m(b'B', format!("{portal}\0{stmt}\0\0\0\0\0\0\0").as_bytes())
        };
        let (describe, execute, sync) = (m(b'D', b"P\0"), m(b'E', b"\0\0\0\0\0"), m(b'S', b""));
        let batch = |parts: &[&Vec<u8>]| {
            parts
                .iter()
                .flat_map(|p| p.iter().copied())
                .collect::<Vec<u8>>()
        };
        let good = batch(&[&parse(""), &bind("", ""), &describe, &execute, &sync]);
        assert_eq!(len(&good), Some(good.len()));
        // what follows the Sync is not the batch's
        let mut more = good.clone();
        more.extend_from_slice(&m(b'Q', b"select 2\0"));
        assert_eq!(len(&more), Some(good.len()));
        for (why, bad) in [
            ("no Sync yet", batch(&[&parse(""), &bind("", ""), &execute])),
            (
                "a Flush, not a Sync",
                batch(&[&parse(""), &bind("", ""), &execute, &m(b'H', b"")]),
            ),
            (
                "a named statement parsed in it",
                batch(&[&parse("s1"), &bind("", "s1"), &execute, &sync]),
            ),
            (
                "a named statement the client did not prepare",
                batch(&[&bind("", "s1"), &execute, &sync]),
            ),
            (
                "a named portal",
                batch(&[&parse(""), &bind("p", ""), &execute, &sync]),
            ),
            (
                "a Bind of a statement parsed before",
                batch(&[&bind("", ""), &execute, &sync]),
            ),
            ("a Close", batch(&[&parse(""), &m(b'C', b"S\0"), &sync])),
            (
                "a statement described by name",
                batch(&[&parse(""), &m(b'D', b"Ss1\0"), &sync]),
            ),
        ] {
            assert_eq!(len(&bad), None, "{why}");
        }
        // a statement the client prepared by name: the batch shares, with its Parse
        let mut known = ClientStatements::default();
        known.remember(b"s1\0select 1\0\0\0");
        let named = batch(&[&bind("", "s1"), &describe, &execute, &sync]);
        assert_eq!(
            shared(&named, &known),
            Some((named.len(), vec![b"s1\0select 1\0\0\0".to_vec()]))
        );
        // a batch that only prepares by name (or closes): answered without a connection
        // when every one is taken
        let prepares = |b: &[u8]| Batch::read(b).is_some_and(|b| only_prepares(&b));
        assert!(prepares(&batch(&[&parse("s1"), &parse("s2"), &sync])));
        assert!(prepares(&batch(&[&parse("s1"), &m(b'C', b"Ss0\0"), &sync])));
        for bad in [
            batch(&[&parse("s1")]),
            batch(&[&parse(""), &sync]),
            batch(&[&parse("s1"), &m(b'D', b"Ss1\0"), &sync]),
            batch(&[&parse("s1"), &m(b'H', b"")]),
        ] {
            assert!(!prepares(&bad));
        }
        let described = batch(&[&m(b'D', b"Ss1\0"), &bind("", "s1"), &execute, &sync]);
        assert_eq!(
            shared(&described, &known).map(|(_, n)| n.len()),
            Some(1),
            "the statement's Parse once"
        );
    }

    #[test]
    fn only_a_plain_transaction_start_or_end_is_a_bracket() {
        let begin = Some(Bracket::Begin { start: false });
        let start = Some(Bracket::Begin { start: true });
        let commit = Some(Bracket::End { rollback: false });
        let rollback = Some(Bracket::End { rollback: true });
        for (sql, said) in [
            ("BEGIN", begin),
            ("begin;\0", begin),
            ("  Begin Work ; \n", begin),
            ("BEGIN\tTRANSACTION", begin),
            ("START TRANSACTION;", start),
            ("END;", commit),
            ("commit work", commit),
            ("ROLLBACK", rollback),
            ("abort transaction;", rollback),
            ("BEGIN READ ONLY", None),
            ("BEGIN ISOLATION LEVEL SERIALIZABLE", None),
            ("BEGIN ISOLATION LEVEL", None),
            ("START TRANSACTION READ WRITE", None),
            ("START", None),
            ("BEGIN; UPDATE t SET a = 1", None),
            ("BEGIN;;", None),
            ("COMMIT AND CHAIN", None),
            ("ROLLBACK TO SAVEPOINT a", None),
            ("begin -- comment", None),
            ("BEGIN\x0b", None),
            ("beginning", None),
            ("SELECT 1", None),
            ("", None),
        ] {
            assert_eq!(bracket(sql.as_bytes()), said, "{sql:?}");
        }
    }

    #[test]
    fn only_a_lone_begin_read_only_goes_to_a_replica() {
        for yes in [
            "BEGIN READ ONLY",
            "begin transaction read only;",
            "START TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY\0",
            "begin read only deferrable",
            " \n\tBegin Read Only",
        ] {
            assert!(begins_read_only(yes.as_bytes()), "{yes}");
        }
        for no in [
            "BEGIN",
            "BEGIN READ WRITE",
            "BEGIN ISOLATION LEVEL READ COMMITTED",
            "BEGIN READ ONLY; DELETE FROM t",
            "select 1",
            "  with x as (select 1) select * from x",
            "beginning read only",
            "begin read only -- comment",
        ] {
            assert!(!begins_read_only(no.as_bytes()), "{no}");
        }
    }

    /// tokio puts a task's future in a cell with 104 bytes of header and trailer, aligned to
    /// 128 bytes: at most 536 bytes of future make a 640-byte task, which is what an idle
    /// client costs besides its socket's registration and its cancel key.
    #[test]
    fn an_idle_client_task_is_640_bytes() {
        fn returned<A, F>(_: impl Fn(A) -> F) -> usize {
            std::mem::size_of::<F>()
        }
        let size = returned(super::serve);
        assert!(size <= 536, "the client's future is {size} bytes");
    }
}
