//! The batch planner, given/when/then, without Postgres: given the streams as loaded, when a batch of
//! requests is planned, then these answers, events and checks.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;

use chrono::{DateTime, TimeZone, Utc};
use rust_decimal::Decimal;
use serde_json::{json, Value};
use tally_shared::asset::{AssetCode, DefineAsset, SystemWallets};
use tally_shared::envelope::StreamId;
use tally_shared::ledger::{self, Command, StatusCommand};
use tally_shared::money::Scale;
use tally_shared::transfer::{TransferId, TransferKind};
use tally_shared::wallet::WalletId;
use uuid::Uuid;

use super::plan::{plan, BatchPlan, Loaded, Planned};
use super::{Answer, CommandRequest, KeyId, Reply};
use crate::event_store::{AnswerPosition, StoredAnswer, StreamHead};

const ALICE: WalletId = WalletId(Uuid::from_u128(0xa11ce));
const BOB: WalletId = WalletId(Uuid::from_u128(0xb0b));
const SYSTEM: SystemWallets = SystemWallets {
    treasury: WalletId(Uuid::from_u128(0x7)),
    revenue: WalletId(Uuid::from_u128(0x8)),
    fees: WalletId(Uuid::from_u128(0x9)),
};
/// Positions before the batch end here; the write draws the next ones.
const HEAD_POSITION: i64 = 100;

fn gold() -> AssetCode {
    AssetCode::parse("GOLD").unwrap()
}

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 2, 12, 0, 0).unwrap()
}

fn amount(text: &str) -> Decimal {
    text.parse().unwrap()
}

fn transfer_id(n: u128) -> TransferId {
    TransferId(Uuid::from_u128(0x1000 + n))
}

fn open(wallet_id: WalletId, owner: &str) -> Command {
    Command::OpenWallet {
        wallet_id,
        owner_id: owner.to_owned(),
        asset: gold(),
        overdraft_limit: None,
        metadata: Value::Null,
    }
}

fn movement(kind: TransferKind, n: u128, wallet_id: WalletId, value: &str) -> Command {
    Command::Move {
        transfer_id: transfer_id(n),
        kind,
        wallet_id,
        amount: amount(value),
        reference: None,
        metadata: Value::Null,
    }
}

fn spend(n: u128, wallet_id: WalletId, value: &str) -> Command {
    movement(TransferKind::Spend, n, wallet_id, value)
}

fn freeze(wallet_id: WalletId) -> Command {
    Command::ChangeStatus { wallet_id, change: StatusCommand::Freeze, reason: None }
}

/// The streams as a batch would load them after `commands` were appended one by one, each event at the
/// next position up to [`HEAD_POSITION`].
fn given(commands: &[Command]) -> Loaded {
    let mut loaded = Loaded::default();
    let mut position = HEAD_POSITION - 1_000;
    for command in commands {
        for change in ledger::decide(&loaded.world, command).unwrap() {
            loaded.world.apply(&change);
            position += 1;
            let head = loaded.heads.entry(change.stream.clone()).or_insert(StreamHead::EMPTY);
            *head = StreamHead { version: head.version + 1, position, recorded_at: now(), ..*head };
        }
    }
    for head in loaded.heads.values_mut() {
        head.position += HEAD_POSITION - position;
    }
    loaded.read = loaded.heads.iter().map(|(stream, head)| (stream.clone(), head.version)).collect();
    loaded
}

/// GOLD at scale 2, ALICE (owned by alice) holding `balance`, BOB (owned by bob) holding nothing.
fn alice_holding(balance: &str) -> Loaded {
    let define = DefineAsset { code: gold(), scale: Scale::new(2).unwrap(), cash_in_fee: None, system_wallets: SYSTEM };
    given(&[
        Command::DefineAsset(define),
        open(ALICE, "alice"),
        open(BOB, "bob"),
        movement(TransferKind::Topup, 0, ALICE, balance),
    ])
}

