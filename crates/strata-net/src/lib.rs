//! The floor every layer stands on: listening sockets, the accept loop (connection limit, back-off when the
//! process runs out of descriptors, a warning that cannot flood the log), socket reads into
//! uninitialised memory, the per-thread read-buffer pool, lazy deadlines, the byte relay,
//! vectored writes, the process clock, and an idle watch for connections served by someone
//! else's state machine.

mod accept;
pub mod buffers;
mod clock;
mod deadline;
mod idle;
mod listen;
mod relay;
mod socket;
mod write;

pub use accept::accept_loop;
pub use clock::now_ms;
pub use deadline::Deadline;
pub use idle::{Activity, Watched};
pub use listen::listen;
pub use relay::relay;
pub use socket::{connect, poll_recv, queued, Arrival, ConnectError, UpstreamIo};
pub use write::{write_all_parts, Parts};
