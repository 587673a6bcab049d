//! Given/when/then tests of the ledger Decider: every rule of SPEC §2, one command at a time.
#![allow(clippy::unwrap_used)]

mod support;

use rust_decimal::Decimal;
use tally_shared::asset::{AssetCode, FeePolicy};
use tally_shared::envelope::{Change, StreamId};
use tally_shared::error::Rule;
use tally_shared::ledger::{dependencies, Command, Dependency, DomainError, StatusCommand, World};
use tally_shared::money::{AmountError, Scale};
use tally_shared::transfer::{TransferId, TransferKind};
use tally_shared::wallet::WalletId;

use support::*;

use TransferKind::{Bonus, CashIn, Reversal, Spend, Topup, Withdrawal};

const ALICE: WalletId = WalletId(uuid::Uuid::from_u128(1));
const BOB: WalletId = WalletId(uuid::Uuid::from_u128(2));
const GEM_ALICE: WalletId = WalletId(uuid::Uuid::from_u128(11));
const UNKNOWN: WalletId = WalletId(uuid::Uuid::from_u128(99));

const T0: TransferId = TransferId(uuid::Uuid::from_u128(0x100));
const T1: TransferId = TransferId(uuid::Uuid::from_u128(0x101));
const T2: TransferId = TransferId(uuid::Uuid::from_u128(0x102));
const R1: TransferId = TransferId(uuid::Uuid::from_u128(0x201));
const R2: TransferId = TransferId(uuid::Uuid::from_u128(0x202));
const R3: TransferId = TransferId(uuid::Uuid::from_u128(0x203));

/// GOLD without a fee policy, and ALICE's user wallet on it holding `balance` (topped up by T0).
fn gold_with_alice(balance: &str) -> Vec<Change> {
    let gold = gold();
    let mut given = gold.defined(None);
    given.push(gold.opened(ALICE, "alice", "0.00"));
    if dec(balance) > Decimal::ZERO {
        given.extend(gold.topped_up(T0, ALICE, balance, &format!("-{balance}"), balance));
    }
    given
}

/// GOLD, ALICE holding `balance`, BOB empty.
fn gold_with_alice_and_bob(balance: &str) -> Vec<Change> {
    let mut given = gold_with_alice(balance);
    given.push(gold().opened(BOB, "bob", "0.00"));
    given
}

fn invalid_amount(field: &str, reason: AmountError) -> DomainError {
    DomainError::InvalidAmount { field: field.to_owned(), reason }
}

fn insufficient(wallet_id: WalletId, available: &str, requested: &str) -> DomainError {
    DomainError::InsufficientFunds { wallet_id, available: available.to_owned(), requested: requested.to_owned() }
}

fn validation(field: &str, rule: Rule) -> DomainError {
    DomainError::invalid(field, rule)
}

// ---- Assets ------------------------------------------------------------------------------------

#[test]
fn asset_codes_match_the_pattern() {
    for valid in ["A", "GOLD", "NGN", "GEM_2", "A1_B2", "ABCDEFGHIJKLMNOP"] {
        assert_eq!(AssetCode::parse(valid).unwrap().as_str(), valid);
    }
    for invalid in ["", "gold", "Gold", "1GOLD", "_GOLD", "GO-LD", "GO LD", "GÖLD", "ABCDEFGHIJKLMNOPQ", "GOLD\n"] {
        assert_eq!(
            AssetCode::parse(invalid),
            Err(validation("code", Rule::Pattern { pattern: "^[A-Z][A-Z0-9_]{0,15}$" })),
            "{invalid:?}"
        );
        assert!(serde_json::from_value::<AssetCode>(serde_json::json!(invalid)).is_err(), "{invalid:?}");
    }
}

#[test]
fn scales_go_from_0_to_18() {
    assert_eq!(Scale::new(0).unwrap().places(), 0);
    assert_eq!(Scale::new(18).unwrap().places(), 18);
    assert_eq!(Scale::new(19), Err(AmountError::ScaleOutOfRange { scale: 19 }));
    assert_eq!(serde_json::from_str::<Scale>("18").unwrap().places(), 18);
    assert!(serde_json::from_str::<Scale>("19").is_err());
}

#[test]
fn defining_an_asset_opens_treasury_unlimited_and_revenue_and_fees_limited_to_zero() {
    let gold = gold();
    // `defined` writes the treasury's overdraft limit as None (unlimited) and the others' as 0.00.
    check(&[], gold.define(None), Ok(gold.defined(None)));
    let gem = gem();
    check(&[], gem.define(None), Ok(gem.defined(None)));
}

#[test]
fn defining_an_asset_brings_its_fee_policy_to_the_asset_scale() {
    let gold = gold();
    check(
        &[],
        gold.define(Some(policy("1.50", "0.5", Some("1"), Some("20.000")))),
        Ok(gold.defined(Some(policy("1.5", "0.50", Some("1.00"), Some("20.00"))))),
    );
}

#[test]
fn fee_percent_goes_from_0_to_100() {
    let gold = gold();
    check(
        &[],
        gold.define(Some(policy("0", "0", None, None))),
        Ok(gold.defined(Some(policy("0", "0.00", None, None)))),
    );
    check(
        &[],
        gold.define(Some(policy("100", "0", None, None))),
        Ok(gold.defined(Some(policy("100", "0.00", None, None)))),
    );
    for percent in ["-0.01", "100.01", "1000"] {
        check(
            &[],
            gold.define(Some(policy(percent, "0", None, None))),
            Err(validation("cash_in_fee.percent", Rule::Percent)),
        );
    }
}

#[test]
fn fee_money_fields_are_non_negative_at_the_asset_scale() {
    let gold = gold();
    let negative = Rule::Money(AmountError::Negative);
    let overscaled = Rule::Money(AmountError::TooManyDecimals { scale: 2 });
    let cases = [
        (policy("1", "-0.01", None, None), "cash_in_fee.fixed", &negative),
        (policy("1", "0.001", None, None), "cash_in_fee.fixed", &overscaled),
        (policy("1", "0", Some("-1"), None), "cash_in_fee.min", &negative),
        (policy("1", "0", Some("0.005"), None), "cash_in_fee.min", &overscaled),
        (policy("1", "0", None, Some("-1")), "cash_in_fee.max", &negative),
        (policy("1", "0", None, Some("1.001")), "cash_in_fee.max", &overscaled),
    ];
    for (policy, field, reason) in cases {
        check(&[], gold.define(Some(policy)), Err(validation(field, reason.clone())));
    }
}

