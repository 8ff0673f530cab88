//! TLS termination: certificates from PEM files, chosen by SNI from the names each certificate
//! carries, with ALPN offering h2 and http/1.1.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use strata_config::TlsCert;
use tokio_rustls::TlsAcceptor;

use crate::LbError;

#[derive(Debug)]
struct SniResolver {
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// "*.example.com" stored as "example.com".
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    /// For clients that send no SNI or a name no certificate has: the first certificate.
    default: Arc<CertifiedKey>,
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let Some(name) = hello.server_name() else {
            return Some(self.default.clone());
        };
        let name = name.to_ascii_lowercase();
        if let Some(k) = self.exact.get(&name) {
            return Some(k.clone());
        }
        if let Some((_, parent)) = name.split_once('.') {
            if let Some(k) = self.wildcard.get(parent) {
                return Some(k.clone());
            }
        }
        Some(self.default.clone())
    }
}

/// Loads every certificate of a listener into one acceptor.
pub(crate) fn acceptor(listener: &str, certs: &[TlsCert]) -> Result<TlsAcceptor, LbError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut exact = HashMap::new();
    let mut wildcard = HashMap::new();
    let mut default = None;
    for cert in certs {
        let key = load(listener, &provider, cert)?;
        let names = names(&key.cert[0]);
        for name in names {
            let name = name.to_ascii_lowercase();
            match name.strip_prefix("*.") {
                Some(parent) => wildcard
                    .entry(parent.to_string())
                    .or_insert_with(|| key.clone()),
                None => exact.entry(name).or_insert_with(|| key.clone()),
            };
        }
        default.get_or_insert(key);
    }
    let Some(default) = default else {
        return Err(LbError::Tls {
            listener: listener.into(),
            path: "".into(),
            why: "no certificate configured".into(),
        });
    };
    let resolver = SniResolver {
        exact,
        wildcard,
        default,
    };
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| LbError::Tls {
            listener: listener.into(),
            path: "".into(),
            why: e.to_string(),
        })?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(resolver));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

fn load(
    listener: &str,
    provider: &rustls::crypto::CryptoProvider,
    cert: &TlsCert,
) -> Result<Arc<CertifiedKey>, LbError> {
    let err = |path: &Path, why: String| LbError::Tls {
        listener: listener.into(),
        path: path.to_path_buf(),
        why,
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert.cert)
        .map_err(|e| err(&cert.cert, e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| err(&cert.cert, e.to_string()))?;
    if chain.is_empty() {
        return Err(err(&cert.cert, "no CERTIFICATE block in the file".into()));
    }
    let key = PrivateKeyDer::from_pem_file(&cert.key).map_err(|e| err(&cert.key, e.to_string()))?;
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| err(&cert.key, e.to_string()))?;
    let certified = CertifiedKey::new(chain, signing);
    if let Err(e) = certified.keys_match() {
        return Err(err(
            &cert.key,
            format!("the key does not belong to {}: {e}", cert.cert.display()),
        ));
    }
    Ok(Arc::new(certified))
}

/// The DNS names a certificate is valid for (its subject alternative names).
fn names(cert: &CertificateDer<'_>) -> Vec<String> {
    match webpki::EndEntityCert::try_from(cert) {
        Ok(ee) => ee.valid_dns_names().map(str::to_string).collect(),
        Err(_) => Vec::new(),
    }
}
