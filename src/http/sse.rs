//! The SSE streams: follow (`GET /api/v1/sessions/{id}/follow`) and watch
//! (`GET /api/v1/watch`). They run on the same machinery as gRPC `Follow`
//! and `WatchSessions` (followers take live batches from the session's
//! shared window or read the store, and wait on a signal, so they never
//! block writers), count against the same stream limits, and end when the
//! server shuts down. A batch shared from the live window is rendered to
//! JSON once for all its followers, when it fits one event.
//!
//! Follow: each batch is an unnamed event whose `id:` is the batch's
//! cursor, so a browser's automatic reconnect sends it back as
//! `Last-Event-ID` and resumes with no gap and no duplicate. A batch whose
//! JSON passes `--max-response-size` (escaping can make an entry's JSON six
//! times its stored size) goes as several events, rendered one at a time as
//! the client reads, each with the cursor after its last entry; then named
//! events `caught_up` (`id:` its cursor) and `ended` (the session; the
//! stream then closes). A failure mid-stream is one
//! `stream_error` event with the error body, then the stream closes (not
//! `error`, which `EventSource` uses for its own connection errors).

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::{Stream, StreamExt};
use prost::bytes::Bytes;
use serde::Serialize;

use crate::edge::Failure;
use crate::fanout::FollowEvent;
use crate::sessions::{SessionError, SessionView};

use super::HttpEdge;
use super::error::{ErrorBody, HttpError};
use super::json::{self, CaughtUpJson, SessionEventJson, SessionJson};
use super::query;
use super::routes::SessionPath;

/// How soon a browser reconnects after a dropped stream (its default is
/// a few seconds; a resumed follow loses nothing either way).
const RECONNECT_AFTER: Duration = Duration::from_secs(1);

