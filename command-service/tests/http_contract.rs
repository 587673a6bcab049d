//! The HTTP contract of command-service (SPEC §5), black-box over HTTP: every endpoint's answer, every error
//! code a command can get (and that no refused command writes an event), the idempotency contract, amounts
//! on the wire, and the request id.
#![allow(clippy::unwrap_used)]

mod support;

use reqwest::header::{HeaderValue, CONTENT_TYPE};
use reqwest::RequestBuilder;
use serde_json::{json, Value};
use sqlx::PgPool;
use support::{key, Reply, TestApp};

const PROBLEM_JSON: &str = "application/problem+json";

/// A running service with two assets: NGN (scale 2, the demo data's cash-in fee of 1.5 % + 0.10) and
/// GOLD (scale 0, no fee).
struct Ledger {
    app: TestApp,
    ngn: Value,
    gold: Value,
}

impl Ledger {
    async fn spawn(pool: PgPool) -> Ledger {
        let app = TestApp::spawn(pool).await;
        let ngn = app.define_asset("NGN", 2, Some(json!({"percent": "1.5", "fixed": "0.10"}))).await;
        let gold = app.define_asset("GOLD", 0, None).await;
        Ledger { app, ngn, gold }
    }

    /// An NGN system wallet: `treasury`, `revenue` or `fees`.
    fn ngn_system(&self, role: &str) -> String {
        self.ngn["system_wallets"][role].as_str().unwrap().to_owned()
    }

    /// Opens `owner`'s wallet of `asset` and tops it up with `amount` (nothing for "0").
    async fn funded_wallet(&self, owner: &str, asset: &str, amount: &str) -> String {
        let wallet = self.app.open_wallet(owner, asset).await;
        if amount != "0" {
            let reply = self.app.money(&wallet, "topup", amount).await;
            assert_eq!(reply.status, 201, "{:?}", reply.body);
        }
        wallet
    }
}

/// A POST with a fresh idempotency key and a JSON body.
fn command(app: &TestApp, path: &str, body: &Value) -> RequestBuilder {
    app.client.post(app.url(path)).header("idempotency-key", key()).json(body)
}

/// A POST with a fresh idempotency key and `body` sent byte for byte as `application/json`.
fn raw_json(app: &TestApp, path: &str, body: &str) -> RequestBuilder {
    raw(app, path, "application/json", body.to_owned())
}

fn raw(app: &TestApp, path: &str, content_type: &str, body: impl Into<reqwest::Body>) -> RequestBuilder {
    app.client.post(app.url(path)).header("idempotency-key", key()).header(CONTENT_TYPE, content_type).body(body)
}

fn content_type(reply: &Reply) -> &str {
    reply.headers.get(CONTENT_TYPE).and_then(|value| value.to_str().ok()).unwrap_or_default()
}

/// An RFC 9457 problem with this status and stable code.
#[track_caller]
fn assert_problem(reply: &Reply, status: u16, code: &str) {
    assert_eq!(reply.status, status, "{:?}", reply.body);
    assert_eq!(reply.code(), code, "{:?}", reply.body);
    assert_eq!(content_type(reply), PROBLEM_JSON, "{:?}", reply.body);
    assert_eq!(reply.body["status"], status, "{:?}", reply.body);
    assert_eq!(reply.body["type"], format!("/problems/{}", code.replace('_', "-")), "{:?}", reply.body);
    assert!(reply.body["title"].is_string(), "{:?}", reply.body);
}

/// Sends `request` and asserts that it is refused with `status` and `code` and that no event was written.
async fn assert_refused(app: &TestApp, request: RequestBuilder, status: u16, code: &str) -> Reply {
    let events_before = app.event_count().await;
    let reply = app.send(request).await;
    assert_problem(&reply, status, code);
    assert_eq!(app.event_count().await, events_before, "a refused command wrote events: {:?}", reply.body);
    reply
}

/// The highest position in the log: the position a command that just appended must answer.
async fn head_position(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT max(position) FROM events").fetch_one(&app.pool).await.unwrap()
}

/// The `balances` entry of `wallet` in a transfer answer.
#[track_caller]
fn balance_of<'a>(transfer: &'a Value, wallet: &str) -> &'a Value {
    transfer["balances"]
        .as_array()
        .unwrap()
        .iter()
        .find(|entry| entry["wallet_id"] == wallet)
        .unwrap_or_else(|| panic!("no balance of {wallet} in {transfer}"))
}

fn leg(from: &str, to: &str, amount: &str) -> Value {
    json!({"from_wallet_id": from, "to_wallet_id": to, "amount": amount})
}

#[track_caller]
fn assert_uuid(value: &Value) {
    let text = value.as_str().unwrap_or_else(|| panic!("{value} is not a string"));
    assert!(uuid::Uuid::parse_str(text).is_ok(), "{text} is not a UUID");
}

// ---- Success shapes ----------------------------------------------------------------------------

#[sqlx::test(migrations = "../migrations")]
async fn define_asset_answers_201_with_code_scale_fee_policy_system_wallets_and_position(pool: PgPool) {
    let app = TestApp::spawn(pool).await;

    let reply = app
        .post(
            "/v1/assets",
            &key(),
            json!({"code": "NGN", "scale": 2, "cash_in_fee": {"percent": "1.5", "fixed": "0.1"}}),
        )
        .await;

    assert_eq!(reply.status, 201, "{:?}", reply.body);
    assert_eq!(content_type(&reply), "application/json");
    assert_eq!(reply.body["code"], "NGN");
    assert_eq!(reply.body["scale"], 2);
    assert_eq!(reply.body["cash_in_fee"], json!({"percent": "1.5", "fixed": "0.10"}));
    let system = &reply.body["system_wallets"];
    for role in ["treasury", "revenue", "fees"] {
        assert_uuid(&system[role]);
    }
    assert_ne!(system["treasury"], system["revenue"]);
    assert_ne!(system["treasury"], system["fees"]);
    assert_ne!(system["revenue"], system["fees"]);
    assert_eq!(reply.body["position"], head_position(&app).await);
    assert_eq!(app.event_count().await, 4, "the asset and its three system wallets");
}

#[sqlx::test(migrations = "../migrations")]
async fn define_asset_shows_fee_bounds_at_its_scale_and_no_policy_as_null(pool: PgPool) {
    let app = TestApp::spawn(pool).await;

    let with_bounds = app
        .post(
            "/v1/assets",
            &key(),
            json!({"code": "USD", "scale": 2, "cash_in_fee": {"percent": "2", "fixed": "0", "min": "1", "max": 50}}),
        )
        .await;
    let without = app.post("/v1/assets", &key(), json!({"code": "GOLD", "scale": 0})).await;

    assert_eq!(with_bounds.status, 201, "{:?}", with_bounds.body);
    assert_eq!(
        with_bounds.body["cash_in_fee"],
        json!({"percent": "2", "fixed": "0.00", "min": "1.00", "max": "50.00"})
    );
    assert_eq!(without.status, 201, "{:?}", without.body);
    assert_eq!(without.body["scale"], 0);
    assert_eq!(without.body["cash_in_fee"], Value::Null);
}

#[sqlx::test(migrations = "../migrations")]
async fn open_wallet_answers_201_with_the_wallet_view(pool: PgPool) {
    let ledger = Ledger::spawn(pool).await;
    let app = &ledger.app;

    let reply = app.post("/v1/wallets", &key(), json!({"owner_id": "alice", "asset": "NGN"})).await;

    assert_eq!(reply.status, 201, "{:?}", reply.body);
    assert_eq!(content_type(&reply), "application/json");
    assert_uuid(&reply.body["wallet_id"]);
    assert_eq!(reply.body["owner_id"], "alice");
    assert_eq!(reply.body["asset"], "NGN");
    assert_eq!(reply.body["kind"], "user");
    assert_eq!(reply.body["status"], "active");
    assert_eq!(reply.body["balance"], "0.00");
    assert_eq!(reply.body["overdraft_limit"], "0.00");
    assert_eq!(reply.body["version"], 1);
    assert_eq!(reply.body["position"], head_position(app).await);
}

#[sqlx::test(migrations = "../migrations")]
async fn open_wallet_keeps_its_overdraft_limit_at_the_asset_scale_and_its_metadata(pool: PgPool) {
    let ledger = Ledger::spawn(pool).await;
    let app = &ledger.app;

    let reply = app
        .post(
            "/v1/wallets",
            &key(),
            json!({"owner_id": "bob", "asset": "NGN", "overdraft_limit": "5", "metadata": {"tier": "gold"}}),
        )
        .await;

    assert_eq!(reply.status, 201, "{:?}", reply.body);
    assert_eq!(reply.body["overdraft_limit"], "5.00");
    assert_eq!(reply.body["metadata"], json!({"tier": "gold"}));
    let wallet = reply.body["wallet_id"].as_str().unwrap();
    let overdrawn = app.money(wallet, "spend", "5").await;
    assert_eq!(overdrawn.status, 201, "{:?}", overdrawn.body);
    assert_eq!(balance_of(&overdrawn.body, wallet)["balance"], "-5.00");
}

