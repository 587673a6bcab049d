//! The batch planner, pure: a batch of commands and the state it was loaded against → the events,
//! snapshots, owners and answers to write, and which position each answer reports. No IO, no clock, no
//! async: the time and the event ids come in as arguments, so a batch can be planned (and tested) without
//! Postgres.
//!
//! Commands are decided **in order**, each against the state the previous ones left: a thousand spends on
//! one hot wallet are decided one after another, and exactly as many succeed as the balance allows. A
//! refused command appends nothing and leaves the state as it found it, so it disturbs no other command.

use std::collections::{BTreeSet, HashMap};
use std::ops::Range;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::json;
use tally_shared::api::{Problem, ProblemCode};
use tally_shared::envelope::{Change, EventMetadata, StreamId};
use tally_shared::hold::{Hold, HoldStatus};
use tally_shared::ledger::{self, Command, DomainError, World};
use tally_shared::transfer::Transfer;
use tally_shared::wallet::{Wallet, WalletId, WalletKind};
use uuid::Uuid;

use super::stream_state::StreamState;
use super::{views, Answer, CommandRequest, KeyId, Reply};
use crate::event_store::{
    AnswerPosition, BatchWrite, DueHold, NewAnswer, NewEvent, Snapshot, StoredAnswer, StreamHead,
};

/// What a batch is decided against.
#[derive(Debug, Clone, Default)]
pub struct Loaded {
    pub world: World,
    /// Heads of the streams that exist.
    pub heads: HashMap<StreamId, StreamHead>,
    /// Every stream read, with the version read (0: it did not exist).
    pub read: Vec<(StreamId, i64)>,
}

/// How one command of the batch is answered.
#[derive(Debug, Clone, PartialEq)]
pub enum Planned {
    /// Answered without deciding: a replay of the key's stored answer, or a refusal of a key used with
    /// another request. Nothing is stored for it.
    Given(Reply),
    /// The same request as the earlier command at this index of the batch (its client went away and
    /// retried): answered as that one is, replayed.
    SameAs(usize),
    /// Decided here: stored under its key, its position taken from where [`AnswerPosition`] says.
    Decided { answer: Answer, position: AnswerPosition },
}

/// Everything a batch writes, and what it answers.
#[derive(Debug)]
pub struct BatchPlan {
    /// One per command, in the batch's order.
    pub answers: Vec<Planned>,
    pub events: Vec<NewEvent>,
    pub snapshots: Vec<Snapshot>,
    /// New user wallets: `(owner_id, asset, wallet_id)`.
    pub owners: Vec<(String, String, Uuid)>,
    /// The streams decided on but not appended to, at the version they were read at: the write checks them.
    pub expected: Vec<(String, i64)>,
    /// Every event's `recorded_at`.
    pub recorded_at: DateTime<Utc>,
    /// Every hold appended to: due when, or resolved.
    pub due: Vec<DueHold>,
    /// The streams appended to, with their new state and head (whose position the write draws).
    learned: Vec<(StreamId, StreamHead, StreamState)>,
}

/// Plans a batch: each request answered from its stored answer (`stored`, by key), as an earlier request of
/// the batch with its key, or decided in order against `loaded` as the previous ones left it. `now` stamps
/// the answers; `next_event_id` names each new event.
pub fn plan(
    loaded: Loaded,
    requests: &[&CommandRequest],
    stored: &HashMap<KeyId, StoredAnswer>,
    now: DateTime<Utc>,
    next_event_id: &mut dyn FnMut() -> Uuid,
) -> BatchPlan {
    let Loaded { world, heads, read } = loaded;
    // Never earlier than the last event of any stream touched, so that each stream's `recorded_at` never
    // goes backwards, even across processes whose clocks disagree (`as_of` reads rely on it).
    let recorded_at = heads.values().map(|head| head.recorded_at).fold(now, DateTime::max);
    let mut batch = Batch { world, heads, events: Vec::new(), last_event_of: HashMap::new(), recorded_at };
    let mut first_of_key: HashMap<KeyId, usize> = HashMap::new();
    let mut answers = Vec::with_capacity(requests.len());
    for (index, request) in requests.iter().enumerate() {
        let key = request.key();
        let planned = if let Some(&first) = first_of_key.get(&key) {
            if requests[first].fingerprint == request.fingerprint {
                Planned::SameAs(first)
            } else {
                Planned::Given(Reply { answer: Answer::key_reused(), replayed: false })
            }
        } else if let Some(stored) = stored.get(&key) {
            Planned::Given(replay(stored, request))
        } else {
            batch.decide(request, next_event_id)
        };
        first_of_key.entry(key).or_insert(index);
        answers.push(planned);
    }
    batch.finish(read, answers)
}

