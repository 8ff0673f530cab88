//! The database layer: a PostgreSQL pooler (PgBouncer's place) that follows the primary.
//!
//! Clients log in to Strata (SCRAM-SHA-256, md5 or trust, users from the config or PgBouncer's
//! userlist); each gets a server connection from a pool per (user, database, server) for a
//! transaction (`pool_mode = "transaction"`) or its whole session, with its parameters carried
//! over, and gives it back clean. Writes go to whichever server answers
//! `pg_is_in_recovery() = false` ([`health`]).

pub mod auth;
mod cancel;
mod client;
#[cfg(any(test, feature = "fuzz"))]
#[doc(hidden)]
pub mod fuzz;
pub mod health;
mod pipeline;
pub mod pool;
pub mod prepared;
pub mod proto;
pub mod server;
pub mod shard;
mod stream;
pub mod trial;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use strata_net::lock;

use arc_swap::ArcSwap;
use serde_json::{json, Value};
use strata_config::{DatabaseListener, PoolMode, Secret};
use strata_layer::{ActionError, BackendAction};
use strata_metrics::{Counter, Gauge, Histogram, MetricsWriter, Traffic};
use strata_net::accept_loop;
use strata_net::tls::TlsError;
use strata_net::Limit;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use auth::{Credential, ScramKeys};
use health::Roles;
use pool::{AcquireError, Lease, Limits, Pool};
use strata_upstream::{Failure, Kind, Retry};

/// Counters of one listener.
#[derive(Debug, Default)]
pub struct Stats {
    /// Client connections accepted.
    pub connections: Counter,
    /// Clients logged in now.
    pub clients: Gauge,
    /// Clients holding a server connection now (in a transaction, or a session).
    pub active: Gauge,
    /// Logins refused for a wrong password or an unknown user.
    pub auth_failures: Counter,
    /// `auth_query` lookups, by what they found: a secret, none, or nothing (they failed).
    pub lookups: [Counter; 3],
    /// Clients told no server connection could be had (wait timeout or server down).
    pub no_server: Counter,
    /// Server connections handed to clients: one per transaction in transaction mode, one per
    /// session in session mode.
    pub assigned: Counter,
    /// How long clients waited for a server connection, given or not.
    pub wait: Histogram,
    /// Queries that only read sent on a connection shared with other clients' such queries
    /// (see `read_pipeline`), rather than each on its own; counted in `assigned` too.
    pub shared: Counter,
}

/// One generation of a listener's settings.
struct Site {
    config: DatabaseListener,
    /// What TLS clients are answered with, when `tls` is configured.
    tls: Option<tokio_rustls::TlsAcceptor>,
    sharding: Option<Arc<shard::Sharding>>,
    conn_limit: Limit,
    /// `auth_query` lookups running at once (`pool_size` of them).
    lookups: Limit,
    roles: Arc<Roles>,
}

/// How often connections idle past `server_idle_timeout` (or open past `server_lifetime`) are
/// looked for.
const REAP_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Loads a listener's TLS certificates, as starting it would: `strata check` refuses what
/// `strata run` would.
pub fn check_tls(config: &DatabaseListener) -> Result<(), TlsError> {
    acceptor(config)?;
    server::Dialer::check(config)
}

/// The acceptor for a listener's TLS clients, if it has certificates (no ALPN: libpq's direct
/// TLS, which needs "postgresql", is not offered; clients ask with an SSLRequest).
fn acceptor(config: &DatabaseListener) -> Result<Option<tokio_rustls::TlsAcceptor>, TlsError> {
    if config.tls.is_empty() {
        return Ok(None);
    }
    let certs = config
        .tls
        .iter()
        .map(|c| (c.cert.as_path(), c.key.as_path()));
    let client_ca = config.tls_client_ca.as_deref();
    let tls = strata_net::tls::server_config(&config.name, certs, &[], client_ca)?;
    Ok(Some(tokio_rustls::TlsAcceptor::from(tls)))
}

/// The nonce unknown users' salts (and configured plain passwords') are made from: from the
/// listener's name and its users' secrets, which nobody outside has, the same across restarts
/// with the same users.
fn mock_nonce(config: &DatabaseListener) -> [u8; 32] {
    let mut material = config.name.as_bytes().to_vec();
    for u in &config.users {
        material.extend_from_slice(u.name.as_bytes());
        match &u.secret {
            Secret::Plain(p) | Secret::Md5(p) => material.extend_from_slice(p.as_bytes()),
            Secret::Scram {
                salt,
                stored_key,
                server_key,
                ..
            } => {
                material.extend_from_slice(salt);
                material.extend_from_slice(stored_key);
                material.extend_from_slice(server_key);
            }
        }
    }
    auth::nonce_of(&material)
}

/// The credential of a user with `secret`, keeping the client key learned for a SCRAM user
/// (from `had`) while its secret is the same.
fn keeping_key(had: Option<&Credential>, secret: &Secret) -> Credential {
    let fresh = Credential::of(secret);
    match (had, &fresh) {
        (Some(Credential::Scram(k, Some(ck))), Credential::Scram(nk, None)) if k == nk => {
            Credential::Scram(k.clone(), Some(*ck))
        }
        _ => fresh,
    }
}

