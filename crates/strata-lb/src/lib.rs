//! The business layer: an HTTP/1.1 + HTTP/2 reverse proxy and an L4 TCP load balancer in front
//! of stateless app servers.

mod balance;
mod budget;
mod buffers;
mod deadline;
pub mod http;
mod relay;
mod socket;
mod status;
pub mod tcp;
mod upstream;

pub use http::HttpService;
pub use status::backend_action;
pub use tcp::TcpService;
pub use upstream::Upstream;

use std::path::PathBuf;

/// Why a listener could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum LbError {
    #[error("listener \"{listener}\": TLS file {}: {why}", path.display())]
    Tls {
        listener: String,
        path: PathBuf,
        why: String,
    },
}

#[cfg(any(test, feature = "fuzz"))]
#[doc(hidden)]
pub mod fuzz;
