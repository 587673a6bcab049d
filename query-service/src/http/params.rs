//! Path segments and query parameters: parsed by name, unknown or repeated names refused, every error naming
//! the parameter (`422 validation_failed`), never a 500 and never a guess.

use std::str::FromStr;

use axum::extract::{FromRequestParts, Path, Query};
use axum::http::request::Parts;
use chrono::{DateTime, Utc};
use tally_shared::envelope::StreamId;
use uuid::Uuid;

use crate::http::error::ApiError;

/// Items per page when `limit` is not given.
pub const LIMIT_DEFAULT: i64 = 50;
/// Items per page at most. A larger `limit` is refused rather than clamped, so a client never mistakes a
/// short page for the end.
pub const LIMIT_MAX: i64 = 1_000;
/// Characters of one query parameter value at most.
const PARAMETER_LENGTH_MAX: usize = 512;
/// The read-your-writes parameter, which the consistency middleware handles for every route.
pub const MIN_POSITION: &str = "min_position";

/// One path segment, percent-decoded.
#[derive(Debug)]
pub struct Segment(pub String);

impl<S: Send + Sync> FromRequestParts<S> for Segment {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Segment, ApiError> {
        let Path(segment) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|rejection| ApiError::validation("path", rejection.body_text()))?;
        Ok(Segment(segment))
    }
}

/// The query string as name-value pairs, in order.
#[derive(Debug)]
pub struct QueryParams {
    pairs: Vec<(String, String)>,
}

impl<S: Send + Sync> FromRequestParts<S> for QueryParams {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<QueryParams, ApiError> {
        QueryParams::from_query(parts.uri.query().unwrap_or(""))
    }
}

impl QueryParams {
    pub fn from_query(query: &str) -> Result<QueryParams, ApiError> {
        let uri: axum::http::Uri =
            format!("/?{query}").parse().map_err(|_| ApiError::validation("query", "is not a valid query string"))?;
        let Query(pairs) = Query::<Vec<(String, String)>>::try_from_uri(&uri)
            .map_err(|_| ApiError::validation("query", "is not a valid query string"))?;
        Ok(QueryParams { pairs })
    }

    /// Refuses any parameter but `allowed` (and `min_position`), and any given twice.
    pub fn allow(self, allowed: &[&str]) -> Result<QueryParams, ApiError> {
        for (index, (name, value)) in self.pairs.iter().enumerate() {
            if name != MIN_POSITION && !allowed.contains(&name.as_str()) {
                let known = if allowed.is_empty() { "none".to_owned() } else { allowed.join(", ") };
                return Err(ApiError::validation(truncated(name), format!("is not a parameter here (known: {known})")));
            }
            if self.pairs[..index].iter().any(|(earlier, _)| earlier == name) {
                return Err(ApiError::validation(name, "is given more than once"));
            }
            if value.chars().count() > PARAMETER_LENGTH_MAX {
                return Err(ApiError::validation(name, format!("must have at most {PARAMETER_LENGTH_MAX} characters")));
            }
        }
        Ok(self)
    }

    pub fn text(&self, name: &str) -> Option<&str> {
        self.pairs.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str())
    }

    /// The required `reference` of a by-reference read: a client string within its limits.
    pub fn reference(&self) -> Result<&str, ApiError> {
        let reference = self.text("reference").ok_or_else(|| ApiError::validation("reference", "is required"))?;
        tally_shared::api::check_text("reference", reference, tally_shared::api::REFERENCE_LENGTH_MAX).map_err(
            |_| {
                ApiError::validation(
                    "reference",
                    format!(
                        "must have 1 to {} characters and no control characters",
                        tally_shared::api::REFERENCE_LENGTH_MAX
                    ),
                )
            },
        )?;
        Ok(reference)
    }

    /// A whole number of at least `minimum`, if given.
    pub fn integer(&self, name: &str, minimum: i64) -> Result<Option<i64>, ApiError> {
        let Some(text) = self.text(name) else { return Ok(None) };
        let value = parse_integer(name, text)?;
        if value < minimum {
            return Err(ApiError::validation(name, format!("must be at least {minimum}")));
        }
        Ok(Some(value))
    }

    /// `limit`: `1..=LIMIT_MAX`, `LIMIT_DEFAULT` when absent.
    pub fn limit(&self) -> Result<i64, ApiError> {
        let limit = self.integer("limit", 1)?.unwrap_or(LIMIT_DEFAULT);
        if limit > LIMIT_MAX {
            return Err(ApiError::validation("limit", format!("must be at most {LIMIT_MAX}")));
        }
        Ok(limit)
    }

    /// An RFC 3339 instant, if given. A `+` decoded to a space (an offset written unencoded) is read back as `+`.
    pub fn instant(&self, name: &str) -> Result<Option<DateTime<Utc>>, ApiError> {
        let Some(text) = self.text(name) else { return Ok(None) };
        let parsed = DateTime::parse_from_rfc3339(text).or_else(|error| match text.contains(' ') {
            true => DateTime::parse_from_rfc3339(&text.replace(' ', "+")),
            false => Err(error),
        });
        parsed
            .map(|instant| Some(instant.with_timezone(&Utc)))
            .map_err(|_| ApiError::validation(name, "must be an RFC 3339 timestamp such as 2025-01-31T12:00:00Z"))
    }
}

