//! The floor every layer stands on: listening sockets, the accept loop (connection limit, back-off when the
//! process runs out of descriptors, a warning that cannot flood the log), socket reads into
//! uninitialised memory, the per-thread read-buffer pool, deadlines on one timer per listener,
//! connections run in lanes rather than a task each, the byte relay,
//! vectored writes, TLS termination's certificates, the process clock, an idle watch for connections served by someone
//! else's state machine, and busy polling for a one-worker runtime.

mod accept;
mod between;
pub mod buffers;
pub mod busy;
pub mod clock;
mod deadline;
pub mod drain;
mod idle;
mod limit;
mod listen;
mod park;
mod relay;
mod socket;
pub mod tls;
mod write;

pub use accept::{accept_loop, keepalive, Admitted, Draining};
pub use between::{close_lingering, poll_idle};
pub use clock::now_ms;
pub use deadline::{Deadline, Timers};
pub use idle::{Activity, Watched};
pub use limit::{Closed, Limit, Slot};
pub use listen::{listen, listen_freebind};
pub use park::{lock, Lanes, Park};
pub use relay::{relay, relay_until_b_ends, Relay};
pub use socket::{
    connect, poll_recv, queued, try_recv_buf, Arrival, ConnectError, StreamSocket, UpstreamIo,
};
pub use write::{write_all_parts, write_all_parts_within, write_all_within, Parts};
