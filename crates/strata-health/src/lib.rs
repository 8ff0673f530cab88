//! Backend health shared by all layers: active checks, passive ejection, draining, slow start.

mod backend;
mod check;

pub use backend::{Backend, BackendStats, Group, InFlight, State};
pub use check::{spawn_checks, Probe};
pub use strata_net::now_ms;
