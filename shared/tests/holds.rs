//! Given/when/then tests of holds (SPEC §8): every rule and refusal of placing, capturing, voiding and
//! expiring a hold, one command at a time, with the time each command is decided at.
#![allow(clippy::unwrap_used)]

mod support;

use chrono::{DateTime, Duration, TimeZone, Utc};
use tally_shared::envelope::{Change, Event, StreamId};
use tally_shared::error::Rule;
use tally_shared::hold::{
    Expiry, Hold, HoldCaptured, HoldEvent, HoldId, HoldPlaced, HoldReleased, HoldStatus, HOLD_EXPIRES_IN_S_MAX,
};
use tally_shared::ledger::{decide, Command, DomainError, StatusCommand};
use tally_shared::transfer::{TransferId, TransferKind};
use tally_shared::wallet::{HoldPosting, HoldSettlement, Wallet, WalletEvent, WalletId};

use support::*;

const ALICE: WalletId = WalletId(uuid::Uuid::from_u128(1));
const BOB: WalletId = WalletId(uuid::Uuid::from_u128(2));
const GEM_CAROL: WalletId = WalletId(uuid::Uuid::from_u128(3));
const H1: HoldId = HoldId(uuid::Uuid::from_u128(0x301));
const H2: HoldId = HoldId(uuid::Uuid::from_u128(0x302));
const UNKNOWN_HOLD: HoldId = HoldId(uuid::Uuid::from_u128(0x3ff));
const T0: TransferId = TransferId(uuid::Uuid::from_u128(0x100));
const C1: TransferId = TransferId(uuid::Uuid::from_u128(0x401));
const C2: TransferId = TransferId(uuid::Uuid::from_u128(0x402));
const S1: TransferId = TransferId(uuid::Uuid::from_u128(0x501));
const R1: TransferId = TransferId(uuid::Uuid::from_u128(0x601));

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 2, 12, 0, 0).unwrap()
}

fn at(seconds: i64) -> DateTime<Utc> {
    t0() + Duration::seconds(seconds)
}

#[track_caller]
fn refused(given: &[Change], when: Command) -> DomainError {
    let decided = decide(&world_of(given), &when);
    assert_eq!(decide(&load_for(&world_of(given), &when), &when), decided);
    decided.expect_err("refused")
}

/// GOLD, ALICE with `balance` and an overdraft limit of `limit`, BOB empty; CAROL on GEM.
fn given(balance: &str, limit: &str) -> Vec<Change> {
    let gold = gold();
    let mut given = gold.defined(None);
    given.push(gold.opened(ALICE, "alice", limit));
    given.extend(gold.topped_up(T0, ALICE, balance, &format!("-{balance}"), balance));
    given.push(gold.opened(BOB, "bob", "0.00"));
    let gem = gem();
    given.extend(gem.defined(None));
    given.push(gem.opened(GEM_CAROL, "carol", "0"));
    given
}

fn place(hold_id: HoldId, amount: &str, expires_in_s: i64) -> Command {
    place_on(hold_id, ALICE, amount, Expiry::In(expires_in_s))
}

fn place_on(hold_id: HoldId, wallet_id: WalletId, amount: &str, expiry: Expiry) -> Command {
    Command::PlaceHold {
        hold_id,
        wallet_id,
        amount: dec(amount),
        expiry,
        reference: Some("order-7".into()),
        metadata: serde_json::Value::Null,
        at: t0(),
    }
}

fn capture(hold_id: HoldId, transfer_id: TransferId, amount: Option<&str>, is_final: bool, when: i64) -> Command {
    Command::CaptureHold {
        hold_id,
        transfer_id,
        amount: amount.map(dec),
        to_wallet_id: None,
        is_final,
        reference: None,
        metadata: serde_json::Value::Null,
        at: at(when),
    }
}

