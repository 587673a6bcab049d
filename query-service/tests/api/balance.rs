//! `GET /v1/wallets/{wallet_id}/balance`: balances at a moment, recomputed from the wallet's events.

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use rust_decimal::Decimal;
use sqlx::PgPool;
use tally_shared::envelope::{Event, StreamId};
use tally_shared::wallet::{StatusChange, WalletEvent, WalletId};
use uuid::Uuid;

use crate::support::{append, dec, posting, wallet_opened, TestApp};

/// What the test itself knows of each event of the wallet: where and when, and the balance after it.
struct Known {
    position: i64,
    recorded_at: DateTime<Utc>,
    version: i64,
    /// `Some` after a debit or credit.
    balance_after: Option<Decimal>,
}

/// The replay the service must agree with: the last posting at or before the moment, zero if none.
fn replay(known: &[Known], at_or_before: impl Fn(&Known) -> bool) -> (String, i64, Option<i64>) {
    let seen: Vec<&Known> = known.iter().filter(|event| at_or_before(event)).collect();
    let version = seen.last().map_or(0, |event| event.version);
    let last_posting = seen.iter().rev().find(|event| event.balance_after.is_some());
    match last_posting {
        Some(event) => (format!("{:.2}", event.balance_after.unwrap()), version, Some(event.position)),
        None => ("0.00".to_owned(), version, None),
    }
}

fn rfc3339(instant: DateTime<Utc>) -> String {
    instant.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// A wallet (scale 2) whose events interleave with another wallet's: opened, 10.00 in, 2.50 out, frozen,
/// unfrozen, then `extra` alternating postings, one second apart.
async fn arrange(pool: &PgPool, extra: usize) -> (Uuid, Vec<Known>) {
    let start = DateTime::parse_from_rfc3339("2025-03-01T12:00:00Z").unwrap().with_timezone(&Utc);
    let wallet_id = Uuid::now_v7();
    let noise_id = Uuid::now_v7();
    let stream = StreamId::Wallet(WalletId(wallet_id));
    let noise = StreamId::Wallet(WalletId(noise_id));
    append(pool, &noise, 1, wallet_opened(noise_id, "noise", "NGN", 2), start).await;
    let frozen = || Event::Wallet(WalletEvent::WalletFrozen(StatusChange { reason: None }));
    let unfrozen = || Event::Wallet(WalletEvent::WalletUnfrozen(StatusChange { reason: None }));
    let mut plan: Vec<(Event, Option<Decimal>)> = vec![
        (wallet_opened(wallet_id, "alice", "NGN", 2), None),
        (posting(true, "10.00", "10.00", noise_id), Some(dec("10.00"))),
        (posting(false, "2.50", "7.50", noise_id), Some(dec("7.50"))),
        (frozen(), None),
        (unfrozen(), None),
    ];
    let mut balance = dec("7.50");
    for index in 0..extra {
        let credit = index % 3 != 2;
        let amount = Decimal::new(index as i64 + 1, 2);
        balance = if credit { balance + amount } else { balance - amount };
        plan.push((posting(credit, &amount.to_string(), &balance.to_string(), noise_id), Some(balance)));
    }
    let mut known = Vec::new();
    let mut noise_version = 1;
    for (index, (event, balance_after)) in plan.into_iter().enumerate() {
        let recorded_at = start + Duration::seconds(index as i64 + 1);
        let version = index as i64 + 1;
        let position = append(pool, &stream, version, event, recorded_at).await;
        known.push(Known { position, recorded_at, version, balance_after });
        if index % 2 == 0 {
            noise_version += 1;
            append(
                pool,
                &noise,
                noise_version,
                posting(true, "1.00", &format!("{noise_version}.00"), wallet_id),
                recorded_at,
            )
            .await;
        }
    }
    (wallet_id, known)
}

#[sqlx::test(migrations = "../migrations")]
async fn balances_at_positions_equal_a_replay(pool: PgPool) {
    let (wallet_id, known) = arrange(&pool, 60).await;
    let app = TestApp::spawn(pool).await;
    let last = known.last().unwrap().position;

    for position in 0..=last + 2 {
        let answer = app.get(&format!("/v1/wallets/{wallet_id}/balance?at_position={position}")).await;

        let (balance, version, posting_position) = replay(&known, |event| event.position <= position);
        let body = answer.ok();
        assert_eq!(body["balance"], balance, "at_position={position}");
        assert_eq!(body["version"], version, "at_position={position}");
        assert_eq!(body["position"].as_i64(), posting_position, "at_position={position}");
        assert_eq!(body["at_position"], position);
        assert_eq!(body["asset"], "NGN");
    }
    // A few by hand, so that the replay above is not the only judge.
    let at = |position: i64| format!("/v1/wallets/{wallet_id}/balance?at_position={position}");
    assert_eq!(app.get(&at(known[0].position)).await.ok()["balance"], "0.00");
    assert_eq!(app.get(&at(known[1].position)).await.ok()["balance"], "10.00");
    assert_eq!(app.get(&at(known[4].position)).await.ok()["balance"], "7.50");
    assert_eq!(app.get(&at(known[4].position)).await.ok()["version"], 5);
    assert_eq!(app.get(&at(known[5].position)).await.ok()["balance"], "7.51");
    app.stop().await;
}

#[sqlx::test(migrations = "../migrations")]
async fn balances_at_instants_equal_a_replay(pool: PgPool) {
    let (wallet_id, known) = arrange(&pool, 20).await;
    let app = TestApp::spawn(pool).await;
    let micro = Duration::microseconds(1);
    let mut instants = vec![known[0].recorded_at - Duration::days(1)];
    for event in &known {
        instants.extend([event.recorded_at - micro, event.recorded_at, event.recorded_at + micro]);
    }
    instants.push(known.last().unwrap().recorded_at + Duration::days(365));

    for instant in instants {
        let as_of = rfc3339(instant);
        let answer = app.get(&format!("/v1/wallets/{wallet_id}/balance?as_of={as_of}")).await;

        let (balance, version, _) = replay(&known, |event| event.recorded_at <= instant);
        let body = answer.ok();
        assert_eq!(body["balance"], balance, "as_of={as_of}");
        assert_eq!(body["version"], version, "as_of={as_of}");
    }
    let with_offset = app.get(&format!("/v1/wallets/{wallet_id}/balance?as_of=2025-03-01T13:00:03%2B01:00")).await;
    assert_eq!(with_offset.ok()["balance"], "7.50");
    app.stop().await;
}

#[sqlx::test(migrations = "../migrations")]
async fn malformed_moments_and_unknown_wallets_are_refused(pool: PgPool) {
    let (wallet_id, _) = arrange(&pool, 0).await;
    let app = TestApp::spawn(pool).await;
    let path = format!("/v1/wallets/{wallet_id}/balance");

    app.get(&path).await.validation("as_of");
    app.get(&format!("{path}?as_of=2025-03-01T12:00:00Z&at_position=3")).await.validation("as_of");
    app.get(&format!("{path}?as_of=yesterday")).await.validation("as_of");
    app.get(&format!("{path}?as_of=2025-03-01")).await.validation("as_of");
    app.get(&format!("{path}?at_position=-1")).await.validation("at_position");
    app.get(&format!("{path}?at_position=3.5")).await.validation("at_position");
    app.get("/v1/wallets/xyz/balance?at_position=1").await.validation("wallet_id");
    let unknown = app.get("/v1/wallets/0192f0c1-8a7e-7d00-8000-000000000009/balance?at_position=1").await;
    unknown.problem(404, "wallet_not_found");
    app.stop().await;
}
