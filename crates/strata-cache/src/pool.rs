//! One generation of a pool: its settings, its ring, its servers with their connections, and
//! the answer to "which server holds this key, now".

use std::sync::Arc;

use serde_json::{json, Value};
use strata_config::{CacheListener, Consistency};
use strata_health::{Backend, Group};
use strata_net::Timers;
use strata_ring::{hash_tag, random_u32, Distribution, Ring};
use strata_upstream::backend_status;
use tokio::sync::Semaphore;

use crate::server::{LinkSettings, Server};

/// A pool's settings, ring and servers, swapped whole on reload.
pub struct Pool {
    /// The settings it was built from.
    pub config: CacheListener,
    /// Where keys live.
    pub ring: Ring,
    /// The servers' health, in config order (shared with the servers' connection tasks).
    pub group: Arc<Group>,
    /// The servers, in config order.
    pub servers: Vec<Server>,
    /// The pool's client connection limit.
    pub conn_limit: Arc<Semaphore>,
    /// The client connections' idle deadlines; the same across generations.
    pub timers: Arc<Timers>,
    /// How connections to the servers are made and timed.
    pub link: Arc<LinkSettings>,
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
    /// Builds the generation for `config`; servers that `previous` had at the same address
    /// keep their health state and counters. Call inside the runtime: the servers' connection
    /// tasks start here.
    pub fn new(config: &CacheListener, previous: Option<&Pool>) -> Pool {
        let backends: Vec<Arc<Backend>> = config
            .servers
            .iter()
            .map(|s| {
                previous
                    .and_then(|p| {
                        p.group
                            .backends
                            .iter()
                            .find(|b| b.addr == s.addr && b.weight == s.weight)
                    })
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
        });
        let servers: Vec<Server> = (0..config.servers.len())
            .map(|i| Server::start(&group, i, &settings))
            .collect();
        let ring = Ring::new(
            config.distribution,
            config
                .servers
                .iter()
                .map(|s| (s.ring_name.as_str(), s.weight)),
        );
        Pool {
            ring,
            group,
            servers,
            conn_limit: Arc::new(Semaphore::new(config.max_connections as usize)),
            timers: previous.map_or_else(Timers::new, |p| p.timers.clone()),
            link: settings,
            config: config.clone(),
        }
    }

    /// The index of the server that serves `key` now: its owner on the ring; when the owner is
    /// out, the next available server on the ring unless the pool is `strong`.
    pub fn server_for(&self, key: &[u8]) -> Result<usize, Unavailable> {
        let hash = match self.config.distribution {
            Distribution::Random => random_u32(),
            _ => self
                .config
                .hash
                .placement_hash(hash_tag(key, self.config.hash_tag)),
        };
        let now = strata_net::now_ms();
        let available = |i: &usize| self.group.backends[*i].is_available_at(now);
        match self.config.consistency {
            Consistency::Strong => {
                let owner = self.ring.server(hash).ok_or(Unavailable::NoServer)?;
                if available(&owner) {
                    Ok(owner)
                } else {
                    Err(Unavailable::OwnerOut)
                }
            }
            Consistency::Weak | Consistency::Immutable => self
                .ring
                .walk(hash)
                .find(available)
                .ok_or(Unavailable::NoServer),
        }
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
                if let Some(obj) = v.as_object_mut() {
                    obj.insert("name".into(), json!(s.ring_name));
                    obj.insert("ring_share".into(), json!(share));
                }
                v
            })
            .collect()
    }
}
