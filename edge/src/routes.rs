//! `Routes`: a service's one route table. Each entry is a method, a path, who may call it and the problem codes
//! it can answer; the table builds the router (guarding each route with its scope) and is the list the OpenAPI
//! document is completed from and checked against, so the router, the guards and the document cannot disagree.

use axum::extract::Request;
use axum::handler::Handler;
use axum::http::Method;
use axum::middleware::{self, Next};
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

    /// Adds a route: `handler` answers `spec.method` on `spec.path`, behind the guard of `spec.access`.
    pub fn route<H, T>(mut self, spec: RouteSpec, handler: H) -> Routes<S>
    where
        H: Handler<T, S>,
        T: 'static,
    {
        let filter = MethodFilter::try_from(spec.method.clone()).expect("a standard HTTP method");
        let mut method_router = on(filter, handler);
        if let Access::Scope(scope) = spec.access {
            let authenticator = self.authenticator.clone();
            // route_layer: the guard runs only for a request this route matched, so unknown paths stay 404
            // and other methods 405, with or without a token.
            method_router = method_router.route_layer(middleware::from_fn(move |request: Request, next: Next| {
                guard(authenticator.clone(), scope, request, next)
            }));
        }
        self.router = self.router.route(spec.path, method_router);
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

    pub fn into_parts(self) -> (Router<S>, Vec<RouteSpec>) {
        (self.router, self.specs)
    }
}

/// Authenticates, rate-limits and checks the scope; the handler finds the [`crate::Principal`] in the request.
async fn guard(authenticator: Authenticator, scope: Scope, mut request: Request, next: Next) -> Response {
    match authenticator.authorize(request.headers(), scope) {
        Ok(principal) => {
            let span = tracing::Span::current();
            span.record("principal", principal.name.as_str());
            request.extensions_mut().insert(principal);
            next.run(request).await
        }
        Err(refusal) => refusal.into_response(),
    }
}
