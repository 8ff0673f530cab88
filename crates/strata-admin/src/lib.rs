//! The admin HTTP listener (/metrics, /status, /healthz,
//! and the backend drain/restore API, guarded by a token or by loopback and same-origin rules).

mod access;
mod routes;
mod server;

pub use routes::AdminApi;
pub use server::AdminServer;
pub use strata_upstream::BackendAction;