fn request(key: &str, command: Command) -> CommandRequest {
    CommandRequest {
        principal: "shop".to_owned(),
        owner: None,
        idempotency_key: key.to_owned(),
        fingerprint: fingerprint(key),
        command,
        expected_version: None,
        request_id: None,
    }
}

fn fingerprint(text: &str) -> [u8; 32] {
    let mut fingerprint = [0; 32];
    for (byte, source) in fingerprint.iter_mut().zip(text.bytes()) {
        *byte = source;
    }
    fingerprint
}

fn when(loaded: Loaded, requests: &[CommandRequest]) -> BatchPlan {
    when_stored(loaded, requests, &HashMap::new())
}

fn when_stored(loaded: Loaded, requests: &[CommandRequest], stored: &HashMap<KeyId, StoredAnswer>) -> BatchPlan {
    let requests: Vec<&CommandRequest> = requests.iter().collect();
    let mut next = 0u128;
    plan(loaded, &requests, stored, now(), &mut || {
        next += 1;
        Uuid::from_u128(0xe0000 + next)
    })
}

/// The replies once the write drew positions right after [`HEAD_POSITION`].
fn replies(plan: BatchPlan) -> Vec<Reply> {
    let positions: Vec<i64> = (1..=plan.events.len() as i64).map(|n| HEAD_POSITION + n).collect();
    plan.commit(&positions).0
}

fn balance_of(reply: &Reply, wallet_id: WalletId) -> Value {
    let balances = reply.answer.body["balances"].as_array().unwrap();
    let view = balances.iter().find(|view| view["wallet_id"] == json!(wallet_id)).unwrap();
    view["balance"].clone()
}

fn code(reply: &Reply) -> &str {
    reply.answer.body["code"].as_str().unwrap_or_default()
}

fn streams_appended(plan: &BatchPlan) -> Vec<String> {
    plan.events.iter().map(|event| format!("{} v{}", event.stream_id, event.version)).collect()
}

#[test]
fn commands_of_one_batch_are_decided_in_order_against_the_state_the_previous_ones_left() {
    let plan = when(
        alice_holding("10.00"),
        &[request("a", spend(1, ALICE, "6")), request("b", spend(2, ALICE, "6")), request("c", spend(3, ALICE, "4"))],
    );

    assert_eq!(plan.events.len(), 6, "two spends of three events each: the transfer, a debit and a credit");
    let replies = replies(plan);
    assert_eq!(replies[0].answer.status, 201);
    assert_eq!(balance_of(&replies[0], ALICE), json!("4.00"));
    assert_eq!((replies[1].answer.status, code(&replies[1])), (422, "insufficient_funds"));
    assert_eq!(replies[1].answer.body["available"], json!("4.00"), "refused against what the first spend left");
    assert_eq!(replies[2].answer.status, 201);
    assert_eq!(balance_of(&replies[2], ALICE), json!("0.00"));
}

#[test]
fn a_failing_command_does_not_disturb_the_others() {
    let alone = when(alice_holding("10.00"), &[request("a", spend(1, ALICE, "3")), request("c", spend(3, ALICE, "7"))]);
    let with_failures = when(
        alice_holding("10.00"),
        &[
            request("a", spend(1, ALICE, "3")),
            request("b", spend(2, ALICE, "100")),
            request("x", spend(4, WalletId(Uuid::from_u128(0xdead)), "1")),
            request("c", spend(3, ALICE, "7")),
        ],
    );

    assert_eq!(streams_appended(&with_failures), streams_appended(&alone));
    let hashes = |plan: &BatchPlan| plan.events.iter().map(|event| event.hash).collect::<Vec<_>>();
    assert_eq!(hashes(&with_failures), hashes(&alone), "the same events, byte for byte");
    let replies = replies(with_failures);
    assert_eq!(code(&replies[1]), "insufficient_funds");
    assert_eq!(code(&replies[2]), "wallet_not_found");
    assert_eq!(balance_of(&replies[3], ALICE), json!("0.00"));
}

