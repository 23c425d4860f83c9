//! The real-binary suite: tests that run `sessionlog` itself as a child
//! process (kill -9, power cuts on a FUSE filesystem, signals, the CLI, a
//! process's own metrics).

mod common;

mod auth;
mod cli;
mod corruption;
mod crash;
mod descriptors;
mod foreign_owner;
mod forward_crash;
mod fsync;
mod logging;
mod metrics;
mod power_loss;
mod powercut;
mod run;
mod stalled_disk;
mod storage_failure;
mod tls;