/// What a listener's pools work within.
fn limits(config: &DatabaseListener) -> Limits {
    Limits {
        pool_size: config.pool_size,
        wait: config.query_wait_timeout,
        connect: config.connect_timeout,
        idle: config.server_idle_timeout,
        lifetime: config.server_lifetime,
        min: config.min_pool_size,
    }
}

/// Whether reads share `server`'s connections, counting `taking` more in use than now:
/// `read_pipeline_from` of them are in use, or reads were answered sooner sharing them.
fn shares(config: &DatabaseListener, server: &pool::ServerPool, taking: i64) -> bool {
    server.in_use.get() + taking >= i64::from(config.read_pipeline_from.min(config.pool_size))
        || shared_by_trial(config, server)
}

/// Whether reads share `server`'s connections because trials answered more of them that way
/// (`read_pipeline_trials`).
fn shared_by_trial(config: &DatabaseListener, server: &pool::ServerPool) -> bool {
    config.read_pipeline_trials && server.trial.on()
}

/// One `[[database]]` listener.
pub struct DatabaseService {
    /// The listener's name.
    pub name: String,
    site: ArcSwap<Site>,
    pools: Mutex<HashMap<(String, String), Arc<Pool>>>,
    /// What Strata logs in to servers with, per user (a SCRAM user's client key is learned
    /// from its clients).
    credentials: Mutex<HashMap<String, Credential>>,
    /// SCRAM keys made once from plain passwords, per user.
    scram: Mutex<HashMap<String, (Secret, ScramKeys)>>,
    /// The listener's counters.
    pub stats: Stats,
    checks: Mutex<CancellationToken>,
    /// Told by a reload: the role checks start a pass at once, with the new settings (a
    /// `check_user` added, servers changed, another interval).
    pub(crate) recheck: tokio::sync::Notify,
    /// Whose turn it is among the replicas.
    turn: std::sync::atomic::AtomicUsize,
    /// The deadlines of the TLS clients' relays.
    timers: Arc<strata_net::Timers>,
    /// `max_server_connections`, shared by every pool.
    caps: Arc<pool::ServerCaps>,
    /// How the pools and the role checks connect to the servers (`server_tls_*`).
    pub(crate) dialer: Arc<server::Dialer>,
    /// What unknown users' SCRAM salts are made from ([`ScramKeys::mock`]).
    mock_nonce: [u8; 32],
    /// The users `auth_query` found (not configured), whose credentials a reload keeps while
    /// lookups stay on.
    found: Mutex<std::collections::HashSet<String>>,
}

impl DatabaseService {
    /// The listener's state for `config`; [`DatabaseService::start_checks`] starts the role
    /// checks. Fails when a TLS certificate can't be loaded.
    pub fn new(config: &DatabaseListener) -> Result<Arc<DatabaseService>, TlsError> {
        let svc = Arc::new(DatabaseService {
            name: config.name.clone(),
            site: ArcSwap::from_pointee(Site {
                config: config.clone(),
                tls: acceptor(config)?,
                sharding: shard::Sharding::of(config),
                conn_limit: Limit::new(config.max_client_connections as usize),
                lookups: Limit::new(config.pool_size as usize),
                roles: Arc::new(Roles::new(config, None)),
            }),
            pools: Mutex::new(HashMap::new()),
            credentials: Mutex::new(HashMap::new()),
            scram: Mutex::new(HashMap::new()),
            stats: Stats::default(),
            checks: Mutex::new(CancellationToken::new()),
            recheck: tokio::sync::Notify::new(),
            turn: std::sync::atomic::AtomicUsize::new(0),
            timers: strata_net::Timers::new(),
            caps: Arc::default(),
            dialer: Arc::new(server::Dialer::new(config)?),
            mock_nonce: mock_nonce(config),
            found: Default::default(),
        });
        svc.caps.resize(config.max_server_connections);
        svc.set_credentials(config);
        Ok(svc)
    }

    fn set_credentials(&self, config: &DatabaseListener) {
        let mut creds = lock(&self.credentials);
        let mut old = std::mem::take(&mut *creds);
        for u in &config.users {
            creds.insert(u.name.clone(), keeping_key(old.get(&u.name), &u.secret));
            old.remove(&u.name);
        }
        // users found by `auth_query` stay while lookups are on (their clients' next server
        // connections log in with them; the next login looks them up again); a user the
        // config no longer has is gone
        let mut found = lock(&self.found);
        if config.auth_user.is_none() {
            found.clear();
        }
        found.retain(|u| !config.users.iter().any(|c| &c.name == u));
        creds.extend(old.into_iter().filter(|(u, _)| found.contains(u)));
    }

