//! The L4 layer: accept, choose a backend, connect (trying another on failure), relay bytes;
//! a relayed connection runs in one of the listener's lanes rather than in a task of its own
//! (`strata_net::Lanes`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};

use arc_swap::ArcSwap;
use serde_json::{json, Value};
use strata_config::TcpListener as TcpConfig;
use strata_health::InFlight;
use strata_metrics::{Counter, Gauge, MetricsWriter, Traffic};
use strata_net::Limit;
use strata_net::{accept_loop, Admitted, Lanes, Park, Relay, Timers};
use strata_upstream::{
    backend_action, backend_metrics, upstream_status, ActionError, BackendAction, Failure, Key,
    Tries, Upstream,
};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use strata_net::{connect, UpstreamIo};

/// One `[[tcp]]` listener.
pub struct TcpService {
    /// The listener's name from the config; it never changes on reload.
    pub name: String,
    site: ArcSwap<Site>,
    stats: Stats,
    lanes: Lanes<Relayed>,
}

struct Site {
    config: TcpConfig,
    upstream: Upstream,
    conn_limit: Limit,
    /// The listener's connection deadlines; the same across generations.
    timers: Arc<Timers>,
}

#[derive(Default)]
struct Stats {
    connections: Counter,
    open: Gauge,
    bytes_in: Counter,
    bytes_out: Counter,
    no_backend: Counter,
    retries: Counter,
}

impl TcpService {
    /// The listener's state for `config`, not serving yet; `start` starts its health checks.
    pub fn new(config: &TcpConfig) -> Arc<Self> {
        Arc::new(TcpService {
            name: config.name.clone(),
            site: ArcSwap::from_pointee(Site::new(config, None)),
            stats: Stats::default(),
            lanes: Lanes::new(),
        })
    }

    /// Starts the active health checks.
    pub fn start(&self) {
        self.site
            .load()
            .upstream
            .start_checks(&format!("tcp:{}", self.name));
    }

    /// Swaps in a new generation of settings: backends that stay keep their state, checks
    /// restart, open connections carry on.
    pub fn reload(&self, config: &TcpConfig) {
        let old = self.site.load_full();
        let site = Site::new(config, Some(&old));
        old.upstream.stop_checks();
        site.upstream.start_checks(&format!("tcp:{}", self.name));
        self.site.store(Arc::new(site));
    }

    /// Stops the health checks for good (the listener was removed).
    pub fn stop(&self) {
        self.site.load().upstream.stop_checks();
    }

    /// The settings it serves with now (a copy).
    pub fn config(&self) -> TcpConfig {
        self.site.load().config.clone()
    }

    /// Backends that can take connections now.
    pub fn available_backends(&self) -> usize {
        self.site.load().upstream.available()
    }

    /// Writes the listener's connection and byte metrics, and its backends'.
    pub fn metrics(&self, w: &mut MetricsWriter) {
        let l = [("listener", self.name.as_str())];
        let s = &self.stats;
        w.counter(
            "strata_tcp_connections_total",
            "Client connections accepted.",
            &l,
            s.connections.get(),
        );
        w.gauge(
            "strata_tcp_open_connections",
            "Client connections open now.",
            &l,
            s.open.get() as f64,
        );
        w.counter(
            "strata_tcp_received_bytes_total",
            "Bytes received from clients.",
            &l,
            s.bytes_in.get(),
        );
        w.counter(
            "strata_tcp_sent_bytes_total",
            "Bytes sent to clients.",
            &l,
            s.bytes_out.get(),
        );
        w.counter(
            "strata_tcp_no_backend_total",
            "Connections closed because no backend could be reached.",
            &l,
            s.no_backend.get(),
        );
        w.counter(
            "strata_tcp_retries_total",
            "Connects tried again on another backend.",
            &l,
            s.retries.get(),
        );
        backend_metrics(w, "tcp", &self.name, &self.site.load().upstream);
    }

