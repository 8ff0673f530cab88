//! Server connections pooled per (user, database, server): a fixed number of slots each, a
//! wait for a slot bounded by `query_wait_timeout`, idle connections reused newest first.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use std::time::{Duration, Instant};
use strata_net::lock;

use strata_metrics::Gauge;
use strata_net::{Limit, Slot};

use crate::auth::Credential;
use crate::server::{ServerConn, ServerError};
use strata_upstream::{Failure, Kind, Retry, Stage};

/// The connections of one (user, database) to one server.
pub struct ServerPool {
    /// The server.
    pub addr: SocketAddr,
    /// How its connections are made, and cancel requests sent to it.
    dialer: Arc<crate::server::Dialer>,
    idle: Mutex<Vec<ServerConn>>,
    /// `pool_size` of them; a reload resizes them.
    slots: Limit,
    /// Connections handed to clients now.
    pub in_use: Gauge,
    /// Clients waiting for a slot.
    pub waiting: Gauge,
    /// The server was drained: connections given back close instead of waiting idle.
    drained: AtomicBool,
    /// Its connections shared by queries that only read.
    pub(crate) lines: Arc<crate::pipeline::Lines>,
    /// Whether reads answer sooner sharing its connections, as last tried.
    pub trial: crate::trial::Trial,
    /// When one of its connections was last closed for its age (`server_lifetime`).
    aged_out: Mutex<Option<Instant>>,
    /// When opening a connection for `min_pool_size` last failed, while it fails.
    warm_failed: Mutex<Option<Instant>>,
}

impl ServerPool {
    /// Drains (`true`: idle connections close now, busy ones as they are given back) or
    /// restores the pool's server.
    pub fn set_drained(&self, drained: bool) {
        let mut idle = lock(&self.idle);
        self.drained.store(drained, Relaxed);
        if drained {
            idle.clear();
        }
    }

    /// Whether every slot is taken: a client that needs a connection now would wait.
    pub fn full(&self) -> bool {
        self.slots.is_full()
    }

    /// Slots taken (connections handed out, and ones being opened) and clients waiting for
    /// one: how busy the server is for this pool, to choose where a read goes.
    pub fn load(&self) -> usize {
        self.slots.taken() + usize::try_from(self.waiting.get()).unwrap_or(0)
    }

    /// Connections idle in the pool now.
    pub fn idle(&self) -> usize {
        lock(&self.idle).len()
    }

    /// Closes the idle connections past their time: waited `limits.idle` or longer, or open
    /// `limits.lifetime` or longer (see [`ServerPool::aged_out`]). Idleness spares the newest
    /// ones while fewer than `limits.min` would stay open; age does not (they are opened
    /// again, new).
    pub fn close_expired(&self, limits: Limits) {
        let mut spared = (limits.min as usize).saturating_sub(self.slots.taken());
        let mut idle = lock(&self.idle);
        // newest last: spared first
        idle.reverse();
        idle.retain(|c| {
            let kept = (spared > 0 || !limits.idle_too_long(c))
                && !self.aged_out(c, &limits)
                && self.dialer.current(c);
            if kept {
                spared = spared.saturating_sub(1);
            }
            kept
        });
        idle.reverse();
    }

    /// Opens a connection, in a task of its own, while fewer than `limits.min` are open or
    /// being opened (PgBouncer's `min_pool_size`), on a slot it takes only if one is free (so
    /// `pool_size` stays the bound, and clients waiting for a slot come first): one a second
    /// per server, from the janitor. After a failure, not again for `pause`.
    fn warm(
        self: &Arc<Self>,
        pool: &Arc<Pool>,
        credential: Credential,
        limits: Limits,
        pause: Duration,
    ) {
        if lock(&self.warm_failed).is_some_and(|at| at.elapsed() < pause) {
            return;
        }
        let open = lock(&self.idle).len() + self.slots.taken();
        if open >= limits.min as usize {
            return;
        }
        let Some(slot) = self.slots.try_acquire() else {
            return;
        };
        let (server, pool) = (self.clone(), pool.clone());
        tokio::spawn(async move {
            // (only where max_server_connections leaves room: kept-open connections take no
            // other pool's, and wait for none)
            let Ok(cap) = pool.caps.place(server.addr, None).await else {
                return;
            };
            match pool.connect(server.addr, &credential, limits).await {
                Ok(mut conn) => {
                    conn.cap = cap;
                    *lock(&server.warm_failed) = None;
                    server.give(conn);
                }
                Err(e) => {
                    // (a refusal the role checks do not see, such as a database that does
                    // not exist or too many clients: said once, then tried after a pause)
                    if lock(&server.warm_failed).replace(Instant::now()).is_none() {
                        tracing::warn!(server = %server.addr, user = %pool.user, database = %pool.database, "opening a connection for min_pool_size: {e}");
                    }
                }
            }
            drop(slot);
        });
    }

