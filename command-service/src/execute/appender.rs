//! The appender: the loop around the planner. It takes what has queued up as one batch (at most
//! `batch_size_max`), reads the answers already stored under its keys when it must, loads what the commands
//! depend on, has the batch planned, writes it in one statement (group commit), and retries or splits it.
//!
//! What a batch wrote is remembered (in [`Known`]) only once it is committed, so nothing is ever appended on
//! state that was not; a batch that failed forgets the streams it read, and reads them again.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use sqlx::{PgConnection, PgPool};
use tally_shared::asset::AssetCode;
use tally_shared::envelope::{self, StreamId};
use tally_shared::ledger::{self, Command, Dependency};
use tally_shared::wallet::WalletId;
use tokio::sync::mpsc;
use uuid::Uuid;

use super::known::Known;
use super::plan::{self, Loaded};
use super::recent_keys::RecentKeys;
use super::stream_state::StreamState;
use super::{CommandRequest, ExecuteError, Reply, Submission};
use crate::event_store::{self, Session, StoreError, Written};
use crate::notify::Notifier;

/// Rounds of dependency loading at most: a wallet names its asset, the asset its system wallets.
const DEPENDENCY_ROUNDS_MAX: usize = 4;
/// Pause before retrying a failed batch, doubled on each retry.
const RETRY_BACKOFF_INITIAL: Duration = Duration::from_millis(5);

pub struct Appender {
    pub pool: PgPool,
    pub notifier: Notifier,
    pub batch_size_max: usize,
    pub append_retries_max: u32,
    pub known: Known,
    pub recent: RecentKeys,
}

/// Why an attempt failed, and what to do next.
enum AttemptError {
    /// Trying again may succeed; `conflict`: another writer moved a stream the batch was decided on.
    Retryable {
        conflict: bool,
        cause: anyhow::Error,
    },
    /// An idempotency key of the batch had an answer stored already, and the attempt had not read the stored
    /// answers: decide again after reading them.
    KeyUsed,
    Fatal(anyhow::Error),
}

impl AttemptError {
    fn conflict(cause: &str) -> AttemptError {
        AttemptError::Retryable { conflict: true, cause: anyhow::anyhow!(cause.to_owned()) }
    }
}

impl From<StoreError> for AttemptError {
    fn from(error: StoreError) -> AttemptError {
        match error {
            StoreError::Transient(cause) => AttemptError::Retryable { conflict: false, cause },
            StoreError::Fatal(cause) => AttemptError::Fatal(cause),
        }
    }
}

/// How an attempt at a batch runs.
#[derive(Debug, Clone, Copy)]
struct Mode {
    /// Read the answers stored under the batch's keys first.
    read_answers: bool,
    /// Hold the append lock from before the first read to the commit, reading every stream afresh (after a
    /// conflict): no other writer can move what the batch decides on, so the race cannot repeat.
    locked: bool,
}

