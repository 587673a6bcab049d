//! Where IO meets the domain: load → plan → write → notify, for batches of concurrent commands.
//!
//! - [`Executor`] (this file): the front. It de-duplicates keys in flight ([`in_flight`]), queues each
//!   command and waits for its answer.
//! - [`appender`]: the loop that takes what has queued up as one batch, loads what it depends on, has it
//!   planned, writes it in one statement (group commit), retries, and splits a batch that fails for good.
//! - [`plan`]: pure. A batch of commands and the state they were loaded against → the events, snapshots,
//!   owners and answers to write, and which position each answer reports. No IO, no clock, no async.
//! - [`views`]: the answer of a decided command, rendered from the state it left.
//! - [`known`] and [`recent_keys`]: what this process remembers between batches: the latest state of the
//!   streams it wrote or read, and the idempotency keys it answered lately.
//! - [`stream_state`]: a stream's state, of whichever kind, and its snapshot encoding.
//!
//! Optimistic concurrency: an appender decides against the latest state it knows of each stream, and
//! writes the batch in one statement that first checks that every stream read is still at the version it
//! was read at. If one moved (another process wrote it), nothing is written: the appender forgets those
//! streams, reads them again and decides again, a bounded number of times. Appenders need nothing from
//! each other to be correct, as two processes need nothing: the version check, the `(stream_id, version)`
//! constraint and the append lock (which orders positions) do it in the database.

mod appender;
mod in_flight;
mod known;
pub mod plan;
#[cfg(test)]
mod plan_tests;
mod recent_keys;
pub mod stream_state;
mod views;

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use tally_shared::ledger::Command;
use tokio::sync::{mpsc, oneshot};

pub use crate::answer::Answer;
use crate::notify::Notifier;
use appender::Appender;
use in_flight::{Claim, InFlightKeys};
use known::Known;
use recent_keys::RecentKeys;

/// A command as the HTTP layer hands it over: parsed, validated, keyed.
#[derive(Debug, Clone)]
pub struct CommandRequest {
    pub principal: String,
    /// For a token bound to one owner: the only owner whose wallets the command may touch.
    pub owner: Option<String>,
    pub idempotency_key: String,
    /// SHA-256 of method, path and canonical body.
    pub fingerprint: [u8; 32],
    pub command: Command,
    /// `If-Match` on the command's subject wallet.
    pub expected_version: Option<i64>,
    pub request_id: Option<String>,
}

impl CommandRequest {
    /// The idempotency key in its scope: keys are per principal.
    pub fn key(&self) -> KeyId {
        (self.principal.clone(), self.idempotency_key.clone())
    }
}

/// An idempotency key in its scope: `(principal, idempotency_key)`.
pub type KeyId = (String, String);

/// What the executor hands back: the command's answer, and whether it replays an earlier one.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub answer: Answer,
    pub replayed: bool,
}

/// Why a command got no answer. None of these is stored: the client may retry with the same key.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ExecuteError {
    #[error("a request with this idempotency key is still being processed")]
    InFlight,
    #[error("the command queue is full")]
    Overloaded,
    #[error("the streams kept changing under the command")]
    ConcurrencyConflict,
    #[error("the event store is unavailable")]
    Unavailable,
    #[error("internal error")]
    Internal,
}

/// A queued command and where its reply goes.
struct Submission {
    request: CommandRequest,
    reply_to: oneshot::Sender<Result<Reply, ExecuteError>>,
}

/// Tunables of the executor, from [`crate::Config`].
#[derive(Debug, Clone)]
pub struct ExecutorLimits {
    /// Appender tasks, each with a batch (and a database connection) of its own.
    pub appenders: usize,
    pub batch_size_max: usize,
    pub queue_depth_max: usize,
    pub append_retries_max: u32,
    pub idempotency_wait: Duration,
}

/// The front of the appender: hands commands over and waits for their answers.
#[derive(Clone)]
pub struct Executor {
    queue: mpsc::Sender<Submission>,
    in_flight: InFlightKeys,
    idempotency_wait: Duration,
}

impl Executor {
    /// Starts the appender tasks; they stop when every `Executor` clone is dropped and the queue is drained.
    /// The returned task ends when all of them have.
    pub fn start(pool: PgPool, notifier: Notifier, limits: ExecutorLimits) -> (Executor, tokio::task::JoinHandle<()>) {
        let (queue, receiver) = mpsc::channel(limits.queue_depth_max);
        let receiver = Arc::new(tokio::sync::Mutex::new(receiver));
        let known = Known::default();
        let recent = RecentKeys::new();
        let appenders: Vec<_> = (0..limits.appenders.max(1))
            .map(|_| {
                let appender = Appender {
                    pool: pool.clone(),
                    notifier: notifier.clone(),
                    batch_size_max: limits.batch_size_max,
                    append_retries_max: limits.append_retries_max,
                    known: known.clone(),
                    recent: recent.clone(),
                };
                tokio::spawn(appender.run(receiver.clone()))
            })
            .collect();
        let task = tokio::spawn(async move {
            for appender in appenders {
                if let Err(error) = appender.await {
                    tracing::error!(%error, "an appender task failed");
                }
            }
        });
        let executor =
            Executor { queue, in_flight: InFlightKeys::default(), idempotency_wait: limits.idempotency_wait };
        (executor, task)
    }

    /// Executes one command exactly once per idempotency key. A duplicate of a key still in flight in this
    /// process waits for the first and replays its answer; across processes the database does the same.
    pub async fn execute(&self, request: CommandRequest) -> Result<Reply, ExecuteError> {
        let ticket = match self.in_flight.claim(request.key(), request.fingerprint) {
            Claim::First(ticket) => ticket,
            Claim::Reused => return Ok(Reply { answer: Answer::key_reused(), replayed: false }),
            Claim::Duplicate(first) => {
                metrics::counter!("tally_idempotent_waits_total").increment(1);
                return first.replay(self.idempotency_wait).await.ok_or(ExecuteError::InFlight);
            }
        };
        let (reply_to, reply) = oneshot::channel();
        self.queue.try_send(Submission { request, reply_to }).map_err(|_| ExecuteError::Overloaded)?;
        let reply = reply.await.map_err(|_| ExecuteError::Unavailable)??;
        ticket.finish(&reply);
        Ok(reply)
    }
}
