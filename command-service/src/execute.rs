//! Where IO meets the domain: load → decide → append → notify, for batches of concurrent commands.
//!
//! Every command goes through one queue to a few appender tasks per process (`appenders`). An appender
//! takes what has queued up (at most `batch_size_max`), decides the commands in order against the
//! streams' current states — so many commands on one hot wallet are decided one after another against
//! the state the previous one left — and appends all their events, snapshots and idempotency records in
//! one transaction: one fsync for the whole batch (group commit). Each command keeps its own outcome:
//! a rejected command writes nothing but its idempotency record.
//!
//! Optimistic concurrency: an appender decides against the latest state it knows of each stream (what it
//! wrote or read last; a plain read for the rest), and writes the batch in one statement that first checks
//! that every stream read is still at the version it was read at. If one moved (another process wrote it),
//! nothing is written: the appender forgets those streams, reads them again and decides again, a bounded
//! number of times. So a batch costs one round trip and one fsync when its streams are known, and appenders
//! need nothing from each other to be correct, as two processes need nothing: the version check, the
//! `(stream_id, version)` constraint and the append lock (which orders positions) do it in the database.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::json;
use sqlx::PgPool;
use tally_shared::api::{
    AssetDefinedView, BalanceView, FeePolicyView, LegView, Problem, ProblemCode, TransferView, WalletView,
};
use tally_shared::asset::{Asset, AssetCode};
use tally_shared::envelope::{self, Change, Event, EventMetadata, StreamId};
use tally_shared::ledger::{self, Command, Dependency, World};
use tally_shared::transfer::{Transfer, TransferEvent};
use tally_shared::wallet::{Wallet, WalletEvent, WalletId};
use tokio::sync::{mpsc, oneshot, watch};
use uuid::Uuid;

use crate::event_store::{self, AnswerPosition, BatchWrite, Completion, NewEvent, Snapshot, StreamHead};
use crate::notify::Notifier;

/// Rounds of dependency loading at most: a wallet names its asset, the asset its system wallets.
const DEPENDENCY_ROUNDS_MAX: usize = 4;
/// Streams (assets and wallets) whose latest state an appender keeps at most, before it starts over.
const KNOWN_STREAMS_MAX: usize = 100_000;
/// Idempotency keys remembered as answered by this process, at most (their hashes: 8 bytes and a slot each).
const RECENT_KEYS_MAX: usize = 200_000;
/// Pause before retrying a failed batch, doubled on each retry.
const RETRY_BACKOFF_INITIAL: Duration = Duration::from_millis(5);

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

/// The answer to a command: a status and a JSON body, stored under its idempotency key.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub status: u16,
    pub body: serde_json::Value,
    pub replayed: bool,
}

/// Why a command got no stored answer. None of these is stored: the client may retry with the same key.
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

type Reply = oneshot::Sender<Result<Outcome, ExecuteError>>;
type KeyId = (String, String);

struct Submission {
    request: CommandRequest,
    reply: Reply,
}

struct InFlight {
    fingerprint: [u8; 32],
    done: watch::Receiver<Option<Outcome>>,
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

/// The front of the appender: hands commands over and waits for their outcome.
#[derive(Clone)]
pub struct Executor {
    queue: mpsc::Sender<Submission>,
    in_flight: Arc<Mutex<HashMap<KeyId, InFlight>>>,
    idempotency_wait: Duration,
}

impl Executor {
    /// Starts the appender tasks; they stop when every `Executor` clone is dropped and the queue is drained.
    /// The returned task ends when all of them have.
    pub fn start(pool: PgPool, notifier: Notifier, limits: ExecutorLimits) -> (Executor, tokio::task::JoinHandle<()>) {
        let (queue, receiver) = mpsc::channel(limits.queue_depth_max);
        let receiver = Arc::new(tokio::sync::Mutex::new(receiver));
        let known = Arc::new(Mutex::new(HashMap::new()));
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
        let executor = Executor {
            queue,
            in_flight: Arc::new(Mutex::new(HashMap::new())),
            idempotency_wait: limits.idempotency_wait,
        };
        (executor, task)
    }

    /// Executes one command exactly once per idempotency key. A duplicate of a key still in flight in this
    /// process waits for the first and replays its answer; across processes the database does the same.
    pub async fn execute(&self, request: CommandRequest) -> Result<Outcome, ExecuteError> {
        let key: KeyId = (request.principal.clone(), request.idempotency_key.clone());
        let (sender, waiting) = {
            let mut in_flight = self.in_flight.lock().expect("in-flight map is never poisoned");
            match in_flight.get(&key) {
                Some(first) if first.fingerprint != request.fingerprint => return Ok(reused_key()),
                Some(first) => (None, Some(first.done.clone())),
                None => {
                    let (sender, done) = watch::channel(None);
                    in_flight.insert(key.clone(), InFlight { fingerprint: request.fingerprint, done });
                    (Some(sender), None)
                }
            }
        };
        if let Some(mut done) = waiting {
            metrics::counter!("tally_idempotent_waits_total").increment(1);
            let finished = tokio::time::timeout(self.idempotency_wait, done.wait_for(Option::is_some)).await;
            return match finished {
                Ok(Ok(outcome)) => {
                    let mut outcome = outcome.clone().expect("waited for Some");
                    outcome.replayed = true;
                    Ok(outcome)
                }
                _ => Err(ExecuteError::InFlight),
            };
        }
        let sender = sender.expect("first of its key");
        let _guard = InFlightGuard { in_flight: &self.in_flight, key };
        let (reply, answer) = oneshot::channel();
        self.queue.try_send(Submission { request, reply }).map_err(|_| ExecuteError::Overloaded)?;
        let outcome = answer.await.map_err(|_| ExecuteError::Unavailable)??;
        sender.send_replace(Some(outcome.clone()));
        Ok(outcome)
    }
}

/// Forgets an in-flight key however its request ends (answered, failed, or dropped by a gone client).
struct InFlightGuard<'a> {
    in_flight: &'a Mutex<HashMap<KeyId, InFlight>>,
    key: KeyId,
}