impl Appender {
    /// Takes a batch whenever it is free (what has queued up, at most `batch_size_max`) and processes it.
    pub async fn run(mut self, queue: Arc<tokio::sync::Mutex<mpsc::Receiver<Submission>>>) {
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
    /// so that one poisoned command fails alone and the others keep their answers.
    async fn process(&mut self, batch: Vec<Submission>) {
        let mut pending = vec![batch];
        while let Some(batch) = pending.pop() {
            let requests: Vec<&CommandRequest> = batch.iter().map(|submission| &submission.request).collect();
            match self.settle(&requests).await {
                Ok((replies, head)) => {
                    for (submission, reply) in batch.into_iter().zip(replies) {
                        let _client_may_be_gone = submission.reply_to.send(Ok(reply));
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
                        let _client_may_be_gone = submission.reply_to.send(Err(error.clone()));
                    }
                }
            }
        }
    }

    /// Attempts a batch until it is written or fails for good: a bounded number of retries of transient
    /// failures, with backoff; after a conflict at once, locked. Returns each command's reply and the new head.
    async fn settle(&mut self, requests: &[&CommandRequest]) -> Result<(Vec<Reply>, Option<i64>), ExecuteError> {
        let mut backoff = RETRY_BACKOFF_INITIAL;
        let mut retries = 0;
        let mut mode = Mode { read_answers: self.recent.any_seen(requests), locked: false };
        loop {
            let error = match self.attempt(requests, mode).await {
                Ok(written) => {
                    self.recent.remember(requests);
                    return Ok(written);
                }
                Err(error) => error,
            };
            match error {
                // Only without the read (see `attempt`): decide again, reading the stored answers first.
                AttemptError::KeyUsed => {
                    metrics::counter!("tally_append_retries_total").increment(1);
                    mode.read_answers = true;
                }
                AttemptError::Retryable { conflict, cause } if retries < self.append_retries_max => {
                    retries += 1;
                    metrics::counter!("tally_append_retries_total").increment(1);
                    tracing::debug!(retries, error = format!("{cause:#}"), "append failed; retrying");
                    if conflict {
                        metrics::counter!("tally_append_conflicts_total").increment(1);
                    } else {
                        // A lost connection may be a failover: the surviving server may not have the last
                        // commits others made visible on the old primary (a commit is visible there before its
                        // standby confirms it), so nothing known survives it. The next attempt reads afresh.
                        self.known.clear();
                    }
                    if conflict && !mode.locked {
                        mode.locked = true;
                    } else {
                        tokio::time::sleep(backoff).await;
                        backoff *= 2;
                    }
                }
                AttemptError::Retryable { conflict, cause } => {
                    tracing::warn!(retries, error = format!("{cause:#}"), "append kept failing; giving up");
                    return Err(if conflict { ExecuteError::ConcurrencyConflict } else { ExecuteError::Unavailable });
                }
                AttemptError::Fatal(cause) => {
                    tracing::error!(commands = requests.len(), error = format!("{cause:#}"), "append failed");
                    return Err(ExecuteError::Internal);
                }
            }
        }
    }

    /// One attempt: reads stored answers (in `mode.read_answers`), loads what the commands depend on, plans the
    /// batch and writes it in one statement, which goes ahead only if every stream read is still at the version
    /// the plan saw. On failure the streams read are forgotten, so that the next attempt reads them again.
    async fn attempt(
        &mut self,
        requests: &[&CommandRequest],
        mode: Mode,
    ) -> Result<(Vec<Reply>, Option<i64>), AttemptError> {
        let mut clock = PhaseClock::start();
        let mut session = Session::open(&self.pool, mode.locked).await?;
        clock.lap(if mode.locked { "lock" } else { "acquire" });
        let stored = if mode.read_answers {
            let keys: Vec<_> = requests.iter().map(|request| request.key()).collect();
            let stored = event_store::stored_answers(session.connection(), &keys).await?;
            clock.lap("read_answers");
            stored
        } else {
            HashMap::new()
        };
        let commands: Vec<&Command> = requests
            .iter()
            .filter(|request| !stored.contains_key(&request.key()))
            .map(|request| &request.command)
            .collect();
        let loaded = self.load(session.connection(), &commands, mode.locked).await?;
        clock.lap("load");
        let read: Vec<StreamId> = loaded.read.iter().map(|(stream, _)| stream.clone()).collect();

        let now = envelope::truncate_to_micros(Utc::now());
        let plan = plan::plan(loaded, requests, &stored, now, &mut Uuid::now_v7);
        clock.lap("decide");
        let written = write(session.connection(), &plan, requests, now, mode).await;
        let committed = match written {
            Ok(positions) => session.finish().await.map(|()| positions).map_err(AttemptError::from),
            Err(error) => Err(error),
        };
        let positions = match committed {
            Ok(positions) => positions,
            Err(error) => {
                self.known.forget(&read);
                return Err(error);
            }
        };
        clock.lap("write");
        metrics::counter!("tally_appended_events_total").increment(positions.len() as u64);
        metrics::counter!("tally_commands_total").increment(plan.decided() as u64);
        metrics::counter!("tally_idempotent_replays_total").increment(plan.replayed() as u64);
        let (replies, learned) = plan.commit(&positions);
        // What the batch wrote is known only now that it is committed.
        for (stream, head, state) in learned {
            self.known.remember(stream, head, state);
        }
        Ok((replies, positions.last().copied()))
    }

    /// Gathers what `commands` depend on: from what this process knows of each stream where it can (unless
    /// `fresh`), with a plain read of the rest (several rounds: a wallet names its asset, the asset its system
    /// wallets). No row lock: [`event_store::write_batch`] refuses the batch if any stream read here has moved.
    async fn load(
        &mut self,
        connection: &mut PgConnection,
        commands: &[&Command],
        fresh: bool,
    ) -> Result<Loaded, AttemptError> {
        let mut loading = Loading::default();
        for stream in commands.iter().flat_map(|command| minted_streams(command)) {
            StreamState::empty(&stream).put(&mut loading.loaded.world, &stream);
        }
        for _ in 0..DEPENDENCY_ROUNDS_MAX {
            let misses =
                loading.name_dependencies(commands, |stream| if fresh { None } else { self.known.get(stream) });
            let Some(misses) = misses else { break };
            if !misses.is_empty() {
                let ids: Vec<String> = misses.iter().map(ToString::to_string).collect();
                let found = event_store::load_streams(connection, &ids).await?;
                for (stream, head, state) in loading.found(misses, found)? {
                    self.known.remember(stream, head, state);
                }
            }
        }
        loading.owners(connection).await?;
        // Dependencies still unnamed after the last round: such a command is retried rather than decided on a
        // partial world.
        let world = &loading.loaded.world;
        if commands.iter().any(|command| !ledger::dependencies(world, command).is_empty()) {
            self.known.clear();
            return Err(AttemptError::conflict("dependencies kept appearing while loading"));
        }
        let mut loaded = loading.loaded;
        loaded.read = loading.read.into_iter().collect();
        Ok(loaded)
    }
}

/// Writes a planned batch; answers the positions drawn for its events (none when there was nothing to write).
async fn write(
    connection: &mut PgConnection,
    plan: &plan::BatchPlan,
    requests: &[&CommandRequest],
    now: chrono::DateTime<Utc>,
    mode: Mode,
) -> Result<Vec<i64>, AttemptError> {
    let answers = plan.new_answers(requests);
    let write = plan.write(&answers, now);
    if write.is_empty() {
        return Ok(Vec::new());
    }
    match event_store::write_batch(connection, &write).await? {
        Written::Appended { positions } => Ok(positions),
        Written::StreamMoved => Err(AttemptError::conflict("a stream the batch was decided against moved")),
        // Read, yet taken: another process stored the key since the read, a race like any other.
        Written::KeyTaken if mode.read_answers => {
            Err(AttemptError::conflict("another process stored an idempotency key of the batch meanwhile"))
        }
        Written::KeyTaken => Err(AttemptError::KeyUsed),
    }
}

/// A world being gathered for a batch.
#[derive(Default)]
struct Loading {
    loaded: Loaded,
    read: BTreeMap<StreamId, i64>,
    owners: BTreeSet<(String, AssetCode)>,
}

impl Loading {
    /// Puts what `known` has of the commands' dependencies into the world; answers the streams it lacks
    /// (`None`: the commands name no dependency any more).
    fn name_dependencies(
        &mut self,
        commands: &[&Command],
        known: impl Fn(&StreamId) -> Option<(event_store::StreamHead, StreamState)>,
    ) -> Option<Vec<StreamId>> {
        let mut named = false;
        let mut misses = Vec::new();
        for command in commands {
            for dependency in ledger::dependencies(&self.loaded.world, command) {
                named = true;
                match dependency {
                    Dependency::Owner(owner, asset) => {
                        self.loaded.world.owners.insert((owner.clone(), asset.clone()), None);
                        self.owners.insert((owner, asset));
                    }
                    Dependency::Stream(stream) => match known(&stream) {
                        Some((head, state)) => self.put(stream, Some(head), state),
                        None => misses.push(stream),
                    },
                }
            }
        }
        misses.sort();
        misses.dedup();
        named.then_some(misses)
    }