    /// The listener's address, counters and backends, for `/status`.
    pub fn status(&self) -> Value {
        let site = self.site.load();
        let mut v = json!({
            "name": self.name,
            "listen": site.config.listen.to_string(),
            "open_connections": self.stats.open.get(),
            "connections": self.stats.connections.get(),
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

impl Site {
    fn new(config: &TcpConfig, previous: Option<&Site>) -> Self {
        Site {
            upstream: Upstream::new(&config.upstream, previous.map(|p| &p.upstream)),
            conn_limit: Limit::resized(
                previous.map(|p| &p.conn_limit),
                config.max_connections as usize,
            ),
            timers: previous.map_or_else(Timers::new, |p| p.timers.clone()),
            config: config.clone(),
        }
    }
}

impl strata_layer::Service for TcpService {
    type Config = TcpConfig;
    type Error = std::convert::Infallible;
    const LAYER: &'static str = "tcp";

    fn sections(config: &strata_config::Config) -> &[TcpConfig] {
        &config.tcp
    }
    fn name(config: &TcpConfig) -> &str {
        &config.name
    }
    fn listen(config: &TcpConfig) -> SocketAddr {
        config.listen
    }
    fn scheme(_config: &TcpConfig) -> &'static str {
        "tcp"
    }
    fn start(config: &TcpConfig) -> Result<Arc<Self>, Self::Error> {
        let svc = TcpService::new(config);
        svc.start();
        Ok(svc)
    }
    fn reload(&self, config: &TcpConfig) -> Result<(), Self::Error> {
        TcpService::reload(self, config);
        Ok(())
    }
    fn stop(&self) {
        TcpService::stop(self)
    }
    fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        stop: CancellationToken,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        serve(self, listener, stop)
    }
    fn status(&self) -> Value {
        TcpService::status(self)
    }
    fn metrics(&self, w: &mut MetricsWriter) {
        TcpService::metrics(self, w)
    }
    fn backend_action(&self, backend: &str, action: BackendAction) -> Result<Value, ActionError> {
        TcpService::backend_action(self, backend, action)
    }
    fn serving(&self) -> bool {
        TcpService::available_backends(self) > 0
    }
    fn traffic(&self) -> Traffic {
        Traffic {
            requests: self.stats.connections.get(),
            errors: self.stats.no_backend.get(),
            latency: None,
        }
    }
    fn healthy(&self) -> Vec<String> {
        self.site.load().upstream.group.available_names()
    }
}

/// Accepts until `shutdown`, then waits for open connections to finish.
pub async fn serve(svc: Arc<TcpService>, listener: TcpListener, shutdown: CancellationToken) {
    let name = svc.name.clone();
    let limit = svc.site.load().conn_limit.clone();
    // relayed connections carry on through a drain until either side closes
    accept_loop(
        &name,
        listener,
        &shutdown,
        limit,
        |stream, client, admitted| {
            svc.stats.connections.inc();
            let open = Open::new(svc.clone());
            tokio::spawn(connect_then_relay(open, stream, client, admitted));
        },
    )
    .await
    .finished()
    .await;
}

/// A client connection's first task: choose a backend and connect to it, then hand the
/// connection to a lane, where it is relayed without a task of its own.
async fn connect_then_relay(open: Open, client: TcpStream, addr: SocketAddr, admitted: Admitted) {
    let svc = &open.service();
    let site = svc.site.load_full();
    let (server, in_flight) = match backend_for(svc, &site, addr).await {
        Ok(found) => found,
        Err(failure) if failure.from_queue() => {
            failure.log_from_queue(&svc.name, &format!("closing the connection from {addr}"));
            return;
        }
        Err(_) => {
            svc.stats.no_backend.inc();
            tracing::warn!(listener = %svc.name, client = %addr, "no backend could be reached; closing the client connection");
            return;
        }
    };
    let relay = Relay::new(&site.timers, site.config.idle_timeout);
    drop(site);
    let svc = open.service().clone();
    svc.lanes.run(Relayed {
        client: UpstreamIo(client),
        server: UpstreamIo(server),
        relay,
        open,
        _in_flight: in_flight,
        _admitted: admitted,
    });
}

/// A connection being relayed: all it holds, in its lane.
struct Relayed {
    client: UpstreamIo,
    server: UpstreamIo,
    relay: Relay,
    open: Open,
    /// Counts the connection at its backend.
    _in_flight: InFlight,
    _admitted: Admitted,
}

impl Park for Relayed {
    fn poll_run(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let mut moved = [0; 2];
        let polled = self
            .relay
            .poll(cx, &mut self.client, &mut self.server, &mut moved);
        let stats = &self.open.service().stats;
        stats.bytes_in.add(moved[0]);
        stats.bytes_out.add(moved[1]);
        match polled {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(())) => Poll::Ready(()),
            Poll::Ready(Err(e)) => {
                let svc = &self.open.service();
                let backend = &self._in_flight.backend().name;
                tracing::debug!(listener = %svc.name, %backend, error = %e, "connection ended");
                Poll::Ready(())
            }
        }
    }
}

/// A client connection of a TCP listener, counted as open while it lives.
type Open = strata_metrics::Open<TcpService>;

impl strata_metrics::CountsOpen for TcpService {
    fn open_gauge(&self) -> &Gauge {
        &self.stats.open
    }
}

/// Connects to a backend for `client`, trying another when one can't be reached: the
/// connection, and the guard that counts it in flight at its backend; or why there is none
/// (no backend could be reached, or every one stayed at its `max_conns` for `queue_timeout`).
async fn backend_for(
    svc: &TcpService,
    site: &Site,
    client: SocketAddr,
) -> Result<(TcpStream, InFlight), Failure> {
    let up = &site.upstream;
    let key = Key {
        client: client.ip(),
        value: None,
    };
    let mut tries = Tries::new(up, key);
    loop {
        let (_, backend, in_flight) = tries
            .next(&svc.stats.retries)
            .await?
            .ok_or_else(Failure::no_backend)?;
        match connect(backend.addr, up.config.connect_timeout).await {
            Ok(server) => {
                backend.report_success();
                return Ok((server, in_flight));
            }
            // nothing reached the backend: another may take the connection
            Err(e) => {
                tries.failed(backend, &Failure::connect(e), false);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    /// A relayed connection lives in a lane's slot with 40 bytes beside it (counts, lock, flag,
    /// lane): at most 152 bytes of state make a 192-byte allocation, beside its two sockets'
    /// registrations.
    #[test]
    fn a_relayed_connection_is_small() {
        let size = std::mem::size_of::<super::Relayed>();
        assert!(size <= 152, "a relayed connection is {size} bytes");
    }
}