#[sqlx::test(migrations = "../migrations")]
async fn topup_answers_201_with_the_transfer(pool: PgPool) {
    let ledger = Ledger::spawn(pool).await;
    let app = &ledger.app;
    let wallet = app.open_wallet("alice", "NGN").await;
    let treasury = ledger.ngn_system("treasury");

    let reply = app
        .post(
            &format!("/v1/wallets/{wallet}/topup"),
            &key(),
            json!({"amount": "100", "reference": "order-1", "metadata": {"channel": "card"}}),
        )
        .await;

    assert_eq!(reply.status, 201, "{:?}", reply.body);
    assert_eq!(content_type(&reply), "application/json");
    let transfer = &reply.body;
    assert_uuid(&transfer["transfer_id"]);
    assert_eq!(transfer["kind"], "topup");
    assert_eq!(transfer["asset"], "NGN");
    assert_eq!(transfer["amount"], "100.00");
    assert_eq!(transfer["fee"], "0.00");
    assert_eq!(transfer["legs"], json!([leg(&treasury, &wallet, "100.00")]));
    assert_eq!(transfer["balances"].as_array().unwrap().len(), 2);
    assert_eq!(balance_of(transfer, &treasury), &json!({"wallet_id": treasury, "balance": "-100.00", "version": 2}));
    assert_eq!(balance_of(transfer, &wallet), &json!({"wallet_id": wallet, "balance": "100.00", "version": 2}));
    assert_eq!(transfer["reference"], "order-1");
    assert_eq!(transfer["metadata"], json!({"channel": "card"}));
    assert_eq!(transfer["position"], head_position(app).await);
    let recorded_at = transfer["recorded_at"].as_str().unwrap();
    assert!(chrono::DateTime::parse_from_rfc3339(recorded_at).is_ok(), "{recorded_at}");
}

#[sqlx::test(migrations = "../migrations")]
async fn bonus_spend_and_withdrawal_move_money_along_their_legs(pool: PgPool) {
    let ledger = Ledger::spawn(pool).await;
    let app = &ledger.app;
    let wallet = app.open_wallet("alice", "NGN").await;
    let (treasury, revenue) = (ledger.ngn_system("treasury"), ledger.ngn_system("revenue"));
    let cases = [
        ("bonus", "10", "bonus", &treasury, &wallet, "10.00"),
        ("spend", "3", "spend", &wallet, &revenue, "7.00"),
        ("withdrawal", "2.5", "withdrawal", &wallet, &treasury, "4.50"),
    ];

    for (action, amount, kind, from, to, balance_after) in cases {
        let reply = app.money(&wallet, action, amount).await;

        assert_eq!(reply.status, 201, "{action}: {:?}", reply.body);
        assert_eq!(reply.body["kind"], kind, "{action}");
        assert_eq!(reply.body["legs"].as_array().unwrap().len(), 1, "{action}");
        assert_eq!(reply.body["legs"][0]["from_wallet_id"], from.as_str(), "{action}");
        assert_eq!(reply.body["legs"][0]["to_wallet_id"], to.as_str(), "{action}");
        assert_eq!(balance_of(&reply.body, &wallet)["balance"], balance_after, "{action}");
    }
    assert_eq!(app.balance(&revenue).await.to_string(), "3.00");
    assert_eq!(app.asset_sum("NGN").await, rust_decimal::Decimal::ZERO);
}

#[sqlx::test(migrations = "../migrations")]
async fn cash_in_takes_the_asset_policy_fee_in_a_second_leg(pool: PgPool) {
    let ledger = Ledger::spawn(pool).await;
    let app = &ledger.app;
    let wallet = app.open_wallet("alice", "NGN").await;
    let (treasury, fees) = (ledger.ngn_system("treasury"), ledger.ngn_system("fees"));

    let reply = app.money(&wallet, "cash-in", "100.00").await;

    assert_eq!(reply.status, 201, "{:?}", reply.body);
    let transfer = &reply.body;
    assert_eq!(transfer["kind"], "cash_in");
    assert_eq!(transfer["amount"], "100.00");
    assert_eq!(transfer["fee"], "1.60", "1.5 % of 100.00 plus 0.10");
    assert_eq!(transfer["legs"], json!([leg(&treasury, &wallet, "100.00"), leg(&wallet, &fees, "1.60")]));
    assert_eq!(balance_of(transfer, &treasury), &json!({"wallet_id": treasury, "balance": "-100.00", "version": 2}));
    assert_eq!(balance_of(transfer, &wallet), &json!({"wallet_id": wallet, "balance": "98.40", "version": 3}));
    assert_eq!(balance_of(transfer, &fees), &json!({"wallet_id": fees, "balance": "1.60", "version": 2}));
    assert_eq!(transfer["position"], head_position(app).await);
}

#[sqlx::test(migrations = "../migrations")]
async fn transfer_without_fee_moves_the_amount_from_one_wallet_to_the_other(pool: PgPool) {
    let ledger = Ledger::spawn(pool).await;
    let app = &ledger.app;
    let alice = ledger.funded_wallet("alice", "NGN", "50").await;
    let bob = app.open_wallet("bob", "NGN").await;

    let reply =
        app.post("/v1/transfers", &key(), json!({"from_wallet_id": alice, "to_wallet_id": bob, "amount": "20"})).await;

    assert_eq!(reply.status, 201, "{:?}", reply.body);
    let transfer = &reply.body;
    assert_uuid(&transfer["transfer_id"]);
    assert_eq!(transfer["kind"], "transfer");
    assert_eq!(transfer["asset"], "NGN");
    assert_eq!(transfer["amount"], "20.00");
    assert_eq!(transfer["fee"], "0.00");
    assert_eq!(transfer["legs"], json!([leg(&alice, &bob, "20.00")]));
    assert_eq!(transfer["balances"].as_array().unwrap().len(), 2);
    assert_eq!(balance_of(transfer, &alice), &json!({"wallet_id": alice, "balance": "30.00", "version": 3}));
    assert_eq!(balance_of(transfer, &bob), &json!({"wallet_id": bob, "balance": "20.00", "version": 2}));
    assert_eq!(transfer["reference"], Value::Null);
    assert_eq!(transfer["position"], head_position(app).await);
    assert!(transfer["recorded_at"].is_string());
}

#[sqlx::test(migrations = "../migrations")]
async fn transfer_with_fee_adds_a_leg_from_the_sender_to_the_fees_wallet(pool: PgPool) {
    let ledger = Ledger::spawn(pool).await;
    let app = &ledger.app;
    let alice = ledger.funded_wallet("alice", "NGN", "50").await;
    let bob = app.open_wallet("bob", "NGN").await;
    let fees = ledger.ngn_system("fees");

    let reply = app
        .post(
            "/v1/transfers",
            &key(),
            json!({"from_wallet_id": alice, "to_wallet_id": bob, "amount": "20", "fee": "0.5", "reference": "rent"}),
        )
        .await;

    assert_eq!(reply.status, 201, "{:?}", reply.body);
    let transfer = &reply.body;
    assert_eq!(transfer["amount"], "20.00");
    assert_eq!(transfer["fee"], "0.50");
    assert_eq!(transfer["legs"], json!([leg(&alice, &bob, "20.00"), leg(&alice, &fees, "0.50")]));
    assert_eq!(balance_of(transfer, &alice), &json!({"wallet_id": alice, "balance": "29.50", "version": 4}));
    assert_eq!(balance_of(transfer, &bob), &json!({"wallet_id": bob, "balance": "20.00", "version": 2}));
    assert_eq!(balance_of(transfer, &fees), &json!({"wallet_id": fees, "balance": "0.50", "version": 2}));
    assert_eq!(transfer["reference"], "rent");
}

#[sqlx::test(migrations = "../migrations")]
async fn reversal_takes_back_part_then_by_default_what_remains(pool: PgPool) {
    let ledger = Ledger::spawn(pool).await;
    let app = &ledger.app;
    let alice = ledger.funded_wallet("alice", "NGN", "100").await;
    let bob = app.open_wallet("bob", "NGN").await;
    let fees = ledger.ngn_system("fees");
    let original = app
        .post(
            "/v1/transfers",
            &key(),
            json!({"from_wallet_id": alice, "to_wallet_id": bob, "amount": "10", "fee": "1"}),
        )
        .await;
    assert_eq!(original.status, 201, "{:?}", original.body);
    let transfer_id = original.body["transfer_id"].as_str().unwrap();
    let path = format!("/v1/transfers/{transfer_id}/reversal");

    let partial = app.post(&path, &key(), json!({"amount": "4", "reason": "partly refunded"})).await;
    let rest = app.post(&path, &key(), json!({})).await;

    assert_eq!(partial.status, 201, "{:?}", partial.body);
    assert_uuid(&partial.body["transfer_id"]);
    assert_ne!(partial.body["transfer_id"], transfer_id);
    assert_eq!(partial.body["kind"], "reversal");
    assert_eq!(partial.body["reverses"], transfer_id);
    assert_eq!(partial.body["reason"], "partly refunded");
    assert_eq!(partial.body["amount"], "4.00");
    assert_eq!(partial.body["fee"], "0.40", "the fee is returned in proportion");
    assert_eq!(partial.body["legs"], json!([leg(&fees, &alice, "0.40"), leg(&bob, &alice, "4.00")]));
    assert_eq!(balance_of(&partial.body, &alice)["balance"], "93.40");
    assert_eq!(balance_of(&partial.body, &bob)["balance"], "6.00");
    assert_eq!(balance_of(&partial.body, &fees)["balance"], "0.60");
    assert_eq!(rest.status, 201, "{:?}", rest.body);
    assert_eq!(rest.body["amount"], "6.00");
    assert_eq!(rest.body["fee"], "0.60");
    assert_eq!(rest.body["legs"], json!([leg(&fees, &alice, "0.60"), leg(&bob, &alice, "6.00")]));
    assert_eq!(balance_of(&rest.body, &alice), &json!({"wallet_id": alice, "balance": "100.00", "version": 8}));
    assert_eq!(balance_of(&rest.body, &bob)["balance"], "0.00");
    assert_eq!(balance_of(&rest.body, &fees)["balance"], "0.00");
    assert_eq!(rest.body["position"], head_position(app).await);
}

