//! A set of backends that a layer balances over: their health state, the balancer, the tries of
//! one request with the retry budget, and the set's status and metrics. Nothing here knows a
//! protocol: a layer hands the balancer a [`Key`] and keeps its own per-backend statistics in
//! the set's `extra` slots. A failed try is a [`Failure`], which says where it happened and
//! whether another backend may be tried; [`Tries`] reads it.

mod balance;
mod budget;
mod failure;
mod set;
mod status;

pub use balance::{hash_value, Key};
pub use failure::{Failure, Kind, Retry, Stage};
pub use set::{Go, Queue, Tries, Upstream};
pub use status::{
    backend_action, backend_metrics, backend_status, balance_name, group_action, group_metrics,
    upstream_status, ActionError, BackendAction,
};
