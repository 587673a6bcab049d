//! `Routes`: a service's one route table. Each entry is a method, a path, who may call it and the problem codes
//! it can answer; the table builds the router and its [`Guard`], and is the list the OpenAPI document is
//! completed from and checked against, so the router, the guards and the document cannot disagree.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{MatchedPath, Request};
use axum::handler::Handler;
use axum::http::Method;
use axum::response::{IntoResponse, Response};
use axum::routing::{on, MethodFilter};
use axum::Router;
use tally_shared::api::ProblemCode;

use crate::auth::{Authenticator, Scope};
use crate::openapi;

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anybody: health, metrics and the API's documentation.
    Open,
    /// A bearer token with this scope (or `admin`).
    Scope(Scope),
}

/// One route of the table.
#[derive(Debug, Clone)]
pub struct RouteSpec {
    pub method: Method,
    /// The path template, as axum and OpenAPI both write it: `/v1/wallets/{wallet_id}`.
    pub path: &'static str,
    pub access: Access,
    /// The problem codes of the route's own logic; the edge's (401, 403, 413, 429, 503, 500) are added for it.
    pub problems: &'static [ProblemCode],
}

impl RouteSpec {
    pub fn new(method: Method, path: &'static str, access: Access, problems: &'static [ProblemCode]) -> RouteSpec {
        RouteSpec { method, path, access, problems }
    }

    /// Every problem code the route can answer: its own, then the edge's.
    pub fn all_problems(&self) -> Vec<ProblemCode> {
        let mut codes = self.problems.to_vec();
        if let Access::Scope(_) = self.access {
            codes.extend([ProblemCode::Unauthenticated, ProblemCode::Forbidden, ProblemCode::RateLimited]);
        }
        if self.method == Method::POST || self.method == Method::PUT || self.method == Method::PATCH {
            codes.push(ProblemCode::PayloadTooLarge);
        }
        codes.extend([ProblemCode::Overloaded, ProblemCode::Timeout, ProblemCode::Internal]);
        let mut seen = std::collections::HashSet::new();
        codes.retain(|code| seen.insert(*code));
        codes
    }
}

/// The route table and the router it builds.
pub struct Routes<S> {
    router: Router<S>,
    specs: Vec<RouteSpec>,
    authenticator: Authenticator,
}

impl<S: Clone + Send + Sync + 'static> Routes<S> {
    pub fn new(authenticator: Authenticator) -> Routes<S> {
        Routes { router: Router::new(), specs: Vec::new(), authenticator }
    }

    /// Adds a route: `handler` answers `spec.method` on `spec.path`; [`Guard`] enforces `spec.access`.
    pub fn route<H, T>(mut self, spec: RouteSpec, handler: H) -> Routes<S>
    where
        H: Handler<T, S>,
        T: 'static,
    {
        let filter = MethodFilter::try_from(spec.method.clone()).expect("a standard HTTP method");
        self.router = self.router.route(spec.path, on(filter, handler));
        self.specs.push(spec);
        self
    }

    /// Adds routes the table does not build itself (the `/docs` UI's), documented by `specs`.
    pub fn merge(mut self, router: Router<S>, specs: impl IntoIterator<Item = RouteSpec>) -> Routes<S> {
        self.router = self.router.merge(router);
        self.specs.extend(specs);
        self
    }

    /// Adds `/openapi.json` and `/docs`, serving `generated` completed from the whole table (these routes included).
    pub fn with_docs(self, generated: utoipa::openapi::OpenApi) -> Routes<S> {
        let mut specs = self.specs.clone();
        specs.extend(openapi::docs_specs());
        let document = openapi::complete(generated, &specs);
        self.merge(openapi::docs_router(document), openapi::docs_specs())
    }

    pub fn specs(&self) -> &[RouteSpec] {
        &self.specs
    }

    /// The router, and the guard that enforces the table's access rules (given to [`crate::wrap`]).
    pub fn into_parts(self) -> (Router<S>, Guard) {
        let access = self.specs.iter().map(|spec| ((spec.method.clone(), spec.path.to_owned()), spec.access)).collect();
        (self.router, Guard { authenticator: self.authenticator, access: Arc::new(access) })
    }
}

/// Enforces the route table after routing, before the service's own middleware and handlers: authenticates,
/// rate-limits, checks the scope, and hands the [`crate::Principal`] to the handler. A `/v1` path with a method the
/// table does not name still needs a valid token; unmatched paths answer 404 untouched.
#[derive(Clone)]
pub struct Guard {
    authenticator: Authenticator,
    access: Arc<HashMap<(Method, String), Access>>,
}

impl Guard {
    /// `405 method_not_allowed`, with the methods `route` takes in `Allow`.
    fn method_not_allowed(&self, route: &str) -> Response {
        let mut methods: Vec<&str> =
            self.access.keys().filter(|(_, path)| path == route).map(|(method, _)| method.as_str()).collect();
        methods.sort_unstable();
        let mut response =
            crate::problem::refuse(ProblemCode::MethodNotAllowed, "this route does not take that method", None);
        if let Ok(allow) = axum::http::HeaderValue::from_str(&methods.join(", ")) {
            response.headers_mut().insert(axum::http::header::ALLOW, allow);
        }
        response
    }

    /// Lets `request` through, with its [`crate::Principal`] as an extension when the route needs one, or
    /// returns its refusal.
    pub fn refuse(&self, request: &mut Request) -> Option<Response> {
        // An unmatched path goes on to its 404 untouched.
        let route = request.extensions().get::<MatchedPath>()?;
        let route = route.as_str();
        let authorized = match self.access.get(&(request.method().clone(), route.to_owned())) {
            Some(Access::Open) => return None,
            Some(Access::Scope(scope)) => self.authenticator.authorize(request.headers(), *scope),
            // Another method on a `/v1` path: callers with a valid token learn it is 405, others nothing. It
            // is answered here, before the service's middleware reads the query (a bad `min_position` on a
            // method the route does not take is still a 405).
            None if route.starts_with("/v1/") => {
                let refusal = match self.authenticator.authenticate(request.headers()) {
                    Ok(_) => self.method_not_allowed(route),
                    Err(refusal) => refusal.into_response(),
                };
                return Some(refusal);
            }
            None => return None,
        };
        match authorized {
            Ok(principal) => {
                tracing::Span::current().record("principal", principal.name.as_str());
                request.extensions_mut().insert(principal);
                None
            }
            Err(refusal) => Some(refusal.into_response()),
        }
    }
}