fn capture_to(hold_id: HoldId, to: WalletId, amount: &str) -> Command {
    Command::CaptureHold {
        hold_id,
        transfer_id: C1,
        amount: Some(dec(amount)),
        to_wallet_id: Some(to),
        is_final: true,
        reference: None,
        metadata: serde_json::Value::Null,
        at: at(10),
    }
}

fn void(hold_id: HoldId, when: i64) -> Command {
    Command::VoidHold { hold_id, reason: Some("cancelled".into()), at: at(when) }
}

fn expire(hold_id: HoldId, when: i64) -> Command {
    Command::ExpireHold { hold_id, at: at(when) }
}

fn hold_change(hold_id: HoldId, event: HoldEvent) -> Change {
    Change { stream: StreamId::Hold(hold_id), event: Event::Hold(event) }
}

fn wallet_of(changes: &[Change], wallet_id: WalletId) -> tally_shared::wallet::OpenWallet {
    match world_of(changes).wallets.remove(&wallet_id) {
        Some(Wallet::Open(open)) => open,
        other => panic!("{other:?}"),
    }
}

fn hold_of(changes: &[Change], hold_id: HoldId) -> tally_shared::hold::PlacedHold {
    match world_of(changes).holds.remove(&hold_id) {
        Some(Hold::Placed(placed)) => placed,
        other => panic!("{other:?}"),
    }
}

// ---- Placing ------------------------------------------------------------------------------------

#[test]
fn a_hold_reserves_part_of_the_balance_on_its_own_stream_and_the_wallets() {
    let placed = HoldPlaced {
        hold_id: H1,
        wallet_id: ALICE,
        asset: gold().code,
        scale: gold().scale,
        amount: dec("30.00"),
        expires_at: at(600),
        reference: Some("order-7".into()),
        metadata: serde_json::Value::Null,
        placed_at: t0(),
    };
    check(
        &given("100.00", "0.00"),
        place(H1, "30", 600),
        Ok(vec![
            hold_change(H1, HoldEvent::HoldPlaced(placed)),
            wallet_change(
                ALICE,
                WalletEvent::WalletHoldPlaced(HoldPosting {
                    hold_id: H1,
                    amount: dec("30.00"),
                    held_after: dec("30.00"),
                }),
            ),
        ]),
    );
    let after = history(&given("100.00", "0.00"), &[place(H1, "30", 600)]);
    let alice = wallet_of(&after, ALICE);
    assert_eq!((alice.balance, alice.held, alice.available()), (dec("100.00"), dec("30.00"), dec("70.00")));
    assert_eq!(alice.active_holds, 1);
    let hold = hold_of(&after, H1);
    assert_eq!((hold.status, hold.remaining(), hold.expires_at), (HoldStatus::Active, dec("30.00"), at(600)));
}

#[test]
fn holds_count_against_what_is_available_blnk_181() {
    let given = history(&given("100.00", "0.00"), &[place(H1, "70", 600)]);
    assert_eq!(
        refused(&given, place(H2, "30.01", 600)),
        DomainError::InsufficientFunds { wallet_id: ALICE, available: "30.00".into(), requested: "30.01".into() }
    );
    assert_eq!(
        refused(&given, movement(TransferKind::Spend, S1, ALICE, "31")),
        DomainError::InsufficientFunds { wallet_id: ALICE, available: "30.00".into(), requested: "31.00".into() }
    );
    assert_eq!(
        refused(&given, transfer_between(S1, ALICE, BOB, "30", Some("0.01"))),
        DomainError::InsufficientFunds { wallet_id: ALICE, available: "30.00".into(), requested: "30.01".into() }
    );
    let spent = history(&given, &[movement(TransferKind::Spend, S1, ALICE, "30")]);
    assert_eq!(wallet_of(&spent, ALICE).available(), dec("0.00"));
}

