//! Which statements the translation reads, on which side of a proxy, and why each of the
//! others has no place in a Strata config.

use crate::import::{Note, NOT_TRANSLATED};

use super::cfg::Statement;
use super::proxies::{Kind, Mode, Param};

/// What the translation reads on the side that takes clients (a frontend's).
const FRONT: &[&str] = &[
    "mode",
    "disabled",
    "enabled",
    "bind",
    "maxconn",
    "timeout client",
    "default_backend",
    "use_backend",
];
/// What it reads there in HTTP mode only.
const FRONT_HTTP: &[&str] = &[
    "timeout http-request",
    "timeout http-keep-alive",
    "option forwardfor",
    "no option forwardfor",
    "option forwarded",
    "no option forwarded",
    "option httplog",
    "no option httplog",
];
/// What it reads on the side that has servers (a backend's).
const BACK: &[&str] = &[
    "mode",
    "balance",
    "server",
    "default-server",
    "option httpchk",
    "no option httpchk",
    "http-check",
    "option tcp-check",
    "no option tcp-check",
    "option redispatch",
    "no option redispatch",
    "option allbackups",
    "no option allbackups",
    "timeout connect",
    "timeout server",
    "timeout check",
    "timeout tunnel",
    "timeout queue",
    "retries",
    "option forwardfor",
    "no option forwardfor",
];
/// What the translation reads in `global`.
pub(super) const GLOBAL: &[&str] = &["crt-base", "default-path", "nbthread", "hard-stop-after"];

/// Whether the translation reads `s` in a section of `kind` in `mode`.
pub(super) fn read(s: &Statement, kind: Kind, mode: Mode) -> bool {
    let key = s.setting();
    let key = key.as_str();
    let front = FRONT.contains(&key)
        || (mode == Mode::Http && (FRONT_HTTP.contains(&key) || redirect_https(s).is_some()));
    let back = BACK.contains(&key);
    match kind {
        Kind::Frontend => front,
        Kind::Backend => back,
        Kind::Listen | Kind::Defaults => front || back,
    }
}

/// A rule that sends clients of plain HTTP to https, as Strata's `redirect_https` does:
/// `redirect scheme https` or `http-request redirect scheme https`, with no condition or
/// `if !{ ssl_fc }` (`unless { ssl_fc }`). Returns whether it has a condition, and its status
/// code.
pub(super) fn redirect_https(s: &Statement) -> Option<(bool, u16)> {
    let words: Vec<&str> = s.words.iter().map(|w| w.text.as_str()).collect();
    let rest = match words.as_slice() {
        ["redirect", "scheme", "https", rest @ ..]
        | ["http-request", "redirect", "scheme", "https", rest @ ..] => rest,
        _ => return None,
    };
    let (code, rest) = match rest {
        ["code", code, rest @ ..] => (code.parse().ok()?, rest),
        _ => (302, rest),
    };
    match rest {
        [] => Some((false, code)),
        ["if", "!{", "ssl_fc", "}"] | ["unless", "{", "ssl_fc", "}"] => Some((true, code)),
        _ => None,
    }
}

