//! Black-box tests of query-service: the real router on port 0, each test with its own database.

// This whole crate is tests (helpers included, which `allow-unwrap-in-tests` does not see): a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod support;

mod assets;
mod balance;
mod consistency;
mod events;
mod history;
mod read_only;
mod service;
mod transfers;
mod wallets;
