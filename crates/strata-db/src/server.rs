//! One connection to a PostgreSQL server: logging in (trust, md5 or SCRAM-SHA-256), the
//! parameters it reports, its cancel key, and running the pooler's own statements on it.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use bytes::{Buf, BytesMut};
use rustls_pki_types::ServerName;
use strata_config::{DatabaseListener, ServerTlsMode};
use strata_net::tls::{TlsError, Verify};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::auth::{md5_response, AuthError, Credential, ScramClient};
use crate::proto::{self, ProtoError};
use crate::stream::PgStream;

/// How long a statement the pooler runs itself may take: they are all small (a parameter
/// set, a reset, a rollback, a check), so a server that takes longer is stuck.
pub const OWN_STATEMENT: std::time::Duration = std::time::Duration::from_secs(10);

/// Why a server connection could not be made or used.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Connecting, reading or writing failed.
    #[error("{addr}: {source}")]
    Io {
        /// The server.
        addr: SocketAddr,
        /// What failed.
        #[source]
        source: io::Error,
    },
    /// The server did not finish logging in within the connect timeout.
    #[error("{0}: no answer within the connect timeout")]
    Timeout(SocketAddr),
    /// The server did not answer a statement of the pooler's own (a parameter set, a reset,
    /// a check) within [`OWN_STATEMENT`]: it is stuck, and the connection is given up.
    #[error("{0}: no answer to the pooler's own statement within {OWN_STATEMENT:?}")]
    Stuck(SocketAddr),
    /// A connection a client left was still in a transaction after the pooler's cleanup:
    /// it is closed, never handed to another client.
    #[error("{0}: still in a transaction after its client's cleanup")]
    InTransaction(SocketAddr),
    /// The server refused the login or a statement, with its message.
    #[error("{addr}: {message}")]
    Refused {
        /// The server.
        addr: SocketAddr,
        /// Its ErrorResponse's SQLSTATE.
        code: Option<String>,
        /// Its ErrorResponse.
        message: String,
    },
    /// Strata could not answer the server's authentication request.
    #[error("{addr}: {source}")]
    Auth {
        /// The server.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: AuthError,
    },
    /// The server does not take TLS (it answered the SSLRequest 'N'), and the listener's
    /// `server_tls_mode` needs it.
    #[error("{addr}: the server does not take TLS (it answered the SSL request 'N'), and server_tls_mode = \"{}\" needs it", mode.as_str())]
    NoTls {
        /// The server.
        addr: SocketAddr,
        /// The mode that needs TLS.
        mode: ServerTlsMode,
    },
    /// The TLS handshake with the server failed (its certificate refused, among others).
    #[error("{addr}: TLS handshake: {source}")]
    Tls {
        /// The server.
        addr: SocketAddr,
        /// What failed.
        #[source]
        source: io::Error,
    },
    /// The server sent bytes that are not the protocol.
    #[error("{addr}: {source}")]
    Protocol {
        /// The server.
        addr: SocketAddr,
        /// What was wrong.
        #[source]
        source: ProtoError,
    },
}

/// How a listener dials its servers: in clear or on TLS (`server_tls_*`, swapped in by a
/// reload), logging in as a pool's user.
pub struct Dialer {
    tls: ArcSwap<ServerTls>,
    /// The deadlines of the TLS connections' relays.
    timers: Arc<strata_net::Timers>,
    /// What the last connection made to each server is on ("TLSv1.3", "clear"), for
    /// `/status`: under `prefer`, whether TLS is in use is the server's choice.
    seen: std::sync::Mutex<HashMap<SocketAddr, &'static str>>,
}

/// One generation of the `server_tls_*` settings, loaded. A connection keeps the one it was
/// made with: its cancel requests go the same way, and it is not reused once a reload
/// changed the settings.
pub(crate) struct ServerTls {
    /// As configured.
    settings: strata_config::ServerTls,
    /// Counts the reloads that changed the settings.
    generation: u64,
    mode: ServerTlsMode,
    /// `None` for `disable`.
    connector: Option<tokio_rustls::TlsConnector>,
    /// `server_tls_name`: what the certificate must name, and the SNI.
    name: Option<ServerName<'static>>,
}