#[test]
fn fee_min_must_not_exceed_max() {
    let gold = gold();
    check(
        &[],
        gold.define(Some(policy("1", "0", Some("2.00"), Some("1.99")))),
        Err(validation("cash_in_fee.min", Rule::MinAboveMax)),
    );
    check(
        &[],
        gold.define(Some(policy("1", "0", Some("2"), Some("2")))),
        Ok(gold.defined(Some(policy("1", "0.00", Some("2.00"), Some("2.00"))))),
    );
}

#[test]
fn an_asset_is_defined_once() {
    let gold = gold();
    check(&gold.defined(None), gold.define(None), Err(DomainError::AssetExists { code: gold.code.clone() }));
    // Another asset may be defined beside it.
    check(&gold.defined(None), gem().define(None), Ok(gem().defined(None)));
}

#[test]
fn an_asset_needs_three_different_system_wallets() {
    let mut gold = gold();
    gold.fees = gold.revenue;
    check(&[], gold.define(None), Err(validation("system_wallets", Rule::DistinctSystemWallets)));
}

#[test]
fn an_asset_cannot_take_the_id_of_an_existing_wallet() {
    let mut gem = gem();
    gem.treasury = ALICE;
    check(&gold_with_alice("0"), gem.define(None), Err(DomainError::WalletExists { wallet_id: ALICE }));
}

// ---- Wallets -----------------------------------------------------------------------------------

#[test]
fn opening_a_wallet_defaults_its_overdraft_limit_to_zero_at_the_asset_scale() {
    let gold = gold();
    check(&gold.defined(None), gold.open(ALICE, "alice", None), Ok(vec![gold.opened(ALICE, "alice", "0.00")]));
    check(&gold.defined(None), gold.open(ALICE, "alice", Some("5")), Ok(vec![gold.opened(ALICE, "alice", "5.00")]));
    check(&gold.defined(None), gold.open(ALICE, "alice", Some("0")), Ok(vec![gold.opened(ALICE, "alice", "0.00")]));
}

#[test]
fn opening_a_wallet_needs_its_asset() {
    check(
        &gold().defined(None),
        gem().open(GEM_ALICE, "alice", None),
        Err(DomainError::AssetNotFound { code: "GEM".to_owned() }),
    );
}

#[test]
fn an_owner_has_one_wallet_per_asset_and_a_second_is_refused_with_the_first_id() {
    let gold = gold();
    let given = gold_with_alice("0");
    check(&given, gold.open(BOB, "alice", None), Err(DomainError::WalletExists { wallet_id: ALICE }));
    // The same owner may hold another asset, and another owner the same asset.
    let mut given = given;
    given.extend(gem().defined(None));
    check(&given, gem().open(GEM_ALICE, "alice", None), Ok(vec![gem().opened(GEM_ALICE, "alice", "0")]));
    check(&given, gold.open(BOB, "bob", None), Ok(vec![gold.opened(BOB, "bob", "0.00")]));
}

#[test]
fn a_closed_wallet_still_holds_its_owners_place() {
    let gold = gold();
    let mut given = gold_with_alice("0");
    given.push(closed(ALICE));
    check(&given, gold.open(BOB, "alice", None), Err(DomainError::WalletExists { wallet_id: ALICE }));
}

#[test]
fn a_wallet_id_is_used_once() {
    let gold = gold();
    check(&gold_with_alice("0"), gold.open(ALICE, "bob", None), Err(DomainError::WalletExists { wallet_id: ALICE }));
    check(
        &gold_with_alice("0"),
        gold.open(gold.treasury, "bob", None),
        Err(DomainError::WalletExists { wallet_id: gold.treasury }),
    );
}

#[test]
fn an_overdraft_limit_is_non_negative_at_the_asset_scale() {
    let gold = gold();
    let given = gold.defined(None);
    check(&given, gold.open(ALICE, "alice", Some("-1")), Err(invalid_amount("overdraft_limit", AmountError::Negative)));
    check(
        &given,
        gold.open(ALICE, "alice", Some("0.001")),
        Err(invalid_amount("overdraft_limit", AmountError::TooManyDecimals { scale: 2 })),
    );
}

#[test]
fn an_owner_id_has_1_to_128_characters() {
    let gold = gold();
    let given = gold.defined(None);
    let reason = Rule::Length { length_max: 128 };
    check(&given, gold.open(ALICE, "", None), Err(validation("owner_id", reason.clone())));
    check(&given, gold.open(ALICE, &"é".repeat(129), None), Err(validation("owner_id", reason)));
    let longest = "é".repeat(128);
    check(&given, gold.open(ALICE, &longest, None), Ok(vec![gold.opened(ALICE, &longest, "0.00")]));
}

// ---- Money movements: legs and balances ----------------------------------------------------------

#[test]
fn a_topup_and_a_bonus_move_from_the_treasury_to_the_wallet() {
    let gold = gold();
    for kind in [Topup, Bonus] {
        check(
            &gold_with_alice("0"),
            movement(kind, T1, ALICE, "10.5"),
            Ok(vec![
                gold.recorded(T1, kind, "10.50", "0.00", vec![principal(gold.treasury, ALICE, "10.50")]),
                debited(gold.treasury, T1, kind, "10.50", "-10.50", ALICE, 0),
                credited(ALICE, T1, kind, "10.50", "10.50", gold.treasury, 0),
            ]),
        );
    }
}

#[test]
fn the_treasury_goes_negative_without_limit() {
    let gold = gold();
    let given = gold_with_alice("100.00");
    check(
        &given,
        movement(Topup, T1, ALICE, "1000000000000.00"),
        Ok(vec![
            gold.recorded(
                T1,
                Topup,
                "1000000000000.00",
                "0.00",
                vec![principal(gold.treasury, ALICE, "1000000000000.00")],
            ),
            debited(gold.treasury, T1, Topup, "1000000000000.00", "-1000000000100.00", ALICE, 0),
            credited(ALICE, T1, Topup, "1000000000000.00", "1000000000100.00", gold.treasury, 0),
        ]),
    );
}

#[test]
fn a_spend_moves_from_the_wallet_to_revenue() {
    let gold = gold();
    check(
        &gold_with_alice("100.00"),
        movement(Spend, T1, ALICE, "30"),
        Ok(vec![
            gold.recorded(T1, Spend, "30.00", "0.00", vec![principal(ALICE, gold.revenue, "30.00")]),
            debited(ALICE, T1, Spend, "30.00", "70.00", gold.revenue, 0),
            credited(gold.revenue, T1, Spend, "30.00", "30.00", ALICE, 0),
        ]),
    );
}