    /// A user found by `auth_query` with `secret`: Strata logs in to servers as it with that
    /// secret (a SCRAM one, with the client key its clients prove).
    fn found_user(&self, user: &str, secret: &Secret) {
        let mut creds = lock(&self.credentials);
        let site = self.site.load();
        // (a reload may have made it a configured user, or turned lookups off, meanwhile)
        let configured = site.config.users.iter().any(|u| u.name == user);
        if site.config.auth_user.is_none() || configured {
            return;
        }
        let kept = keeping_key(creds.get(user), secret);
        creds.insert(user.to_string(), kept);
        lock(&self.found).insert(user.to_string());
    }

    /// Looks up `user` with `auth_query`, as `auth_user`, in `auth_dbname` (else `database`)
    /// on the primary: its secret, or `None` where it has none (no such role, no password,
    /// past `VALID UNTIL`, or lookups off).
    async fn look_up(
        &self,
        config: &DatabaseListener,
        user: &str,
        database: &str,
    ) -> Result<Option<Secret>, Failure> {
        let Some(auth_user) = &config.auth_user else {
            return Ok(None);
        };
        let database = config.auth_dbname.as_deref().unwrap_or(database);
        let site = self.site.load_full();
        // a few at a time (`pool_size`), each on a connection of its own made for it: never
        // one a client of auth_user has used (its search_path, its transaction)
        let until = tokio::time::Instant::now() + config.query_wait_timeout;
        let Ok(Ok(_place)) = tokio::time::timeout_at(until, site.lookups.acquire()).await else {
            return Err(AcquireError::Timeout(config.query_wait_timeout).failure());
        };
        let primary = site
            .roles
            .primary(0)
            .ok_or_else(|| AcquireError::NoPrimary.failure())?;
        let credential = lock(&self.credentials).get(auth_user).cloned();
        let credential = credential.ok_or_else(|| AcquireError::NoCredential.failure())?;
        let failed = |e| AcquireError::Server(e).failure();
        let conn = self
            .dialer
            .connect(
                primary,
                auth_user,
                database,
                &credential,
                config.connect_timeout,
            )
            .await;
        let mut conn = match conn {
            // a database that does not exist has no users to find: answered as no user is,
            // so a login does not tell which databases exist
            Err(server::ServerError::Refused { code, .. }) if code.as_deref() == Some("3D000") => {
                return Ok(None)
            }
            other => other.map_err(failed)?,
        };
        // the name is bound to `$1`, never read as SQL
        let rows = conn.run_with(&config.auth_query, Some(user)).await;
        conn.terminate().await;
        let (rows, _) = rows.map_err(failed)?;
        let secret = rows
            .into_iter()
            .next()
            .and_then(|row| row.into_iter().nth(1).flatten());
        Ok(secret.and_then(|s| strata_config::parse_secret(&s).ok()))
    }

    /// The settings it serves with now.
    pub fn config(&self) -> DatabaseListener {
        self.site.load().config.clone()
    }

    /// What a client asking for TLS is answered with (none: 'N'), and whether clients must
    /// use TLS.
    pub(crate) fn tls(&self) -> (Option<tokio_rustls::TlsAcceptor>, bool) {
        let site = self.site.load();
        (site.tls.clone(), site.config.tls_required)
    }

    /// Whether a replica could take reads now: replica reads on, and one up within the lag
    /// bound. Only then is a statement worth classifying.
    fn replica_ready(&self) -> bool {
        let site = self.site.load();
        site.config.replica_reads
            && (0..site.config.shards.len()).any(|shard| {
                !site
                    .roles
                    .replicas(shard, site.config.max_replica_lag)
                    .is_empty()
            })
    }

    /// The listener's sharded tables and shard count, when it has shards.
    fn sharding(&self) -> Option<Arc<shard::Sharding>> {
        self.site.load().sharding.clone()
    }

    /// How long a client may sit idle inside a transaction, if there is a bound.
    fn idle_transaction_timeout(&self) -> Option<std::time::Duration> {
        self.site.load().config.idle_transaction_timeout
    }

    /// How long a client may hold no server connection before it is let go.
    fn client_idle_timeout(&self) -> Option<std::time::Duration> {
        self.site.load().config.client_idle_timeout
    }

    /// How long a client stays on the primary after a transaction there.
    fn read_your_writes(&self) -> std::time::Duration {
        self.site.load().config.read_your_writes
    }

    /// The servers' roles.
    pub fn roles(&self) -> Arc<Roles> {
        self.site.load().roles.clone()
    }