impl ServerTls {
    /// In clear: `server_tls_mode = "disable"`.
    fn clear() -> ServerTls {
        ServerTls {
            settings: strata_config::ServerTls {
                mode: ServerTlsMode::Disable,
                ca: None,
                name: None,
                cert: None,
            },
            generation: 0,
            mode: ServerTlsMode::Disable,
            connector: None,
            name: None,
        }
    }

    /// Loads `config`'s `server_tls_*` files (the CA certificates, the client certificate).
    fn of(config: &DatabaseListener) -> Result<ServerTls, TlsError> {
        let tls = &config.server_tls;
        let fault = |why: String| TlsError {
            listener: config.name.clone(),
            path: Default::default(),
            why,
        };
        let verify = match tls.mode {
            ServerTlsMode::Disable => {
                return Ok(ServerTls {
                    settings: tls.clone(),
                    generation: 0,
                    mode: tls.mode,
                    connector: None,
                    name: None,
                })
            }
            ServerTlsMode::Prefer | ServerTlsMode::Require => Verify::Nothing,
            ServerTlsMode::VerifyCa => Verify::Chain,
            ServerTlsMode::VerifyFull => Verify::ChainAndName,
        };
        let name = match &tls.name {
            Some(n) => Some(
                ServerName::try_from(n.clone())
                    .map_err(|e| fault(format!("server_tls_name \"{n}\": {e}")))?,
            ),
            None => None,
        };
        let cert = tls
            .cert
            .as_ref()
            .map(|c| (c.cert.as_path(), c.key.as_path()));
        // ALPN as libpq 17 offers it (a server that knows none ignores it)
        let config = strata_net::tls::client_config(
            &config.name,
            verify,
            tls.ca.as_deref(),
            cert,
            &[b"postgresql"],
        )?;
        Ok(ServerTls {
            settings: tls.clone(),
            generation: 0,
            mode: tls.mode,
            connector: Some(tokio_rustls::TlsConnector::from(config)),
            name,
        })
    }
}

/// A PostgreSQL SSLRequest: length 8, code 80877103.
const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];

impl Dialer {
    /// The dialer of a listener's settings; fails where a `server_tls_*` file can't be loaded.
    pub fn new(config: &DatabaseListener) -> Result<Dialer, TlsError> {
        Ok(Dialer {
            tls: ArcSwap::from_pointee(ServerTls::of(config)?),
            timers: strata_net::Timers::new(),
            seen: Default::default(),
        })
    }

    /// Loads the `server_tls_*` files of `config`, as starting it would.
    pub fn check(config: &DatabaseListener) -> Result<(), TlsError> {
        ServerTls::of(config).map(drop)
    }

    /// Takes a reload's `server_tls_*` settings: connections made from now on use them (the
    /// files are read again either way). True when the settings changed: the connections
    /// made before are not reused from now on ([`Dialer::current`]).
    pub fn reload(&self, config: &DatabaseListener) -> Result<bool, TlsError> {
        let mut new = ServerTls::of(config)?;
        let old = self.tls.load();
        let changed = old.settings != new.settings;
        new.generation = old.generation + u64::from(changed);
        self.tls.store(Arc::new(new));
        Ok(changed)
    }

    /// Whether `conn` was made under the `server_tls_*` settings in force: one made before a
    /// reload changed them is closed rather than reused.
    pub fn current(&self, conn: &ServerConn) -> bool {
        conn.tls.generation == self.tls.load().generation
    }

