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
    /// The listener's TLS could not be set up: a certificate or key file, or no certificate at all.
    #[error("listener \"{listener}\": TLS file {}: {why}", path.display())]
    Tls {
        /// The listener that names the file.
        listener: String,
        /// The file; empty when the fault is no single file's (no certificate at all).
        path: PathBuf,
        /// What is wrong: unreadable, not PEM, no certificate in it, a key that does not match.
        why: String,
    },
}

#[cfg(any(test, feature = "fuzz"))]
#[doc(hidden)]
pub mod fuzz;