#[test]
fn the_overdraft_limit_extends_what_holds_may_reserve() {
    let given = history(&given("10.00", "5.00"), &[place(H1, "12", 600)]);
    let alice = wallet_of(&given, ALICE);
    assert_eq!((alice.available(), alice.spendable()), (dec("-2.00"), Some(dec("3.00"))));
    assert_eq!(
        refused(&given, place(H2, "3.01", 600)),
        DomainError::InsufficientFunds { wallet_id: ALICE, available: "3.00".into(), requested: "3.01".into() }
    );
    // Capturing the whole hold takes the balance below zero, within the limit.
    let captured = history(&given, &[capture(H1, C1, None, true, 1)]);
    let alice = wallet_of(&captured, ALICE);
    assert_eq!((alice.balance, alice.held), (dec("-2.00"), dec("0.00")));
}

#[test]
fn a_frozen_or_closed_wallet_takes_no_new_hold_and_system_wallets_none_at_all() {
    let frozen = history(&given("100.00", "0.00"), &[change_status(ALICE, StatusCommand::Freeze)]);
    assert_eq!(refused(&frozen, place(H1, "1", 600)), DomainError::WalletFrozen { wallet_id: ALICE });
    let empty_bob_closed = history(&given("100.00", "0.00"), &[change_status(BOB, StatusCommand::Close)]);
    assert_eq!(
        refused(&empty_bob_closed, place_on(H1, BOB, "1", Expiry::In(60))),
        DomainError::WalletClosed { wallet_id: BOB }
    );
    assert_eq!(
        refused(&given("100.00", "0.00"), place_on(H1, gold().treasury, "1", Expiry::In(60))),
        DomainError::invalid("wallet_id", Rule::SystemWalletMove)
    );
    assert_eq!(
        refused(&given("100.00", "0.00"), place_on(H1, WalletId(uuid::Uuid::from_u128(77)), "1", Expiry::In(60))),
        DomainError::WalletNotFound { wallet_id: Some(WalletId(uuid::Uuid::from_u128(77))) }
    );
}

#[test]
fn a_hold_expires_in_the_future_and_at_most_30_days_ahead() {
    let given = given("100.00", "0.00");
    let window = |field: &str| DomainError::invalid(field, Rule::ExpiryWindow { seconds_max: HOLD_EXPIRES_IN_S_MAX });
    assert_eq!(refused(&given, place(H1, "1", 0)), window("expires_in_s"));
    assert_eq!(refused(&given, place(H1, "1", -1)), window("expires_in_s"));
    assert_eq!(refused(&given, place(H1, "1", HOLD_EXPIRES_IN_S_MAX + 1)), window("expires_in_s"));
    assert!(decide(&world_of(&given), &place(H1, "1", HOLD_EXPIRES_IN_S_MAX)).is_ok());
    assert_eq!(refused(&given, place_on(H1, ALICE, "1", Expiry::At(t0()))), window("expires_at"));
    assert_eq!(
        refused(&given, place_on(H1, ALICE, "1", Expiry::At(at(HOLD_EXPIRES_IN_S_MAX + 1)))),
        window("expires_at")
    );
    assert!(decide(&world_of(&given), &place_on(H1, ALICE, "1", Expiry::At(at(1)))).is_ok());
}

#[test]
fn a_hold_amount_is_positive_at_the_assets_scale_and_its_id_is_used_once() {
    let given = given("100.00", "0.00");
    assert!(matches!(refused(&given, place(H1, "0", 60)), DomainError::InvalidAmount { .. }));
    assert!(matches!(refused(&given, place(H1, "0.001", 60)), DomainError::InvalidAmount { .. }));
    let placed = history(&given, &[place(H1, "1", 60)]);
    assert_eq!(refused(&placed, place(H1, "1", 60)), DomainError::invalid("hold_id", Rule::HoldPlaced { hold_id: H1 }));
}

// ---- Capturing ----------------------------------------------------------------------------------

