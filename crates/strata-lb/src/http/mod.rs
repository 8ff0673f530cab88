//! The L7 layer: an HTTP/1.1 and HTTP/2 (h2c and over TLS) reverse proxy.

mod body;
pub(crate) mod h1;
pub(crate) mod h2;
mod h2_backend;
pub(crate) mod h2server;
// not wired into the server yet (the connection that will use all of it comes next): only its
// tests use it
#[allow(dead_code)]
pub(crate) mod h2frame;
// not wired into the server yet: only the tests and the fuzz target use it
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) mod hpack;
mod io;
mod peer;
pub(crate) mod proxy;
mod server;
mod tls;
mod trailers;

use std::sync::Arc;

use arc_swap::ArcSwap;
use serde_json::{json, Value};
use strata_config::HttpListener;
use strata_metrics::{Counter, Gauge, Histogram, MetricsWriter, Traffic};
use strata_net::Limit;
use strata_net::Timers;
use tokio_rustls::TlsAcceptor;

pub(crate) use peer::Peer;
pub use server::serve;

use crate::LbError;
use strata_upstream::{
    backend_action, backend_metrics, upstream_status, ActionError, BackendAction, Upstream,
};

/// One `[[http]]` listener: its live settings, swapped whole on reload, and its counters.
pub struct HttpService {
    /// The listener's name from the config; it never changes on reload.
    pub name: String,
    site: ArcSwap<Site>,
    stats: ListenerStats,
    /// Moves on at each reload: HTTP/2 connections then send GOAWAY, so that clients carry on
    /// over new connections made under the new generation.
    generation: tokio::sync::watch::Sender<u64>,
}

/// A client connection of an HTTP listener, counted as open while it lives.
pub(crate) type Open = strata_metrics::Open<HttpService>;

impl strata_metrics::CountsOpen for HttpService {
    fn open_gauge(&self) -> &Gauge {
        &self.stats.open
    }
}

/// Fields that describe one HTTP/1.x connection, which HTTP/2 forbids (RFC 9113 §8.2.2); `te`
/// is allowed there only as `trailers`, which each caller sees to.
pub(crate) const CONNECTION_SPECIFIC: [&str; 5] = [
    "connection",
    "transfer-encoding",
    "upgrade",
    "keep-alive",
    "proxy-connection",
];

/// Whether a (lowercase) field name is one of [`CONNECTION_SPECIFIC`].
pub(crate) fn connection_specific(name: &[u8]) -> bool {
    CONNECTION_SPECIFIC.iter().any(|c| c.as_bytes() == name)
}

/// Everything a request needs from the config generation it started under.
pub(crate) struct Site {
    pub(crate) config: HttpListener,
    pub(crate) upstream: Upstream<BackendStats>,
    pub(crate) h1_pool: h1::client::Pool,
    /// HTTP/2 connections to the backends, when the listener speaks HTTP/2 to them.
    pub(crate) h2_pool: Option<Arc<h2_backend::Pool>>,
    pub(crate) tls: Option<TlsAcceptor>,
    pub(crate) conn_limit: Limit,
    /// The listener's connection deadlines; the same across generations.
    pub(crate) timers: Arc<Timers>,
}

/// What the HTTP layer counts per backend, beside the set's own counters.
#[derive(Debug, Default)]
pub(crate) struct BackendStats {
    /// Responses by status class: index 0 is 1xx, 4 is 5xx.
    pub(crate) responses: [Counter; 5],
    /// Time to the response headers.
    pub(crate) latency: Histogram,
}

/// Counters of one listener.
#[derive(Default)]
pub(crate) struct ListenerStats {
    pub(crate) requests: Counter,
    /// By status class, index 0 is 1xx.
    pub(crate) responses: [Counter; 5],
    pub(crate) latency: Histogram,
    pub(crate) open: Gauge,
    pub(crate) retries: Counter,
    pub(crate) no_backend: Counter,
    pub(crate) header_timeouts: Counter,
    pub(crate) tls_failures: Counter,
    pub(crate) h2_stalls: Counter,
}