#[test]
fn a_withdrawal_moves_from_the_wallet_to_the_treasury() {
    let gold = gold();
    check(
        &gold_with_alice("100.00"),
        movement(Withdrawal, T1, ALICE, "100.00"),
        Ok(vec![
            gold.recorded(T1, Withdrawal, "100.00", "0.00", vec![principal(ALICE, gold.treasury, "100.00")]),
            debited(ALICE, T1, Withdrawal, "100.00", "0.00", gold.treasury, 0),
            credited(gold.treasury, T1, Withdrawal, "100.00", "0.00", ALICE, 0),
        ]),
    );
}

/// GOLD with `fee` as its cash-in policy (written at scale 2) and ALICE's empty wallet.
fn gold_with_fee(fee: FeePolicy) -> Vec<Change> {
    let gold = gold();
    let mut given = gold.defined(Some(fee));
    given.push(gold.opened(ALICE, "alice", "0.00"));
    given
}

/// The changes of a cash-in of `amount` to ALICE's empty wallet with `fee` taken, on a fresh GOLD.
fn cashed_in(amount: &str, fee: &str) -> Vec<Change> {
    let gold = gold();
    let mut changes = vec![
        gold.recorded(T1, CashIn, amount, fee, vec![principal(gold.treasury, ALICE, amount)]),
        debited(gold.treasury, T1, CashIn, amount, &format!("-{amount}"), ALICE, 0),
        credited(ALICE, T1, CashIn, amount, amount, gold.treasury, 0),
    ];
    if dec(fee) > Decimal::ZERO {
        let Change { event: tally_shared::envelope::Event::Transfer(record), .. } = &mut changes[0] else {
            unreachable!()
        };
        let tally_shared::transfer::TransferEvent::TransferRecorded(record) = record else { unreachable!() };
        record.legs.push(fee_leg(ALICE, gold.fees, fee));
        let after = gold.scale.format(dec(amount) - dec(fee));
        changes.push(debited(ALICE, T1, CashIn, fee, &after, gold.fees, 1));
        changes.push(credited(gold.fees, T1, CashIn, fee, fee, ALICE, 1));
    }
    changes
}

#[test]
fn a_cash_in_without_a_policy_takes_no_fee() {
    check(&gold_with_alice("0"), movement(CashIn, T1, ALICE, "100"), Ok(cashed_in("100.00", "0.00")));
}

#[test]
fn a_cash_in_credits_the_amount_then_takes_percent_plus_fixed_to_fees() {
    check(
        &gold_with_fee(policy("1.5", "0.10", None, None)),
        movement(CashIn, T1, ALICE, "100.00"),
        Ok(cashed_in("100.00", "1.60")),
    );
}

#[test]
fn a_cash_in_fee_is_rounded_half_up_to_the_asset_scale() {
    // 0.5% of 1.00 is 0.005: half up gives 0.01 (banker's rounding would give 0.00).
    check(
        &gold_with_fee(policy("0.5", "0.00", None, None)),
        movement(CashIn, T1, ALICE, "1.00"),
        Ok(cashed_in("1.00", "0.01")),
    );
    // 0.5% of 0.98 is 0.0049: down to 0.00, and a zero fee has no leg.
    check(
        &gold_with_fee(policy("0.5", "0.00", None, None)),
        movement(CashIn, T1, ALICE, "0.98"),
        Ok(cashed_in("0.98", "0.00")),
    );
    // 2.5% of 0.30 is 0.0075: up to 0.01.
    check(
        &gold_with_fee(policy("2.5", "0.00", None, None)),
        movement(CashIn, T1, ALICE, "0.30"),
        Ok(cashed_in("0.30", "0.01")),
    );
}

#[test]
fn a_cash_in_fee_is_at_least_min_and_at_most_max() {
    check(
        &gold_with_fee(policy("1", "0.00", Some("0.50"), None)),
        movement(CashIn, T1, ALICE, "10.00"),
        Ok(cashed_in("10.00", "0.50")),
    );
    check(
        &gold_with_fee(policy("10", "1.00", None, Some("2.00"))),
        movement(CashIn, T1, ALICE, "100.00"),
        Ok(cashed_in("100.00", "2.00")),
    );
    check(
        &gold_with_fee(policy("10", "1.00", Some("0.50"), Some("20.00"))),
        movement(CashIn, T1, ALICE, "10.00"),
        Ok(cashed_in("10.00", "2.00")),
    );
}

#[test]
fn a_cash_in_fee_never_exceeds_the_amount() {
    check(
        &gold_with_fee(policy("0", "5.00", None, None)),
        movement(CashIn, T1, ALICE, "3.00"),
        Ok(cashed_in("3.00", "3.00")),
    );
    check(
        &gold_with_fee(policy("100", "0.00", Some("7.00"), None)),
        movement(CashIn, T1, ALICE, "0.01"),
        Ok(cashed_in("0.01", "0.01")),
    );
}

#[test]
fn a_cash_in_fee_is_exact_even_when_amount_times_percent_needs_more_than_28_digits() {
    // 1.5% of 1000000000.000000000000000033 is 15000000.000000000000000000495: half up at 18 places
    // is …000. A product rounded to 28 digits first (…0495 → …050) would round the fee up to …001.
    let nano = test_asset("NANO", 18, 0x3000);
    let fee = policy("1.5", "0", None, None);
    let amount = "1000000000.000000000000000033";
    assert_eq!(
        fee.clone().parse(nano.scale).unwrap().fee(dec(amount), nano.scale).unwrap().to_string(),
        "15000000.000000000000000000"
    );
    // And at scale 0, a huge amount times the percent overflows no Decimal on the way to its fee.
    let whole = test_asset("WHOLE", 0, 0x4000);
    let huge = "70000000000000000000000000000";
    assert_eq!(
        policy("2", "0", None, None).fee(dec(huge), whole.scale).unwrap().to_string(),
        "1400000000000000000000000000"
    );
}

#[test]
fn a_transfer_moves_between_two_user_wallets_with_an_optional_fee_from_the_sender() {
    let gold = gold();
    let kind = TransferKind::Transfer;
    check(
        &gold_with_alice_and_bob("10.00"),
        transfer_between(T1, ALICE, BOB, "3", None),
        Ok(vec![
            gold.recorded(T1, kind, "3.00", "0.00", vec![principal(ALICE, BOB, "3.00")]),
            debited(ALICE, T1, kind, "3.00", "7.00", BOB, 0),
            credited(BOB, T1, kind, "3.00", "3.00", ALICE, 0),
        ]),
    );
    check(
        &gold_with_alice_and_bob("10.00"),
        transfer_between(T1, ALICE, BOB, "3", Some("0")),
        Ok(vec![
            gold.recorded(T1, kind, "3.00", "0.00", vec![principal(ALICE, BOB, "3.00")]),
            debited(ALICE, T1, kind, "3.00", "7.00", BOB, 0),
            credited(BOB, T1, kind, "3.00", "3.00", ALICE, 0),
        ]),
    );
    check(
        &gold_with_alice_and_bob("10.00"),
        transfer_between(T1, ALICE, BOB, "3", Some("0.25")),
        Ok(vec![
            gold.recorded(
                T1,
                kind,
                "3.00",
                "0.25",
                vec![principal(ALICE, BOB, "3.00"), fee_leg(ALICE, gold.fees, "0.25")],
            ),
            debited(ALICE, T1, kind, "3.00", "7.00", BOB, 0),
            credited(BOB, T1, kind, "3.00", "3.00", ALICE, 0),
            debited(ALICE, T1, kind, "0.25", "6.75", gold.fees, 1),
            credited(gold.fees, T1, kind, "0.25", "0.25", ALICE, 1),
        ]),
    );
}

