//! Protocol switches (WebSocket): forward the upgrade request on a fresh connection, and on
//! 101 relay raw bytes between client and backend until either side closes or it goes idle.

use http::{header, request, HeaderValue, Request, Response};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

use super::body::{ReqBody, RespBody};
use super::headers::{add_via, strip_hop_by_hop};
use super::proxy::local;
use super::Site;
use crate::balance::Key;
use crate::relay::relay;

pub(super) async fn proxy(
    site: &Site,
    mut parts: request::Parts,
    body: Incoming,
    protocol: HeaderValue,
    key: &Key,
) -> (Response<RespBody>, Option<String>) {
    let Some(client_upgrade) = parts.extensions.remove::<OnUpgrade>() else {
        return (
            local(
                http::StatusCode::BAD_REQUEST,
                "strata: this connection cannot be upgraded\n".into(),
            ),
            None,
        );
    };
    parts
        .headers
        .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    parts.headers.insert(header::UPGRADE, protocol);
    let up = &site.upstream;
    let mut tried = Vec::new();
    let mut last_error = String::from("no healthy backend");
    for _ in 0..=up.config.retries {
        let Some(index) = up.pick(key, &tried) else {
            break;
        };
        tried.push(index);
        let backend = up.group.backends[index].clone();
        backend.stats.requests.inc();
        let mut sender =
            match super::pool::connect(backend.addr, up.config.connect_timeout, true).await {
                Ok(s) => s,
                Err(e) => {
                    last_error = e.to_string();
                    backend.stats.failures.inc();
                    up.group.report_failure(&backend, &last_error);
                    continue;
                }
            };
        let request = Request::from_parts(parts, ReqBody::new(body, site.config.max_body_size));
        let mut resp =
            match tokio::time::timeout(site.config.response_timeout, sender.send_request(request))
                .await
            {
                Ok(Ok(r)) => r,
                Ok(Err(e)) => {
                    backend.stats.failures.inc();
                    up.group.report_failure(&backend, &e.to_string());
                    let text = format!("strata: the backend failed: {e}\n");
                    return (
                        local(http::StatusCode::BAD_GATEWAY, text),
                        Some(backend.name.clone()),
                    );
                }
                Err(_) => {
                    backend.stats.failures.inc();
                    let text = "strata: the backend did not answer in time\n".to_string();
                    return (
                        local(http::StatusCode::GATEWAY_TIMEOUT, text),
                        Some(backend.name.clone()),
                    );
                }
            };
        backend.report_success();
        let status = resp.status();
        backend.stats.responses[(status.as_u16() / 100).clamp(1, 5) as usize - 1].inc();
        if status != http::StatusCode::SWITCHING_PROTOCOLS {
            let (mut rparts, rbody) = resp.into_parts();
            strip_hop_by_hop(&mut rparts.headers);
            add_via(&mut rparts.headers, http::Version::HTTP_11);
            // a connection opened for an upgrade is not pooled: it closes after this response
            drop(sender);
            return (
                Response::from_parts(rparts, RespBody::unpooled(rbody)),
                Some(backend.name.clone()),
            );
        }
        let backend_upgrade = hyper::upgrade::on(&mut resp);
        let idle = site.config.idle_timeout;
        let in_flight = backend.start();
        let name = backend.name.clone();
        tokio::spawn(async move {
            let _in_flight = in_flight;
            let (client, server) = match tokio::try_join!(client_upgrade, backend_upgrade) {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::debug!(backend = %name, error = %e, "upgrade did not complete");
                    return;
                }
            };
            if let Err(e) = relay(TokioIo::new(client), TokioIo::new(server), idle).await {
                tracing::debug!(backend = %name, error = %e, "upgraded connection ended");
            }
        });
        let (mut rparts, _) = resp.into_parts();
        let upgrade_header = rparts.headers.get(header::UPGRADE).cloned();
        strip_hop_by_hop(&mut rparts.headers);
        rparts
            .headers
            .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        if let Some(u) = upgrade_header {
            rparts.headers.insert(header::UPGRADE, u);
        }
        return (
            Response::from_parts(rparts, RespBody::Local(None)),
            Some(backend.name.clone()),
        );
    }
    let text = format!("strata: no backend took the upgrade: {last_error}\n");
    (local(http::StatusCode::BAD_GATEWAY, text), None)
}
