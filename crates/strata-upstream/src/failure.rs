//! What went wrong on one try of a request or connection, where, and whether another backend
//! may be tried: the one error type every layer's retry loop reads.

use std::fmt;
use std::sync::Arc;

/// Where on the way a try failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// The client: its request could not be read, or broke a limit. No backend is to blame.
    Client,
    /// Choosing or connecting to a backend: nothing reached one.
    Connect,
    /// After the request went out, before the backend's answer began.
    Request,
    /// In the middle of the backend's answer.
    Answer,
}

/// Whether another backend may be tried after a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Nothing reached the backend and the try does not count: a pooled connection that the
    /// backend had already closed (up to a few times in a row; then it counts as `Always`).
    Free,
    /// Nothing reached the backend: any request may go to another.
    Always,
    /// The backend may have acted on the request: only one that is safe to repeat may go on.
    IfIdempotent,
    /// Part of the request can't be sent again (its body was consumed), or the client is at
    /// fault.
    Never,
}

/// What kind of failure it was, as a client or an operator would name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// No backend could take the request (all down, ejected, draining, or tried).
    NoBackend,
    /// Every backend that could take it stayed at its `max_conns` for `queue_timeout`.
    QueueTimeout,
    /// Every backend that could take it is at its `max_conns`, and the queue holds
    /// `queue_size` already.
    QueueFull,
    /// The connection to the backend could not be made.
    Connect,
    /// The backend refused the login (a database server's error at startup).
    Refused,
    /// The backend did not answer in time.
    Timeout,
    /// The backend closed or reset the connection.
    Closed,
    /// The backend's answer was not valid.
    Protocol,
    /// Reading or writing a socket failed otherwise.
    Io,
    /// The request is larger than the listener allows.
    TooLarge,
    /// The client's request could not be read.
    BadRequest,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::NoBackend => "no backend available",
            Kind::QueueTimeout => "every backend stayed full for queue_timeout",
            Kind::QueueFull => "every backend is full and so is the queue",
            Kind::Connect => "could not connect to a backend",
            Kind::Refused => "the backend refused the login",
            Kind::Timeout => "the backend did not answer in time",
            Kind::Closed => "the backend closed the connection",
            Kind::Protocol => "the backend's answer was not valid",
            Kind::Io => "the connection to the backend failed",
            Kind::TooLarge => "the request is larger than allowed",
            Kind::BadRequest => "the request could not be read",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One failed try: where, what, whether a retry is safe, and the error underneath. Cloning it
/// shares the error underneath: one broken connection fails every request it carried alike.
#[derive(Debug, Clone, thiserror::Error)]
pub struct Failure {
    /// Where on the way it failed.
    pub stage: Stage,
    /// What failed, as an error page or a log line names it.
    pub kind: Kind,
    /// Whether another backend may be tried.
    pub retry: Retry,
    /// The error underneath, when there is one.
    #[source]
    pub source: Option<Arc<dyn std::error::Error + Send + Sync>>,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.source {
            Some(source) => write!(f, "{}: {source}", self.kind),
            None => write!(f, "{}", self.kind),
        }
    }
}

impl Failure {
    /// A failure with no error underneath (see [`Failure::because`]).
    pub fn new(stage: Stage, kind: Kind, retry: Retry) -> Self {
        Failure {
            stage,
            kind,
            retry,
            source: None,
        }
    }

    /// The same failure, caused by `source`.
    pub fn because(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Arc::new(source));
        self
    }

    /// No backend could be chosen.
    pub fn no_backend() -> Self {
        Failure::new(Stage::Connect, Kind::NoBackend, Retry::Never)
    }

    /// The request waited `queue_timeout` for a backend with room, and none had any.
    pub fn queue_timeout() -> Self {
        Failure::new(Stage::Connect, Kind::QueueTimeout, Retry::Never)
    }

    /// Every backend was full and the queue held `queue_size` already.
    pub fn queue_full() -> Self {
        Failure::new(Stage::Connect, Kind::QueueFull, Retry::Never)
    }

    /// Connecting to a backend failed (refused, unreachable, or no answer within
    /// `connect_timeout`): nothing reached it. A 502 for a client, never a 504: no backend
    /// ever had the request.
    pub fn connect(e: strata_net::ConnectError) -> Self {
        Failure::new(Stage::Connect, Kind::Connect, Retry::Always).because(e)
    }

    /// Whether the listener's queue turned it away (full, or its time there ran out): no
    /// backend was tried for it.
    pub fn from_queue(&self) -> bool {
        matches!(self.kind, Kind::QueueTimeout | Kind::QueueFull)
    }

    /// Logs a failure the listener's queue gave (see [`Failure::from_queue`]) with what came
    /// of it (`outcome`): a timeout at info, a refusal at debug only, since a full queue turns
    /// requests away by the thousand in a burst (the metrics count them). False, logging
    /// nothing, for any other failure.
    pub fn log_from_queue(&self, listener: &str, outcome: &str) -> bool {
        match self.kind {
            Kind::QueueFull => tracing::debug!(%listener, error = %self, "{outcome}"),
            Kind::QueueTimeout => tracing::info!(%listener, error = %self, "{outcome}"),
            _ => return false,
        }
        true
    }

    /// Whether the failure counts against the backend tried (passive health checking).
    pub fn blames_backend(&self) -> bool {
        !matches!(self.stage, Stage::Client)
            && !matches!(
                self.kind,
                Kind::NoBackend | Kind::QueueTimeout | Kind::QueueFull
            )
    }
}