/// A stored answer, replayed for the same request; refused for another one.
fn replay(stored: &StoredAnswer, request: &CommandRequest) -> Reply {
    if stored.fingerprint != request.fingerprint {
        return Reply { answer: Answer::key_reused(), replayed: false };
    }
    Reply { answer: stored.answer.clone().with_position(stored.position), replayed: true }
}

/// The state of a batch being planned.
struct Batch {
    world: World,
    heads: HashMap<StreamId, StreamHead>,
    events: Vec<NewEvent>,
    /// Index in `events` of each touched stream's last event.
    last_event_of: HashMap<StreamId, usize>,
    recorded_at: DateTime<Utc>,
}

impl Batch {
    /// Decides one command against the batch's state so far and, if it is accepted, appends its events.
    fn decide(&mut self, request: &CommandRequest, next_event_id: &mut dyn FnMut() -> Uuid) -> Planned {
        // A command whose outcome depends on time is decided at the batch's time, which its events record.
        let stamped = request.command.stamped(self.recorded_at);
        let command = stamped.as_ref().unwrap_or(&request.command);
        let decided = check_owner(request, &self.world)
            .and_then(|()| check_expected_version(request, &self.heads, &self.world))
            .and_then(|()| ledger::decide(&self.world, command).map_err(|error| Box::new(Problem::from(&error))));
        let changes = match decided {
            Ok(changes) => changes,
            Err(problem) => {
                return Planned::Decided { answer: Answer::refusal(&problem), position: AnswerPosition::None }
            }
        };
        let appended = self.append(request, &changes, next_event_id);
        let (answer, position_of) = views::answer(command, &changes, &self.world, &self.heads, self.recorded_at);
        Planned::Decided { answer, position: self.position(appended, position_of) }
    }

    /// Applies a decided command's changes to the batch's state and seals them as the next events of their
    /// streams; answers the range of `events` they took.
    fn append(
        &mut self,
        request: &CommandRequest,
        changes: &[Change],
        next_event_id: &mut dyn FnMut() -> Uuid,
    ) -> Range<usize> {
        let metadata = Arc::new(json!(EventMetadata {
            idempotency_key: Some(request.idempotency_key.clone()),
            principal: Some(request.principal.clone()),
            correlation_id: request.request_id.clone(),
            causation_id: Some(causation_of(&request.command)),
            request_id: request.request_id.clone(),
        }));
        let start = self.events.len();
        for change in changes {
            self.world.apply(change);
            let head = self.heads.entry(change.stream.clone()).or_insert(StreamHead::EMPTY);
            let sealed = change.seal(head.version, &head.last_hash, next_event_id(), &metadata, self.recorded_at);
            *head = StreamHead {
                version: sealed.version,
                position: head.position,
                last_hash: sealed.hash,
                recorded_at: self.recorded_at,
                created_at: if head.version == 0 { self.recorded_at } else { head.created_at },
            };
            self.last_event_of.insert(change.stream.clone(), self.events.len());
            self.events.push(NewEvent {
                stream_id: sealed.stream_id,
                version: sealed.version,
                event_id: sealed.event_id,
                event_type: sealed.event_type,
                data: sealed.data,
                metadata: Arc::clone(&metadata),
                recorded_at: self.recorded_at,
                hash: sealed.hash,
            });
        }
        start..self.events.len()
    }

