//! The floor every layer stands on: the accept loop (connection limit, back-off when the
//! process runs out of descriptors, a warning that cannot flood the log) and an idle watch
//! for connections served by someone else's state machine.

mod accept;
mod idle;

pub use accept::accept_loop;
pub use idle::{Activity, Watched};
