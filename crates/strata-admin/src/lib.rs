//! Metrics in Prometheus text format and the admin HTTP listener (/metrics, /status, /healthz,
//! and the backend drain/restore API, guarded by a token or by loopback and same-origin rules).

mod access;
mod metrics;
mod routes;
mod server;

pub use metrics::{Counter, Gauge, Histogram, MetricsWriter, LATENCY_BUCKETS};
pub use routes::{AdminApi, BackendAction};
pub use server::AdminServer;