#[test]
fn two_commands_with_one_key_in_one_batch_have_one_effect() {
    let same = request("k", spend(1, ALICE, "1"));
    let other = CommandRequest { fingerprint: fingerprint("another body"), ..request("k", spend(2, ALICE, "2")) };
    let plan = when(alice_holding("10.00"), &[same.clone(), same, other]);

    assert_eq!(plan.events.len(), 3, "only the first request of the key was decided");
    assert_eq!(plan.answers[1], Planned::SameAs(0));
    assert_eq!(plan.decided(), 1, "one answer is stored for the key");
    let replies = replies(plan);
    assert!(!replies[0].replayed);
    assert_eq!(
        replies[1],
        Reply { replayed: true, ..replies[0].clone() },
        "the retry replays the answer, position too"
    );
    assert_eq!(replies[1].answer.body["position"], json!(HEAD_POSITION + 3));
    assert_eq!(replies[2].answer, Answer::key_reused());
}

#[test]
fn if_match_failing_mid_batch_refuses_only_that_command() {
    let loaded = alice_holding("10.00");
    let version = loaded.heads[&StreamId::Wallet(ALICE)].version;
    let conditional = |key: &str, n: u128, expected: i64| CommandRequest {
        expected_version: Some(expected),
        ..request(key, spend(n, ALICE, "1"))
    };
    let plan =
        when(loaded, &[conditional("a", 1, version), conditional("b", 2, version), conditional("c", 3, version + 1)]);

    let replies = replies(plan);
    assert_eq!(replies[0].answer.status, 201);
    assert_eq!((replies[1].answer.status, code(&replies[1])), (412, "version_mismatch"));
    assert_eq!(replies[1].answer.body["version"], json!(version + 1), "the version the first spend left");
    assert_eq!(replies[2].answer.status, 201, "If-Match refers to the wallet as the batch has it so far");
}

#[test]
fn an_owner_bound_principal_reaching_for_another_owners_wallet_is_told_it_does_not_exist() {
    let as_alice =
        |key: &str, command: Command| CommandRequest { owner: Some("alice".to_owned()), ..request(key, command) };
    let conditional_on_bob = CommandRequest { expected_version: Some(99), ..as_alice("b", spend(2, BOB, "1")) };
    let to_bob = Command::Transfer {
        transfer_id: transfer_id(3),
        from_wallet_id: ALICE,
        to_wallet_id: BOB,
        amount: amount("1"),
        fee: None,
        reference: None,
        metadata: Value::Null,
    };
    let plan = when(
        alice_holding("10.00"),
        &[as_alice("a", spend(1, BOB, "1")), conditional_on_bob, as_alice("c", freeze(BOB)), as_alice("d", to_bob)],
    );

    let replies = replies(plan);
    for refused in &replies[..3] {
        assert_eq!((refused.answer.status, code(refused)), (404, "wallet_not_found"));
        assert_eq!(refused.answer.body["wallet_id"], json!(BOB));
    }
    assert_eq!(replies[3].answer.status, 201, "alice may pay bob from her own wallet");
}

