//! A lean HTTP client on hyper's connection API: one keep-alive HTTP/1.1 connection per closed-loop
//! worker, a [`Pool`] of them for open-loop runs, and [`Multiplexed`] HTTP/2 connections that carry many
//! requests at once, so that the load generator spends little of the CPU it shares with the services it
//! measures.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use anyhow::{bail, Context};
use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE, HOST};
use http::{HeaderValue, Method};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde::de::DeserializeOwned;
use tokio::net::TcpStream;

/// A service the bench talks to: where it listens, and the bearer token it is shown.
#[derive(Debug)]
pub struct Endpoint {
    pub url: String,
    address: SocketAddr,
    host: HeaderValue,
    authorization: Option<HeaderValue>,
}

impl Endpoint {
    /// `url` is `http://HOST:PORT` (no path).
    pub async fn parse(url: &str, token: Option<&str>) -> anyhow::Result<Arc<Endpoint>> {
        let authority = url
            .strip_prefix("http://")
            .with_context(|| format!("{url}: only http://HOST:PORT URLs are supported"))?
            .trim_end_matches('/');
        if authority.contains('/') || !authority.contains(':') {
            bail!("{url}: expected http://HOST:PORT");
        }
        let address = tokio::net::lookup_host(authority)
            .await
            .with_context(|| format!("resolve {authority}"))?
            .next()
            .with_context(|| format!("{authority} resolves to no address"))?;
        let authorization = token
            .map(|token| HeaderValue::from_str(&format!("Bearer {token}")))
            .transpose()
            .context("the token is not a valid header value")?;
        Ok(Arc::new(Endpoint {
            url: url.trim_end_matches('/').to_owned(),
            address,
            host: HeaderValue::from_str(authority).context("host header")?,
            authorization,
        }))
    }
}

/// A request, reusable: the same value can be sent again (a retry keeps its idempotency key).
#[derive(Debug, Clone)]
pub struct Request {
    pub method: Method,
    /// Path and query, such as `/v1/wallets/{id}?min_position=42`.
    pub path: String,
    pub body: Option<Bytes>,
    pub idempotency_key: Option<String>,
}

impl Request {
    pub fn get(path: impl Into<String>) -> Request {
        Request { method: Method::GET, path: path.into(), body: None, idempotency_key: None }
    }

    pub fn post(path: impl Into<String>, body: &serde_json::Value, idempotency_key: String) -> Request {
        let body = serde_json::to_vec(body).expect("JSON values serialize");
        Request {
            method: Method::POST,
            path: path.into(),
            body: Some(body.into()),
            idempotency_key: Some(idempotency_key),
        }
    }
}

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub body: Bytes,
}

impl Response {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    pub fn json<T: DeserializeOwned>(&self) -> anyhow::Result<T> {
        serde_json::from_slice(&self.body)
            .with_context(|| format!("unexpected answer (status {}): {}", self.status, self.text()))
    }

    /// The stable `code` of a problem answer, if it is one.
    pub fn problem_code(&self) -> Option<String> {
        #[derive(serde::Deserialize)]
        struct Problem {
            code: String,
        }
        serde_json::from_slice::<Problem>(&self.body).ok().map(|problem| problem.code)
    }

    /// The body as text, shortened for messages.
    pub fn text(&self) -> String {
        const SHOWN_BYTES_MAX: usize = 400;
        let text = String::from_utf8_lossy(&self.body);
        match text.char_indices().nth(SHOWN_BYTES_MAX) {
            Some((end, _)) => format!("{}…", &text[..end]),
            None => text.into_owned(),
        }
    }

    /// Fails with the status and body unless the answer is a success.
    pub fn success(self, what: &str) -> anyhow::Result<Response> {
        if !self.is_success() {
            bail!("{what}: status {}: {}", self.status, self.text());
        }
        Ok(self)
    }
}

/// One keep-alive connection.
pub struct Connection {
    endpoint: Arc<Endpoint>,
    sender: SendRequest<Full<Bytes>>,
}

