//! What an operator relies on, black-box over HTTP: the OpenAPI document covers every route of the router
//! with its security and problem codes, `/docs` is served from the binary, metrics move with commands, the
//! request id travels into the events' metadata, and a graceful shutdown finishes the request in flight.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::{Duration, Instant};

use command_service::http;
use serde_json::{json, Value};
use sqlx::PgPool;
use support::{key, TestApp};
use tally_edge::auth::token_sha256;
use tally_edge::{Access, Authenticator};

const TOKEN: &str = "operator-secret";

async fn spawn_with_token(pool: PgPool) -> TestApp {
    let tokens = json!([{"name": "operator", "token_sha256": token_sha256(TOKEN), "scopes": ["admin"]}]);
    let path = std::env::temp_dir().join(format!("tally-tokens-{}.json", uuid::Uuid::now_v7()));
    std::fs::write(&path, tokens.to_string()).unwrap();
    TestApp::spawn_with(pool, support::config(&["--auth-tokens-file", path.to_str().unwrap()])).await
}

fn command(app: &TestApp, path: &str, body: &Value) -> reqwest::RequestBuilder {
    app.client.post(app.url(path)).bearer_auth(TOKEN).header("idempotency-key", key()).json(body)
}

/// Polls `condition` every 20 ms until it holds, for at most `limit`.
async fn eventually<F, Fut>(limit: Duration, what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !condition().await {
        assert!(Instant::now() < deadline, "not within {limit:?}: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[sqlx::test(migrations = "../migrations")]
async fn the_openapi_document_covers_every_route_of_the_router_with_its_scope_and_problem_codes(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    // The table that builds the router: every route it serves, the documentation routes included.
    let routes = http::routes(Authenticator::open());

    let document = app.send(app.client.get(app.url("/openapi.json"))).await.body;

    assert!(document["openapi"].as_str().unwrap().starts_with("3.1"), "{}", document["openapi"]);
    let paths = document["paths"].as_object().unwrap();
    for spec in routes.specs() {
        let method = spec.method.as_str().to_ascii_lowercase();
        let operation = &paths.get(spec.path).unwrap_or_else(|| panic!("{} is not documented", spec.path))[&method];
        assert!(operation.is_object(), "{} {} is not documented", spec.method, spec.path);
        match spec.access {
            Access::Scope(scope) => {
                assert_eq!(operation["security"], json!([{"bearer": [scope.as_str()]}]), "{}", spec.path)
            }
            Access::Open => assert!(operation.get("security").is_none(), "{} is open", spec.path),
        }
        for code in spec.all_problems() {
            let (status, name, _) = code.describe();
            let examples =
                &operation["responses"][status.to_string()]["content"]["application/problem+json"]["examples"];
            assert!(examples.get(name).is_some(), "{} {}: {status} {name} is not documented", spec.method, spec.path);
        }
        if spec.method == "POST" {
            assert!(operation["requestBody"].is_object(), "{} has no documented body", spec.path);
            let success = operation["responses"].as_object().unwrap().keys().any(|status| status.starts_with('2'));
            assert!(success, "{} has no documented answer", spec.path);
        }
    }
    let documented = paths.iter().flat_map(|(path, item)| {
        item.as_object().unwrap().keys().map(move |method| (method.to_ascii_uppercase(), path.clone()))
    });
    for (method, path) in documented {
        let routed = routes.specs().iter().any(|spec| spec.method == method.as_str() && spec.path == path);
        assert!(routed, "{method} {path} is documented but not routed");
    }
    let schemas = document["components"]["schemas"].as_object().unwrap();
    for schema in ["Problem", "ProblemCode", "MoveRequest", "TransferRequest", "TransferView", "WalletView"] {
        assert!(schemas.contains_key(schema), "no schema {schema}");
    }
    assert_eq!(document["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");
}

#[sqlx::test(migrations = "../migrations")]
async fn docs_are_served_by_the_binary_itself(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let no_redirects = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();

    let redirect = no_redirects.get(app.url("/docs")).send().await.unwrap();
    let page = app.send(app.client.get(app.url("/docs/"))).await;
    let script = app.client.get(app.url("/docs/swagger-ui-bundle.js")).send().await.unwrap();

    assert_eq!(redirect.status(), 303);
    assert_eq!(page.status, 200);
    assert!(page.body.as_str().unwrap().contains("swagger-ui"), "{:?}", page.body);
    assert_eq!(script.status(), 200);
    assert!(script.bytes().await.unwrap().len() > 100_000, "the UI's bundle is embedded");
}

/// The value of the sample of `name` whose labels include all of `labels`, in Prometheus text; 0 if absent.
fn sample(metrics: &str, name: &str, labels: &[&str]) -> f64 {
    metrics
        .lines()
        .filter(|line| line.starts_with(name) && line[name.len()..].starts_with(['{', ' ']))
        .filter(|line| labels.iter().all(|label| line.contains(label)))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[sqlx::test(migrations = "../migrations")]
async fn metrics_are_prometheus_text_and_move_with_commands(pool: PgPool) {
    let app = spawn_with_token(pool).await;
    let asset = app.send(command(&app, "/v1/assets", &json!({"code": "NGN", "scale": 2}))).await;
    assert_eq!(asset.status, 201, "{:?}", asset.body);
    let wallet = app.send(command(&app, "/v1/wallets", &json!({"owner_id": "alice", "asset": "NGN"}))).await;
    let wallet = wallet.body["wallet_id"].as_str().unwrap().to_owned();
    let topup_route = r#"route="/v1/wallets/{wallet_id}/topup""#;
    let scrape = || async { app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap() };
    let before = scrape().await;

    let topup_key = key();
    let topup = app.client.post(app.url(&format!("/v1/wallets/{wallet}/topup"))).bearer_auth(TOKEN);
    let topup = topup.header("idempotency-key", &topup_key).json(&json!({"amount": "5"}));
    assert_eq!(app.send(topup.try_clone().unwrap()).await.status, 201);
    let replay = app.send(topup).await;
    let unauthenticated = app.send(app.client.post(app.url(&format!("/v1/wallets/{wallet}/spend")))).await;
    let after = scrape().await;

    assert!(replay.replayed());
    assert_eq!(unauthenticated.status, 401);
    // The recorder is the process's: other tests count too, so assert growth, not totals.
    let grew = |name: &str, labels: &[&str]| sample(&after, name, labels) > sample(&before, name, labels);
    assert!(grew("tally_http_requests_total", &[topup_route, r#"method="POST""#, r#"status="201""#]), "{after}");
    assert!(grew("tally_http_requests_total", &[r#"route="/v1/wallets/{wallet_id}/spend""#, r#"status="401""#]));
    assert!(grew("tally_http_request_duration_seconds_count", &[topup_route, r#"status="201""#]));
    assert!(after.contains("tally_http_request_duration_seconds_bucket{"), "latency is a histogram");
    assert!(grew("tally_appended_events_total", &[]));
    assert!(grew("tally_commands_total", &[]));
    assert!(grew("tally_batch_size_count", &[]));
    assert!(after.contains("tally_batch_size_bucket{"), "batch sizes are a histogram");
    assert!(grew("tally_idempotent_replays_total", &[]) || grew("tally_idempotent_waits_total", &[]));
    for line in after.lines().filter(|line| !line.starts_with('#') && !line.is_empty()) {
        assert!(line.starts_with("tally_"), "every metric is tally_-prefixed: {line}");
    }
}

#[sqlx::test(migrations = "../migrations")]
async fn the_request_id_and_the_token_name_land_in_the_events_metadata(pool: PgPool) {
    let app = spawn_with_token(pool).await;
    let (given_key, replaced_key) = (key(), key());
    let define = |code: &str, idempotency_key: &str, request_id: &str| {
        let request = app.client.post(app.url("/v1/assets")).bearer_auth(TOKEN);
        let request = request.header("idempotency-key", idempotency_key).header("x-request-id", request_id);
        app.send(request.json(&json!({"code": code, "scale": 2})))
    };

    let given = define("NGN", &given_key, "op-7").await;
    let replaced = define("GOLD", &replaced_key, &"x".repeat(200)).await;

    assert_eq!(given.status, 201, "{:?}", given.body);
    assert_eq!(given.headers["x-request-id"], "op-7");
    let fresh = replaced.headers["x-request-id"].to_str().unwrap().to_owned();
    assert!(uuid::Uuid::parse_str(&fresh).is_ok(), "an unusable request id is replaced: {fresh}");
    for (idempotency_key, request_id) in [(given_key, "op-7"), (replaced_key, fresh.as_str())] {
        let metadata: Vec<Value> =
            sqlx::query_scalar("SELECT metadata FROM events WHERE metadata->>'idempotency_key' = $1")
                .bind(&idempotency_key)
                .fetch_all(&app.pool)
                .await
                .unwrap();
        assert_eq!(metadata.len(), 4, "the asset and its three system wallets");
        for event in metadata {
            assert_eq!(event["request_id"], request_id, "{event}");
            assert_eq!(event["correlation_id"], request_id, "{event}");
            assert_eq!(event["principal"], "operator", "{event}");
        }
    }
}

#[sqlx::test(migrations = "../migrations")]
async fn a_graceful_shutdown_finishes_the_command_in_flight(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    app.define_asset("NGN", 2, None).await;
    let wallet = app.open_wallet("alice", "NGN").await;
    assert_eq!(app.money(&wallet, "topup", "10").await.status, 201);
    // Hold the wallet's stream row: the appender's locked read waits on it, so the spend stays in flight.
    let mut blocker = pool.begin().await.unwrap();
    sqlx::query("SELECT 1 FROM streams WHERE stream_id = $1 FOR UPDATE")
        .bind(format!("wallet-{wallet}"))
        .execute(&mut *blocker)
        .await
        .unwrap();
    let spend = app.client.post(app.url(&format!("/v1/wallets/{wallet}/spend")));
    let spend = tokio::spawn(spend.header("idempotency-key", key()).json(&json!({"amount": "3"})).send());
    eventually(Duration::from_secs(5), "the spend waits on the row lock", || async {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        waiting > 0
    })
    .await;
    let address = app.address;

    let stopped = tokio::spawn(app.stop());
    eventually(Duration::from_secs(5), "the listener is closed", || async {
        tokio::net::TcpStream::connect(address).await.is_err()
    })
    .await;
    assert!(!spend.is_finished() && !stopped.is_finished(), "shutdown waits for the request in flight");
    blocker.rollback().await.unwrap();

    let answer = tokio::time::timeout(Duration::from_secs(5), spend).await.unwrap().unwrap().unwrap();
    assert_eq!(answer.status(), 201);
    let body: Value = answer.json().await.unwrap();
    assert_eq!(body["kind"], "spend");
    tokio::time::timeout(Duration::from_secs(5), stopped).await.unwrap().unwrap();
    let state: Value = sqlx::query_scalar("SELECT state FROM streams WHERE stream_id = $1")
        .bind(format!("wallet-{wallet}"))
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(state["balance"].as_str().unwrap().parse::<rust_decimal::Decimal>().unwrap(), 7.into());
}