    /// Puts a connection no client holds among the idle ones, unless the server is drained
    /// or they fill the slots.
    fn give(&self, conn: ServerConn) {
        let mut idle = lock(&self.idle);
        // (looked at under the lock a drain empties the idle ones under)
        if self.drained.load(Relaxed) {
            return;
        }
        // clients wait for a place under max_server_connections: this one closes, its place
        // theirs
        if conn.cap.as_ref().is_some_and(CapSlot::wanted) {
            return;
        }
        // more than the slots (a reload lowered `pool_size`), or made before a reload changed
        // server_tls_*: this one closes
        if idle.len() < self.slots.size() && self.dialer.current(&conn) {
            idle.push(conn);
        }
    }

    /// Whether a connection is closed for its age now: open for `limits.lifetime`, and its
    /// turn has come. Those closes are spread out, one per lifetime divided by the pool size
    /// (as PgBouncer spreads them), so that connections opened together (at start, after a
    /// failover) are not all replaced at once, with a client waiting for each new one. True
    /// takes the turn: the caller closes it.
    fn aged_out(&self, conn: &ServerConn, limits: &Limits) -> bool {
        let Some(most) = limits.lifetime else {
            return false;
        };
        if conn.born.elapsed() < most {
            return false;
        }
        // (below a millisecond apart, nothing is spread: a lifetime that short, as the
        // importer writes PgBouncer's "each connection used once", means what it says)
        let gap = most / limits.pool_size.max(1);
        let mut aged_out = lock(&self.aged_out);
        let now = Instant::now();
        if gap >= Duration::from_millis(1)
            && aged_out.is_some_and(|at| now.duration_since(at) < gap)
        {
            return false;
        }
        *aged_out = Some(now);
        true
    }

    /// Closes every idle connection (the server's role changed, or it went away).
    pub fn close_idle(&self) {
        lock(&self.idle).clear();
    }

    /// Sets the number of slots (a reload changed `pool_size`); idle connections beyond it
    /// close now, busy ones as they are given back.
    pub fn resize(&self, pool_size: u32) {
        self.slots.resize(pool_size as usize);
        lock(&self.idle).truncate(pool_size as usize);
    }
}

/// The connections of one (user, database), per server.
pub struct Pool {
    /// The role name.
    pub user: String,
    /// The database name.
    pub database: String,
    /// Per server: a handful, so a list searched by address (asked at every query) costs
    /// less than hashing the address.
    servers: Mutex<Vec<Arc<ServerPool>>>,
    /// What a server reported at login (server_version, encodings, ...), shown to clients as
    /// they log in; each client's defaults for the parameters the pooler carries.
    pub welcome: Mutex<Option<Arc<HashMap<String, String>>>>,
    /// The listener's bound on connections per server, all pools together.
    caps: Arc<ServerCaps>,
    /// How its connections are made (in clear or on TLS).
    dialer: Arc<crate::server::Dialer>,
}

/// `max_server_connections`: per server, a bound on the connections open to it from every
/// pool of the listener (users and databases together), and those pools, so that a pool
/// that needs a connection while the bound is reached can close another's idle one.
#[derive(Default)]
pub struct ServerCaps {
    /// 0: no bound.
    size: std::sync::atomic::AtomicUsize,
    servers: Mutex<HashMap<SocketAddr, Capped>>,
}

