//! The OpenAPI 3.1 document of a service, completed from its route table, and `/docs`, a Swagger UI whose
//! assets are embedded in the binary (`utoipa-swagger-ui`'s `vendored` feature: nothing is fetched from a CDN).
//!
//! A service's handlers carry `#[utoipa::path]` (path, parameters, body, success answer) and its DTOs derive
//! `ToSchema`; [`complete`] adds what the route table knows: who may call each route (security) and every
//! problem it can answer, grouped by status, each code with an example.

use std::collections::BTreeMap;

use axum::http::Method;
use axum::Router;
use tally_shared::api::{Problem, ProblemCode};
use utoipa::openapi::content::ContentBuilder;
use utoipa::openapi::example::ExampleBuilder;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::{HttpMethod, Operation, OperationBuilder, PathItem};
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{Components, OpenApi, Ref, RefOr};
use utoipa::{PartialSchema, ToSchema};
use utoipa_swagger_ui::SwaggerUi;

use crate::problem::PROBLEM_JSON;
use crate::routes::{Access, RouteSpec};

/// The path of the document.
pub const OPENAPI_PATH: &str = "/openapi.json";
/// The path of the UI: it redirects to [`DOCS_PAGE_PATH`], whose assets are served under it.
pub const DOCS_PATH: &str = "/docs";
pub const DOCS_PAGE_PATH: &str = "/docs/";
/// The security scheme's name in the document.
pub const BEARER: &str = "bearer";

/// The routes [`docs_router`] serves.
pub fn docs_specs() -> [RouteSpec; 3] {
    [
        RouteSpec::new(Method::GET, OPENAPI_PATH, Access::Open, &[]),
        RouteSpec::new(Method::GET, DOCS_PATH, Access::Open, &[]),
        RouteSpec::new(Method::GET, DOCS_PAGE_PATH, Access::Open, &[]),
    ]
}

/// `/openapi.json` and the `/docs` UI (which also serves its assets under `/docs/`).
pub fn docs_router<S: Clone + Send + Sync + 'static>(document: OpenApi) -> Router<S> {
    let mut json = serde_json::to_value(&document).expect("an OpenAPI document serializes");
    spell_links_as_openapi_does(&mut json);
    SwaggerUi::new(DOCS_PATH).external_url_unchecked(OPENAPI_PATH, json).into()
}

/// utoipa 5.5 writes a response link's fields in snake case (`operation_id`); OpenAPI spells them in camel
/// case (`operationId`), and tools that follow links (schemathesis's stateful phase) read only those.
fn spell_links_as_openapi_does(json: &mut serde_json::Value) {
    let Some(paths) = json.get_mut("paths").and_then(serde_json::Value::as_object_mut) else { return };
    let operations = paths.values_mut().filter_map(serde_json::Value::as_object_mut).flat_map(|item| item.values_mut());
    let responses = operations.filter_map(|operation| operation.get_mut("responses")?.as_object_mut());
    for response in responses.flat_map(|responses| responses.values_mut()) {
        let Some(links) = response.get_mut("links").and_then(serde_json::Value::as_object_mut) else { continue };
        for link in links.values_mut().filter_map(serde_json::Value::as_object_mut) {
            for (snake, camel) in
                [("operation_id", "operationId"), ("operation_ref", "operationRef"), ("request_body", "requestBody")]
            {
                if let Some(value) = link.remove(snake) {
                    link.insert(camel.to_owned(), value);
                }
            }
        }
    }
}

