//! Bearer tokens on command-service, black-box over HTTP: 401 and 403 on every guarded route, what each scope
//! grants, owner-bound tokens that cannot touch another owner's wallets (BOLA: 404, as if absent, no event),
//! idempotency keys scoped per token, per-token rate limits (429 with Retry-After) and the body limit (413).
#![allow(clippy::unwrap_used)]

mod support;

use std::path::PathBuf;

use command_service::http;
use reqwest::header::{AUTHORIZATION, RETRY_AFTER, WWW_AUTHENTICATE};
use serde_json::{json, Value};
use sqlx::PgPool;
use support::{key, Reply, TestApp};
use tally_edge::auth::token_sha256;
use tally_edge::{Access, Authenticator, Scope};

const ADMIN: &str = "admin-secret";
const COMMANDS: &str = "commands-secret";
const ISSUER: &str = "issuer-secret";
const READER: &str = "reader-secret";
const ALICE: &str = "alice-secret";
const BURSTY: &str = "bursty-secret";
/// `rate_per_s` of the bursty token: also its burst.
const BURSTY_RATE_PER_S: u32 = 5;

/// A token file with one token of each kind, written to a fresh temporary file.
fn token_file() -> PathBuf {
    let entry = |name: &str, token: &str, scopes: &[&str]| json!({"name": name, "token_sha256": token_sha256(token), "scopes": scopes});
    let mut alice = entry("alice-app", ALICE, &["commands", "issue"]);
    alice["owner_id"] = json!("alice");
    let mut bursty = entry("bursty", BURSTY, &["admin"]);
    bursty["rate_per_s"] = json!(BURSTY_RATE_PER_S);
    let tokens = json!([
        entry("ops", ADMIN, &["admin"]),
        entry("shop", COMMANDS, &["commands"]),
        entry("issuer", ISSUER, &["issue"]),
        entry("dashboard", READER, &["read", "audit"]),
        alice,
        bursty,
    ]);
    let path = std::env::temp_dir().join(format!("tally-tokens-{}.json", uuid::Uuid::now_v7()));
    std::fs::write(&path, tokens.to_string()).unwrap();
    path
}

/// command-service with the token file above, and typed helpers that send a token.
struct Secured {
    app: TestApp,
}

impl Secured {
    async fn spawn(pool: PgPool, extra: &[&str]) -> Secured {
        let tokens = token_file();
        let mut arguments = vec!["--auth-tokens-file", tokens.to_str().unwrap()];
        arguments.extend_from_slice(extra);
        Secured { app: TestApp::spawn_with(pool, support::config(&arguments)).await }
    }

    /// POSTs `body` to `path` with a fresh idempotency key as the holder of `token` (none: no header).
    async fn post(&self, token: Option<&str>, path: &str, body: Value) -> Reply {
        self.post_keyed(token, path, &key(), body).await
    }

    async fn post_keyed(&self, token: Option<&str>, path: &str, idempotency_key: &str, body: Value) -> Reply {
        let mut request =
            self.app.client.post(self.app.url(path)).header("idempotency-key", idempotency_key).json(&body);
        if let Some(token) = token {
            request = request.header(AUTHORIZATION, format!("Bearer {token}"));
        }
        self.app.send(request).await
    }

    async fn define_asset(&self, code: &str) -> Value {
        let reply = self.post(Some(ADMIN), "/v1/assets", json!({"code": code, "scale": 2})).await;
        assert_eq!(reply.status, 201, "{:?}", reply.body);
        reply.body
    }

    async fn funded_wallet(&self, owner: &str, asset: &str, amount: &str) -> String {
        let reply = self.post(Some(ADMIN), "/v1/wallets", json!({"owner_id": owner, "asset": asset})).await;
        assert_eq!(reply.status, 201, "{:?}", reply.body);
        let wallet = reply.body["wallet_id"].as_str().unwrap().to_owned();
        let reply = self.post(Some(ADMIN), &format!("/v1/wallets/{wallet}/topup"), json!({"amount": amount})).await;
        assert_eq!(reply.status, 201, "{:?}", reply.body);
        wallet
    }
}

/// Every guarded route of the table, with its path parameters filled in, and the scope it needs.
fn guarded_routes() -> Vec<(String, Scope)> {
    let some_id = uuid::Uuid::now_v7().to_string();
    http::routes(Authenticator::open())
        .specs()
        .iter()
        .filter_map(|spec| match spec.access {
            Access::Scope(scope) => {
                let path = spec.path.replace("{wallet_id}", &some_id).replace("{transfer_id}", &some_id);
                Some((path, scope))
            }
            Access::Open => None,
        })
        .collect()
}

