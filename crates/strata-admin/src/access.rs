//! Who may change state through the admin API: whoever presents the bearer token when there is
//! one; without one, only same-origin requests to a loopback listener that name it by IP
//! address or `localhost`, so neither a web page (CSRF) nor a domain re-pointed at 127.0.0.1
//! (DNS rebinding) can act through the operator's browser.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use http::header::{AUTHORIZATION, HOST, ORIGIN};
use http::{HeaderMap, StatusCode};

/// Why a state-changing request was refused; the text is what the client is told.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Refusal {
    #[error("this call needs an `Authorization: Bearer <token>` header with the token of [admin] token_file")]
    NoToken,
    #[error("the bearer token is not the one in [admin] token_file")]
    WrongToken,
    #[error("this admin listener is not on a loopback address: calls that change state need a token_file in [admin]")]
    NotLoopback,
    #[error("cross-site request refused: origin {0:?} is not this server")]
    CrossSite(String),
    #[error(
        "Host {0:?} refused: without a token_file, name this server by IP address or localhost"
    )]
    ForeignHost(String),
    #[error("more than one {0} header")]
    Repeated(String),
}

impl Refusal {
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            Refusal::NoToken | Refusal::WrongToken => StatusCode::UNAUTHORIZED,
            _ => StatusCode::FORBIDDEN,
        }
    }

    /// The `WWW-Authenticate` challenge of a 401 (RFC 6750).
    pub(crate) fn challenge(&self) -> Option<&'static str> {
        match self {
            Refusal::NoToken => Some("Bearer realm=\"strata admin\""),
            Refusal::WrongToken => Some("Bearer realm=\"strata admin\", error=\"invalid_token\""),
            _ => None,
        }
    }

    /// The `reason` label of `strata_admin_refused_total`.
    pub(crate) fn reason(&self) -> &'static str {
        match self {
            Refusal::NoToken => "no_token",
            Refusal::WrongToken => "wrong_token",
            Refusal::NotLoopback => "not_loopback",
            Refusal::CrossSite(_) => "cross_site",
            Refusal::ForeignHost(_) => "host",
            Refusal::Repeated(_) => "repeated_header",
        }
    }
}

/// Decides whether a request that changes state may go ahead on a listener bound to `local`,
/// `token` being the secret of `[admin] token_file`.
///
/// With a token, it must be presented and the request must not come from another site (a
/// browser cannot send the token cross-site without CORS, which this server never grants, but
/// a page should not even get to try). The Host is not checked: a token can't be rebound, and
/// operators may name the server by DNS. Without a token, the listener must be on loopback,
/// the request same-origin, and the Host an IP address or `localhost`.
/// Whether a read (GET) may be answered. With a token, reads are open to whoever reaches the
/// listener. Without one the listener is loopback-only, and a Host that is not an IP address or
/// `localhost` is refused for reads too: a page on a rebound DNS name could otherwise read
/// `/status` (backend addresses, states and reasons) through the operator's browser.
pub(crate) fn allow_read(headers: &HeaderMap, token: Option<&str>) -> Result<(), Refusal> {
    let host = single(headers, HOST)?;
    match (token, host) {
        (None, Some(host)) if !names_this_machine(host) => Err(Refusal::ForeignHost(host.into())),
        _ => Ok(()),
    }
}

pub(crate) fn allow(
    headers: &HeaderMap,
    token: Option<&str>,
    local: SocketAddr,
) -> Result<(), Refusal> {
    let host = single(headers, HOST)?;
    if let Some(token) = token {
        let presented = single(headers, AUTHORIZATION)?
            .and_then(bearer)
            .ok_or(Refusal::NoToken)?;
        if !same_secret(token.as_bytes(), presented.as_bytes()) {
            return Err(Refusal::WrongToken);
        }
        return same_origin(headers, host);
    }
    if !local.ip().to_canonical().is_loopback() {
        return Err(Refusal::NotLoopback);
    }
    if let Some(host) = host {
        if !names_this_machine(host) {
            return Err(Refusal::ForeignHost(host.into()));
        }
    }
    same_origin(headers, host)
}

/// The value of a header that may appear at most once; a value that is not visible ASCII reads
/// as "", which no check accepts.
fn single(headers: &HeaderMap, name: http::HeaderName) -> Result<Option<&str>, Refusal> {
    let mut values = headers.get_all(&name).iter();
    let first = values.next();
    if values.next().is_some() {
        return Err(Refusal::Repeated(name.as_str().into()));
    }
    Ok(first.map(|v| v.to_str().unwrap_or("")))
}

/// The token of an `Authorization: Bearer <token>` value.
fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// Compares in a time that depends only on the length of `presented`: how long the answer
/// takes says nothing about how much of the token matched, nor how long it is.
fn same_secret(expected: &[u8], presented: &[u8]) -> bool {
    if expected.is_empty() {
        return false;
    }
    let mut diff = expected.len() ^ presented.len();
    for (i, p) in presented.iter().enumerate() {
        diff |= usize::from(p ^ expected[i % expected.len()]);
    }
    std::hint::black_box(diff) == 0
}

/// Refuses a request a browser marks as coming from another origin: `Sec-Fetch-Site` other
/// than `same-origin` or `none` (typed by the user), or an `Origin` that is not
/// `http://` + the Host the request was sent to.
fn same_origin(headers: &HeaderMap, host: Option<&str>) -> Result<(), Refusal> {
    if let Some(site) = headers.get("sec-fetch-site") {
        let site = site.to_str().unwrap_or("");
        if !site.eq_ignore_ascii_case("same-origin") && !site.eq_ignore_ascii_case("none") {
            return Err(Refusal::CrossSite(format!("Sec-Fetch-Site: {site}")));
        }
    }
    let Some(origin) = single(headers, ORIGIN)? else {
        return Ok(());
    };
    let ours = host.and_then(|h| authority(h, 80));
    let theirs = origin
        .strip_prefix("http://")
        .and_then(|a| authority(a, 80));
    match (ours, theirs) {
        (Some(ours), Some(theirs)) if ours == theirs => Ok(()),
        _ => Err(Refusal::CrossSite(origin.into())),
    }
}

/// An IP address (`[v6]` in brackets) or `localhost`, with an optional port: names that no DNS
/// answer can point somewhere else.
fn names_this_machine(host: &str) -> bool {
    let Some((name, _)) = split_port(host) else {
        return false;
    };
    match name.strip_prefix('[').and_then(|n| n.strip_suffix(']')) {
        Some(v6) => v6.parse::<Ipv6Addr>().is_ok(),
        None => {
            name.parse::<IpAddr>().is_ok_and(|ip| ip.is_ipv4())
                || name.eq_ignore_ascii_case("localhost")
        }
    }
}

/// `host[:port]` as (lower-case host, port), the port defaulting to `default_port`.
fn authority(text: &str, default_port: u16) -> Option<(String, u16)> {
    let (name, port) = split_port(text)?;
    (!name.is_empty()).then(|| (name.to_ascii_lowercase(), port.unwrap_or(default_port)))
}

/// Splits `host[:port]`, where host may be `[v6]`; `None` when the port is not a number.
fn split_port(text: &str) -> Option<(&str, Option<u16>)> {
    let after_name = match text.rfind(']') {
        Some(end) => end + 1,
        None => 0,
    };
    match text[after_name..].rfind(':') {
        Some(colon) => {
            let colon = after_name + colon;
            let port = text[colon + 1..].parse().ok()?;
            Some((&text[..colon], Some(port)))
        }
        None => Some((text, None)),
    }
}

#[cfg(test)]
mod tests;
