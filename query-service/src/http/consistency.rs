//! Read-your-writes across the CQRS boundary: `X-Projection-Position` on every answer, and the bounded wait
//! for `min_position` (query parameter or `X-Min-Position` header).

use axum::extract::{Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::http::error::ApiError;
use crate::http::params::{parse_integer, QueryParams, MIN_POSITION};
use crate::http::AppState;

pub const MIN_POSITION_HEADER: &str = "x-min-position";
pub const PROJECTION_POSITION_HEADER: &str = "x-projection-position";

/// Waits for `min_position` if asked, then answers with the checkpoint known before the read began: the read
/// model rows the handler sees are at least that fresh.
pub async fn read_your_writes(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let position = match requested_min_position(&request) {
        Err(error) => return stamp(error.into_response(), state.checkpoint.current()),
        Ok(None) => state.checkpoint.current(),
        Ok(Some(min_position)) => match state.checkpoint.wait_for(min_position, state.min_position_wait).await {
            Ok(reached) => reached,
            Err(position) => {
                return stamp(ApiError::ProjectionBehind { position, min_position }.into_response(), position);
            }
        },
    };
    stamp(next.run(request).await, position)
}

/// The larger of the query parameter and the header, if either is given.
fn requested_min_position(request: &Request) -> Result<Option<i64>, ApiError> {
    let from_query = match request.uri().query() {
        // Most reads do not ask: spare them a second parse of the query string (unless the name may be encoded).
        Some(query) if query.contains(MIN_POSITION) || query.contains('%') => {
            QueryParams::from_query(query)?.integer(MIN_POSITION, 0)?
        }
        _ => None,
    };
    let from_header = match request.headers().get(MIN_POSITION_HEADER) {
        Some(value) => {
            let text = value.to_str().map_err(|_| ApiError::validation("X-Min-Position", "must be a whole number"))?;
            let position = parse_integer("X-Min-Position", text.trim())?;
            if position < 0 {
                return Err(ApiError::validation("X-Min-Position", "must be at least 0"));
            }
            Some(position)
        }
        None => None,
    };
    Ok(from_query.max(from_header))
}

fn stamp(mut response: Response, position: i64) -> Response {
    response.headers_mut().insert(PROJECTION_POSITION_HEADER, HeaderValue::from(position));
    response
}
