//! Read-your-writes: `min_position` waits for the projection, within a bound.

use std::time::Duration;

use clap::Parser;
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

/// SPEC §11: when query-service moves to another server of its list, nothing it knew of the first one is trusted
/// on the second: a read with `min_position` waits until the new server shows it. Two databases of the test's
/// server stand for two servers: the first ahead at position 100, the second at 5. The slow re-read is a minute,
/// so only the move itself can make the service forget position 100.
#[sqlx::test(migrations = "../migrations")]
async fn after_a_move_to_another_server_nothing_known_of_the_first_is_trusted(pool: PgPool) {
    advance_checkpoint(&pool, 100, false).await;
    let options = pool.connect_options();
    let first = options.get_database().expect("a test database").to_owned();
    let second = format!("tally_moved_{}", uuid::Uuid::new_v4().simple());
    sqlx::query(&format!(r#"CREATE DATABASE "{second}""#)).execute(&pool).await.unwrap();
    let second_pool = PgPool::connect_with((*options).clone().database(&second)).await.unwrap();
    sqlx::migrate!("../migrations").run(&second_pool).await.unwrap();
    advance_checkpoint(&second_pool, 5, false).await;
    let url = |database: &str| {
        format!("postgres://{}@{}:{}/{database}", options.get_username(), options.get_host(), options.get_port())
    };
    let list = format!("{},{}", url(&first), url(&second));
    let config = query_service::Config::parse_from([
        "query-service",
        "--database-url",
        &list,
        "--listen-addr",
        "127.0.0.1:0",
        "--schema-wait-secs",
        "5",
        "--checkpoint-poll-ms",
        "60000",
        "--min-position-wait-ms",
        "300",
    ]);
    let read_pool = query_service::database::connect(&config).unwrap();
    let app = TestApp::serve(config, read_pool).await;
    app.get("/v1/assets?min_position=100").await.ok();

    // The first server goes away: no new connection is allowed, and the ones it has are ended.
    sqlx::query(&format!(r#"ALTER DATABASE "{first}" ALLOW_CONNECTIONS false"#)).execute(&second_pool).await.unwrap();
    sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1")
        .bind(&first)
        .execute(&second_pool)
        .await
        .unwrap();
    // The first server refuses everything now: until the move, reads answer 503 unavailable; after it, the wait
    // answers 503 projection_behind. A 200 could only be the second server's rows under the first's checkpoint.
    let mut stale = Vec::new();
    let mut refused = None;
    for _ in 0..200 {
        let answer = app.get("/v1/assets?min_position=100").await;
        if answer.status == 200 {
            stale.push(answer.projection_position());
        } else if answer.body["code"] == "projection_behind" {
            refused = Some(answer);
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(stale.is_empty(), "answered from the second server as if it were at the first's position: {stale:?}");
    let refused = refused.expect("the wait for position 100 on the second server");
    let shown = app.get("/v1/assets?min_position=5").await;

    refused.problem(503, "projection_behind");
    assert_eq!(refused.body["position"], 5, "the position known must be the second server's");
    shown.ok();
    app.stop().await;
    sqlx::query(&format!(r#"ALTER DATABASE "{first}" ALLOW_CONNECTIONS true"#)).execute(&second_pool).await.unwrap();
    second_pool.close().await;
    let admin = PgPool::connect_with((*options).clone().database("postgres")).await.unwrap();
    sqlx::query(&format!(r#"DROP DATABASE IF EXISTS "{second}" WITH (FORCE)"#)).execute(&admin).await.unwrap();
}
