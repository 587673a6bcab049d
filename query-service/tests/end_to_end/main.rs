//! End to end: commands through the real command-service (and projector), read back through query-service.

// This whole crate is tests (helpers included, which `allow-unwrap-in-tests` does not see): a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

#[path = "../api/support.rs"]
#[allow(dead_code)]
mod support;

mod commands;
mod feeds;
mod projector;

mod audit;
mod balance;
mod global_log;
mod holds;
mod numeric_limits;
mod read_your_writes;