/// One server under [`ServerCaps`].
struct Capped {
    limit: Limit,
    /// Clients waiting for a place: while there are some, a connection given back closes
    /// (its place to them) instead of waiting idle.
    waiting: Arc<std::sync::atomic::AtomicUsize>,
    pools: Vec<std::sync::Weak<ServerPool>>,
}

impl Capped {
    fn new(size: usize) -> Capped {
        Capped {
            limit: Limit::new(size),
            waiting: Arc::default(),
            pools: Vec::new(),
        }
    }
}

/// A connection's place under [`ServerCaps`], held while it is open.
pub struct CapSlot {
    _slot: Slot,
    waiting: Arc<std::sync::atomic::AtomicUsize>,
}

impl CapSlot {
    /// Clients wait for a place at its server: given back, the connection should close.
    fn wanted(&self) -> bool {
        self.waiting.load(Relaxed) > 0
    }
}

impl ServerCaps {
    /// Bounds each server to `size` connections (0: none) from now on: connections opened
    /// before a bound was set count only once they are closed and opened again. Removing the
    /// bound lets those waiting for a place go on at once.
    pub fn resize(&self, size: u32) {
        let size = size as usize;
        let before = self.size.swap(size, Relaxed);
        let mut servers = lock(&self.servers);
        for capped in servers.values_mut() {
            if size == 0 {
                // waiters get Closed, which is no bound; a later bound counts afresh
                capped.limit.close();
                capped.limit = Limit::new(0);
            } else if before == 0 {
                capped.limit = Limit::new(size);
            } else {
                capped.limit.resize(size);
            }
        }
    }

    /// Forgets the servers `keep` says no to (a reload removed them).
    pub fn keep_servers(&self, keep: impl Fn(SocketAddr) -> bool) {
        lock(&self.servers).retain(|addr, _| keep(*addr));
    }

    /// How many connections are open to `addr` under the bound (0 without one).
    pub fn open(&self, addr: SocketAddr) -> usize {
        if self.size.load(Relaxed) == 0 {
            return 0;
        }
        lock(&self.servers)
            .get(&addr)
            .map_or(0, |c| c.limit.taken())
    }

    fn register(&self, pool: &Arc<ServerPool>) {
        let mut servers = lock(&self.servers);
        let capped = servers
            .entry(pool.addr)
            .or_insert_with(|| Capped::new(self.size.load(Relaxed)));
        capped.pools.retain(|p| p.strong_count() > 0);
        capped.pools.push(Arc::downgrade(pool));
    }

    /// A place for a new connection to `addr`: `None` with no bound; with one, at once if
    /// there is room, else by closing the idle connection under the bound that was given back
    /// longest ago in any pool (unless `until` is none: then not at all), else by waiting,
    /// until `until`, for a connection to close or to be given back (which then closes).
    async fn place(
        &self,
        addr: SocketAddr,
        until: Option<tokio::time::Instant>,
    ) -> Result<Option<CapSlot>, ()> {
        if self.size.load(Relaxed) == 0 {
            return Ok(None);
        }
        let (limit, waiting, pools) = match lock(&self.servers).get(&addr) {
            Some(c) => (c.limit.clone(), c.waiting.clone(), c.pools.clone()),
            None => return Ok(None),
        };
        let held = |slot| CapSlot {
            _slot: slot,
            waiting: waiting.clone(),
        };
        if let Some(slot) = limit.try_acquire() {
            return Ok(Some(held(slot)));
        }
        let Some(until) = until else {
            return Err(());
        };
        waiting.fetch_add(1, Relaxed);
        let pools: Vec<_> = pools.iter().filter_map(std::sync::Weak::upgrade).collect();
        evict_oldest(&pools);
        let got = tokio::time::timeout_at(until, limit.acquire()).await;
        waiting.fetch_sub(1, Relaxed);
        match got {
            Ok(Ok(slot)) => Ok(Some(held(slot))),
            // the bound was removed meanwhile
            Ok(Err(strata_net::Closed)) => Ok(None),
            Err(_) => Err(()),
        }
    }
}