/// A body every command route parses, so that only the guard can refuse.
fn any_body(path: &str) -> Value {
    match path {
        "/v1/assets" => json!({"code": "ZZZ", "scale": 0}),
        "/v1/wallets" => json!({"owner_id": "zed", "asset": "ZZZ"}),
        "/v1/transfers" => {
            json!({"from_wallet_id": uuid::Uuid::now_v7(), "to_wallet_id": uuid::Uuid::now_v7(), "amount": "1"})
        }
        _ if path.ends_with("/freeze") || path.ends_with("/unfreeze") || path.ends_with("/close") => json!({}),
        _ if path.ends_with("/reversal") || path.ends_with("/capture") || path.ends_with("/void") => json!({}),
        _ => json!({"amount": "1"}),
    }
}

#[track_caller]
fn assert_problem(reply: &Reply, status: u16, code: &str) {
    assert_eq!(reply.status, status, "{:?}", reply.body);
    assert_eq!(reply.code(), code, "{:?}", reply.body);
    assert_eq!(reply.headers["content-type"], "application/problem+json");
}

#[sqlx::test(migrations = "../migrations")]
async fn every_guarded_route_without_a_valid_token_is_401_with_a_bearer_challenge(pool: PgPool) {
    let secured = Secured::spawn(pool, &[]).await;
    let routes = guarded_routes();
    assert_eq!(routes.len(), 15, "every command route is guarded");

    for (path, _) in &routes {
        let missing = secured.post(None, path, any_body(path)).await;
        let wrong = secured.post(Some("not-a-token"), path, any_body(path)).await;
        let basic = secured
            .app
            .send(secured.app.client.post(secured.app.url(path)).header(AUTHORIZATION, "Basic YWRtaW46YWRtaW4="))
            .await;

        assert_problem(&missing, 401, "unauthenticated");
        assert_eq!(missing.headers[WWW_AUTHENTICATE], r#"Bearer realm="tally""#, "{path}");
        assert_problem(&wrong, 401, "unauthenticated");
        assert_eq!(wrong.headers[WWW_AUTHENTICATE], r#"Bearer realm="tally", error="invalid_token""#, "{path}");
        assert_problem(&basic, 401, "unauthenticated");
    }
    assert_eq!(secured.app.event_count().await, 0);
}

#[sqlx::test(migrations = "../migrations")]
async fn a_token_without_the_scope_of_a_route_is_403_forbidden(pool: PgPool) {
    let secured = Secured::spawn(pool, &[]).await;

    for (path, scope) in guarded_routes() {
        let reader = secured.post(Some(READER), &path, any_body(&path)).await;
        let other = match scope {
            Scope::Issue => secured.post(Some(COMMANDS), &path, any_body(&path)).await,
            _ => secured.post(Some(ISSUER), &path, any_body(&path)).await,
        };

        assert_problem(&reader, 403, "forbidden");
        assert_problem(&other, 403, "forbidden");
        assert!(other.body["detail"].as_str().unwrap().contains(scope.as_str()), "{:?}", other.body);
    }
    assert_eq!(secured.app.event_count().await, 0);
}

#[sqlx::test(migrations = "../migrations")]
async fn issue_creates_money_and_commands_move_it(pool: PgPool) {
    let secured = Secured::spawn(pool, &[]).await;

    let asset = secured.post(Some(ISSUER), "/v1/assets", json!({"code": "NGN", "scale": 2})).await;
    let opened = secured.post(Some(COMMANDS), "/v1/wallets", json!({"owner_id": "carol", "asset": "NGN"})).await;
    let wallet = opened.body["wallet_id"].as_str().unwrap().to_owned();
    let topup = secured.post(Some(ISSUER), &format!("/v1/wallets/{wallet}/topup"), json!({"amount": "10"})).await;
    let bonus = secured.post(Some(ISSUER), &format!("/v1/wallets/{wallet}/bonus"), json!({"amount": "1"})).await;
    let spend = secured.post(Some(COMMANDS), &format!("/v1/wallets/{wallet}/spend"), json!({"amount": "3"})).await;
    let freeze = secured.post(Some(COMMANDS), &format!("/v1/wallets/{wallet}/freeze"), json!({})).await;

    assert_eq!(asset.status, 201, "{:?}", asset.body);
    assert_eq!(opened.status, 201, "{:?}", opened.body);
    assert_eq!(topup.status, 201, "{:?}", topup.body);
    assert_eq!(bonus.status, 201, "{:?}", bonus.body);
    assert_eq!(spend.status, 201, "{:?}", spend.body);
    assert_eq!(freeze.status, 200, "{:?}", freeze.body);
}

#[sqlx::test(migrations = "../migrations")]
async fn health_metrics_and_docs_stay_open(pool: PgPool) {
    let secured = Secured::spawn(pool, &[]).await;

    for path in ["/health/live", "/health/ready", "/metrics", "/openapi.json", "/docs/"] {
        let reply = secured.app.send(secured.app.client.get(secured.app.url(path))).await;
        assert_eq!(reply.status, 200, "{path}: {:?}", reply.body);
    }
}

#[sqlx::test(migrations = "../migrations")]
async fn an_owner_bound_token_gets_404_on_every_wallet_route_of_another_owner_and_writes_nothing(pool: PgPool) {
    let secured = Secured::spawn(pool, &[]).await;
    secured.define_asset("NGN").await;
    let alice = secured.funded_wallet("alice", "NGN", "100").await;
    let bob = secured.funded_wallet("bob", "NGN", "100").await;
    let bobs_spend = secured.post(Some(ADMIN), &format!("/v1/wallets/{bob}/spend"), json!({"amount": "5"})).await;
    let bobs_spend = bobs_spend.body["transfer_id"].as_str().unwrap().to_owned();
    let bob_to_alice = secured
        .post(Some(ADMIN), "/v1/transfers", json!({"from_wallet_id": bob, "to_wallet_id": alice, "amount": "7"}))
        .await;
    let bob_to_alice = bob_to_alice.body["transfer_id"].as_str().unwrap().to_owned();
    let nowhere = uuid::Uuid::now_v7().to_string();
    let events_before = secured.app.event_count().await;

    for action in ["topup", "bonus", "spend", "withdrawal", "cash-in", "freeze", "unfreeze", "close"] {
        let body = if ["freeze", "unfreeze", "close"].contains(&action) { json!({}) } else { json!({"amount": "1"}) };
        let theirs = secured.post(Some(ALICE), &format!("/v1/wallets/{bob}/{action}"), body.clone()).await;
        let absent = secured.post(Some(ALICE), &format!("/v1/wallets/{nowhere}/{action}"), body).await;

        assert_problem(&theirs, 404, "wallet_not_found");
        assert_problem(&absent, 404, "wallet_not_found");
        assert_eq!(theirs.body["title"], absent.body["title"], "{action}: the same answer as for no wallet at all");
    }
    let conditional = secured
        .app
        .send(
            secured
                .app
                .client
                .post(secured.app.url(&format!("/v1/wallets/{bob}/spend")))
                .header(AUTHORIZATION, format!("Bearer {ALICE}"))
                .header("idempotency-key", key())
                .header("if-match", "\"99\"")
                .json(&json!({"amount": "1"})),
        )
        .await;
    assert_problem(&conditional, 404, "wallet_not_found");
    let transfer_from_bob = secured
        .post(Some(ALICE), "/v1/transfers", json!({"from_wallet_id": bob, "to_wallet_id": alice, "amount": "1"}))
        .await;
    assert_problem(&transfer_from_bob, 404, "wallet_not_found");
    assert_eq!(transfer_from_bob.body["wallet_id"], bob.as_str());
    let open_for_bob = secured.post(Some(ALICE), "/v1/wallets", json!({"owner_id": "bob", "asset": "NGN"})).await;
    assert_problem(&open_for_bob, 404, "wallet_not_found");
    for transfer in [&bobs_spend, &bob_to_alice] {
        let reversal = secured.post(Some(ALICE), &format!("/v1/transfers/{transfer}/reversal"), json!({})).await;
        assert_problem(&reversal, 404, "transfer_not_found");
    }
    assert_eq!(secured.app.event_count().await, events_before, "a refused command wrote events");
    assert_eq!(secured.app.balance(&bob).await, rust_decimal::Decimal::from(88));
}

#[sqlx::test(migrations = "../migrations")]
async fn an_owner_bound_token_acts_on_its_owners_wallets(pool: PgPool) {
    let secured = Secured::spawn(pool, &[]).await;
    secured.define_asset("NGN").await;
    let bob = secured.funded_wallet("bob", "NGN", "100").await;

    let opened = secured.post(Some(ALICE), "/v1/wallets", json!({"owner_id": "alice", "asset": "NGN"})).await;
    let alice = opened.body["wallet_id"].as_str().unwrap().to_owned();
    let topup = secured.post(Some(ALICE), &format!("/v1/wallets/{alice}/topup"), json!({"amount": "50"})).await;
    let to_bob = secured
        .post(Some(ALICE), "/v1/transfers", json!({"from_wallet_id": alice, "to_wallet_id": bob, "amount": "20"}))
        .await;
    let transfer = to_bob.body["transfer_id"].as_str().unwrap().to_owned();
    let reversal =
        secured.post(Some(ALICE), &format!("/v1/transfers/{transfer}/reversal"), json!({"amount": "5"})).await;
    let freeze = secured.post(Some(ALICE), &format!("/v1/wallets/{alice}/freeze"), json!({})).await;

    assert_eq!(opened.status, 201, "{:?}", opened.body);
    assert_eq!(topup.status, 201, "{:?}", topup.body);
    assert_eq!(to_bob.status, 201, "{:?}", to_bob.body);
    assert_eq!(reversal.status, 201, "{:?}", reversal.body);
    assert_eq!(freeze.status, 200, "{:?}", freeze.body);
    assert_eq!(secured.app.balance(&alice).await, rust_decimal::Decimal::from(35));
    assert_eq!(secured.app.balance(&bob).await, rust_decimal::Decimal::from(115));
}

#[sqlx::test(migrations = "../migrations")]
async fn idempotency_keys_are_scoped_per_token(pool: PgPool) {
    let secured = Secured::spawn(pool, &[]).await;
    secured.define_asset("NGN").await;
    let wallet = secured.funded_wallet("carol", "NGN", "100").await;
    let shared_key = key();
    let path = format!("/v1/wallets/{wallet}/spend");

    let by_shop = secured.post_keyed(Some(COMMANDS), &path, &shared_key, json!({"amount": "1"})).await;
    let by_ops = secured.post_keyed(Some(ADMIN), &path, &shared_key, json!({"amount": "1"})).await;
    let by_shop_again = secured.post_keyed(Some(COMMANDS), &path, &shared_key, json!({"amount": "1"})).await;

    assert_eq!((by_shop.status, by_ops.status), (201, 201));
    assert_ne!(by_shop.body["transfer_id"], by_ops.body["transfer_id"], "two tokens, two commands");
    assert!(!by_ops.replayed());
    assert!(by_shop_again.replayed());
    assert_eq!(by_shop_again.body["transfer_id"], by_shop.body["transfer_id"]);
    assert_eq!(secured.app.balance(&wallet).await, rust_decimal::Decimal::from(98));
    let principals: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT metadata->>'principal' FROM events WHERE metadata->>'idempotency_key' = $1 ORDER BY 1",
    )
    .bind(&shared_key)
    .fetch_all(&secured.app.pool)
    .await
    .unwrap();
    assert_eq!(principals, ["ops", "shop"]);
}

#[sqlx::test(migrations = "../migrations")]
async fn a_burst_over_a_tokens_rate_is_429_rate_limited_with_retry_after(pool: PgPool) {
    let secured = Secured::spawn(pool, &[]).await;
    let path = format!("/v1/wallets/{}/spend", uuid::Uuid::now_v7());
    let burst = 4 * BURSTY_RATE_PER_S as usize;

    let replies =
        futures::future::join_all((0..burst).map(|_| secured.post(Some(BURSTY), &path, json!({"amount": "1"})))).await;
    let other_token = secured.post(Some(ADMIN), &path, json!({"amount": "1"})).await;

    let limited: Vec<&Reply> = replies.iter().filter(|reply| reply.status == 429).collect();
    let let_through = replies.iter().filter(|reply| reply.status == 404).count();
    assert!(let_through >= 1 && let_through <= BURSTY_RATE_PER_S as usize + 1, "{let_through} let through");
    assert_eq!(limited.len() + let_through, burst);
    for reply in limited {
        assert_problem(reply, 429, "rate_limited");
        let retry_after: u64 = reply.headers[RETRY_AFTER].to_str().unwrap().parse().unwrap();
        assert!((1..=2).contains(&retry_after), "Retry-After: {retry_after}");
    }
    assert_problem(&other_token, 404, "wallet_not_found");
}

#[sqlx::test(migrations = "../migrations")]
async fn a_body_over_body_bytes_max_is_413_payload_too_large(pool: PgPool) {
    let secured = Secured::spawn(pool, &["--body-bytes-max", "2048"]).await;
    secured.define_asset("NGN").await;
    let wallet = secured.funded_wallet("carol", "NGN", "10").await;
    let path = format!("/v1/wallets/{wallet}/topup");
    let events_before = secured.app.event_count().await;

    let small = secured.post(Some(ADMIN), &path, json!({"amount": "1", "reference": "r".repeat(100)})).await;
    let large = secured.post(Some(ADMIN), &path, json!({"amount": "1", "reference": "r".repeat(3000)})).await;
    let chunked =
        chunked_post(&secured.app, &path, &json!({"amount": "1", "reference": "r".repeat(3000)}).to_string()).await;

    assert_eq!(small.status, 201, "{:?}", small.body);
    assert_problem(&large, 413, "payload_too_large");
    assert!(chunked.starts_with("HTTP/1.1 413"), "{chunked}");
    assert!(chunked.contains("payload_too_large"), "{chunked}");
    assert_eq!(secured.app.event_count().await, events_before + 3, "only the small topup was written");
}

/// POSTs `body` with `Transfer-Encoding: chunked` (no declared length) over a raw connection; returns the answer.
async fn chunked_post(app: &TestApp, path: &str, body: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(app.address).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {ADMIN}\r\nIdempotency-Key: {}\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        app.address,
        key()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    for chunk in body.as_bytes().chunks(500) {
        stream.write_all(format!("{:x}\r\n", chunk.len()).as_bytes()).await.unwrap();
        stream.write_all(chunk).await.unwrap();
        stream.write_all(b"\r\n").await.unwrap();
    }
    stream.write_all(b"0\r\n\r\n").await.unwrap();
    let mut answer = Vec::new();
    let _closed_early_is_fine = stream.read_to_end(&mut answer).await;
    String::from_utf8_lossy(&answer).into_owned()
}

/// Holds follow the same rule: alice's token places no hold on bob's wallet and captures or voids none of bob's
/// holds (404, as if absent); on her own wallet all three work.
#[sqlx::test(migrations = "../migrations")]
async fn an_owner_bound_token_holds_only_its_owners_wallets(pool: PgPool) {
    let secured = Secured::spawn(pool, &[]).await;
    secured.define_asset("NGN").await;
    let bob = secured.funded_wallet("bob", "NGN", "100").await;
    let bobs_hold = secured.post(Some(ADMIN), &format!("/v1/wallets/{bob}/holds"), json!({"amount": "10"})).await;
    let bobs_hold = bobs_hold.body["hold_id"].as_str().unwrap().to_owned();
    let events_before = secured.app.event_count().await;

    let placed = secured.post(Some(ALICE), &format!("/v1/wallets/{bob}/holds"), json!({"amount": "1"})).await;
    assert_problem(&placed, 404, "wallet_not_found");
    for action in ["capture", "void"] {
        let theirs = secured.post(Some(ALICE), &format!("/v1/holds/{bobs_hold}/{action}"), json!({})).await;
        assert_problem(&theirs, 404, "hold_not_found");
    }
    assert_eq!(secured.app.event_count().await, events_before, "a refused command wrote events");

    let opened = secured.post(Some(ALICE), "/v1/wallets", json!({"owner_id": "alice", "asset": "NGN"})).await;
    let alice = opened.body["wallet_id"].as_str().unwrap().to_owned();
    secured.post(Some(ALICE), &format!("/v1/wallets/{alice}/topup"), json!({"amount": "50"})).await;
    let hold = secured.post(Some(ALICE), &format!("/v1/wallets/{alice}/holds"), json!({"amount": "20"})).await;
    assert_eq!(hold.status, 201, "{:?}", hold.body);
    let hold = hold.body["hold_id"].as_str().unwrap().to_owned();
    let captured =
        secured.post(Some(ALICE), &format!("/v1/holds/{hold}/capture"), json!({"amount": "5", "final": false})).await;
    assert_eq!(captured.status, 201, "{:?}", captured.body);
    let voided = secured.post(Some(ALICE), &format!("/v1/holds/{hold}/void"), json!({})).await;
    assert_eq!(voided.status, 201, "{:?}", voided.body);
}