#[test]
fn references_and_metadata_are_recorded_with_the_transfer() {
    let gold = gold();
    let metadata = serde_json::json!({"order": 42});
    let when = Command::Move {
        transfer_id: T1,
        kind: Bonus,
        wallet_id: ALICE,
        amount: dec("1"),
        reference: Some("order-42".to_owned()),
        metadata: metadata.clone(),
    };
    let mut record = gold.recorded(T1, Bonus, "1.00", "0.00", vec![principal(gold.treasury, ALICE, "1.00")]);
    if let tally_shared::envelope::Event::Transfer(tally_shared::transfer::TransferEvent::TransferRecorded(r)) =
        &mut record.event
    {
        r.reference = Some("order-42".to_owned());
        r.metadata = metadata;
    }
    check(
        &gold_with_alice("0"),
        when,
        Ok(vec![
            record,
            debited(gold.treasury, T1, Bonus, "1.00", "-1.00", ALICE, 0),
            credited(ALICE, T1, Bonus, "1.00", "1.00", gold.treasury, 0),
        ]),
    );
}

// ---- Limits --------------------------------------------------------------------------------------

#[test]
fn a_debit_beyond_the_balance_is_refused_with_available_and_requested_at_the_asset_scale() {
    let given = gold_with_alice_and_bob("10.00");
    check(&given, movement(Spend, T1, ALICE, "10.01"), Err(insufficient(ALICE, "10.00", "10.01")));
    check(&given, movement(Withdrawal, T1, ALICE, "11"), Err(insufficient(ALICE, "10.00", "11.00")));
    check(&given, transfer_between(T1, ALICE, BOB, "10.5", None), Err(insufficient(ALICE, "10.00", "10.50")));
    check(&gold_with_alice("0"), movement(Spend, T1, ALICE, "0.01"), Err(insufficient(ALICE, "0.00", "0.01")));

    let gem = gem();
    let mut given = gem.defined(None);
    given.push(gem.opened(GEM_ALICE, "alice", "0"));
    given.extend(gem.topped_up(T0, GEM_ALICE, "5", "-5", "5"));
    check(&given, movement(Spend, T1, GEM_ALICE, "6"), Err(insufficient(GEM_ALICE, "5", "6")));
}

#[test]
fn a_transfer_with_a_fee_needs_amount_plus_fee_and_says_so() {
    let given = gold_with_alice_and_bob("10.00");
    check(&given, transfer_between(T1, ALICE, BOB, "8.00", Some("3.00")), Err(insufficient(ALICE, "10.00", "11.00")));
    check(&given, transfer_between(T1, ALICE, BOB, "10.00", Some("0.01")), Err(insufficient(ALICE, "10.00", "10.01")));
}

#[test]
fn a_wallet_may_go_down_to_minus_its_overdraft_limit_and_no_further() {
    let gold = gold();
    let mut given = gold.defined(None);
    given.push(gold.opened(ALICE, "alice", "5.00"));
    given.extend(gold.topped_up(T0, ALICE, "1.00", "-1.00", "1.00"));
    check(
        &given,
        movement(Spend, T1, ALICE, "6.00"),
        Ok(vec![
            gold.recorded(T1, Spend, "6.00", "0.00", vec![principal(ALICE, gold.revenue, "6.00")]),
            debited(ALICE, T1, Spend, "6.00", "-5.00", gold.revenue, 0),
            credited(gold.revenue, T1, Spend, "6.00", "6.00", ALICE, 0),
        ]),
    );
    check(&given, movement(Spend, T1, ALICE, "6.01"), Err(insufficient(ALICE, "6.00", "6.01")));
}

#[test]
fn a_cash_in_never_needs_funds_because_the_amount_comes_before_the_fee() {
    check(
        &gold_with_fee(policy("0", "1.00", None, None)),
        movement(CashIn, T1, ALICE, "1.00"),
        Ok(cashed_in("1.00", "1.00")),
    );
}

#[test]
fn amounts_are_strictly_positive_with_at_most_the_asset_scale() {
    let given = gold_with_alice_and_bob("10.00");
    let cases = [
        ("0", AmountError::NotPositive),
        ("0.00", AmountError::NotPositive),
        ("-1", AmountError::NotPositive),
        ("0.001", AmountError::TooManyDecimals { scale: 2 }),
        ("1.005", AmountError::TooManyDecimals { scale: 2 }),
    ];
    for (amount, reason) in cases {
        for kind in [Topup, Bonus, Spend, Withdrawal, CashIn] {
            check(&given, movement(kind, T1, ALICE, amount), Err(invalid_amount("amount", reason.clone())));
        }
        check(&given, transfer_between(T1, ALICE, BOB, amount, None), Err(invalid_amount("amount", reason.clone())));
    }
    // Trailing zeros beyond the scale change nothing.
    let gold = gold();
    check(
        &given,
        movement(Spend, T1, ALICE, "1.000"),
        Ok(vec![
            gold.recorded(T1, Spend, "1.00", "0.00", vec![principal(ALICE, gold.revenue, "1.00")]),
            debited(ALICE, T1, Spend, "1.00", "9.00", gold.revenue, 0),
            credited(gold.revenue, T1, Spend, "1.00", "1.00", ALICE, 0),
        ]),
    );
}

#[test]
fn an_amount_that_cannot_be_held_at_the_asset_scale_is_refused() {
    // 10^11 whole units at 18 places needs 30 digits: a Decimal holds 28 or 29.
    let nano = test_asset("NANO", 18, 0x3000);
    let mut given = nano.defined(None);
    given.push(nano.opened(ALICE, "alice", "0.000000000000000000"));
    check(&given, movement(Topup, T1, ALICE, "100000000000"), Err(invalid_amount("amount", AmountError::OutOfRange)));
    check(
        &nano.defined(None),
        nano.open(ALICE, "alice", Some("100000000000")),
        Err(invalid_amount("overdraft_limit", AmountError::OutOfRange)),
    );
}