impl Drop for InFlightGuard<'_> {
    fn drop(&mut self) {
        if let Ok(mut in_flight) = self.in_flight.lock() {
            in_flight.remove(&self.key);
        }
    }
}

fn reused_key() -> Outcome {
    let problem = Problem::new(
        ProblemCode::IdempotencyKeyReused,
        "this idempotency key was used with a different request; use a new key for a new request",
    );
    Outcome { status: problem.status, body: json!(problem), replayed: false }
}

/// A stream's state, of whichever kind, as its snapshot stores it.
#[derive(Debug, Clone)]
enum StreamState {
    Asset(Asset),
    Wallet(Wallet),
    Transfer(Transfer),
}

impl StreamState {
    fn from_snapshot(stream: &StreamId, state: serde_json::Value) -> anyhow::Result<StreamState> {
        Ok(match stream {
            StreamId::Asset(_) => StreamState::Asset(serde_json::from_value(state)?),
            StreamId::Wallet(_) => StreamState::Wallet(serde_json::from_value(state)?),
            StreamId::Transfer(_) => StreamState::Transfer(serde_json::from_value(state)?),
        })
    }

    fn of(world: &World, stream: &StreamId) -> StreamState {
        match stream {
            StreamId::Asset(code) => StreamState::Asset(world.assets.get(code).cloned().unwrap_or_default()),
            StreamId::Wallet(id) => StreamState::Wallet(world.wallets.get(id).cloned().unwrap_or_default()),
            StreamId::Transfer(id) => StreamState::Transfer(world.transfers.get(id).cloned().unwrap_or_default()),
        }
    }

    /// The snapshot's JSON text, serialized straight from the state (no intermediate `Value`).
    fn to_snapshot(&self) -> String {
        let text = match self {
            StreamState::Asset(state) => serde_json::to_string(state),
            StreamState::Wallet(state) => serde_json::to_string(state),
            StreamState::Transfer(state) => serde_json::to_string(state),
        };
        text.expect("states serialize to JSON")
    }

    /// Whether the stream has any event.
    fn exists(&self) -> bool {
        !matches!(
            self,
            StreamState::Asset(Asset::Undefined)
                | StreamState::Wallet(Wallet::Unopened)
                | StreamState::Transfer(Transfer::Unrecorded)
        )
    }

    fn put(self, world: &mut World, stream: &StreamId) {
        match (stream, self) {
            (StreamId::Asset(code), StreamState::Asset(state)) => {
                world.assets.insert(code.clone(), state);
            }
            (StreamId::Wallet(id), StreamState::Wallet(state)) => {
                world.wallets.insert(*id, state);
            }
            (StreamId::Transfer(id), StreamState::Transfer(state)) => {
                world.transfers.insert(*id, state);
            }
            (stream, state) => unreachable!("state {state:?} loaded for stream {stream}"),
        }
    }
}

/// What a batch attempt decided for one command.
enum Decision {
    /// Answered without deciding: a replay or a refused key.
    Answered(Outcome),
    /// The same key as an earlier command of this batch (its first request's client went away and retried):
    /// answered as that command was.
    SameKeyAs { index: usize, fingerprint: [u8; 32] },
    /// Decided; `draft` lacks only its position, known after the insert.
    Decided { status: u16, draft: serde_json::Value, events: std::ops::Range<usize>, position_of: Option<StreamId> },
}

/// The latest state of each stream (asset or wallet) this process knows, from its own writes and its reads,
/// with its head; shared by the appenders. Batches are decided against it without a read, and written only if
/// every stream is still at the version known here; when one is not, it is forgotten and read again.
type Known = Arc<Mutex<HashMap<StreamId, (StreamHead, StreamState)>>>;

struct Appender {
    pool: PgPool,
    notifier: Notifier,
    batch_size_max: usize,
    append_retries_max: u32,
    known: Known,
    recent: RecentKeys,
}

/// Hashes of the idempotency keys this process answered lately, shared by the appenders. A batch whose keys
/// are all new here skips reading stored answers: the key's primary key still refuses one that was used
/// (by another process, or before a restart), and the batch is then decided again after reading them.
#[derive(Clone)]
struct RecentKeys {
    inner: Arc<Mutex<RecentInner>>,
    hasher: std::hash::RandomState,
}

struct RecentInner {
    seen: std::collections::HashSet<u64>,
    order: std::collections::VecDeque<u64>,
}

impl RecentKeys {
    fn new() -> RecentKeys {
        let inner = RecentInner { seen: Default::default(), order: Default::default() };
        RecentKeys { inner: Arc::new(Mutex::new(inner)), hasher: std::hash::RandomState::new() }
    }

    fn hash(&self, request: &CommandRequest) -> u64 {
        use std::hash::BuildHasher;
        self.hasher.hash_one((&request.principal, &request.idempotency_key))
    }

    /// Whether any of these keys may have been answered here (a hash collision only costs a read).
    fn any_seen(&self, requests: &[&CommandRequest]) -> bool {
        let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        requests.iter().any(|request| inner.seen.contains(&self.hash(request)))
    }

