//! The admin listener: a small HTTP/1.1 server on its own address, with its own connection
//! limit and timeouts so that idle or slow clients cannot starve it or the process.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{Method, Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use strata_config::Admin;
use strata_net::Limit;
use strata_net::{accept_loop, Activity, Watched};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::access::{allow, allow_read, Refusal};
use crate::history::{self, History};
use crate::routes::{refused, route, AdminApi};
use strata_metrics::{CountsOpen, Gauge, MetricsWriter, Open};

/// The admin listener's settings, swapped whole on reload, and its counters.
pub struct AdminServer {
    api: Arc<dyn AdminApi>,
    site: ArcSwap<Site>,
    stats: Stats,
    history: History,
}

struct Site {
    config: Admin,
    conn_limit: Limit,
}

impl CountsOpen for AdminServer {
    fn open_gauge(&self) -> &Gauge {
        &self.stats.open
    }
}

#[derive(Default)]
struct Stats {
    open: Gauge,
    /// Refused state-changing calls by reason: a cold path, so a lock is fine.
    refused: Mutex<BTreeMap<&'static str, u64>>,
}

impl AdminServer {
    /// Prepares the admin API over `api` with the settings of `config`; nothing is bound yet.
    pub fn new(config: &Admin, api: Arc<dyn AdminApi>) -> Arc<Self> {
        Arc::new(AdminServer {
            api,
            site: ArcSwap::from_pointee(Site::new(config, None)),
            stats: Stats::default(),
            history: History::default(),
        })
    }

    /// Takes new settings: the token applies to the next request, the timeouts and the
    /// connection limit to the next connection. The listener stays where it was bound; a new
    /// `listen` takes effect at the next start.
    pub fn reload(&self, config: &Admin) {
        let old = self.site.load_full();
        self.site.store(Arc::new(Site::new(config, Some(&old))));
    }

    /// Serves on `listener` until `shutdown`, then closes every admin connection.
    pub async fn serve(self: Arc<Self>, listener: TcpListener, shutdown: CancellationToken) {
        // an address we cannot read is treated as reachable from anywhere
        let local = listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        tokio::spawn(self.clone().sample(shutdown.clone()));
        let limit = self.site.load().conn_limit.clone();
        // each connection watches the drain itself (below)
        accept_loop(
            "admin",
            listener,
            &shutdown,
            limit,
            |stream, _, admitted| {
                let open = Open::new(self.clone());
                let shutdown = shutdown.clone();
                tokio::spawn(async move {
                    let _admitted = admitted;
                    open.service().connection(stream, local, shutdown).await;
                });
            },
        )
        .await
        .finished()
        .await;
    }

    /// Reads every listener's totals each [`history::INTERVAL`] until `shutdown`.
    async fn sample(self: Arc<Self>, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(history::INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    self.history.record(SystemTime::now(), Instant::now(), self.api.traffic());
                }
                _ = shutdown.cancelled() => return,
            }
        }
    }

    async fn connection(
        self: &Arc<Self>,
        stream: TcpStream,
        local: SocketAddr,
        shutdown: CancellationToken,
    ) {
        let site = self.site.load_full();
        let activity = Activity::new();
        let io = TokioIo::new(Watched::new(stream, activity.clone()));
        let server = self.clone();
        let service = service_fn(move |req| {
            let server = server.clone();
            async move { Ok::<_, Infallible>(server.respond(req, local)) }
        });
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(site.config.header_timeout)
            .serve_connection(io, service);
        tokio::select! {
            _ = conn => {}
            _ = activity.idle(site.config.idle_timeout) => {
                tracing::debug!(idle_timeout = ?site.config.idle_timeout, "closed an idle admin connection");
            }
            _ = shutdown.cancelled() => {}
        }
    }

    fn respond(&self, req: Request<Incoming>, local: SocketAddr) -> Response<Full<Bytes>> {
        let site = self.site.load();
        let token = site.config.token.as_ref().map(|t| t.secret());
        // anything but a read may change state, now or in a later version
        let allowed = if req.method() == Method::GET {
            allow_read(req.headers(), token)
        } else {
            allow(req.headers(), token, local)
        };
        if let Err(why) = allowed {
            return self.refuse(&why);
        }
        route(&*self.api, &self.history, &req, || {
            self.api.metrics() + &self.metrics()
        })
    }

    fn refuse(&self, why: &Refusal) -> Response<Full<Bytes>> {
        *lock(&self.stats.refused).entry(why.reason()).or_default() += 1;
        tracing::debug!(reason = why.reason(), "admin call refused: {why}");
        refused(why)
    }

    fn metrics(&self) -> String {
        let mut w = MetricsWriter::new();
        w.gauge(
            "strata_admin_open_connections",
            "Open connections to the admin listener.",
            &[],
            self.stats.open.get() as f64,
        );
        for (reason, n) in lock(&self.stats.refused).iter() {
            w.counter(
                "strata_admin_refused_total",
                "Admin requests refused, by reason.",
                &[("reason", reason)],
                *n,
            );
        }
        w.finish()
    }
}

impl Site {
    fn new(config: &Admin, previous: Option<&Site>) -> Self {
        let conn_limit = Limit::resized(
            previous.map(|p| &p.conn_limit),
            config.max_connections as usize,
        );
        Site {
            config: config.clone(),
            conn_limit,
        }
    }
}

use strata_net::lock;