#[test]
fn a_balance_that_would_leave_the_representable_range_is_refused_rather_than_rounded() {
    // The treasury's balance would need 2^96 hundredths or more: Decimal would drop a decimal place.
    let big = "500000000000000000000000000.01";
    let given = history(&gold_with_alice_and_bob("0"), &[movement(Topup, T0, ALICE, big)]);
    check(&given, movement(Topup, T1, BOB, big), Err(DomainError::AmountOutOfRange));
}

#[test]
fn a_credit_that_would_leave_the_representable_range_is_refused_rather_than_rounded() {
    // Revenue holds 5×10^26 from ALICE's overdraft; BOB's spend would bring it past 2^96 hundredths.
    let gold = gold();
    let limit = "500000000000000000000000000.00";
    let mut given = gold.defined(None);
    given.push(gold.opened(ALICE, "alice", limit));
    given.push(gold.opened(BOB, "bob", limit));
    let given = history(&given, &[movement(Spend, T0, ALICE, limit)]);
    check(&given, movement(Spend, T1, BOB, "300000000000000000000000000.01"), Err(DomainError::AmountOutOfRange));
}

#[test]
fn a_transfer_fee_is_non_negative_at_the_asset_scale() {
    let given = gold_with_alice_and_bob("10.00");
    check(
        &given,
        transfer_between(T1, ALICE, BOB, "1", Some("-0.01")),
        Err(invalid_amount("fee", AmountError::Negative)),
    );
    check(
        &given,
        transfer_between(T1, ALICE, BOB, "1", Some("0.001")),
        Err(invalid_amount("fee", AmountError::TooManyDecimals { scale: 2 })),
    );
}

#[test]
fn a_transfer_needs_two_different_wallets_of_one_asset() {
    let mut given = gold_with_alice_and_bob("10.00");
    check(&given, transfer_between(T1, ALICE, ALICE, "1", None), Err(DomainError::SameWallet));
    given.extend(gem().defined(None));
    given.push(gem().opened(GEM_ALICE, "carol", "0"));
    check(
        &given,
        transfer_between(T1, ALICE, GEM_ALICE, "1", None),
        Err(DomainError::AssetMismatch { from_asset: gold().code, to_asset: gem().code }),
    );
}

#[test]
fn unknown_wallets_are_not_found() {
    let given = gold_with_alice("10.00");
    let not_found = DomainError::WalletNotFound { wallet_id: Some(UNKNOWN) };
    check(&given, movement(Topup, T1, UNKNOWN, "1"), Err(not_found.clone()));
    check(&given, transfer_between(T1, UNKNOWN, ALICE, "1", None), Err(not_found.clone()));
    check(&given, transfer_between(T1, ALICE, UNKNOWN, "1", None), Err(not_found.clone()));
    for change in [StatusCommand::Freeze, StatusCommand::Unfreeze, StatusCommand::Close] {
        check(&given, change_status(UNKNOWN, change), Err(not_found.clone()));
    }
}

#[test]
fn movements_have_their_own_kinds() {
    let given = gold_with_alice("10.00");
    for kind in [TransferKind::Transfer, Reversal] {
        check(&given, movement(kind, T1, ALICE, "1"), Err(validation("kind", Rule::KindHasOwnCommand)));
    }
}

#[test]
fn a_transfer_id_is_used_once() {
    let given = gold_with_alice_and_bob("10.00");
    let reason = Rule::TransferRecorded { transfer_id: T0 };
    check(&given, movement(Spend, T0, ALICE, "1"), Err(validation("transfer_id", reason.clone())));
    check(&given, transfer_between(T0, ALICE, BOB, "1", None), Err(validation("transfer_id", reason.clone())));
    check(&given, reverse(T0, T0, None), Err(validation("transfer_id", reason.clone())));
}

// ---- Status: frozen, closed, system wallets --------------------------------------------------------

#[test]
fn freezing_and_unfreezing_an_active_wallet() {
    let given = gold_with_alice("10.00");
    check(&given, change_status(ALICE, StatusCommand::Freeze), Ok(vec![frozen(ALICE)]));
    let with_reason =
        Command::ChangeStatus { wallet_id: ALICE, change: StatusCommand::Freeze, reason: Some("kyc".into()) };
    check(
        &given,
        with_reason,
        Ok(vec![wallet_change(
            ALICE,
            tally_shared::wallet::WalletEvent::WalletFrozen(tally_shared::wallet::StatusChange {
                reason: Some("kyc".into()),
            }),
        )]),
    );
    let mut frozen_given = given.clone();
    frozen_given.push(frozen(ALICE));
    check(&frozen_given, change_status(ALICE, StatusCommand::Unfreeze), Ok(vec![unfrozen(ALICE)]));
    // Repeating a status change changes nothing.
    check(&frozen_given, change_status(ALICE, StatusCommand::Freeze), Ok(vec![]));
    check(&given, change_status(ALICE, StatusCommand::Unfreeze), Ok(vec![]));
}

#[test]
fn a_frozen_wallet_refuses_debits_and_credits() {
    let mut given = gold_with_alice_and_bob("10.00");
    given.push(frozen(ALICE));
    let refused = Err(DomainError::WalletFrozen { wallet_id: ALICE });
    for kind in [Topup, Bonus, Spend, Withdrawal, CashIn] {
        check(&given, movement(kind, T1, ALICE, "1"), refused.clone());
    }
    check(&given, transfer_between(T1, ALICE, BOB, "1", None), refused.clone());
    check(&given, transfer_between(T1, BOB, ALICE, "1", None), Err(insufficient(BOB, "0.00", "1.00")));
    given.extend(gold().topped_up(T2, BOB, "5.00", "-15.00", "5.00"));
    check(&given, transfer_between(T1, BOB, ALICE, "1", None), refused.clone());
    check(&given, reverse(R1, T0, None), refused);
}

#[test]
fn an_unfrozen_wallet_moves_money_again() {
    let gold = gold();
    let mut given = gold_with_alice("10.00");
    given.push(frozen(ALICE));
    given.push(unfrozen(ALICE));
    check(
        &given,
        movement(Spend, T1, ALICE, "1"),
        Ok(vec![
            gold.recorded(T1, Spend, "1.00", "0.00", vec![principal(ALICE, gold.revenue, "1.00")]),
            debited(ALICE, T1, Spend, "1.00", "9.00", gold.revenue, 0),
            credited(gold.revenue, T1, Spend, "1.00", "1.00", ALICE, 0),
        ]),
    );
}

