//! `CommandInput<T>`: the extractor every command route shares. It checks the idempotency key, `If-Match`,
//! the content type and the body size, parses the body strictly (unknown fields refused, the field named),
//! and fingerprints the request for the idempotency record.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{header, HeaderMap, Method};
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};
use tally_shared::api::{self, Problem, ProblemCode};
use tally_shared::envelope::canonical_json;

use super::error::ApiError;

/// Fields whose values are amounts: a bad value there is `invalid_amount`, not `validation_failed`.
const AMOUNT_FIELDS: [&str; 7] = ["amount", "fee", "overdraft_limit", "percent", "fixed", "min", "max"];

/// A parsed command request, before it becomes a domain command.
#[derive(Debug)]
pub struct CommandInput<T> {
    pub body: T,
    pub idempotency_key: String,
    pub expected_version: Option<i64>,
    pub fingerprint: [u8; 32],
    pub request_id: Option<String>,
}

impl<S, T> FromRequest<S> for CommandInput<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let method = request.method().clone();
        let path = request.uri().path().to_owned();
        let headers = request.headers().clone();
        let idempotency_key = idempotency_key(&headers)?;
        let expected_version = expected_version(&headers)?;
        let bytes = Bytes::from_request(request, state).await.map_err(|rejection| {
            if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(ProblemCode::PayloadTooLarge, "the request body is larger than allowed")
            } else {
                ApiError::new(ProblemCode::MalformedJson, "the request body could not be read")
            }
        })?;
        // An empty body is `{}` (on the routes whose body may be empty); anything else must be one JSON value, so
        // white space alone is malformed, as the documented schema says.
        let body_text: &[u8] = if bytes.is_empty() { b"{}" } else { &bytes };
        if !bytes.is_empty() {
            check_media_type(&headers)?;
        }
        let mut value: serde_json::Value = serde_json::from_slice(body_text).map_err(|error| {
            if error.to_string().starts_with("recursion limit exceeded") {
                // Only `metadata` may nest at all: the same rule as a body 9 levels deep, the same answer.
                return ApiError::validation(
                    "metadata",
                    format!("must nest at most {} levels", api::METADATA_DEPTH_MAX),
                );
            }
            ApiError::new(ProblemCode::MalformedJson, format!("the body is not valid JSON: {error}"))
        })?;
        // `null` says "no body" as an empty body does (the documents of the routes whose body may be empty
        // allow it), and is read as `{}` too.
        let body_text = if value.is_null() {
            value = serde_json::Value::Object(serde_json::Map::new());
            b"{}"
        } else {
            body_text
        };
        // serde maps a JSON array onto a struct's fields in order: `["1.00"]` would be a top-up. Every
        // command's body is an object, and nothing else is read as one.
        if !value.is_object() {
            return Err(ApiError::validation("body", "must be a JSON object"));
        }
        let body = parse(body_text)?;
        let request_id = headers.get("x-request-id").and_then(|value| value.to_str().ok()).map(str::to_owned);
        Ok(CommandInput {
            body,
            idempotency_key,
            expected_version,
            fingerprint: fingerprint(&method, &path, expected_version, &value),
            request_id,
        })
    }
}

fn idempotency_key(headers: &HeaderMap) -> Result<String, ApiError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Err(ApiError::new(ProblemCode::IdempotencyKeyMissing, "every command needs an Idempotency-Key header"));
    };
    match value.to_str() {
        Ok(key) if api::is_valid_idempotency_key(key) => Ok(key.to_owned()),
        _ => Err(ApiError::new(
            ProblemCode::IdempotencyKeyInvalid,
            format!("Idempotency-Key must be 1 to {} visible ASCII characters", api::IDEMPOTENCY_KEY_LENGTH_MAX),
        )),
    }
}

/// `If-Match: "<version>"` (an entity tag holding the wallet's version).
fn expected_version(headers: &HeaderMap) -> Result<Option<i64>, ApiError> {
    let Some(value) = headers.get(header::IF_MATCH) else { return Ok(None) };
    let text = value.to_str().unwrap_or_default().trim();
    let unquoted = text.strip_prefix('"').and_then(|rest| rest.strip_suffix('"')).unwrap_or(text);
    // Digits only (no sign), as `api::IF_MATCH_PATTERN` documents.
    let digits =
        (1..=api::VERSION_DIGITS_MAX).contains(&unquoted.len()) && unquoted.bytes().all(|byte| byte.is_ascii_digit());
    match unquoted.parse::<i64>() {
        Ok(version) if digits => Ok(Some(version)),
        _ => Err(ApiError::validation("If-Match", "must be a wallet version in quotes, such as \"3\"")),
    }
}

/// A body is JSON in UTF-8, as sent: `application/json` (or `application/*+json`), no charset but UTF-8, and no
/// `Content-Encoding` (a compressed body would be read as garbage, or worse, as something else).
fn check_media_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let refuse = |detail: &str| Err(ApiError::new(ProblemCode::UnsupportedMediaType, detail));
    let encoded = headers.get_all(header::CONTENT_ENCODING).iter().any(|value| {
        value
            .to_str()
            .map_or(true, |text| text.split(',').any(|coding| !coding.trim().eq_ignore_ascii_case("identity")))
    });
    if encoded {
        return refuse("send the body uncompressed: no Content-Encoding is accepted");
    }
    let Some(content_type) = headers.get(header::CONTENT_TYPE).and_then(|value| value.to_str().ok()) else {
        return refuse("send the body as application/json");
    };
    let mut parts = content_type.split(';');
    let essence = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
    if !(essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))) {
        return refuse("send the body as application/json");
    }
    for parameter in parts {
        let Some((name, value)) = parameter.split_once('=') else { continue };
        let charset = value.trim().trim_matches('"');
        if name.trim().eq_ignore_ascii_case("charset") && !charset.eq_ignore_ascii_case("utf-8") {
            return refuse("send the body in UTF-8 (charset=utf-8, or no charset)");
        }
    }
    Ok(())
}

/// Parses strictly: serde's own messages, with the JSON path of the field at fault.
fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        let message = inner.to_string();
        let unknown = message.strip_prefix("unknown field `").and_then(|rest| rest.split('`').next());
        let missing = message.strip_prefix("missing field `").and_then(|rest| rest.split('`').next());
        // The path of an unknown field already ends with its name; a missing field's path is its parent's.
        let field = match (missing, path.as_str()) {
            (Some(name), "." | "") => name.to_owned(),
            (Some(name), parent) => format!("{parent}.{name}"),
            (None, path) => path.to_owned(),
        };
        let last = field.rsplit('.').next().unwrap_or_default();
        let code = if unknown.is_none() && missing.is_none() && AMOUNT_FIELDS.contains(&last) {
            ProblemCode::InvalidAmount
        } else {
            ProblemCode::ValidationFailed
        };
        let detail = message.split(" at line ").next().unwrap_or(&message).to_owned();
        ApiError::from(Problem::new(code, format!("{field}: {detail}")).with("field", field))
    })
}

/// SHA-256 of method, path, `If-Match` and the canonical JSON of the body: the same request, whatever its
/// key order; a retry with another precondition is another request.
fn fingerprint(method: &Method, path: &str, expected_version: Option<i64>, body: &serde_json::Value) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(method.as_str().as_bytes());
    hasher.update(b" ");
    hasher.update(path.as_bytes());
    hasher.update(b"\n");
    if let Some(version) = expected_version {
        hasher.update(format!("if-match {version}\n").as_bytes());
    }
    hasher.update(canonical_json(body).as_bytes());
    hasher.finalize().into()
}
