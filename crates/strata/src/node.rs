//! A running node: binds the listeners a config names, serves them, reloads on SIGHUP and
//! drains on SIGTERM/SIGINT.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::json;
use strata_admin::{AdminApi, AdminServer, BackendAction};
use strata_config::{Admin, Config};
use strata_lb::{HttpService, TcpService};
use strata_metrics::MetricsWriter;
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// One listener being served.
struct Running<S> {
    svc: Arc<S>,
    /// The address from the config (port 0 stays 0 here).
    listen: SocketAddr,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

/// The layers of this node, as the admin API sees them.
#[derive(Default)]
pub struct Layers {
    http: Mutex<Vec<Running<HttpService>>>,
    tcp: Mutex<Vec<Running<TcpService>>>,
}

/// Builds the runtime the config asks for and runs the node until it is told to stop.
pub fn run(config: Config, path: Option<PathBuf>) -> ExitCode {
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

async fn bind(addr: SocketAddr, what: &str) -> Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()
    } else {
        tokio::net::TcpSocket::new_v6()
    }
    .with_context(|| format!("{what}: cannot create a socket"))?;
    socket
        .set_reuseaddr(true)
        .with_context(|| format!("{what}: SO_REUSEADDR"))?;
    socket
        .bind(addr)
        .with_context(|| format!("{what}: cannot listen on {addr}"))?;
    socket
        .listen(4096)
        .with_context(|| format!("{what}: cannot listen on {addr}"))
}

/// Tells the operator (and tests) where each listener really is.
fn announce(what: &str, listener: &TcpListener, scheme: &str) {
    if let Ok(addr) = listener.local_addr() {
        println!("strata: {what} listening on {scheme}://{addr}");
        tracing::info!(listener = what, %addr, "listening");
    }
}

impl Layers {
    async fn start_http(
        &self,
        config: &strata_config::HttpListener,
        listener: TcpListener,
    ) -> Result<()> {
        let svc = HttpService::new(config).context("cannot start")?;
        svc.start();
        let scheme = if config.tls.is_empty() {
            "http"
        } else {
            "https"
        };
        announce(&format!("http:{}", config.name), &listener, scheme);
        let stop = CancellationToken::new();
        let task = tokio::spawn(strata_lb::http::serve(svc.clone(), listener, stop.clone()));
        lock(&self.http).push(Running {
            svc,
            listen: config.listen,
            stop,
            task,
        });
        Ok(())
    }

    fn start_tcp(&self, config: &strata_config::TcpListener, listener: TcpListener) {
        let svc = TcpService::new(config);
        svc.start();
        announce(&format!("tcp:{}", config.name), &listener, "tcp");
        let stop = CancellationToken::new();
        let task = tokio::spawn(strata_lb::tcp::serve(svc.clone(), listener, stop.clone()));
        lock(&self.tcp).push(Running {
            svc,
            listen: config.listen,
            stop,
            task,
        });
    }

    /// Applies a new config: listeners that keep their name and address swap settings in place
    /// (their connections carry on); new ones are bound first, so a reload that cannot bind
    /// changes nothing; removed ones stop accepting and drain.
    async fn reload(&self, config: &Config) -> Result<()> {
        for h in &config.http {
            strata_lb::http::check_tls(h).context("reload rejected")?;
        }
        let mut new_http = Vec::new();
        for h in &config.http {
            let kept = lock(&self.http)
                .iter()
                .any(|r| r.svc.name == h.name && r.listen == h.listen);
            if !kept {
                new_http.push((
                    h,
                    bind(h.listen, &format!("http:{}", h.name))
                        .await
                        .context("reload rejected")?,
                ));
            }
        }
        let mut new_tcp = Vec::new();
        for t in &config.tcp {
            let kept = lock(&self.tcp)
                .iter()
                .any(|r| r.svc.name == t.name && r.listen == t.listen);
            if !kept {
                new_tcp.push((
                    t,
                    bind(t.listen, &format!("tcp:{}", t.name))
                        .await
                        .context("reload rejected")?,
                ));
            }
        }
        // everything that can fail has been done; apply
        {
            let mut http = lock(&self.http);
            http.retain(|r| {
                match config.http.iter().find(|h| h.name == r.svc.name && h.listen == r.listen) {
                    Some(h) => {
                        if let Err(e) = r.svc.reload(h) {
                            tracing::error!(listener = %r.svc.name, error = %e, "kept the old settings");
                        }
                        true
                    }
                    None => {
                        tracing::info!(listener = %r.svc.name, "http listener removed; draining it");
                        r.svc.stop();
                        r.stop.cancel();
                        false
                    }
                }
            });
        }
        {
            let mut tcp = lock(&self.tcp);
            tcp.retain(|r| {
                match config
                    .tcp
                    .iter()
                    .find(|t| t.name == r.svc.name && t.listen == r.listen)
                {
                    Some(t) => {
                        r.svc.reload(t);
                        true
                    }
                    None => {
                        tracing::info!(listener = %r.svc.name, "tcp listener removed; draining it");
                        r.svc.stop();
                        r.stop.cancel();
                        false
                    }
                }
            });
        }
        for (h, listener) in new_http {
            self.start_http(h, listener).await?;
        }
        for (t, listener) in new_tcp {
            self.start_tcp(t, listener);
        }
        Ok(())
    }