/// Why `s`, which the translation does not read in a section of `kind` in `mode`, has no place
/// in Strata's config.
pub(super) fn why(s: &Statement, kind: Kind, mode: Mode) -> String {
    let key = s.setting();
    let key = key.as_str();
    if FRONT_HTTP.contains(&key) && mode == Mode::Tcp {
        return "HAProxy uses it in HTTP mode only".into();
    }
    if kind == Kind::Frontend && BACK.contains(&key) {
        return "HAProxy reads it in a backend, not in a frontend".into();
    }
    if kind == Kind::Backend && (FRONT.contains(&key) || FRONT_HTTP.contains(&key)) {
        return "HAProxy reads it in a frontend, not in a backend".into();
    }
    let option = key
        .strip_prefix("option ")
        .or_else(|| key.strip_prefix("no option "));
    let why = match (s.keyword(), option) {
        ("acl", _) => "Strata has no ACLs (the rules that use them are noted where they are)",
        (
            "http-request" | "http-response" | "http-after-response" | "tcp-request"
            | "tcp-response" | "redirect" | "use-server" | "force-persist" | "ignore-persist"
            | "http-error" | "rate-limit",
            _,
        ) => "Strata has no request or response rules: every request goes to the listener's backends as it came",
        (
            "log" | "log-format" | "log-format-sd" | "error-log-format" | "log-tag" | "capture"
            | "declare" | "unique-id-format" | "unique-id-header",
            _,
        )
        | (
            _,
            Some(
                "dontlognull" | "log-separate-errors" | "logasap" | "tcplog" | "httpslog"
                | "log-health-checks",
            ),
        ) => "Strata logs to stderr, for the service manager's journal, and an HTTP listener with `access_log` writes one line per request in its own format",
        ("stats", _) => "HAProxy's stats page is Strata's admin listener, `[admin]` (/status, /metrics and the dashboard)",
        ("monitor-uri" | "monitor", _) => "Strata's admin listener answers /healthz",
        ("cookie" | "stick-table" | "stick" | "persist", _)
        | (_, Some("persist" | "prefer-last-server")) => "Strata keeps no client on a server (balance = \"hash\" with hash_key = \"cookie:NAME\" keeps one on a cookie the application sets)",
        ("compression", _) => "Strata does not compress responses",
        ("errorfile" | "errorfiles" | "errorloc" | "errorloc302" | "errorloc303", _) => {
            "Strata answers errors with short bodies of its own"
        }
        (
            _,
            Some(
                "http-server-close" | "httpclose" | "http-keep-alive" | "http-pretend-keepalive"
                | "http-no-delay" | "http-buffer-request",
            ),
        )
        | ("http-reuse", _) => "Strata keeps client connections alive, and pools its connections to backends (`upstream_keepalive`)",
        ("fullconn", _) => "Strata's per-server limit is fixed (`max_conns`), not dynamic",
        ("hash-type" | "hash-balance-factor", _) => "Strata's `hash` balance is a consistent-hash ring of its own (160 points per backend)",
        ("retry-on", _) => "Strata retries a request that never reached a backend, or an idempotent one without a body",
        ("tcp-check" | "external-check", _)
        | (
            _,
            Some(
                "ssl-hello-chk" | "mysql-check" | "pgsql-check" | "redis-check" | "smtpchk"
                | "ldap-check" | "spop-check" | "external-check",
            ),
        ) => "Strata's health checks connect (TCP) or send `GET path` (HTTP), and nothing more",
        ("server-template", _) => "Strata takes each server's IP address: list them",
        ("email-alert", _) => "Strata sends no mail",
        ("filter", _) => "Strata has no filters",
        _ => "Strata has no equivalent",
    };
    why.into()
}

/// Why a `global` statement, a setting of HAProxy's process, has no place in Strata's config.
pub(super) fn global_why(s: &Statement) -> &'static str {
    let keyword = s.keyword();
    match keyword {
        "daemon" | "master-worker" | "nbproc" => "Strata runs in the foreground under a service manager (deploy/ has a systemd unit)",
        "user" | "group" | "uid" | "gid" | "chroot" | "setcap" => "Strata runs as the user its service manager starts it as, with only the capabilities it needs (deploy/ has a systemd unit)",
        "pidfile" => "Strata writes no pid file",
        "log" | "log-send-hostname" | "log-tag" => "Strata logs to stderr, for the service manager's journal (`strata run --log-level`, `--log-format json`)",
        "busy-polling" => "HAProxy's never sleeps; Strata's `busy_poll` polls for a window after the last bytes that came (a node of `workers = 1`): write it by hand, `busy_poll = \"50us\"` say",
        "stats" => "HAProxy's stats and runtime API are Strata's admin listener, `[admin]` (/status, /metrics, the backend API)",
        "maxconn" => "Strata bounds the connections of each listener (`max_connections`), not of the process",
        "setenv" | "presetenv" | "resetenv" | "unsetenv" => "Strata's config has no environment variables",
        _ if keyword.starts_with("ssl-") => "Strata's TLS is rustls': TLS 1.2 and 1.3 with its own cipher suites",
        _ if keyword.starts_with("tune.") => "Strata has no tuning settings",
        _ => "a setting of HAProxy's process, and Strata has none like it",
    }
}