    /// What the last connection made to `addr` is on: "TLSv1.3", "TLSv1.2" or "clear"
    /// (`None`: none made yet, or the last try failed).
    pub fn seen(&self, addr: SocketAddr) -> Option<&'static str> {
        strata_net::lock(&self.seen).get(&addr).copied()
    }

    fn saw(&self, addr: SocketAddr, on: Option<&'static str>) {
        let mut seen = strata_net::lock(&self.seen);
        match on {
            Some(on) => seen.insert(addr, on),
            None => seen.remove(&addr),
        };
    }

    /// Sends a cancel request for `backend`'s query to `addr`, the way `tls` (the settings
    /// the query's connection was made with) says: on TLS where that connection is
    /// (PostgreSQL takes one after an SSLRequest, as libpq 17 sends it), so the backend's
    /// key does not cross the network in clear; all within [`OWN_STATEMENT`].
    /// Where the connection was on TLS (`on_tls`), the cancel request is too, or it is not
    /// sent: under `prefer`, an 'N' from whoever answers in the server's place must not get
    /// the key in clear.
    pub(crate) async fn cancel(
        &self,
        addr: SocketAddr,
        backend: (u32, u32),
        tls: &ServerTls,
        on_tls: bool,
    ) -> Result<(), ServerError> {
        let send = async {
            let io = |source| ServerError::Io { addr, source };
            let tcp = TcpStream::connect(addr).await.map_err(io)?;
            let _ = tcp.set_nodelay(true);
            let (mut stream, _) = self.negotiate(tcp, addr, tls, on_tls).await?;
            let packet = proto::cancel_packet(backend.0, backend.1);
            stream.write_all(&packet).await.map_err(io)?;
            stream.shutdown().await.map_err(io)?;
            // the server closes once it has the request (as libpq waits for it), with or
            // without TLS's close_notify: then it is known to have arrived
            let mut rest = [0u8; 64];
            while let Ok(1..) = stream.read(&mut rest).await {}
            Ok(())
        };
        match tokio::time::timeout(OWN_STATEMENT, send).await {
            Ok(r) => r,
            Err(_) => Err(ServerError::Timeout(addr)),
        }
    }

    /// Connects to `addr` and logs in as `user` to `database`, all within `timeout`.
    pub async fn connect(
        &self,
        addr: SocketAddr,
        user: &str,
        database: &str,
        credential: &Credential,
        timeout: Duration,
    ) -> Result<ServerConn, ServerError> {
        let login = async {
            let io = |source| ServerError::Io { addr, source };
            let tcp = TcpStream::connect(addr).await.map_err(io)?;
            let _ = tcp.set_nodelay(true);
            // (connections wait idle in the pool, min_pool_size's for long)
            strata_net::keepalive(&tcp);
            let tls = self.tls.load_full();
            let stream = self.negotiate(tcp, addr, &tls, false).await;
            self.saw(addr, stream.as_ref().ok().map(|(_, on)| *on));
            let conn = ServerConn::made_with(stream?.0, addr, tls);
            ServerConn::login(conn, user, database, credential).await
        };
        match tokio::time::timeout(timeout, login).await {
            Ok(r) => r,
            Err(_) => Err(ServerError::Timeout(addr)),
        }
    }

    /// Asks for TLS where `tls` says to, as libpq does: an SSLRequest, whose one-byte answer
    /// is read alone (bytes a server sends behind its 'S' go to the TLS handshake, which
    /// refuses them, never to the protocol: CVE-2021-23222). With `insist`, `prefer` takes
    /// no 'N'. The stream, and what it is on.
    async fn negotiate(
        &self,
        mut tcp: TcpStream,
        addr: SocketAddr,
        tls: &ServerTls,
        insist: bool,
    ) -> Result<(PgStream, &'static str), ServerError> {
        let Some(connector) = &tls.connector else {
            return Ok((tcp.into(), "clear"));
        };
        let io = |source| ServerError::Io { addr, source };
        tcp.write_all(&SSL_REQUEST).await.map_err(io)?;
        let mut answer = [0u8; 1];
        tcp.read_exact(&mut answer).await.map_err(io)?;
        match answer[0] {
            b'S' => {
                let name = tls
                    .name
                    .clone()
                    .unwrap_or_else(|| ServerName::IpAddress(addr.ip().into()));
                let stream = connector
                    .connect(name, tcp)
                    .await
                    .map_err(|source| ServerError::Tls { addr, source })?;
                let version = match stream.get_ref().1.protocol_version() {
                    Some(tokio_rustls::rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3",
                    _ => "TLSv1.2",
                };
                let stream = crate::stream::relayed(stream, self.timers.clone(), None);
                Ok((stream.map_err(io)?, version))
            }
            b'N' if tls.mode == ServerTlsMode::Prefer && !insist => {
                tracing::debug!(%addr, "the server does not take TLS: server_tls_mode = \"prefer\" goes on in clear");
                Ok((tcp.into(), "clear"))
            }
            b'N' => Err(ServerError::NoTls {
                addr,
                mode: tls.mode,
            }),
            // the server can't take the connection at all (it could not start a backend for
            // it): its error, in the old protocol's form PostgreSQL still sends there ("E",
            // text, "\n\0"), or as an ErrorResponse (libpq takes both, told apart by what a
            // length word would say)
            b'E' => {
                let mut got = Vec::new();
                let (code, message) = loop {
                    let mut more = [0u8; 512];
                    let n = tcp.read(&mut more).await.map_err(io)?;
                    got.extend_from_slice(&more[..n]);
                    if let Some(refusal) = proto::ssl_refusal(&got, n == 0) {
                        break refusal;
                    }
                };
                Err(ServerError::Refused {
                    addr,
                    code,
                    message,
                })
            }
            _ => Err(ServerError::Protocol {
                addr,
                source: ProtoError::Malformed("the answer to an SSLRequest"),
            }),
        }
    }
}

