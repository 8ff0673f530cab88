//! TLS termination: certificates chosen by SNI, ALPN h2 and http/1.1, and the https redirect.

use crate::common;

use common::*;
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::Request;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;

struct Site {
    cert: CertificateDer<'static>,
}

fn make_cert(dir: &std::path::Path, stem: &str, names: &[&str]) -> Site {
    Site {
        cert: self_signed(dir, stem, names),
    }
}

/// Connects with TLS, trusting `roots`, offering `alpn`; returns the stream and what the server
/// presented.
async fn tls_connect(
    addr: std::net::SocketAddr,
    sni: &str,
    roots: &[&Site],
    alpn: &[&[u8]],
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let roots: Vec<_> = roots.iter().map(|r| r.cert.clone()).collect();
    let stream = TcpStream::connect(addr).await.unwrap();
    tls_connector(&roots, alpn)
        .connect(ServerName::try_from(sni.to_string()).unwrap(), stream)
        .await
        .expect("TLS handshake (certificate must match the SNI name)")
}

#[tokio::test(flavor = "multi_thread")]
async fn sni_picks_the_certificate_and_alpn_picks_the_protocol() {
    let backend = Backend::start("a").await;
    let dir = TempDir::new();
    let shop = make_cert(dir.path(), "shop", &["shop.example"]);
    let api = make_cert(dir.path(), "api", &["*.api.example"]);
    let config = format!(
        "[[http]]\nname = \"secure\"\nlisten = \"127.0.0.1:0\"\nbackends = [\"{}\"]\n\
         tls = [{{ cert = \"shop.pem\", key = \"shop.key\" }}, {{ cert = \"api.pem\", key = \"api.key\" }}]\n",
        backend.addr
    );
    let strata = Strata::start_in(dir, &config);
    let addr = strata.addr("http:secure");

    // HTTP/1.1 over TLS to shop.example, trusting only shop's certificate
    let tls = tls_connect(addr, "shop.example", &[&shop], &[b"http/1.1"]).await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let req = Request::get("/headers")
        .header("host", "shop.example")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let body = Client::over(tls).await.request(req).await.unwrap().body;
    assert!(body.contains("x-forwarded-proto: https"), "{body}");

    // HTTP/2 over TLS to a name under the wildcard, trusting only api's certificate
    let tls = tls_connect(addr, "v1.api.example", &[&api], &[b"h2", b"http/1.1"]).await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let mut sender = h2_handshake(tls).await;
    let body = h2_send(&mut sender, h2_get("https://v1.api.example/"))
        .await
        .body;
    assert_eq!(body, "backend a");
}

#[tokio::test]
async fn plain_listener_can_redirect_to_https() {
    let strata = Strata::start(
        "[[http]]\nname = \"plain\"\nlisten = \"127.0.0.1:0\"\nredirect_https = true\n",
    );
    let mut client = Client::connect(strata.addr("http:plain")).await;
    let req = Request::get("/cart?item=3")
        .header("host", "shop.example:8080")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let reply = client.request(req).await.unwrap();
    assert_eq!(reply.status, 301);
    assert_eq!(
        reply.headers["location"],
        "https://shop.example/cart?item=3"
    );
}