    /// Puts the streams read into the world (a stream not found is empty); answers those that exist.
    fn found(
        &mut self,
        misses: Vec<StreamId>,
        found: Vec<event_store::LoadedStream>,
    ) -> Result<Vec<(StreamId, event_store::StreamHead, StreamState)>, AttemptError> {
        let mut found: HashMap<String, event_store::LoadedStream> =
            found.into_iter().map(|loaded| (loaded.stream_id.clone(), loaded)).collect();
        let mut existing = Vec::new();
        for stream in misses {
            match found.remove(&stream.to_string()) {
                Some(loaded) => {
                    let state = StreamState::from_snapshot(&stream, loaded.state).map_err(|error| {
                        AttemptError::Fatal(anyhow::Error::new(error).context(format!("snapshot of {stream}")))
                    })?;
                    existing.push((stream.clone(), loaded.head, state.clone()));
                    self.put(stream, Some(loaded.head), state);
                }
                None => {
                    let state = StreamState::empty(&stream);
                    self.put(stream, None, state);
                }
            }
        }
        Ok(existing)
    }

    fn put(&mut self, stream: StreamId, head: Option<event_store::StreamHead>, state: StreamState) {
        state.put(&mut self.loaded.world, &stream);
        self.read.insert(stream.clone(), head.map_or(0, |head| head.version));
        if let Some(head) = head {
            self.loaded.heads.insert(stream, head);
        }
    }

    /// Reads the user wallets of the `(owner_id, asset)` pairs the commands named.
    async fn owners(&mut self, connection: &mut PgConnection) -> Result<(), AttemptError> {
        if self.owners.is_empty() {
            return Ok(());
        }
        let pairs: Vec<(String, String)> =
            self.owners.iter().map(|(owner, asset)| (owner.clone(), asset.to_string())).collect();
        let existing = event_store::load_owners(connection, &pairs).await?;
        for (owner, asset) in std::mem::take(&mut self.owners) {
            let wallet = existing.get(&(owner.clone(), asset.to_string())).map(|id| WalletId(*id));
            self.loaded.world.owners.insert((owner, asset), wallet);
        }
        Ok(())
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
        Command::PlaceHold { hold_id, .. } => vec![StreamId::Hold(*hold_id)],
        Command::CaptureHold { transfer_id, .. } => vec![StreamId::Transfer(*transfer_id)],
        Command::ChangeStatus { .. } | Command::VoidHold { .. } | Command::ExpireHold { .. } => Vec::new(),
    }
}

/// Times the phases of a batch attempt into `tally_append_phase_seconds{phase}`, so that where a batch
/// spends its time is on `/metrics` rather than only in a profiler.
struct PhaseClock {
    last: Instant,
}

impl PhaseClock {
    fn start() -> PhaseClock {
        PhaseClock { last: Instant::now() }
    }

    fn lap(&mut self, phase: &'static str) {
        let now = Instant::now();
        metrics::histogram!("tally_append_phase_seconds", "phase" => phase).record((now - self.last).as_secs_f64());
        self.last = now;
    }
}