/// Closes the idle connection under a bound that was given back longest ago among `pools`
/// (its place freed as it drops), looked for and taken under each pool's lock.
fn evict_oldest(pools: &[Arc<ServerPool>]) {
    let oldest = |idle: &[ServerConn]| {
        idle.iter()
            .enumerate()
            .filter(|(_, c)| c.cap.is_some())
            .min_by_key(|(_, c)| c.idle_since)
            .map(|(i, c)| (i, c.idle_since))
    };
    let chosen = pools
        .iter()
        .filter_map(|p| Some((oldest(&lock(&p.idle))?.1, p)))
        .min_by_key(|(since, _)| *since);
    if let Some((_, p)) = chosen {
        let mut idle = lock(&p.idle);
        // (looked for again: the list may have changed since)
        if let Some((i, _)) = oldest(&idle) {
            drop(idle.remove(i));
        }
    }
}

/// A server connection handed to a client; [`Lease::release`] gives it back, dropping it
/// closes it.
pub struct Lease {
    /// The connection.
    pub conn: ServerConn,
    pool: Arc<ServerPool>,
    _slot: Slot,
    /// It was taken for a read that could have shared a connection, not yet answered.
    asked: bool,
}

impl Lease {
    /// Where a cancel request for the query running on it goes.
    pub fn cancel_to(&self) -> crate::cancel::CancelTo {
        crate::cancel::CancelTo {
            addr: self.conn.addr,
            backend: self.conn.key,
            dialer: self.pool.dialer.clone(),
            tls: self.conn.tls.clone(),
            on_tls: self.conn.stream.is_tls(),
        }
    }

    /// The connection was taken for a read that could have shared one: its answer counts in
    /// the pool's [`crate::trial::Trial`].
    pub fn asked(&mut self) {
        self.asked = true;
    }

    /// A ReadyForQuery came on the connection.
    pub fn answered(&mut self) {
        if std::mem::take(&mut self.asked) {
            self.pool.trial.answered();
        }
    }

    /// The pool it came from.
    pub fn pool(&self) -> &Arc<ServerPool> {
        &self.pool
    }

    /// Gives a clean connection (idle, nothing in flight) back to the pool.
    pub fn release(mut self) {
        self.conn.idle_since = Instant::now();
        self.pool.in_use.dec();
        let Lease { conn, pool, .. } = self;
        pool.give(conn);
    }

    /// Closes the connection (it is not known to be clean).
    pub fn close(self) {
        self.pool.in_use.dec();
    }
}