pub fn parse_integer(name: &str, text: &str) -> Result<i64, ApiError> {
    let digits = text.strip_prefix('-').unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return Err(ApiError::validation(name, "must be a whole number"));
    }
    i64::from_str(text).map_err(|_| ApiError::validation(name, "is out of range"))
}

pub fn wallet_id(segment: &str) -> Result<Uuid, ApiError> {
    uuid(segment).ok_or_else(|| ApiError::validation("wallet_id", "must be a UUID"))
}

pub fn transfer_id(segment: &str) -> Result<Uuid, ApiError> {
    uuid(segment).ok_or_else(|| ApiError::validation("transfer_id", "must be a UUID"))
}

pub fn hold_id(segment: &str) -> Result<Uuid, ApiError> {
    uuid(segment).ok_or_else(|| ApiError::validation("hold_id", "must be a UUID"))
}

pub fn stream_id(segment: &str) -> Result<StreamId, ApiError> {
    segment
        .parse()
        .map_err(|_| ApiError::validation("stream_id", "must be asset-CODE, wallet-UUID, transfer-UUID or hold-UUID"))
}

/// Only the hyphenated form that the API writes: ids are compared as text by clients and in URLs.
fn uuid(text: &str) -> Option<Uuid> {
    (text.len() == 36).then(|| Uuid::try_parse(text).ok()).flatten()
}

/// A parameter name to echo back, cut so that a huge unknown name cannot inflate the answer.
fn truncated(name: &str) -> String {
    name.chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(query: &str) -> QueryParams {
        QueryParams::from_query(query).unwrap()
    }

    fn field(error: ApiError) -> String {
        match error {
            ApiError::Validation { field, .. } => field,
            other => panic!("not a validation error: {other:?}"),
        }
    }

    #[test]
    fn limit_defaults_and_bounds() {
        assert_eq!(params("").limit().unwrap(), LIMIT_DEFAULT);
        assert_eq!(params("limit=1000").limit().unwrap(), 1000);
        for bad in ["limit=0", "limit=1001", "limit=-1", "limit=x", "limit=", "limit=1e3", "limit=99999999999999999999"]
        {
            assert_eq!(field(params(bad).limit().unwrap_err()), "limit", "{bad}");
        }
    }

    #[test]
    fn unknown_and_repeated_parameters_are_refused() {
        assert_eq!(field(params("limt=5").allow(&["limit"]).unwrap_err()), "limt");
        assert_eq!(field(params("limit=5&limit=6").allow(&["limit"]).unwrap_err()), "limit");
        assert!(params("limit=5&min_position=3").allow(&["limit"]).is_ok());
    }

    #[test]
    fn instants_are_rfc3339() {
        let expected = DateTime::parse_from_rfc3339("2025-01-31T12:00:00+01:00").unwrap();
        assert_eq!(params("as_of=2025-01-31T12:00:00%2B01:00").instant("as_of").unwrap().unwrap(), expected);
        assert_eq!(params("as_of=2025-01-31T12:00:00+01:00").instant("as_of").unwrap().unwrap(), expected);
        assert_eq!(field(params("as_of=yesterday").instant("as_of").unwrap_err()), "as_of");
    }

    #[test]
    fn ids_are_hyphenated_uuids() {
        assert!(wallet_id("0192f0c1-8a7e-7d00-8000-000000000001").is_ok());
        for bad in ["0192f0c18a7e7d008000000000000001", "x", "", "{0192f0c1-8a7e-7d00-8000-000000000001}"] {
            assert_eq!(field(wallet_id(bad).unwrap_err()), "wallet_id", "{bad}");
        }
        assert_eq!(field(stream_id("wallet-nope").unwrap_err()), "stream_id");
    }
}
