//! Slow clients cannot hold connections: a client that connects and sends nothing, trickles its request head,
//! or idles after a response is disconnected once `HEADER_READ_TIMEOUT_MS` has passed (issue #19, finding 4).
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use sqlx::PgPool;
use support::TestApp;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

const HEADER_READ_TIMEOUT_MS: &str = "500";
/// How long a test waits for the server to hang up at most: far beyond the timeout, so that a loaded machine
/// never fails the test, and far below "never".
const HANG_UP_WITHIN: Duration = Duration::from_secs(15);

async fn app(pool: PgPool) -> TestApp {
    TestApp::spawn_with(pool, support::config(&["--header-read-timeout-ms", HEADER_READ_TIMEOUT_MS])).await
}

/// Reads until the server closes the connection; whether it did within [`HANG_UP_WITHIN`].
async fn hung_up(stream: &mut TcpStream) -> bool {
    let mut buffer = [0u8; 4096];
    let deadline = Instant::now() + HANG_UP_WITHIN;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buffer)).await {
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

#[sqlx::test(migrations = "../migrations")]
async fn a_client_that_connects_and_sends_nothing_is_disconnected(pool: PgPool) {
    let app = app(pool).await;
    let mut stream = TcpStream::connect(app.address).await.unwrap();
    assert!(hung_up(&mut stream).await, "a silent connection was held open");
}

#[sqlx::test(migrations = "../migrations")]
async fn a_client_that_trickles_its_headers_is_disconnected_before_it_finishes(pool: PgPool) {
    let app = app(pool).await;
    let mut stream = TcpStream::connect(app.address).await.unwrap();
    stream.write_all(b"POST /v1/assets HTTP/1.1\r\nhost: tally\r\n").await.unwrap();
    let header = b"x-slow: ".iter().chain([b'a'; 200].iter()).copied().collect::<Vec<u8>>();
    let started = Instant::now();
    let mut cut_off = false;
    for byte in header {
        if stream.write_all(&[byte]).await.is_err() {
            cut_off = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // 200 bytes at 50 ms each take 10 s; the server must not wait for them.
    assert!(cut_off || hung_up(&mut stream).await, "a trickling client was served for {:?}", started.elapsed());
}

#[sqlx::test(migrations = "../migrations")]
async fn an_idle_keep_alive_connection_is_closed_after_its_response(pool: PgPool) {
    let app = app(pool).await;
    let mut stream = TcpStream::connect(app.address).await.unwrap();
    stream.write_all(b"GET /health/live HTTP/1.1\r\nhost: tally\r\n\r\n").await.unwrap();
    let mut buffer = [0u8; 4096];
    let read = stream.read(&mut buffer).await.unwrap();
    assert!(buffer[..read].starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&buffer[..read]));
    assert!(hung_up(&mut stream).await, "an idle keep-alive connection was held open");
}

#[sqlx::test(migrations = "../migrations")]
async fn a_client_within_the_timeout_is_served_on_a_kept_alive_connection(pool: PgPool) {
    let app = app(pool).await;
    let mut stream = TcpStream::connect(app.address).await.unwrap();
    for _ in 0..3 {
        stream.write_all(b"GET /health/live HTTP/1.1\r\nhost: tally\r\n\r\n").await.unwrap();
        let mut buffer = [0u8; 4096];
        let read = stream.read(&mut buffer).await.unwrap();
        assert!(buffer[..read].starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&buffer[..read]));
    }
}
