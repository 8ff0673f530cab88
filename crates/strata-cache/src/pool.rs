//! One generation of a pool: its settings, its ring, its servers with their connections and
//! replicas, and the answers to "which server holds this key, now" and "where does a read of
//! it go".

use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use bytes::{Bytes, BytesMut};

use crate::resp;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use serde_json::{json, Value};
use strata_config::{CacheListener, Consistency, ReadFrom};
use strata_health::{Backend, Group};
use strata_net::Limit;
use strata_net::Timers;
use strata_ring::{hash_tag, random_u32, Distribution, Ring};
use strata_upstream::backend_status;

use crate::server::{LinkSettings, Reply, Server, Target};

/// A pool's settings, ring and servers, swapped whole on reload.
pub struct Pool {
    /// The settings it was built from.
    pub config: CacheListener,
    /// Where keys live.
    pub ring: Ring,
    /// The servers' health, in config order (shared with the servers' connection tasks).
    pub group: Arc<Group>,
    /// The servers, in config order, each with its replicas.
    pub servers: Vec<Arc<Shard>>,
    /// The ring before the last reload changed it, while `read_through` lasts.
    pub old: Option<OldRing>,
    /// The pool's client connection limit.
    pub conn_limit: Limit,
    /// The client connections' idle deadlines; the same across generations.
    pub timers: Arc<Timers>,
    /// How connections to the servers are made and timed.
    pub link: Arc<LinkSettings>,
    /// Stops this generation's Sentinel watch when it is dropped.
    watch: CancellationToken,
    /// `weak` pools: keys written elsewhere while their server was out, by that server.
    pub moved_writes: Arc<MovedWrites>,
    /// `backend = "cluster"`: the cluster's nodes and slots (the servers are its seeds).
    pub cluster: Option<Arc<crate::cluster::Cluster>>,
    /// Moved keys being copied to their new servers now; the same across generations.
    pub copies: Arc<crate::migrate::Copies>,
}

/// Keys written on another server while their own was out (`weak` pools): deleted on their
/// server when it is back, before anything else is sent to it there, so it does not serve a
/// value older than the one written meanwhile.
#[derive(Default)]
pub struct MovedWrites {
    keys: Mutex<std::collections::HashMap<usize, std::collections::HashSet<Bytes>>>,
    count: std::sync::atomic::AtomicUsize,
    /// The bytes of the keys, which [`REMEMBERED_BYTES`] bounds as `remember_writes` bounds
    /// their number.
    bytes: std::sync::atomic::AtomicUsize,
    /// Keys past the limit, which a returning server may serve stale.
    pub forgotten: strata_metrics::Counter,
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.watch.cancel();
    }
}

/// The most key bytes a `weak` pool remembers for its servers that are out (a client writing
/// keys of megabytes could otherwise have `remember_writes` of them held).
const REMEMBERED_BYTES: usize = 64 << 20;

impl MovedWrites {
    /// The same keys by the servers' new places (`place` of an old index; `None`: the server
    /// left, and its keys with it); the count of forgotten ones carries on.
    fn remapped(&self, place: impl Fn(usize) -> Option<usize>) -> MovedWrites {
        let keys: std::collections::HashMap<_, _> = strata_net::lock(&self.keys)
            .iter()
            .filter_map(|(i, k)| Some((place(*i)?, k.clone())))
            .collect();
        let bytes = keys.values().flatten().map(Bytes::len).sum::<usize>();
        let moved = MovedWrites {
            count: keys.values().map(|k| k.len()).sum::<usize>().into(),
            bytes: bytes.into(),
            keys: Mutex::new(keys),
            forgotten: Default::default(),
        };
        moved.forgotten.add(self.forgotten.get());
        moved
    }
}

impl Pool {
    /// Stops this generation's Sentinel watch and cluster map refresher: a reload replaced it,
    /// or the pool was removed. Clients still on it (a subscriber, a blocking command) go on
    /// with what was last learned, and with the masters the next generation follows (it
    /// shares their addresses).
    pub fn retire(&self) {
        self.watch.cancel();
    }
}

