//! Strata's own HTTP/1.1: the codec, body reading, backend connections, and the client
//! connection loop.

pub(crate) mod body;
pub(crate) mod client;
pub(crate) mod codec;
pub(crate) mod rewrite;
pub(crate) mod server;
mod to_h2;
