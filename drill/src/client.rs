//! A client as SPEC §5 asks clients to be: every command carries an idempotency key, and a command whose outcome
//! is unknown (no answer, a 5xx, `409 idempotency_key_in_flight`, `429`) is sent again under the same key until it
//! is answered or [`Client::command_deadline`] runs out.

use std::time::Duration;

use anyhow::{bail, Context};
use serde_json::Value;
use tokio::time::Instant;

/// First pause before a command is sent again; doubled each time up to [`RETRY_PAUSE_MAX`].
const RETRY_PAUSE_INITIAL: Duration = Duration::from_millis(25);
const RETRY_PAUSE_MAX: Duration = Duration::from_millis(400);
/// How long one attempt may take before it counts as unanswered.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);

/// A command's end: answered (with its status and body) after so many attempts.
#[derive(Debug)]
pub struct Answered {
    pub status: u16,
    pub body: Value,
    pub attempts: u32,
}

#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    authorization: String,
    /// How long a command is retried before the drill calls it unanswered (a failed check).
    pub command_deadline: Duration,
}

impl Client {
    pub fn new(token: &str, command_deadline: Duration) -> anyhow::Result<Client> {
        let http = reqwest::Client::builder()
            .timeout(ATTEMPT_TIMEOUT)
            .pool_max_idle_per_host(64)
            .build()
            .context("build the HTTP client")?;
        Ok(Client { http, authorization: format!("Bearer {token}"), command_deadline })
    }

    /// POSTs `body` to `url` under `key` until it is answered: a 2xx or a 4xx other than the retryable ones.
    pub async fn command(&self, url: &str, key: &str, body: &Value) -> anyhow::Result<Answered> {
        let deadline = Instant::now() + self.command_deadline;
        let mut pause = RETRY_PAUSE_INITIAL;
        let mut attempts = 0;
        loop {
            attempts += 1;
            let sent = self
                .http
                .post(url)
                .header("Authorization", &self.authorization)
                .header("Idempotency-Key", key)
                .json(body)
                .send()
                .await;
            let outcome = match sent {
                Ok(response) => {
                    let status = response.status().as_u16();
                    let body: Value = response.json().await.unwrap_or(Value::Null);
                    if !retryable(status, &body) {
                        return Ok(Answered { status, body, attempts });
                    }
                    format!("{status} {}", body["code"].as_str().unwrap_or(""))
                }
                Err(error) => format!("no answer: {error}"),
            };
            if Instant::now() + pause > deadline {
                bail!("{url} under key {key}: still unanswered after {attempts} attempts (last: {outcome})");
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(RETRY_PAUSE_MAX);
        }
    }

    /// GETs `url` once: its status and JSON body (`Null` when it has none).
    pub async fn get(&self, url: &str) -> anyhow::Result<(u16, Value)> {
        self.get_at(url, None).await
    }

    /// GETs `url` once, with `X-Min-Position` when given (the read waits until the projection shows it).
    pub async fn get_at(&self, url: &str, min_position: Option<i64>) -> anyhow::Result<(u16, Value)> {
        let mut request = self.http.get(url).header("Authorization", &self.authorization);
        if let Some(position) = min_position {
            request = request.header("X-Min-Position", position);
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        Ok((status, response.json().await.unwrap_or(Value::Null)))
    }

    /// GETs `url` (with `X-Min-Position` when given) until it answers 200, for at most `wait`.
    pub async fn get_ok(&self, url: &str, min_position: Option<i64>, wait: Duration) -> anyhow::Result<Value> {
        let deadline = Instant::now() + wait;
        loop {
            let last = match self.get_at(url, min_position).await {
                Ok((200, body)) => return Ok(body),
                Ok((status, body)) => format!("{status} {body}"),
                Err(error) => format!("{error:#}"),
            };
            if Instant::now() >= deadline {
                bail!("GET {url} did not answer 200 within {wait:?} (last: {last})");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Whether a command's outcome is still unknown after this answer, so that it must be sent again (SPEC §5).
fn retryable(status: u16, body: &Value) -> bool {
    status >= 500 || status == 429 || (status == 409 && body["code"] == "idempotency_key_in_flight")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_unknown_outcomes_are_sent_again() {
        let in_flight = serde_json::json!({ "code": "idempotency_key_in_flight" });
        let conflict = serde_json::json!({ "code": "version_conflict" });
        assert!(retryable(503, &Value::Null));
        assert!(retryable(502, &Value::Null));
        assert!(retryable(429, &Value::Null));
        assert!(retryable(409, &in_flight));
        assert!(!retryable(409, &conflict));
        assert!(!retryable(201, &Value::Null));
        assert!(!retryable(422, &Value::Null));
    }
}
