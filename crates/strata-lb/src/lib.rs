//! The business layer: an HTTP/1.1 + HTTP/2 reverse proxy and an L4 TCP load balancer in front
//! of stateless app servers.

pub mod http;
pub mod tcp;

pub use http::HttpService;
pub use tcp::TcpService;

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
