//! Strata end to end, as one test binary: every module starts the real `strata` binary (or a node
//! in-process, in `library`) in front of real servers started by the test. One binary links
//! the workspace once instead of once per file, which keeps a cold build small on disk.

mod common;

mod admin;
mod balance;
mod cache;
mod cli;
mod dashboard;
mod database;
mod database_hostile;
mod database_shards;
mod demo;
mod deploy;
mod etcd;
mod grpc;
mod h2_abuse;
mod h2_backends;
mod http;
mod http1;
mod http2;
mod import;
mod library;
mod logs;
mod memcache;
mod nginx;
mod smuggling;
mod tcp;
mod tls;
mod trailers;
mod vip;
