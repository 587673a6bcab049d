//! Tally's domain and wire contract: pure functions and types, no IO.
//!
//! - [`ids`]: the ids of wallets, transfers, holds and assets.
//! - [`error`]: [`error::DomainError`], why a command was refused, and the [`error::Rule`]s of validation.
//! - [`money`]: exact amounts and scales, parsing from the wire and formatting with the asset's scale.
//! - [`asset`]: asset definitions, cash-in fee policies, the asset Decider.
//! - [`wallet`]: wallet state, events and the wallet Decider (debit, credit, freeze, close).
//! - [`transfer`]: the transfer aggregate (legs, reversals and their cap).
//! - [`hold`]: holds, which reserve part of a wallet's balance until captured, voided or expired (SPEC §8).
//! - [`ledger`]: the top-level [`ledger::Command`], [`ledger::decide`] and [`ledger::World`] that compose the aggregates.
//! - [`envelope`]: stream ids, the stored event envelope, canonical JSON and the hash chain.
//! - [`digest`]: the running log hash over the global log and the signed digests of it (SPEC §10).
//! - [`notification`]: the NATS subject, stream and message id of "events appended" notifications.
//! - [`api`]: request and response bodies and problem codes shared by the services.

pub mod api;
pub mod asset;
pub mod digest;
pub mod envelope;
pub mod error;
pub mod hold;
pub mod ids;
pub mod ledger;
pub mod money;
pub mod notification;
pub mod transfer;
pub mod wallet;
