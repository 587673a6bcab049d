//! Bearer tokens: the token file, verification in constant time, scopes, owner binding and per-token rate limits.
//!
//! Tokens are stored only as SHA-256 hashes. A presented token is hashed and compared with every entry, always
//! all of them and in constant time, so that neither timing nor an early exit tells how close a guess was.

use std::collections::HashSet;
use std::num::NonZeroU32;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::{Choice, ConditionallySelectable, ConstantTimeEq};
use tally_shared::api::ProblemCode;

use crate::problem::refuse;

/// The principal of every request when no token file is configured.
pub const ANONYMOUS: &str = "anonymous";
/// The realm named in `WWW-Authenticate`.
pub const REALM: &str = "tally";
/// Characters of a token name at most: names are idempotency scopes and metric-free log fields, keep them short.
pub const TOKEN_NAME_LENGTH_MAX: usize = 64;
/// Characters of an owner id at most (as for wallets).
const OWNER_ID_LENGTH_MAX: usize = tally_shared::wallet::OWNER_ID_LENGTH_MAX;

/// What a token may do. `admin` may do everything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// spend, transfer, withdrawal, reversal, cash-in, wallet open, freeze, unfreeze and close.
    Commands,
    /// topup, bonus and asset definition: creating money.
    Issue,
    /// the query views.
    Read,
    /// streams, the global log and point-in-time balances.
    Audit,
    Admin,
}

impl Scope {
    pub const ALL: [Scope; 5] = [Scope::Commands, Scope::Issue, Scope::Read, Scope::Audit, Scope::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Commands => "commands",
            Scope::Issue => "issue",
            Scope::Read => "read",
            Scope::Audit => "audit",
            Scope::Admin => "admin",
        }
    }
}

/// Who a request acts for: a token's name (which also scopes idempotency keys), its scopes and, for a token
/// bound to one owner, that owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub name: String,
    pub scopes: Vec<Scope>,
    pub owner_id: Option<String>,
}

impl Principal {
    /// Every request of an open service: all scopes, no owner.
    pub fn anonymous() -> Principal {
        Principal { name: ANONYMOUS.to_owned(), scopes: vec![Scope::Admin], owner_id: None }
    }

    pub fn may(&self, scope: Scope) -> bool {
        self.scopes.iter().any(|granted| *granted == scope || *granted == Scope::Admin)
    }

    /// Whether this principal may see or act on what `owner_id` owns: a token bound to an owner sees only that
    /// owner's; any other principal sees every owner's.
    pub fn may_access_owner(&self, owner_id: &str) -> bool {
        self.owner_id.as_deref().is_none_or(|own| own == owner_id)
    }
}

/// A guarded route's handler takes the principal the route's guard authenticated.
impl<S: Send + Sync> FromRequestParts<S> for Principal {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Principal, Response> {
        // Absent only on a route declared open: fail closed rather than act for nobody in particular.
        parts
            .extensions
            .get::<Principal>()
            .cloned()
            .ok_or_else(|| Refusal::Unauthenticated { token_given: false }.into_response())
    }
}

/// One entry of the token file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenEntry {
    name: String,
    token_sha256: String,
    scopes: Vec<Scope>,
    #[serde(default)]
    owner_id: Option<String>,
    #[serde(default)]
    rate_per_s: Option<NonZeroU32>,
}

struct Token {
    sha256: [u8; 32],
    principal: Principal,
    /// `None`: unlimited.
    limiter: Option<DefaultDirectRateLimiter>,
}

/// Why the edge refused a request before its handler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No bearer token, or one that matches no entry.
    Unauthenticated { token_given: bool },
    /// The token is valid but lacks the route's scope.
    Forbidden { scope: Scope },
    /// The token spent its rate; come back in `retry_after_s`.
    RateLimited { retry_after_s: u64 },
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Refusal::Unauthenticated { token_given } => {
                let detail = if token_given {
                    "the bearer token is not valid"
                } else {
                    "send a bearer token: Authorization: Bearer <token>"
                };
                let mut response = refuse(ProblemCode::Unauthenticated, detail, None);
                // RFC 6750 §3: a request without credentials gets no error code, a bad token gets invalid_token.
                let challenge = if token_given {
                    format!("Bearer realm=\"{REALM}\", error=\"invalid_token\"")
                } else {
                    format!("Bearer realm=\"{REALM}\"")
                };
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_str(&challenge).expect("an ASCII challenge"));
                response
            }
            Refusal::Forbidden { scope } => {
                let detail = format!("this token lacks the scope {:?} (or admin)", scope.as_str());
                refuse(ProblemCode::Forbidden, &detail, None)
            }
            Refusal::RateLimited { retry_after_s } => refuse(
                ProblemCode::RateLimited,
                "this token sent more requests than its rate allows; retry after the time in Retry-After",
                Some(retry_after_s),
            ),
        }
    }
}

/// Who may call: everybody (open mode, no token file) or the holders of the file's tokens.
#[derive(Clone)]
pub struct Authenticator {
    tokens: Option<Arc<Vec<Token>>>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.tokens {
            None => formatter.write_str("Authenticator::Open"),
            Some(tokens) => write!(formatter, "Authenticator::Tokens({} tokens)", tokens.len()),
        }
    }
}

