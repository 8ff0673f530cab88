//! The cache layer: a Redis (RESP2) and memcached (text) sharding proxy in front of real
//! servers, placing every key exactly where twemproxy would (same distributions, same hashes,
//! same ring), so a team on twemproxy can point Strata at the same servers and find every key
//! where it was.
//!
//! The split follows the protocol's layers: codecs `resp` and `memcache` (bytes <-> commands
//! and replies, fuzzed); routing `command` (where a Redis command's keys are) and `redis` (where
//! each command goes, and what the proxy answers itself); `pool` (one generation of a pool's
//! settings: ring, servers, the server of a key); `server` (pipelined connections to one
//! server, shared by all clients); `client` (one client connection: read, route, answer in
//! order) and `answer` (answers owed by servers, merged where a command was split).

mod answer;
mod client;
pub mod cluster;
mod command;
mod dedicated;
#[cfg(any(test, feature = "fuzz"))]
#[doc(hidden)]
pub mod fuzz;
pub mod memcache;
mod migrate;
mod pool;
mod pubsub;
mod redis;
mod redis_cluster;
pub mod resp;
mod sentinel;
mod server;

use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use serde_json::{json, Value};
use strata_config::{CacheListener, CacheProtocol};
use strata_metrics::{Buckets, Counter, CountsOpen, Gauge, MetricsWriter, Traffic};
use strata_net::accept_loop;
use strata_upstream::{group_action, group_metrics, ActionError, BackendAction};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use command::{lookup, Route, Spec, COMMANDS};
use pool::Pool;

/// Where the scan of a reply not whole yet stopped, in either protocol.
#[derive(Debug, Default)]
struct ReplyScan {
    resp: resp::ReplyScan,
    memcache: usize,
}

/// The length of the complete reply at the front of `buf` in `protocol`, if it is all there,
/// scanned from where `scan` stopped (`buf` holding what it held then, and more).
fn reply_len_from(
    protocol: CacheProtocol,
    buf: &[u8],
    scan: &mut ReplyScan,
) -> Result<Option<usize>, server::LinkError> {
    Ok(match protocol {
        CacheProtocol::Redis => resp::reply_len_from(buf, &mut scan.resp)?,
        CacheProtocol::Memcache => memcache::reply_len_from(buf, &mut scan.memcache)?,
    })
}

/// One `[[cache]]` pool: its listener, its live generation of settings, its counters.
pub struct CacheService {
    /// The pool's name from the config; it never changes on reload.
    pub name: String,
    pool: ArcSwap<Pool>,
    stats: Stats,
}

#[derive(Default)]
struct Stats {
    connections: Counter,
    open: Gauge,
    commands: Counter,
    /// Commands answered with an error by the proxy itself (no server, refused, bad input).
    errors: Counter,
    protocol_errors: Counter,
}

impl CountsOpen for CacheService {
    fn open_gauge(&self) -> &Gauge {
        &self.stats.open
    }
}

impl CacheService {
    /// The pool's state for `config`, with its server connections ready to be made.
    pub fn new(config: &CacheListener) -> Arc<Self> {
        Arc::new(CacheService {
            name: config.name.clone(),
            pool: ArcSwap::from_pointee(Pool::new(config, None)),
            stats: Stats::default(),
        })
    }

    /// Swaps in a new generation: servers that stay keep their health state; commands in
    /// flight finish on the old connections; client connections carry on.
    pub fn reload(&self, config: &CacheListener) {
        let old = self.pool.load_full();
        self.pool.store(Arc::new(Pool::new(config, Some(&old))));
        old.retire();
    }

    /// The pool's address, counters, ring and servers, for `/status`.
    pub fn status(&self) -> Value {
        let pool = self.pool.load();
        json!({
            "name": self.name,
            "listen": pool.config.listen.to_string(),
            "protocol": match pool.config.protocol {
                CacheProtocol::Redis => "redis",
                CacheProtocol::Memcache => "memcache",
            },
            "distribution": pool.config.distribution.name(),
            "hash": pool.config.hash.name(),
            "consistency": format!("{:?}", pool.config.consistency).to_lowercase(),
            "open_connections": self.stats.open.get(),
            "connections": self.stats.connections.get(),
            "commands": self.stats.commands.get(),
            "servers": pool.server_status(),
            "cluster": pool.cluster.as_ref().map(|c| {
                let nodes: Vec<Value> = c
                    .nodes()
                    .iter()
                    .map(|n| json!({
                        "address": n.live.target.get().0.to_string(),
                        "state": n.master.backend.state().as_str(),
                        "replicas": n.live.replicas.load().iter().map(|r| json!({
                            "address": r.backend.addr.to_string(),
                            "state": r.backend.state().as_str(),
                        })).collect::<Vec<_>>(),
                    }))
                    .collect();
                let refreshed = c.last_refresh.lock().map(|l| l.clone()).unwrap_or_default();
                json!({ "nodes": nodes, "last_refresh": refreshed })
            }),
        })
    }

