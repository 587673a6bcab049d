//! query-service cannot write: its connections are read-only from their first statement.

use clap::Parser;
use query_service::{database, App, Config};
use sqlx::PgPool;

fn config() -> Config {
    Config::parse_from(["query-service", "--database-url", "postgres://unused", "--listen-addr", "127.0.0.1:0"])
}

#[sqlx::test(migrations = "../migrations")]
async fn an_attempted_write_fails(pool: PgPool) {
    let read_only = database::read_only_pool(pool.connect_options().as_ref().clone(), &config());

    let error = sqlx::query("INSERT INTO projection_checkpoints (projection, position) VALUES ('forged', 42)")
        .execute(&read_only)
        .await
        .expect_err("a read-only connection refuses writes");

    let database_error = error.as_database_error().expect("refused by Postgres");
    assert_eq!(database_error.code().as_deref(), Some("25006"), "read_only_sql_transaction: {database_error}");
    let forged: i64 = sqlx::query_scalar("SELECT count(*) FROM projection_checkpoints").fetch_one(&pool).await.unwrap();
    assert_eq!(forged, 0);
    read_only.close().await;
}

#[sqlx::test(migrations = "../migrations")]
async fn start_up_refuses_a_writable_pool(pool: PgPool) {
    let outcome = App::build(config(), pool.clone()).await;

    let error = outcome.expect_err("a writable pool is refused");
    assert!(format!("{error:#}").contains("read-only"), "{error:#}");
}