#[test]
fn a_final_capture_moves_its_amount_to_revenue_and_releases_the_rest() {
    let given = history(&given("100.00", "0.00"), &[place(H1, "30", 600)]);
    let gold = gold();
    let mut recorded =
        gold.recorded(C1, TransferKind::Spend, "20.00", "0.00", vec![principal(ALICE, gold.revenue, "20.00")]);
    if let Event::Transfer(tally_shared::transfer::TransferEvent::TransferRecorded(record)) = &mut recorded.event {
        record.hold_id = Some(H1);
    }
    check(
        &given,
        capture(H1, C1, Some("20"), true, 599),
        Ok(vec![
            recorded,
            hold_change(
                H1,
                HoldEvent::HoldCaptured(HoldCaptured {
                    transfer_id: C1,
                    amount: dec("20.00"),
                    released: dec("10.00"),
                    is_final: true,
                    captured_at: at(599),
                }),
            ),
            wallet_change(
                ALICE,
                WalletEvent::WalletHoldSettled(HoldSettlement {
                    hold_id: H1,
                    captured: dec("20.00"),
                    released: dec("10.00"),
                    held_after: dec("0.00"),
                    resolved: true,
                }),
            ),
            debited(ALICE, C1, TransferKind::Spend, "20.00", "80.00", gold.revenue, 0),
            credited(gold.revenue, C1, TransferKind::Spend, "20.00", "20.00", ALICE, 0),
        ]),
    );
    let captured = history(&given, &[capture(H1, C1, Some("20"), true, 599)]);
    let hold = hold_of(&captured, H1);
    assert_eq!((hold.status, hold.captured, hold.released), (HoldStatus::Captured, dec("20.00"), dec("10.00")));
    assert_eq!(hold.resolved_at, Some(at(599)));
    assert_eq!(
        refused(&captured, capture(H1, C2, Some("1"), true, 600 - 1)),
        DomainError::HoldNotActive { hold_id: H1, status: HoldStatus::Captured }
    );
}

#[test]
fn a_capture_at_exactly_expires_at_is_refused_whether_or_not_the_expiry_is_recorded_tigerbeetle_2000() {
    let given = history(&given("100.00", "0.00"), &[place(H1, "30", 600)]);
    let expired = DomainError::HoldExpired { hold_id: H1, expires_at: at(600) };
    assert_eq!(refused(&given, capture(H1, C1, None, true, 600)), expired);
    assert_eq!(refused(&given, capture(H1, C1, None, true, 601)), expired);
    assert_eq!(refused(&given, void(H1, 600)), expired);
    assert!(decide(&world_of(&given), &capture(H1, C1, None, true, 599)).is_ok());
    let recorded = history(&given, &[expire(H1, 600)]);
    assert_eq!(refused(&recorded, capture(H1, C1, None, true, 601)), expired);
    assert_eq!(refused(&recorded, void(H1, 601)), expired);
}

#[test]
fn captures_with_final_false_keep_the_hold_active_until_a_final_one() {
    let given = history(&given("100.00", "0.00"), &[place(H1, "30", 600)]);
    let partly = history(&given, &[capture(H1, C1, Some("10"), false, 1)]);
    let (hold, alice) = (hold_of(&partly, H1), wallet_of(&partly, ALICE));
    assert_eq!((hold.status, hold.remaining(), hold.captures.clone()), (HoldStatus::Active, dec("20.00"), vec![C1]));
    assert_eq!((alice.balance, alice.held, alice.available()), (dec("90.00"), dec("20.00"), dec("70.00")));
    assert_eq!(
        refused(&partly, capture(H1, C2, Some("20.01"), true, 2)),
        DomainError::HoldExceeded { hold_id: H1, remaining: "20.00".into(), requested: "20.01".into() }
    );
    let done = history(&partly, &[capture(H1, C2, Some("5"), true, 2)]);
    let (hold, alice) = (hold_of(&done, H1), wallet_of(&done, ALICE));
    assert_eq!((hold.status, hold.captured, hold.released), (HoldStatus::Captured, dec("15.00"), dec("15.00")));
    assert_eq!(hold.captures, vec![C1, C2]);
    assert_eq!((alice.balance, alice.held, alice.active_holds), (dec("85.00"), dec("0.00"), 0));
}

