//! `GET /dashboard`: the page for the people who watch the ledger (SPEC §9), with its script and style sheet.
//! All three are compiled into the binary; the page reads everything through this service's API with the token
//! it asks for, and its Content-Security-Policy lets it load and connect to this origin only.

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};

const PAGE: &str = include_str!("../../dashboard/index.html");
const SCRIPT: &str = include_str!("../../dashboard/dashboard.js");
const STYLE: &str = include_str!("../../dashboard/dashboard.css");

/// Nothing from another origin, no inline script or style, no framing, no forms posted anywhere.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

pub async fn page() -> Response {
    asset("text/html; charset=utf-8", PAGE)
}

pub async fn script() -> Response {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

pub async fn style() -> Response {
    asset("text/css; charset=utf-8", STYLE)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    // The assets change only with the binary; `no-cache` revalidates, so an upgrade is seen at once.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The page loads nothing from another host: no URL in its HTML, script or style sheet names one (the SVG
    /// namespace, an identifier that is never fetched, aside).
    #[test]
    fn the_assets_name_no_other_host() {
        for (name, text) in [("index.html", PAGE), ("dashboard.js", SCRIPT), ("dashboard.css", STYLE)] {
            let text = text.replace("http://www.w3.org/2000/svg", "");
            for marker in ["http://", "https://", "//cdn", "@import", "url("] {
                assert!(!text.contains(marker), "{name} names {marker}");
            }
        }
    }

    #[test]
    fn the_page_loads_its_script_and_style_from_this_origin() {
        assert!(PAGE.contains(r#"<script src="/dashboard/dashboard.js" defer></script>"#));
        assert!(PAGE.contains(r#"<link rel="stylesheet" href="/dashboard/dashboard.css">"#));
    }
}
