//! A running node: its layers as one list, bound, reloaded and drained through the [`Layer`]
//! trait, with the admin listener in front of them; [`serve`] adds the signals (SIGHUP
//! reloads, SIGTERM/SIGINT drain).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Weak};
use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::{json, Map, Value};
use strata_admin::{AdminApi, AdminServer, BackendAction};
use strata_cache::CacheService;
use strata_config::{Admin, Config};
use strata_db::DatabaseService;
use strata_layer::{Layer, Listeners};
use strata_lb::{HttpService, TcpService};
use strata_metrics::{MetricsWriter, Traffic};
use strata_vip::{Probe, VipLayer};
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;

/// Every layer this build runs, in the order they start. A new layer is one line here.
/// `probe` asks the node whether a listener can serve (for the entry layer's `track`).
fn layers(probe: Probe) -> Vec<Box<dyn Layer>> {
    vec![
        Box::new(Listeners::<HttpService>::default()),
        Box::new(Listeners::<TcpService>::default()),
        Box::new(Listeners::<CacheService>::default()),
        Box::new(Listeners::<DatabaseService>::default()),
        Box::new(VipLayer::new(probe)),
    ]
}

/// The layers of a node, as the admin API sees them.
pub struct Layers(Vec<Box<dyn Layer>>);

impl Layers {
    /// The layers, each able to ask the others (through a weak handle, so nothing leaks)
    /// whether a listener can serve.
    fn new() -> Arc<Layers> {
        Arc::new_cyclic(|me: &Weak<Layers>| {
            let me = me.clone();
            let probe: Probe = Arc::new(move |layer: &str, listener: &str| {
                let layers = me.upgrade()?;
                let found = layers.0.iter().find(|l| l.name() == layer)?;
                found.serving(listener)
            });
            Layers(layers(probe))
        })
    }

    /// Applies `config` to every layer: first everything that can fail (certificates, then
    /// binding every new socket), so a config that can't be served changes nothing; then each
    /// layer takes it.
    async fn apply(&self, config: &Config) -> Result<()> {
        for layer in &self.0 {
            layer.check(config)?;
        }
        let mut bound: Vec<Vec<TcpListener>> = Vec::new();
        for layer in &self.0 {
            let mut listeners = Vec::new();
            for (what, addr) in layer.to_bind(config) {
                // a listener on one of this node's virtual addresses binds before it holds it
                let virtual_addr = config
                    .vip
                    .iter()
                    .flat_map(|v| &v.addresses)
                    .any(|a| std::net::IpAddr::V4(a.addr) == addr.ip());
                let bound = if virtual_addr {
                    strata_net::listen_freebind(addr)
                } else {
                    strata_net::listen(addr)
                };
                listeners.push(bound.with_context(|| format!("{what}: cannot listen on {addr}"))?);
            }
            bound.push(listeners);
        }
        for (layer, listeners) in self.0.iter().zip(bound) {
            layer.apply(config, listeners)?;
        }
        Ok(())
    }

    /// Hands over what peers take over (virtual addresses: clients move while this node
    /// still serves), then stops accepting everywhere and waits up to `deadline` for open work
    /// to finish.
    async fn drain(&self, deadline: Duration) {
        let handing: Vec<_> = self.0.iter().map(|l| l.hand_over()).collect();
        let handed = async {
            for h in handing {
                h.await;
            }
        };
        if tokio::time::timeout(deadline, handed).await.is_err() {
            tracing::warn!(?deadline, "hand-over deadline passed; draining anyway");
        }
        let work: Vec<_> = self.0.iter().map(|l| l.drain()).collect();
        let all = async {
            for w in work {
                w.await;
            }
        };
        if tokio::time::timeout(deadline, all).await.is_err() {
            tracing::warn!(
                ?deadline,
                "drain deadline passed; closing the connections still open"
            );
        } else {
            tracing::info!("drained");
        }
    }
}

impl AdminApi for Layers {
    fn metrics(&self) -> String {
        let mut w = MetricsWriter::new();
        for layer in &self.0 {
            layer.metrics(&mut w);
        }
        w.finish()
    }

    fn status(&self) -> Value {
        let mut out = Map::new();
        out.insert("version".into(), json!(env!("CARGO_PKG_VERSION")));
        for layer in &self.0 {
            out.insert(layer.name().into(), layer.status());
        }
        Value::Object(out)
    }

    fn traffic(&self) -> Vec<(&'static str, String, Traffic)> {
        self.0
            .iter()
            .flat_map(|l| {
                l.traffic()
                    .into_iter()
                    .map(move |(listener, t)| (l.name(), listener, t))
            })
            .collect()
    }

    fn endpoints(&self) -> Value {
        let mut out = Map::new();
        for layer in &self.0 {
            out.insert(layer.name().into(), layer.endpoints());
        }
        Value::Object(out)
    }

    fn backend(
        &self,
        layer: &str,
        listener: &str,
        backend: &str,
        action: BackendAction,
    ) -> Result<Value, String> {
        match self.0.iter().find(|l| l.name() == layer) {
            Some(l) => l.backend_action(listener, backend, action),
            None => {
                let names: Vec<&str> = self.0.iter().map(|l| l.name()).collect();
                Err(format!(
                    "unknown layer \"{layer}\": use {}",
                    names.join(" or ")
                ))
            }
        }
    }
}

