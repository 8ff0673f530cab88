//! A running node: its layers as one list, bound, reloaded and drained through the [`Layer`]
//! trait, with the admin listener in front of them; [`serve`] adds the signals (SIGHUP
//! reloads, SIGTERM/SIGINT drain).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::{json, Map, Value};
use strata_admin::{ActionError, AdminApi, AdminServer, BackendAction};
use strata_cache::CacheService;
use strata_config::{Admin, Config};
use strata_db::DatabaseService;

use crate::etcd::{self, EtcdSource};
use strata_layer::{Layer, Listeners};
use strata_lb::{HttpService, TcpService};
use strata_metrics::{MetricsWriter, Traffic};
use strata_net::lock;
use strata_vip::{Probe, VipLayer};
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Every layer this build runs, in the order they start. A new layer is one line here.
/// `probe` asks the node whether a listener can serve (for the entry layer's `track`).
///
/// A layer whose apply can still fail after its check goes before every layer whose apply
/// cannot, since a failure leaves the layers applied before it changed: HTTP first (a
/// certificate replaced between the check and the start); the others' listeners start
/// without fail, and the entry layer's apply never fails.
fn layers(probe: Probe) -> Vec<Box<dyn Layer>> {
    vec![
        Box::new(Listeners::<HttpService>::default()),
        Box::new(Listeners::<TcpService>::default()),
        Box::new(Listeners::<CacheService>::default()),
        Box::new(Listeners::<DatabaseService>::default()),
        Box::new(VipLayer::new(probe)),
    ]
}

/// The layers of a node, as the admin API sees them, and where its config came from.
pub struct Layers {
    layers: Vec<Box<dyn Layer>>,
    origin: Mutex<Origin>,
}

/// Where the running config came from, and what became of the configs offered since.
#[derive(Default)]
struct Origin {
    /// The file or etcd URL; none for the built-in or an embedder's config.
    source: Option<String>,
    /// The etcd revision of the running config.
    revision: Option<i64>,
    applied: u64,
    rejected: u64,
    /// Why the last config offered was refused, and its revision.
    last_rejected: Option<(Option<i64>, String)>,
}

impl Layers {
    /// The layers, each able to ask the others (through a weak handle, so nothing leaks)
    /// whether a listener can serve.
    fn new() -> Arc<Layers> {
        Arc::new_cyclic(|me: &Weak<Layers>| {
            let me = me.clone();
            let probe: Probe = Arc::new(move |layer: &str, listener: &str| {
                let layers = me.upgrade()?;
                let found = layers.layers.iter().find(|l| l.name() == layer)?;
                found.serving(listener)
            });
            Layers {
                layers: layers(probe),
                origin: Mutex::new(Origin::default()),
            }
        })
    }