/// Completes a generated document from the route table: the bearer scheme, each route's required scope, its
/// problem answers, and the documentation routes themselves.
pub fn complete(mut document: OpenApi, specs: &[RouteSpec]) -> OpenApi {
    document.openapi = utoipa::openapi::OpenApiVersion::Version31;
    let components = document.components.get_or_insert_with(Components::new);
    let mut bearer = Http::new(HttpAuthScheme::Bearer);
    bearer.description = Some(
        "A token from the service's AUTH_TOKENS_FILE. Each route names the scope it needs; `admin` has them all."
            .to_owned(),
    );
    components.add_security_scheme(BEARER, SecurityScheme::Http(bearer));
    let mut schemas = vec![(Problem::name().into_owned(), Problem::schema())];
    <Problem as ToSchema>::schemas(&mut schemas);
    schemas.push((ProblemCode::name().into_owned(), ProblemCode::schema()));
    components.schemas.extend(schemas);

    for spec in specs {
        if [OPENAPI_PATH, DOCS_PATH, DOCS_PAGE_PATH].contains(&spec.path) {
            document_docs_route(&mut document, spec.path);
        }
        let Some(operation) = operation_mut(&mut document, spec) else { continue };
        if let Access::Scope(scope) = spec.access {
            operation.security = Some(vec![SecurityRequirement::new(BEARER, [scope.as_str()])]);
        }
        for (status, codes) in by_status(&spec.all_problems()) {
            let problems = problem_response(status, &codes);
            match operation.responses.responses.get_mut(&status.to_string()) {
                // The handler documented this status (a health check's 503): it may also be a problem.
                Some(RefOr::T(documented)) => {
                    documented.description = format!("{}; or {}", documented.description, problems.description);
                    documented.content.extend(problems.content);
                    documented.headers.extend(problems.headers);
                }
                _ => {
                    operation.responses.responses.insert(status.to_string(), problems.into());
                }
            }
        }
    }
    document
}

/// The operation of `spec` in `document`, if the handler documented it.
fn operation_mut<'a>(document: &'a mut OpenApi, spec: &RouteSpec) -> Option<&'a mut Operation> {
    let item = document.paths.paths.get_mut(spec.path)?;
    match spec.method {
        Method::GET => item.get.as_mut(),
        Method::POST => item.post.as_mut(),
        Method::PUT => item.put.as_mut(),
        Method::PATCH => item.patch.as_mut(),
        Method::DELETE => item.delete.as_mut(),
        _ => None,
    }
}

fn by_status(codes: &[ProblemCode]) -> BTreeMap<u16, Vec<ProblemCode>> {
    let mut grouped: BTreeMap<u16, Vec<ProblemCode>> = BTreeMap::new();
    for code in codes {
        grouped.entry(code.status()).or_default().push(*code);
    }
    grouped
}

/// One status's problems: each code listed in the description and given as an example.
fn problem_response(status: u16, codes: &[ProblemCode]) -> utoipa::openapi::Response {
    let names: Vec<String> = codes.iter().map(|code| format!("`{}`", code.code())).collect();
    let examples = codes.iter().map(|code| {
        let (_, name, title) = code.describe();
        let example =
            ExampleBuilder::new().summary(title).value(Some(serde_json::json!(Problem::new(*code, title)))).build();
        (name, example)
    });
    let content =
        ContentBuilder::new().schema(Some(Ref::from_schema_name(Problem::name()))).examples_from_iter(examples).build();
    let mut response = ResponseBuilder::new()
        .description(format!("application/problem+json with `code` {}", names.join(", ")))
        .content(PROBLEM_JSON, content);
    if status == 401 {
        response = response.header(
            "WWW-Authenticate",
            HeaderBuilder::new()
                .schema(ObjectBuilder::new().schema_type(Type::String))
                .description(Some("Bearer realm=\"tally\""))
                .build(),
        );
    }
    if status == 429 || status == 503 {
        response = response.header(
            "Retry-After",
            HeaderBuilder::new()
                .schema(ObjectBuilder::new().schema_type(Type::Integer))
                .description(Some("Seconds to wait before retrying"))
                .build(),
        );
    }
    response.build()
}

/// `/openapi.json` and `/docs` are routes too: the document lists them.
fn document_docs_route(document: &mut OpenApi, path: &str) {
    let (status, content_type, description) = match path {
        OPENAPI_PATH => ("200", Some("application/json"), "This OpenAPI 3.1 document"),
        DOCS_PATH => ("303", None, "Redirects to /docs/"),
        _ => ("200", Some("text/html"), "Swagger UI for this document; its assets, under /docs/, are in the binary"),
    };
    let mut response = ResponseBuilder::new().description(description);
    if let Some(content_type) = content_type {
        response = response.content(content_type, ContentBuilder::new().build());
    }
    let operation = OperationBuilder::new()
        .tags(Some(["documentation"]))
        .summary(Some(description))
        .response(status, response)
        .build();
    document.paths.paths.insert(path.to_owned(), PathItem::new(HttpMethod::Get, operation));
}
