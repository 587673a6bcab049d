//! Read-your-writes: `min_position` waits for the projection, within a bound.

use std::time::Duration;

use sqlx::PgPool;

use crate::support::{advance_checkpoint, eventually, TestApp};

#[sqlx::test(migrations = "../migrations")]
async fn a_reached_position_answers_at_once(pool: PgPool) {
    advance_checkpoint(&pool, 10, false).await;
    let app = TestApp::spawn(pool).await;

    let by_parameter = app.get("/v1/assets?min_position=10").await;
    let by_header = app.get_with("/v1/assets", &[("X-Min-Position", "3")]).await;

    by_parameter.ok();
    assert_eq!(by_parameter.projection_position(), 10);
    by_header.ok();
    app.stop().await;
}

#[sqlx::test(migrations = "../migrations")]
async fn a_read_waits_until_the_projection_reaches_its_position(pool: PgPool) {
    advance_checkpoint(&pool, 1, false).await;
    let app = TestApp::spawn_with(pool.clone(), &["--min-position-wait-ms", "10000"]).await;

    let read = tokio::spawn({
        let (client, url) = (app.client.clone(), format!("{}/v1/assets?min_position=5", app.base_url));
        async move { crate::support::answer(client.get(url).send().await.unwrap()).await }
    });
    // Proof that the read waits, from the service itself rather than from a sleep: it counts it as waiting.
    crate::support::eventually(400, std::time::Duration::from_millis(25), || async {
        (app.get("/health/ready").await.body["read_your_writes_waiting"] == 1).then_some(())
    })
    .await;
    assert!(!read.is_finished(), "the read answered before the projection reached its position");
    advance_checkpoint(&pool, 5, true).await;
    let answer = read.await.unwrap();

    answer.ok();
    assert!(answer.projection_position() >= 5);
    app.stop().await;
}

#[sqlx::test(migrations = "../migrations")]
async fn a_lost_notification_is_covered_by_the_slow_re_read(pool: PgPool) {
    let app = TestApp::spawn_with(pool.clone(), &["--min-position-wait-ms", "10000"]).await;

    advance_checkpoint(&pool, 8, false).await;
    // Without a notification only the fallback re-read can see position 8; the header shows when it has.
    let answer = eventually(100, Duration::from_millis(100), || async {
        let answer = app.get("/v1/projections").await;
        (answer.projection_position() >= 8).then_some(answer)
    })
    .await;
    let waited = app.get("/v1/assets?min_position=8").await;

    answer.ok();
    waited.ok();
    app.stop().await;
}

#[sqlx::test(migrations = "../migrations")]
async fn an_unreachable_position_answers_projection_behind_within_the_bound(pool: PgPool) {
    advance_checkpoint(&pool, 4, false).await;
    let app = TestApp::spawn_with(pool, &["--min-position-wait-ms", "300"]).await;

    let by_parameter = app.get("/v1/wallets/0192f0c1-8a7e-7d00-8000-000000000001?min_position=1000000").await;
    let by_header = app.get_with("/v1/events", &[("X-Min-Position", "99")]).await;
    let by_encoded_name = app.get("/v1/assets?min%5Fposition=99").await;

    let problem = by_parameter.problem(503, "projection_behind");
    assert_eq!(problem["position"], 4);
    assert_eq!(problem["min_position"], 1_000_000);
    assert_eq!(by_parameter.headers["retry-after"], "1");
    assert_eq!(by_parameter.projection_position(), 4);
    by_header.problem(503, "projection_behind");
    by_encoded_name.problem(503, "projection_behind");
    app.stop().await;
}

#[sqlx::test(migrations = "../migrations")]
async fn malformed_min_positions_are_refused(pool: PgPool) {
    let app = TestApp::spawn(pool).await;

    app.get("/v1/assets?min_position=soon").await.validation("min_position");
    app.get("/v1/assets?min_position=-1").await.validation("min_position");
    app.get_with("/v1/assets", &[("X-Min-Position", "12abc")]).await.validation("X-Min-Position");
    app.stop().await;
}

/// SPEC §11: a replica delivers no `LISTEN/NOTIFY`, so the projector's NATS announcement is what makes query-service
/// look again soon; but an announcement says where the primary is, so it is never believed: the checkpoint a read
/// relies on is always the one its database shows.
#[sqlx::test(migrations = "../migrations")]
async fn an_announced_checkpoint_is_read_from_the_database_never_believed(pool: PgPool) {
    advance_checkpoint(&pool, 1, false).await;
    let prefix = format!("tallytest{}", uuid::Uuid::new_v4().simple());
    // The slow re-read every minute: only the announcement can make the service look again within the test.
    let flags = ["--nats-subject-prefix", &prefix, "--checkpoint-poll-ms", "60000", "--min-position-wait-ms", "300"];
    let app = TestApp::spawn_with(pool.clone(), &flags).await;
    let nats_url = std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned());
    let nats = async_nats::connect(nats_url.as_str()).await.expect("the test's NATS");
    let subject = tally_shared::notification::projected_subject(&prefix);
    let announce = |position: i64| {
        let (nats, subject) = (nats.clone(), subject.clone());
        async move {
            let payload = serde_json::to_vec(&tally_shared::notification::Projected { position }).unwrap();
            nats.publish(subject, payload.into()).await.unwrap();
            nats.flush().await.unwrap();
        }
    };

    // Announced ahead of the database (a replica that has not replayed it yet): heard, and not believed.
    eventually(200, Duration::from_millis(25), || async {
        announce(7).await;
        (app.get("/health/ready").await.body["projection_announced"] == 7).then_some(())
    })
    .await;
    let early = app.get("/v1/assets?min_position=7").await;
    let shown = app.get("/v1/projections").await.projection_position();

    early.problem(503, "projection_behind");
    assert_eq!(shown, 1, "the service believed an announcement its database did not show");

    // Once the database shows it (no notification: as on a replica), the service sees it long before its poll.
    advance_checkpoint(&pool, 7, false).await;
    eventually(80, Duration::from_millis(25), || async {
        (app.get("/v1/projections").await.projection_position() >= 7).then_some(())
    })
    .await;
    app.get("/v1/assets?min_position=7").await.ok();
    app.stop().await;
}
