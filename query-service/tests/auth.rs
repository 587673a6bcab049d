//! Bearer tokens on query-service, black-box over HTTP: 401 and 403 on every `/v1` route, owner-bound tokens that
//! cannot read another owner's wallets, history, balances, owner list, transfers or streams (404, as if absent),
//! per-token rate limits, the body limit, and the OpenAPI document covering every route of the router.
//! Data is written by the real command-service and projector, in process.
#![allow(clippy::unwrap_used)]

#[path = "api/support.rs"]
#[allow(dead_code)]
mod support;

#[path = "end_to_end/commands.rs"]
#[allow(dead_code)]
mod commands;

#[path = "end_to_end/projector.rs"]
#[allow(dead_code)]
mod projector;

use std::path::PathBuf;

use commands::{unique_prefix, CommandService};
use projector::Projector;
use query_service::http;
use reqwest::header::{AUTHORIZATION, RETRY_AFTER, WWW_AUTHENTICATE};
use serde_json::{json, Value};
use sqlx::PgPool;
use support::{answer, Answer, TestApp};
use tally_edge::auth::token_sha256;
use tally_edge::{Access, Authenticator, Scope};

const READER: &str = "reader-secret";
const AUDITOR: &str = "auditor-secret";
const COMMANDS: &str = "commands-secret";
const ALICE: &str = "alice-secret";
const BURSTY: &str = "bursty-secret";
const BURSTY_RATE_PER_S: u32 = 3;

fn token_file() -> PathBuf {
    let entry = |name: &str, token: &str, scopes: &[&str]| json!({"name": name, "token_sha256": token_sha256(token), "scopes": scopes});
    let mut alice = entry("alice-app", ALICE, &["read", "audit"]);
    alice["owner_id"] = json!("alice");
    let mut bursty = entry("bursty", BURSTY, &["read"]);
    bursty["rate_per_s"] = json!(BURSTY_RATE_PER_S);
    let tokens = json!([
        entry("dashboard", READER, &["read"]),
        entry("auditor", AUDITOR, &["audit"]),
        entry("shop", COMMANDS, &["commands", "issue"]),
        alice,
        bursty,
    ]);
    let path = std::env::temp_dir().join(format!("tally-tokens-{}.json", uuid::Uuid::now_v7()));
    std::fs::write(&path, tokens.to_string()).unwrap();
    path
}

async fn spawn_secured(pool: PgPool, extra: &[&str]) -> TestApp {
    let tokens = token_file();
    let mut flags = vec!["--auth-tokens-file", tokens.to_str().unwrap(), "--min-position-wait-ms", "10000"];
    flags.extend_from_slice(extra);
    TestApp::spawn_with(pool, &flags).await
}

async fn get_as(app: &TestApp, token: Option<&str>, path: &str) -> Answer {
    let mut request = app.client.get(format!("{}{path}", app.base_url));
    if let Some(token) = token {
        request = request.header(AUTHORIZATION, format!("Bearer {token}"));
    }
    answer(request.send().await.unwrap()).await
}

/// Every guarded route of the table with its parameters filled in, and the scope it needs.
fn guarded_routes() -> Vec<(String, Scope)> {
    let id = uuid::Uuid::now_v7();
    http::routes(Authenticator::open())
        .specs()
        .iter()
        .filter_map(|spec| match spec.access {
            Access::Scope(scope) => Some((
                spec.path
                    .replace("{wallet_id}", &id.to_string())
                    .replace("{transfer_id}", &id.to_string())
                    .replace("{code}", "NGN")
                    .replace("{owner_id}", "alice")
                    .replace("{stream_id}", &format!("wallet-{id}")),
                scope,
            )),
            Access::Open => None,
        })
        .collect()
}

