//! Cross-cutting behaviour: unknown routes, health, metrics, the projection position header.

use std::time::Duration;

use sqlx::PgPool;

use crate::support::{answer, eventually, TestApp};

#[sqlx::test(migrations = "../migrations")]
async fn unknown_routes_and_methods_answer_problems(pool: PgPool) {
    let app = TestApp::spawn(pool).await;

    let unknown = app.get("/v1/nothing-here").await;
    let wrong_method =
        crate::support::answer(app.client.post(format!("{}/v1/assets", app.base_url)).send().await.unwrap()).await;

    unknown.problem(404, "not_found");
    assert!(unknown.projection_position() >= 0);
    wrong_method.problem(405, "method_not_allowed");
    app.stop().await;
}

#[sqlx::test(migrations = "../migrations")]
async fn health_reports_postgres_and_nats(pool: PgPool) {
    let app = TestApp::spawn(pool).await;

    let live = app.get("/health/live").await;
    let ready = app.get("/health/ready").await;

    assert_eq!(live.ok()["status"], "live");
    let ready = ready.ok();
    assert_eq!(ready["status"], "ready");
    assert_eq!(ready["postgres"], "up");
    assert_eq!(ready["read_your_writes_waiting"], 0);
    // The test's NATS (NATS_URL) is up: the service connects and says so.
    crate::support::eventually(400, std::time::Duration::from_millis(25), || async {
        (app.get("/health/ready").await.body["nats"] == "connected").then_some(())
    })
    .await;
    app.stop().await;
}

#[sqlx::test(migrations = "../migrations")]
async fn health_reports_nats_unreachable_and_stays_ready(pool: PgPool) {
    let app = TestApp::spawn_with(pool, &["--nats-url", "nats://127.0.0.1:1"]).await;

    for _ in 0..5 {
        let ready = app.get("/health/ready").await;
        let body = ready.ok();
        assert_eq!(body["status"], "ready", "NATS carries no truth: its loss does not make the service unready");
        assert!(["disconnected", "pending"].contains(&body["nats"].as_str().unwrap()), "{body}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    app.stop().await;
}

#[sqlx::test(migrations = "../migrations")]
async fn metrics_count_requests_by_route_and_status(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    app.get("/v1/wallets/0192f0c1-8a7e-7d00-8000-000000000001").await.problem(404, "wallet_not_found");

    let response = app.client.get(format!("{}/metrics", app.base_url)).send().await.unwrap();
    let text = response.text().await.unwrap();

    let counted = text.lines().any(|line| {
        line.starts_with("tally_http_requests_total")
            && line.contains(r#"route="/v1/wallets/{wallet_id}""#)
            && line.contains(r#"status="404""#)
    });
    assert!(counted, "{text}");
    assert!(text.contains("tally_http_request_duration_seconds_bucket"), "{text}");
    app.stop().await;
}

#[sqlx::test(migrations = "../migrations")]
async fn every_answer_carries_the_projection_position(pool: PgPool) {
    crate::support::advance_checkpoint(&pool, 7, false).await;
    let app = TestApp::spawn(pool).await;

    for path in ["/v1/assets", "/v1/events", "/v1/projections", "/health/live", "/v1/wallets/nope", "/nowhere"] {
        let answer = app.get(path).await;
        assert_eq!(answer.projection_position(), 7, "{path}");
    }
    app.stop().await;
}

#[sqlx::test(migrations = "../migrations")]
async fn shutdown_lets_a_request_in_flight_finish(pool: PgPool) {
    let app = TestApp::spawn_with(pool, &["--min-position-wait-ms", "3000"]).await;
    let in_flight = tokio::spawn({
        let (client, url) = (app.client.clone(), format!("{}/v1/assets?min_position=999", app.base_url));
        async move { answer(client.get(url).send().await.unwrap()).await }
    });
    eventually(140, Duration::from_millis(20), || async {
        let ready = app.get("/health/ready").await;
        (ready.ok()["read_your_writes_waiting"] == 1).then_some(())
    })
    .await;

    app.stop().await;
    let answered = in_flight.await.unwrap();

    answered.problem(503, "projection_behind");
}
