//! The listeners of one layer: started, reloaded in place, drained and reported the same way
//! whatever protocol they serve.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::Value;
use strata_config::Config;
use strata_metrics::{MetricsWriter, Traffic};
use strata_upstream::{ActionError, BackendAction};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::{Layer, LayerError, Work};

/// One listener of a layer: its live state, reloaded in place, and how it serves.
pub trait Service: Send + Sync + Sized + 'static {
    /// The listener's section of the config.
    type Config: Send + Sync;
    /// What [`Service::start`], [`Service::reload`] and [`Service::check`] can fail with.
    type Error: std::error::Error + Send + Sync + 'static;

    /// The layer's name: "http", "tcp".
    const LAYER: &'static str;

    /// The listeners of this layer in `config`.
    fn sections(config: &Config) -> &[Self::Config];
    /// The listener's name, unique within the layer.
    fn name(config: &Self::Config) -> &str;
    /// The address to bind, as the config says it (port 0 included).
    fn listen(config: &Self::Config) -> SocketAddr;
    /// The scheme shown where the listener says it is listening ("http", "https", "tcp").
    fn scheme(config: &Self::Config) -> &'static str;

    /// What the section can fail on once applied (certificates), checked before any change.
    fn check(_config: &Self::Config) -> Result<(), Self::Error> {
        Ok(())
    }
    /// The listener's state, ready to serve; its health checks start.
    fn start(config: &Self::Config) -> Result<Arc<Self>, Self::Error>;
    /// Swaps in a new generation of settings: requests in flight finish on the old one.
    fn reload(&self, config: &Self::Config) -> Result<(), Self::Error>;
    /// Stops the health checks for good (the listener is going away).
    fn stop(&self);
    /// Accepts on `listener` until `stop`, then returns once its connections have ended.
    /// `stop` is cancelled only through [`strata_net::drain::cancel`], so connections may look
    /// at it with [`strata_net::drain::is_cancelled`].
    fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        stop: CancellationToken,
    ) -> impl Future<Output = ()> + Send + 'static;

    /// The listener with its state and backends, one element of [`Layer::status`]'s array.
    fn status(&self) -> Value;
    /// Writes the listener's metrics and its backends'.
    fn metrics(&self, w: &mut MetricsWriter);
    /// Drains or restores `backend`; the error says it was not found.
    fn backend_action(&self, backend: &str, action: BackendAction) -> Result<Value, ActionError>;
    /// Whether the listener has a backend that can take traffic now (what a VIP tracks).
    fn serving(&self) -> bool;
    /// What the listener has served so far, for the dashboard's graphs.
    fn traffic(&self) -> Traffic;
    /// The backends that can take traffic now, by name (`GET /endpoints`).
    fn healthy(&self) -> Vec<String>;
}

/// One listener being served.
struct Running<S> {
    svc: Arc<S>,
    name: String,
    /// The address from the config (port 0 stays 0 here).
    listen: SocketAddr,
    /// The address it is bound to (port 0 resolved).
    bound: Option<SocketAddr>,
    stop: CancellationToken,
    /// Its listening socket (a copy of the descriptor the accept loop has), for a listener
    /// that takes the address over when a reload renames or replaces this one.
    socket: Option<std::os::fd::OwnedFd>,
    /// Taken when it drains (the listener stays in the list meanwhile, so that `/status` and
    /// `/metrics` show the connections it still has).
    task: Option<JoinHandle<()>>,
}

/// Every listener of one layer: a [`Layer`] for any [`Service`].
pub struct Listeners<S> {
    running: Mutex<Vec<Running<S>>>,
    /// The serve tasks of listeners a reload removed or moved, draining their connections: a
    /// stop waits for them too (within `drain_timeout`), as for the listeners that run.
    retiring: Mutex<Vec<JoinHandle<()>>>,
}

impl<S> Default for Listeners<S> {
    fn default() -> Self {
        Listeners {
            running: Mutex::new(Vec::new()),
            retiring: Mutex::new(Vec::new()),
        }
    }
}