#[sqlx::test(migrations = "../migrations")]
async fn every_v1_route_is_401_without_a_valid_token_and_403_without_its_scope(pool: PgPool) {
    let app = spawn_secured(pool, &[]).await;
    let routes = guarded_routes();
    assert_eq!(routes.len(), 21, "every /v1 route is guarded");

    for (path, scope) in &routes {
        let missing = get_as(&app, None, path).await;
        let wrong = get_as(&app, Some("nope"), path).await;
        let commands = get_as(&app, Some(COMMANDS), path).await;
        let other_scope = get_as(&app, Some(if *scope == Scope::Read { AUDITOR } else { READER }), path).await;

        missing.problem(401, "unauthenticated");
        assert_eq!(missing.headers[WWW_AUTHENTICATE], r#"Bearer realm="tally""#, "{path}");
        wrong.problem(401, "unauthenticated");
        commands.problem(403, "forbidden");
        other_scope.problem(403, "forbidden");
    }
    for path in ["/health/live", "/health/ready", "/metrics", "/openapi.json", "/docs/"] {
        assert_eq!(get_as(&app, None, path).await.status, 200, "{path} stays open");
    }
    app.stop().await;
}

#[sqlx::test(migrations = "../migrations")]
async fn the_audit_routes_need_audit_and_the_views_read(pool: PgPool) {
    let app = spawn_secured(pool, &[]).await;
    let wallet = uuid::Uuid::now_v7();

    let audit = ["/v1/events".to_owned(), format!("/v1/wallets/{wallet}/balance?at_position=1")];
    let read = ["/v1/assets".to_owned(), "/v1/projections".to_owned(), format!("/v1/wallets/{wallet}")];

    for path in &audit {
        get_as(&app, Some(READER), path).await.problem(403, "forbidden");
        assert_ne!(get_as(&app, Some(AUDITOR), path).await.status, 403, "{path}");
    }
    for path in &read {
        get_as(&app, Some(AUDITOR), path).await.problem(403, "forbidden");
        assert_ne!(get_as(&app, Some(READER), path).await.status, 403, "{path}");
    }
    app.stop().await;
}

#[sqlx::test(migrations = "../migrations")]
async fn an_owner_bound_token_reads_only_its_owners_wallets_and_transfers(pool: PgPool) {
    let prefix = unique_prefix();
    let service = CommandService::spawn_with_prefix(pool.clone(), &prefix).await;
    let commands = &service.commands;
    let projector = Projector::spawn(pool.clone(), &prefix).await;
    let app = spawn_secured(pool, &[]).await;
    let asset = commands.define_asset("NGN", 2).await;
    let treasury = asset["system_wallets"]["treasury"].as_str().unwrap().to_owned();
    let alice = commands.open_wallet("alice", "NGN").await.body["wallet_id"].as_str().unwrap().to_owned();
    let bob = commands.open_wallet("bob", "NGN").await.body["wallet_id"].as_str().unwrap().to_owned();
    let reference = json!({"amount": "10", "reference": "shared-ref"});
    let bobs = commands.post(&format!("/v1/wallets/{bob}/topup"), reference.clone()).await;
    let alices = commands.post(&format!("/v1/wallets/{alice}/topup"), reference).await;
    let to_alice = commands.transfer(&bob, &alice, "1").await;
    let alices_transfers = [alices.position(), to_alice.position()];
    let shared_hold = json!({"amount": "1", "reference": "shared-hold"});
    let bobs_hold = commands.post(&format!("/v1/wallets/{bob}/holds"), shared_hold.clone()).await;
    let alices_hold = commands.post(&format!("/v1/wallets/{alice}/holds"), shared_hold).await;
    let position = alices_hold.position();
    let (bobs_hold, alices_hold) = (
        bobs_hold.body["hold_id"].as_str().unwrap().to_owned(),
        alices_hold.body["hold_id"].as_str().unwrap().to_owned(),
    );
    let (bobs, alices, to_alice) = (
        bobs.body["transfer_id"].as_str().unwrap().to_owned(),
        alices.body["transfer_id"].as_str().unwrap().to_owned(),
        to_alice.body["transfer_id"].as_str().unwrap().to_owned(),
    );
    let read = |path: String| {
        let app = &app;
        async move {
            get_as(
                app,
                Some(ALICE),
                &format!("{path}{}min_position={position}", if path.contains('?') { '&' } else { '?' }),
            )
            .await
        }
    };

    for wallet in [&bob, &treasury] {
        read(format!("/v1/wallets/{wallet}")).await.problem(404, "wallet_not_found");
        read(format!("/v1/wallets/{wallet}/history")).await.problem(404, "wallet_not_found");
        read(format!("/v1/wallets/{wallet}/balance?at_position={position}")).await.problem(404, "wallet_not_found");
        read(format!("/v1/streams/wallet-{wallet}/events")).await.problem(404, "wallet_not_found");
    }
    let theirs = read(format!("/v1/wallets/{bob}")).await;
    let nobodys = read(format!("/v1/wallets/{}", uuid::Uuid::now_v7())).await;
    assert_eq!(theirs.body["title"], nobodys.body["title"]);
    assert_eq!(theirs.body.as_object().unwrap().len(), nobodys.body.as_object().unwrap().len(), "{:#}", theirs.body);
    read("/v1/owners/bob/wallets".to_owned()).await.problem(404, "not_found");
    read(format!("/v1/transfers/{bobs}")).await.problem(404, "transfer_not_found");
    read(format!("/v1/streams/transfer-{bobs}/events")).await.problem(404, "transfer_not_found");
    read("/v1/events".to_owned()).await.problem(403, "forbidden");
    read("/v1/export".to_owned()).await.problem(403, "forbidden");
    read("/v1/events/stream".to_owned()).await.problem(403, "forbidden");
    // The transfers feed shows alice's token her own two transfers, not bob's top-up before them.
    let response = app
        .client
        .get(format!("{}/v1/transfers/stream", app.base_url))
        .header(AUTHORIZATION, format!("Bearer {ALICE}"))
        .send()
        .await
        .unwrap();
    let mut body = futures::StreamExt::boxed(response.bytes_stream());
    let mut text = String::new();
    while text.matches("\nid:").count() + usize::from(text.starts_with("id:")) < 2 {
        let chunk = tokio::time::timeout(std::time::Duration::from_secs(10), futures::StreamExt::next(&mut body));
        text.push_str(&String::from_utf8_lossy(&chunk.await.expect("the feed answers").unwrap().unwrap()));
    }
    let ids: Vec<i64> =
        text.lines().filter_map(|line| line.strip_prefix("id:")).map(|id| id.trim().parse().unwrap()).collect();
    assert_eq!(ids, alices_transfers, "only transfers touching alice's wallets: {text}");
    drop(body);
    read(format!("/v1/holds/{bobs_hold}")).await.problem(404, "hold_not_found");
    read(format!("/v1/wallets/{bob}/holds")).await.problem(404, "wallet_not_found");
    read(format!("/v1/streams/hold-{bobs_hold}/events")).await.problem(404, "hold_not_found");
    read(format!("/v1/holds/{alices_hold}")).await.ok();
    assert_eq!(read(format!("/v1/wallets/{alice}/holds")).await.ok()["items"].as_array().unwrap().len(), 1);
    let holds = read("/v1/holds?reference=shared-hold".to_owned()).await;
    assert_eq!(holds.ok()["items"].as_array().unwrap().len(), 1, "only alice's hold of the two");
    assert_eq!(holds.ok()["items"][0]["hold_id"], alices_hold.as_str());

    assert_eq!(read(format!("/v1/wallets/{alice}")).await.ok()["balance"], "11.00");
    assert_eq!(read(format!("/v1/wallets/{alice}/history")).await.ok()["items"].as_array().unwrap().len(), 2);
    assert_eq!(read(format!("/v1/wallets/{alice}/balance?at_position={position}")).await.ok()["balance"], "11.00");
    assert_eq!(read("/v1/owners/alice/wallets".to_owned()).await.ok()["items"][0]["wallet_id"], alice.as_str());
    read(format!("/v1/transfers/{alices}")).await.ok();
    read(format!("/v1/transfers/{to_alice}")).await.ok();
    read(format!("/v1/streams/wallet-{alice}/events")).await.ok();
    read(format!("/v1/streams/transfer-{to_alice}/events")).await.ok();
    let by_reference = read("/v1/transfers?reference=shared-ref".to_owned()).await;
    let items = by_reference.ok()["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "only alice's of the two: {items:#?}");
    assert_eq!(items[0]["transfer_id"], alices.as_str());
    let everyone =
        get_as(&app, Some(READER), &format!("/v1/transfers?reference=shared-ref&min_position={position}")).await;
    assert_eq!(everyone.ok()["items"].as_array().unwrap().len(), 2, "an unbound token sees both");

    app.stop().await;
    projector.stop().await;
    service.stop().await;
}

#[sqlx::test(migrations = "../migrations")]
async fn a_burst_over_a_tokens_rate_is_429_with_retry_after(pool: PgPool) {
    let app = spawn_secured(pool, &[]).await;
    let burst = 4 * BURSTY_RATE_PER_S as usize;

    let answers = futures::future::join_all((0..burst).map(|_| get_as(&app, Some(BURSTY), "/v1/assets"))).await;

    let let_through = answers.iter().filter(|answer| answer.status == 200).count();
    assert!((1..=BURSTY_RATE_PER_S as usize + 1).contains(&let_through), "{let_through} let through");
    for limited in answers.iter().filter(|answer| answer.status != 200) {
        limited.problem(429, "rate_limited");
        let retry_after: u64 = limited.headers[RETRY_AFTER].to_str().unwrap().parse().unwrap();
        assert!((1..=2).contains(&retry_after), "Retry-After: {retry_after}");
    }
    assert_eq!(get_as(&app, Some(READER), "/v1/assets").await.status, 200, "other tokens are not limited");
    app.stop().await;
}

#[sqlx::test(migrations = "../migrations")]
async fn a_body_over_body_bytes_max_is_413(pool: PgPool) {
    let app = spawn_secured(pool, &["--body-bytes-max", "1024"]).await;

    let large = app
        .client
        .get(format!("{}/v1/assets", app.base_url))
        .header(AUTHORIZATION, format!("Bearer {READER}"))
        .body("x".repeat(2048))
        .send()
        .await
        .unwrap();

    answer(large).await.problem(413, "payload_too_large");
    app.stop().await;
}

#[sqlx::test(migrations = "../migrations")]
async fn the_openapi_document_covers_every_route_of_the_router_with_its_scope_and_problem_codes(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let routes = http::routes(Authenticator::open());

    let document = app.get("/openapi.json").await.body;

    assert!(document["openapi"].as_str().unwrap().starts_with("3.1"));
    let paths = document["paths"].as_object().unwrap();
    for spec in routes.specs() {
        let method = spec.method.as_str().to_ascii_lowercase();
        let operation = &paths.get(spec.path).unwrap_or_else(|| panic!("{} is not documented", spec.path))[&method];
        assert!(operation.is_object(), "{} {} is not documented", spec.method, spec.path);
        match spec.access {
            Access::Scope(scope) => assert_eq!(operation["security"], json!([{"bearer": [scope.as_str()]}])),
            Access::Open => assert!(operation.get("security").is_none(), "{} is open", spec.path),
        }
        for code in spec.all_problems() {
            let (status, name, _) = code.describe();
            let examples =
                &operation["responses"][status.to_string()]["content"]["application/problem+json"]["examples"];
            assert!(examples.get(name).is_some(), "{} {}: {status} {name} is not documented", spec.method, spec.path);
        }
        assert!(
            operation["responses"]["200"].is_object() || operation["responses"]["303"].is_object(),
            "{}",
            spec.path
        );
    }
    for (path, item) in paths {
        for method in item.as_object().unwrap().keys() {
            let routed = routes
                .specs()
                .iter()
                .any(|spec| spec.method.as_str().eq_ignore_ascii_case(method) && spec.path == path);
            assert!(routed, "{method} {path} is documented but not routed");
        }
    }
    let page = app.client.get(format!("{}/docs/swagger-ui-bundle.js", app.base_url)).send().await.unwrap();
    assert_eq!(page.status(), 200, "the UI's assets are served by the binary");
    app.stop().await;
}

#[sqlx::test(migrations = "../migrations")]
async fn the_request_id_comes_back_on_guarded_reads(pool: PgPool) {
    let app = spawn_secured(pool, &[]).await;

    let given = app
        .client
        .get(format!("{}/v1/assets", app.base_url))
        .header(AUTHORIZATION, format!("Bearer {READER}"))
        .header("x-request-id", "dash-1")
        .send()
        .await
        .unwrap();
    let refused = get_as(&app, None, "/v1/assets").await;

    assert_eq!(given.headers()["x-request-id"], "dash-1");
    assert!(refused.headers.get("x-request-id").is_some(), "refusals carry a request id too");
    let _: Value = given.json().await.unwrap();
    app.stop().await;
}