impl Site {
    fn new(config: &HttpListener, previous: Option<&Site>) -> Result<Self, LbError> {
        // what can fail first: the backends that stay take their new weights (in place) only
        // in a generation that is made
        let tls = if config.tls.is_empty() {
            None
        } else {
            Some(tls::acceptor(&config.name, &config.tls)?)
        };
        let h2_pool = h2_backend::Pool::new(config)?.map(Arc::new);
        let upstream = Upstream::new(&config.upstream, previous.map(|p| &p.upstream));
        Ok(Site {
            h2_pool,
            h1_pool: h1::client::Pool::new(
                upstream.group.backends.len(),
                config.upstream_keepalive as usize,
                config.idle_timeout,
            ),
            upstream,
            tls,
            conn_limit: Limit::resized(
                previous.map(|p| &p.conn_limit),
                config.max_connections as usize,
            ),
            timers: previous.map_or_else(Timers::new, |p| p.timers.clone()),
            config: config.clone(),
        })
    }

    /// Starts the active health checks; over HTTP/2 when the backends speak it.
    fn start_checks(&self, listener: &str) {
        let probe = match (&self.h2_pool, &self.upstream.config.health) {
            (Some(pool), Some(check)) => h2_backend::probe(pool.clone(), check),
            _ => None,
        };
        self.upstream
            .start_checks_with(&format!("http:{listener}"), probe);
    }
}

impl HttpService {
    /// Prepares the listener (loads certificates); nothing is bound or started yet.
    pub fn new(config: &HttpListener) -> Result<Arc<Self>, LbError> {
        Ok(Arc::new(HttpService {
            name: config.name.clone(),
            site: ArcSwap::from_pointee(Site::new(config, None)?),
            stats: ListenerStats::default(),
            generation: tokio::sync::watch::Sender::new(0),
        }))
    }

    /// Starts the active health checks; call inside the runtime.
    pub fn start(&self) {
        self.site.load().start_checks(&self.name);
    }

    /// Swaps in a new config generation: requests already running finish on the old one.
    pub fn reload(&self, config: &HttpListener) -> Result<(), LbError> {
        let old = self.site.load_full();
        let site = Site::new(config, Some(&old))?;
        old.upstream.stop_checks();
        site.start_checks(&self.name);
        self.site.store(Arc::new(site));
        self.generation.send_modify(|g| *g += 1);
        Ok(())
    }

    /// Stops the health checks for good (the listener was removed).
    pub fn stop(&self) {
        self.site.load().upstream.stop_checks();
    }

    /// The settings it serves with now (a copy).
    pub fn config(&self) -> HttpListener {
        self.site.load().config.clone()
    }

    /// Backends that can take requests now.
    pub fn available_backends(&self) -> usize {
        self.site.load().upstream.available()
    }

    /// Writes the listener's request, response and connection metrics and its backends'.
    pub fn metrics(&self, w: &mut MetricsWriter) {
        let site = self.site.load();
        let l = [("listener", self.name.as_str())];
        let s = &self.stats;
        w.counter(
            "strata_http_requests_total",
            "Requests received by the listener.",
            &l,
            s.requests.get(),
        );
        for (i, class) in ["1xx", "2xx", "3xx", "4xx", "5xx"].iter().enumerate() {
            let lc = [("listener", self.name.as_str()), ("class", class)];
            w.counter(
                "strata_http_responses_total",
                "Responses sent to clients by status class.",
                &lc,
                s.responses[i].get(),
            );
        }
        w.histogram(
            "strata_http_request_duration_seconds",
            "Time from request to response headers.",
            &l,
            &s.latency,
        );
        w.gauge(
            "strata_http_open_connections",
            "Client connections open now.",
            &l,
            s.open.get() as f64,
        );
        w.counter(
            "strata_http_retries_total",
            "Requests tried again on another backend.",
            &l,
            s.retries.get(),
        );
        w.counter(
            "strata_http_no_backend_total",
            "Requests answered 503 because no backend was available.",
            &l,
            s.no_backend.get(),
        );
        w.counter(
            "strata_http_header_timeouts_total",
            "Client connections closed for sending a request head too slowly.",
            &l,
            s.header_timeouts.get(),
        );
        w.counter(
            "strata_http_tls_handshake_failures_total",
            "TLS handshakes that failed.",
            &l,
            s.tls_failures.get(),
        );
        w.counter(
            "strata_http2_stalled_connections_total",
            "HTTP/2 client connections closed for taking no response data for idle_timeout.",
            &l,
            s.h2_stalls.get(),
        );
        backend_metrics(w, "http", &self.name, &site.upstream);
        for (b, stats) in site
            .upstream
            .group
            .backends
            .iter()
            .zip(&site.upstream.extra)
        {
            let labels = [
                ("layer", "http"),
                ("listener", self.name.as_str()),
                ("backend", b.name.as_str()),
            ];
            for (i, class) in ["1xx", "2xx", "3xx", "4xx", "5xx"].iter().enumerate() {
                let l = [labels[0], labels[1], labels[2], ("class", class)];
                w.counter(
                    "strata_backend_responses_total",
                    "Responses from the backend by status class.",
                    &l,
                    stats.responses[i].get(),
                );
            }
            w.histogram(
                "strata_backend_response_seconds",
                "Time to the backend's response headers.",
                &labels,
                &stats.latency,
            );
        }
    }

