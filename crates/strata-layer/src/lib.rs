//! What a node does with each of its layers, behind one trait: bind what a config asks for,
//! apply a config generation, drain, report status and metrics, and act on a backend for the
//! admin API. A layer made of listeners (HTTP, TCP, and the cache and database proxies to come)
//! implements [`Service`] for one listener and gets the rest from [`Listeners`]; the entry
//! layer, which listens on nothing, implements [`Layer`] itself.

mod listeners;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;

use serde_json::Value;
use strata_config::Config;
use strata_metrics::{MetricsWriter, Traffic};
use tokio::net::TcpListener;

pub use listeners::{Listeners, Service};
pub use strata_upstream::{ActionError, BackendAction};

/// Why a layer could not take a config.
#[derive(Debug, thiserror::Error)]
#[error("{layer} listener \"{listener}\": {source}")]
pub struct LayerError {
    /// The layer's name: "http", "tcp".
    pub layer: &'static str,
    /// The listener's name from the config.
    pub listener: String,
    /// What went wrong, from the layer's own error type.
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

/// A future a layer hands back to the node.
pub type Work<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// One kind of layer on a node ("http", "tcp", ...). The node holds a list of them and goes
/// through it once for each start, reload, drain and admin call.
pub trait Layer: Send + Sync {
    /// The layer's name in the admin API, `/status` and metrics labels.
    fn name(&self) -> &'static str;

    /// The sockets `config` needs that do not run yet, as (listener name, address). The node
    /// binds them all before anything changes, so a busy port rejects the whole config.
    fn to_bind(&self, config: &Config) -> Vec<(String, SocketAddr)>;

    /// The listening sockets of this layer that `config` stops serving where they are (the
    /// listener is removed, renamed or moved), by the address they listen on: a new listener
    /// of `config` on one of those addresses takes the socket over (a copy of its descriptor)
    /// instead of binding the address again, which the old listener still holds until
    /// [`Layer::apply`] stops it. So a listener renamed in place, or an address handed from
    /// one listener or layer to another, reloads without a restart and without a refused
    /// connection.
    fn releasing(&self, _config: &Config) -> Vec<(SocketAddr, std::os::fd::OwnedFd)> {
        Vec::new()
    }

    /// Checks what a valid config can still fail on once it is applied (certificate files and
    /// the like), before anything changes.
    fn check(&self, config: &Config) -> Result<(), LayerError>;

    /// Applies `config`: what runs and stays takes its new settings (connections carry on),
    /// what the config dropped drains, and what it added starts on `bound`, one listener for
    /// each entry of [`Layer::to_bind`], in that order.
    fn apply(&self, config: &Config, bound: Vec<TcpListener>) -> Result<(), LayerError>;

    /// Stops accepting everywhere; the future ends when every connection has finished.
    fn drain(&self) -> Work<'static>;

    /// Every listener with its state and backends, as a JSON array.
    fn status(&self) -> Value;

    /// Writes every listener's metrics, in Prometheus text format.
    fn metrics(&self, w: &mut MetricsWriter);

    /// Drains or restores `backend` of `listener`; the error says what was not found.
    fn backend_action(
        &self,
        listener: &str,
        backend: &str,
        action: BackendAction,
    ) -> Result<Value, ActionError>;

    /// Whether `listener` has a backend that can take traffic now; `None` when this layer runs
    /// no listener of that name. What the entry layer's `track = ["http:web"]` asks.
    fn serving(&self, _listener: &str) -> Option<bool> {
        None
    }

    /// What each listener has served so far, as (listener, totals), for the dashboard's
    /// graphs; layers that serve no requests have none.
    fn traffic(&self) -> Vec<(String, Traffic)> {
        Vec::new()
    }

    /// Where clients can go now (`GET /endpoints`): a JSON array, one element per listener
    /// with its healthy backends, or per VIP instance with the addresses this node holds.
    fn endpoints(&self) -> Value {
        Value::Array(Vec::new())
    }

    /// Gives up what peers take over (a virtual address) before the node stops accepting, so
    /// clients move while this node still serves; the future ends when it is handed over.
    /// Layers that hold nothing of the kind have nothing to do.
    fn hand_over(&self) -> Work<'static> {
        Box::pin(async {})
    }
}