#[test]
fn a_wallet_closes_only_at_zero() {
    check(&gold_with_alice("0"), change_status(ALICE, StatusCommand::Close), Ok(vec![closed(ALICE)]));
    check(
        &gold_with_alice("10.00"),
        change_status(ALICE, StatusCommand::Close),
        Err(DomainError::WalletNotEmpty { wallet_id: ALICE, balance: "10.00".to_owned() }),
    );
    // In overdraft, the wallet owes money: not empty either.
    let gold = gold();
    let mut given = gold.defined(None);
    given.push(gold.opened(ALICE, "alice", "5.00"));
    let given = history(&given, &[movement(Spend, T1, ALICE, "1")]);
    check(
        &given,
        change_status(ALICE, StatusCommand::Close),
        Err(DomainError::WalletNotEmpty { wallet_id: ALICE, balance: "-1.00".to_owned() }),
    );
    // A frozen wallet at zero may close.
    let mut given = gold_with_alice("0");
    given.push(frozen(ALICE));
    check(&given, change_status(ALICE, StatusCommand::Close), Ok(vec![closed(ALICE)]));
}

#[test]
fn closed_is_terminal() {
    let mut given = gold_with_alice_and_bob("0");
    given.extend(gold().topped_up(T0, BOB, "5.00", "-5.00", "5.00"));
    given.push(closed(ALICE));
    let refused = Err(DomainError::WalletClosed { wallet_id: ALICE });
    check(&given, change_status(ALICE, StatusCommand::Freeze), refused.clone());
    check(&given, change_status(ALICE, StatusCommand::Unfreeze), refused.clone());
    check(&given, change_status(ALICE, StatusCommand::Close), Ok(vec![]));
    for kind in [Topup, Bonus, Spend, Withdrawal, CashIn] {
        check(&given, movement(kind, T1, ALICE, "1"), refused.clone());
    }
    check(&given, transfer_between(T1, BOB, ALICE, "1", None), refused.clone());
    check(&given, transfer_between(T1, ALICE, BOB, "1", None), refused);
}

#[test]
fn system_wallets_cannot_be_frozen_unfrozen_or_closed() {
    let gold = gold();
    let given = gold_with_alice("10.00");
    let reason = Rule::SystemWalletStatus;
    for system in [gold.treasury, gold.revenue, gold.fees] {
        for change in [StatusCommand::Freeze, StatusCommand::Unfreeze, StatusCommand::Close] {
            check(&given, change_status(system, change), Err(validation("wallet_id", reason.clone())));
        }
    }
}

#[test]
fn system_wallets_are_never_the_subject_of_user_money_commands() {
    let gold = gold();
    let given = gold_with_alice("10.00");
    let reason = Rule::SystemWalletMove;
    for system in [gold.treasury, gold.revenue, gold.fees] {
        for kind in [Topup, Bonus, Spend, Withdrawal, CashIn] {
            check(&given, movement(kind, T1, system, "1"), Err(validation("wallet_id", reason.clone())));
        }
        check(
            &given,
            transfer_between(T1, system, ALICE, "1", None),
            Err(validation("from_wallet_id", reason.clone())),
        );
        check(&given, transfer_between(T1, ALICE, system, "1", None), Err(validation("to_wallet_id", reason.clone())));
    }
}

// ---- Reversals ---------------------------------------------------------------------------------------

#[test]
fn a_reversal_by_default_takes_back_all_that_remains() {
    let gold = gold();
    check(
        &gold_with_alice("10.00"),
        reverse(R1, T0, None),
        Ok(vec![
            gold.reversal_recorded(R1, T0, "10.00", "0.00", vec![principal(ALICE, gold.treasury, "10.00")]),
            reversed(T0, R1, "10.00", "0.00"),
            debited(ALICE, R1, Reversal, "10.00", "0.00", gold.treasury, 0),
            credited(gold.treasury, R1, Reversal, "10.00", "0.00", ALICE, 0),
        ]),
    );
}

#[test]
fn a_reversal_records_its_reason() {
    let gold = gold();
    let mut record = gold.reversal_recorded(R1, T0, "10.00", "0.00", vec![principal(ALICE, gold.treasury, "10.00")]);
    if let tally_shared::envelope::Event::Transfer(tally_shared::transfer::TransferEvent::TransferRecorded(r)) =
        &mut record.event
    {
        r.reason = Some("chargeback".to_owned());
    }
    check(
        &gold_with_alice("10.00"),
        Command::Reverse { reversal_id: R1, transfer_id: T0, amount: None, reason: Some("chargeback".to_owned()) },
        Ok(vec![
            record,
            reversed(T0, R1, "10.00", "0.00"),
            debited(ALICE, R1, Reversal, "10.00", "0.00", gold.treasury, 0),
            credited(gold.treasury, R1, Reversal, "10.00", "0.00", ALICE, 0),
        ]),
    );
}

#[test]
fn partial_reversals_add_up_to_the_original_and_no_further() {
    let gold = gold();
    let given = gold_with_alice("10.00");
    check(
        &given,
        reverse(R1, T0, Some("4")),
        Ok(vec![
            gold.reversal_recorded(R1, T0, "4.00", "0.00", vec![principal(ALICE, gold.treasury, "4.00")]),
            reversed(T0, R1, "4.00", "0.00"),
            debited(ALICE, R1, Reversal, "4.00", "6.00", gold.treasury, 0),
            credited(gold.treasury, R1, Reversal, "4.00", "-6.00", ALICE, 0),
        ]),
    );
    let after_one = history(&given, &[reverse(R1, T0, Some("4"))]);
    check(
        &after_one,
        reverse(R2, T0, Some("6.01")),
        Err(DomainError::ReversalExceedsTransfer {
            transfer_id: T0,
            remaining: "6.00".to_owned(),
            requested: "6.01".to_owned(),
        }),
    );
    check(
        &after_one,
        reverse(R2, T0, None),
        Ok(vec![
            gold.reversal_recorded(R2, T0, "6.00", "0.00", vec![principal(ALICE, gold.treasury, "6.00")]),
            reversed(T0, R2, "6.00", "0.00"),
            debited(ALICE, R2, Reversal, "6.00", "0.00", gold.treasury, 0),
            credited(gold.treasury, R2, Reversal, "6.00", "0.00", ALICE, 0),
        ]),
    );
    let after_all = history(&given, &[reverse(R1, T0, Some("4")), reverse(R2, T0, Some("6"))]);
    let exhausted = |requested: &str| {
        Err(DomainError::ReversalExceedsTransfer {
            transfer_id: T0,
            remaining: "0.00".to_owned(),
            requested: requested.to_owned(),
        })
    };
    check(&after_all, reverse(R3, T0, Some("0.01")), exhausted("0.01"));
    check(&after_all, reverse(R3, T0, None), exhausted("0.00"));
}

