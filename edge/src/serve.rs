//! [`serve`]: HTTP/1.1 and HTTP/2 (cleartext) for a service's router, with the connection timeouts a server
//! facing untrusted clients needs and `axum::serve` does not set: a client that trickles its request head, or
//! connects and sends nothing, is disconnected after `header_read_timeout`, and an HTTP/2 peer that stops
//! answering pings after `HTTP2_KEEP_ALIVE`. Shutdown is graceful: stop accepting, finish what is in flight.

use std::future::Future;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};

use crate::EdgeConfig;

/// How often an idle HTTP/2 connection is pinged, and how long its peer has to answer.
const HTTP2_KEEP_ALIVE: Duration = Duration::from_secs(20);
/// Pause after a failed accept (out of file descriptors, say), so that the loop does not spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// The connection limits [`serve`] applies.
#[derive(Debug, Clone, Copy)]
pub struct ServeLimits {
    /// From accepting a connection (or finishing a response on it) until a whole request head has arrived.
    pub header_read_timeout: Duration,
}

impl From<&EdgeConfig> for ServeLimits {
    fn from(config: &EdgeConfig) -> ServeLimits {
        ServeLimits { header_read_timeout: Duration::from_millis(config.header_read_timeout_ms) }
    }
}

impl Default for ServeLimits {
    fn default() -> ServeLimits {
        ServeLimits { header_read_timeout: Duration::from_millis(crate::config::HEADER_READ_TIMEOUT_MS_DEFAULT) }
    }
}

/// Serves `router` on `listener` until `shutdown` resolves, then stops accepting and returns once every open
/// connection has finished its requests.
pub async fn serve(listener: TcpListener, router: Router, limits: ServeLimits, shutdown: impl Future<Output = ()>) {
    let mut builder = Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout);
    builder.http2().timer(TokioTimer::new()).keep_alive_interval(HTTP2_KEEP_ALIVE).keep_alive_timeout(HTTP2_KEEP_ALIVE);
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => stream,
                Err(error) => {
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let service = TowerToHyperService::new(router.clone());
        tokio::spawn(async move {
            if !first_byte_within(&stream, limits.header_read_timeout).await {
                return;
            }
            let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service).into_owned();
            if let Err(error) = watcher.watch(connection).await {
                tracing::trace!(error = %error, "connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// Whether the client sends anything within `timeout` of connecting. hyper's header timer starts with the
/// first byte read, so a client that connects and stays silent would otherwise hold its connection forever.
async fn first_byte_within(stream: &TcpStream, timeout: Duration) -> bool {
    // `peek`, not `readable`: readiness can be reported before any byte has come.
    let mut first = [0u8; 1];
    matches!(tokio::time::timeout(timeout, stream.peek(&mut first)).await, Ok(Ok(1)))
}
