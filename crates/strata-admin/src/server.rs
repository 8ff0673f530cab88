//! The admin listener: a small HTTP/1.1 server on its own address.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// What the admin API can ask of the running layers.
pub trait AdminApi: Send + Sync + 'static {
    /// Every metric, rendered in Prometheus text format.
    fn metrics(&self) -> String;
    /// Every layer, listener and backend with its state, as JSON.
    fn status(&self) -> serde_json::Value;
    /// Drains or restores one backend; the error says what was not found.
    fn backend(
        &self,
        layer: &str,
        listener: &str,
        backend: &str,
        action: BackendAction,
    ) -> Result<serde_json::Value, String>;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendAction {
    /// Stop sending new requests; in-flight ones finish.
    Drain,
    /// Take requests again, ramping up over the slow-start time.
    Restore,
}

/// Serves the admin API on `listener` until `shutdown` is cancelled.
pub async fn serve(listener: TcpListener, api: Arc<dyn AdminApi>, shutdown: CancellationToken) {
    loop {
        let (stream, _) = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    tracing::warn!(error = %e, "admin accept failed");
                    continue;
                }
            },
        };
        let api = api.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let api = api.clone();
                async move { Ok::<_, Infallible>(route(&*api, req)) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                _ = conn => {}
                _ = shutdown.cancelled() => {}
            }
        });
    }
}

fn route(api: &dyn AdminApi, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path();
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (req.method(), parts.as_slice()) {
        (&Method::GET, ["metrics"]) => reply(StatusCode::OK, "text/plain; version=0.0.4; charset=utf-8", api.metrics()),
        (&Method::GET, ["status"]) => json(StatusCode::OK, &api.status()),
        (&Method::GET, ["healthz"]) => reply(StatusCode::OK, "text/plain", "ok\n".into()),
        (&Method::POST, ["backends", layer, listener, backend, action]) => {
            let action = match *action {
                "drain" => BackendAction::Drain,
                "restore" => BackendAction::Restore,
                other => {
                    let body = serde_json::json!({ "error": format!("unknown action \"{other}\": use drain or restore") });
                    return json(StatusCode::BAD_REQUEST, &body);
                }
            };
            match api.backend(layer, listener, backend, action) {
                Ok(v) => json(StatusCode::OK, &v),
                Err(e) => json(StatusCode::NOT_FOUND, &serde_json::json!({ "error": e })),
            }
        }
        (_, ["metrics"] | ["status"] | ["healthz"]) => reply(StatusCode::METHOD_NOT_ALLOWED, "text/plain", "use GET\n".into()),
        (_, ["backends", _, _, _, _]) => reply(StatusCode::METHOD_NOT_ALLOWED, "text/plain", "use POST\n".into()),
        _ => reply(
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found: try /metrics, /status, /healthz, POST /backends/{layer}/{listener}/{backend}/{drain|restore}\n".into(),
        ),
    }
}

fn json(status: StatusCode, v: &serde_json::Value) -> Response<Full<Bytes>> {
    let mut body =
        serde_json::to_string_pretty(v).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"));
    body.push('\n');
    reply(status, "application/json", body)
}

fn reply(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    resp
}