/// Why no connection could be had.
#[derive(Debug, thiserror::Error)]
pub enum AcquireError {
    /// Every slot stayed taken for `query_wait_timeout`.
    #[error("no server connection became free within query_wait_timeout ({0:?})")]
    Timeout(Duration),
    /// Connecting or logging in failed.
    #[error(transparent)]
    Server(#[from] ServerError),
    /// No server is known to be the primary (all down, or none checked yet).
    #[error("no server is known to be the primary")]
    NoPrimary,
    /// The user is no longer in the config (a reload removed it).
    #[error("the user is no longer configured")]
    NoCredential,
    /// The server had `max_server_connections` open, all in use, for `query_wait_timeout`.
    #[error("the server's connections (max_server_connections) stayed in use for query_wait_timeout ({0:?})")]
    ServerFull(Duration),
}

impl AcquireError {
    /// The failure it is: where, what kind, and whether another server may be tried (a
    /// replica that can't be reached or refuses the login: the primary may).
    pub fn failure(self) -> Failure {
        let (stage, kind, retry) = match &self {
            AcquireError::Timeout(_) | AcquireError::ServerFull(_) | AcquireError::NoPrimary => {
                (Stage::Connect, Kind::NoBackend, Retry::Never)
            }
            AcquireError::NoCredential => (Stage::Client, Kind::NoBackend, Retry::Never),
            AcquireError::Server(e) => match e {
                ServerError::Io { .. } => (Stage::Connect, Kind::Connect, Retry::Always),
                ServerError::Timeout(_) => (Stage::Connect, Kind::Timeout, Retry::Always),
                // a statement of the pooler's own, sent: another try is no business of it
                ServerError::Stuck(_) => (Stage::Request, Kind::Timeout, Retry::Never),
                // starting up, too many clients, a pg_hba.conf of its own
                ServerError::Refused { .. } => (Stage::Connect, Kind::Refused, Retry::Always),
                // TLS as server_tls_mode asks: a server of its own certificate or settings
                ServerError::NoTls { .. } => (Stage::Connect, Kind::Refused, Retry::Always),
                ServerError::Tls { .. } => (Stage::Connect, Kind::Connect, Retry::Always),
                // Strata's own credential or the server's bytes: another server is no better
                ServerError::Auth { .. } => (Stage::Connect, Kind::Refused, Retry::Never),
                ServerError::Protocol { .. } => (Stage::Connect, Kind::Protocol, Retry::Never),
                // (a connection given up after its client left: never one being acquired)
                ServerError::InTransaction(_) => (Stage::Request, Kind::Protocol, Retry::Never),
            },
        };
        Failure::new(stage, kind, retry).because(self)
    }
}

/// What a client is told when no server connection could be had: the SQLSTATE and message.
/// A server's refusal of the login keeps its own (a database that does not exist, a role that
/// may not log in), which clients act on; a connection that failed is named by its kind only
/// (the server's address and the operating system's error go to the log).
pub fn told(failure: &Failure) -> (&str, String) {
    let cannot = crate::proto::Sqlstate::CANNOT_CONNECT_NOW.0;
    let source = failure.source.as_deref();
    match source.and_then(|s| s.downcast_ref::<AcquireError>()) {
        Some(AcquireError::Server(ServerError::Refused { code, message, .. })) => {
            (code.as_deref().unwrap_or(cannot), message.clone())
        }
        Some(AcquireError::Server(_)) | None => (cannot, failure.kind.to_string()),
        Some(other) => (cannot, other.to_string()),
    }
}

/// The limits a pool works within.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Slots per (user, database, server).
    pub pool_size: u32,
    /// How long a client waits for a slot.
    pub wait: Duration,
    /// Connecting and logging in.
    pub connect: Duration,
    /// An idle connection older than this is closed rather than reused.
    pub idle: Duration,
    /// A connection open this long is closed rather than reused, in its turn
    /// ([`ServerPool::aged_out`]); `None`: no limit.
    pub lifetime: Option<Duration>,
    /// Connections kept open (`min_pool_size`).
    pub min: u32,
}

impl Limits {
    fn idle_too_long(&self, conn: &ServerConn) -> bool {
        conn.idle_since.elapsed() >= self.idle
    }
}

impl Pool {
    /// An empty pool for `user` on `database`, under the listener's `caps`, connecting
    /// through `dialer`.
    pub fn new(
        user: &str,
        database: &str,
        caps: Arc<ServerCaps>,
        dialer: Arc<crate::server::Dialer>,
    ) -> Pool {
        Pool {
            user: user.to_string(),
            database: database.to_string(),
            servers: Mutex::new(Vec::new()),
            welcome: Mutex::new(None),
            caps,
            dialer,
        }
    }

    /// The pool of `addr`, made on first use.
    pub fn server(&self, addr: SocketAddr, limits: Limits) -> Arc<ServerPool> {
        let mut servers = lock(&self.servers);
        if let Some(s) = servers.iter().find(|s| s.addr == addr) {
            return s.clone();
        }
        let s = Arc::new(ServerPool {
            addr,
            dialer: self.dialer.clone(),
            idle: Mutex::new(Vec::new()),
            slots: Limit::new(limits.pool_size as usize),
            in_use: Gauge::default(),
            waiting: Gauge::default(),
            drained: AtomicBool::new(false),
            lines: Default::default(),
            trial: Default::default(),
            aged_out: Mutex::new(None),
            warm_failed: Mutex::new(None),
        });
        servers.push(s.clone());
        self.caps.register(&s);
        s
    }

    /// No connection of it is in use, idle or waited for.
    pub fn unused(&self) -> bool {
        lock(&self.servers).iter().all(|s| {
            s.in_use.get() == 0 && s.waiting.get() == 0 && s.idle() == 0 && s.lines.len() == 0
        })
    }