#[test]
fn each_answer_reports_the_position_of_its_last_event_or_of_its_wallet() {
    let plan = when(
        alice_holding("10.00"),
        &[
            request("spend", spend(1, ALICE, "1")),
            request("refused", spend(2, ALICE, "100")),
            request("freeze", freeze(ALICE)),
            request("freeze again", freeze(ALICE)),
            request("freeze bob", freeze(BOB)),
            request("bob again", freeze(BOB)),
        ],
    );
    let positions: Vec<AnswerPosition> = plan
        .answers
        .iter()
        .map(|planned| match planned {
            Planned::Decided { position, .. } => *position,
            other => panic!("every request was decided: {other:?}"),
        })
        .collect();
    assert_eq!(
        positions,
        [
            AnswerPosition::Appended(2),
            AnswerPosition::None,
            AnswerPosition::Appended(3),
            AnswerPosition::Appended(3),
            AnswerPosition::Appended(4),
            AnswerPosition::Appended(4),
        ]
    );

    let unchanged = when(bob_frozen(), &[request("z", freeze(BOB))]);
    let Planned::Decided { position, .. } = &unchanged.answers[0] else { panic!("decided") };
    assert_eq!(*position, AnswerPosition::Existing(HEAD_POSITION), "a no-op reports its wallet's last position");
    let replies = replies(unchanged);
    assert_eq!(replies[0].answer.body["position"], json!(HEAD_POSITION));
    let refused = &replies_of(alice_holding("1.00"), &[request("r", spend(9, ALICE, "5"))])[0];
    assert!(refused.answer.body.get("position").is_none(), "a refusal shows no position");
}

/// GOLD and BOB, frozen: freezing BOB again appends nothing.
fn bob_frozen() -> Loaded {
    let define = DefineAsset { code: gold(), scale: Scale::new(2).unwrap(), cash_in_fee: None, system_wallets: SYSTEM };
    given(&[Command::DefineAsset(define), open(BOB, "bob"), freeze(BOB)])
}

fn replies_of(loaded: Loaded, requests: &[CommandRequest]) -> Vec<Reply> {
    replies(when(loaded, requests))
}

#[test]
fn a_stored_answer_is_replayed_with_its_position_and_another_request_under_its_key_is_refused() {
    let answer = Answer { status: 201, body: json!({"transfer_id": "t"}) };
    let stored = HashMap::from([(
        ("shop".to_owned(), "used".to_owned()),
        StoredAnswer { fingerprint: fingerprint("used"), answer, position: Some(42) },
    )]);
    let retry = request("used", spend(1, ALICE, "1"));
    let other = CommandRequest { fingerprint: fingerprint("other"), ..retry.clone() };
    let plan = when_stored(alice_holding("10.00"), &[retry, other], &stored);

    assert!(plan.events.is_empty(), "a stored answer is never decided again");
    assert_eq!(plan.replayed(), 1);
    let replies = replies(plan);
    assert_eq!(
        replies[0],
        Reply { answer: Answer { status: 201, body: json!({"transfer_id": "t", "position": 42}) }, replayed: true }
    );
    assert_eq!(replies[1], Reply { answer: Answer::key_reused(), replayed: false });
}

#[test]
fn streams_only_read_are_checked_at_the_version_read_and_streams_appended_to_are_not() {
    let plan = when(alice_holding("10.00"), &[request("a", spend(1, ALICE, "1"))]);

    let expected: HashMap<&str, i64> =
        plan.expected.iter().map(|(stream, version)| (stream.as_str(), *version)).collect();
    assert_eq!(expected.get("asset-GOLD"), Some(&1), "the asset was read at version 1 and is checked");
    assert!(!expected.contains_key(&*format!("wallet-{ALICE}")), "appended to: its next version is the check");
    assert!(!expected.contains_key(&*format!("wallet-{}", SYSTEM.revenue)));
    let snapshots: Vec<&str> = plan.snapshots.iter().map(|snapshot| snapshot.stream_id.as_str()).collect();
    assert_eq!(snapshots.len(), 3, "the transfer, alice and revenue: {snapshots:?}");
}

#[test]
fn a_new_user_wallet_records_its_owner() {
    let mut loaded = alice_holding("10.00");
    let carol = WalletId(Uuid::from_u128(0xca401));
    loaded.world.owners.insert(("carol".to_owned(), gold()), None);
    let plan = when(loaded, &[request("open", open(carol, "carol"))]);

    assert_eq!(plan.owners, [("carol".to_owned(), "GOLD".to_owned(), carol.0)]);
}
