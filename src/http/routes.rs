//! The JSON read routes: each handler parses the query, calls the rules,
//! and renders the answer, as the gRPC handlers do.

use axum::extract::{FromRequestParts, Path, RawQuery, State};
use axum::http::header;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::edge::budget::take_within;
use crate::edge::request::{encode_page_token, session_id};
use crate::edge::{Code, Failure};

use super::HttpEdge;
use super::error::HttpError;
use super::json::{self, EntriesJson, EntryJson, ListJson, SessionJson, json_item_len};
use super::query;

/// A 200 with `body` as JSON.
pub(super) fn json_response(body: &impl Serialize) -> Response {
    match serde_json::to_string(body) {
        Ok(text) => ([(header::CONTENT_TYPE, json::CONTENT_TYPE)], text).into_response(),
        Err(err) => {
            tracing::error!(error = %err, "cannot render a JSON answer");
            HttpError::from(Failure::new(Code::Internal, "cannot render the answer"))
                .into_response()
        }
    }
}

/// The `{id}` of a session's route, percent-decoded. A path that does not
/// decode (`%FF`) gets the JSON error of any other bad request instead of
/// axum's plain-text one.
#[derive(Debug)]
pub(super) struct SessionPath(pub(super) String);

impl<S: Send + Sync> FromRequestParts<S> for SessionPath {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Path::<String>::from_request_parts(parts, state).await {
            Ok(Path(id)) => Ok(Self(id)),
            Err(rejection) => Err(HttpError::from(Failure::new(
                Code::InvalidArgument,
                format!(
                    "the session id in the path is not valid: {}",
                    rejection.body_text()
                ),
            ))),
        }
    }
}

/// `GET /api/v1/sessions`.
pub(super) async fn list(
    State(edge): State<HttpEdge>,
    RawQuery(raw): RawQuery,
) -> Result<Response, HttpError> {
    let page = edge
        .sessions
        .list(&query::list_query(raw.as_deref(), &edge.limits)?);
    let sessions = page.sessions.into_iter().map(SessionJson::from);
    let (sessions, cut) = take_within(sessions, edge.limits.max_response_bytes, json_item_len);
    // Cut by the budget: the next page starts after the last one sent.
    let next_after_id = if cut {
        sessions.last().map(|last| last.id.clone())
    } else {
        page.next_after_id
    };
    Ok(json_response(&ListJson {
        sessions,
        next_page_token: next_after_id
            .map(|id| encode_page_token(&id))
            .unwrap_or_default(),
    }))
}

/// `GET /api/v1/sessions/{id}`.
pub(super) async fn get(
    State(edge): State<HttpEdge>,
    SessionPath(id): SessionPath,
    RawQuery(raw): RawQuery,
) -> Result<Response, HttpError> {
    query::Params::parse(raw.as_deref(), &[])?;
    let view = edge.sessions.get(session_id(&id)?)?;
    Ok(json_response(&SessionJson::from(view)))
}

/// `GET /api/v1/sessions/{id}/entries`.
pub(super) async fn entries(
    State(edge): State<HttpEdge>,
    SessionPath(id): SessionPath,
    RawQuery(raw): RawQuery,
) -> Result<Response, HttpError> {
    let read = query::read_query(&id, raw.as_deref(), &edge.limits)?;
    let page = edge.sessions.read(read).await?;
    let entries = page.entries.into_iter().map(EntryJson::from);
    let (entries, cut) = take_within(entries, edge.limits.max_response_bytes, json_item_len);
    // Cut by the budget: the next page starts after the last one sent.
    let next_cursor = match entries.last() {
        Some(last) if cut => last.seq,
        _ => page.next_cursor,
    };
    Ok(json_response(&EntriesJson {
        entries,
        next_cursor,
        last_seq: page.last_seq,
        state: json::state(page.state),
    }))
}

/// Any other path.
pub(super) async fn unknown_route() -> HttpError {
    HttpError::from(Failure::new(
        Code::NotFound,
        "no such route; the API is under /api/v1 (docs/http.md)",
    ))
}