impl Default for Dialer {
    /// In clear.
    fn default() -> Dialer {
        Dialer {
            tls: ArcSwap::from_pointee(ServerTls::clear()),
            timers: strata_net::Timers::new(),
            seen: Default::default(),
        }
    }
}

/// A logged-in server connection.
pub struct ServerConn {
    /// The socket (or, on TLS, the relay's socket pair).
    pub(crate) stream: PgStream,
    /// The server.
    pub addr: SocketAddr,
    /// The backend's process id and secret, for cancel requests.
    pub key: (u32, u32),
    /// The parameters it reported (ParameterStatus) or that the pooler set on it.
    params: HashMap<String, String>,
    /// The [`Wanted`](crate::client) key of the client whose carried parameters it was last
    /// given, while they are unchanged (0: none): a client with that key needs nothing set.
    pub carried: u64,
    /// Bytes read and not yet handled.
    pub buf: BytesMut,
    /// When it was last given back to the pool.
    pub idle_since: Instant,
    /// When it was opened (`server_lifetime`).
    pub born: Instant,
    /// The prepared statements it holds, by server-side name (transaction mode).
    pub statements: crate::prepared::Held,
    /// A client ran SET, RESET, DISCARD, PREPARE or DEALLOCATE on it: its session state is
    /// not known, and it is reset before another client uses it.
    pub dirty: bool,
    /// Which client's extra startup parameters it holds (their hash; 0: none).
    pub extras: u64,
    /// Its place under the listener's `max_server_connections` for its server, held while
    /// it is open.
    pub(crate) cap: Option<crate::pool::CapSlot>,
    /// The `server_tls_*` settings it was made with.
    pub(crate) tls: Arc<ServerTls>,
}