    /// The position a decided command reports: that of its last event; for one that appended nothing, that
    /// of the stream it names (its last event in this batch, or before it).
    fn position(&self, appended: Range<usize>, position_of: Option<StreamId>) -> AnswerPosition {
        if let Some(last) = appended.last() {
            return AnswerPosition::Appended(last);
        }
        let Some(stream) = position_of else { return AnswerPosition::None };
        match (self.last_event_of.get(&stream), self.heads.get(&stream)) {
            (Some(index), _) => AnswerPosition::Appended(*index),
            (None, Some(head)) => AnswerPosition::Existing(head.position),
            (None, None) => AnswerPosition::None,
        }
    }

    /// The snapshots and owners of every stream the batch appended to, and the checks of those it only read.
    fn finish(self, read: Vec<(StreamId, i64)>, answers: Vec<Planned>) -> BatchPlan {
        let touched: BTreeSet<&StreamId> = self.last_event_of.keys().collect();
        let mut snapshots = Vec::with_capacity(touched.len());
        let mut owners = Vec::new();
        let mut learned = Vec::with_capacity(touched.len());
        let mut due = Vec::new();
        for stream in touched.iter().copied() {
            let head = self.heads[stream];
            let state = StreamState::of(&self.world, stream);
            if let StreamState::Hold(Hold::Placed(hold)) = &state {
                let active = hold.status == HoldStatus::Active;
                due.push(DueHold { hold_id: hold.hold_id.0, expires_at: active.then_some(hold.expires_at) });
            }
            if let StreamState::Wallet(Wallet::Open(open)) = &state {
                if open.kind == WalletKind::User && head.version == 1 {
                    owners.push((open.owner_id.clone(), open.asset.to_string(), open.wallet_id.0));
                }
            }
            snapshots.push(Snapshot {
                stream_id: stream.to_string(),
                version: head.version,
                last_hash: head.last_hash,
                last_event: self.last_event_of[stream],
                state: state.to_snapshot(),
            });
            learned.push((stream.clone(), head, state));
        }
        // Only read: checked by the write. Appended to: refused by `(stream_id, version)` if it moved.
        let expected = read
            .iter()
            .filter(|(stream, _)| !touched.contains(stream))
            .map(|(stream, version)| (stream.to_string(), *version))
            .collect();
        let (events, recorded_at) = (self.events, self.recorded_at);
        BatchPlan { answers, events, snapshots, owners, expected, recorded_at, due, learned }
    }
}

impl BatchPlan {
    /// The answers to store: those decided here, under their keys.
    pub fn new_answers<'a>(&'a self, requests: &[&'a CommandRequest]) -> Vec<NewAnswer<'a>> {
        let decided = self.answers.iter().zip(requests).filter_map(|(planned, request)| match planned {
            Planned::Decided { answer, position } => Some(NewAnswer {
                principal: &request.principal,
                idempotency_key: &request.idempotency_key,
                fingerprint: request.fingerprint,
                answer,
                position: *position,
            }),
            Planned::Given(_) | Planned::SameAs(_) => None,
        });
        decided.collect()
    }

    /// The write of this plan, with `answers` from [`BatchPlan::new_answers`], stamped `now`.
    pub fn write<'a>(&'a self, answers: &'a [NewAnswer<'a>], now: DateTime<Utc>) -> BatchWrite<'a> {
        BatchWrite {
            expected: &self.expected,
            events: &self.events,
            snapshots: &self.snapshots,
            recorded_at: self.recorded_at,
            owners: &self.owners,
            answers,
            now,
            due: &self.due,
        }
    }

    /// How many commands were decided here (not replayed).
    pub fn decided(&self) -> usize {
        self.answers.iter().filter(|planned| matches!(planned, Planned::Decided { .. })).count()
    }

    /// How many commands replay an answer stored before this batch.
    pub fn replayed(&self) -> usize {
        self.answers.iter().filter(|planned| matches!(planned, Planned::Given(Reply { replayed: true, .. }))).count()
    }

    /// Each command's reply, given the positions the write drew for `events`; and the new head of every
    /// stream appended to, with its state, for the process to remember once the write is committed.
    pub fn commit(self, positions: &[i64]) -> (Vec<Reply>, Vec<(StreamId, StreamHead, StreamState)>) {
        let mut replies: Vec<Reply> = Vec::with_capacity(self.answers.len());
        for planned in self.answers {
            let reply = match planned {
                Planned::Given(reply) => reply,
                Planned::SameAs(first) => Reply { replayed: true, ..replies[first].clone() },
                Planned::Decided { answer, position } => {
                    Reply { answer: answer.with_position(position.resolve(positions)), replayed: false }
                }
            };
            replies.push(reply);
        }
        let learned = self
            .learned
            .into_iter()
            .zip(&self.snapshots)
            .map(|((stream, head, state), snapshot)| {
                let position = positions.get(snapshot.last_event).copied().unwrap_or(head.position);
                (stream, StreamHead { position, ..head }, state)
            })
            .collect();
        (replies, learned)
    }
}

