//! What the admin API answers: the paths, the [`AdminApi`] the running layers implement, and
//! the JSON and text replies.

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use strata_upstream::BackendAction;

use crate::access::Refusal;

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

/// Answers `req`; `metrics` renders the /metrics body. Whether a call that changes state may
/// go ahead was decided before.
pub(crate) fn route<B>(
    api: &dyn AdminApi,
    req: &Request<B>,
    metrics: impl FnOnce() -> String,
) -> Response<Full<Bytes>> {
    let path = req.uri().path();
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (req.method(), parts.as_slice()) {
        (&Method::GET, ["metrics"]) => reply(StatusCode::OK, "text/plain; version=0.0.4; charset=utf-8", metrics()),
        (&Method::GET, ["status"]) => json(StatusCode::OK, &api.status()),
        (&Method::GET, ["healthz"]) => reply(StatusCode::OK, "text/plain", "ok\n".into()),
        (&Method::POST, ["backends", layer, listener, backend, action]) => {
            let action = match *action {
                "drain" => BackendAction::Drain,
                "restore" => BackendAction::Restore,
                other => return error(StatusCode::BAD_REQUEST, format!("unknown action \"{other}\": use drain or restore")),
            };
            match api.backend(layer, listener, backend, action) {
                Ok(v) => json(StatusCode::OK, &v),
                Err(e) => error(StatusCode::NOT_FOUND, e),
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

/// The answer to a call that was not allowed: 401 with a `WWW-Authenticate` challenge, or 403.
pub(crate) fn refused(why: &Refusal) -> Response<Full<Bytes>> {
    let mut resp = error(why.status(), why.to_string());
    if let Some(challenge) = why.challenge() {
        resp.headers_mut().insert(
            http::header::WWW_AUTHENTICATE,
            HeaderValue::from_static(challenge),
        );
    }
    resp
}

fn error(status: StatusCode, message: String) -> Response<Full<Bytes>> {
    json(status, &serde_json::json!({ "error": message }))
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
        HeaderValue::from_static(content_type),
    );
    resp
}
