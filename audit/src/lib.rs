//! `tally-audit`: checks a Tally export (NDJSON of `GET /v1/export`) on its own, with no database, no network
//! and none of the product's code: it follows `docs/audit.md` for the bytes and hashes, and recomputes balances
//! and holds from the postings with its own integer arithmetic.
//!
//! - [`canonical`]: an event's canonical bytes, its chained hash, the log hash, a digest's signed message.
//! - [`ledger`]: balances, limits, zero sum and holds, replayed from the events' data.
//! - [`verify`]: reads an export (and digests), runs every check, and reports each finding.

pub mod canonical;
pub mod ledger;
pub mod verify;

pub use verify::{verify, Finding, Report};
