//! `tally_edge::servers` against the machine's Postgres (DATABASE_URL) and a port where nothing listens: a list
//! is probed in order, and a pool pointed at a server that does not answer is moved to one that does. The
//! whole topology (a primary, its replica, a failover) is exercised by `scripts/cluster drill`.

use std::time::Duration;

use sqlx::postgres::PgPoolOptions;
use tally_edge::servers::{follow, server_name, Role, Servers};

/// A port where no Postgres listens (tcpmux): connecting is refused at once.
const NOBODY: &str = "postgres://root@127.0.0.1:1/postgres";

fn live_url() -> String {
    std::env::var("DATABASE_URL").unwrap_or_else(|_| "postgres://root@127.0.0.1:5432/postgres".to_owned())
}

fn name_of(url: &str) -> String {
    server_name(&url.parse().expect("a Postgres URL"))
}

#[tokio::test]
async fn a_writer_finds_the_server_that_answers_as_a_primary() {
    let servers =
        Servers::parse(&format!("{NOBODY},{}", live_url()), Role::Primary, |options| options).expect("two servers");
    assert_eq!(servers.current_name(), "127.0.0.1:1");
    servers.find(Duration::from_secs(10)).await.expect("the second server answers");
    assert_eq!(servers.current_name(), name_of(&live_url()));
    let pool = servers.pool(PgPoolOptions::new().max_connections(1));
    let one: i32 = sqlx::query_scalar("SELECT 1").fetch_one(&pool).await.expect("a connection to the primary");
    assert_eq!(one, 1);
}

#[tokio::test]
async fn find_gives_up_when_no_server_answers() {
    let servers = Servers::parse(&format!("{NOBODY},{NOBODY}"), Role::Any, |options| options).expect("parsed");
    let found = servers.find(Duration::from_millis(500)).await;
    assert!(found.is_err(), "no server answers, yet find said one did");
}

#[tokio::test]
async fn a_pool_pointed_at_a_dead_server_is_moved_to_one_that_answers() {
    let servers =
        Servers::parse(&format!("{NOBODY},{}", live_url()), Role::Primary, |options| options).expect("two servers");
    // Not found first: the pool starts out pointed at the server that refuses connections.
    let pool = servers.pool(PgPoolOptions::new().max_connections(1).acquire_timeout(Duration::from_millis(300)));
    assert!(sqlx::query("SELECT 1").execute(&pool).await.is_err(), "the first server should refuse");
    let follower = tokio::spawn(follow(servers, pool.clone()));
    let mut moved = false;
    for _ in 0..50 {
        if sqlx::query("SELECT 1").execute(&pool).await.is_ok() {
            moved = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    follower.abort();
    assert!(moved, "the pool never reached the server that answers");
    assert_eq!(
        pool.connect_options().get_port(),
        live_url().parse::<sqlx::postgres::PgConnectOptions>().unwrap().get_port()
    );
}
