//! `[admin]`: the admin listener, its connection limits, and the token that guards the calls
//! that change state.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::Report;
use crate::walk::{as_addr, Section, Value};

/// The admin listener: /metrics, /status, /healthz and the backend API.
#[derive(Debug, Clone, PartialEq)]
pub struct Admin {
    /// Where the admin API is served; an address that is not loopback needs a `token`.
    pub listen: SocketAddr,
    /// Read from `token_file` when the config is loaded; state-changing calls must present it.
    pub token: Option<AdminToken>,
    /// Admin connections served at once; more wait in the kernel's backlog.
    pub max_connections: u32,
    /// How long a client may take to send a request head, counted from when the server starts
    /// waiting for it: it also closes a keep-alive connection idle between requests.
    pub header_timeout: Duration,
    /// A connection on which no bytes moved either way for this long is closed.
    pub idle_timeout: Duration,
}

/// The admin API's bearer token and the file it came from. `Debug` never shows the token.
#[derive(Clone, PartialEq, Eq)]
pub struct AdminToken {
    /// The token file, resolved against the config file's directory.
    pub file: PathBuf,
    secret: String,
}

pub(crate) const KEYS: &[&str] = &[
    "listen",
    "token_file",
    "max_connections",
    "header_timeout",
    "idle_timeout",
];
/// Shorter tokens can be guessed by whoever can reach the listener.
const MIN_TOKEN_LEN: usize = 16;
const TOKEN_HINT: &str = "write one line of at least 16 characters, e.g. \
                          `head -c 32 /dev/urandom | base64 > token`";

impl AdminToken {
    /// The token itself, for comparing what a request presents.
    pub fn secret(&self) -> &str {
        &self.secret
    }
}

impl fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminToken")
            .field("file", &self.file)
            .finish_non_exhaustive()
    }
}

pub(crate) fn admin(report: &mut Report<'_>, s: &Section<'_, '_>, base: &Path) -> Option<Admin> {
    let listen = match s.get("listen") {
        None => Some(SocketAddr::from(([127, 0, 0, 1], 9900))),
        Some(v) => s
            .string(report, "listen")
            .and_then(|t| as_addr(report, &s.key("listen"), v, t)),
    };
    let token_file = s.get("token_file");
    let token = token_file.and_then(|v| {
        let name = s.string(report, "token_file")?;
        token(report, &s.key("token_file"), v, &base.join(name))
    });
    if let (Some(addr), None, Some(v)) = (listen, token_file, s.get("listen")) {
        if !addr.ip().to_canonical().is_loopback() {
            report.add_hint(
                v.span(),
                &s.key("listen"),
                format!(
                    "{addr} is not a loopback address and there is no token_file: anyone who \
                     can reach it could drain every backend"
                ),
                Some("add token_file, or listen on 127.0.0.1"),
            );
        }
    }
    Some(Admin {
        listen: listen?,
        token,
        max_connections: s.int(report, "max_connections", 1..=10_000, 64) as u32,
        header_timeout: positive(report, s, "header_timeout", Duration::from_secs(10)),
        idle_timeout: positive(report, s, "idle_timeout", Duration::from_secs(60)),
    })
}

/// Reads the token at `path`: one line, whitespace around it ignored.
fn token(report: &mut Report<'_>, key: &str, v: &Value<'_>, path: &Path) -> Option<AdminToken> {
    let why = match std::fs::read_to_string(path) {
        Err(e) => format!("cannot read {}: {e}", path.display()),
        Ok(text) => {
            let secret = text.trim();
            if secret.is_empty() {
                format!("{} is empty", path.display())
            } else if !secret.bytes().all(|b| b.is_ascii_graphic()) {
                format!(
                    "the token in {} must be one line of visible ASCII characters, no spaces",
                    path.display()
                )
            } else if secret.len() < MIN_TOKEN_LEN {
                format!(
                    "the token in {} is shorter than {MIN_TOKEN_LEN} characters",
                    path.display()
                )
            } else {
                return Some(AdminToken {
                    file: path.to_path_buf(),
                    secret: secret.to_string(),
                });
            }
        }
    };
    report.add_hint(v.span(), key, why, Some(TOKEN_HINT));
    None
}

/// A duration above zero: a zero timeout would close every connection at once.
fn positive(
    report: &mut Report<'_>,
    s: &Section<'_, '_>,
    name: &str,
    default: Duration,
) -> Duration {
    let d = s.duration(report, name, default);
    if let (true, Some(v)) = (d.is_zero(), s.get(name)) {
        report.add(v.span(), &s.key(name), "must be more than zero");
        return default;
    }
    d
}

#[cfg(test)]
mod tests;
