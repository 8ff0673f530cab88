//! A backend set's /status JSON and metrics, and the drain/restore admin actions.

use serde_json::{json, Value};
use strata_config::Balance;
use strata_health::{Backend, Group};
use strata_metrics::MetricsWriter;

use crate::set::Upstream;

/// Why the admin API could not act on a backend; the text is what the caller is told.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ActionError {
    /// No such layer, listener or backend: the text names the ones there are (HTTP 404).
    #[error("{0}")]
    NotFound(String),
    /// The backend is there but can't take the action now, e.g. a database primary can't be
    /// drained (HTTP 409).
    #[error("{0}")]
    Refused(String),
}

/// What the admin API can do to one backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendAction {
    /// Stop sending new requests; in-flight ones finish.
    Drain,
    /// Take requests again, ramping up over the slow-start time.
    Restore,
}

/// The balance setting as the config spells it, for `/status`.
pub fn balance_name(b: &Balance) -> String {
    match b {
        Balance::RoundRobin => "round_robin".into(),
        Balance::LeastConn => "least_conn".into(),
        Balance::IpHash => "ip_hash".into(),
        Balance::RandomTwo => "random_two".into(),
        Balance::Hash(strata_config::HashKey::Header(h)) => format!("hash(header:{h})"),
        Balance::Hash(strata_config::HashKey::Cookie(c)) => format!("hash(cookie:{c})"),
    }
}

/// The balance, the number of available backends and each backend's state and counters, for
/// `/status`.
pub fn upstream_status<X>(up: &Upstream<X>) -> Value {
    let backends: Vec<Value> = up
        .group
        .backends
        .iter()
        .map(|b| backend_status(b))
        .collect();
    json!({
        "balance": balance_name(up.balancer.kind()),
        "available": up.available(),
        "queue": {
            "waiting": up.queue.waiting.get(),
            "timeouts": up.queue.timeouts.get(),
            "refused": up.queue.refused.get(),
            "size": (up.config.queue_size != 0).then_some(up.config.queue_size),
        },
        "backends": backends,
    })
}

/// One backend's address, state, reason, weight and counters, for `/status`.
pub fn backend_status(b: &Backend) -> Value {
    json!({
        "address": b.name,
        "state": b.state().as_str(),
        "reason": b.reason(),
        "ejected_for_ms": b.ejected_for_ms(),
        "weight": b.weight(),
        "in_flight": b.in_flight(),
        "max_conns": (b.max_conns() != 0).then(|| b.max_conns()),
        "requests": b.stats.requests.get(),
        "failures": b.stats.failures.get(),
        "ejections": b.stats.ejections.get(),
    })
}

/// Per-backend metrics, labelled with the layer and listener.
pub fn backend_metrics<X>(w: &mut MetricsWriter, layer: &str, listener: &str, up: &Upstream<X>) {
    let labels = [("layer", layer), ("listener", listener)];
    w.gauge(
        "strata_queue_waiting",
        "Requests (http) or connections (tcp) waiting for a backend below its max_conns.",
        &labels,
        up.queue.waiting.get() as f64,
    );
    w.counter(
        "strata_queue_timeouts_total",
        "Requests (http) or connections (tcp) that waited queue_timeout for a backend with room and were refused.",
        &labels,
        up.queue.timeouts.get(),
    );
    w.counter(
        "strata_queue_refused_total",
        "Requests (http) or connections (tcp) turned away because the queue held queue_size already.",
        &labels,
        up.queue.refused.get(),
    );
    group_metrics(w, layer, listener, &up.group);
}

/// [`backend_metrics`] for any group of backends (a cache pool's servers).
pub fn group_metrics(w: &mut MetricsWriter, layer: &str, listener: &str, group: &Group) {
    for b in &group.backends {
        let labels = [
            ("layer", layer),
            ("listener", listener),
            ("backend", b.name.as_str()),
        ];
        let s = &b.stats;
        w.counter(
            "strata_backend_requests_total",
            "Requests (http) or connections (tcp) sent to the backend.",
            &labels,
            s.requests.get(),
        );
        w.counter(
            "strata_backend_failures_total",
            "Connect failures, timeouts and broken connections to the backend.",
            &labels,
            s.failures.get(),
        );
        w.counter(
            "strata_backend_retries_total",
            "Tries sent to the backend as a retry.",
            &labels,
            s.retries.get(),
        );
        w.counter(
            "strata_backend_ejections_total",
            "Times passive checking ejected the backend.",
            &labels,
            s.ejections.get(),
        );
        w.gauge(
            "strata_backend_in_flight",
            "Requests or connections in flight to the backend.",
            &labels,
            s.open.get() as f64,
        );
        w.gauge(
            "strata_backend_up",
            "1 when the backend takes new traffic, else 0.",
            &labels,
            if b.is_available() { 1.0 } else { 0.0 },
        );
        for state in ["up", "down", "ejected", "draining"] {
            let l = [
                ("layer", layer),
                ("listener", listener),
                ("backend", b.name.as_str()),
                ("state", state),
            ];
            let v = if b.state().as_str() == state {
                1.0
            } else {
                0.0
            };
            w.gauge(
                "strata_backend_state",
                "The backend's health state (one series per state, 1 for the current one).",
                &l,
                v,
            );
        }
    }
}

/// Drains or restores `backend` in `up`.
pub fn backend_action<X>(
    up: &Upstream<X>,
    backend: &str,
    action: BackendAction,
) -> Result<Value, ActionError> {
    group_action(&up.group, backend, action)
}

/// [`backend_action`] for any group of backends.
pub fn group_action(
    group: &Group,
    backend: &str,
    action: BackendAction,
) -> Result<Value, ActionError> {
    let Some(b) = group.find(backend) else {
        let names: Vec<&str> = group.backends.iter().map(|b| b.name.as_str()).collect();
        return Err(ActionError::NotFound(format!(
            "no backend \"{backend}\" here; backends: {}",
            names.join(", ")
        )));
    };
    match action {
        BackendAction::Drain => b.drain(),
        BackendAction::Restore => b.restore(),
    }
    tracing::info!(backend = %b.name, action = ?action, "admin action");
    Ok(backend_status(b))
}
