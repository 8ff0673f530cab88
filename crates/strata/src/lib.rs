//! Strata as a library: a node with every layer this build runs, for tests and embedders that
//! want one in-process (`node::run(config, shutdown)`); the `strata` binary is a command line
//! over it.

pub mod etcd;
pub mod node;

pub use node::{run, Node};
