//! Metrics in Prometheus text format and the admin HTTP listener (/metrics, /status, /healthz,
//! and the backend drain/restore API).

mod metrics;
mod server;

pub use metrics::{Counter, Gauge, Histogram, MetricsWriter, LATENCY_BUCKETS};
pub use server::{serve, AdminApi, BackendAction};
