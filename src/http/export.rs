//! `GET /api/v1/sessions/{id}/export?format=text|ndjson`: a whole session
//! as a download, streamed (chunked) a store page at a time, so memory
//! stays at one page whatever the session's size. The export ends at the
//! session's `last_seq` as of the request. Text is `TIME LEVEL LOGGER:
//! MESSAGE` per entry (the message as stored, so a multi-line message
//! spans lines); ndjson is each entry's JSON, as the entry pages render
//! it, one per line. A store error mid-way cuts the response off (no
//! final chunk), so a client never takes a partial file for a whole one.

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use futures::StreamExt as _;
use prost::bytes::Bytes;

use crate::display::{level_name, time_text};
use crate::edge::request::session_id;
use crate::sessions::{MAX_READ_LIMIT, ReadQuery, SessionManager};
use crate::store::schema::StoredEntry;

use super::HttpEdge;
use super::error::HttpError;
use super::json::EntryJson;
use super::query::{self, ExportFormat};
use super::routes::SessionPath;

/// The entries, encoded, one page of an export holds at most.
const PAGE_BYTES: usize = 1 << 20;

/// `GET /api/v1/sessions/{id}/export`.
pub(super) async fn export(
    State(edge): State<HttpEdge>,
    SessionPath(id): SessionPath,
    RawQuery(raw): RawQuery,
) -> Result<Response, HttpError> {
    let format = query::export_format(raw.as_deref())?;
    let view = edge.sessions.get(session_id(&id)?)?;
    // An export is a stream like a follow: it counts against
    // --max-streams until its last page is sent.
    let permit = edge.streams.acquire(None, &edge.limits)?;
    let (content_type, extension) = match format {
        ExportFormat::Text => ("text/plain; charset=utf-8", "log"),
        ExportFormat::Ndjson => ("application/x-ndjson", "ndjson"),
    };
    let disposition = format!(
        "attachment; filename=\"{}.{extension}\"",
        file_name(&view.record.id)
    );
    let pages = pages(edge.sessions.clone(), id, view.counters.last_seq, format).map(move |page| {
        let _open = &permit;
        page
    });
    Ok((
        [
            (header::CONTENT_TYPE, content_type.to_owned()),
            (header::CONTENT_DISPOSITION, disposition),
            (header::CACHE_CONTROL, "no-store".to_owned()),
        ],
        Body::from_stream(pages),
    )
        .into_response())
}

/// The session's entries through `through_seq`, a rendered page at a time.
fn pages(
    sessions: SessionManager,
    session_id: String,
    through_seq: u64,
    format: ExportFormat,
) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
    futures::stream::unfold(Some(0u64), move |cursor| {
        let (sessions, session_id) = (sessions.clone(), session_id.clone());
        async move {
            let cursor = cursor.filter(|cursor| *cursor < through_seq)?;
            let query = ReadQuery {
                session_id,
                after_seq: cursor,
                limit: u32::try_from(MAX_READ_LIMIT).unwrap_or(u32::MAX),
                max_bytes: PAGE_BYTES,
                ..ReadQuery::default()
            };
            match sessions.read(query).await {
                Ok(page) if page.next_cursor > cursor => {
                    let mut text = String::new();
                    for entry in page.entries.into_iter().filter(|e| e.seq <= through_seq) {
                        render(&mut text, entry, format);
                    }
                    Some((Ok(Bytes::from(text)), Some(page.next_cursor)))
                }
                // Nothing past the cursor any more (trimmed or deleted).
                Ok(_) => None,
                Err(err) => {
                    tracing::warn!(error = %err, "an export stopped");
                    Some((Err(std::io::Error::other("the export stopped")), None))
                }
            }
        }
    })
}

fn render(text: &mut String, entry: StoredEntry, format: ExportFormat) {
    match format {
        ExportFormat::Text => {
            text.push_str(&format!(
                "{} {} {}: {}\n",
                time_text(entry.timestamp.as_ref()),
                level_name(entry.level).to_uppercase(),
                entry.logger,
                entry.message
            ));
        }
        ExportFormat::Ndjson => {
            // Rendering plain data to JSON does not fail.
            if let Ok(line) = serde_json::to_string(&EntryJson::from(entry)) {
                text.push_str(&line);
                text.push('\n');
            }
        }
    }
}

/// `id` as a file name: characters other than letters, digits, `.`, `-`
/// and `_` (the `:` ids may hold) become `_`.
fn file_name(id: &str) -> String {
    id.chars()
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '.' | '-' | '_' => c,
            _ => '_',
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_keep_only_safe_characters() {
        assert_eq!(file_name("pod:container.1"), "pod_container.1");
    }
}