impl Authenticator {
    /// Every request is [`Principal::anonymous`].
    pub fn open() -> Authenticator {
        Authenticator { tokens: None }
    }

    /// Reads the token file named by `AUTH_TOKENS_FILE`, or runs open, loudly, when there is none.
    pub fn from_file(path: Option<&Path>) -> anyhow::Result<Authenticator> {
        let Some(path) = path else {
            tracing::warn!(
                "AUTH_TOKENS_FILE is not set: this service is OPEN. Every request acts as `anonymous` with every \
                 scope. Set AUTH_TOKENS_FILE before putting it in front of anybody."
            );
            return Ok(Authenticator::open());
        };
        let text =
            std::fs::read_to_string(path).with_context(|| format!("read AUTH_TOKENS_FILE {}", path.display()))?;
        let authenticator =
            Authenticator::from_json(&text).with_context(|| format!("AUTH_TOKENS_FILE {}", path.display()))?;
        tracing::info!(tokens = authenticator.token_count(), path = %path.display(), "bearer tokens loaded");
        Ok(authenticator)
    }

    /// Parses and checks a token file's contents.
    pub fn from_json(text: &str) -> anyhow::Result<Authenticator> {
        let entries: Vec<TokenEntry> = serde_json::from_str(text).context("parse the token file")?;
        let mut names = HashSet::new();
        let mut hashes = HashSet::new();
        let mut tokens = Vec::with_capacity(entries.len());
        for entry in entries {
            let name = entry.name;
            anyhow::ensure!(
                (1..=TOKEN_NAME_LENGTH_MAX).contains(&name.chars().count())
                    && !name.chars().any(char::is_control)
                    && name != ANONYMOUS,
                "token name {name:?}: 1 to {TOKEN_NAME_LENGTH_MAX} characters, no control characters, not {ANONYMOUS:?}"
            );
            anyhow::ensure!(names.insert(name.clone()), "token name {name:?} appears twice");
            let sha256: [u8; 32] = hex::decode(entry.token_sha256.trim())
                .ok()
                .and_then(|bytes| bytes.try_into().ok())
                .with_context(|| format!("token {name:?}: token_sha256 must be 64 hexadecimal digits"))?;
            anyhow::ensure!(hashes.insert(sha256), "token {name:?}: the same token_sha256 as another token");
            anyhow::ensure!(!entry.scopes.is_empty(), "token {name:?}: no scopes, so it could do nothing");
            if let Some(owner_id) = &entry.owner_id {
                anyhow::ensure!(
                    tally_shared::api::check_text("owner_id", owner_id, OWNER_ID_LENGTH_MAX).is_ok(),
                    "token {name:?}: owner_id must have 1 to {OWNER_ID_LENGTH_MAX} characters, no control characters"
                );
            }
            let limiter = entry.rate_per_s.map(|rate| RateLimiter::direct(Quota::per_second(rate)));
            let mut scopes = entry.scopes;
            scopes.sort_unstable();
            scopes.dedup();
            tokens.push(Token { sha256, principal: Principal { name, scopes, owner_id: entry.owner_id }, limiter });
        }
        Ok(Authenticator { tokens: Some(Arc::new(tokens)) })
    }

    pub fn is_open(&self) -> bool {
        self.tokens.is_none()
    }

    pub fn token_count(&self) -> usize {
        self.tokens.as_ref().map_or(0, |tokens| tokens.len())
    }

    /// The principal of a request's bearer token, after its rate limit; or why not.
    pub fn authenticate(&self, headers: &HeaderMap) -> Result<Principal, Refusal> {
        let Some(tokens) = &self.tokens else { return Ok(Principal::anonymous()) };
        let presented = bearer_token(headers)
            .ok_or(Refusal::Unauthenticated { token_given: headers.contains_key(header::AUTHORIZATION) })?;
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let mut matched = Choice::from(0);
        let mut index: u64 = 0;
        for (candidate, token) in tokens.iter().enumerate() {
            let equal = token.sha256.ct_eq(&digest);
            index.conditional_assign(&(candidate as u64), equal);
            matched |= equal;
        }
        if !bool::from(matched) {
            return Err(Refusal::Unauthenticated { token_given: true });
        }
        let token = &tokens[usize::try_from(index).expect("an index of the token list")];
        if let Some(limiter) = &token.limiter {
            if let Err(not_until) = limiter.check() {
                let wait = not_until.wait_time_from(DefaultClock::default().now());
                // Whole seconds, rounded up: a client retrying at Retry-After is never early.
                let retry_after_s = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                return Err(Refusal::RateLimited { retry_after_s: retry_after_s.max(1) });
            }
        }
        Ok(token.principal.clone())
    }

    /// [`Authenticator::authenticate`], then the scope check.
    pub fn authorize(&self, headers: &HeaderMap, scope: Scope) -> Result<Principal, Refusal> {
        let principal = self.authenticate(headers)?;
        if !principal.may(scope) {
            return Err(Refusal::Forbidden { scope });
        }
        Ok(principal)
    }
}

