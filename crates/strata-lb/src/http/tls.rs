//! TLS termination for HTTP: the floor's certificates (chosen by SNI), with ALPN offering h2
//! and http/1.1.

use strata_config::TlsCert;
use tokio_rustls::TlsAcceptor;

use crate::LbError;

/// Loads every certificate of a listener into one acceptor.
pub(crate) fn acceptor(listener: &str, certs: &[TlsCert]) -> Result<TlsAcceptor, LbError> {
    let config = strata_net::tls::server_config(
        listener,
        certs.iter().map(|c| (c.cert.as_path(), c.key.as_path())),
        &[b"h2", b"http/1.1"],
        None,
    )?;
    Ok(TlsAcceptor::from(config))
}