#[test]
fn a_capture_defaults_to_what_remains_and_refuses_more() {
    let given = history(&given("100.00", "0.00"), &[place(H1, "30", 600)]);
    let all = history(&given, &[capture(H1, C1, None, true, 1)]);
    assert_eq!(wallet_of(&all, ALICE).balance, dec("70.00"));
    assert_eq!(
        refused(&given, capture(H1, C1, Some("30.01"), true, 1)),
        DomainError::HoldExceeded { hold_id: H1, remaining: "30.00".into(), requested: "30.01".into() }
    );
    assert_eq!(
        refused(&given, capture(UNKNOWN_HOLD, C1, None, true, 1)),
        DomainError::HoldNotFound { hold_id: UNKNOWN_HOLD }
    );
}

#[test]
fn a_capture_to_a_user_wallet_is_a_transfer_of_the_same_asset_between_two_wallets() {
    let given = history(&given("100.00", "0.00"), &[place(H1, "30", 600)]);
    let moved = history(&given, &[capture_to(H1, BOB, "30")]);
    assert_eq!(wallet_of(&moved, BOB).balance, dec("30.00"));
    let Some(tally_shared::transfer::Transfer::Recorded(recorded)) = world_of(&moved).transfers.remove(&C1) else {
        panic!()
    };
    assert_eq!(recorded.kind, TransferKind::Transfer);
    assert_eq!(refused(&given, capture_to(H1, ALICE, "1")), DomainError::SameWallet);
    assert_eq!(
        refused(&given, capture_to(H1, GEM_CAROL, "1")),
        DomainError::AssetMismatch { from_asset: gold().code, to_asset: gem().code }
    );
    let bob_frozen = history(&given, &[change_status(BOB, StatusCommand::Freeze)]);
    assert_eq!(refused(&bob_frozen, capture_to(H1, BOB, "1")), DomainError::WalletFrozen { wallet_id: BOB });
}

#[test]
fn a_frozen_wallet_takes_no_capture_but_voids_and_expiry_still_release() {
    let given = history(&given("100.00", "0.00"), &[place(H1, "30", 600), place(H2, "20", 60)]);
    let frozen = history(&given, &[change_status(ALICE, StatusCommand::Freeze)]);
    assert_eq!(refused(&frozen, capture(H1, C1, None, true, 1)), DomainError::WalletFrozen { wallet_id: ALICE });
    let released = history(&frozen, &[void(H1, 1), expire(H2, 60)]);
    let alice = wallet_of(&released, ALICE);
    assert_eq!((alice.held, alice.active_holds, alice.balance), (dec("0.00"), 0, dec("100.00")));
    assert_eq!(hold_of(&released, H1).status, HoldStatus::Voided);
    assert_eq!(hold_of(&released, H2).status, HoldStatus::Expired);
}

#[test]
fn a_reversal_of_a_capture_reverses_the_transfer_never_the_hold() {
    let given = history(&given("100.00", "0.00"), &[place(H1, "30", 600), capture(H1, C1, Some("10"), false, 1)]);
    let reversed = history(&given, &[reverse(R1, C1, None)]);
    let (hold, alice) = (hold_of(&reversed, H1), wallet_of(&reversed, ALICE));
    assert_eq!((hold.captured, hold.remaining(), hold.status), (dec("10.00"), dec("20.00"), HoldStatus::Active));
    assert_eq!((alice.balance, alice.held), (dec("100.00"), dec("20.00")));
}

// ---- Voiding and expiring -------------------------------------------------------------------------