    fn remember(&self, requests: &[&CommandRequest]) {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        for request in requests {
            let hash = self.hash(request);
            if inner.seen.insert(hash) {
                inner.order.push_back(hash);
            }
        }
        while inner.order.len() > RECENT_KEYS_MAX {
            if let Some(oldest) = inner.order.pop_front() {
                inner.seen.remove(&oldest);
            }
        }
    }
}

/// Why an attempt failed, and whether trying again may succeed.
enum AttemptError {
    Retryable {
        conflict: bool,
        cause: anyhow::Error,
    },
    /// An idempotency key of the batch had an answer stored already, and the attempt had not read the stored
    /// answers: decide again after reading them.
    KeyUsed,
    Fatal(anyhow::Error),
}

impl From<anyhow::Error> for AttemptError {
    fn from(cause: anyhow::Error) -> AttemptError {
        let retryable = cause.chain().any(|source| source.downcast_ref::<sqlx::Error>().is_some_and(is_transient));
        if retryable {
            AttemptError::Retryable { conflict: false, cause }
        } else {
            AttemptError::Fatal(cause)
        }
    }
}

impl From<sqlx::Error> for AttemptError {
    fn from(error: sqlx::Error) -> AttemptError {
        if matches!(&error, sqlx::Error::Database(database) if database.constraint() == Some("idempotency_keys_pkey")) {
            return AttemptError::KeyUsed;
        }
        let conflict = matches!(&error, sqlx::Error::Database(database) if database.constraint() == Some("events_stream_version_key"));
        if conflict || is_transient(&error) {
            AttemptError::Retryable { conflict, cause: error.into() }
        } else {
            AttemptError::Fatal(error.into())
        }
    }
}

/// Errors after which the same batch may succeed: lost races, deadlocks, serialization failures,
/// timeouts and lost connections.
fn is_transient(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Database(database) => {
            matches!(
                database.code().as_deref(),
                Some("23505" | "40001" | "40P01" | "57014" | "57P01" | "57P02" | "57P03" | "08006" | "08003" | "25P03")
            )
        }
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Protocol(_) => true,
        _ => false,
    }
}

impl Appender {
    /// Takes a batch whenever it is free (what has queued up, at most `batch_size_max`) and processes it.
    async fn run(mut self, queue: Arc<tokio::sync::Mutex<mpsc::Receiver<Submission>>>) {
        loop {
            let batch = {
                let mut queue = queue.lock().await;
                let Some(first) = queue.recv().await else { break };
                let mut batch = vec![first];
                while batch.len() < self.batch_size_max {
                    match queue.try_recv() {
                        Ok(next) => batch.push(next),
                        Err(_) => break,
                    }
                }
                batch
            };
            metrics::histogram!("tally_batch_size").record(batch.len() as f64);
            self.process(batch).await;
        }
    }

    /// Runs a batch, retrying transient failures; a batch that fails for good is split in halves,
    /// so that one poisoned command fails alone and the others keep their outcomes.
    async fn process(&mut self, batch: Vec<Submission>) {
        let mut pending = vec![batch];
        while let Some(batch) = pending.pop() {
            let requests: Vec<&CommandRequest> = batch.iter().map(|submission| &submission.request).collect();
            let mut backoff = RETRY_BACKOFF_INITIAL;
            let mut attempt = 0;
            let mut read_answers = self.recent.any_seen(&requests);
            let mut locked = false;
            let result = loop {
                match self.attempt(&requests, read_answers, locked).await {
                    Ok(outcomes) => {
                        self.recent.remember(&requests);
                        break Ok(outcomes);
                    }
                    // Only without the read (see `attempt`): decide again, reading the stored answers first.
                    Err(AttemptError::KeyUsed) => {
                        metrics::counter!("tally_append_retries_total").increment(1);
                        read_answers = true;
                    }
                    Err(AttemptError::Retryable { conflict, cause }) if attempt < self.append_retries_max => {
                        attempt += 1;
                        metrics::counter!("tally_append_retries_total").increment(1);
                        if conflict {
                            metrics::counter!("tally_append_conflicts_total").increment(1);
                        }
                        tracing::debug!(attempt, error = format!("{cause:#}"), "append failed; retrying");
                        if conflict && !locked {
                            // Another writer moved a stream: decide again at once, holding the append lock
                            // throughout, so that the same race cannot repeat.
                            locked = true;
                        } else {
                            tokio::time::sleep(backoff).await;
                            backoff *= 2;
                        }
                    }
                    Err(AttemptError::Retryable { conflict, cause }) => {
                        tracing::warn!(attempt, error = format!("{cause:#}"), "append kept failing; giving up");
                        break Err(if conflict {
                            ExecuteError::ConcurrencyConflict
                        } else {
                            ExecuteError::Unavailable
                        });
                    }
                    Err(AttemptError::Fatal(cause)) => {
                        tracing::error!(commands = batch.len(), error = format!("{cause:#}"), "append failed");
                        break Err(ExecuteError::Internal);
                    }
                }
            };
            match result {
                Ok((outcomes, head)) => {
                    for (submission, outcome) in batch.into_iter().zip(outcomes) {
                        let _client_may_be_gone = submission.reply.send(Ok(outcome));
                    }
                    if let Some(position) = head {
                        self.notifier.notify(position);
                    }
                }
                Err(ExecuteError::Internal) if batch.len() > 1 => {
                    let mut first = batch;
                    let second = first.split_off(first.len() / 2);
                    pending.push(second);
                    pending.push(first);
                }
                Err(error) => {
                    for submission in batch {
                        let _client_may_be_gone = submission.reply.send(Err(error.clone()));
                    }
                }
            }
        }
    }

