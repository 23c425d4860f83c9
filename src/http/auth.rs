//! Bearer tokens on `/api/...`: the same tokens as the gRPC edge (one
//! `TokenAuth`, reloaded once for both). Requests present
//! `Authorization: Bearer <token>`. A browser's `EventSource` cannot send
//! headers, so the SSE routes (and only they) also take `?access_token=`;
//! this server logs no request URLs, and the console's pages send
//! `Referrer-Policy: no-referrer`, so the token is not written anywhere by
//! sessionlog. The console's static files need no token. `POST /v1/logs`
//! (OTLP) takes the header only, and renders its refusal itself.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::edge::{Code, Failure, TokenAuth};

use super::error::HttpError;
use super::query::ACCESS_TOKEN;

/// Lets the request through with a valid token in the header.
pub(super) async fn header_token(
    State(auth): State<TokenAuth>,
    request: Request,
    next: Next,
) -> Response {
    let presented = bearer(&request);
    check(&auth, presented, request, next).await
}

/// Lets the request through with a valid token in the header or in the
/// `access_token` query parameter.
pub(super) async fn header_or_query_token(
    State(auth): State<TokenAuth>,
    request: Request,
    next: Next,
) -> Response {
    let presented = bearer(&request).or_else(|| query_token(&request));
    check(&auth, presented, request, next).await
}

async fn check(
    auth: &TokenAuth,
    presented: Option<Vec<u8>>,
    request: Request,
    next: Next,
) -> Response {
    match verdict(auth, presented) {
        Ok(()) => next.run(request).await,
        Err(refused) => HttpError::from(refused).into_response(),
    }
}

/// Whether the header's token lets a request through; for a route that
/// renders its own refusals (`POST /v1/logs` answers in OTLP's encoding).
pub(super) fn authorize(auth: &TokenAuth, headers: &HeaderMap) -> Result<(), Failure> {
    verdict(auth, header_bearer(headers))
}

fn verdict(auth: &TokenAuth, presented: Option<Vec<u8>>) -> Result<(), Failure> {
    if !auth.is_required() {
        return Ok(());
    }
    let refused = match presented {
        Some(token) if auth.accepts(&token) => return Ok(()),
        Some(_) => "the bearer token is not valid",
        None => "this server needs `Authorization: Bearer <token>`",
    };
    Err(Failure::new(Code::Unauthenticated, refused))
}

fn bearer(request: &Request) -> Option<Vec<u8>> {
    header_bearer(request.headers())
}

fn header_bearer(headers: &HeaderMap) -> Option<Vec<u8>> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.as_bytes().strip_prefix(b"Bearer "))
        .map(<[u8]>::to_vec)
}

fn query_token(request: &Request) -> Option<Vec<u8>> {
    let query = request.uri().query()?;
    form_urlencoded::parse(query.as_bytes())
        .find(|(key, _)| key == ACCESS_TOKEN)
        .map(|(_, value)| value.as_bytes().to_vec())
}