    /// Writes the pool's metrics and its servers'.
    pub fn metrics(&self, w: &mut MetricsWriter) {
        let l = [("pool", self.name.as_str())];
        let s = &self.stats;
        w.counter(
            "strata_cache_connections_total",
            "Client connections accepted.",
            &l,
            s.connections.get(),
        );
        w.gauge(
            "strata_cache_open_connections",
            "Client connections open now.",
            &l,
            s.open.get() as f64,
        );
        w.counter(
            "strata_cache_commands_total",
            "Commands read from clients.",
            &l,
            s.commands.get(),
        );
        w.counter(
            "strata_cache_errors_total",
            "Commands the proxy answered with an error itself (no server, refused, invalid).",
            &l,
            s.errors.get(),
        );
        w.counter(
            "strata_cache_protocol_errors_total",
            "Client connections closed for bytes that are not the protocol.",
            &l,
            s.protocol_errors.get(),
        );
        let pool = self.pool.load();
        w.counter(
            "strata_cache_maybe_stale_keys_total",
            "Keys written on another server while theirs was out (weak pools) past remember_writes (or 64 MiB of keys): their server may serve them stale when it is back.",
            &l,
            pool.moved_writes.forgotten.get(),
        );
        for (share, server) in pool.ring.shares().into_iter().zip(&pool.group.backends) {
            w.gauge(
                "strata_cache_ring_share",
                "The share of the keys the server owns on the ring.",
                &[
                    ("pool", self.name.as_str()),
                    ("backend", server.name.as_str()),
                ],
                share,
            );
        }
        group_metrics(w, "cache", &self.name, &pool.group);
        if !pool.config.sentinels.is_empty() {
            for (shard, server) in pool.servers.iter().zip(&pool.config.servers) {
                w.counter(
                    "strata_cache_master_switches_total",
                    "Times Sentinel named a new master for the server.",
                    &[
                        ("pool", self.name.as_str()),
                        ("server", server.ring_name.as_str()),
                    ],
                    shard.live.switches.get(),
                );
            }
        }
        for shard in &pool.shards() {
            let replicas = shard.live.replicas.load();
            let servers = std::iter::once(&shard.master).chain(replicas.iter().map(|r| &**r));
            for server in servers {
                w.histogram(
                    "strata_cache_server_latency_seconds",
                    "Time from a command's write to its server's reply.",
                    &[
                        ("pool", self.name.as_str()),
                        ("backend", server.backend.name.as_str()),
                    ],
                    &server.latency.histogram,
                );
            }
        }
    }

    /// Whether any of the pool's servers can take commands now.
    pub fn serving(&self) -> bool {
        self.pool
            .load()
            .group
            .backends
            .iter()
            .any(|b| b.is_available())
    }

    /// Drains or restores a server (by address); a drained server's keys follow the pool's
    /// `consistency`, as when it is ejected.
    pub fn backend_action(
        &self,
        backend: &str,
        action: BackendAction,
    ) -> Result<Value, ActionError> {
        group_action(&self.pool.load().group, backend, action)
    }
}

impl strata_layer::Service for CacheService {
    type Config = CacheListener;
    type Error = std::convert::Infallible;
    const LAYER: &'static str = "cache";

    fn sections(config: &strata_config::Config) -> &[CacheListener] {
        &config.cache
    }
    fn name(config: &CacheListener) -> &str {
        &config.name
    }
    fn listen(config: &CacheListener) -> SocketAddr {
        config.listen
    }
    fn scheme(config: &CacheListener) -> &'static str {
        match config.protocol {
            CacheProtocol::Redis => "redis",
            CacheProtocol::Memcache => "memcache",
        }
    }
    fn start(config: &CacheListener) -> Result<Arc<Self>, Self::Error> {
        Ok(CacheService::new(config))
    }
    fn reload(&self, config: &CacheListener) -> Result<(), Self::Error> {
        CacheService::reload(self, config);
        Ok(())
    }
    fn stop(&self) {
        self.pool.load().retire();
    }
    fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        stop: CancellationToken,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        serve(self, listener, stop)
    }
    fn status(&self) -> Value {
        CacheService::status(self)
    }
    fn metrics(&self, w: &mut MetricsWriter) {
        CacheService::metrics(self, w)
    }
    fn backend_action(&self, backend: &str, action: BackendAction) -> Result<Value, ActionError> {
        CacheService::backend_action(self, backend, action)
    }
    fn serving(&self) -> bool {
        CacheService::serving(self)
    }
    fn traffic(&self) -> Traffic {
        let pool = self.pool.load();
        let mut latency = Buckets::default();
        for shard in &pool.shards() {
            latency.add(&shard.master.latency.histogram.buckets());
            for r in shard.live.replicas.load().iter() {
                latency.add(&r.latency.histogram.buckets());
            }
        }
        Traffic {
            requests: self.stats.commands.get(),
            errors: self.stats.errors.get(),
            latency: Some(latency),
        }
    }
    fn healthy(&self) -> Vec<String> {
        self.pool.load().group.available_names()
    }
}

/// Accepts until `shutdown`, then waits for open client connections to finish.
pub async fn serve(svc: Arc<CacheService>, listener: TcpListener, shutdown: CancellationToken) {
    let name = svc.name.clone();
    let limit = svc.pool.load().conn_limit.clone();
    let draining = accept_loop(
        &name,
        listener,
        &shutdown,
        limit,
        |stream, _addr, admitted| {
            svc.stats.connections.inc();
            let open = strata_metrics::Open::new(svc.clone());
            tokio::spawn(client::Client::new(
                open,
                stream,
                admitted,
                shutdown.clone(),
            ));
        },
    )
    .await;
    let timers = svc.pool.load().timers.clone();
    draining.finished_waking(&timers).await;
}