/// Why a `server` or `default-server` option the translation does not read has no place in
/// Strata's backends.
pub(super) fn server_param_why(name: &str) -> &'static str {
    match name {
        "cookie" => "Strata keeps no client on a server",
        "minconn" => "Strata's per-server limit is fixed (`max_conns`, from `maxconn`), not dynamic",
        "maxqueue" => "Strata bounds the listener's queue (`queue_size`), not each server's",
        "strict-maxconn" => "Strata's `max_conns` counts requests in flight, not connections",
        "fastinter" | "downinter" => "Strata checks at one interval whatever a backend's state",
        "port" | "addr" => "Strata checks each backend at its own address and port",
        "observe" | "error-limit" | "on-error" | "on-marked-down" | "on-marked-up" => "Strata ejects a backend after failures in real traffic by itself (`passive`)",
        "resolvers" | "resolve-opts" | "resolve-prefer" | "resolve-net" | "init-addr" => "Strata takes IP addresses and resolves no names",
        _ if name.starts_with("agent-") || name == "no-agent-check" => "Strata has no agent checks",
        _ if name.starts_with("check-") || name.starts_with("no-check-") => "Strata's checks are plain TCP or HTTP",
        "verify" | "verifyhost" | "no-verifyhost" | "ca-file" | "crl-file" | "crt" | "sni"
        | "sni-auto" | "no-sni-auto" | "alpn" | "npn" | "ciphers" | "ciphersuites" | "curves"
        | "sigalgs" | "client-sigalgs" | "ssl-min-ver" | "ssl-max-ver" | "ssl-reuse"
        | "no-ssl-reuse" | "tls-tickets" | "no-tls-tickets" | "renegotiate"
        | "no-renegotiate" | "allow-0rtt" => "Strata speaks to its backends without TLS (but for HTTP/2 over TLS, `backend_protocol = \"h2\"`)",
        _ if name.starts_with("force-") || name.starts_with("no-tlsv") || name == "no-sslv3" => "Strata speaks to its backends without TLS (but for HTTP/2 over TLS, `backend_protocol = \"h2\"`)",
        _ => "Strata has no such setting for a backend",
    }
}

/// Why a `bind` option the translation does not read has no place in Strata's listeners.
pub(super) fn bind_param_why(name: &str) -> &'static str {
    match name {
        "ciphers" | "ciphersuites" | "curves" | "ecdhe" | "sigalgs" | "client-sigalgs"
        | "ssl-min-ver" | "ssl-max-ver" | "prefer-client-ciphers" | "tls-tickets"
        | "no-tls-tickets" | "tls-ticket-keys" | "strict-sni" | "no-strict-sni"
        | "allow-0rtt" | "no-ca-names" | "ca-file" | "crl-file" | "default-crt"
        | "crt-ignore-err" | "ca-ignore-err" | "generate-certificates" | "ca-sign-file"
        | "ca-sign-pass" | "ca-verify-file" | "no-alpn" | "npn" | "alpn" => "Strata's TLS is rustls': TLS 1.2 and 1.3 with its own cipher suites, and ALPN h2 and http/1.1",
        _ if name.starts_with("force-") || name.starts_with("no-tlsv") || name == "no-sslv3" => "Strata's TLS is rustls': TLS 1.2 and 1.3 with its own cipher suites, and ALPN h2 and http/1.1",
        _ => "Strata's listeners have no such setting",
    }
}

/// One note on the `params` of a line (a `bind`, `server` or `default-server`) that the
/// translation does not read: each named with its value, then why Strata has none like them,
/// each reason once. `None` when there are none.
pub(super) fn params_note(
    key: &str,
    params: &[&Param<'_>],
    why: fn(&str) -> &'static str,
) -> Option<Note> {
    let first = params.first()?;
    let named: Vec<String> = params.iter().map(|o| format!("`{}`", o.text())).collect();
    let mut reasons: Vec<&str> = Vec::new();
    for o in params {
        let reason = why(o.name());
        if !reasons.contains(&reason) {
            reasons.push(reason);
        }
    }
    let why = format!(
        "{} {NOT_TRANSLATED}: {}",
        named.join(", "),
        reasons.join("; ")
    );
    Some(Note::new(first.word.at, key, why))
}
