//! Strata as a library: a node with every layer this build runs, for tests and embedders that
//! want one in-process (`node::run(config, shutdown)`); the `strata` binary is a command line
//! over it.

pub mod etcd;
// `strata import`: public for the command line and the fuzz target, not as an API
#[doc(hidden)]
pub mod import;
pub mod node;

/// EX_USAGE from sysexits.h: the config is wrong.
pub const EXIT_BAD_CONFIG: u8 = 64;
/// EX_NOINPUT: the config file could not be read.
pub const EXIT_NO_INPUT: u8 = 66;

pub use node::{run, Node};