    /// Starts asking the servers for their roles, and closing connections idle too long.
    pub fn start_checks(self: &Arc<Self>) {
        let token = lock(&self.checks).clone();
        tokio::spawn(health::run(self.clone(), token.clone()));
        let svc = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut every = tokio::time::interval(REAP_EVERY);
            loop {
                tokio::select! {
                    _ = token.cancelled() => return,
                    _ = every.tick() => match svc.upgrade() {
                        Some(svc) => svc.reap(),
                        None => return,
                    },
                }
            }
        });
    }

    /// Closes server connections idle for `server_idle_timeout` or open for
    /// `server_lifetime`, and forgets the pools no client holds and no connection is in
    /// (PgBouncer's janitor): idle connections are reused newest first, and without this the
    /// oldest would stay open for good.
    /// Then opens connections where fewer than `min_pool_size` are, to the servers that are
    /// up, for the pools some client has used.
    fn reap(&self) {
        let site = self.site.load();
        let limits = limits(&site.config);
        // the servers clients are sent to now: the primaries, and the replicas that may
        // take reads
        let mut serving = site.roles.primaries();
        if site.config.replica_reads {
            for shard in 0..site.config.shards.len().max(1) {
                serving.extend(site.roles.replicas(shard, site.config.max_replica_lag));
            }
        }
        let mut pools = lock(&self.pools);
        for pool in pools.values() {
            // a pool some client holds keeps min_pool_size open to the servers clients are
            // sent to (as PgBouncer keeps it while a client is connected); one nobody holds
            // lets its connections go idle out
            let held = Arc::strong_count(pool) > 1;
            for server in pool.servers() {
                let keep = if held && serving.contains(&server.addr) {
                    limits
                } else {
                    pool::Limits { min: 0, ..limits }
                };
                server.close_expired(keep);
            }
            if held {
                let credential = || lock(&self.credentials).get(&pool.user).cloned();
                pool.warm(&serving, credential, limits, site.config.ban_time);
            }
        }
        pools.retain(|_, pool| Arc::strong_count(pool) > 1 || !pool.unused());
    }

    /// Stops the role checks.
    pub fn stop_checks(&self) {
        lock(&self.checks).cancel();
    }

    /// Swaps in new settings: clients stay connected, pools stay (resized to a changed
    /// `pool_size`: a lowered one closes connections beyond it as they are given back),
    /// servers that stay keep their roles.
    pub fn reload(&self, config: &DatabaseListener) -> Result<(), TlsError> {
        let tls = acceptor(config)?;
        // connections made from now on use the new server_tls_*; where they changed, the
        // idle ones close now and the others are not reused (a session keeps its own)
        let tls_changed = self.dialer.reload(config)?;
        let old = self.site.load();
        let conn_limit = Limit::resized(
            Some(&old.conn_limit),
            config.max_client_connections as usize,
        );
        self.site.store(Arc::new(Site {
            config: config.clone(),
            tls,
            sharding: shard::Sharding::of(config),
            conn_limit,
            lookups: Limit::resized(Some(&old.lookups), config.pool_size as usize),
            roles: Arc::new(Roles::new(config, Some(&old.roles))),
        }));
        // (first: the pools kept below are those of the users it keeps)
        self.set_credentials(config);
        {
            let mut pools = lock(&self.pools);
            // the pools of users no longer configured, and of servers no longer listed, go
            // (with lookups on, a user not configured may be one auth_query found)
            let found = lock(&self.found);
            pools.retain(|(user, _), _| {
                config.users.iter().any(|u| &u.name == user) || found.contains(user)
            });
            drop(found);
            for pool in pools.values() {
                pool.keep_servers(|addr| config.servers.contains(&addr));
                for server in pool.servers() {
                    if old.config.pool_size != config.pool_size {
                        server.resize(config.pool_size);
                    }
                    if tls_changed {
                        server.close_idle();
                    }
                }
            }
        }
        self.caps.resize(config.max_server_connections);
        self.caps
            .keep_servers(|addr| config.servers.contains(&addr));
        lock(&self.scram).clear();
        self.recheck.notify_one();
        Ok(())
    }

    /// The pool of (user, database), made on first use.
    fn pool(&self, user: &str, database: &str) -> Arc<Pool> {
        let mut pools = lock(&self.pools);
        let key = (user.to_string(), database.to_string());
        if let Some(pool) = pools.get(&key) {
            return pool.clone();
        }
        // a new pair: the pools no client holds and no connection is in go first, so that
        // logins to names that lead nowhere (a database that does not exist) can't pile up
        pools.retain(|_, pool| Arc::strong_count(pool) > 1 || !pool.unused());
        pools
            .entry(key)
            .or_insert_with(|| {
                Arc::new(Pool::new(
                    user,
                    database,
                    self.caps.clone(),
                    self.dialer.clone(),
                ))
            })
            .clone()
    }

    /// [`DatabaseService::acquire`] for a client's transaction or session, counted and timed
    /// (the wait for a server connection).
    async fn assign(
        &self,
        pool: &Pool,
        shard: usize,
        read_only: bool,
    ) -> Result<(Lease, bool), Failure> {
        let asked = std::time::Instant::now();
        let r = self.acquire(pool, shard, read_only).await;
        self.stats.wait.observe(asked.elapsed());
        if r.is_ok() {
            self.stats.assigned.inc();
        }
        r
    }

    /// Where a transaction of `shard` runs: when it only reads, on one of its replicas (up and
    /// near enough), the one with the fewest of `pool`'s connections taken or waited for
    /// ([`pool::ServerPool::load`]), replicas in turn among equals; or on the primary, with
    /// `primary_reads`, when it has fewer than each of them. Otherwise on the primary. The flag says a replica.
    /// `take_turn` false only looks: the next one to take a turn gets the same replica.
    fn target(
        &self,
        site: &Site,
        pool: &Pool,
        shard: usize,
        read_only: bool,
        take_turn: bool,
    ) -> Result<(SocketAddr, bool), AcquireError> {
        let primary = site.roles.primary(shard);
        let replica = if read_only && site.config.replica_reads {
            let turn = if take_turn {
                self.turn.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            } else {
                self.turn.load(std::sync::atomic::Ordering::Relaxed)
            };
            let replicas = site.roles.replicas(shard, site.config.max_replica_lag);
            let n = replicas.len();
            let turned = (0..n).map(|k| replicas[(turn + k) % n]);
            let with_primary = primary.filter(|_| site.config.primary_reads);
            let loads = if n == 0 {
                Vec::new()
            } else {
                pool.loads(turned.chain(with_primary))
            };
            let (of_replicas, of_primary) = loads.split_at(n);
            // the first of the least busy: replicas in turn among equals, the primary only
            // when it is less busy than each of them
            of_replicas
                .iter()
                .min_by_key(|(_, load)| load)
                .filter(|(_, least)| of_primary.first().is_none_or(|(_, p)| p >= least))
                .map(|(addr, _)| *addr)
        } else {
            None
        };
        match (replica, primary) {
            (Some(r), _) => Ok((r, true)),
            (None, Some(p)) => Ok((p, false)),
            (None, None) => Err(AcquireError::NoPrimary),
        }
    }

    /// The pool of connections a query of `shard` that only reads would get one from (see
    /// [`DatabaseService::target`]), when it is busy enough that reads share connections
    /// (`read_pipeline_from` in use), counting `taking` more: the pool whose lines the query
    /// may join (`taking` 0), or that it would start a line of, once it takes a connection of
    /// its own (1: reads are classified only then, and for replicas).
    fn busy_pool(
        &self,
        pool: &Pool,
        shard: usize,
        to_replica: bool,
        taking: i64,
    ) -> Option<Arc<pool::ServerPool>> {
        let site = self.site.load();
        let server = self.pool_of(&site, pool, shard, to_replica)?;
        shares(&site.config, &server, taking).then_some(server)
    }

    /// The connections of `pool` to the server a query of `shard` would go to now (a
    /// replica's for a read, see [`DatabaseService::target`]), without taking a turn.
    fn pool_of(
        &self,
        site: &Site,
        pool: &Pool,
        shard: usize,
        to_replica: bool,
    ) -> Option<Arc<pool::ServerPool>> {
        let (target, _) = self.target(site, pool, shard, to_replica, false).ok()?;
        Some(pool.server(target, limits(&site.config)))
    }

    /// Whether every connection of `pool` to the server a query of `shard` would go to is
    /// taken: a client that needs one now would wait.
    fn pool_full(&self, pool: &Pool, shard: usize, to_replica: bool) -> bool {
        let site = self.site.load();
        self.pool_of(&site, pool, shard, to_replica)
            .is_some_and(|server| server.full())
    }

    /// A read joined a line of the replica [`DatabaseService::busy_pool`] looked at: the next
    /// read goes to the next replica.
    fn turn_taken(&self) {
        self.turn.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether reads share connections when trials show they are answered sooner so.
    fn trials(&self) -> bool {
        self.site.load().config.read_pipeline_trials
    }

    /// Queries that only read may share a connection, this many at most (1: they don't).
    fn read_pipeline(&self) -> usize {
        self.site.load().config.read_pipeline as usize
    }

    /// Whether reads share `server`'s connections now: enough of them are in use (all, unless
    /// `read_pipeline_from` says fewer), or reads were answered sooner sharing them.
    fn shares(&self, server: &pool::ServerPool) -> bool {
        shares(&self.site.load().config, server, 0)
    }

    /// A server connection of `pool` to `shard`: on one of its replicas for a transaction
    /// that only reads (when one is up and near enough), else on its primary. The flag says
    /// it is a replica's.
    async fn acquire(
        &self,
        pool: &Pool,
        shard: usize,
        read_only: bool,
    ) -> Result<(Lease, bool), Failure> {
        let site = self.site.load_full();
        let (target, replica) = self
            .target(&site, pool, shard, read_only, true)
            .map_err(AcquireError::failure)?;
        let limits = limits(&site.config);
        // the credential is looked up only for a new connection, not for each transaction
        let credential = || lock(&self.credentials).get(&pool.user).cloned();
        let failure = match pool.acquire(target, credential, limits).await {
            Ok(lease) => return Ok((lease, replica)),
            Err(e) => e.failure(),
        };
        if replica && failure.retry == Retry::Always {
            // a replica that can't be reached or refuses the login (starting up, too many
            // clients, a pg_hba.conf of its own) is banned, and the read goes to the primary:
            // the client sees no error a direct connection to the primary would not give
            tracing::warn!(listener = %self.name, replica = %target, "replica refused a connection: banned, the read goes to the primary: {failure}");
            self.ban(&site, target, &failure);
            let Some(primary) = site.roles.primary(shard) else {
                return Err(AcquireError::NoPrimary.failure());
            };
            return pool
                .acquire(primary, credential, limits)
                .await
                .map(|lease| (lease, false))
                .map_err(AcquireError::failure);
        }
        // the primary, when it can't be reached, is banned here only when no checks run (with
        // them, the next check decides, and one slow connect does not take the writes out for
        // a ban)
        if site.config.check_user.is_none() && matches!(failure.kind, Kind::Connect | Kind::Timeout)
        {
            self.ban(&site, target, &failure);
        }
        Err(failure)
    }

    /// Bans `target` for `ban_time`; when that changes its role, idle connections to any
    /// server but the primary are closed.
    fn ban(&self, site: &Site, target: std::net::SocketAddr, why: &Failure) {
        if site.roles.set(
            target,
            health::Role::Down,
            why.to_string(),
            site.config.ban_time,
        ) {
            self.close_idle_except(&site.roles.primaries());
        }
    }

    /// The SCRAM keys a client of `user` is checked against (made once from a password).
    fn scram_keys(&self, user: &str, secret: &Secret) -> Option<ScramKeys> {
        if let Secret::Plain(_) = secret {
            let mut cache = lock(&self.scram);
            if let Some((s, keys)) = cache.get(user) {
                if s == secret {
                    return Some(keys.clone());
                }
            }
            let Secret::Plain(password) = secret else {
                return None;
            };
            let keys = ScramKeys::for_password(user, password, &self.mock_nonce);
            cache.insert(user.to_string(), (secret.clone(), keys.clone()));
            return Some(keys);
        }
        ScramKeys::for_secret(secret)
    }

    /// The secret an unknown `user` is checked against: one nobody knows, of the kind a
    /// known user would be asked for (SCRAM: salted for the name, as a known one's would be).
    fn nobody(&self, config: &DatabaseListener, user: &str) -> Secret {
        // with lookups, the roles found are mostly SCRAM (PostgreSQL's default since 14), and
        // an unknown name is asked as one would be, as PostgreSQL mocks by its default
        if config.auth_type == strata_config::AuthType::Md5 && config.auth_user.is_none() {
            return Secret::Plain(auth::b64(&auth::random::<24>()));
        }
        ScramKeys::mock(user, &self.mock_nonce).as_secret()
    }

    /// A client of `user` proved itself with this client key: for a user stored as a SCRAM
    /// secret, it is what Strata logs in to the servers with.
    fn learned_client_key(&self, user: &str, secret: &Secret, client_key: [u8; 32]) {
        if let Secret::Scram { .. } = secret {
            if let Some(Credential::Scram(_, key)) = lock(&self.credentials).get_mut(user) {
                *key = Some(client_key);
            }
        }
    }

    /// Closes the idle connections of every pool to servers other than those in `keep`.
    fn close_idle_except(&self, keep: &[SocketAddr]) {
        for pool in lock(&self.pools).values() {
            for sp in pool.servers() {
                if !keep.contains(&sp.addr) {
                    sp.close_idle();
                } else {
                    // a primary now, drained no more (see Roles::set)
                    sp.set_drained(false);
                }
            }
        }
    }

    /// Whether writes have somewhere to go, on every shard.
    pub fn serving(&self) -> bool {
        let site = self.site.load();
        (0..site.config.shards.len()).all(|shard| site.roles.primary(shard).is_some())
    }

    /// The listener, its servers with their roles, and its pools (PgBouncer's SHOW POOLS).
    pub fn status(&self) -> Value {
        let config = self.config();
        let listener = &config;
        let pools: Vec<Value> = {
            let mut all: Vec<Arc<Pool>> = lock(&self.pools).values().cloned().collect();
            all.sort_by(|a, b| (&a.user, &a.database).cmp(&(&b.user, &b.database)));
            all.iter()
                .flat_map(|p| {
                    p.servers().into_iter().map(move |sp| {
                        json!({
                            "user": p.user,
                            "database": p.database,
                            "server": sp.addr.to_string(),
                            "server_in_use": sp.in_use.get(),
                            "server_idle": sp.idle(),
                            "server_shared": sp.lines.len(),
                            "clients_waiting": sp.waiting.get(),
                            "reads_share": shared_by_trial(listener, &sp),
                            "reads_per_second_alone": sp.trial.rates().0,
                            "reads_per_second_shared": sp.trial.rates().1,
                        })
                    })
                })
                .collect()
        };
        json!({
            "name": self.name,
            "listen": config.listen.to_string(),
            "pool_mode": match config.pool_mode { PoolMode::Transaction => "transaction", PoolMode::Session => "session" },
            "pool_size": config.pool_size,
            "server_tls_mode": config.server_tls.mode.as_str(),
            "clients": self.stats.clients.get(),
            "clients_active": self.stats.active.get(),
            "primary": self.roles().primary(0).map(|a| a.to_string()),
            "shards": (0..config.shards.len()).map(|i| json!({
                "shard": i,
                "primary": self.roles().primary(i).map(|a| a.to_string()),
            })).collect::<Vec<_>>(),
            "sharded_tables": config.sharded_tables.iter().map(|t| json!({
                "table": t.table,
                "column": t.column,
            })).collect::<Vec<_>>(),
            "servers": self.servers_status(&config),
            "pools": pools,
        })
    }

    /// Each server's role, lag and health, what Strata's last connection to it is on (TLS
    /// or clear), and with `max_server_connections` the connections open to it under the
    /// bound.
    fn servers_status(&self, config: &DatabaseListener) -> Value {
        let mut servers = self.roles().status();
        for server in servers.as_array_mut().into_iter().flatten() {
            let addr = server["address"].as_str().and_then(|a| a.parse().ok());
            if let (Some(addr), Some(entry)) = (addr, server.as_object_mut()) {
                // what the last connection made to it is on (null: none made yet)
                entry.insert("tls".into(), self.dialer.seen(addr).into());
                if config.max_server_connections > 0 {
                    entry.insert("connections_open".into(), self.caps.open(addr).into());
                    entry.insert(
                        "max_server_connections".into(),
                        config.max_server_connections.into(),
                    );
                }
            }
        }
        servers
    }

    /// Drains a replica (it takes no new reads; transactions and sessions on it finish, and
    /// its idle connections close) or restores it; the error says what was not found, or that
    /// a primary can't be drained.
    pub fn backend_action(
        &self,
        backend: &str,
        action: BackendAction,
    ) -> Result<Value, ActionError> {
        let roles = self.roles();
        let names = || {
            roles
                .all()
                .iter()
                .map(|s| s.addr.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let not_found = || {
            ActionError::NotFound(format!(
                "no server \"{backend}\" here; servers: {}",
                names()
            ))
        };
        let addr = backend
            .parse::<std::net::SocketAddr>()
            .map_err(|_| not_found())?;
        let drain = action == BackendAction::Drain;
        let s = match roles.set_drained(addr, drain) {
            Some(Ok(s)) => s,
            Some(Err(why)) => return Err(ActionError::Refused(why)),
            None => return Err(not_found()),
        };
        for pool in lock(&self.pools).values() {
            for sp in pool.servers() {
                if sp.addr == addr {
                    sp.set_drained(drain);
                }
            }
        }
        tracing::info!(listener = %self.name, server = %addr, ?action, "admin action");
        Ok(json!({
            "address": s.addr.to_string(),
            "role": role_name(s.role),
            "drained": s.drained,
        }))
    }

    /// Writes the listener's metrics.
    pub fn metrics(&self, w: &mut MetricsWriter) {
        let site = self.site.load();
        let l = [("listener", self.name.as_str())];
        w.counter(
            "strata_db_connections_total",
            "Client connections accepted by each database listener.",
            &l,
            self.stats.connections.get(),
        );
        w.gauge(
            "strata_db_clients",
            "Clients logged in to each database listener now.",
            &l,
            self.stats.clients.get() as f64,
        );
        w.gauge(
            "strata_db_clients_active",
            "Clients holding a server connection now (in a transaction, or a session).",
            &l,
            self.stats.active.get() as f64,
        );
        w.counter(
            "strata_db_auth_failures_total",
            "Logins refused for a wrong password or an unknown user.",
            &l,
            self.stats.auth_failures.get(),
        );
        for (result, n) in ["found", "none", "failed"].iter().zip(&self.stats.lookups) {
            w.counter(
                "strata_db_user_lookups_total",
                "Users not in the config looked up with auth_query, by result: a secret found, none (no such role, no password), or the lookup failed.",
                &[("listener", self.name.as_str()), ("result", result)],
                n.get(),
            );
        }
        w.counter(
            "strata_db_no_server_total",
            "Clients told no server connection could be had (wait timeout, server down).",
            &l,
            self.stats.no_server.get(),
        );
        w.counter(
            "strata_db_server_assignments_total",
            "Server connections handed to clients: one per transaction (transaction mode) or session (session mode).",
            &l,
            self.stats.assigned.get(),
        );
        w.counter(
            "strata_db_shared_queries_total",
            "Queries that only read sent on a server connection shared with other clients' such queries (counted in assignments too).",
            &l,
            self.stats.shared.get(),
        );
        w.histogram(
            "strata_db_wait_seconds",
            "How long clients waited for a server connection (PgBouncer's wait time).",
            &l,
            &self.stats.wait,
        );
        for s in self.roles().all() {
            let addr = s.addr.to_string();
            let shard = s.shard.to_string();
            if let Some(lag) = s.lag_bytes {
                w.gauge(
                    "strata_db_replica_lag_bytes",
                    "How far each replica's replay is behind its shard's primary's WAL, in bytes, as last checked.",
                    &[
                        ("listener", self.name.as_str()),
                        ("server", addr.as_str()),
                        ("shard", shard.as_str()),
                    ],
                    lag as f64,
                );
            }
            for role in [
                health::Role::Primary,
                health::Role::Replica,
                health::Role::Unknown,
                health::Role::Down,
            ] {
                w.gauge(
                    "strata_db_server_role",
                    "1 for each database server's role (primary, replica, unknown, down).",
                    &[
                        ("listener", self.name.as_str()),
                        ("server", addr.as_str()),
                        ("shard", shard.as_str()),
                        ("role", role_name(role)),
                    ],
                    f64::from(u8::from(s.role == role)),
                );
            }
        }
        for p in lock(&self.pools).values() {
            for sp in p.servers() {
                let addr = sp.addr.to_string();
                let labels = [
                    ("listener", self.name.as_str()),
                    ("user", p.user.as_str()),
                    ("database", p.database.as_str()),
                    ("server", addr.as_str()),
                ];
                w.gauge(
                    "strata_db_server_connections_in_use",
                    "Server connections handed to clients, per pool and server.",
                    &labels,
                    sp.in_use.get() as f64,
                );
                w.gauge(
                    "strata_db_server_connections_idle",
                    "Server connections idle in the pool, per pool and server.",
                    &labels,
                    sp.idle() as f64,
                );
                w.gauge(
                    "strata_db_server_connections_shared",
                    "Server connections in use that several clients' queries that only read share, per pool and server (counted in use too).",
                    &labels,
                    sp.lines.len() as f64,
                );
                w.gauge(
                    "strata_db_reads_share",
                    "1 while reads share this pool's connections because trials found more answered that way (read_pipeline_trials), per pool and server.",
                    &labels,
                    f64::from(u8::from(shared_by_trial(&site.config, &sp))),
                );
                w.gauge(
                    "strata_db_clients_waiting",
                    "Clients waiting for a server connection, per pool and server.",
                    &labels,
                    sp.waiting.get() as f64,
                );
            }
        }
    }
}

fn role_name(r: health::Role) -> &'static str {
    match r {
        health::Role::Primary => "primary",
        health::Role::Replica => "replica",
        health::Role::Unknown => "unknown",
        health::Role::Down => "down",
    }
}

impl strata_metrics::CountsOpen for DatabaseService {
    fn open_gauge(&self) -> &Gauge {
        &self.stats.clients
    }
}

impl strata_layer::Service for DatabaseService {
    type Config = DatabaseListener;
    type Error = TlsError;
    const LAYER: &'static str = "database";

    fn sections(config: &strata_config::Config) -> &[DatabaseListener] {
        &config.database
    }
    fn name(config: &DatabaseListener) -> &str {
        &config.name
    }
    fn listen(config: &DatabaseListener) -> SocketAddr {
        config.listen
    }
    fn scheme(_config: &DatabaseListener) -> &'static str {
        "postgres"
    }
    fn check(config: &DatabaseListener) -> Result<(), TlsError> {
        check_tls(config)
    }
    fn start(config: &DatabaseListener) -> Result<Arc<Self>, Self::Error> {
        let svc = DatabaseService::new(config)?;
        svc.start_checks();
        Ok(svc)
    }
    fn reload(&self, config: &DatabaseListener) -> Result<(), Self::Error> {
        DatabaseService::reload(self, config)
    }
    fn stop(&self) {
        self.stop_checks();
    }
    fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        stop: CancellationToken,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        serve(self, listener, stop)
    }
    fn status(&self) -> Value {
        DatabaseService::status(self)
    }
    fn metrics(&self, w: &mut MetricsWriter) {
        DatabaseService::metrics(self, w)
    }
    fn backend_action(&self, backend: &str, action: BackendAction) -> Result<Value, ActionError> {
        DatabaseService::backend_action(self, backend, action)
    }
    fn serving(&self) -> bool {
        DatabaseService::serving(self)
    }
    fn traffic(&self) -> Traffic {
        Traffic {
            requests: self.stats.assigned.get() + self.stats.no_server.get(),
            errors: self.stats.no_server.get(),
            latency: Some(self.stats.wait.buckets()),
        }
    }
    fn healthy(&self) -> Vec<String> {
        self.roles()
            .all()
            .iter()
            .filter(|s| {
                s.role == health::Role::Primary || (s.role == health::Role::Replica && !s.drained)
            })
            .map(|s| s.addr.to_string())
            .collect()
    }
}

/// Accepts until `shutdown`; clients outside a transaction are closed, the others finish it.
pub async fn serve(svc: Arc<DatabaseService>, listener: TcpListener, shutdown: CancellationToken) {
    let name = svc.name.clone();
    let limit = svc.site.load().conn_limit.clone();
    accept_loop(
        &name,
        listener,
        &shutdown,
        limit,
        |stream, peer, admitted| {
            svc.stats.connections.inc();
            tokio::spawn(client::serve(Box::new(client::Accepted {
                svc: svc.clone(),
                stream,
                peer,
                admitted,
                shutdown: shutdown.clone(),
            })));
        },
    )
    .await
    .finished()
    .await;
}