impl ServerConn {
    /// Logs in on `conn`, a connection not logged in yet.
    async fn login(
        mut conn: ServerConn,
        user: &str,
        database: &str,
        credential: &Credential,
    ) -> Result<ServerConn, ServerError> {
        let addr = conn.addr;
        conn.write(&proto::startup_packet(&[
            ("user", user),
            ("database", database),
        ]))
        .await?;
        let mut scram: Option<ScramClient> = None;
        let auth = |source| ServerError::Auth { addr, source };
        loop {
            let (tag, mut body) = conn.read().await?;
            match tag {
                b'R' => {
                    if body.len() < 4 {
                        return Err(conn.malformed("Authentication"));
                    }
                    let code = body.get_u32();
                    let mut out = BytesMut::new();
                    match code {
                        0 => continue,
                        5 => {
                            if body.len() < 4 {
                                return Err(conn.malformed("AuthenticationMD5Password"));
                            }
                            let salt = [body[0], body[1], body[2], body[3]];
                            let answer = md5_response(credential, user, salt).map_err(auth)?;
                            proto::put(&mut out, b'p', |b| proto::put_cstr(b, &answer));
                        }
                        3 => {
                            let Credential::Plain(p) = credential else {
                                return Err(auth(AuthError::Unsupported(
                                    "the server asks for a clear-text password, which Strata only has for users given one".into(),
                                )));
                            };
                            proto::put(&mut out, b'p', |b| proto::put_cstr(b, p));
                        }
                        10 => {
                            let mut mechanisms = Vec::new();
                            while let Ok(m) = proto::cstr(&mut body, "AuthenticationSASL") {
                                if m.is_empty() {
                                    break;
                                }
                                mechanisms.push(m);
                            }
                            if !mechanisms.iter().any(|m| m == "SCRAM-SHA-256") {
                                return Err(auth(AuthError::Unsupported(format!(
                                    "the server offers {mechanisms:?}, not SCRAM-SHA-256"
                                ))));
                            }
                            let (client, first) = ScramClient::start();
                            scram = Some(client);
                            proto::put(&mut out, b'p', |b| {
                                proto::put_cstr(b, "SCRAM-SHA-256");
                                b.extend_from_slice(&(first.len() as i32).to_be_bytes());
                                b.extend_from_slice(first.as_bytes());
                            });
                        }
                        11 => {
                            let client = scram.as_mut().ok_or_else(|| conn.malformed("SASLContinue"))?;
                            let server_first = String::from_utf8_lossy(&body).into_owned();
                            let fin = client.answer(&server_first, credential).map_err(auth)?;
                            proto::put(&mut out, b'p', |b| b.extend_from_slice(fin.as_bytes()));
                        }
                        12 => {
                            let client = scram.as_ref().ok_or_else(|| conn.malformed("SASLFinal"))?;
                            client
                                .verify(&String::from_utf8_lossy(&body))
                                .map_err(auth)?;
                            continue;
                        }
                        other => {
                            return Err(auth(AuthError::Unsupported(format!(
                                "the server asks for authentication method {other}, which Strata does not speak"
                            ))))
                        }
                    }
                    conn.write(&out).await?;
                }
                b'S' => {
                    conn.param(&mut body);
                }
                b'K' => {
                    if body.len() < 8 {
                        return Err(conn.malformed("BackendKeyData"));
                    }
                    conn.key = (body.get_u32(), body.get_u32());
                }
                b'E' => {
                    return Err(ServerError::Refused {
                        addr,
                        code: proto::error_code(&body),
                        message: proto::error_message(&body),
                    })
                }
                b'N' => {}
                b'Z' => return Ok(conn),
                _ => return Err(conn.malformed("login")),
            }
        }
    }

    fn malformed(&self, what: &'static str) -> ServerError {
        ServerError::Protocol {
            addr: self.addr,
            source: ProtoError::Malformed(what),
        }
    }

