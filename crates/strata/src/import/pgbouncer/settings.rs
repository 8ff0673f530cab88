//! The `[pgbouncer]` keys as PgBouncer knows them (`bouncer_params` in main.c): each one's type,
//! read and refused as PgBouncer reads and refuses it, and for each key `[[database]]` has no
//! place for, why, and the values that need no note because Strata behaves that way anyway.

/// How PgBouncer reads a key's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// `strtol` in base 0: `017` is octal, `0x1f` hex.
    Int,
    /// Seconds, with a fraction: `2.5`.
    Seconds,
    /// One of these, in any case.
    Choice(&'static [&'static str]),
    Text,
}

/// A value as PgBouncer reads it.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Value {
    Int(i64),
    Seconds(f64),
    /// The choice as PgBouncer names it.
    Choice(&'static str),
    Text(String),
}

/// What becomes of a key.
#[derive(Debug, Clone, Copy)]
pub(super) enum Treatment {
    /// The listener's translation reads it.
    Translated,
    /// About PgBouncer's process rather than its pool: noted about the file as a whole, unless
    /// its value is one of `same`.
    Process {
        why: &'static str,
        same: &'static [&'static str],
    },
    /// About how the pool behaves, which `[[database]]` does not set: noted above the listener,
    /// unless its value is one of `same`.
    Pool {
        why: &'static str,
        same: &'static [&'static str],
    },
}

/// One `[pgbouncer]` key.
#[derive(Debug, Clone, Copy)]
pub(super) struct Key {
    pub(super) name: &'static str,
    pub(super) kind: Kind,
    pub(super) treatment: Treatment,
}

pub(super) const AUTH_TYPES: &[&str] = &[
    "any",
    "trust",
    "plain",
    "md5",
    "cert",
    "hba",
    "ldap",
    "pam",
    "scram-sha-256",
];
pub(super) const POOL_MODES: &[&str] = &["session", "transaction", "statement"];
const SSL_MODES: &[&str] = &[
    "disable",
    "allow",
    "prefer",
    "require",
    "verify-ca",
    "verify-full",
];
pub(super) const LOAD_BALANCE_HOSTS: &[&str] = &["disable", "round-robin"];

/// How Strata times TCP keepalive on client connections.
const KEEPALIVE: &str = "Strata's keepalive on client connections probes after 300 s idle, every 100 s, 3 times (as Redis's `tcp-keepalive 300`)";

const fn translated(name: &'static str, kind: Kind) -> Key {
    Key {
        name,
        kind,
        treatment: Treatment::Translated,
    }
}

const fn process(
    name: &'static str,
    kind: Kind,
    same: &'static [&'static str],
    why: &'static str,
) -> Key {
    Key {
        name,
        kind,
        treatment: Treatment::Process { why, same },
    }
}

const fn pool(
    name: &'static str,
    kind: Kind,
    same: &'static [&'static str],
    why: &'static str,
) -> Key {
    Key {
        name,
        kind,
        treatment: Treatment::Pool { why, same },
    }
}

use Kind::{Int, Seconds, Text};

const LOGS: &str = "Strata logs to stderr, for the service manager's journal (`strata run --log-level`, `--log-format json`)";
const STATS: &str = "Strata's counters are on the admin listener's /metrics and /status";
const NO_NAMES: &str =
    "Strata resolves no host names: its servers are IP addresses, written in the config";
const SOCKETS: &str = "Strata does not expose socket tuning";
const CLIENT_SUITES: &str = "Strata's TLS is rustls's safe defaults, not set per listener: TLS 1.2 and 1.3, AEAD cipher suites with forward secrecy, curves X25519, P-256 and P-384";
const SERVER_SUITES: &str = "Strata's TLS to the servers is rustls's safe defaults, not set per listener: TLS 1.2 and 1.3, AEAD cipher suites with forward secrecy";
const ONE_BOUND: &str =
    "Strata bounds server connections per user, database and server with `pool_size` only";
const ONE_CLIENT_BOUND: &str =
    "Strata bounds client connections for the whole listener only (`max_client_connections`)";