#[sqlx::test(migrations = "../migrations")]
async fn freeze_unfreeze_and_close_answer_200_with_the_wallet_in_its_new_status(pool: PgPool) {
    let ledger = Ledger::spawn(pool).await;
    let app = &ledger.app;
    let wallet = app.open_wallet("alice", "NGN").await;

    let frozen = app.post(&format!("/v1/wallets/{wallet}/freeze"), &key(), json!({"reason": "fraud check"})).await;
    let unfrozen = app
        .send(app.client.post(app.url(&format!("/v1/wallets/{wallet}/unfreeze"))).header("idempotency-key", key()))
        .await;
    let closed = app.post(&format!("/v1/wallets/{wallet}/close"), &key(), json!({})).await;

    for (reply, status, version) in [(&frozen, "frozen", 2), (&unfrozen, "active", 3), (&closed, "closed", 4)] {
        assert_eq!(reply.status, 200, "{status}: {:?}", reply.body);
        assert_eq!(content_type(reply), "application/json");
        assert_eq!(reply.body["wallet_id"], wallet.as_str());
        assert_eq!(reply.body["owner_id"], "alice");
        assert_eq!(reply.body["asset"], "NGN");
        assert_eq!(reply.body["kind"], "user");
        assert_eq!(reply.body["status"], status);
        assert_eq!(reply.body["balance"], "0.00");
        assert_eq!(reply.body["version"], version);
        assert!(reply.body["position"].as_i64().unwrap() > 0, "{:?}", reply.body);
    }
    assert_eq!(closed.body["position"], head_position(app).await);
}

#[sqlx::test(migrations = "../migrations")]
async fn a_status_change_to_the_status_a_wallet_has_answers_200_and_writes_nothing(pool: PgPool) {
    let ledger = Ledger::spawn(pool).await;
    let app = &ledger.app;
    let wallet = app.open_wallet("alice", "NGN").await;
    let first = app.post(&format!("/v1/wallets/{wallet}/freeze"), &key(), json!({})).await;
    assert_eq!(first.status, 200, "{:?}", first.body);
    let events_before = app.event_count().await;

    let again = app.post(&format!("/v1/wallets/{wallet}/freeze"), &key(), json!({})).await;

    assert_eq!(again.status, 200, "{:?}", again.body);
    assert!(!again.replayed(), "a new key, not a replay");
    assert_eq!(again.body["status"], "frozen");
    assert_eq!(again.body["version"], 2);
    assert_eq!(again.body["position"], first.body["position"]);
    assert_eq!(app.event_count().await, events_before);
}

#[sqlx::test(migrations = "../migrations")]
async fn cash_in_without_a_fee_policy_has_one_leg_and_a_zero_fee(pool: PgPool) {
    let ledger = Ledger::spawn(pool).await;
    let app = &ledger.app;
    let wallet = app.open_wallet("alice", "GOLD").await;
    let treasury = ledger.gold["system_wallets"]["treasury"].as_str().unwrap();

    let reply = app.money(&wallet, "cash-in", "100").await;

    assert_eq!(reply.status, 201, "{:?}", reply.body);
    assert_eq!(reply.body["kind"], "cash_in");
    assert_eq!(reply.body["fee"], "0");
    assert_eq!(reply.body["legs"], json!([leg(treasury, &wallet, "100")]));
    assert_eq!(balance_of(&reply.body, &wallet)["balance"], "100");
}

// ---- 400 ---------------------------------------------------------------------------------------