#[test]
fn a_reversal_beyond_the_transfer_is_refused() {
    check(
        &gold_with_alice("10.00"),
        reverse(R1, T0, Some("10.01")),
        Err(DomainError::ReversalExceedsTransfer {
            transfer_id: T0,
            remaining: "10.00".to_owned(),
            requested: "10.01".to_owned(),
        }),
    );
}

#[test]
fn a_reversal_amount_is_strictly_positive_at_the_transfer_scale() {
    let given = gold_with_alice("10.00");
    check(&given, reverse(R1, T0, Some("0")), Err(invalid_amount("amount", AmountError::NotPositive)));
    check(&given, reverse(R1, T0, Some("-1")), Err(invalid_amount("amount", AmountError::NotPositive)));
    check(
        &given,
        reverse(R1, T0, Some("0.001")),
        Err(invalid_amount("amount", AmountError::TooManyDecimals { scale: 2 })),
    );
}

#[test]
fn a_reversal_undoes_the_legs_in_reverse_order_with_its_share_of_the_fee() {
    // ALICE sent 3.00 to BOB with a fee of 1.00: ALICE 6.00, BOB 3.00, fees 1.00.
    let gold = gold();
    let given = history(&gold_with_alice_and_bob("10.00"), &[transfer_between(T1, ALICE, BOB, "3", Some("1"))]);
    let kind = Reversal;
    // A third of the amount takes back a third of the fee, rounded half up: 0.33.
    check(
        &given,
        reverse(R1, T1, Some("1")),
        Ok(vec![
            gold.reversal_recorded(
                R1,
                T1,
                "1.00",
                "0.33",
                vec![fee_leg(gold.fees, ALICE, "0.33"), principal(BOB, ALICE, "1.00")],
            ),
            reversed(T1, R1, "1.00", "0.33"),
            debited(gold.fees, R1, kind, "0.33", "0.67", ALICE, 0),
            credited(ALICE, R1, kind, "0.33", "6.33", gold.fees, 0),
            debited(BOB, R1, kind, "1.00", "2.00", ALICE, 1),
            credited(ALICE, R1, kind, "1.00", "7.33", BOB, 1),
        ]),
    );
    // After two thirds, the last third takes exactly what remains of the fee: 0.34, not 0.33.
    let given = history(&given, &[reverse(R1, T1, Some("1")), reverse(R2, T1, Some("1"))]);
    check(
        &given,
        reverse(R3, T1, None),
        Ok(vec![
            gold.reversal_recorded(
                R3,
                T1,
                "1.00",
                "0.34",
                vec![fee_leg(gold.fees, ALICE, "0.34"), principal(BOB, ALICE, "1.00")],
            ),
            reversed(T1, R3, "1.00", "0.34"),
            debited(gold.fees, R3, kind, "0.34", "0.00", ALICE, 0),
            credited(ALICE, R3, kind, "0.34", "9.00", gold.fees, 0),
            debited(BOB, R3, kind, "1.00", "0.00", ALICE, 1),
            credited(ALICE, R3, kind, "1.00", "10.00", BOB, 1),
        ]),
    );
}

#[test]
fn a_partial_reversal_whose_fee_share_rounds_to_zero_has_no_fee_leg() {
    let gold = gold();
    let given = history(&gold_with_alice_and_bob("10.00"), &[transfer_between(T1, ALICE, BOB, "5", Some("0.01"))]);
    // 1.00 / 5.00 of 0.01 is 0.002: no fee back now, and the last reversal takes all of it.
    check(
        &given,
        reverse(R1, T1, Some("1")),
        Ok(vec![
            gold.reversal_recorded(R1, T1, "1.00", "0.00", vec![principal(BOB, ALICE, "1.00")]),
            reversed(T1, R1, "1.00", "0.00"),
            debited(BOB, R1, Reversal, "1.00", "4.00", ALICE, 0),
            credited(ALICE, R1, Reversal, "1.00", "5.99", BOB, 0),
        ]),
    );
    let given = history(&given, &[reverse(R1, T1, Some("1"))]);
    check(
        &given,
        reverse(R2, T1, None),
        Ok(vec![
            gold.reversal_recorded(
                R2,
                T1,
                "4.00",
                "0.01",
                vec![fee_leg(gold.fees, ALICE, "0.01"), principal(BOB, ALICE, "4.00")],
            ),
            reversed(T1, R2, "4.00", "0.01"),
            debited(gold.fees, R2, Reversal, "0.01", "0.00", ALICE, 0),
            credited(ALICE, R2, Reversal, "0.01", "6.00", gold.fees, 0),
            debited(BOB, R2, Reversal, "4.00", "0.00", ALICE, 1),
            credited(ALICE, R2, Reversal, "4.00", "10.00", BOB, 1),
        ]),
    );
}

/// `units` of 10^-18, written at scale 18.
fn atto(units: u64) -> String {
    format!("0.{units:018}")
}

#[test]
fn a_fee_share_is_exact_at_scale_18_even_for_dust() {
    // A fee of 3 units on 826: reversing 138 takes back 3 × 138 / 826 = 0.501 units, rounded half up to 1.
    // As decimals, 3e-18 × 138e-18 needs 36 places: cut to 28, the share came out as zero.
    let nano = test_asset("NANO", 18, 0x3000);
    let mut given = nano.defined(Some(policy("0", &atto(3), None, None)));
    given.push(nano.opened(ALICE, "alice", &atto(0)));
    let given = history(&given, &[movement(CashIn, T1, ALICE, &atto(826))]);
    check(
        &given,
        reverse(R1, T1, Some(&atto(138))),
        Ok(vec![
            nano.reversal_recorded(
                R1,
                T1,
                &atto(138),
                &atto(1),
                vec![fee_leg(nano.fees, ALICE, &atto(1)), principal(ALICE, nano.treasury, &atto(138))],
            ),
            reversed(T1, R1, &atto(138), &atto(1)),
            debited(nano.fees, R1, Reversal, &atto(1), &atto(2), ALICE, 0),
            credited(ALICE, R1, Reversal, &atto(1), &atto(824), nano.fees, 0),
            debited(ALICE, R1, Reversal, &atto(138), &atto(686), nano.treasury, 1),
            credited(nano.treasury, R1, Reversal, &atto(138), &format!("-{}", atto(688)), ALICE, 1),
        ]),
    );
}