/// `GET /api/v1/sessions/{id}/follow`.
pub(super) async fn follow(
    State(edge): State<HttpEdge>,
    SessionPath(id): SessionPath,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Result<Response, HttpError> {
    let last_event_id = headers
        .get("last-event-id")
        .map(|value| value.to_str().unwrap_or("not text"));
    let query = query::follow_query(&id, raw.as_deref(), last_event_id, &edge.limits)?;
    let permit = edge
        .streams
        .acquire(Some(&query.session_id), &edge.limits)?;
    let max_bytes = edge.limits.max_response_bytes;
    let events = edge.sessions.follow(query).await?.flat_map(move |event| {
        let _open = &permit;
        follow_events(event, max_bytes)
    });
    Ok(stream_response(events, edge.keep_alive))
}

/// `GET /api/v1/watch`.
pub(super) async fn watch(
    State(edge): State<HttpEdge>,
    RawQuery(raw): RawQuery,
) -> Result<Response, HttpError> {
    let query = query::watch_query(raw.as_deref(), &edge.limits)?;
    let permit = edge.streams.acquire(None, &edge.limits)?;
    let events = edge.sessions.watch(query).map(move |event| {
        let _open = &permit;
        match event {
            Ok(event) => {
                let body = SessionEventJson::from(event);
                (with_data(Event::default().event(body.kind), &body), false)
            }
            Err(err) => stream_error(err),
        }
    });
    Ok(stream_response(events, edge.keep_alive))
}

/// An event, and whether it is the last one of its stream.
type Step = (Event, bool);

fn follow_events(
    event: Result<FollowEvent<SessionView>, SessionError>,
    max_bytes: usize,
) -> futures::stream::Iter<Box<dyn Iterator<Item = Step> + Send>> {
    let steps: Box<dyn Iterator<Item = Step> + Send> = match event {
        Ok(FollowEvent::Batch(batch)) => {
            let whole = batch.shared_encoded_once::<WholeBatchJson>(|entries, cursor| {
                WholeBatchJson::render(entries, cursor, max_bytes)
            });
            match whole.as_deref().map(std::str::from_utf8) {
                Some(Ok(data)) if !data.is_empty() => Box::new(std::iter::once((
                    Event::default().id(batch.cursor().to_string()).data(data),
                    false,
                ))),
                _ => Box::new(BatchEvents {
                    cursor: batch.cursor(),
                    entries: batch.entries().to_vec().into_iter(),
                    max_bytes,
                    pending: None,
                }),
            }
        }
        Ok(FollowEvent::CaughtUp { cursor }) => Box::new(std::iter::once((
            with_data(
                Event::default().event("caught_up").id(cursor.to_string()),
                &CaughtUpJson { cursor },
            ),
            false,
        ))),
        Ok(FollowEvent::Ended(view)) => Box::new(std::iter::once((
            with_data(Event::default().event("ended"), &SessionJson::from(view)),
            true,
        ))),
        Err(err) => Box::new(std::iter::once(stream_error(err))),
    };
    futures::stream::iter(steps)
}

/// A batch as the data of one event, rendered once for every follower
/// that sends the same batch from the live window (the key of
/// `FollowBatch::encoded_once`).
struct WholeBatchJson;

impl WholeBatchJson {
    /// The batch's event data; empty when its entries' JSON passes
    /// `max_bytes` (it goes as several events, see `BatchEvents`) or one
    /// does not decode (`BatchEvents` reports it). Stops rendering as soon
    /// as it knows. `max_bytes` is the server's: every follower of a
    /// window shares it.
    fn render(entries: &[sled::IVec], cursor: u64, max_bytes: usize) -> Bytes {
        let mut texts = Vec::with_capacity(entries.len());
        let mut bytes = 0usize;
        for raw in entries {
            let Ok(entry) = json::decode_entry(raw) else {
                return Bytes::new();
            };
            let text = serde_json::to_string(&entry).unwrap_or_else(|_| "{}".to_owned());
            bytes = bytes.saturating_add(text.len().saturating_add(1));
            if bytes > max_bytes {
                return Bytes::new();
            }
            texts.push(text);
        }
        Bytes::from(json::batch_json(&texts, cursor))
    }
}

/// A follower's batch as events of at most `max_bytes` of entries' JSON
/// (at least one entry each), rendered one event at a time as the stream
/// is polled, so a client that stops reading holds the batch as stored and
/// one rendered event, never the whole batch rendered.
struct BatchEvents<E> {
    entries: std::vec::IntoIter<E>,
    /// The batch's cursor: the last event's `id:`.
    cursor: u64,
    max_bytes: usize,
    /// An entry rendered for an event it did not fit in, with its seq.
    pending: Option<Result<(u64, String), Failure>>,
}

impl<E: AsRef<[u8]>> BatchEvents<E> {
    fn render_next(&mut self) -> Option<Result<(u64, String), Failure>> {
        if let Some(pending) = self.pending.take() {
            return Some(pending);
        }
        let raw = self.entries.next()?;
        Some(json::decode_entry(raw.as_ref()).map(|entry| {
            let text = serde_json::to_string(&entry).unwrap_or_else(|_| "{}".to_owned());
            (entry.seq, text)
        }))
    }
}

impl<E: AsRef<[u8]>> Iterator for BatchEvents<E> {
    type Item = Step;

    fn next(&mut self) -> Option<Step> {
        let mut texts = Vec::new();
        let (mut bytes, mut last_seq) = (0usize, 0);
        while let Some(rendered) = self.render_next() {
            let (seq, text) = match rendered {
                Ok(rendered) => rendered,
                Err(failure) if texts.is_empty() => {
                    self.entries = Vec::new().into_iter();
                    return Some(stream_error(failure));
                }
                Err(failure) => {
                    self.pending = Some(Err(failure));
                    break;
                }
            };
            let weight = text.len().saturating_add(1);
            if !texts.is_empty() && bytes.saturating_add(weight) > self.max_bytes {
                self.pending = Some(Ok((seq, text)));
                break;
            }
            bytes = bytes.saturating_add(weight);
            last_seq = seq;
            texts.push(text);
        }
        if texts.is_empty() {
            return None;
        }
        let more = self.pending.is_some() || self.entries.len() > 0;
        let cursor = if more { last_seq } else { self.cursor };
        let event = Event::default().id(cursor.to_string());
        Some((event.data(json::batch_json(&texts, cursor)), false))
    }
}

fn stream_error(failure: impl Into<Failure>) -> Step {
    let failure = failure.into();
    (
        with_data(
            Event::default().event("stream_error"),
            &ErrorBody::new(&failure),
        ),
        true,
    )
}

fn with_data(event: Event, body: &impl Serialize) -> Event {
    // Serializing these plain structs cannot fail; an empty object keeps the
    // stream well-formed if it ever did.
    event.data(serde_json::to_string(body).unwrap_or_else(|_| "{}".to_owned()))
}

/// The SSE response: a `retry:` hint first, then `steps` up to and
/// including the last one, with `:keep-alive` comments while idle so
/// proxies do not cut the stream.
fn stream_response(
    steps: impl Stream<Item = Step> + Send + 'static,
    keep_alive: Duration,
) -> Response {
    let mut finished = false;
    let events = steps
        .take_while(move |(_, last)| {
            let go_on = !finished;
            finished = *last;
            std::future::ready(go_on)
        })
        .map(|(event, _)| event);
    let events = futures::stream::once(async { Event::default().retry(RECONNECT_AFTER) })
        .chain(events)
        .map(Ok::<_, Infallible>);
    let mut response = Sse::new(events)
        .keep_alive(KeepAlive::new().interval(keep_alive).text("keep-alive"))
        .into_response();
    // nginx and similar proxies buffer responses unless told not to.
    response
        .headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}