    /// Records a ParameterStatus body; the parameter and its value, unless the body is not one.
    pub fn param(&mut self, body: &mut BytesMut) -> Option<(&str, &str)> {
        let (Ok(k), Ok(v)) = (
            proto::cstr(body, "ParameterStatus"),
            proto::cstr(body, "ParameterStatus"),
        ) else {
            return None;
        };
        self.set_param(k.clone(), v);
        self.params
            .get_key_value(&k)
            .map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The parameters it reported (ParameterStatus) or that the pooler set on it.
    pub fn params(&self) -> &HashMap<String, String> {
        &self.params
    }

    /// Records that parameter `k` is `v` on it now.
    pub fn set_param(&mut self, k: String, v: String) {
        self.params.insert(k, v);
        self.carried = 0;
    }

    /// Records that parameter `k` is gone from it (RESET ALL, DISCARD ALL).
    pub fn forget_param(&mut self, k: &str) {
        self.params.remove(k);
        self.carried = 0;
    }

    /// Ends the session politely (a Terminate), for a connection about to be dropped.
    pub async fn terminate(&mut self) {
        let mut out = BytesMut::new();
        proto::put(&mut out, b'X', |_| {});
        let _ = self.write(&out).await;
    }

    /// Writes `bytes` whole.
    pub async fn write(&mut self, bytes: &[u8]) -> Result<(), ServerError> {
        self.stream
            .write_all(bytes)
            .await
            .map_err(|source| ServerError::Io {
                addr: self.addr,
                source,
            })
    }

    /// Reads one whole message.
    pub async fn read(&mut self) -> Result<(u8, BytesMut), ServerError> {
        loop {
            match proto::message(&mut self.buf) {
                Ok(Some(m)) => return Ok(m),
                Ok(None) => {}
                Err(source) => {
                    return Err(ServerError::Protocol {
                        addr: self.addr,
                        source,
                    })
                }
            }
            let n = self
                .stream
                .read_buf(&mut self.buf)
                .await
                .map_err(|source| ServerError::Io {
                    addr: self.addr,
                    source,
                })?;
            if n == 0 {
                return Err(ServerError::Io {
                    addr: self.addr,
                    source: io::ErrorKind::UnexpectedEof.into(),
                });
            }
        }
    }

    /// A connection to `addr` in clear, not logged in yet: nothing known of it (the tests'
    /// way to make one on a socket of their own).
    #[cfg(test)]
    pub(crate) fn new(stream: impl Into<PgStream>, addr: SocketAddr) -> ServerConn {
        Self::made_with(stream, addr, Arc::new(ServerTls::clear()))
    }

    /// A connection to `addr` made with the `server_tls_*` settings `tls`, not logged in yet.
    fn made_with(stream: impl Into<PgStream>, addr: SocketAddr, tls: Arc<ServerTls>) -> ServerConn {
        ServerConn {
            stream: stream.into(),
            addr,
            key: (0, 0),
            params: HashMap::new(),
            carried: 0,
            buf: BytesMut::with_capacity(8192),
            idle_since: Instant::now(),
            born: Instant::now(),
            statements: Default::default(),
            dirty: false,
            extras: 0,
            cap: None,
            tls,
        }
    }

    /// Runs `sql` (simple protocol) and reads to its ReadyForQuery: each row's columns as
    /// text (None for NULL), and the transaction status it ended in. An ErrorResponse is an
    /// error (after the ReadyForQuery has been read, so the connection stays in step). A
    /// server that does not answer within [`OWN_STATEMENT`] fails it: the connection must
    /// then be closed (it is out of step).
    pub async fn run(&mut self, sql: &str) -> Result<(Vec<Vec<Option<String>>>, u8), ServerError> {
        self.run_with(sql, None).await
    }

    /// [`ServerConn::run`], with `param` bound to `$1` where given (the extended protocol, an
    /// unnamed statement: the value is never read as SQL).
    pub async fn run_with(
        &mut self,
        sql: &str,
        param: Option<&str>,
    ) -> Result<(Vec<Vec<Option<String>>>, u8), ServerError> {
        let addr = self.addr;
        tokio::time::timeout(OWN_STATEMENT, self.run_unbounded(sql, param))
            .await
            .unwrap_or(Err(ServerError::Stuck(addr)))
    }

    async fn run_unbounded(
        &mut self,
        sql: &str,
        param: Option<&str>,
    ) -> Result<(Vec<Vec<Option<String>>>, u8), ServerError> {
        let mut out = BytesMut::new();
        match param {
            None => proto::put_query(&mut out, sql),
            Some(value) => proto::put_one_param_query(&mut out, sql, value),
        }
        self.write(&out).await?;
        let mut rows = Vec::new();
        let mut failed = None;
        loop {
            let (tag, mut body) = self.read().await?;
            match tag {
                b'D' if body.len() >= 2 => {
                    let columns = body.get_u16();
                    let mut row = Vec::with_capacity(usize::from(columns));
                    for _ in 0..columns {
                        if body.len() < 4 {
                            break;
                        }
                        let len = body.get_i32();
                        if len < 0 {
                            row.push(None);
                        } else {
                            let len = (len as usize).min(body.len());
                            row.push(Some(String::from_utf8_lossy(&body[..len]).into_owned()));
                            body.advance(len);
                        }
                    }
                    rows.push(row);
                }
                b'S' => {
                    self.param(&mut body);
                }
                b'E' => failed = Some((proto::error_code(&body), proto::error_message(&body))),
                b'Z' => {
                    let status = body.first().copied().unwrap_or(b'I');
                    return match failed {
                        Some((code, message)) => Err(ServerError::Refused {
                            addr: self.addr,
                            code,
                            message,
                        }),
                        None => Ok((rows, status)),
                    };
                }
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_server_that_never_answers_a_statement_of_the_poolers_own_is_stuck() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stream = TcpStream::connect(addr).await.unwrap();
        // accepted, and never answered
        let (_server, _) = listener.accept().await.unwrap();
        let mut conn = ServerConn::new(stream, addr);
        let failed = conn.run("RESET ALL").await;
        assert!(
            matches!(failed, Err(ServerError::Stuck(a)) if a == addr),
            "{failed:?}"
        );
    }
}
