//! TLS termination for every layer that offers it: certificates from PEM files, the one a
//! client gets chosen by the name it asks for (SNI) among the names each certificate carries.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// A listener's TLS could not be set up: a certificate or key file, or no certificate at all.
#[derive(Debug, thiserror::Error)]
#[error("listener \"{listener}\": TLS file {}: {why}", path.display())]
pub struct TlsError {
    /// The listener that names the file.
    pub listener: String,
    /// The file; empty when the fault is no single file's (no certificate at all).
    pub path: PathBuf,
    /// What is wrong: unreadable, not PEM, no certificate in it, a key that does not match.
    pub why: String,
}

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

/// Loads every certificate of a listener (pairs of certificate chain and key files) into one
/// server config, offering `alpn` (none when empty); with `client_ca` (a PEM file of one or
/// more CA certificates), a client must present a certificate that chains to one of them.
pub fn server_config<'a>(
    listener: &str,
    certs: impl IntoIterator<Item = (&'a Path, &'a Path)>,
    alpn: &[&[u8]],
    client_ca: Option<&Path>,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut exact = HashMap::new();
    let mut wildcard = HashMap::new();
    let mut default = None;
    for (cert, key) in certs {
        let key = load(listener, &provider, cert, key)?;
        for name in names(&key.cert[0]) {
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
    let fault = |why: String| TlsError {
        listener: listener.into(),
        path: PathBuf::new(),
        why,
    };
    let Some(default) = default else {
        return Err(fault("no certificate configured".into()));
    };
    let resolver = SniResolver {
        exact,
        wildcard,
        default,
    };
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| fault(e.to_string()))?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(path) => builder.with_client_cert_verifier(client_verifier(listener, path, provider)?),
    };
    let mut config = builder.with_cert_resolver(Arc::new(resolver));
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// Checks clients' certificates against the CA certificates in `path`.
fn client_verifier(
    listener: &str,
    path: &Path,
    provider: Arc<rustls::crypto::CryptoProvider>,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, TlsError> {
    let err = |why: String| TlsError {
        listener: listener.into(),
        path: path.to_path_buf(),
        why,
    };
    rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots(listener, path)?),
        provider,
    )
    .build()
    .map_err(|e| err(e.to_string()))
}

/// The CA certificates in the PEM file `path`.
fn roots(listener: &str, path: &Path) -> Result<rustls::RootCertStore, TlsError> {
    let err = |why: String| TlsError {
        listener: listener.into(),
        path: path.to_path_buf(),
        why,
    };
    let mut roots = rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(path).map_err(|e| err(e.to_string()))?;
    if path == Path::new(SYSTEM_CA) {
        // the system's bundle may hold a root webpki can't take; the rest serve
        roots.add_parsable_certificates(certs.filter_map(Result::ok));
    } else {
        for cert in certs {
            roots
                .add(cert.map_err(|e| err(e.to_string()))?)
                .map_err(|e| err(e.to_string()))?;
        }
    }
    if roots.is_empty() {
        return Err(err("no CERTIFICATE block in the file".into()));
    }
    Ok(roots)
}

fn load(
    listener: &str,
    provider: &rustls::crypto::CryptoProvider,
    cert: &Path,
    key: &Path,
) -> Result<Arc<CertifiedKey>, TlsError> {
    let err = |path: &Path, why: String| TlsError {
        listener: listener.into(),
        path: path.to_path_buf(),
        why,
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| err(cert, e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| err(cert, e.to_string()))?;
    if chain.is_empty() {
        return Err(err(cert, "no CERTIFICATE block in the file".into()));
    }
    let private = PrivateKeyDer::from_pem_file(key).map_err(|e| err(key, e.to_string()))?;
    let signing = provider
        .key_provider
        .load_private_key(private)
        .map_err(|e| err(key, e.to_string()))?;
    let certified = CertifiedKey::new(chain, signing);
    if let Err(e) = certified.keys_match() {
        return Err(err(
            key,
            format!("the key does not belong to {}: {e}", cert.display()),
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

/// How much of a server's certificate a TLS client checks (libpq's `sslmode` from
/// `require` up).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verify {
    /// Nothing: the connection is encrypted, against an eavesdropper only (`require`).
    Nothing,
    /// That the certificate chains to a trusted CA (`verify-ca`).
    Chain,
    /// That, and that it names the server dialled (`verify-full`).
    ChainAndName,
}

/// A TLS client's config for connections to servers: `verify` says what is checked, against
/// the CA certificates in `ca` (or, where none is given, the system's bundle, `SYSTEM_CA`);
/// `cert` (certificate chain and key files) is presented when the server asks for one.
/// `alpn` is offered (none when empty).
pub fn client_config(
    listener: &str,
    verify: Verify,
    ca: Option<&Path>,
    cert: Option<(&Path, &Path)>,
    alpn: &[&[u8]],
) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let fault = |why: String| TlsError {
        listener: listener.into(),
        path: PathBuf::new(),
        why,
    };
    let webpki = match verify {
        Verify::Nothing => None,
        Verify::Chain | Verify::ChainAndName => {
            let path = ca.unwrap_or(Path::new(SYSTEM_CA));
            let roots = roots(listener, path)?;
            let v = rustls::client::WebPkiServerVerifier::builder_with_provider(
                Arc::new(roots),
                provider.clone(),
            )
            .build()
            .map_err(|e| fault(e.to_string()))?;
            Some(v)
        }
    };
    let verifier = ServerVerifier {
        webpki,
        names: verify == Verify::ChainAndName,
        provider: provider.clone(),
    };
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| fault(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier));
    let mut config = match cert {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let key = load(listener, &provider, cert, key)?;
            builder.with_client_cert_resolver(Arc::new(OwnCert(key)))
        }
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// Where Debian keeps the CA certificates the system trusts (package `ca-certificates`).
pub const SYSTEM_CA: &str = "/etc/ssl/certs/ca-certificates.crt";

/// Checks a server's certificate as [`Verify`] says; the handshake's signatures are checked
/// whatever it says (they prove the server holds the key of the certificate it sent).
#[derive(Debug)]
struct ServerVerifier {
    /// The chain (and name) check; `None`: the certificate is not checked.
    webpki: Option<Arc<rustls::client::WebPkiServerVerifier>>,
    /// Whether the certificate must name the server.
    names: bool,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl rustls::client::danger::ServerCertVerifier for ServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &rustls_pki_types::ServerName<'_>,
        ocsp: &[u8],
        now: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        use rustls::CertificateError::{NotValidForName, NotValidForNameContext};
        let Some(webpki) = &self.webpki else {
            return Ok(rustls::client::danger::ServerCertVerified::assertion());
        };
        // the chain is checked before the name: a name error means the chain is good
        match webpki.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
            Err(rustls::Error::InvalidCertificate(
                NotValidForName | NotValidForNameContext { .. },
            )) if !self.names => Ok(rustls::client::danger::ServerCertVerified::assertion()),
            r => r,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The one certificate a TLS client presents when asked.
#[derive(Debug)]
struct OwnCert(Arc<CertifiedKey>);

impl rustls::client::ResolvesClientCert for OwnCert {
    fn resolve(
        &self,
        _hints: &[&[u8]],
        _schemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}