/// Where keys lived before a reload moved some of them: a GET that misses on a key's new
/// server is read from its old one and copied over, so a ring change is not a miss storm.
pub struct OldRing {
    /// The old placement.
    pub ring: Ring,
    /// The old servers (those that left too), by the old ring's indices.
    pub servers: Vec<Arc<Shard>>,
    /// The old hash settings.
    pub config: CacheListener,
    /// When read-through stops.
    pub until: std::time::Instant,
}

/// One server of the ring (a shard): its master, and its replicas for reads.
pub struct Shard {
    /// The master: every write, and reads unless `read_from` says otherwise.
    pub master: Server,
    /// What can change while the generation runs: the replicas, where they come from.
    pub live: Arc<Live>,
}

/// A shard's replicas and where its roles were learned, changed by the Sentinel watch.
pub struct Live {
    /// The replicas now, with their connections.
    pub replicas: ArcSwap<Vec<Arc<Server>>>,
    /// "config", or which Sentinel said so.
    pub source: Mutex<String>,
    /// The master's address, shared with its connections.
    pub target: Arc<Target>,
    /// Times Sentinel moved the master (kept across reloads, as the master is).
    pub switches: Arc<strata_metrics::Counter>,
}

impl Shard {
    /// Server `index` of `group` at `target`, with no replicas yet; `source` says where its
    /// role came from.
    pub fn start(
        group: &Arc<Group>,
        index: usize,
        settings: &Arc<LinkSettings>,
        target: Arc<Target>,
        source: &str,
    ) -> Arc<Shard> {
        Arc::new(Shard {
            master: Server::start(group, index, settings, target.clone(), Default::default()),
            live: Arc::new(Live {
                replicas: ArcSwap::from_pointee(Vec::new()),
                source: Mutex::new(source.into()),
                target,
                switches: Default::default(),
            }),
        })
    }

    /// The same server as `before` (the generation before a reload) with `settings`: new
    /// connections, the same latency histogram, the master and Sentinel's account of it
    /// (when `sentinel`), and its replicas' health and histograms.
    fn carried(
        before: &Shard,
        group: &Arc<Group>,
        index: usize,
        settings: &Arc<LinkSettings>,
        target: Arc<Target>,
        sentinel: bool,
    ) -> Arc<Shard> {
        let source = if sentinel {
            strata_net::lock(&before.live.source).clone()
        } else {
            "config".to_string()
        };
        Arc::new(Shard {
            master: Server::start(
                group,
                index,
                settings,
                target.clone(),
                before.master.latency.clone(),
            ),
            live: Arc::new(Live {
                replicas: ArcSwap::from_pointee(Vec::new()),
                source: Mutex::new(source),
                target,
                switches: if sentinel {
                    before.live.switches.clone()
                } else {
                    Default::default()
                },
            }),
        })
    }

    /// Sends a command to the master.
    pub fn send(&self, frame: Bytes, resp3: bool) -> oneshot::Receiver<Reply> {
        self.master.send(frame, resp3)
    }

    /// Sends a read-only command where `read_from` says: a replica that is up (the next one in
    /// turn), the fastest of master and replicas lately, or the master.
    pub fn send_read(
        &self,
        frame: Bytes,
        resp3: bool,
        read_from: ReadFrom,
    ) -> oneshot::Receiver<Reply> {
        if read_from == ReadFrom::Master {
            return self.master.send(frame, resp3);
        }
        let replicas = self.live.replicas.load();
        let now = strata_net::now_ms();
        let up = replicas.iter().filter(|r| r.backend.is_available_at(now));
        let chosen = match read_from {
            ReadFrom::Replica => {
                let n = up.clone().count();
                (n > 0)
                    .then(|| up.clone().nth(strata_ring::random_below(n)))
                    .flatten()
            }
            _ => up
                .min_by_key(|r| r.latency.recent_us.load(Relaxed))
                .filter(|r| {
                    r.latency.recent_us.load(Relaxed) < self.master.latency.recent_us.load(Relaxed)
                }),
        };
        match chosen {
            Some(replica) => replica.send(frame, resp3),
            None => self.master.send(frame, resp3),
        }
    }
}