/// A listener set that goes away (a node dropped without a drain, or one whose start failed
/// halfway) stops accepting: nothing is left serving that nobody can stop.
impl<S> Drop for Listeners<S> {
    fn drop(&mut self) {
        let running = self.running.get_mut().unwrap_or_else(|e| e.into_inner());
        for r in running.iter() {
            strata_net::drain::cancel(&r.stop);
        }
    }
}

fn error<S: Service>(listener: &str, e: S::Error) -> LayerError {
    LayerError {
        layer: S::LAYER,
        listener: listener.to_string(),
        source: Box::new(e),
    }
}

impl<S: Service> Listeners<S> {
    fn lock(&self) -> MutexGuard<'_, Vec<Running<S>>> {
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn runs(running: &[Running<S>], section: &S::Config) -> bool {
        running.iter().any(|r| Self::same(r, section))
    }

    /// Whether `r` is the listener `section` asks for, where it asks for it.
    fn same(r: &Running<S>, section: &S::Config) -> bool {
        r.name == S::name(section) && r.listen == S::listen(section)
    }
}

impl<S: Service> Layer for Listeners<S> {
    fn name(&self) -> &'static str {
        S::LAYER
    }

    fn to_bind(&self, config: &Config) -> Vec<(String, SocketAddr)> {
        let running = self.lock();
        S::sections(config)
            .iter()
            .filter(|s| !Self::runs(&running, s))
            .map(|s| (format!("{}:{}", S::LAYER, S::name(s)), S::listen(s)))
            .collect()
    }

    fn releasing(&self, config: &Config) -> Vec<(SocketAddr, std::os::fd::OwnedFd)> {
        let sections = S::sections(config);
        self.lock()
            .iter()
            .filter(|r| r.task.is_some() && !sections.iter().any(|s| Self::same(r, s)))
            .filter_map(|r| Some((r.listen, r.socket.as_ref()?.try_clone().ok()?)))
            .collect()
    }

    fn check(&self, config: &Config) -> Result<(), LayerError> {
        for s in S::sections(config) {
            S::check(s).map_err(|e| error::<S>(S::name(s), e))?;
        }
        Ok(())
    }

    fn apply(&self, config: &Config, bound: Vec<TcpListener>) -> Result<(), LayerError> {
        let sections = S::sections(config);
        let mut running = self.lock();
        // an accept loop that ended on its own (it panicked) lets its address close
        for r in running.iter_mut() {
            if r.task.as_ref().is_some_and(JoinHandle::is_finished) {
                r.socket = None;
            }
        }
        // what can fail first, a new listener's service, before any listener stops: a failure
        // leaves everything as it was (an address a new listener took over is still served by
        // the old one)
        let mut started: Vec<(String, Arc<S>)> = Vec::new();
        for section in sections
            .iter()
            .filter(|s| !running.iter().any(|r| r.name == S::name(s)))
        {
            match S::start(section) {
                Ok(svc) => started.push((S::name(section).to_string(), svc)),
                Err(e) => {
                    for (_, svc) in &started {
                        svc.stop();
                    }
                    return Err(error::<S>(S::name(section), e));
                }
            }
        }
        // what stays takes its new settings; what went drains; a listener that keeps its
        // name and moves to another address keeps its state (counters, backends' health,
        // connection limit) and is served on its new socket, while its old one drains
        let mut moving: Vec<(String, Arc<S>)> = Vec::new();
        let mut retiring = strata_net::lock(&self.retiring);
        retiring.retain(|t| !t.is_finished());
        let gone = running.extract_if(.., |r| {
            let kept = sections.iter().find(|s| S::name(s) == r.name);
            match kept {
                Some(s) => {
                    if let Err(e) = r.svc.reload(s) {
                        tracing::error!(layer = S::LAYER, listener = %r.name, error = %e, "kept the old settings");
                    }
                    if S::listen(s) == r.listen {
                        return false;
                    }
                    tracing::info!(layer = S::LAYER, listener = %r.name, from = %r.listen, to = %S::listen(s), "listener moved; draining its old address");
                    moving.push((r.name.clone(), r.svc.clone()));
                }
                None => {
                    tracing::info!(layer = S::LAYER, listener = %r.name, "listener removed; draining it");
                    r.svc.stop();
                }
            }
            strata_net::drain::cancel(&r.stop);
            true
        });
        retiring.extend(gone.filter_map(|r| r.task));
        drop(retiring);
        let new: Vec<&S::Config> = sections
            .iter()
            .filter(|s| !Self::runs(&running, s))
            .collect();
        for (section, listener) in new.into_iter().zip(bound) {
            let name = S::name(section).to_string();
            let take = |from: &mut Vec<(String, Arc<S>)>| {
                let at = from.iter().position(|(n, _)| *n == name)?;
                Some(from.swap_remove(at).1)
            };
            let Some(svc) = take(&mut moving).or_else(|| take(&mut started)) else {
                continue;
            };
            let bound = listener.local_addr().ok();
            // (without a copy, which only a full descriptor table refuses, a reload that
            // renames the listener in place is refused as the address is in use)
            let socket = std::os::fd::AsFd::as_fd(&listener)
                .try_clone_to_owned()
                .ok();
            if let Some(addr) = bound {
                let what = format!("{}:{name}", S::LAYER);
                println!(
                    "strata: {what} listening on {}://{addr}",
                    S::scheme(section)
                );
                tracing::info!(listener = %what, %addr, "listening");
            }
            let stop = CancellationToken::new();
            let task = tokio::spawn(svc.clone().serve(listener, stop.clone()));
            running.push(Running {
                svc,
                name,
                listen: S::listen(section),
                bound,
                stop,
                socket,
                task: Some(task),
            });
        }
        Ok(())
    }

    fn drain(&self) -> Work<'static> {
        let mut tasks: Vec<JoinHandle<()>> = self
            .lock()
            .iter_mut()
            .filter_map(|r| {
                strata_net::drain::cancel(&r.stop);
                r.svc.stop();
                // the address closes once the accept loop lets go of it: new clients are
                // refused (and go elsewhere) rather than left in the backlog
                r.socket = None;
                r.task.take()
            })
            .collect();
        tasks.append(&mut strata_net::lock(&self.retiring));
        Box::pin(async move {
            for t in tasks {
                let _ = t.await;
            }
        })
    }

    fn status(&self) -> Value {
        let status = |r: &Running<S>| {
            let mut v = r.svc.status();
            // where it listens, with a port 0 of the config resolved
            if let (Some(obj), Some(bound)) = (v.as_object_mut(), r.bound) {
                obj.insert("listen".into(), Value::String(bound.to_string()));
            }
            v
        };
        Value::Array(self.lock().iter().map(status).collect())
    }

    fn metrics(&self, w: &mut MetricsWriter) {
        for r in self.lock().iter() {
            r.svc.metrics(w);
        }
    }

    fn backend_action(
        &self,
        listener: &str,
        backend: &str,
        action: BackendAction,
    ) -> Result<Value, ActionError> {
        match self.lock().iter().find(|r| r.name == listener) {
            Some(r) => r.svc.backend_action(backend, action),
            None => Err(ActionError::NotFound(format!(
                "no {} listener named \"{listener}\"",
                S::LAYER
            ))),
        }
    }

    fn serving(&self, listener: &str) -> Option<bool> {
        self.lock()
            .iter()
            .find(|r| r.name == listener)
            .map(|r| r.svc.serving())
    }

    fn traffic(&self) -> Vec<(String, Traffic)> {
        self.lock()
            .iter()
            .map(|r| (r.name.clone(), r.svc.traffic()))
            .collect()
    }

    fn endpoints(&self) -> Value {
        Value::Array(
            self.lock()
                .iter()
                .map(|r| {
                    serde_json::json!({
                        "name": r.name,
                        "listen": r.bound.unwrap_or(r.listen).to_string(),
                        "healthy": r.svc.healthy(),
                    })
                })
                .collect(),
        )
    }
}