    /// Forgets the servers `keep` says no to (a reload removed them): their idle connections
    /// close now, busy ones when their clients give them back.
    pub fn keep_servers(&self, keep: impl Fn(SocketAddr) -> bool) {
        lock(&self.servers).retain(|s| {
            let kept = keep(s.addr);
            if !kept {
                s.set_drained(true);
            }
            kept
        });
    }

    /// The [`ServerPool::load`] of each of `addrs` (0 for a server this pool has no
    /// connections of yet), in one look under the lock.
    pub fn loads(&self, addrs: impl Iterator<Item = SocketAddr>) -> Vec<(SocketAddr, usize)> {
        let servers = lock(&self.servers);
        addrs
            .map(|a| {
                let load = servers.iter().find(|s| s.addr == a).map_or(0, |s| s.load());
                (a, load)
            })
            .collect()
    }

    /// Every server pool, for status and metrics.
    pub fn servers(&self) -> Vec<Arc<ServerPool>> {
        let mut all = lock(&self.servers).clone();
        all.sort_by_key(|s| s.addr);
        all
    }

    /// A connection to `addr`: an idle one that is still open, or a new one logged in with
    /// what `credential` gives (asked only then); waits for a slot up to `limits.wait`.
    pub async fn acquire(
        &self,
        addr: SocketAddr,
        credential: impl FnOnce() -> Option<Credential>,
        limits: Limits,
    ) -> Result<Lease, AcquireError> {
        let pool = self.server(addr, limits);
        // one wait, for a slot of the pool and then a place under max_server_connections
        let until = tokio::time::Instant::now() + limits.wait;
        pool.waiting.inc();
        let slot = tokio::time::timeout_at(until, pool.slots.acquire()).await;
        let slot = match slot {
            Ok(Ok(s)) => s,
            _ => {
                pool.waiting.dec();
                return Err(AcquireError::Timeout(limits.wait));
            }
        };
        let reused = {
            let mut idle = lock(&pool.idle);
            let mut found = None;
            while let Some(conn) = idle.pop() {
                // (with min_pool_size, the idle ones kept are kept for this: the janitor
                // closes those idle past the minimum within a second)
                let idle_ok = limits.min > 0 || !limits.idle_too_long(&conn);
                // (one made before a reload changed server_tls_* is closed)
                if idle_ok
                    && self.dialer.current(&conn)
                    && !pool.aged_out(&conn, &limits)
                    && still_open(&conn)
                {
                    found = Some(conn);
                    break;
                }
            }
            found
        };
        let conn = match reused {
            Some(c) => {
                pool.waiting.dec();
                c
            }
            None => {
                let cap = self.caps.place(addr, Some(until)).await;
                pool.waiting.dec();
                let cap = cap.map_err(|()| AcquireError::ServerFull(limits.wait))?;
                let credential = credential().ok_or(AcquireError::NoCredential)?;
                let mut conn = self.connect(addr, &credential, limits).await?;
                conn.cap = cap;
                conn
            }
        };
        pool.in_use.inc();
        Ok(Lease {
            conn,
            pool,
            _slot: slot,
            asked: false,
        })
    }
}

impl Pool {
    /// A new connection to `addr`, logged in; the first one's parameters are what the pool's
    /// clients are welcomed with.
    async fn connect(
        &self,
        addr: SocketAddr,
        credential: &Credential,
        limits: Limits,
    ) -> Result<ServerConn, crate::server::ServerError> {
        let conn = self
            .dialer
            .connect(addr, &self.user, &self.database, credential, limits.connect)
            .await?;
        let mut welcome = lock(&self.welcome);
        if welcome.is_none() {
            *welcome = Some(Arc::new(conn.params().clone()));
        }
        Ok(conn)
    }