/// Why a key has no server now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Unavailable {
    /// The key's server is ejected or drained, and the pool is `strong`.
    #[error("the server that owns this key is out, and the pool is strong")]
    OwnerOut,
    /// No server of the pool is available.
    #[error("no server of the pool is available")]
    NoServer,
}

impl Pool {
    /// The shards commands go to: a cluster's nodes (as the map last named them), else the
    /// servers of the config.
    pub fn shards(&self) -> Vec<Arc<Shard>> {
        match &self.cluster {
            Some(cluster) => cluster.nodes(),
            None => self.servers.clone(),
        }
    }

    /// Builds the generation for `config`; servers that `previous` had at the same address
    /// keep their health state and counters. Call inside the runtime: the servers' connection
    /// tasks start here.
    pub fn new(config: &CacheListener, previous: Option<&Pool>) -> Pool {
        let backends: Vec<Arc<Backend>> = config
            .servers
            .iter()
            .map(|s| {
                previous
                    .and_then(|p| p.group.backends.iter().find(|b| b.addr == s.addr))
                    .inspect(|b| b.set_weight(s.weight))
                    .cloned()
                    .unwrap_or_else(|| Arc::new(Backend::new(s.addr, s.weight)))
            })
            .collect();
        let group = Arc::new(Group {
            backends,
            passive: config.passive.clone(),
        });
        let settings = Arc::new(LinkSettings {
            connections: config.server_connections as usize,
            timeout: config.timeout,
            connect_timeout: config.connect_timeout,
            password: config.server_password.clone(),
            protocol: config.protocol,
            readonly: false,
        });
        // what Sentinel said of a server is carried only from a pool that asked it too
        let sentinel = !config.sentinels.is_empty()
            && previous.is_some_and(|p| !p.config.sentinels.is_empty());
        let servers: Vec<Arc<Shard>> = config
            .servers
            .iter()
            .enumerate()
            .map(|(i, s)| {
                // a server that stays (its name, and its address unless Sentinel finds it)
                // keeps what was learned of it; with Sentinel, the master Sentinel named
                let before = previous.filter(|p| p.cluster.is_none()).and_then(|p| {
                    p.config
                        .servers
                        .iter()
                        .position(|o| o.ring_name == s.ring_name && (sentinel || o.addr == s.addr))
                        .map(|o| &p.servers[o])
                });
                let Some(before) = before else {
                    let shard = Shard::start(&group, i, &settings, Target::new(s.addr), "config");
                    shard
                        .live
                        .set_replicas(&s.replicas, &settings, &config.passive, &[]);
                    return shard;
                };
                let target = if sentinel {
                    before.live.target.clone()
                } else {
                    Target::new(s.addr)
                };
                let shard = Shard::carried(before, &group, i, &settings, target, sentinel);
                let replicas_before = before.live.replicas.load();
                // Sentinel's replicas until it is asked again
                let replicas: Vec<SocketAddr> = if sentinel && s.replicas.is_empty() {
                    replicas_before.iter().map(|r| r.backend.addr).collect()
                } else {
                    s.replicas.clone()
                };
                shard
                    .live
                    .set_replicas(&replicas, &settings, &config.passive, &replicas_before);
                shard
            })
            .collect();
        let watch = CancellationToken::new();
        if !config.sentinels.is_empty() {
            let shards = config
                .servers
                .iter()
                .zip(&servers)
                .map(|(c, s)| (c.ring_name.clone(), s.live.clone()))
                .collect();
            tokio::spawn(crate::sentinel::watch(
                config.name.clone(),
                config.sentinels.clone(),
                config.sentinel_password.clone(),
                shards,
                settings.clone(),
                config.passive.clone(),
                watch.clone(),
            ));
        }
        let ring = Ring::new(
            config.distribution,
            config
                .servers
                .iter()
                .map(|s| (s.ring_name.as_str(), s.weight)),
        );
        let cluster = config.cluster.then(|| {
            let seeds: Vec<SocketAddr> = config.servers.iter().map(|s| s.addr).collect();
            // the same cluster as before the reload keeps its map: no moment without one
            let before = previous
                .and_then(|p| p.cluster.clone())
                .filter(|c| c.is(&seeds, &settings, &config.passive));
            let cluster = before.unwrap_or_else(|| {
                let cluster =
                    crate::cluster::Cluster::new(seeds, settings.clone(), config.passive.clone());
                cluster.refresh_soon();
                cluster
            });
            // masters fail over and replicas come and go without a MOVED to say so: the map
            // is asked for again at an interval, until this generation ends
            let (watched, stop) = (cluster.clone(), watch.clone());
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(crate::cluster::REFRESH) => watched.refresh_soon(),
                    }
                }
            });
            cluster
        });
        let old = previous.and_then(|p| old_ring(config, p));
        let moved_writes = previous.map_or_else(Default::default, |p| {
            // a server is known by its name (its place on the ring), as it keeps its keys
            let before: Vec<&str> = p
                .config
                .servers
                .iter()
                .map(|s| s.ring_name.as_str())
                .collect();
            let now: Vec<&str> = config
                .servers
                .iter()
                .map(|s| s.ring_name.as_str())
                .collect();
            if before == now {
                // the servers keep their places: what was remembered stays as it is
                p.moved_writes.clone()
            } else {
                // what was remembered for a server that stays goes with it to its new place
                Arc::new(
                    p.moved_writes
                        .remapped(|i| now.iter().position(|a| *a == before[i])),
                )
            }
        });
        Pool {
            ring,
            group,
            servers,
            old,
            conn_limit: Limit::resized(
                previous.map(|p| &p.conn_limit),
                config.max_connections as usize,
            ),
            timers: previous.map_or_else(Timers::new, |p| p.timers.clone()),
            link: settings,
            watch,
            moved_writes,
            cluster,
            copies: previous.map_or_else(Default::default, |p| p.copies.clone()),
            config: config.clone(),
        }
    }

    /// Where server `i`'s master is now.
    pub fn master_addr(&self, i: usize) -> SocketAddr {
        self.servers[i].live.target.get().0
    }

    /// The index of the server that serves `key` now: its owner on the ring; when the owner is
    /// out, the next available server on the ring unless the pool is `strong`.
    pub fn server_for(&self, key: &[u8]) -> Result<usize, Unavailable> {
        self.route(key, false)
    }

    /// [`Pool::server_for`] for a command that writes `key`: in a `weak` pool a write that
    /// goes elsewhere while the key's server is out is remembered, and a server that is back
    /// first gets the deletes of what was written elsewhere meanwhile.
    pub fn server_for_write(&self, key: &[u8]) -> Result<usize, Unavailable> {
        self.route(key, true)
    }

    fn route(&self, key: &[u8], write: bool) -> Result<usize, Unavailable> {
        let hash = match self.config.distribution {
            Distribution::Random => random_u32(),
            _ => self
                .config
                .hash
                .placement_hash(hash_tag(key, self.config.hash_tag)),
        };
        let available = |i: &usize| self.group.backends[*i].is_available();
        match self.config.consistency {
            Consistency::Strong => {
                let owner = self.ring.server(hash).ok_or(Unavailable::NoServer)?;
                if available(&owner) {
                    Ok(owner)
                } else {
                    Err(Unavailable::OwnerOut)
                }
            }
            Consistency::Immutable => self
                .ring
                .walk(hash)
                .find(available)
                .ok_or(Unavailable::NoServer),
            Consistency::Weak => {
                let mut walk = self.ring.walk(hash);
                let owner = walk.next().ok_or(Unavailable::NoServer)?;
                if available(&owner) {
                    self.catch_up(owner);
                    return Ok(owner);
                }
                let elsewhere = walk.find(available).ok_or(Unavailable::NoServer)?;
                if write {
                    self.remember(owner, key);
                }
                Ok(elsewhere)
            }
        }
    }

    fn remember(&self, owner: usize, key: &[u8]) {
        let m = &self.moved_writes;
        if m.count.load(Relaxed) >= self.config.remember_writes
            || m.bytes.load(Relaxed) + key.len() > REMEMBERED_BYTES
        {
            m.forgotten.inc();
            return;
        }
        if let Ok(mut keys) = m.keys.lock() {
            if keys
                .entry(owner)
                .or_default()
                .insert(Bytes::copy_from_slice(key))
            {
                m.count.fetch_add(1, Relaxed);
                m.bytes.fetch_add(key.len(), Relaxed);
            }
        }
    }

    /// Sends a server that is back the deletes of the keys written elsewhere while it was out,
    /// ahead of anything else routed to it now. If a delete fails (the server is not really
    /// back), its keys are remembered again, for the next time.
    fn catch_up(&self, owner: usize) {
        let m = &self.moved_writes;
        if m.count.load(Relaxed) == 0 {
            return;
        }
        let Some(keys) = m.keys.lock().ok().and_then(|mut k| k.remove(&owner)) else {
            return;
        };
        tracing::info!(pool = %self.config.name, server = %self.group.backends[owner].name, keys = keys.len(), "server back: deleting the keys written elsewhere while it was out");
        let keys: Vec<Bytes> = keys.into_iter().collect();
        let server = &self.servers[owner];
        let mut sent = Vec::new();
        match self.config.protocol {
            strata_config::CacheProtocol::Redis => {
                for chunk in keys.chunks(512) {
                    let mut frame = BytesMut::new();
                    resp::array_header(&mut frame, chunk.len() + 1);
                    resp::bulk(&mut frame, Some(b"DEL"));
                    for k in chunk {
                        resp::bulk(&mut frame, Some(k));
                    }
                    sent.extend(server.master.send_everywhere(&frame.freeze()));
                }
            }
            // one command per key, so that replies stay one per command
            strata_config::CacheProtocol::Memcache => {
                for k in &keys {
                    let mut line = BytesMut::with_capacity(k.len() + 9);
                    line.extend_from_slice(b"delete ");
                    line.extend_from_slice(k);
                    line.extend_from_slice(b"\r\n");
                    sent.extend(server.master.send_everywhere(&line.freeze()));
                }
            }
        }
        // counted down once the deletes are queued, so no command slips in ahead of them
        m.count.fetch_sub(keys.len(), Relaxed);
        m.bytes
            .fetch_sub(keys.iter().map(Bytes::len).sum::<usize>(), Relaxed);
        let moved = self.moved_writes.clone();
        tokio::spawn(async move {
            let mut done = true;
            for rx in sent {
                done &= matches!(rx.await, Ok(Ok(_)));
            }
            if !done {
                if let Ok(mut remembered) = moved.keys.lock() {
                    let set = remembered.entry(owner).or_default();
                    for k in keys {
                        let len = k.len();
                        if set.insert(k) {
                            moved.count.fetch_add(1, Relaxed);
                            moved.bytes.fetch_add(len, Relaxed);
                        }
                    }
                }
            }
        });
    }

    /// Each server's state, counters and share of the ring, for `/status`.
    pub fn server_status(&self) -> Vec<Value> {
        let shares = self.ring.shares();
        self.group
            .backends
            .iter()
            .zip(&self.config.servers)
            .zip(shares)
            .map(|((b, s), share)| {
                let mut v = backend_status(b);
                let shard = self
                    .servers
                    .iter()
                    .find(|x| Arc::ptr_eq(&x.master.backend, b));
                if let (Some(obj), Some(shard)) = (v.as_object_mut(), shard) {
                    obj.insert("name".into(), json!(s.ring_name));
                    obj.insert("ring_share".into(), json!(share));
                    obj.insert(
                        "master".into(),
                        json!(shard.live.target.get().0.to_string()),
                    );
                    let replicas: Vec<Value> = shard
                        .live
                        .replicas
                        .load()
                        .iter()
                        .map(|r| backend_status(&r.backend))
                        .collect();
                    obj.insert("replicas".into(), json!(replicas));
                    let source = shard
                        .live
                        .source
                        .lock()
                        .map(|s| s.clone())
                        .unwrap_or_default();
                    obj.insert("roles_from".into(), json!(source));
                }
                v
            })
            .collect()
    }
}