/// Every key PgBouncer takes in `[pgbouncer]`.
pub(super) const KEYS: &[Key] = &[
    process("admin_users", Text, &[""], "PgBouncer's admin console (the `pgbouncer` database: SHOW, PAUSE, RELOAD...) is Strata's admin listener, `[admin]` (/status, /metrics; a reload is SIGHUP)"),
    pool("application_name_add_host", Int, &["0"], "Strata passes `application_name` on as the client sent it"),
    translated("auth_dbname", Text),
    translated("auth_file", Text),
    pool("auth_hba_file", Text, &[""], "Strata has one `auth_type` for every client, not rules by address, database and user"),
    pool("auth_ident_file", Text, &[""], "Strata has one `auth_type` for every client, and no user name maps"),
    pool("auth_ldap_options", Text, &[""], "Strata checks passwords against `auth_file` only"),
    translated("auth_query", Text),
    translated("auth_type", Kind::Choice(AUTH_TYPES)),
    translated("auth_user", Text),
    pool("autodb_idle_timeout", Seconds, &[], "Strata makes no pools per database entry to clean up: every database goes to `servers`"),
    pool("cancel_wait_timeout", Seconds, &[], "Strata sends a cancel request on to the server when it comes, and bounds nothing there"),
    translated("client_idle_timeout", Seconds),
    pool("client_login_timeout", Seconds, &[], "Strata has no bound on a client's login"),
    pool("client_tls13_ciphers", Text, &[], CLIENT_SUITES),
    translated("client_tls_ca_file", Text),
    translated("client_tls_cert_file", Text),
    pool("client_tls_ciphers", Text, &["default", "secure"], CLIENT_SUITES),
    pool("client_tls_dheparams", Text, &["auto", "none"], CLIENT_SUITES),
    pool("client_tls_ecdhcurve", Text, &["auto"], CLIENT_SUITES),
    translated("client_tls_key_file", Text),
    pool("client_tls_protocols", Text, &["secure"], CLIENT_SUITES),
    translated("client_tls_sslmode", Kind::Choice(SSL_MODES)),
    process("conffile", Text, &[], "Strata's config is the file `strata run -c` names"),
    translated("default_pool_size", Int),
    pool("disable_pqexec", Int, &["0"], "Strata takes the simple query protocol with several statements, as PostgreSQL does"),
    process("dns_max_ttl", Seconds, &[], NO_NAMES),
    process("dns_nxdomain_ttl", Seconds, &[], NO_NAMES),
    process("dns_zone_check_period", Seconds, &[], NO_NAMES),
    translated("idle_transaction_timeout", Seconds),
    pool("ignore_startup_parameters", Text, &[""], "Strata takes every startup parameter a client sends (and sets it on the client's server connections), so there is nothing to ignore"),
    translated("job_name", Text),
    translated("listen_addr", Text),
    process("listen_backlog", Int, &[], "Strata's listeners have a fixed backlog of 4096"),
    translated("listen_port", Int),
    process("log_connections", Int, &[], LOGS),
    process("log_disconnections", Int, &[], LOGS),
    process("log_pooler_errors", Int, &[], LOGS),
    process("log_stats", Int, &[], STATS),
    process("logfile", Text, &[""], LOGS),
    pool("login_notify_message", Text, &[""], "Strata sends clients no notice at login"),
    translated("max_client_conn", Int),
    pool("max_db_client_connections", Int, &["0"], ONE_CLIENT_BOUND),
    translated("max_db_connections", Int),
    process("max_packet_size", Int, &[], "Strata takes a message up to PostgreSQL's own limit (1 GiB)"),
    pool("max_prepared_statements", Int, &[], "Strata keeps protocol-level prepared statements working in transaction mode always, without a bound on those a server connection holds"),
    pool("max_user_client_connections", Int, &["0"], ONE_CLIENT_BOUND),
    pool("max_user_connections", Int, &["0"], ONE_BOUND),
    translated("min_pool_size", Int),
    process("peer_id", Int, &["0"], "Strata is one process: a cancel request reaches the server connection running the client's query from any worker thread, but is not passed on to other Strata nodes behind a TCP load balancer"),
    process("pidfile", Text, &[""], "Strata runs in the foreground under a service manager and writes no pid file"),
    process("pkt_buf", Int, &[], "Strata sizes its buffers itself"),
    pool("pool_idle_timeout", Seconds, &["0"], "Strata closes idle server connections after `server_idle_timeout` only"),
    translated("pool_mode", Kind::Choice(POOL_MODES)),
    pool("query_timeout", Seconds, &["0"], "Strata has no such timeout: PostgreSQL's `statement_timeout` cancels a long query, set on the role or database"),
    pool("query_wait_notify", Int, &["0"], "Strata sends no notice to a client waiting for a server connection"),
    translated("query_wait_timeout", Seconds),
    pool("reserve_pool_size", Int, &["0"], "Strata has no reserve pool: `pool_size` is the bound"),
    pool("reserve_pool_timeout", Seconds, &[], "Strata has no reserve pool: `pool_size` is the bound"),
    process("resolv_conf", Text, &[""], NO_NAMES),
    process("sbuf_loopcnt", Int, &[], "Strata shares the work between clients itself"),
    pool("scram_iterations", Int, &["4096"], "Strata makes a SCRAM secret of 4096 iterations, PostgreSQL's default, for a user whose password it has in clear"),
    pool("server_check_delay", Seconds, &[], "Strata checks each server by asking it `pg_is_in_recovery()` every `check_interval` (1s unless set), not a connection before it lends it"),
    pool("server_check_query", Text, &[], "Strata checks each server by asking it `pg_is_in_recovery()` every `check_interval` (1s unless set), not a connection before it lends it"),
    translated("server_connect_timeout", Seconds),
    pool("server_fast_close", Int, &["0"], "Strata has no RECONNECT or online restart to close connections for"),
    translated("server_idle_timeout", Seconds),
    translated("server_lifetime", Seconds),
    pool("server_login_retry", Seconds, &[], "Strata's closest is `ban_time` (10s unless set): a server that fails a connect, or a role check, is left out that long for every pool, where PgBouncer holds off one pool"),
    pool("server_reset_query", Text, &["DISCARD ALL"], "Strata resets a session-mode connection with DISCARD ALL before the next client, and runs no other query"),
    pool("server_reset_query_always", Int, &["0"], "Strata runs no reset query in transaction mode: it sets the parameters a client changed back before the connection serves another"),
    pool("server_round_robin", Int, &["0"], "Strata picks a pool's idle connections in its own order"),
    pool("server_tls13_ciphers", Text, &[], SERVER_SUITES),
    translated("server_tls_ca_file", Text),
    translated("server_tls_cert_file", Text),
    pool("server_tls_ciphers", Text, &["default", "secure"], SERVER_SUITES),
    translated("server_tls_key_file", Text),
    pool("server_tls_protocols", Text, &["secure"], SERVER_SUITES),
    translated("server_tls_sslmode", Kind::Choice(SSL_MODES)),
    translated("service_name", Text),
    process("so_reuseport", Int, &["0"], "Strata binds each listener once and serves it from all its worker threads"),
    process("stats_period", Int, &[], STATS),
    process("stats_users", Text, &[""], "PgBouncer's admin console (SHOW STATS...) is Strata's admin listener, `[admin]` (/status, /metrics)"),
    process("suspend_timeout", Seconds, &[], "Strata has no SUSPEND or online restart (-R): it drains on SIGTERM"),
    process("syslog", Int, &["0"], LOGS),
    process("syslog_facility", Text, &[], LOGS),
    process("syslog_ident", Text, &[], LOGS),
    process("tcp_defer_accept", Int, &[], SOCKETS),
    process("tcp_keepalive", Int, &["1"], "Strata turns TCP keepalive on for every client and server connection, always"),
    process("tcp_keepcnt", Int, &["3"], KEEPALIVE),
    process("tcp_keepidle", Int, &["300"], KEEPALIVE),
    process("tcp_keepintvl", Int, &["100"], KEEPALIVE),
    process("tcp_socket_buffer", Int, &["0"], SOCKETS),
    process("tcp_user_timeout", Int, &["0"], SOCKETS),
    pool("track_extra_parameters", Text, &[], "Strata follows every parameter the server reports it set (and a client's startup parameters), and sets them on the server connection the client gets next"),
    pool("transaction_timeout", Seconds, &["0"], "Strata has no such timeout: PostgreSQL's `transaction_timeout` (17+) ends a long transaction, set on the role or database"),
    translated("unix_socket_dir", Text),
    process("unix_socket_group", Text, &[""], "Strata listens on TCP only"),
    process("unix_socket_mode", Int, &[], "Strata listens on TCP only"),
    process("user", Text, &[""], "Strata runs as the user its service manager starts it as"),
    process("verbose", Int, &["0"], LOGS),
];