    /// Keeps `limits.min` connections open to each of `servers` this pool has used
    /// ([`ServerPool::warm`]).
    pub fn warm(
        self: &Arc<Self>,
        servers: &[SocketAddr],
        credential: impl Fn() -> Option<Credential>,
        limits: Limits,
        pause: Duration,
    ) {
        if limits.min == 0 {
            return;
        }
        for server in self.servers() {
            if servers.contains(&server.addr) {
                if let Some(credential) = credential() {
                    server.warm(self, credential, limits, pause);
                }
            }
        }
    }
}

/// An idle connection the server has closed (or written to: a FATAL before closing) is not
/// handed out.
fn still_open(conn: &ServerConn) -> bool {
    let mut probe = [0u8; 1];
    matches!(conn.stream.try_read(&mut probe), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A bound of one place: the second waits; removing the bound lets it go on at once,
    /// unbounded; a bound set again counts afresh.
    #[tokio::test]
    async fn removing_max_server_connections_lets_those_waiting_go_on() {
        let caps = Arc::new(ServerCaps::default());
        caps.resize(1);
        let addr: SocketAddr = "127.0.0.1:5432".parse().unwrap();
        let limits = Limits {
            pool_size: 4,
            wait: Duration::from_secs(60),
            connect: Duration::from_secs(1),
            idle: Duration::from_secs(60),
            lifetime: None,
            min: 0,
        };
        let _pool = Pool::new("app", "app", caps.clone(), Default::default()).server(addr, limits);
        let first = caps.place(addr, None).await.unwrap();
        assert!(first.is_some());
        assert_eq!(caps.open(addr), 1);
        // no waiting allowed: refused at once
        assert!(caps.place(addr, None).await.is_err());
        let until = tokio::time::Instant::now() + Duration::from_secs(60);
        let waiting = {
            let caps = caps.clone();
            tokio::spawn(async move { caps.place(addr, Some(until)).await })
        };
        while caps.servers.lock().unwrap()[&addr].waiting.load(Relaxed) == 0 {
            tokio::task::yield_now().await;
        }
        caps.resize(0);
        assert!(matches!(waiting.await.unwrap(), Ok(None)));
        caps.resize(2);
        assert_eq!(caps.open(addr), 0, "counted afresh");
        drop(first);
    }

    /// Connections opened together and all past `server_lifetime` are closed one at a time,
    /// a lifetime divided by the pool size apart; the others keep serving meanwhile.
    #[tokio::test]
    async fn connections_past_their_lifetime_are_closed_one_at_a_time() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let limits = Limits {
            pool_size: 4,
            wait: Duration::from_secs(1),
            connect: Duration::from_secs(1),
            idle: Duration::from_secs(1),
            lifetime: Some(Duration::from_secs(4)),
            min: 0,
        };
        let pool =
            Pool::new("app", "app", Default::default(), Default::default()).server(addr, limits);
        let keeps = |conn: &ServerConn, limits: &Limits| {
            !limits.idle_too_long(conn) && !pool.aged_out(conn, limits)
        };
        let mut aged = Vec::new();
        for _ in 0..3 {
            let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
            let mut conn = ServerConn::new(stream, addr);
            // (small ages: a machine's monotonic clock may be young)
            conn.born = Instant::now() - Duration::from_secs(8);
            aged.push(conn);
        }
        let young = ServerConn::new(tokio::net::TcpStream::connect(addr).await.unwrap(), addr);
        assert!(keeps(&young, &limits));
        // the first past its lifetime goes; the next ones wait their turn, a second apart
        assert!(!keeps(&aged[0], &limits));
        assert!(keeps(&aged[1], &limits));
        assert!(keeps(&aged[2], &limits));
        *lock(&pool.aged_out) = Some(Instant::now() - Duration::from_millis(1100));
        assert!(!keeps(&aged[1], &limits));
        assert!(keeps(&aged[2], &limits));
        // idle too long goes whatever its age
        let mut idle = ServerConn::new(tokio::net::TcpStream::connect(addr).await.unwrap(), addr);
        idle.idle_since = Instant::now() - Duration::from_millis(1100);
        assert!(!keeps(&idle, &limits));
        // no lifetime: age never matters
        let forever = Limits {
            lifetime: None,
            ..limits
        };
        assert!(keeps(&aged[2], &forever));
    }
}
