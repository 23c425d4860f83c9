//! `GET /api/v1/search`: the gRPC `Search` as one JSON answer,
//! `{"hits": [{"session_id", "entry"}], "summary": {...}}`, within the
//! response budget: hits past it are left out and the summary says
//! `limit_reached`, as when the limit stops the search.

use std::pin::pin;

use axum::extract::{RawQuery, State};
use axum::response::Response;
use futures::StreamExt;
use serde::Serialize;

use crate::sessions::{SearchEvent, SearchSummary};

use super::HttpEdge;
use super::error::HttpError;
use super::json::{EntryJson, decode_entry, json_item_len};
use super::query;
use super::routes::json_response;

/// A `SearchHit`.
#[derive(Debug, Serialize)]
struct HitJson {
    session_id: String,
    entry: EntryJson,
}

/// A `SearchSummary`.
#[derive(Debug, Serialize)]
struct SummaryJson {
    sessions_scanned: u64,
    entries_scanned: u64,
    bytes_scanned: u64,
    limit_reached: bool,
}

/// A `SearchResponse`: every hit, and the summary.
#[derive(Debug, Serialize)]
struct SearchJson {
    hits: Vec<HitJson>,
    summary: SummaryJson,
}

/// `GET /api/v1/search`.
pub(super) async fn search(
    State(edge): State<HttpEdge>,
    RawQuery(raw): RawQuery,
) -> Result<Response, HttpError> {
    let query = query::search_query(raw.as_deref(), &edge.limits)?;
    let _open = edge.streams.acquire(None, &edge.limits)?;
    let max_bytes = edge.limits.max_response_bytes;
    let mut events = pin!(edge.sessions.search(query));
    let (mut hits, mut hit_bytes, mut cut) = (Vec::new(), 0usize, false);
    let mut summary = SearchSummary::default();
    while let Some(event) = events.next().await {
        match event? {
            SearchEvent::Hits {
                session_id,
                entries,
            } => {
                for bytes in entries.iter().take_while(|_| !cut) {
                    let hit = HitJson {
                        session_id: session_id.to_string(),
                        entry: decode_entry(bytes)?,
                    };
                    let weight = json_item_len(&hit);
                    if !hits.is_empty() && hit_bytes.saturating_add(weight) > max_bytes {
                        // The search goes on to its limit for the counts;
                        // nothing more is kept.
                        cut = true;
                        break;
                    }
                    hit_bytes = hit_bytes.saturating_add(weight);
                    hits.push(hit);
                }
            }
            SearchEvent::Done(done) => summary = done,
        }
    }
    Ok(json_response(&SearchJson {
        hits,
        summary: SummaryJson {
            sessions_scanned: summary.sessions_scanned,
            entries_scanned: summary.entries_scanned,
            bytes_scanned: summary.bytes_scanned,
            limit_reached: summary.limit_reached || cut,
        },
    }))
}
