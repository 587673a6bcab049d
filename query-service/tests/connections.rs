//! The connection lender: a finished read gives its connection straight back, a read cut off mid-query leaves
//! the next request a connection that answers its own query, and leases are bounded.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use query_service::connections::Connections;
use sqlx::PgPool;

const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

async fn backend_pid(connection: &mut sqlx::PgConnection) -> i32 {
    sqlx::query_scalar("SELECT pg_backend_pid()").fetch_one(connection).await.unwrap()
}

#[sqlx::test]
async fn a_finished_lease_lends_the_same_connection_again(pool: PgPool) {
    let connections = Connections::new(pool, 2, ACQUIRE_TIMEOUT);
    let mut lease = connections.lease().await.unwrap();
    let first = backend_pid(&mut lease).await;
    lease.done();
    let mut lease = connections.lease().await.unwrap();
    assert_eq!(backend_pid(&mut lease).await, first);
}

#[sqlx::test]
async fn a_read_cut_off_mid_query_leaves_the_next_request_a_working_connection(pool: PgPool) {
    let connections = Connections::new(pool, 1, ACQUIRE_TIMEOUT);
    {
        let mut lease = connections.lease().await.unwrap();
        let cut_off = tokio::time::timeout(
            Duration::from_millis(50),
            sqlx::query_scalar::<_, i32>("SELECT 1 FROM pg_sleep(1)").fetch_one(&mut *lease),
        )
        .await;
        assert!(cut_off.is_err(), "the query was meant to be cut off");
        // Dropped without `done`: the connection goes back through sqlx, which pings it first.
    }
    let mut lease = connections.lease().await.unwrap();
    let answer: i32 = sqlx::query_scalar("SELECT 42").fetch_one(&mut *lease).await.unwrap();
    assert_eq!(answer, 42, "the next request reads its own answer, not the cut-off query's");
}

#[sqlx::test]
async fn leases_wait_for_one_another_and_time_out(pool: PgPool) {
    let connections = Connections::new(pool, 1, Duration::from_millis(100));
    let held = connections.lease().await.unwrap();
    let waited = connections.lease().await;
    assert!(matches!(waited, Err(sqlx::Error::PoolTimedOut)), "{:?}", waited.err());
    held.done();
    assert!(connections.lease().await.is_ok());
}