/// The keys PgBouncer does not set back to a default when a `[pgbouncer]` section begins (their
/// default is none).
pub(super) const NO_DEFAULT: &[&str] = &[
    "auth_dbname",
    "auth_file",
    "auth_ident_file",
    "auth_ldap_options",
    "auth_user",
    "client_tls13_ciphers",
    "conffile",
    "server_tls13_ciphers",
    "service_name",
    "user",
    "verbose",
];

/// The key `name`, if PgBouncer has it.
pub(super) fn key(name: &str) -> Option<&'static Key> {
    KEYS.iter().find(|k| k.name == name)
}

/// Why a key has no `[[database]]` equivalent, if it has none.
pub(super) fn why(name: &str) -> Option<&'static str> {
    match key(name)?.treatment {
        Treatment::Translated => None,
        Treatment::Process { why, .. } | Treatment::Pool { why, .. } => Some(why),
    }
}

impl Kind {
    /// `text` as PgBouncer reads a value of this kind, or why it refuses it.
    pub(super) fn read(self, text: &str) -> Result<Value, String> {
        match self {
            Kind::Int => c_integer(text)
                .map(Value::Int)
                .ok_or_else(|| "not a whole number".to_string()),
            Kind::Seconds => seconds(text)
                .map(Value::Seconds)
                .ok_or_else(|| "not a number of seconds (0 or more)".to_string()),
            Kind::Choice(choices) => choices
                .iter()
                .find(|c| c.eq_ignore_ascii_case(text))
                .map(|c| Value::Choice(c))
                .ok_or_else(|| format!("not one of {}", choices.join(", "))),
            Kind::Text => Ok(Value::Text(text.to_string())),
        }
    }
}