    /// Reads stored answers (with `read_answers`), loads what the commands depend on, decides them in order and
    /// writes the batch in one statement, which goes ahead only if every stream read is still at the version
    /// the decisions saw. Returns each command's outcome and the new head position, if anything was appended.
    /// On failure the streams read are forgotten, so that the next attempt reads them again.
    ///
    /// `locked` (after a conflict): the attempt holds the append lock from before its first read to its commit
    /// and reads every stream afresh, so no other writer can move what it decides on, and it cannot conflict.
    async fn attempt(
        &mut self,
        requests: &[&CommandRequest],
        read_answers: bool,
        locked: bool,
    ) -> Result<(Vec<Outcome>, Option<i64>), AttemptError> {
        let mut clock = PhaseClock::start();
        let mut session = Session::open(&self.pool, locked).await?;
        clock.lap(if locked { "lock" } else { "acquire" });
        let connection = session.connection();

        // 1. Answer the keys already used (by an earlier request, or by another process); decide the rest.
        let stored = if read_answers {
            let keys: Vec<KeyId> = requests.iter().map(|request| key_of(request)).collect();
            let stored = event_store::stored_responses(connection, &keys).await?;
            clock.lap("read_answers");
            stored
        } else {
            HashMap::new()
        };

        // 2. Load everything the commands to decide depend on.
        let commands: Vec<&Command> = requests
            .iter()
            .filter(|request| !stored.contains_key(&key_of(request)))
            .map(|request| &request.command)
            .collect();
        let loaded = self.load(connection, &commands, locked).await?;
        clock.lap("load");
        let read: Vec<StreamId> = loaded.read.iter().map(|(stream, _)| stream.clone()).collect();
        let result = self.decide_and_write(connection, requests, &stored, read_answers, loaded, &mut clock).await;
        let result = match result {
            Ok(written) => session.finish().await.map(|()| written).map_err(AttemptError::from),
            Err(error) => Err(error),
        };
        match result {
            // What the batch wrote is known only now that it is committed.
            Ok(Written { outcomes, head, learned }) => {
                for (stream, head, state) in learned {
                    self.remember(stream, head, state);
                }
                Ok((outcomes, head))
            }
            Err(error) => {
                self.forget(&read);
                Err(error)
            }
        }
    }