fn causation_of(command: &Command) -> String {
    match command {
        Command::DefineAsset(define) => format!("asset-{}", define.code),
        Command::OpenWallet { wallet_id, .. } | Command::ChangeStatus { wallet_id, .. } => {
            format!("wallet-{wallet_id}")
        }
        Command::Move { transfer_id, .. } | Command::Transfer { transfer_id, .. } => format!("transfer-{transfer_id}"),
        Command::Reverse { reversal_id, .. } => format!("transfer-{reversal_id}"),
        Command::PlaceHold { hold_id, .. }
        | Command::VoidHold { hold_id, .. }
        | Command::ExpireHold { hold_id, .. } => {
            format!("hold-{hold_id}")
        }
        Command::CaptureHold { transfer_id, .. } => format!("transfer-{transfer_id}"),
    }
}

/// A token bound to an owner acts only on that owner's user wallets: the wallet of a move, a status change or a
/// new hold, the held wallet of a capture or a void,
/// the sender of a transfer, the owner of a new wallet, the user wallets an original transfer debited (or, for
/// money it issued, credited) for a reversal. Anything else is answered as if it did not exist, before
/// `If-Match` so that not even a version leaks.
fn check_owner(request: &CommandRequest, world: &World) -> Result<(), Box<Problem>> {
    let Some(owner) = &request.owner else { return Ok(()) };
    let user_wallet = |wallet_id: &WalletId| match world.wallets.get(wallet_id) {
        Some(Wallet::Open(open)) if open.kind == WalletKind::User => Some(open),
        _ => None,
    };
    let owns = |wallet_id: &WalletId| user_wallet(wallet_id).is_some_and(|open| &open.owner_id == owner);
    let refusal = match &request.command {
        Command::DefineAsset(_) => None,
        Command::OpenWallet { owner_id, .. } => {
            (owner_id != owner).then_some(DomainError::WalletNotFound { wallet_id: None })
        }
        Command::Move { wallet_id, .. }
        | Command::ChangeStatus { wallet_id, .. }
        | Command::PlaceHold { wallet_id, .. } => {
            (!owns(wallet_id)).then_some(DomainError::WalletNotFound { wallet_id: Some(*wallet_id) })
        }
        Command::CaptureHold { hold_id, .. }
        | Command::VoidHold { hold_id, .. }
        | Command::ExpireHold { hold_id, .. } => {
            let owned = matches!(world.holds.get(hold_id), Some(Hold::Placed(placed)) if owns(&placed.wallet_id));
            (!owned).then_some(DomainError::HoldNotFound { hold_id: *hold_id })
        }
        Command::Transfer { from_wallet_id, .. } => {
            (!owns(from_wallet_id)).then_some(DomainError::WalletNotFound { wallet_id: Some(*from_wallet_id) })
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
            (!owned).then_some(DomainError::TransferNotFound { transfer_id: Some(*transfer_id) })
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
