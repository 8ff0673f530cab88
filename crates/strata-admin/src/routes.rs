//! What the admin API answers: the paths, the [`AdminApi`] the running layers implement, and
//! the JSON and text replies.

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use strata_metrics::Traffic;
use strata_upstream::{ActionError, BackendAction};

use crate::access::Refusal;
use crate::history::History;

/// The dashboard, served from the binary: no CDN, nothing fetched from anywhere but here.
const DASHBOARD_HTML: &str = include_str!("dashboard/index.html");
const DASHBOARD_JS: &str = include_str!("dashboard/dashboard.js");
const DASHBOARD_CSS: &str = include_str!("dashboard/dashboard.css");
/// The page may load its script, style and data from this listener and nothing else.
const DASHBOARD_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
                             connect-src 'self'; img-src 'self' data:; base-uri 'none'; \
                             form-action 'none'; frame-ancestors 'none'";

/// What the admin API can ask of the running layers.
pub trait AdminApi: Send + Sync + 'static {
    /// Every metric, rendered in Prometheus text format.
    fn metrics(&self) -> String;
    /// Every layer, listener and backend with its state, as JSON.
    fn status(&self) -> serde_json::Value;
    /// Each listener's totals so far as (layer, listener, totals), read every few seconds for
    /// the dashboard's graphs.
    fn traffic(&self) -> Vec<(&'static str, String, Traffic)>;
    /// Each listener's healthy backends and the virtual addresses this node holds, as JSON.
    fn endpoints(&self) -> serde_json::Value;
    /// Drains or restores one backend; the error says what was not found.
    fn backend(
        &self,
        layer: &str,
        listener: &str,
        backend: &str,
        action: BackendAction,
    ) -> Result<serde_json::Value, ActionError>;
}

/// Answers `req`; `metrics` renders the /metrics body. Whether a call that changes state may
/// go ahead was decided before.
pub(crate) fn route<B>(
    api: &dyn AdminApi,
    history: &History,
    req: &Request<B>,
    metrics: impl FnOnce() -> String,
) -> Response<Full<Bytes>> {
    let path = req.uri().path();
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (req.method(), parts.as_slice()) {
        (&Method::GET, ["metrics"]) => reply(StatusCode::OK, "text/plain; version=0.0.4; charset=utf-8", metrics()),
        (&Method::GET, ["status"]) => json(StatusCode::OK, &api.status()),
        (&Method::GET, ["healthz"]) => reply(StatusCode::OK, "text/plain", "ok\n".into()),
        (&Method::GET, ["endpoints"]) => json(StatusCode::OK, &api.endpoints()),
        (&Method::GET, ["history"]) => {
            // fetched every 2 s by each open dashboard: compact
            let body = history.to_json().to_string() + "\n";
            reply(StatusCode::OK, "application/json", body)
        }
        (&Method::GET, [""] | ["dashboard"]) => asset("text/html; charset=utf-8", DASHBOARD_HTML),
        (&Method::GET, ["dashboard.js"]) => asset("text/javascript; charset=utf-8", DASHBOARD_JS),
        (&Method::GET, ["dashboard.css"]) => asset("text/css; charset=utf-8", DASHBOARD_CSS),
        (&Method::POST, ["backends", layer, listener, backend, action]) => {
            let action = match *action {
                "drain" => BackendAction::Drain,
                "restore" => BackendAction::Restore,
                other => return error(StatusCode::BAD_REQUEST, format!("unknown action \"{other}\": use drain or restore")),
            };
            // a browser escapes what a segment may not hold (`[`, `]`, `%`, spaces)
            let (Some(layer), Some(listener), Some(backend)) =
                (unescape(layer), unescape(listener), unescape(backend))
            else {
                return error(StatusCode::BAD_REQUEST, "a path segment is not percent-encoded UTF-8".into());
            };
            match api.backend(&layer, &listener, &backend, action) {
                Ok(v) => json(StatusCode::OK, &v),
                Err(e @ ActionError::NotFound(_)) => error(StatusCode::NOT_FOUND, e.to_string()),
                Err(e @ ActionError::Refused(_)) => error(StatusCode::CONFLICT, e.to_string()),
            }
        }
        (_, ["metrics"] | ["status"] | ["healthz"] | ["endpoints"] | ["history"] | [""] | ["dashboard"] | ["dashboard.js"] | ["dashboard.css"]) => reply(StatusCode::METHOD_NOT_ALLOWED, "text/plain", "use GET\n".into()),
        (_, ["backends", _, _, _, _]) => reply(StatusCode::METHOD_NOT_ALLOWED, "text/plain", "use POST\n".into()),
        _ => reply(
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found: try / (the dashboard), /metrics, /status, /healthz, /endpoints, /history, POST /backends/{layer}/{listener}/{backend}/{drain|restore}\n".into(),
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

/// `segment` with its `%XX` escapes decoded; `None` when an escape is cut short or the bytes
/// are not UTF-8.
fn unescape(segment: &str) -> Option<String> {
    if !segment.contains('%') {
        return Some(segment.to_string());
    }
    let mut out = Vec::with_capacity(segment.len());
    let mut bytes = segment.bytes();
    while let Some(b) = bytes.next() {
        if b == b'%' {
            let digit = |c: u8| char::from(c).to_digit(16);
            let (hi, lo) = (digit(bytes.next()?)?, digit(bytes.next()?)?);
            out.push((hi * 16 + lo) as u8);
        } else {
            out.push(b);
        }
    }
    String::from_utf8(out).ok()
}

/// A part of the dashboard: the page may run only what this listener serves.
fn asset(content_type: &'static str, body: &'static str) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    let h = resp.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static(content_type),
    );
    h.insert(
        http::header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(DASHBOARD_CSP),
    );
    h.insert(
        http::header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache"),
    );
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

#[cfg(test)]
mod tests {
    use super::unescape;

    #[test]
    fn path_segments_are_unescaped() {
        assert_eq!(
            unescape("127.0.0.1%3A8080").as_deref(),
            Some("127.0.0.1:8080")
        );
        assert_eq!(unescape("%5B%3A%3A1%5D%3A80").as_deref(), Some("[::1]:80"));
        assert_eq!(unescape("plain").as_deref(), Some("plain"));
        assert_eq!(unescape("caf%C3%A9").as_deref(), Some("café"));
        assert_eq!(unescape("cut%3"), None);
        assert_eq!(unescape("%zz"), None);
        assert_eq!(unescape("%ff"), None, "not UTF-8");
        assert_eq!(unescape("%+1"), None, "a sign is not a hex digit");
    }
}