    /// Steps 3 and 4 of [`Appender::attempt`].
    async fn decide_and_write(
        &mut self,
        connection: &mut sqlx::PgConnection,
        requests: &[&CommandRequest],
        stored: &HashMap<KeyId, event_store::StoredResponse>,
        read_answers: bool,
        loaded: Loaded,
        clock: &mut PhaseClock,
    ) -> Result<Written, AttemptError> {
        let Loaded { mut world, mut heads, read } = loaded;
        let now = envelope::truncate_to_micros(Utc::now());
        // Never earlier than the last event of any stream touched, so that each stream's `recorded_at`
        // never goes backwards, even across processes whose clocks disagree (`as_of` reads rely on it).
        let recorded_at = heads.values().map(|head| head.recorded_at).fold(now, DateTime::max);

        // 3. Decide in order, each against the state the previous ones left.
        let mut decisions = Vec::with_capacity(requests.len());
        let mut events: Vec<NewEvent> = Vec::new();
        let mut touched: BTreeSet<StreamId> = BTreeSet::new();
        let mut last_event_of: HashMap<StreamId, usize> = HashMap::new();
        let mut first_of_key: HashMap<KeyId, usize> = HashMap::new();
        for (index, request) in requests.iter().enumerate() {
            let key = key_of(request);
            if let Some(first) = first_of_key.get(&key) {
                decisions.push(Decision::SameKeyAs { index: *first, fingerprint: request.fingerprint });
                continue;
            }
            first_of_key.insert(key.clone(), index);
            if let Some(record) = stored.get(&key) {
                decisions.push(Decision::Answered(if record.fingerprint != request.fingerprint {
                    reused_key()
                } else {
                    metrics::counter!("tally_idempotent_replays_total").increment(1);
                    Outcome { status: record.status, body: record.body.clone(), replayed: true }
                }));
                continue;
            }
            let allowed = check_owner(request, &world).and_then(|()| check_expected_version(request, &heads, &world));
            let decided = allowed.and_then(|()| {
                ledger::decide(&world, &request.command).map_err(|error| Box::new(Problem::from(&error)))
            });
            match decided {
                Err(problem) => {
                    decisions.push(Decision::Decided {
                        status: problem.status,
                        draft: json!(*problem),
                        events: 0..0,
                        position_of: None,
                    });
                }
                Ok(changes) => {
                    let metadata = Arc::new(json!(EventMetadata {
                        idempotency_key: Some(request.idempotency_key.clone()),
                        principal: Some(request.principal.clone()),
                        correlation_id: request.request_id.clone(),
                        causation_id: causation_of(&request.command),
                        request_id: request.request_id.clone(),
                    }));
                    let start = events.len();
                    for change in &changes {
                        world.apply(change);
                        let head = heads.entry(change.stream.clone()).or_insert(StreamHead::EMPTY);
                        let sealed = change.seal(head.version, &head.last_hash, Uuid::now_v7(), &metadata, recorded_at);
                        *head = StreamHead {
                            version: sealed.version,
                            position: head.position,
                            last_hash: sealed.hash,
                            recorded_at,
                        };
                        last_event_of.insert(change.stream.clone(), events.len());
                        touched.insert(change.stream.clone());
                        events.push(NewEvent {
                            stream_id: sealed.stream_id,
                            version: sealed.version,
                            event_id: sealed.event_id,
                            event_type: sealed.event_type,
                            data: sealed.data,
                            metadata: Arc::clone(&metadata),
                            recorded_at,
                            hash: sealed.hash,
                        });
                    }
                    let (status, draft, position_of) = answer(&request.command, &changes, &world, &heads, recorded_at);
                    decisions.push(Decision::Decided { status, draft, events: start..events.len(), position_of });
                }
            }
        }
        clock.lap("decide");

        // 4. Write events, snapshots, owners and answers at once; the write draws the positions.
        let mut snapshots = Vec::with_capacity(touched.len());
        let mut owners = Vec::new();
        let mut learned = Vec::with_capacity(touched.len());
        for stream in &touched {
            let head = heads[stream];
            let state = StreamState::of(&world, stream);
            if let (StreamId::Wallet(_), StreamState::Wallet(Wallet::Open(open))) = (stream, &state) {
                if open.kind == tally_shared::wallet::WalletKind::User && head.version == 1 {
                    owners.push((open.owner_id.clone(), open.asset.to_string(), open.wallet_id.0));
                }
            }
            snapshots.push(Snapshot {
                stream_id: stream.to_string(),
                version: head.version,
                last_hash: head.last_hash,
                last_event: last_event_of[stream],
                state: state.to_snapshot(),
            });
            learned.push((stream.clone(), state));
        }

        let mut outcomes: Vec<Outcome> = Vec::with_capacity(decisions.len());
        // Which requests were decided here, with where their positions come from: their answers are stored.
        let mut decided: Vec<(usize, AnswerPosition)> = Vec::new();
        for (index, decision) in decisions.into_iter().enumerate() {
            match decision {
                Decision::Answered(outcome) => outcomes.push(outcome),
                Decision::SameKeyAs { index: first, fingerprint } => {
                    outcomes.push(if requests[first].fingerprint == fingerprint {
                        Outcome { replayed: true, ..outcomes[first].clone() }
                    } else {
                        reused_key()
                    });
                }
                Decision::Decided { status, draft, events: range, position_of } => {
                    let position = match (range.clone().last(), position_of) {
                        (Some(last), _) => AnswerPosition::Appended(last),
                        (None, Some(stream)) => match (last_event_of.get(&stream), heads.get(&stream)) {
                            (Some(index), _) => AnswerPosition::Appended(*index),
                            (None, Some(head)) => AnswerPosition::Existing(head.position),
                            (None, None) => AnswerPosition::None,
                        },
                        (None, None) => AnswerPosition::None,
                    };
                    decided.push((index, position));
                    outcomes.push(Outcome { status, body: draft, replayed: false });
                }
            }
        }
        let completions: Vec<Completion<'_>> = decided
            .iter()
            .map(|&(index, position)| Completion {
                principal: &requests[index].principal,
                idempotency_key: &requests[index].idempotency_key,
                fingerprint: requests[index].fingerprint,
                status: outcomes[index].status,
                body: &outcomes[index].body,
                position,
                shows_position: shows_position(outcomes[index].status),
            })
            .collect();
        // Only read: checked by the write. Appended to: refused by `(stream_id, version)` if it moved.
        let expected: Vec<(String, i64)> = read
            .iter()
            .filter(|(stream, _)| !touched.contains(stream))
            .map(|(stream, version)| (stream.to_string(), *version))
            .collect();
        let write = BatchWrite {
            expected: &expected,
            events: &events,
            snapshots: &snapshots,
            recorded_at,
            owners: &owners,
            completions: &completions,
            now,
        };
        let positions = if write.is_empty() {
            Vec::new()
        } else {
            let written = event_store::write_batch(connection, &write).await.map_err(|error| {
                match AttemptError::from(error) {
                    // Read, yet taken: another process stored the key since the read, a race like any other.
                    AttemptError::KeyUsed if read_answers => AttemptError::Retryable {
                        conflict: true,
                        cause: anyhow::anyhow!("another process stored an idempotency key of the batch meanwhile"),
                    },
                    other => other,
                }
            })?;
            match written {
                event_store::Written::Appended { positions } => positions,
                event_store::Written::Stale => {
                    return Err(AttemptError::Retryable {
                        conflict: true,
                        cause: anyhow::anyhow!("a stream the batch was decided against moved since it was read"),
                    })
                }
            }
        };
        clock.lap("write");

        drop(completions);
        for &(index, position) in &decided {
            let position = match position {
                AnswerPosition::Appended(event) => Some(positions[event]),
                AnswerPosition::Existing(position) => Some(position),
                AnswerPosition::None => None,
            };
            let outcome = &mut outcomes[index];
            if let (Some(position), Some(fields), true) =
                (position, outcome.body.as_object_mut(), shows_position(outcome.status))
            {
                fields.insert("position".to_owned(), json!(position));
            }
        }
        let learned = learned
            .into_iter()
            .map(|(stream, state)| {
                let head = StreamHead { position: positions[last_event_of[&stream]], ..heads[&stream] };
                (stream, head, state)
            })
            .collect();
        metrics::counter!("tally_appended_events_total").increment(events.len() as u64);
        metrics::counter!("tally_commands_total").increment(decided.len() as u64);
        Ok(Written { outcomes, head: positions.last().copied(), learned })
    }