/// The token of `Authorization: Bearer <token>` (the scheme is case-insensitive, RFC 7235).
fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// The hex SHA-256 of a token, as the token file stores it.
pub fn token_sha256(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn headers(authorization: Option<&str>) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Some(value) = authorization {
            headers.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        }
        headers
    }

    fn file(entries: &[serde_json::Value]) -> Authenticator {
        Authenticator::from_json(&serde_json::Value::from(entries.to_vec()).to_string()).unwrap()
    }

    #[test]
    fn a_token_is_known_by_its_hash_and_names_its_principal() {
        let tokens = file(&[
            serde_json::json!({"name": "shop", "token_sha256": token_sha256("s3cret"), "scopes": ["commands"]}),
            serde_json::json!({"name": "alice-app", "token_sha256": token_sha256("other"), "scopes": ["read"], "owner_id": "alice"}),
        ]);

        let shop = tokens.authenticate(&headers(Some("Bearer s3cret"))).unwrap();
        let alice = tokens.authenticate(&headers(Some("bearer   other"))).unwrap();

        assert_eq!(shop, Principal { name: "shop".into(), scopes: vec![Scope::Commands], owner_id: None });
        assert_eq!(alice.owner_id.as_deref(), Some("alice"));
        assert!(alice.may_access_owner("alice") && !alice.may_access_owner("bob"));
        assert!(shop.may_access_owner("bob"));
    }

    #[test]
    fn a_missing_malformed_or_unknown_token_is_unauthenticated() {
        let tokens =
            file(&[serde_json::json!({"name": "shop", "token_sha256": token_sha256("s3cret"), "scopes": ["admin"]})]);

        assert_eq!(tokens.authenticate(&headers(None)), Err(Refusal::Unauthenticated { token_given: false }));
        for wrong in ["Bearer s3cre", "Bearer S3CRET", "Basic s3cret", "Bearer", "s3cret", "Bearer s3cret2"] {
            assert_eq!(
                tokens.authenticate(&headers(Some(wrong))),
                Err(Refusal::Unauthenticated { token_given: true }),
                "{wrong}"
            );
        }
    }

    #[test]
    fn admin_has_every_scope_and_others_only_theirs() {
        let tokens = file(&[
            serde_json::json!({"name": "root", "token_sha256": token_sha256("a"), "scopes": ["admin"]}),
            serde_json::json!({"name": "reader", "token_sha256": token_sha256("r"), "scopes": ["read", "audit"]}),
        ]);

        for scope in Scope::ALL {
            assert!(tokens.authorize(&headers(Some("Bearer a")), scope).is_ok());
        }
        assert!(tokens.authorize(&headers(Some("Bearer r")), Scope::Audit).is_ok());
        assert_eq!(
            tokens.authorize(&headers(Some("Bearer r")), Scope::Issue),
            Err(Refusal::Forbidden { scope: Scope::Issue })
        );
    }

    #[test]
    fn a_rate_limited_token_is_refused_beyond_its_burst_with_a_retry_after() {
        let tokens = file(&[
            serde_json::json!({"name": "slow", "token_sha256": token_sha256("t"), "scopes": ["read"], "rate_per_s": 2}),
        ]);
        let request = headers(Some("Bearer t"));

        assert!(tokens.authenticate(&request).is_ok());
        assert!(tokens.authenticate(&request).is_ok());
        assert_eq!(tokens.authenticate(&request), Err(Refusal::RateLimited { retry_after_s: 1 }));
    }

    #[test]
    fn open_mode_is_anonymous_with_every_scope() {
        let open = Authenticator::open();
        let principal = open.authorize(&headers(None), Scope::Audit).unwrap();
        assert_eq!(principal.name, ANONYMOUS);
        assert!(Scope::ALL.iter().all(|scope| principal.may(*scope)));
    }

    #[test]
    fn a_token_file_with_mistakes_is_refused_at_start_up() {
        let hash = token_sha256("x");
        let bad = [
            serde_json::json!([{"name": "a", "token_sha256": "abc", "scopes": ["read"]}]),
            serde_json::json!([{"name": "a", "token_sha256": hash, "scopes": ["reed"]}]),
            serde_json::json!([{"name": "a", "token_sha256": hash, "scopes": []}]),
            serde_json::json!([{"name": "a", "token_sha256": hash, "scopes": ["read"], "rate_per_s": 0}]),
            serde_json::json!([{"name": "a", "token_sha256": hash, "scopes": ["read"], "owner": "x"}]),
            serde_json::json!([{"name": "anonymous", "token_sha256": hash, "scopes": ["read"]}]),
            serde_json::json!([{"name": "a", "token_sha256": hash, "scopes": ["read"]}, {"name": "a", "token_sha256": token_sha256("y"), "scopes": ["read"]}]),
            serde_json::json!([{"name": "a", "token_sha256": hash, "scopes": ["read"]}, {"name": "b", "token_sha256": hash, "scopes": ["read"]}]),
        ];
        for file in bad {
            assert!(Authenticator::from_json(&file.to_string()).is_err(), "{file}");
        }
    }
}