    /// Applies `config` to every layer: first everything that can fail (certificates, then
    /// binding every new socket), so a config that can't be served changes nothing; then each
    /// layer takes it.
    async fn apply(&self, config: &Config) -> Result<()> {
        for layer in &self.layers {
            layer.check(config)?;
        }
        let mut bound: Vec<Vec<TcpListener>> = Vec::new();
        // sockets that listeners this config stops still hold: a new listener on the same
        // address takes one over
        let mut releasing: Vec<_> = self
            .layers
            .iter()
            .flat_map(|l| l.releasing(config))
            .filter(|(addr, _)| addr.port() != 0)
            .collect();
        for layer in &self.layers {
            let mut listeners = Vec::new();
            for (what, addr) in layer.to_bind(config) {
                if let Some(at) = releasing.iter().position(|(held, _)| *held == addr) {
                    let (_, socket) = releasing.swap_remove(at);
                    let taken = TcpListener::from_std(std::net::TcpListener::from(socket));
                    listeners
                        .push(taken.with_context(|| format!("{what}: cannot take over {addr}"))?);
                    continue;
                }
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
        for (layer, listeners) in self.layers.iter().zip(bound) {
            layer.apply(config, listeners)?;
        }
        Ok(())
    }

    /// Hands over what peers take over (virtual addresses: clients move while this node
    /// still serves), then stops accepting everywhere and waits for open work to finish: both
    /// within `deadline` from now, so a stop takes no longer than `drain_timeout` in all.
    async fn drain(&self, deadline: Duration) {
        let until = tokio::time::Instant::now() + deadline;
        let handing: Vec<_> = self.layers.iter().map(|l| l.hand_over()).collect();
        let handed = async {
            for h in handing {
                h.await;
            }
        };
        if tokio::time::timeout_at(until, handed).await.is_err() {
            tracing::warn!(?deadline, "hand-over deadline passed; draining anyway");
        }
        let work: Vec<_> = self.layers.iter().map(|l| l.drain()).collect();
        let all = async {
            for w in work {
                w.await;
            }
        };
        if tokio::time::timeout_at(until, all).await.is_err() {
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
        for layer in &self.layers {
            layer.metrics(&mut w);
        }
        {
            let o = lock(&self.origin);
            if let Some(revision) = o.revision {
                w.gauge(
                    "strata_config_revision",
                    "The etcd revision of the config this node runs.",
                    &[],
                    revision as f64,
                );
            }
            for (result, n) in [("applied", o.applied), ("rejected", o.rejected)] {
                w.counter(
                    "strata_config_reloads_total",
                    "Configs offered after the start (SIGHUP, etcd), by whether they were applied or rejected.",
                    &[("result", result)],
                    n,
                );
            }
        }
        w.finish()
    }

    fn status(&self) -> Value {
        let mut out = Map::new();
        out.insert("version".into(), json!(env!("CARGO_PKG_VERSION")));
        {
            let o = lock(&self.origin);
            out.insert(
                "config".into(),
                json!({
                    "source": o.source,
                    "revision": o.revision,
                    "applied": o.applied,
                    "rejected": o.rejected,
                    "last_rejected": o.last_rejected.as_ref().map(|(revision, why)| json!({
                        "revision": revision,
                        "why": why,
                    })),
                }),
            );
        }
        for layer in &self.layers {
            out.insert(layer.name().into(), layer.status());
        }
        Value::Object(out)
    }

    fn traffic(&self) -> Vec<(&'static str, String, Traffic)> {
        self.layers
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
        for layer in &self.layers {
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
    ) -> Result<Value, ActionError> {
        match self.layers.iter().find(|l| l.name() == layer) {
            Some(l) => l.backend_action(listener, backend, action),
            None => {
                let names: Vec<&str> = self.layers.iter().map(|l| l.name()).collect();
                Err(ActionError::NotFound(format!(
                    "unknown layer \"{layer}\": use {}",
                    names.join(" or ")
                )))
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
        if config.busy_poll != self.config.busy_poll {
            tracing::warn!("busy_poll changes take effect at the next restart");
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
        strata_net::drain::cancel(&self.admin_stop);
    }
}

/// A node dropped without [`Node::drain`] stops accepting everywhere, the admin listener too,
/// and its virtual addresses are handed over (in the background) rather than advertised on.
impl Drop for Node {
    fn drop(&mut self) {
        strata_net::drain::cancel(&self.admin_stop);
    }
}

/// Runs `config` until `shutdown` is cancelled, then drains: the library's entry point, for
/// tests and embedders. Call inside a tokio runtime; the runtime is the caller's, so `workers`
/// and `busy_poll` are the caller's to set (see [`runtime`]).
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<()> {
    let node = Node::start(config).await?;
    shutdown.cancelled().await;
    node.drain().await;
    Ok(())
}

/// Where a node's config comes from, and so what a reload reads.
#[derive(Debug, Clone)]
pub enum ConfigSource {
    /// A file: SIGHUP reads it again.
    File(PathBuf),
    /// An etcd key, followed from the revision the node starts with.
    Etcd(EtcdSource, i64),
    /// A config made in the process (the demo): there is nothing to read again.
    Builtin,
}

impl ConfigSource {
    fn describe(&self) -> Option<String> {
        match self {
            ConfigSource::File(path) => Some(path.display().to_string()),
            ConfigSource::Etcd(source, _) => Some(source.url()),
            ConfigSource::Builtin => None,
        }
    }
}

/// Builds the runtime the config asks for and runs the node until it is told to stop.
pub fn run_blocking(config: Config, source: ConfigSource) -> ExitCode {
    let workers = config
        .workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let runtime = match runtime(workers, config.busy_poll) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("strata: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(config, source, workers)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("strata: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// A runtime with `workers` threads; one worker is a current-thread runtime, which skips the
/// work-stealing machinery entirely, and which keeps polling for `busy_poll` after bytes last
/// arrived (the config allows a window only with one worker).
pub fn runtime(workers: usize, busy_poll: Duration) -> std::io::Result<tokio::runtime::Runtime> {
    if workers == 1 {
        let mut builder = tokio::runtime::Builder::new_current_thread();
        strata_net::busy::install(&mut builder, busy_poll);
        let runtime = builder.enable_all().build()?;
        if !busy_poll.is_zero() {
            runtime.spawn(strata_net::busy::poller());
        }
        Ok(runtime)
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .enable_all()
            .build()
    }
}

/// The signals a node answers: SIGTERM and SIGINT stop it, SIGHUP reloads.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

/// What a signal asks.
enum Asked {
    Stop(&'static str),
    Reload,
}

impl Signals {
    fn new() -> Result<Signals> {
        Ok(Signals {
            term: signal(SignalKind::terminate()).context("cannot watch SIGTERM")?,
            int: signal(SignalKind::interrupt()).context("cannot watch SIGINT")?,
            hup: signal(SignalKind::hangup()).context("cannot watch SIGHUP")?,
        })
    }

    async fn next(&mut self) -> Asked {
        tokio::select! {
            _ = self.term.recv() => Asked::Stop("SIGTERM"),
            _ = self.int.recv() => Asked::Stop("SIGINT"),
            _ = self.hup.recv() => Asked::Reload,
        }
    }
}

/// Waits for the next revision from `revisions` that is a valid config, logging the others;
/// `None` when a signal says stop (SIGHUP is logged and waited past).
async fn next_valid(
    source: &EtcdSource,
    revisions: &mut mpsc::Receiver<etcd::Revision>,
    signals: &mut Signals,
) -> Option<(Config, i64)> {
    loop {
        let r = tokio::select! {
            r = revisions.recv() => r?,
            asked = signals.next() => match asked {
                Asked::Stop(what) => {
                    tracing::info!("{what}: stopping before any config ran");
                    return None;
                }
                Asked::Reload => {
                    tracing::info!("SIGHUP: waiting for {} to hold a valid config", source.url());
                    continue;
                }
            },
        };
        let what = format!("{}@{}", source.url(), r.revision);
        match strata_config::parse(&r.text, &what, Path::new(".")) {
            Ok(config) => return Some((config, r.revision)),
            Err(e) => {
                log_rejected(&what, true, &e);
                tracing::error!("{what}: waiting for a revision that is a valid config");
            }
        }
    }
}

/// Waits for the first revision of `source` that is a valid config: etcd unreachable, the key
/// missing or a revision that does not parse are logged and waited out (a fleet's nodes may
/// start before their config is written). `None` when SIGTERM or SIGINT came first. Call
/// inside a tokio runtime.
pub async fn first_from_etcd(source: &EtcdSource) -> Result<Option<(Config, i64)>> {
    let mut signals = Signals::new()?;
    let (tx, mut revisions) = mpsc::channel(4);
    let stop = CancellationToken::new();
    let _stop = stop.clone().drop_guard();
    tokio::spawn(etcd::follow(source.clone(), 0, tx, stop));
    Ok(next_valid(source, &mut revisions, &mut signals).await)
}

/// Logs each problem of a config refused. `what` goes before problems that do not name their
/// source themselves: an etcd revision's name is in each of its problems (`named`), a signal's
/// name is not.
fn log_rejected(what: &str, named: bool, e: &strata_config::ConfigError) {
    for p in e.problems() {
        if named {
            tracing::error!("{p}");
        } else {
            tracing::error!("{what}: {p}");
        }
    }
    if e.problems().is_empty() {
        tracing::error!("{what}: {e}");
    }
}

/// How long a config that could not be applied (a port still taken, a file not there yet) waits
/// before it is tried again, unless a newer one comes first.
const RETRY_APPLY: Duration = Duration::from_secs(5);

/// Serves `config` and handles signals until SIGTERM or SIGINT; SIGHUP re-reads a file
/// source, and each new revision of an etcd source is applied as it is written.
pub async fn serve(config: Config, source: ConfigSource, workers: usize) -> Result<()> {
    let mut signals = Signals::new()?;
    let (tx, mut revisions) = mpsc::channel(4);
    let follow = CancellationToken::new();
    let _follow = follow.clone().drop_guard();
    let mut running_revision = None;
    if let ConfigSource::Etcd(etcd, revision) = &source {
        running_revision = Some(*revision);
        tokio::spawn(etcd::follow(etcd.clone(), *revision, tx, follow));
    } else {
        drop(tx);
    }
    // a revision every node can parse may still not start on this one (a port taken, a
    // certificate not there): try it again every RETRY_APPLY, as a running node does, and take
    // a newer revision when one comes
    let mut config = config;
    let mut node = loop {
        let e = match Node::start(config.clone()).await {
            Ok(node) => break node,
            Err(e) => e,
        };
        let (ConfigSource::Etcd(etcd, _), Some(revision)) = (&source, running_revision) else {
            return Err(e);
        };
        tracing::error!(
            "{}@{revision}: {e:#}; trying again in {RETRY_APPLY:?}, or a newer revision",
            etcd.url()
        );
        tokio::select! {
            next = next_valid(etcd, &mut revisions, &mut signals) => {
                let Some((next, revision)) = next else { return Ok(()) };
                (config, running_revision) = (next, Some(revision));
            }
            _ = tokio::time::sleep(RETRY_APPLY) => {
                tracing::info!("{}@{revision}: trying again", etcd.url());
            }
        }
    };
    {
        let mut o = lock(&node.layers.origin);
        o.source = source.describe();
        o.revision = running_revision;
    }
    tracing::info!(workers, "strata is running");
    // a config that parsed but could not be applied, tried again after RETRY_APPLY
    let mut retry: Option<(Config, Option<i64>, String)> = None;
    loop {
        let again = async {
            match &retry {
                Some(_) => tokio::time::sleep(RETRY_APPLY).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            asked = signals.next() => match asked {
                Asked::Stop(what) => { tracing::info!("{what}: draining"); break }
                Asked::Reload => match &source {
                    ConfigSource::File(path) => {
                        let read = strata_config::load(path);
                        retry = node.offer(read, None, "SIGHUP").await;
                    }
                    ConfigSource::Etcd(etcd, _) => tracing::info!(
                        "SIGHUP: the config comes from {}: each revision written there is applied as it comes",
                        etcd.url()
                    ),
                    ConfigSource::Builtin => {
                        tracing::warn!("SIGHUP: the built-in config has no file to re-read");
                    }
                },
            },
            Some(r) = revisions.recv() => {
                let ConfigSource::Etcd(etcd, _) = &source else { continue };
                let what = format!("{}@{}", etcd.url(), r.revision);
                let parsed = strata_config::parse(&r.text, &what, Path::new("."));
                retry = node.offer(parsed, Some(r.revision), &what).await;
            }
            _ = again => {
                if let Some((config, revision, what)) = retry.take() {
                    tracing::info!("{what}: trying again");
                    retry = node.offer(Ok(config), revision, &what).await;
                }
            }
        }
    }
    // a second SIGTERM or SIGINT while draining stops at once, as an operator who presses
    // Ctrl-C twice means
    tokio::select! {
        _ = node.drain() => {}
        _ = async {
            loop {
                if let Asked::Stop(what) = signals.next().await {
                    tracing::warn!("{what} again: stopping without waiting for open connections");
                    return;
                }
            }
        } => {}
    }
    Ok(())
}

impl Node {
    /// Applies a config offered after the start (by SIGHUP or etcd `revision`), or logs why
    /// it was refused and keeps the running one; `/status` and `/metrics` count both. A config
    /// that parsed but could not be applied comes back, to be tried again.
    async fn offer(
        &mut self,
        parsed: Result<Config, strata_config::ConfigError>,
        revision: Option<i64>,
        what: &str,
    ) -> Option<(Config, Option<i64>, String)> {
        let mut retry = None;
        let why = match parsed {
            Ok(new) => match self.reload(new.clone()).await {
                Ok(()) => {
                    tracing::info!(revision, "{what}: reloaded");
                    let mut o = lock(&self.layers.origin);
                    o.applied += 1;
                    if revision.is_some() {
                        o.revision = revision;
                    }
                    return None;
                }
                Err(e) => {
                    tracing::error!(
                        "{what}: {e:#}; the old config keeps serving; trying again in {RETRY_APPLY:?}"
                    );
                    retry = Some((new, revision, what.to_string()));
                    format!("{e:#}")
                }
            },
            Err(e) => {
                log_rejected(what, revision.is_some(), &e);
                tracing::error!("{what}: config rejected; the old config keeps serving");
                e.problems()
                    .first()
                    .map_or_else(|| e.to_string(), |p| p.to_string())
            }
        };
        let mut o = lock(&self.layers.origin);
        o.rejected += 1;
        o.last_rejected = Some((revision, why));
        retry
    }
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