    /// Gathers what `commands` depend on: from what this process knows of each stream where it can (unless
    /// `fresh`), with a plain read of the rest (several rounds: a wallet names its asset, the asset its system
    /// wallets). No row lock: [`event_store::write_batch`] refuses the batch if any stream read here has moved.
    async fn load(
        &mut self,
        connection: &mut sqlx::PgConnection,
        commands: &[&Command],
        fresh: bool,
    ) -> Result<Loaded, AttemptError> {
        let mut world = World::default();
        for command in commands {
            for stream in minted_streams(command) {
                StreamState::of(&World::default(), &stream).put(&mut world, &stream);
            }
        }
        let mut heads = HashMap::new();
        let mut read: BTreeMap<StreamId, i64> = BTreeMap::new();
        let mut owners: BTreeSet<(String, AssetCode)> = BTreeSet::new();
        for _ in 0..DEPENDENCY_ROUNDS_MAX {
            let mut named = false;
            let mut misses = Vec::new();
            for command in commands {
                for dependency in ledger::dependencies(&world, command) {
                    named = true;
                    match dependency {
                        Dependency::Owner(owner, asset) => {
                            world.owners.insert((owner.clone(), asset.clone()), None);
                            owners.insert((owner, asset));
                        }
                        Dependency::Stream(stream) => {
                            let known = if fresh {
                                None
                            } else {
                                self.known.lock().unwrap_or_else(PoisonError::into_inner).get(&stream).cloned()
                            };
                            match known {
                                Some((head, state)) => {
                                    state.put(&mut world, &stream);
                                    read.insert(stream.clone(), head.version);
                                    heads.insert(stream, head);
                                }
                                None => misses.push(stream),
                            }
                        }
                    }
                }
            }
            if !named {
                break;
            }
            if misses.is_empty() {
                continue;
            }
            misses.sort();
            misses.dedup();
            let ids: Vec<String> = misses.iter().map(ToString::to_string).collect();
            let mut found: HashMap<String, event_store::LoadedStream> = event_store::load_streams(connection, &ids)
                .await?
                .into_iter()
                .map(|loaded| (loaded.stream_id.clone(), loaded))
                .collect();
            for stream in misses {
                match found.remove(&stream.to_string()) {
                    Some(loaded) => {
                        let state = StreamState::from_snapshot(&stream, loaded.state)?;
                        self.remember(stream.clone(), loaded.head, state.clone());
                        state.put(&mut world, &stream);
                        read.insert(stream.clone(), loaded.head.version);
                        heads.insert(stream, loaded.head);
                    }
                    None => {
                        StreamState::of(&World::default(), &stream).put(&mut world, &stream);
                        read.insert(stream, 0);
                    }
                }
            }
        }
        if !owners.is_empty() {
            let pairs: Vec<(String, String)> =
                owners.iter().map(|(owner, asset)| (owner.clone(), asset.to_string())).collect();
            let existing = event_store::load_owners(connection, &pairs).await?;
            for (owner, asset) in owners {
                let wallet = existing.get(&(owner.clone(), asset.to_string())).map(|id| WalletId(*id));
                world.owners.insert((owner, asset), wallet);
            }
        }
        // Dependencies still unnamed after the last round: such a command is retried rather than decided on a
        // partial world.
        if commands.iter().any(|command| !ledger::dependencies(&world, command).is_empty()) {
            self.known.lock().unwrap_or_else(PoisonError::into_inner).clear();
            return Err(AttemptError::Retryable {
                conflict: true,
                cause: anyhow::anyhow!("dependencies kept appearing while loading"),
            });
        }
        Ok(Loaded { world, heads, read: read.into_iter().collect() })
    }

    /// Keeps the latest state of an existing stream, unless a newer one is known already. Transfers are not
    /// kept: every money command makes one and only a reversal ever reads it again, so keeping them would
    /// only grow the map.
    fn remember(&self, stream: StreamId, head: StreamHead, state: StreamState) {
        if matches!(state, StreamState::Transfer(_)) || !state.exists() {
            return;
        }
        let mut known = self.known.lock().unwrap_or_else(PoisonError::into_inner);
        if known.len() >= KNOWN_STREAMS_MAX && !known.contains_key(&stream) {
            known.clear();
        }
        match known.get(&stream) {
            Some((newer, _)) if newer.version > head.version => {}
            _ => {
                known.insert(stream, (head, state));
            }
        }
    }

    /// Forgets these streams: what this process knew of them may be out of date.
    fn forget(&self, streams: &[StreamId]) {
        let mut known = self.known.lock().unwrap_or_else(PoisonError::into_inner);
        for stream in streams {
            known.remove(stream);
        }
    }
}

/// Whether an answer with this status shows its position in its body: only successes have one to show.
fn shows_position(status: u16) -> bool {
    status < 300
}

/// What a written batch answers, and what it taught this process (the streams it appended to, with their new
/// heads), to remember once it is committed.
struct Written {
    outcomes: Vec<Outcome>,
    head: Option<i64>,
    learned: Vec<(StreamId, StreamHead, StreamState)>,
}

/// The connection an attempt runs on. Optimistic: a plain connection, on which the write is a transaction of
/// its own. Locked: a transaction that took the append lock before anything else, committed at the end.
enum Session {
    Optimistic(sqlx::pool::PoolConnection<sqlx::Postgres>),
    Locked(sqlx::Transaction<'static, sqlx::Postgres>),
}

impl Session {
    async fn open(pool: &PgPool, locked: bool) -> Result<Session, sqlx::Error> {
        if !locked {
            return Ok(Session::Optimistic(pool.acquire().await?));
        }
        let mut transaction = pool.begin().await?;
        event_store::take_append_lock(&mut transaction).await?;
        Ok(Session::Locked(transaction))
    }

    fn connection(&mut self) -> &mut sqlx::PgConnection {
        match self {
            Session::Optimistic(connection) => connection,
            Session::Locked(transaction) => transaction,
        }
    }