impl Live {
    /// Takes `addrs` as the replicas: those already there keep their connections and health,
    /// new ones get theirs.
    pub fn set_replicas(
        &self,
        addrs: &[SocketAddr],
        settings: &Arc<LinkSettings>,
        passive: &strata_config::Passive,
        before: &[Arc<Server>],
    ) {
        let current = self.replicas.load();
        // the same replicas in another order are the same replicas
        if current.len() == addrs.len()
            && addrs
                .iter()
                .all(|a| current.iter().any(|r| r.backend.addr == *a))
        {
            return;
        }
        // a replica this shard had before a reload keeps its health and latency histogram
        let earlier = |a: &SocketAddr| current.iter().chain(before).find(|r| r.backend.addr == *a);
        let group = Arc::new(Group {
            backends: addrs
                .iter()
                .map(|a| {
                    earlier(a).map_or_else(|| Arc::new(Backend::new(*a, 1)), |r| r.backend.clone())
                })
                .collect(),
            passive: passive.clone(),
        });
        let replicas: Vec<Arc<Server>> = addrs
            .iter()
            .enumerate()
            .map(
                |(i, a)| match current.iter().find(|r| r.backend.addr == *a) {
                    Some(r) => r.clone(),
                    None => Arc::new(Server::start(
                        &group,
                        i,
                        settings,
                        Target::new(*a),
                        earlier(a).map_or_else(Default::default, |r| r.latency.clone()),
                    )),
                },
            )
            .collect();
        self.replicas.store(Arc::new(replicas));
    }
}