    /// The listener's address, TLS, counters and backends, for `/status`.
    pub fn status(&self) -> Value {
        let site = self.site.load();
        let mut v = json!({
            "name": self.name,
            "listen": site.config.listen.to_string(),
            "tls": !site.config.tls.is_empty(),
            "open_connections": self.stats.open.get(),
            "requests": self.stats.requests.get(),
        });
        if let (Some(obj), Value::Object(up)) = (v.as_object_mut(), upstream_status(&site.upstream))
        {
            obj.extend(up);
        }
        v
    }

    /// Drains or restores `backend`; the error says it was not found.
    pub fn backend_action(
        &self,
        backend: &str,
        action: BackendAction,
    ) -> Result<Value, ActionError> {
        backend_action(&self.site.load().upstream, backend, action)
    }
}

/// Loads the certificates a listener names (its own, and the CA it trusts its backends with),
/// without starting it: a reload checks this first so that a bad file rejects the whole reload.
pub fn check_tls(config: &HttpListener) -> Result<(), LbError> {
    if !config.tls.is_empty() {
        tls::acceptor(&config.name, &config.tls)?;
    }
    h2_backend::connector(config)?;
    Ok(())
}

impl strata_layer::Service for HttpService {
    type Config = HttpListener;
    type Error = LbError;
    const LAYER: &'static str = "http";

    fn sections(config: &strata_config::Config) -> &[HttpListener] {
        &config.http
    }
    fn name(config: &HttpListener) -> &str {
        &config.name
    }
    fn listen(config: &HttpListener) -> std::net::SocketAddr {
        config.listen
    }
    fn scheme(config: &HttpListener) -> &'static str {
        if config.tls.is_empty() {
            "http"
        } else {
            "https"
        }
    }
    fn check(config: &HttpListener) -> Result<(), LbError> {
        check_tls(config)
    }
    fn start(config: &HttpListener) -> Result<Arc<Self>, LbError> {
        let svc = HttpService::new(config)?;
        svc.start();
        Ok(svc)
    }
    fn reload(&self, config: &HttpListener) -> Result<(), LbError> {
        HttpService::reload(self, config)
    }
    fn stop(&self) {
        HttpService::stop(self)
    }
    fn serve(
        self: Arc<Self>,
        listener: tokio::net::TcpListener,
        stop: tokio_util::sync::CancellationToken,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        serve(self, listener, stop)
    }
    fn status(&self) -> Value {
        HttpService::status(self)
    }
    fn metrics(&self, w: &mut MetricsWriter) {
        HttpService::metrics(self, w)
    }
    fn backend_action(&self, backend: &str, action: BackendAction) -> Result<Value, ActionError> {
        HttpService::backend_action(self, backend, action)
    }
    fn serving(&self) -> bool {
        HttpService::available_backends(self) > 0
    }
    fn traffic(&self) -> Traffic {
        Traffic {
            requests: self.stats.requests.get(),
            errors: self.stats.responses[4].get(),
            latency: Some(self.stats.latency.buckets()),
        }
    }
    fn healthy(&self) -> Vec<String> {
        self.site.load().upstream.group.available_names()
    }
}