    async fn finish(self) -> Result<(), sqlx::Error> {
        match self {
            Session::Optimistic(_) => Ok(()),
            Session::Locked(transaction) => transaction.commit().await,
        }
    }
}

/// What a batch is decided against.
struct Loaded {
    world: World,
    /// Heads of the streams that exist.
    heads: HashMap<StreamId, StreamHead>,
    /// Every stream read, with the version read (0: it did not exist).
    read: Vec<(StreamId, i64)>,
}

/// Times the phases of a batch attempt into `tally_append_phase_seconds{phase}`, so that where a batch
/// spends its time is on `/metrics` rather than only in a profiler.
struct PhaseClock {
    last: std::time::Instant,
}

impl PhaseClock {
    fn start() -> PhaseClock {
        PhaseClock { last: std::time::Instant::now() }
    }

    fn lap(&mut self, phase: &'static str) {
        let now = std::time::Instant::now();
        metrics::histogram!("tally_append_phase_seconds", "phase" => phase).record((now - self.last).as_secs_f64());
        self.last = now;
    }
}

/// Streams whose ids this service just minted (UUID v7) for the command: they cannot exist yet, so they
/// are neither read nor locked. Should one exist after all, its first event's `(stream_id, 1)` is refused.
fn minted_streams(command: &Command) -> Vec<StreamId> {
    match command {
        Command::OpenWallet { wallet_id, .. } => vec![StreamId::Wallet(*wallet_id)],
        Command::Move { transfer_id, .. } | Command::Transfer { transfer_id, .. } => {
            vec![StreamId::Transfer(*transfer_id)]
        }
        Command::Reverse { reversal_id, .. } => vec![StreamId::Transfer(*reversal_id)],
        Command::DefineAsset(define) => {
            let system = define.system_wallets;
            [system.treasury, system.revenue, system.fees].map(StreamId::Wallet).to_vec()
        }
        Command::ChangeStatus { .. } => Vec::new(),
    }
}

fn key_of(request: &CommandRequest) -> KeyId {
    (request.principal.clone(), request.idempotency_key.clone())
}

fn causation_of(command: &Command) -> Option<String> {
    Some(match command {
        Command::DefineAsset(define) => format!("asset-{}", define.code),
        Command::OpenWallet { wallet_id, .. } | Command::ChangeStatus { wallet_id, .. } => {
            format!("wallet-{wallet_id}")
        }
        Command::Move { transfer_id, .. } | Command::Transfer { transfer_id, .. } => format!("transfer-{transfer_id}"),
        Command::Reverse { reversal_id, .. } => format!("transfer-{reversal_id}"),
    })
}

/// A token bound to an owner acts only on that owner's user wallets: the wallet of a move or a status change,
/// the sender of a transfer, the owner of a new wallet, the user wallets an original transfer debited (or, for
/// money it issued, credited) for a reversal. Anything else is answered as if it did not exist, before
/// `If-Match` so that not even a version leaks.
fn check_owner(request: &CommandRequest, world: &World) -> Result<(), Box<Problem>> {
    let Some(owner) = &request.owner else { return Ok(()) };
    let user_wallet = |wallet_id: &WalletId| match world.wallets.get(wallet_id) {
        Some(Wallet::Open(open)) if open.kind == tally_shared::wallet::WalletKind::User => Some(open),
        _ => None,
    };
    let owns = |wallet_id: &WalletId| user_wallet(wallet_id).is_some_and(|open| &open.owner_id == owner);
    let refusal = match &request.command {
        Command::DefineAsset(_) => None,
        Command::OpenWallet { owner_id, .. } => {
            (owner_id != owner).then_some(ledger::DomainError::WalletNotFound { wallet_id: None })
        }
        Command::Move { wallet_id, .. } | Command::ChangeStatus { wallet_id, .. } => {
            (!owns(wallet_id)).then_some(ledger::DomainError::WalletNotFound { wallet_id: Some(*wallet_id) })
        }
        Command::Transfer { from_wallet_id, .. } => {
            (!owns(from_wallet_id)).then_some(ledger::DomainError::WalletNotFound { wallet_id: Some(*from_wallet_id) })
        }
        Command::Reverse { transfer_id, .. } => {
            let owned = match world.transfers.get(transfer_id) {
                Some(Transfer::Recorded(original)) => {
                    let debited: Vec<&WalletId> = original
                        .legs
                        .iter()
                        .map(|leg| &leg.from_wallet_id)
                        .filter(|id| user_wallet(id).is_some())
                        .collect();
                    let credited =
                        original.legs.iter().map(|leg| &leg.to_wallet_id).filter(|id| user_wallet(id).is_some());
                    let accountable = if debited.is_empty() { credited.collect() } else { debited };
                    !accountable.is_empty() && accountable.into_iter().all(owns)
                }
                _ => false,
            };
            (!owned).then_some(ledger::DomainError::TransferNotFound { transfer_id: Some(*transfer_id) })
        }
    };
    match refusal {
        Some(error) => Err(Box::new(Problem::from(&error))),
        None => Ok(()),
    }
}

/// `If-Match` refers to the subject wallet's version as the batch has it so far.
fn check_expected_version(
    request: &CommandRequest,
    heads: &HashMap<StreamId, StreamHead>,
    world: &World,
) -> Result<(), Box<Problem>> {
    let (Some(expected), Some(wallet_id)) = (request.expected_version, request.command.subject_wallet()) else {
        return Ok(());
    };
    if !matches!(world.wallets.get(&wallet_id), Some(Wallet::Open(_))) {
        return Ok(());
    }
    let actual = heads.get(&StreamId::Wallet(wallet_id)).map_or(0, |head| head.version);
    if actual != expected {
        let detail = format!("wallet {wallet_id} is at version {actual}, not {expected}");
        return Err(Box::new(
            Problem::new(ProblemCode::VersionMismatch, detail)
                .with("wallet_id", wallet_id)
                .with("expected_version", expected)
                .with("version", actual),
        ));
    }
    Ok(())
}

/// The answer of a decided command, without its position (set after the insert). For commands that
/// appended nothing (freezing a frozen wallet), `position_of` names the stream whose position to report.
fn answer(
    command: &Command,
    changes: &[Change],
    world: &World,
    heads: &HashMap<StreamId, StreamHead>,
    now: DateTime<Utc>,
) -> (u16, serde_json::Value, Option<StreamId>) {
    match command {
        Command::DefineAsset(define) => {
            let Some(Asset::Defined(definition)) = world.assets.get(&define.code) else { unreachable!("just defined") };
            let view = AssetDefinedView {
                code: definition.code.to_string(),
                scale: definition.scale.places(),
                cash_in_fee: definition.cash_in_fee.as_ref().map(|policy| FeePolicyView {
                    percent: policy.percent.to_string(),
                    fixed: definition.scale.format(policy.fixed),
                    min: policy.min.map(|min| definition.scale.format(min)),
                    max: policy.max.map(|max| definition.scale.format(max)),
                }),
                system_wallets: definition.system_wallets,
                position: 0,
            };
            (201, json!(view), None)
        }
        Command::OpenWallet { wallet_id, .. } | Command::ChangeStatus { wallet_id, .. } => {
            let status = if matches!(command, Command::OpenWallet { .. }) { 201 } else { 200 };
            let metadata = changes
                .iter()
                .find_map(|change| match &change.event {
                    Event::Wallet(WalletEvent::WalletOpened(opened)) => Some(opened.metadata.clone()),
                    _ => None,
                })
                .unwrap_or(serde_json::Value::Null);
            let stream = StreamId::Wallet(*wallet_id);
            (status, wallet_view(world, heads, *wallet_id, metadata, now), Some(stream))
        }
        Command::Move { .. } | Command::Transfer { .. } | Command::Reverse { .. } => {
            (201, transfer_view(changes, heads, now), None)
        }
    }
}

fn wallet_view(
    world: &World,
    heads: &HashMap<StreamId, StreamHead>,
    wallet_id: WalletId,
    metadata: serde_json::Value,
    now: DateTime<Utc>,
) -> serde_json::Value {
    let Some(Wallet::Open(open)) = world.wallets.get(&wallet_id) else { unreachable!("decided on an open wallet") };
    let version = heads.get(&StreamId::Wallet(wallet_id)).map_or(0, |head| head.version);
    let mut view = json!(WalletView {
        wallet_id,
        owner_id: open.owner_id.clone(),
        asset: open.asset.to_string(),
        kind: open.kind.as_str().to_owned(),
        status: open.status.as_str().to_owned(),
        balance: open.scale.format(open.balance),
        overdraft_limit: open.overdraft_limit.map(|limit| open.scale.format(limit)),
        version,
        metadata,
        opened_at: now,
        updated_at: now,
        position: None,
    });
    // A status change knows when it happened, not when the wallet was opened: query-service has that.
    if version > 1 {
        if let Some(fields) = view.as_object_mut() {
            fields.remove("opened_at");
        }
    }
    view
}

fn transfer_view(changes: &[Change], heads: &HashMap<StreamId, StreamHead>, now: DateTime<Utc>) -> serde_json::Value {
    let recorded = changes
        .iter()
        .find_map(|change| match &change.event {
            Event::Transfer(TransferEvent::TransferRecorded(recorded)) => Some(recorded),
            _ => None,
        })
        .expect("a money command records its transfer");
    let scale = recorded.scale;
    // Each touched wallet's balance and version after this command: its last posting here.
    let mut versions: HashMap<&StreamId, i64> = HashMap::new();
    let mut balances: Vec<BalanceView> = Vec::new();
    let postings = changes.iter().filter_map(|change| match (&change.stream, &change.event) {
        (
            StreamId::Wallet(id),
            Event::Wallet(WalletEvent::WalletDebited(posting) | WalletEvent::WalletCredited(posting)),
        ) => Some((&change.stream, *id, posting)),
        _ => None,
    });
    let counts = changes.iter().fold(HashMap::new(), |mut counts: HashMap<&StreamId, i64>, change| {
        *counts.entry(&change.stream).or_default() += 1;
        counts
    });
    for (stream, wallet_id, posting) in postings {
        let seen = versions.entry(stream).or_default();
        *seen += 1;
        let version = heads[stream].version - counts[stream] + *seen;
        let balance = scale.format(posting.balance_after);
        match balances.iter_mut().find(|view| view.wallet_id == wallet_id) {
            Some(view) => {
                view.balance = balance;
                view.version = version;
            }
            None => balances.push(BalanceView { wallet_id, balance, version }),
        }
    }
    json!(TransferView {
        transfer_id: recorded.transfer_id,
        kind: recorded.kind.as_str().to_owned(),
        asset: recorded.asset.to_string(),
        amount: scale.format(recorded.amount),
        fee: scale.format(recorded.fee),
        legs: recorded
            .legs
            .iter()
            .map(|leg| LegView {
                from_wallet_id: leg.from_wallet_id,
                to_wallet_id: leg.to_wallet_id,
                amount: scale.format(leg.amount)
            })
            .collect(),
        balances,
        reference: recorded.reference.clone(),
        metadata: recorded.metadata.clone(),
        reverses: recorded.reverses,
        reason: recorded.reason.clone(),
        position: 0,
        recorded_at: now,
        reversals: None,
    })
}
