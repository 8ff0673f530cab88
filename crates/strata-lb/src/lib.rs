//! The business layer: an HTTP/1.1 + HTTP/2 reverse proxy and an L4 TCP load balancer in front
//! of stateless app servers.

pub mod http;
pub mod tcp;

pub use http::HttpService;
pub use tcp::TcpService;

/// Why a listener could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum LbError {
    /// The listener's TLS could not be set up: a certificate or key file, or no certificate at all.
    #[error(transparent)]
    Tls(#[from] strata_net::tls::TlsError),
}

#[cfg(any(test, feature = "fuzz"))]
#[doc(hidden)]
pub mod fuzz;
