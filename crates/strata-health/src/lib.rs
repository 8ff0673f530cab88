//! Backend health shared by all layers: active checks, passive ejection, draining, slow start.

mod backend;
mod check;
mod clock;

pub use backend::{Backend, BackendStats, Group, InFlight, State};
pub use check::spawn_checks;
pub use clock::now_ms;