#[test]
fn a_void_of_a_partly_captured_hold_releases_what_remains() {
    let given = history(&given("100.00", "0.00"), &[place(H1, "30", 600), capture(H1, C1, Some("12"), false, 1)]);
    check(
        &given,
        void(H1, 2),
        Ok(vec![
            hold_change(
                H1,
                HoldEvent::HoldVoided(HoldReleased {
                    released: dec("18.00"),
                    reason: Some("cancelled".into()),
                    released_at: at(2),
                }),
            ),
            wallet_change(
                ALICE,
                WalletEvent::WalletHoldSettled(HoldSettlement {
                    hold_id: H1,
                    captured: dec("0"),
                    released: dec("18.00"),
                    held_after: dec("0.00"),
                    resolved: true,
                }),
            ),
        ]),
    );
    let voided = history(&given, &[void(H1, 2)]);
    let hold = hold_of(&voided, H1);
    assert_eq!((hold.captured + hold.released, hold.amount), (dec("30.00"), dec("30.00")));
    assert_eq!(refused(&voided, void(H1, 3)), DomainError::HoldNotActive { hold_id: H1, status: HoldStatus::Voided });
    assert_eq!(
        refused(&voided, capture(H1, C2, None, true, 3)),
        DomainError::HoldNotActive { hold_id: H1, status: HoldStatus::Voided }
    );
}

#[test]
fn the_expiry_releases_only_a_due_active_hold_and_decides_nothing_otherwise() {
    let given = history(&given("100.00", "0.00"), &[place(H1, "30", 600)]);
    assert_eq!(decide(&world_of(&given), &expire(H1, 599)), Ok(vec![]));
    let expired = history(&given, &[expire(H1, 600)]);
    assert_eq!(hold_of(&expired, H1).status, HoldStatus::Expired);
    assert_eq!(wallet_of(&expired, ALICE).available(), dec("100.00"));
    assert_eq!(decide(&world_of(&expired), &expire(H1, 700)), Ok(vec![]), "resolved at most once");
    let voided = history(&given, &[void(H1, 1)]);
    assert_eq!(decide(&world_of(&voided), &expire(H1, 700)), Ok(vec![]));
    assert_eq!(refused(&given, expire(UNKNOWN_HOLD, 700)), DomainError::HoldNotFound { hold_id: UNKNOWN_HOLD });
}

#[test]
fn a_wallet_with_an_active_hold_cannot_be_closed() {
    // ALICE keeps 1.00, all of it held: the active hold is named before the balance.
    let spent = history(&given("100.00", "0.00"), &[movement(TransferKind::Spend, S1, ALICE, "99")]);
    let given = history(&spent, &[place(H1, "1", 600)]);
    assert_eq!(
        refused(&given, change_status(ALICE, StatusCommand::Close)),
        DomainError::WalletHasActiveHolds { wallet_id: ALICE, active_holds: 1 }
    );
    // A non-final capture of everything leaves the hold active, with nothing held: still refused.
    let drawn = history(&given, &[capture(H1, C1, None, false, 1)]);
    assert_eq!(wallet_of(&drawn, ALICE).held, dec("0.00"));
    assert_eq!(
        refused(&drawn, change_status(ALICE, StatusCommand::Close)),
        DomainError::WalletHasActiveHolds { wallet_id: ALICE, active_holds: 1 }
    );
    let resolved = history(&drawn, &[void(H1, 2)]);
    assert!(decide(&world_of(&resolved), &change_status(ALICE, StatusCommand::Close)).is_ok());
}

#[test]
fn holds_move_no_money() {
    let changes = history(&given("100.00", "0.00"), &[place(H1, "30", 600), place(H2, "10", 60), void(H1, 1)]);
    let world = world_of(&changes);
    let sum: rust_decimal::Decimal = world
        .wallets
        .values()
        .filter_map(|wallet| match wallet {
            Wallet::Open(open) if open.asset == gold().code => Some(open.balance),
            _ => None,
        })
        .sum();
    assert_eq!(sum, dec("0"));
}