/// A node serving a config: every layer it names and the admin listener.
pub struct Node {
    layers: Arc<Layers>,
    admin: Option<Arc<AdminServer>>,
    admin_stop: CancellationToken,
    config: Config,
}

impl Node {
    /// Binds everything the config names (a busy port fails the start before anything
    /// serves) and starts serving it. Call inside a tokio runtime.
    pub async fn start(config: Config) -> Result<Node> {
        let layers = Layers::new();
        let admin_listener = match &config.admin {
            Some(a) => Some(
                strata_net::listen(a.listen)
                    .with_context(|| format!("admin: cannot listen on {}", a.listen))?,
            ),
            None => None,
        };
        layers.apply(&config).await?;
        let admin_stop = CancellationToken::new();
        let admin = match (&config.admin, admin_listener) {
            (Some(a), Some(listener)) => {
                if let Ok(addr) = listener.local_addr() {
                    println!("strata: admin listening on http://{addr}");
                    tracing::info!(listener = "admin", %addr, "listening");
                }
                let server = AdminServer::new(a, layers.clone());
                tokio::spawn(server.clone().serve(listener, admin_stop.clone()));
                Some(server)
            }
            _ => None,
        };
        Ok(Node {
            layers,
            admin,
            admin_stop,
            config,
        })
    }

    /// Applies a new config whole: listeners that keep their name and address swap settings
    /// in place (their connections carry on); new ones are bound first, so a reload that
    /// can't bind changes nothing; removed ones stop accepting and drain.
    pub async fn reload(&mut self, config: Config) -> Result<()> {
        if config.workers != self.config.workers {
            tracing::warn!("workers changes take effect at the next restart");
        }
        self.layers.apply(&config).await?;
        reload_admin(
            self.admin.as_deref(),
            self.config.admin.as_ref(),
            config.admin.as_ref(),
        );
        self.config = config;
        Ok(())
    }

    /// Stops accepting, lets open work finish (up to the config's `drain_timeout`), and stops
    /// the admin listener.
    pub async fn drain(self) {
        self.layers.drain(self.config.drain_timeout).await;
        self.admin_stop.cancel();
    }
}

/// A node dropped without [`Node::drain`] stops accepting everywhere, the admin listener too.
impl Drop for Node {
    fn drop(&mut self) {
        self.admin_stop.cancel();
    }
}

/// Runs `config` until `shutdown` is cancelled, then drains: the library's entry point, for
/// tests and embedders. Call inside a tokio runtime.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<()> {
    let node = Node::start(config).await?;
    shutdown.cancelled().await;
    node.drain().await;
    Ok(())
}

/// Builds the runtime the config asks for and runs the node until it is told to stop.
pub fn run_blocking(config: Config, path: Option<PathBuf>) -> ExitCode {
    let workers = config
        .workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    // one worker: a current-thread runtime skips the work-stealing machinery entirely
    let runtime = if workers == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .enable_all()
            .build()
    };
    let runtime = match runtime {
        Ok(r) => r,
        Err(e) => {
            eprintln!("strata: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(config, path, workers)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("strata: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Serves `config` and handles signals until SIGTERM or SIGINT; SIGHUP re-reads `path`.
pub async fn serve(config: Config, path: Option<PathBuf>, workers: usize) -> Result<()> {
    let mut sigterm = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let mut sigint = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    let mut sighup = signal(SignalKind::hangup()).context("cannot watch SIGHUP")?;
    let mut node = Node::start(config).await?;
    tracing::info!(workers, "strata is running");
    loop {
        tokio::select! {
            _ = sigterm.recv() => { tracing::info!("SIGTERM: draining"); break }
            _ = sigint.recv() => { tracing::info!("SIGINT: draining"); break }
            _ = sighup.recv() => {
                let Some(path) = &path else {
                    tracing::warn!("SIGHUP: the built-in config has no file to re-read");
                    continue;
                };
                match strata_config::load(path) {
                    Ok(new) => match node.reload(new).await {
                        Ok(()) => tracing::info!(file = %path.display(), "SIGHUP: reloaded"),
                        Err(e) => tracing::error!("SIGHUP: {e:#}; the old config keeps serving"),
                    },
                    Err(e) => {
                        for p in e.problems() {
                            tracing::error!("SIGHUP: {p}");
                        }
                        if e.problems().is_empty() {
                            tracing::error!("SIGHUP: {e}");
                        }
                        tracing::error!("SIGHUP: config rejected; the old config keeps serving");
                    }
                }
            }
        }
    }
    node.drain().await;
    Ok(())
}

/// Gives the admin listener its new settings (the token file is read again with the config);
/// only where it listens, or whether there is one at all, waits for the next restart.
fn reload_admin(server: Option<&AdminServer>, old: Option<&Admin>, new: Option<&Admin>) {
    match (server, new) {
        (Some(server), Some(new)) => {
            if old.is_some_and(|old| old.listen != new.listen) {
                tracing::warn!("a new admin.listen takes effect at the next restart");
            }
            server.reload(new);
        }
        (None, None) => {}
        _ => tracing::warn!("adding or removing [admin] takes effect at the next restart"),
    }
}
