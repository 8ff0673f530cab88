//! The admin HTTP listener: the dashboard (`/`), /metrics, /status, /healthz, /endpoints,
//! /history, and the backend drain/restore API, guarded by a token or by loopback and
//! same-origin rules.

mod access;
mod history;
mod routes;
mod server;

pub use routes::AdminApi;
pub use server::AdminServer;
pub use strata_upstream::{ActionError, BackendAction};
