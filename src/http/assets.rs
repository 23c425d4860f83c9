//! The web console's files, embedded in the binary (no build step, no
//! separate web server): `/` and `/assets/*`. The script is kept in one
//! file per view and served as one (`console.js` first: it holds
//! `'use strict'` and the helpers the others use). Each answer carries its
//! content type, a restrictive `Content-Security-Policy` (scripts, styles
//! and connections from this origin only, nothing inline, no framing),
//! `Referrer-Policy: no-referrer`, and `Cache-Control: no-cache` with an
//! `ETag` of the content: a browser revalidates, and gets the new console
//! right after an upgrade.

use std::sync::OnceLock;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

const INDEX_HTML: &str = include_str!("console/index.html");
const CONSOLE_JS: &str = concat!(
    include_str!("console/console.js"),
    include_str!("console/colours.js"),
    include_str!("console/list.js"),
    include_str!("console/session.js"),
    include_str!("console/around.js"),
    include_str!("console/search.js"),
);
const CONSOLE_CSS: &str = include_str!("console/console.css");

const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// One embedded file.
#[derive(Debug)]
struct Asset {
    body: &'static str,
    content_type: &'static str,
    etag: OnceLock<HeaderValue>,
}

impl Asset {
    const fn new(body: &'static str, content_type: &'static str) -> Self {
        Self {
            body,
            content_type,
            etag: OnceLock::new(),
        }
    }

    fn etag(&self) -> &HeaderValue {
        self.etag.get_or_init(|| {
            let digest = ring::digest::digest(&ring::digest::SHA256, self.body.as_bytes());
            let hex = crate::display::hex(&digest.as_ref()[..12]);
            HeaderValue::from_str(&format!("\"{hex}\"")).expect("hex digits are a valid header")
        })
    }

    fn respond(&self, request_headers: &HeaderMap) -> Response {
        let etag = self.etag().clone();
        let fresh = request_headers
            .get(header::IF_NONE_MATCH)
            .is_some_and(|tag| tag == etag);
        let mut response = if fresh {
            StatusCode::NOT_MODIFIED.into_response()
        } else {
            ([(header::CONTENT_TYPE, self.content_type)], self.body).into_response()
        };
        let headers = response.headers_mut();
        headers.insert(header::ETAG, etag);
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        );
        headers.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        headers.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        );
        response
    }
}

static INDEX: Asset = Asset::new(INDEX_HTML, "text/html; charset=utf-8");
static SCRIPT: Asset = Asset::new(CONSOLE_JS, "text/javascript; charset=utf-8");
static STYLE: Asset = Asset::new(CONSOLE_CSS, "text/css; charset=utf-8");

/// `GET /`.
pub(super) async fn index(headers: HeaderMap) -> Response {
    INDEX.respond(&headers)
}

/// `GET /assets/console.js`.
pub(super) async fn script(headers: HeaderMap) -> Response {
    SCRIPT.respond(&headers)
}

/// `GET /assets/console.css`.
pub(super) async fn style(headers: HeaderMap) -> Response {
    STYLE.respond(&headers)
}