#[test]
fn a_cash_in_reversal_returns_the_fee_before_taking_back_the_amount() {
    let gold = gold();
    // ALICE cashed in 100.00 and paid 1.60, then spent all of the 98.40 left but 0.40.
    let given = history(
        &gold_with_fee(policy("1.5", "0.10", None, None)),
        &[movement(CashIn, T1, ALICE, "100"), movement(Spend, T2, ALICE, "98")],
    );
    // Taking back 25.00 returns 0.40 of the fee first: ALICE has 0.80, not enough for 25.00.
    check(&given, reverse(R1, T1, Some("25")), Err(insufficient(ALICE, "0.40", "24.60")));
    // Taking back 0.40 returns round(1.60 × 0.40 / 100.00) = 0.01 first.
    check(
        &given,
        reverse(R1, T1, Some("0.40")),
        Ok(vec![
            gold.reversal_recorded(
                R1,
                T1,
                "0.40",
                "0.01",
                vec![fee_leg(gold.fees, ALICE, "0.01"), principal(ALICE, gold.treasury, "0.40")],
            ),
            reversed(T1, R1, "0.40", "0.01"),
            debited(gold.fees, R1, Reversal, "0.01", "1.59", ALICE, 0),
            credited(ALICE, R1, Reversal, "0.01", "0.41", gold.fees, 0),
            debited(ALICE, R1, Reversal, "0.40", "0.01", gold.treasury, 1),
            credited(gold.treasury, R1, Reversal, "0.40", "-99.60", ALICE, 1),
        ]),
    );
}

#[test]
fn a_reversal_needs_the_funds_of_who_received() {
    // ALICE spent 8.00 of the 10.00 topped up: the top-up cannot be taken back in full.
    let given = history(&gold_with_alice("10.00"), &[movement(Spend, T1, ALICE, "8")]);
    check(&given, reverse(R1, T0, None), Err(insufficient(ALICE, "2.00", "10.00")));
}

#[test]
fn a_reversal_cannot_be_reversed() {
    let given = history(&gold_with_alice("10.00"), &[reverse(R1, T0, Some("1"))]);
    check(&given, reverse(R2, R1, None), Err(validation("transfer_id", Rule::ReversalOfReversal)));
}

#[test]
fn an_unknown_transfer_cannot_be_reversed() {
    check(
        &gold_with_alice("10.00"),
        reverse(R1, T1, None),
        Err(DomainError::TransferNotFound { transfer_id: Some(T1) }),
    );
}

// ---- Dependencies ------------------------------------------------------------------------------------

/// Asserts that `command` on `store` needs `rounds` in that order, loading each, and then nothing.
#[track_caller]
fn check_dependencies(store: &World, command: &Command, rounds: &[Vec<Dependency>]) {
    let mut world = World::default();
    for (index, expected) in rounds.iter().enumerate() {
        assert_eq!(&dependencies(&world, command), expected, "round {index}");
        for dependency in expected {
            assert!(!world.knows(dependency));
            load(store, &mut world, dependency);
            assert!(world.knows(dependency));
        }
    }
    assert_eq!(dependencies(&world, command), vec![], "after all rounds");
}

fn wallet_stream(id: WalletId) -> Dependency {
    Dependency::Stream(StreamId::Wallet(id))
}

fn transfer_stream(id: TransferId) -> Dependency {
    Dependency::Stream(StreamId::Transfer(id))
}

fn asset_stream(code: &AssetCode) -> Dependency {
    Dependency::Stream(StreamId::Asset(code.clone()))
}

#[test]
fn defining_an_asset_needs_its_stream_and_its_system_wallets() {
    let gold = gold();
    check_dependencies(
        &World::default(),
        &gold.define(None),
        &[vec![
            asset_stream(&gold.code),
            wallet_stream(gold.treasury),
            wallet_stream(gold.revenue),
            wallet_stream(gold.fees),
        ]],
    );
}

#[test]
fn opening_a_wallet_needs_the_wallet_the_asset_and_the_owners_wallet() {
    let gold = gold();
    let store = world_of(&gold_with_alice("0"));
    for owner in ["alice", "bob"] {
        check_dependencies(
            &store,
            &gold.open(BOB, owner, None),
            &[vec![
                wallet_stream(BOB),
                asset_stream(&gold.code),
                Dependency::Owner(owner.to_owned(), gold.code.clone()),
            ]],
        );
    }
}

#[test]
fn a_movement_needs_its_wallet_then_the_asset_then_the_system_wallets() {
    let gold = gold();
    let store = world_of(&gold_with_alice("10.00"));
    for kind in [Topup, Bonus, Spend, Withdrawal, CashIn] {
        check_dependencies(
            &store,
            &movement(kind, T1, ALICE, "1"),
            &[
                vec![transfer_stream(T1), wallet_stream(ALICE)],
                vec![asset_stream(&gold.code)],
                vec![wallet_stream(gold.treasury), wallet_stream(gold.revenue), wallet_stream(gold.fees)],
            ],
        );
    }
    // An unknown wallet loads as unopened, and then nothing more is needed.
    check_dependencies(
        &store,
        &movement(Topup, T1, UNKNOWN, "1"),
        &[vec![transfer_stream(T1), wallet_stream(UNKNOWN)]],
    );
}

#[test]
fn a_transfer_needs_both_wallets_then_the_senders_asset_and_system_wallets() {
    let gold = gold();
    let store = world_of(&gold_with_alice_and_bob("10.00"));
    check_dependencies(
        &store,
        &transfer_between(T1, ALICE, BOB, "1", Some("0.10")),
        &[
            vec![transfer_stream(T1), wallet_stream(ALICE), wallet_stream(BOB)],
            vec![asset_stream(&gold.code)],
            vec![wallet_stream(gold.treasury), wallet_stream(gold.revenue), wallet_stream(gold.fees)],
        ],
    );
}

#[test]
fn a_reversal_needs_both_transfers_then_each_wallet_of_the_legs_once() {
    let gold = gold();
    let store =
        world_of(&history(&gold_with_alice_and_bob("10.00"), &[transfer_between(T1, ALICE, BOB, "3", Some("1"))]));
    check_dependencies(
        &store,
        &reverse(R1, T1, None),
        &[
            vec![transfer_stream(R1), transfer_stream(T1)],
            vec![wallet_stream(ALICE), wallet_stream(BOB), wallet_stream(gold.fees)],
        ],
    );
    check_dependencies(&store, &reverse(R1, T2, None), &[vec![transfer_stream(R1), transfer_stream(T2)]]);
}

#[test]
fn a_status_change_needs_its_wallet() {
    let store = world_of(&gold_with_alice("0"));
    for change in [StatusCommand::Freeze, StatusCommand::Unfreeze, StatusCommand::Close] {
        check_dependencies(&store, &change_status(ALICE, change), &[vec![wallet_stream(ALICE)]]);
    }
}