/// The ring `previous` had, when `config` places keys differently and asks for read-through;
/// an old ring still in its window is carried on rather than replaced by one that holds
/// nothing yet.
fn old_ring(config: &CacheListener, previous: &Pool) -> Option<OldRing> {
    // a cluster moves its own slots (MOVED/ASK): its seeds are not a ring keys live on
    if config.read_through.is_zero() || config.cluster || previous.config.cluster {
        return None;
    }
    let same = previous.config.servers.len() == config.servers.len()
        && previous
            .config
            .servers
            .iter()
            .zip(&config.servers)
            .all(|(a, b)| a.ring_name == b.ring_name && a.weight == b.weight && a.addr == b.addr)
        && previous.config.hash == config.hash
        && previous.config.hash_tag == config.hash_tag
        && previous.config.distribution == config.distribution;
    if same {
        return previous.old.as_ref().map(|o| OldRing {
            ring: o.ring.clone(),
            servers: o.servers.clone(),
            config: o.config.clone(),
            until: o.until,
        });
    }
    if previous.config.distribution == Distribution::Random {
        return None;
    }
    Some(OldRing {
        ring: previous.ring.clone(),
        servers: previous.servers.clone(),
        config: previous.config.clone(),
        until: std::time::Instant::now() + config.read_through,
    })
}

impl OldRing {
    /// The old server of `key`, while the window lasts.
    pub fn server_for(&self, key: &[u8]) -> Option<&Arc<Shard>> {
        if std::time::Instant::now() >= self.until {
            return None;
        }
        let hash = self
            .config
            .hash
            .placement_hash(hash_tag(key, self.config.hash_tag));
        self.ring.server(hash).map(|i| &self.servers[i])
    }
}