#[sqlx::test(migrations = "../migrations")]
async fn broken_json_is_400_malformed_json(pool: PgPool) {
    let ledger = Ledger::spawn(pool).await;
    let app = &ledger.app;
    let wallet = app.open_wallet("alice", "NGN").await;

    for body in [r#"{"amount": "1""#, r#"{"amount": "1"} trailing"#, "{amount: 1}", r#"{"amount": "1",}"#] {
        assert_refused(app, raw_json(app, &format!("/v1/wallets/{wallet}/topup"), body), 400, "malformed_json").await;
    }
    assert_refused(app, raw_json(app, "/v1/assets", r#"{"code": "USD", "#), 400, "malformed_json").await;
}

#[sqlx::test(migrations = "../migrations")]
async fn every_command_without_idempotency_key_is_400_idempotency_key_missing(pool: PgPool) {
    let ledger = Ledger::spawn(pool).await;
    let app = &ledger.app;
    let alice = ledger.funded_wallet("alice", "NGN", "10").await;
    let bob = app.open_wallet("bob", "NGN").await;
    let transfer = json!({"from_wallet_id": alice, "to_wallet_id": bob, "amount": "1"});
    let requests = [
        ("/v1/assets".to_owned(), json!({"code": "USD", "scale": 2})),
        ("/v1/wallets".to_owned(), json!({"owner_id": "carol", "asset": "NGN"})),
        (format!("/v1/wallets/{alice}/spend"), json!({"amount": "1"})),
        ("/v1/transfers".to_owned(), transfer),
        (format!("/v1/transfers/{}/reversal", uuid::Uuid::now_v7()), json!({})),
        (format!("/v1/wallets/{alice}/freeze"), json!({})),
    ];

    for (path, body) in requests {
        let reply =
            assert_refused(app, app.client.post(app.url(&path)).json(&body), 400, "idempotency_key_missing").await;
        assert!(reply.body["detail"].is_string(), "{path}: {:?}", reply.body);
    }
}

#[sqlx::test(migrations = "../migrations")]
async fn malformed_idempotency_keys_are_400_idempotency_key_invalid(pool: PgPool) {
    let ledger = Ledger::spawn(pool).await;
    let app = &ledger.app;
    let wallet = app.open_wallet("alice", "NGN").await;
    let keys = [
        HeaderValue::from_static("has space"),
        HeaderValue::from_bytes("ключ".as_bytes()).unwrap(),
        HeaderValue::from_str(&"k".repeat(256)).unwrap(),
        HeaderValue::from_static(""),
        HeaderValue::from_static("tab\there"),
    ];

    for bad_key in keys {
        let request = app
            .client
            .post(app.url(&format!("/v1/wallets/{wallet}/topup")))
            .header("idempotency-key", bad_key)
            .json(&json!({"amount": "1"}));
        assert_refused(app, request, 400, "idempotency_key_invalid").await;
    }
}

#[sqlx::test(migrations = "../migrations")]
async fn idempotency_key_of_255_visible_characters_is_accepted(pool: PgPool) {
    let ledger = Ledger::spawn(pool).await;
    let app = &ledger.app;
    let wallet = app.open_wallet("alice", "NGN").await;
    let longest = "~!k".repeat(85);

    let reply = app.post(&format!("/v1/wallets/{wallet}/topup"), &longest, json!({"amount": "1"})).await;

    assert_eq!(longest.len(), 255);
    assert_eq!(reply.status, 201, "{:?}", reply.body);
}

// ---- 404 ---------------------------------------------------------------------------------------

#[sqlx::test(migrations = "../migrations")]
async fn open_wallet_on_an_unknown_asset_is_404_asset_not_found(pool: PgPool) {
    let ledger = Ledger::spawn(pool).await;
    let app = &ledger.app;

    let reply = assert_refused(
        app,
        command(app, "/v1/wallets", &json!({"owner_id": "alice", "asset": "XYZ"})),
        404,
        "asset_not_found",
    )
    .await;

    assert_eq!(reply.body["asset"], "XYZ");
}

#[sqlx::test(migrations = "../migrations")]
async fn wallet_commands_on_an_unknown_wallet_are_404_wallet_not_found(pool: PgPool) {
    let ledger = Ledger::spawn(pool).await;
    let app = &ledger.app;
    let unknown = uuid::Uuid::now_v7().to_string();

    for action in ["topup", "bonus", "spend", "withdrawal", "cash-in", "freeze", "unfreeze", "close"] {
        let path = format!("/v1/wallets/{unknown}/{action}");
        let body = if ["freeze", "unfreeze", "close"].contains(&action) { json!({}) } else { json!({"amount": "1"}) };
        let reply = assert_refused(app, command(app, &path, &body), 404, "wallet_not_found").await;
        assert_eq!(reply.body["wallet_id"], unknown.as_str(), "{action}");
    }
}

#[sqlx::test(migrations = "../migrations")]
async fn transfer_from_or_to_an_unknown_wallet_is_404_wallet_not_found(pool: PgPool) {
    let ledger = Ledger::spawn(pool).await;
    let app = &ledger.app;
    let alice = ledger.funded_wallet("alice", "NGN", "10").await;
    let unknown = uuid::Uuid::now_v7().to_string();

    let to_unknown = assert_refused(
        app,
        command(app, "/v1/transfers", &json!({"from_wallet_id": alice, "to_wallet_id": unknown, "amount": "1"})),
        404,
        "wallet_not_found",
    )
    .await;
    let from_unknown = assert_refused(
        app,
        command(app, "/v1/transfers", &json!({"from_wallet_id": unknown, "to_wallet_id": alice, "amount": "1"})),
        404,
        "wallet_not_found",
    )
    .await;

    assert_eq!(to_unknown.body["wallet_id"], unknown.as_str());
    assert_eq!(from_unknown.body["wallet_id"], unknown.as_str());
    assert_eq!(app.balance(&alice).await.to_string(), "10.00");
}

#[sqlx::test(migrations = "../migrations")]
async fn reversal_of_an_unknown_transfer_is_404_transfer_not_found(pool: PgPool) {
    let ledger = Ledger::spawn(pool).await;
    let app = &ledger.app;
    let unknown = uuid::Uuid::now_v7().to_string();

    let reply = assert_refused(
        app,
        command(app, &format!("/v1/transfers/{unknown}/reversal"), &json!({"amount": "1"})),
        404,
        "transfer_not_found",
    )
    .await;

    assert_eq!(reply.body["transfer_id"], unknown.as_str());
}

#[sqlx::test(migrations = "../migrations")]
async fn unknown_routes_and_actions_are_404_not_found(pool: PgPool) {
    let ledger = Ledger::spawn(pool).await;
    let app = &ledger.app;
    let wallet = app.open_wallet("alice", "NGN").await;
    let transfer = app.money(&wallet, "topup", "1").await.body["transfer_id"].as_str().unwrap().to_owned();
    let paths = [
        "/v1/nothing".to_owned(),
        "/v2/assets".to_owned(),
        format!("/v1/wallets/{wallet}"),
        format!("/v1/wallets/{wallet}/explode"),
        format!("/v1/wallets/{wallet}/topup/again"),
        format!("/v1/transfers/{transfer}/undo"),
    ];

    for path in &paths {
        assert_refused(app, command(app, path, &json!({"amount": "1"})), 404, "not_found").await;
    }
    assert_refused(app, app.client.get(app.url("/v1/nothing")), 404, "not_found").await;
}

#[sqlx::test(migrations = "../migrations")]
async fn another_method_on_a_command_route_is_405_method_not_allowed(pool: PgPool) {
    let ledger = Ledger::spawn(pool).await;
    let app = &ledger.app;
    let wallet = app.open_wallet("alice", "NGN").await;

    for path in ["/v1/assets".to_owned(), "/v1/wallets".to_owned(), format!("/v1/wallets/{wallet}/topup")] {
        assert_refused(app, app.client.get(app.url(&path)), 405, "method_not_allowed").await;
        let put = app.client.put(app.url(&path)).header("idempotency-key", key()).json(&json!({"amount": "1"}));
        assert_refused(app, put, 405, "method_not_allowed").await;
    }
}

// ---- 409 ---------------------------------------------------------------------------------------

#[sqlx::test(migrations = "../migrations")]
async fn defining_an_existing_asset_is_409_asset_exists(pool: PgPool) {
    let ledger = Ledger::spawn(pool).await;
    let app = &ledger.app;

    let same =
        assert_refused(app, command(app, "/v1/assets", &json!({"code": "NGN", "scale": 2})), 409, "asset_exists").await;
    let other_scale =
        assert_refused(app, command(app, "/v1/assets", &json!({"code": "GOLD", "scale": 3})), 409, "asset_exists")
            .await;

    assert_eq!(same.body["asset"], "NGN");
    assert_eq!(other_scale.body["asset"], "GOLD");
}

#[sqlx::test(migrations = "../migrations")]
async fn a_second_wallet_for_one_owner_and_asset_is_409_wallet_exists_naming_the_first(pool: PgPool) {
    let ledger = Ledger::spawn(pool).await;
    let app = &ledger.app;
    let first = app.open_wallet("alice", "NGN").await;

    let reply = assert_refused(
        app,
        command(app, "/v1/wallets", &json!({"owner_id": "alice", "asset": "NGN", "overdraft_limit": "1"})),
        409,
        "wallet_exists",
    )
    .await;

    assert_eq!(reply.body["wallet_id"], first.as_str());
    let other_asset = app.post("/v1/wallets", &key(), json!({"owner_id": "alice", "asset": "GOLD"})).await;
    assert_eq!(other_asset.status, 201, "one wallet per owner and asset: {:?}", other_asset.body);
}

// ---- 412 ---------------------------------------------------------------------------------------

#[sqlx::test(migrations = "../migrations")]
async fn if_match_with_a_stale_version_is_412_and_with_the_current_version_succeeds(pool: PgPool) {
    let ledger = Ledger::spawn(pool).await;
    let app = &ledger.app;
    let wallet = ledger.funded_wallet("alice", "NGN", "10").await;
    let path = format!("/v1/wallets/{wallet}/spend");

    let stale = assert_refused(
        app,
        command(app, &path, &json!({"amount": "1"})).header("if-match", "\"1\""),
        412,
        "version_mismatch",
    )
    .await;
    let current = app.send(command(app, &path, &json!({"amount": "1"})).header("if-match", "\"2\"")).await;

    assert_eq!(stale.body["wallet_id"], wallet.as_str());
    assert_eq!(stale.body["expected_version"], 1);
    assert_eq!(stale.body["version"], 2);
    assert_eq!(current.status, 201, "{:?}", current.body);
    assert_eq!(balance_of(&current.body, &wallet), &json!({"wallet_id": wallet, "balance": "9.00", "version": 3}));
}

#[sqlx::test(migrations = "../migrations")]
async fn if_match_on_a_status_change_is_checked_too(pool: PgPool) {
    let ledger = Ledger::spawn(pool).await;
    let app = &ledger.app;
    let wallet = app.open_wallet("alice", "NGN").await;
    let path = format!("/v1/wallets/{wallet}/freeze");

    assert_refused(app, command(app, &path, &json!({})).header("if-match", "\"7\""), 412, "version_mismatch").await;
    let current = app.send(command(app, &path, &json!({})).header("if-match", "\"1\"")).await;

    assert_eq!(current.status, 200, "{:?}", current.body);
    assert_eq!(current.body["status"], "frozen");
}

#[sqlx::test(migrations = "../migrations")]
async fn a_malformed_if_match_is_422_validation_failed(pool: PgPool) {
    let ledger = Ledger::spawn(pool).await;
    let app = &ledger.app;
    let wallet = ledger.funded_wallet("alice", "NGN", "10").await;

    let reply = assert_refused(
        app,
        command(app, &format!("/v1/wallets/{wallet}/spend"), &json!({"amount": "1"})).header("if-match", "\"two\""),
        422,
        "validation_failed",
    )
    .await;

    assert_eq!(reply.body["field"], "If-Match");
}

// ---- 413, 415 ----------------------------------------------------------------------------------

#[sqlx::test(migrations = "../migrations")]
async fn a_body_over_64_kib_is_413_payload_too_large(pool: PgPool) {
    let ledger = Ledger::spawn(pool).await;
    let app = &ledger.app;
    let wallet = app.open_wallet("alice", "NGN").await;
    let body = json!({"amount": "1", "metadata": {"blob": "x".repeat(64 * 1024)}}).to_string();

    assert_refused(app, raw_json(app, &format!("/v1/wallets/{wallet}/topup"), &body), 413, "payload_too_large").await;
}

#[sqlx::test(migrations = "../migrations")]
async fn a_body_over_1_mib_is_413_payload_too_large(pool: PgPool) {
    let ledger = Ledger::spawn(pool).await;
    let app = &ledger.app;
    let wallet = app.open_wallet("alice", "NGN").await;
    let body = json!({"amount": "1", "reference": "r".repeat(1024 * 1024 + 1)}).to_string();

    assert_refused(app, raw_json(app, &format!("/v1/wallets/{wallet}/topup"), &body), 413, "payload_too_large").await;
}

#[sqlx::test(migrations = "../migrations")]
async fn a_body_that_is_not_json_is_415_unsupported_media_type(pool: PgPool) {
    let ledger = Ledger::spawn(pool).await;
    let app = &ledger.app;
    let wallet = app.open_wallet("alice", "NGN").await;
    let path = format!("/v1/wallets/{wallet}/topup");

    assert_refused(app, raw(app, &path, "text/plain", r#"{"amount": "1"}"#), 415, "unsupported_media_type").await;
    assert_refused(
        app,
        raw(app, &path, "application/x-www-form-urlencoded", "amount=1"),
        415,
        "unsupported_media_type",
    )
    .await;
    let without_content_type =
        app.client.post(app.url(&path)).header("idempotency-key", key()).body(r#"{"amount": "1"}"#);
    assert_refused(app, without_content_type, 415, "unsupported_media_type").await;
}

// ---- 422 validation_failed ---------------------------------------------------------------------

/// Requests with one unknown field each, and the name `field` must give for it.
fn unknown_field_cases(wallet: &str) -> [(String, Value, &'static str); 4] {
    [
        (format!("/v1/wallets/{wallet}/topup"), json!({"amount": "1", "amont": "2"}), "amont"),
        ("/v1/wallets".to_owned(), json!({"owner_id": "bob", "asset": "NGN", "colour": "red"}), "colour"),
        (
            "/v1/assets".to_owned(),
            json!({"code": "USD", "scale": 2, "cash_in_fee": {"percent": "1", "fixed": "0", "cap": "9"}}),
            "cash_in_fee.cap",
        ),
        (format!("/v1/wallets/{wallet}/freeze"), json!({"why": "because"}), "why"),
    ]
}

#[sqlx::test(migrations = "../migrations")]
async fn an_unknown_field_is_422_validation_failed(pool: PgPool) {
    let ledger = Ledger::spawn(pool).await;
    let app = &ledger.app;
    let wallet = app.open_wallet("alice", "NGN").await;

    for (path, body, field) in unknown_field_cases(&wallet) {
        let reply = assert_refused(app, command(app, &path, &body), 422, "validation_failed").await;
        let name = field.rsplit('.').next().unwrap();
        let detail = reply.body["detail"].as_str().unwrap();
        assert!(detail.contains(&format!("unknown field `{name}`")), "{path}: {detail}");
    }
}

#[sqlx::test(migrations = "../migrations")]
async fn an_unknown_field_is_named_exactly_in_field(pool: PgPool) {
    let ledger = Ledger::spawn(pool).await;
    let app = &ledger.app;
    let wallet = app.open_wallet("alice", "NGN").await;

    let mut misnamed = Vec::new();
    for (path, body, field) in unknown_field_cases(&wallet) {
        let reply = assert_refused(app, command(app, &path, &body), 422, "validation_failed").await;
        if reply.body["field"] != field {
            misnamed.push(format!("{path}: expected {field:?}, got {}", reply.body["field"]));
        }
    }

    assert!(misnamed.is_empty(), "{misnamed:#?}");
}

#[sqlx::test(migrations = "../migrations")]
async fn a_missing_field_is_422_validation_failed_naming_the_field(pool: PgPool) {
    let ledger = Ledger::spawn(pool).await;
    let app = &ledger.app;
    let alice = ledger.funded_wallet("alice", "NGN", "10").await;
    let cases = [
        (format!("/v1/wallets/{alice}/topup"), json!({"reference": "r"}), "amount"),
        ("/v1/wallets".to_owned(), json!({"asset": "NGN"}), "owner_id"),
        ("/v1/assets".to_owned(), json!({"code": "USD"}), "scale"),
        ("/v1/transfers".to_owned(), json!({"from_wallet_id": alice, "amount": "1"}), "to_wallet_id"),
        (
            "/v1/assets".to_owned(),
            json!({"code": "USD", "scale": 2, "cash_in_fee": {"percent": "1"}}),
            "cash_in_fee.fixed",
        ),
    ];

    for (path, body, field) in cases {
        let reply = assert_refused(app, command(app, &path, &body), 422, "validation_failed").await;
        assert_eq!(reply.body["field"], field, "{path}: {:?}", reply.body);
    }
}

#[sqlx::test(migrations = "../migrations")]
async fn an_asset_code_off_its_pattern_or_a_scale_over_18_is_422_validation_failed(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let cases = [
        (json!({"code": "gold", "scale": 0}), "code"),
        (json!({"code": "1GOLD", "scale": 0}), "code"),
        (json!({"code": "GOLD-COIN", "scale": 0}), "code"),
        (json!({"code": "ABCDEFGHIJKLMNOPQ", "scale": 0}), "code"),
        (json!({"code": "", "scale": 0}), "code"),
        (json!({"code": "GOLD", "scale": 19}), "scale"),
        (json!({"code": "GOLD", "scale": -1}), "scale"),
    ];

    for (body, field) in cases {
        let reply = assert_refused(&app, command(&app, "/v1/assets", &body), 422, "validation_failed").await;
        assert_eq!(reply.body["field"], field, "{body}: {:?}", reply.body);
    }
    let widest = app.post("/v1/assets", &key(), json!({"code": "A_123456789ABCDE", "scale": 18})).await;
    assert_eq!(widest.status, 201, "16 characters and scale 18 are allowed: {:?}", widest.body);
}

#[sqlx::test(migrations = "../migrations")]
async fn an_owner_id_over_128_characters_is_422_validation_failed(pool: PgPool) {
    let ledger = Ledger::spawn(pool).await;
    let app = &ledger.app;

    let reply = assert_refused(
        app,
        command(app, "/v1/wallets", &json!({"owner_id": "o".repeat(129), "asset": "NGN"})),
        422,
        "validation_failed",
    )
    .await;
    let empty = assert_refused(
        app,
        command(app, "/v1/wallets", &json!({"owner_id": "", "asset": "NGN"})),
        422,
        "validation_failed",
    )
    .await;
    let longest = app.post("/v1/wallets", &key(), json!({"owner_id": "ö".repeat(128), "asset": "NGN"})).await;

    assert_eq!(reply.body["field"], "owner_id");
    assert_eq!(empty.body["field"], "owner_id");
    assert_eq!(longest.status, 201, "128 characters are allowed: {:?}", longest.body);
}

#[sqlx::test(migrations = "../migrations")]
async fn a_reference_over_128_characters_is_422_validation_failed(pool: PgPool) {
    let ledger = Ledger::spawn(pool).await;
    let app = &ledger.app;
    let alice = ledger.funded_wallet("alice", "NGN", "10").await;
    let bob = app.open_wallet("bob", "NGN").await;
    let overlong = "r".repeat(129);
    let requests = [
        (format!("/v1/wallets/{alice}/topup"), json!({"amount": "1", "reference": overlong})),
        (
            "/v1/transfers".to_owned(),
            json!({"from_wallet_id": alice, "to_wallet_id": bob, "amount": "1", "reference": overlong}),
        ),
    ];

    for (path, body) in requests {
        let reply = assert_refused(app, command(app, &path, &body), 422, "validation_failed").await;
        assert_eq!(reply.body["field"], "reference", "{path}: {:?}", reply.body);
    }
    let longest = app
        .post(&format!("/v1/wallets/{alice}/topup"), &key(), json!({"amount": "1", "reference": "r".repeat(128)}))
        .await;
    assert_eq!(longest.status, 201, "128 characters are allowed: {:?}", longest.body);
}

#[sqlx::test(migrations = "../migrations")]
async fn a_reason_over_512_characters_is_422_validation_failed(pool: PgPool) {
    let ledger = Ledger::spawn(pool).await;
    let app = &ledger.app;
    let alice = ledger.funded_wallet("alice", "NGN", "10").await;
    let topup = app.money(&alice, "topup", "1").await;
    let overlong = "w".repeat(513);
    let requests = [
        format!("/v1/wallets/{alice}/freeze"),
        format!("/v1/wallets/{alice}/close"),
        format!("/v1/transfers/{}/reversal", topup.body["transfer_id"].as_str().unwrap()),
    ];

    for path in requests {
        let reply =
            assert_refused(app, command(app, &path, &json!({"reason": overlong})), 422, "validation_failed").await;
        assert_eq!(reply.body["field"], "reason", "{path}: {:?}", reply.body);
    }
}

#[sqlx::test(migrations = "../migrations")]
async fn metadata_that_is_not_a_small_shallow_object_is_422_validation_failed(pool: PgPool) {
    let ledger = Ledger::spawn(pool).await;
    let app = &ledger.app;
    let wallet = app.open_wallet("alice", "NGN").await;
    let too_deep = json!({"1": {"2": {"3": {"4": {"5": {"6": {"7": {"8": {"9": "deep"}}}}}}}}});
    let cases = [
        json!([1, 2]),
        json!("a string"),
        json!(42),
        json!({"blob": "x".repeat(5000)}),
        too_deep,
        json!({"nul": "a\u{0000}b"}),
    ];

    for metadata in cases {
        let body = json!({"amount": "1", "metadata": metadata});
        let reply =
            assert_refused(app, command(app, &format!("/v1/wallets/{wallet}/topup"), &body), 422, "validation_failed")
                .await;
        assert_eq!(reply.body["field"], "metadata", "{:?}", reply.body);
    }
    let opened = assert_refused(
        app,
        command(app, "/v1/wallets", &json!({"owner_id": "bob", "asset": "NGN", "metadata": [1]})),
        422,
        "validation_failed",
    )
    .await;
    assert_eq!(opened.body["field"], "metadata");
}

#[sqlx::test(migrations = "../migrations")]
async fn a_malformed_uuid_in_the_path_or_the_body_is_422_validation_failed(pool: PgPool) {
    let ledger = Ledger::spawn(pool).await;
    let app = &ledger.app;
    let alice = ledger.funded_wallet("alice", "NGN", "10").await;
    let cases = [
        ("/v1/wallets/not-a-uuid/topup".to_owned(), json!({"amount": "1"}), "wallet_id"),
        ("/v1/wallets/12345/freeze".to_owned(), json!({}), "wallet_id"),
        ("/v1/transfers/not-a-uuid/reversal".to_owned(), json!({}), "transfer_id"),
        (
            "/v1/transfers".to_owned(),
            json!({"from_wallet_id": "alice", "to_wallet_id": alice, "amount": "1"}),
            "from_wallet_id",
        ),
        (
            "/v1/transfers".to_owned(),
            json!({"from_wallet_id": alice, "to_wallet_id": 7, "amount": "1"}),
            "to_wallet_id",
        ),
    ];

    for (path, body, field) in cases {
        let reply = assert_refused(app, command(app, &path, &body), 422, "validation_failed").await;
        assert_eq!(reply.body["field"], field, "{path}: {:?}", reply.body);
    }
}

#[sqlx::test(migrations = "../migrations")]
async fn a_system_wallet_as_the_subject_of_a_command_is_422_validation_failed(pool: PgPool) {
    let ledger = Ledger::spawn(pool).await;
    let app = &ledger.app;
    let alice = ledger.funded_wallet("alice", "NGN", "10").await;
    let (treasury, revenue, fees) =
        (ledger.ngn_system("treasury"), ledger.ngn_system("revenue"), ledger.ngn_system("fees"));
    let cases = [
        (format!("/v1/wallets/{treasury}/topup"), json!({"amount": "1"}), "wallet_id"),
        (format!("/v1/wallets/{revenue}/spend"), json!({"amount": "1"}), "wallet_id"),
        (format!("/v1/wallets/{fees}/withdrawal"), json!({"amount": "1"}), "wallet_id"),
        (format!("/v1/wallets/{treasury}/freeze"), json!({}), "wallet_id"),
        (format!("/v1/wallets/{fees}/close"), json!({}), "wallet_id"),
        (
            "/v1/transfers".to_owned(),
            json!({"from_wallet_id": treasury, "to_wallet_id": alice, "amount": "1"}),
            "from_wallet_id",
        ),
        (
            "/v1/transfers".to_owned(),
            json!({"from_wallet_id": alice, "to_wallet_id": revenue, "amount": "1"}),
            "to_wallet_id",
        ),
    ];

    for (path, body, field) in cases {
        let reply = assert_refused(app, command(app, &path, &body), 422, "validation_failed").await;
        assert_eq!(reply.body["field"], field, "{path}: {:?}", reply.body);
    }
}

#[sqlx::test(migrations = "../migrations")]
async fn reversing_a_reversal_is_422_validation_failed(pool: PgPool) {
    let ledger = Ledger::spawn(pool).await;
    let app = &ledger.app;
    let alice = ledger.funded_wallet("alice", "NGN", "100").await;
    let bob = app.open_wallet("bob", "NGN").await;
    let original =
        app.post("/v1/transfers", &key(), json!({"from_wallet_id": alice, "to_wallet_id": bob, "amount": "10"})).await;
    let reversal = app
        .post(
            &format!("/v1/transfers/{}/reversal", original.body["transfer_id"].as_str().unwrap()),
            &key(),
            json!({"amount": "1"}),
        )
        .await;
    assert_eq!(reversal.status, 201, "{:?}", reversal.body);

    let reply = assert_refused(
        app,
        command(app, &format!("/v1/transfers/{}/reversal", reversal.body["transfer_id"].as_str().unwrap()), &json!({})),
        422,
        "validation_failed",
    )
    .await;

    assert_eq!(reply.body["field"], "transfer_id");
}

// ---- 422 invalid_amount ------------------------------------------------------------------------

#[sqlx::test(migrations = "../migrations")]
async fn amounts_that_are_not_positive_exact_decimals_at_the_asset_scale_are_422_invalid_amount(pool: PgPool) {
    let ledger = Ledger::spawn(pool).await;
    let app = &ledger.app;
    let wallet = ledger.funded_wallet("alice", "NGN", "100").await;
    let amounts = [
        r#""0""#,
        "0",
        r#""0.00""#,
        r#""-5""#,
        "-5",
        r#""1.005""#,
        "1.005",
        r#""NaN""#,
        r#""Infinity""#,
        r#""-Infinity""#,
        "1e3",
        "1E3",
        r#""1e3""#,
        r#""+1""#,
        r#""""#,
        r#"" 1""#,
        r#"".5""#,
        r#""5.""#,
        r#""1,5""#,
        r#""0x10""#,
        "true",
        "null",
        "[1]",
        r#"{"value": "1"}"#,
        r#""12345678901234567890123456789""#,
        "12345678901234567890123456789",
    ];

    for amount in amounts {
        for action in ["topup", "spend"] {
            let body = format!(r#"{{"amount": {amount}}}"#);
            let request = raw_json(app, &format!("/v1/wallets/{wallet}/{action}"), &body);
            let reply = assert_refused(app, request, 422, "invalid_amount").await;
            assert_eq!(reply.body["field"], "amount", "{action} {amount}: {:?}", reply.body);
        }
    }
    assert_eq!(app.balance(&wallet).await.to_string(), "100.00");
}

#[sqlx::test(migrations = "../migrations")]
async fn an_amount_finer_than_a_scale_0_asset_is_422_invalid_amount(pool: PgPool) {
    let ledger = Ledger::spawn(pool).await;
    let app = &ledger.app;
    let wallet = app.open_wallet("alice", "GOLD").await;

    let reply = assert_refused(
        app,
        command(app, &format!("/v1/wallets/{wallet}/topup"), &json!({"amount": "1.5"})),
        422,
        "invalid_amount",
    )
    .await;

    assert_eq!(reply.body["field"], "amount");
}

#[sqlx::test(migrations = "../migrations")]
async fn a_bad_fee_overdraft_limit_fee_policy_or_reversal_amount_is_422_invalid_amount(pool: PgPool) {
    let ledger = Ledger::spawn(pool).await;
    let app = &ledger.app;
    let alice = ledger.funded_wallet("alice", "NGN", "100").await;
    let bob = app.open_wallet("bob", "NGN").await;
    let transfer =
        app.post("/v1/transfers", &key(), json!({"from_wallet_id": alice, "to_wallet_id": bob, "amount": "10"})).await;
    let reversal = format!("/v1/transfers/{}/reversal", transfer.body["transfer_id"].as_str().unwrap());
    let cases = [
        (
            "/v1/transfers".to_owned(),
            json!({"from_wallet_id": alice, "to_wallet_id": bob, "amount": "1", "fee": "-1"}),
            "fee",
        ),
        (
            "/v1/transfers".to_owned(),
            json!({"from_wallet_id": alice, "to_wallet_id": bob, "amount": "1", "fee": "0.001"}),
            "fee",
        ),
        ("/v1/transfers".to_owned(), json!({"from_wallet_id": alice, "to_wallet_id": bob, "amount": "0"}), "amount"),
        (
            "/v1/wallets".to_owned(),
            json!({"owner_id": "carol", "asset": "NGN", "overdraft_limit": "-1"}),
            "overdraft_limit",
        ),
        (
            "/v1/wallets".to_owned(),
            json!({"owner_id": "carol", "asset": "NGN", "overdraft_limit": "0.001"}),
            "overdraft_limit",
        ),
        (
            "/v1/assets".to_owned(),
            json!({"code": "USD", "scale": 2, "cash_in_fee": {"percent": "abc", "fixed": "0"}}),
            "cash_in_fee.percent",
        ),
        (reversal.clone(), json!({"amount": "0"}), "amount"),
        (reversal, json!({"amount": "1.001"}), "amount"),
    ];

    for (path, body, field) in cases {
        let reply = assert_refused(app, command(app, &path, &body), 422, "invalid_amount").await;
        assert_eq!(reply.body["field"], field, "{path} {body}: {:?}", reply.body);
    }
}

// ---- 422 business rejections -------------------------------------------------------------------

#[sqlx::test(migrations = "../migrations")]
async fn a_transfer_between_wallets_of_different_assets_is_422_asset_mismatch(pool: PgPool) {
    let ledger = Ledger::spawn(pool).await;
    let app = &ledger.app;
    let gold = ledger.funded_wallet("alice", "GOLD", "10").await;
    let ngn = app.open_wallet("bob", "NGN").await;

    let reply = assert_refused(
        app,
        command(app, "/v1/transfers", &json!({"from_wallet_id": gold, "to_wallet_id": ngn, "amount": "1"})),
        422,
        "asset_mismatch",
    )
    .await;

    assert_eq!(reply.body["from_asset"], "GOLD");
    assert_eq!(reply.body["to_asset"], "NGN");
    assert_eq!(app.balance(&gold).await.to_string(), "10");
}

#[sqlx::test(migrations = "../migrations")]
async fn a_transfer_to_the_same_wallet_is_422_same_wallet(pool: PgPool) {
    let ledger = Ledger::spawn(pool).await;
    let app = &ledger.app;
    let alice = ledger.funded_wallet("alice", "NGN", "10").await;

    assert_refused(
        app,
        command(app, "/v1/transfers", &json!({"from_wallet_id": alice, "to_wallet_id": alice, "amount": "1"})),
        422,
        "same_wallet",
    )
    .await;
}

#[sqlx::test(migrations = "../migrations")]
async fn a_debit_beyond_the_balance_is_422_insufficient_funds_with_available_and_requested(pool: PgPool) {
    let ledger = Ledger::spawn(pool).await;
    let app = &ledger.app;
    let alice = ledger.funded_wallet("alice", "NGN", "5").await;

    let reply = assert_refused(
        app,
        command(app, &format!("/v1/wallets/{alice}/spend"), &json!({"amount": "10"})),
        422,
        "insufficient_funds",
    )
    .await;

    assert_eq!(reply.body["wallet_id"], alice.as_str());
    assert_eq!(reply.body["available"], "5.00");
    assert_eq!(reply.body["requested"], "10.00");
    assert_eq!(app.balance(&alice).await.to_string(), "5.00");
}

#[sqlx::test(migrations = "../migrations")]
async fn insufficient_funds_on_a_transfer_with_fee_requests_the_amount_and_the_fee(pool: PgPool) {
    let ledger = Ledger::spawn(pool).await;
    let app = &ledger.app;
    let alice = ledger.funded_wallet("alice", "NGN", "5").await;
    let bob = app.open_wallet("bob", "NGN").await;

    let reply = assert_refused(
        app,
        command(
            app,
            "/v1/transfers",
            &json!({"from_wallet_id": alice, "to_wallet_id": bob, "amount": "4", "fee": "1.5"}),
        ),
        422,
        "insufficient_funds",
    )
    .await;

    assert_eq!(reply.body["wallet_id"], alice.as_str());
    assert_eq!(reply.body["available"], "5.00", "what the wallet had before the transfer");
    assert_eq!(reply.body["requested"], "5.50", "the amount and its fee, not the one leg that crossed the limit");
}

#[sqlx::test(migrations = "../migrations")]
async fn insufficient_funds_counts_the_overdraft_limit_as_available(pool: PgPool) {
    let ledger = Ledger::spawn(pool).await;
    let app = &ledger.app;
    let opened =
        app.post("/v1/wallets", &key(), json!({"owner_id": "alice", "asset": "NGN", "overdraft_limit": "5"})).await;
    let alice = opened.body["wallet_id"].as_str().unwrap();
    assert_eq!(app.money(alice, "topup", "2").await.status, 201);

    let reply = assert_refused(
        app,
        command(app, &format!("/v1/wallets/{alice}/withdrawal"), &json!({"amount": "7.01"})),
        422,
        "insufficient_funds",
    )
    .await;

    assert_eq!(reply.body["available"], "7.00");
    assert_eq!(reply.body["requested"], "7.01");
    assert_eq!(app.money(alice, "withdrawal", "7").await.status, 201, "exactly the limit is allowed");
    assert_eq!(app.balance(alice).await.to_string(), "-5.00");
}

#[sqlx::test(migrations = "../migrations")]
async fn a_frozen_wallet_refuses_debits_and_credits_with_422_wallet_frozen_until_unfrozen(pool: PgPool) {
    let ledger = Ledger::spawn(pool).await;
    let app = &ledger.app;
    let alice = ledger.funded_wallet("alice", "NGN", "10").await;
    let bob = ledger.funded_wallet("bob", "NGN", "10").await;
    let frozen = app.post(&format!("/v1/wallets/{alice}/freeze"), &key(), json!({})).await;
    assert_eq!(frozen.status, 200, "{:?}", frozen.body);

    let refused = [
        command(app, &format!("/v1/wallets/{alice}/spend"), &json!({"amount": "1"})),
        command(app, &format!("/v1/wallets/{alice}/topup"), &json!({"amount": "1"})),
        command(app, &format!("/v1/wallets/{alice}/cash-in"), &json!({"amount": "1"})),
        command(app, "/v1/transfers", &json!({"from_wallet_id": alice, "to_wallet_id": bob, "amount": "1"})),
        command(app, "/v1/transfers", &json!({"from_wallet_id": bob, "to_wallet_id": alice, "amount": "1"})),
    ];
    for request in refused {
        let reply = assert_refused(app, request, 422, "wallet_frozen").await;
        assert_eq!(reply.body["wallet_id"], alice.as_str(), "{:?}", reply.body);
    }

    let unfrozen = app.post(&format!("/v1/wallets/{alice}/unfreeze"), &key(), json!({})).await;
    assert_eq!(unfrozen.status, 200, "{:?}", unfrozen.body);
    assert_eq!(app.money(&alice, "spend", "1").await.status, 201);
    assert_eq!(app.money(&alice, "topup", "1").await.status, 201);
    assert_eq!(app.balance(&alice).await.to_string(), "10.00");
}

#[sqlx::test(migrations = "../migrations")]
async fn a_closed_wallet_refuses_money_and_status_changes_with_422_wallet_closed(pool: PgPool) {
    let ledger = Ledger::spawn(pool).await;
    let app = &ledger.app;
    let alice = app.open_wallet("alice", "NGN").await;
    let bob = ledger.funded_wallet("bob", "NGN", "10").await;
    let closed = app.post(&format!("/v1/wallets/{alice}/close"), &key(), json!({"reason": "account deleted"})).await;
    assert_eq!(closed.status, 200, "{:?}", closed.body);

    let refused = [
        command(app, &format!("/v1/wallets/{alice}/topup"), &json!({"amount": "1"})),
        command(app, &format!("/v1/wallets/{alice}/bonus"), &json!({"amount": "1"})),
        command(app, "/v1/transfers", &json!({"from_wallet_id": bob, "to_wallet_id": alice, "amount": "1"})),
        command(app, &format!("/v1/wallets/{alice}/freeze"), &json!({})),
        command(app, &format!("/v1/wallets/{alice}/unfreeze"), &json!({})),
    ];
    for request in refused {
        let reply = assert_refused(app, request, 422, "wallet_closed").await;
        assert_eq!(reply.body["wallet_id"], alice.as_str(), "{:?}", reply.body);
    }
}

#[sqlx::test(migrations = "../migrations")]
async fn closing_a_wallet_that_holds_money_is_422_wallet_not_empty(pool: PgPool) {
    let ledger = Ledger::spawn(pool).await;
    let app = &ledger.app;
    let alice = ledger.funded_wallet("alice", "NGN", "1").await;

    let reply =
        assert_refused(app, command(app, &format!("/v1/wallets/{alice}/close"), &json!({})), 422, "wallet_not_empty")
            .await;

    assert_eq!(reply.body["wallet_id"], alice.as_str());
    assert_eq!(reply.body["balance"], "1.00");
}

#[sqlx::test(migrations = "../migrations")]
async fn reversing_more_than_remains_of_a_transfer_is_422_reversal_exceeds_transfer(pool: PgPool) {
    let ledger = Ledger::spawn(pool).await;
    let app = &ledger.app;
    let alice = ledger.funded_wallet("alice", "NGN", "100").await;
    let bob = app.open_wallet("bob", "NGN").await;
    let original =
        app.post("/v1/transfers", &key(), json!({"from_wallet_id": alice, "to_wallet_id": bob, "amount": "10"})).await;
    let path = format!("/v1/transfers/{}/reversal", original.body["transfer_id"].as_str().unwrap());

    let over =
        assert_refused(app, command(app, &path, &json!({"amount": "10.01"})), 422, "reversal_exceeds_transfer").await;
    let whole = app.post(&path, &key(), json!({})).await;
    let again = assert_refused(app, command(app, &path, &json!({})), 422, "reversal_exceeds_transfer").await;

    assert_eq!(over.body["remaining"], "10.00");
    assert_eq!(over.body["requested"], "10.01");
    assert_eq!(whole.status, 201, "{:?}", whole.body);
    assert_eq!(again.body["remaining"], "0.00");
}

#[sqlx::test(migrations = "../migrations")]
async fn reusing_a_key_for_another_body_or_path_is_422_idempotency_key_reused(pool: PgPool) {
    let ledger = Ledger::spawn(pool).await;
    let app = &ledger.app;
    let alice = ledger.funded_wallet("alice", "NGN", "10").await;
    let bob = ledger.funded_wallet("bob", "NGN", "10").await;
    let reused = key();
    let first = app.post(&format!("/v1/wallets/{alice}/spend"), &reused, json!({"amount": "1"})).await;
    assert_eq!(first.status, 201, "{:?}", first.body);

    let other_body = app.client.post(app.url(&format!("/v1/wallets/{alice}/spend"))).json(&json!({"amount": "2"}));
    let other_path = app.client.post(app.url(&format!("/v1/wallets/{bob}/spend"))).json(&json!({"amount": "1"}));
    let other_action = app.client.post(app.url(&format!("/v1/wallets/{alice}/topup"))).json(&json!({"amount": "1"}));
    for request in [other_body, other_path, other_action] {
        assert_refused(app, request.header("idempotency-key", &reused), 422, "idempotency_key_reused").await;
    }

    assert_eq!(app.balance(&alice).await.to_string(), "9.00");
    assert_eq!(app.balance(&bob).await.to_string(), "10.00");
    let replay = app.post(&format!("/v1/wallets/{alice}/spend"), &reused, json!({"amount": "1"})).await;
    assert!(replay.replayed());
    assert_eq!(replay.body, first.body, "the key still answers its own request");
}

// ---- Idempotency contract ----------------------------------------------------------------------

#[sqlx::test(migrations = "../migrations")]
async fn a_replay_answers_the_same_status_and_body_marked_replayed_and_writes_nothing(pool: PgPool) {
    let ledger = Ledger::spawn(pool).await;
    let app = &ledger.app;
    let alice = ledger.funded_wallet("alice", "NGN", "100").await;
    let bob = app.open_wallet("bob", "NGN").await;
    let transfer =
        app.post("/v1/transfers", &key(), json!({"from_wallet_id": alice, "to_wallet_id": bob, "amount": "10"})).await;
    let requests = [
        ("/v1/assets".to_owned(), json!({"code": "USD", "scale": 2})),
        ("/v1/wallets".to_owned(), json!({"owner_id": "carol", "asset": "NGN"})),
        (format!("/v1/wallets/{alice}/topup"), json!({"amount": "5"})),
        (format!("/v1/wallets/{alice}/cash-in"), json!({"amount": "5"})),
        ("/v1/transfers".to_owned(), json!({"from_wallet_id": alice, "to_wallet_id": bob, "amount": "1"})),
        (format!("/v1/transfers/{}/reversal", transfer.body["transfer_id"].as_str().unwrap()), json!({"amount": "1"})),
        (format!("/v1/wallets/{bob}/freeze"), json!({})),
    ];

    for (path, body) in requests {
        let idempotency_key = key();
        let first = app.post(&path, &idempotency_key, body.clone()).await;
        let events_after_first = app.event_count().await;

        let replay = app.post(&path, &idempotency_key, body).await;

        assert!(first.status == 200 || first.status == 201, "{path}: {:?}", first.body);
        assert!(!first.replayed(), "{path}");
        assert_eq!(replay.status, first.status, "{path}");
        assert_eq!(replay.body, first.body, "{path}");
        assert!(replay.replayed(), "{path}: Idempotent-Replayed: true");
        assert_eq!(content_type(&replay), "application/json", "{path}");
        assert_eq!(app.event_count().await, events_after_first, "{path}: a replay wrote events");
    }
}

#[sqlx::test(migrations = "../migrations")]
async fn a_business_rejection_is_replayed_even_after_the_balance_would_allow_it(pool: PgPool) {
    let ledger = Ledger::spawn(pool).await;
    let app = &ledger.app;
    let alice = ledger.funded_wallet("alice", "NGN", "5").await;
    let spend = format!("/v1/wallets/{alice}/spend");
    let idempotency_key = key();
    let rejected = app.post(&spend, &idempotency_key, json!({"amount": "10"})).await;
    assert_problem(&rejected, 422, "insufficient_funds");
    assert_eq!(app.money(&alice, "topup", "20").await.status, 201);
    let events_before = app.event_count().await;

    let replay = app.post(&spend, &idempotency_key, json!({"amount": "10"})).await;

    assert_problem(&replay, 422, "insufficient_funds");
    assert!(replay.replayed());
    assert_eq!(replay.body, rejected.body);
    assert_eq!(app.event_count().await, events_before);
    assert_eq!(app.balance(&alice).await.to_string(), "25.00");
}

#[sqlx::test(migrations = "../migrations")]
async fn a_malformed_request_is_not_stored_so_its_key_can_be_retried_with_a_fixed_body(pool: PgPool) {
    let ledger = Ledger::spawn(pool).await;
    let app = &ledger.app;
    let alice = app.open_wallet("alice", "NGN").await;
    let path = format!("/v1/wallets/{alice}/topup");
    let oversized = json!({"amount": "1", "reference": "r".repeat(70 * 1024)}).to_string();
    let overlong_reference = json!({"amount": "1", "reference": "r".repeat(129)}).to_string();
    let malformed = [
        ("application/json", r#"{"amount": "1""#.to_owned(), 400),
        ("text/plain", r#"{"amount": "1"}"#.to_owned(), 415),
        ("application/json", oversized, 413),
        ("application/json", r#"{"amount": "1", "amont": "1"}"#.to_owned(), 422),
        ("application/json", r#"{"amount": "NaN"}"#.to_owned(), 422),
        ("application/json", r#"{"amount": 1e3}"#.to_owned(), 422),
        ("application/json", overlong_reference, 422),
    ];

    for (media_type, body, status) in malformed {
        let idempotency_key = key();
        let bad = app
            .send(
                app.client
                    .post(app.url(&path))
                    .header("idempotency-key", &idempotency_key)
                    .header(CONTENT_TYPE, media_type)
                    .body(body.clone()),
            )
            .await;

        let fixed = app.post(&path, &idempotency_key, json!({"amount": "1"})).await;

        assert_eq!(bad.status, status, "{media_type} {body:.60}: {:?}", bad.body);
        assert_eq!(fixed.status, 201, "{media_type} {body:.60}: {:?}", fixed.body);
        assert!(!fixed.replayed(), "{media_type} {body:.60}");
    }
    assert_eq!(app.balance(&alice).await.to_string(), "7.00");
}

#[sqlx::test(migrations = "../migrations")]
async fn a_zero_or_negative_amount_is_not_stored_so_its_key_can_be_retried_with_a_fixed_body(pool: PgPool) {
    let ledger = Ledger::spawn(pool).await;
    let app = &ledger.app;
    let alice = app.open_wallet("alice", "NGN").await;
    let path = format!("/v1/wallets/{alice}/topup");

    let mut stored = Vec::new();
    for amount in ["0", "-1"] {
        let idempotency_key = key();
        let bad = app.post(&path, &idempotency_key, json!({"amount": amount})).await;
        assert_problem(&bad, 422, "invalid_amount");

        let fixed = app.post(&path, &idempotency_key, json!({"amount": "1"})).await;

        if fixed.status != 201 {
            stored.push(format!("amount {amount}: the fixed retry got {} {}", fixed.status, fixed.code()));
        }
    }

    assert!(stored.is_empty(), "{stored:#?}");
}

#[sqlx::test(migrations = "../migrations")]
async fn the_same_body_with_its_keys_in_another_order_is_the_same_request(pool: PgPool) {
    let ledger = Ledger::spawn(pool).await;
    let app = &ledger.app;
    let alice = ledger.funded_wallet("alice", "NGN", "10").await;
    let bob = app.open_wallet("bob", "NGN").await;
    let idempotency_key = key();
    let in_order = format!(
        r#"{{"from_wallet_id": "{alice}", "to_wallet_id": "{bob}", "amount": "1", "metadata": {{"a": 1, "b": 2}}}}"#
    );
    let reordered = format!(
        r#"{{"metadata": {{"b": 2, "a": 1}}, "amount": "1", "to_wallet_id": "{bob}", "from_wallet_id": "{alice}"}}"#
    );
    let send = |body: String| {
        app.client
            .post(app.url("/v1/transfers"))
            .header("idempotency-key", &idempotency_key)
            .header(CONTENT_TYPE, "application/json")
            .body(body)
    };
    let first = app.send(send(in_order)).await;
    assert_eq!(first.status, 201, "{:?}", first.body);
    let events_before = app.event_count().await;

    let second = app.send(send(reordered)).await;

    assert_eq!(second.status, 201, "{:?}", second.body);
    assert!(second.replayed());
    assert_eq!(second.body, first.body);
    assert_eq!(app.event_count().await, events_before);
    assert_eq!(app.balance(&bob).await.to_string(), "1.00");
}

// ---- Amounts on the wire -----------------------------------------------------------------------

#[sqlx::test(migrations = "../migrations")]
async fn an_exact_json_number_and_a_string_are_the_same_amount(pool: PgPool) {
    let ledger = Ledger::spawn(pool).await;
    let app = &ledger.app;
    let by_number = app.open_wallet("alice", "NGN").await;
    let by_string = app.open_wallet("bob", "NGN").await;

    let numbers = [
        app.send(raw_json(app, &format!("/v1/wallets/{by_number}/topup"), r#"{"amount": 10.10}"#)).await,
        app.send(raw_json(app, &format!("/v1/wallets/{by_number}/spend"), r#"{"amount": 0.1}"#)).await,
        app.send(raw_json(app, &format!("/v1/wallets/{by_number}/topup"), r#"{"amount": 12345678901234567.89}"#)).await,
    ];
    let strings = [
        app.send(raw_json(app, &format!("/v1/wallets/{by_string}/topup"), r#"{"amount": "10.10"}"#)).await,
        app.send(raw_json(app, &format!("/v1/wallets/{by_string}/spend"), r#"{"amount": "0.1"}"#)).await,
        app.send(raw_json(app, &format!("/v1/wallets/{by_string}/topup"), r#"{"amount": "12345678901234567.89"}"#))
            .await,
    ];

    for (number, string) in numbers.iter().zip(&strings) {
        assert_eq!(number.status, 201, "{:?}", number.body);
        assert_eq!(string.status, 201, "{:?}", string.body);
        assert_eq!(number.body["amount"], string.body["amount"]);
        assert_eq!(balance_of(&number.body, &by_number)["balance"], balance_of(&string.body, &by_string)["balance"]);
    }
    assert_eq!(numbers[0].body["amount"], "10.10");
    assert_eq!(numbers[1].body["amount"], "0.10");
    assert_eq!(numbers[2].body["amount"], "12345678901234567.89", "never through f64");
    assert_eq!(app.balance(&by_number).await.to_string(), "12345678901234577.89");
}

#[sqlx::test(migrations = "../migrations")]
async fn amounts_are_answered_with_the_asset_scale(pool: PgPool) {
    let ledger = Ledger::spawn(pool).await;
    let app = &ledger.app;
    let ngn = app.open_wallet("alice", "NGN").await;
    let gold_view = app.post("/v1/wallets", &key(), json!({"owner_id": "alice", "asset": "GOLD"})).await;
    let gold = gold_view.body["wallet_id"].as_str().unwrap();

    let ngn_topup = app.money(&ngn, "topup", "10.5").await;
    let gold_topup = app.send(raw_json(app, &format!("/v1/wallets/{gold}/topup"), r#"{"amount": 7}"#)).await;

    assert_eq!(gold_view.body["balance"], "0");
    assert_eq!(gold_view.body["overdraft_limit"], "0");
    assert_eq!(ngn_topup.body["amount"], "10.50");
    assert_eq!(ngn_topup.body["fee"], "0.00");
    assert_eq!(balance_of(&ngn_topup.body, &ngn)["balance"], "10.50");
    assert_eq!(gold_topup.status, 201, "{:?}", gold_topup.body);
    assert_eq!(gold_topup.body["amount"], "7");
    assert_eq!(gold_topup.body["fee"], "0");
    assert_eq!(balance_of(&gold_topup.body, gold)["balance"], "7");
    assert_eq!(
        balance_of(&gold_topup.body, ledger.gold["system_wallets"]["treasury"].as_str().unwrap())["balance"],
        "-7"
    );
}

// ---- Request id --------------------------------------------------------------------------------

/// Metadata of every event one idempotency key wrote.
async fn event_metadata(app: &TestApp, idempotency_key: &str) -> Vec<Value> {
    sqlx::query_scalar("SELECT metadata FROM events WHERE metadata->>'idempotency_key' = $1 ORDER BY position")
        .bind(idempotency_key)
        .fetch_all(&app.pool)
        .await
        .unwrap()
}

#[sqlx::test(migrations = "../migrations")]
async fn a_client_request_id_comes_back_and_lands_in_the_events_metadata(pool: PgPool) {
    let ledger = Ledger::spawn(pool).await;
    let app = &ledger.app;
    let wallet = app.open_wallet("alice", "NGN").await;
    let idempotency_key = key();

    let reply = app
        .send(
            app.client
                .post(app.url(&format!("/v1/wallets/{wallet}/cash-in")))
                .header("idempotency-key", &idempotency_key)
                .header("x-request-id", "req-42-from-client")
                .json(&json!({"amount": "100"})),
        )
        .await;

    assert_eq!(reply.status, 201, "{:?}", reply.body);
    assert_eq!(reply.headers["x-request-id"], "req-42-from-client");
    let metadata = event_metadata(app, &idempotency_key).await;
    assert_eq!(metadata.len(), 5, "the transfer, the wallet's credit and fee debit, treasury and fees");
    for event in metadata {
        assert_eq!(event["request_id"], "req-42-from-client", "{event}");
        assert_eq!(event["correlation_id"], "req-42-from-client", "{event}");
    }
}

#[sqlx::test(migrations = "../migrations")]
async fn without_a_client_request_id_a_generated_one_comes_back_and_lands_in_the_events(pool: PgPool) {
    let ledger = Ledger::spawn(pool).await;
    let app = &ledger.app;
    let wallet = app.open_wallet("alice", "NGN").await;
    let idempotency_key = key();

    let reply = app.post(&format!("/v1/wallets/{wallet}/topup"), &idempotency_key, json!({"amount": "1"})).await;

    assert_eq!(reply.status, 201, "{:?}", reply.body);
    let request_id = reply.headers["x-request-id"].to_str().unwrap();
    assert!(!request_id.is_empty());
    let metadata = event_metadata(app, &idempotency_key).await;
    assert_eq!(metadata.len(), 3);
    for event in metadata {
        assert_eq!(event["request_id"], request_id, "{event}");
        assert_eq!(event["correlation_id"], request_id, "{event}");
    }
}

#[sqlx::test(migrations = "../migrations")]
async fn a_refused_request_echoes_the_client_request_id(pool: PgPool) {
    let ledger = Ledger::spawn(pool).await;
    let app = &ledger.app;

    let reply = assert_refused(
        app,
        command(app, "/v1/wallets", &json!({"owner_id": "alice", "asset": "XYZ"})).header("x-request-id", "req-404"),
        404,
        "asset_not_found",
    )
    .await;

    assert_eq!(reply.headers["x-request-id"], "req-404");
}