    /// Stops accepting everywhere and waits up to `deadline` for open work to finish.
    async fn drain(&self, deadline: Duration) {
        let mut tasks = Vec::new();
        for r in lock(&self.http).drain(..) {
            r.stop.cancel();
            r.svc.stop();
            tasks.push(r.task);
        }
        for r in lock(&self.tcp).drain(..) {
            r.stop.cancel();
            r.svc.stop();
            tasks.push(r.task);
        }
        let all = async {
            for t in tasks {
                let _ = t.await;
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

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl AdminApi for Layers {
    fn metrics(&self) -> String {
        let mut w = MetricsWriter::new();
        for r in lock(&self.http).iter() {
            r.svc.metrics(&mut w);
        }
        for r in lock(&self.tcp).iter() {
            r.svc.metrics(&mut w);
        }
        w.finish()
    }

    fn status(&self) -> serde_json::Value {
        let http: Vec<_> = lock(&self.http).iter().map(|r| r.svc.status()).collect();
        let tcp: Vec<_> = lock(&self.tcp).iter().map(|r| r.svc.status()).collect();
        json!({ "version": env!("CARGO_PKG_VERSION"), "http": http, "tcp": tcp })
    }

    fn backend(
        &self,
        layer: &str,
        listener: &str,
        backend: &str,
        action: BackendAction,
    ) -> Result<serde_json::Value, String> {
        match layer {
            "http" => match lock(&self.http).iter().find(|r| r.svc.name == listener) {
                Some(r) => r.svc.backend_action(backend, action),
                None => Err(format!("no http listener named \"{listener}\"")),
            },
            "tcp" => match lock(&self.tcp).iter().find(|r| r.svc.name == listener) {
                Some(r) => r.svc.backend_action(backend, action),
                None => Err(format!("no tcp listener named \"{listener}\"")),
            },
            other => Err(format!("unknown layer \"{other}\": use http or tcp")),
        }
    }
}

/// Binds everything (so a busy port fails the start before anything serves), serves, and
/// handles signals until SIGTERM or SIGINT.
pub async fn serve(config: Config, path: Option<PathBuf>, workers: usize) -> Result<()> {
    let layers = Arc::new(Layers::default());
    let mut http_listeners = Vec::new();
    for h in &config.http {
        http_listeners.push(bind(h.listen, &format!("http:{}", h.name)).await?);
    }
    let mut tcp_listeners = Vec::new();
    for t in &config.tcp {
        tcp_listeners.push(bind(t.listen, &format!("tcp:{}", t.name)).await?);
    }
    let admin_listener = match &config.admin {
        Some(a) => Some(bind(a.listen, "admin").await?),
        None => None,
    };
    let mut sigterm = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let mut sigint = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    let mut sighup = signal(SignalKind::hangup()).context("cannot watch SIGHUP")?;

    for (h, l) in config.http.iter().zip(http_listeners) {
        layers.start_http(h, l).await?;
    }
    for (t, l) in config.tcp.iter().zip(tcp_listeners) {
        layers.start_tcp(t, l);
    }
    let admin_stop = CancellationToken::new();
    let admin = match (&config.admin, admin_listener) {
        (Some(a), Some(listener)) => {
            announce("admin", &listener, "http");
            let server = AdminServer::new(a, layers.clone());
            tokio::spawn(server.clone().serve(listener, admin_stop.clone()));
            Some(server)
        }
        _ => None,
    };
    tracing::info!(workers, "strata is running");

    let mut config = config;
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
                    Ok(new) => {
                        if new.workers != config.workers {
                            tracing::warn!("workers changes take effect at the next restart");
                        }
                        match layers.reload(&new).await {
                            Ok(()) => {
                                reload_admin(admin.as_deref(), config.admin.as_ref(), new.admin.as_ref());
                                tracing::info!(file = %path.display(), "SIGHUP: reloaded");
                                config = new;
                            }
                            Err(e) => tracing::error!("SIGHUP: {e:#}; the old config keeps serving"),
                        }
                    }
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
    layers.drain(config.drain_timeout).await;
    admin_stop.cancel();
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