/// The request as hyper takes it. HTTP/1.1 names the server in `Host`; HTTP/2 in the URI's authority.
fn build(endpoint: &Endpoint, request: &Request, version: http::Version) -> anyhow::Result<http::Request<Full<Bytes>>> {
    let mut builder = http::Request::builder().method(request.method.clone()).version(version);
    builder = if version == http::Version::HTTP_2 {
        builder.uri(format!("{}{}", endpoint.url, request.path))
    } else {
        builder.uri(request.path.as_str()).header(HOST, endpoint.host.clone())
    };
    if let Some(authorization) = &endpoint.authorization {
        builder = builder.header(AUTHORIZATION, authorization.clone());
    }
    if request.body.is_some() {
        builder = builder.header(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    }
    if let Some(key) = &request.idempotency_key {
        builder = builder.header("idempotency-key", key.as_str());
    }
    builder.body(Full::new(request.body.clone().unwrap_or_default())).context("build request")
}

async fn read(response: http::Response<hyper::body::Incoming>) -> anyhow::Result<Response> {
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.context("read response body")?.to_bytes();
    Ok(Response { status, body })
}

async fn connect(endpoint: &Endpoint) -> anyhow::Result<TokioIo<TcpStream>> {
    let stream = TcpStream::connect(endpoint.address).await.with_context(|| format!("connect to {}", endpoint.url))?;
    stream.set_nodelay(true).context("set TCP_NODELAY")?;
    Ok(TokioIo::new(stream))
}

impl Connection {
    pub async fn open(endpoint: &Arc<Endpoint>) -> anyhow::Result<Connection> {
        let (sender, connection) =
            hyper::client::conn::http1::handshake(connect(endpoint).await?).await.context("HTTP handshake")?;
        tokio::spawn(async move {
            // Ends when either side closes the connection; a broken one shows up as a failed send.
            let _closed = connection.await;
        });
        Ok(Connection { endpoint: endpoint.clone(), sender })
    }

    pub fn is_closed(&self) -> bool {
        self.sender.is_closed()
    }

    pub async fn send(&mut self, request: &Request) -> anyhow::Result<Response> {
        let http_request = build(&self.endpoint, request, http::Version::HTTP_11)?;
        self.sender.ready().await.context("connection not ready")?;
        read(self.sender.send_request(http_request).await.context("send request")?).await
    }

    /// Sends `request` and hands back the answer's status and body unread, for a stream (Server-Sent Events).
    pub async fn stream(&mut self, request: &Request) -> anyhow::Result<(u16, hyper::body::Incoming)> {
        let http_request = build(&self.endpoint, request, http::Version::HTTP_11)?;
        self.sender.ready().await.context("connection not ready")?;
        let response = self.sender.send_request(http_request).await.context("send request")?;
        Ok((response.status().as_u16(), response.into_body()))
    }
}

/// One HTTP/2 connection (cleartext, prior knowledge): clones share it, each request on its own stream.
/// The server's `SETTINGS_MAX_CONCURRENT_STREAMS` bounds the requests in flight at once; more wait here.
#[derive(Clone)]
pub struct Multiplexed {
    endpoint: Arc<Endpoint>,
    sender: hyper::client::conn::http2::SendRequest<Full<Bytes>>,
}

impl Multiplexed {
    pub async fn open(endpoint: &Arc<Endpoint>) -> anyhow::Result<Multiplexed> {
        let (sender, connection) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), connect(endpoint).await?)
                .await
                .context("HTTP/2 handshake")?;
        tokio::spawn(async move {
            let _closed = connection.await;
        });
        Ok(Multiplexed { endpoint: endpoint.clone(), sender })
    }

    pub async fn send(&mut self, request: &Request) -> anyhow::Result<Response> {
        let http_request = build(&self.endpoint, request, http::Version::HTTP_2)?;
        self.sender.ready().await.context("connection not ready")?;
        read(self.sender.send_request(http_request).await.context("send request")?).await
    }
}

/// Connections shared by whoever needs one next; a broken one is dropped, a missing one opened.
#[derive(Clone)]
pub struct Pool {
    endpoint: Arc<Endpoint>,
    idle: Arc<Mutex<Vec<Connection>>>,
}

impl Pool {
    pub fn new(endpoint: Arc<Endpoint>) -> Pool {
        Pool { endpoint, idle: Arc::new(Mutex::new(Vec::new())) }
    }

    pub fn endpoint(&self) -> &Arc<Endpoint> {
        &self.endpoint
    }

    /// Sends on an idle connection, or a new one. A request that fails on a reused connection (closed by
    /// the server while idle) is sent once more on a fresh one: safe, since commands carry idempotency keys.
    pub async fn send(&self, request: &Request) -> anyhow::Result<Response> {
        let reused = loop {
            let candidate = self.idle.lock().expect("pool lock is never poisoned").pop();
            match candidate {
                Some(connection) if connection.is_closed() => continue,
                other => break other,
            }
        };
        let was_reused = reused.is_some();
        let mut connection = match reused {
            Some(connection) => connection,
            None => Connection::open(&self.endpoint).await?,
        };
        let response = match connection.send(request).await {
            Ok(response) => response,
            Err(_) if was_reused => {
                connection = Connection::open(&self.endpoint).await?;
                connection.send(request).await?
            }
            Err(error) => return Err(error),
        };
        self.idle.lock().expect("pool lock is never poisoned").push(connection);
        Ok(response)
    }
}