impl Key {
    /// Whether `value` is one Strata behaves as anyway, needing no note.
    pub(super) fn same(&self, value: &Value) -> bool {
        let same = match self.treatment {
            Treatment::Translated => return false,
            Treatment::Process { same, .. } | Treatment::Pool { same, .. } => same,
        };
        same.iter()
            .any(|s| self.kind.read(s).is_ok_and(|v| v == *value))
    }
}

/// An integer as C's `strtol` reads one in base 0, the whole text taken: a sign, then `0x` and
/// hex digits, `0` and octal ones, or decimal ones.
pub(super) fn c_integer(text: &str) -> Option<i64> {
    let t = text.trim_start_matches(|c: char| c.is_ascii_whitespace());
    let (negative, rest) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let hex = rest
        .strip_prefix("0x")
        .or_else(|| rest.strip_prefix("0X"))
        .filter(|h| h.bytes().next().is_some_and(|b| b.is_ascii_hexdigit()));
    let (radix, digits) = match hex {
        Some(h) => (16, h),
        None if rest.starts_with('0') => (8, rest),
        None => (10, rest),
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    // past the range of a long, strtol gives its bound, which PgBouncer takes
    let n = i64::from_str_radix(digits, radix).unwrap_or(i64::MAX);
    Some(if negative { -n } else { n })
}

/// Seconds as PgBouncer's `parse_time` reads them: a number, not negative.
fn seconds(text: &str) -> Option<f64> {
    let t = text.trim_start_matches(|c: char| c.is_ascii_whitespace());
    t.parse::<f64>().ok().filter(|v| *v >= 0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn import_pgbouncer_reads_integers_as_strtol_in_base_0() {
        assert_eq!(c_integer("6432"), Some(6432));
        assert_eq!(c_integer("017"), Some(15));
        assert_eq!(c_integer("0x1f"), Some(31));
        assert_eq!(c_integer("-3"), Some(-3));
        assert_eq!(c_integer("0"), Some(0));
        assert_eq!(c_integer("08"), None);
        assert_eq!(c_integer("0x"), None);
        assert_eq!(c_integer("12 "), None);
        assert_eq!(c_integer(""), None);
    }

    #[test]
    fn import_pgbouncer_reads_choices_in_any_case_and_seconds_with_a_fraction() {
        let auth = Kind::Choice(AUTH_TYPES);
        assert_eq!(
            auth.read("SCRAM-SHA-256"),
            Ok(Value::Choice("scram-sha-256"))
        );
        assert!(auth.read("password").is_err());
        assert_eq!(Kind::Seconds.read("2.5"), Ok(Value::Seconds(2.5)));
        assert!(Kind::Seconds.read("-1").is_err());
        assert!(Kind::Seconds.read("10s").is_err());
    }

    #[test]
    fn import_pgbouncer_knows_every_key_once() {
        let names: Vec<&str> = KEYS.iter().map(|k| k.name).collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(names, sorted);
        for name in NO_DEFAULT {
            assert!(key(name).is_some(), "{name}");
        }
        let tcp = key("tcp_keepcnt").unwrap();
        assert!(tcp.same(&Value::Int(3)));
        assert!(!tcp.same(&Value::Int(0)));
    }
}
