//! `sessionlog.v1.SessionLog`: each handler converts the request, calls the
//! rules, and converts the answer back.

use std::pin::Pin;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use prost::Message;
use tonic::{Request, Response, Status, Streaming};

use crate::edge::{Limits, StreamCounter};
use crate::pb::{self, session_log_server::SessionLog};
use crate::sessions::SessionManager;
use crate::store::entry_wire_len;

use super::convert;
use super::wire::{EncodedFollowResponse, WireAppendRequest};
use crate::edge::budget::take_within;
use crate::edge::entry::log_entry;
use crate::edge::request::{encode_page_token, session_id};
use crate::edge::session::{new_session, session, session_state};

type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// The gRPC service over a `SessionManager`.
#[derive(Debug, Clone)]
pub(crate) struct SessionLogService {
    sessions: SessionManager,
    limits: Arc<Limits>,
    streams: Arc<StreamCounter>,
}

impl SessionLogService {
    /// A service that counts its streams in `streams`, shared with the
    /// other edges so `--max-streams` bounds them all together.
    pub(crate) fn with_streams(
        sessions: SessionManager,
        limits: Arc<Limits>,
        streams: Arc<StreamCounter>,
    ) -> Self {
        Self {
            sessions,
            limits,
            streams,
        }
    }
}

async fn append(
    sessions: &SessionManager,
    limits: &Limits,
    request: WireAppendRequest,
) -> Result<pb::AppendResponse, Status> {
    let outcome = sessions
        .append(convert::append_batch(request, limits)?)
        .await?;
    Ok(pb::AppendResponse {
        first_seq: outcome.first_seq,
        last_seq: outcome.last_seq,
        duplicate: outcome.duplicate,
    })
}

#[tonic::async_trait]
impl SessionLog for SessionLogService {
    async fn start_session(
        &self,
        request: Request<pb::StartSessionRequest>,
    ) -> Result<Response<pb::Session>, Status> {
        let draft = new_session(request.into_inner(), &self.limits)?;
        let view = self.sessions.start(draft).await?;
        Ok(Response::new(session(view)))
    }

    async fn update_session(
        &self,
        request: Request<pb::UpdateSessionRequest>,
    ) -> Result<Response<pb::Session>, Status> {
        let request = request.into_inner();
        let id = session_id(&request.session_id)?;
        self.limits.metadata(request.metadata.as_ref())?;
        // The limits hold for the merged metadata too, or nothing changes.
        let limits = self.limits.clone();
        let check = move |merged: Option<&_>| {
            limits
                .metadata(merged)
                .map_err(|err| format!("{err}, once merged into the session's"))
        };
        let view = self.sessions.update(id, request.metadata, check).await?;
        Ok(Response::new(session(view)))
    }

    async fn end_session(
        &self,
        request: Request<pb::EndSessionRequest>,
    ) -> Result<Response<pb::Session>, Status> {
        let request = request.into_inner();
        let id = session_id(&request.session_id)?;
        self.limits.text("reason", &request.reason)?;
        let view = self.sessions.end(id, &request.reason).await?;
        Ok(Response::new(session(view)))
    }

    async fn heartbeat(
        &self,
        request: Request<pb::HeartbeatRequest>,
    ) -> Result<Response<pb::HeartbeatResponse>, Status> {
        let request = request.into_inner();
        let expires_at = self
            .sessions
            .heartbeat(session_id(&request.session_id)?)
            .await?;
        Ok(Response::new(pb::HeartbeatResponse {
            lease_expires_at: expires_at.map(Into::into),
        }))
    }

    async fn get_session(
        &self,
        request: Request<pb::GetSessionRequest>,
    ) -> Result<Response<pb::Session>, Status> {
        let request = request.into_inner();
        let view = self.sessions.get(session_id(&request.session_id)?)?;
        Ok(Response::new(session(view)))
    }

    async fn list_sessions(
        &self,
        request: Request<pb::ListSessionsRequest>,
    ) -> Result<Response<pb::ListSessionsResponse>, Status> {
        let page = self
            .sessions
            .list(&convert::list_query(request.into_inner(), &self.limits)?);
        let sessions = page.sessions.into_iter().map(session);
        let (sessions, cut) = take_within(sessions, self.limits.max_response_bytes, |session| {
            entry_wire_len(session.encoded_len())
        });
        // Cut by the budget: the next page starts after the last one sent.
        let next_after_id = if cut {
            sessions.last().map(|last| last.id.clone())
        } else {
            page.next_after_id
        };
        Ok(Response::new(pb::ListSessionsResponse {
            sessions,
            next_page_token: next_after_id
                .map(|id| encode_page_token(&id))
                .unwrap_or_default(),
        }))
    }

    async fn delete_session(
        &self,
        request: Request<pb::DeleteSessionRequest>,
    ) -> Result<Response<pb::DeleteSessionResponse>, Status> {
        let request = request.into_inner();
        let id = session_id(&request.session_id)?;
        self.sessions.delete(id, request.force).await?;
        Ok(Response::new(pb::DeleteSessionResponse {}))
    }

    async fn append(
        &self,
        request: Request<WireAppendRequest>,
    ) -> Result<Response<pb::AppendResponse>, Status> {
        append(&self.sessions, &self.limits, request.into_inner())
            .await
            .map(Response::new)
    }

    type AppendStreamStream = ResponseStream<pb::AppendResponse>;

    /// Requests are handled one at a time, in order; the first failure ends
    /// the stream with its status (earlier batches stay stored).
    async fn append_stream(
        &self,
        request: Request<Streaming<WireAppendRequest>>,
    ) -> Result<Response<Self::AppendStreamStream>, Status> {
        let inbound = request.into_inner();
        let sessions = self.sessions.clone();
        let limits = self.limits.clone();
        let responses = futures::stream::unfold(Some(inbound), move |inbound| {
            let sessions = sessions.clone();
            let limits = limits.clone();
            async move {
                let mut inbound = inbound?;
                let result = match inbound.next().await? {
                    Ok(request) => append(&sessions, &limits, request).await,
                    Err(status) => Err(status),
                };
                let inbound = result.is_ok().then_some(inbound);
                Some((result, inbound))
            }
        });
        Ok(Response::new(Box::pin(responses)))
    }

    async fn read(
        &self,
        request: Request<pb::ReadRequest>,
    ) -> Result<Response<pb::ReadResponse>, Status> {
        let page = self
            .sessions
            .read(convert::read_query(request.into_inner(), &self.limits)?)
            .await?;
        Ok(Response::new(pb::ReadResponse {
            entries: page.entries.into_iter().map(log_entry).collect(),
            next_cursor: page.next_cursor,
            last_seq: page.last_seq,
            state: session_state(page.state).into(),
        }))
    }

    type FollowStream = ResponseStream<EncodedFollowResponse>;

    async fn follow(
        &self,
        request: Request<pb::FollowRequest>,
    ) -> Result<Response<Self::FollowStream>, Status> {
        let query = convert::follow_query(request.into_inner(), &self.limits)?;
        let permit = self
            .streams
            .acquire(Some(&query.session_id), &self.limits)?;
        let events = self.sessions.follow(query).await?;
        let responses = events.map(move |event| {
            let _open = &permit;
            event.map(convert::follow_response).map_err(Status::from)
        });
        Ok(Response::new(Box::pin(responses)))
    }

    type WatchSessionsStream = ResponseStream<pb::SessionEvent>;

    async fn watch_sessions(
        &self,
        request: Request<pb::WatchSessionsRequest>,
    ) -> Result<Response<Self::WatchSessionsStream>, Status> {
        let query = convert::watch_query(request.into_inner(), &self.limits)?;
        let permit = self.streams.acquire(None, &self.limits)?;
        let events = self.sessions.watch(query);
        let responses = events.map(move |event| {
            let _open = &permit;
            event.map(convert::session_event).map_err(Status::from)
        });
        Ok(Response::new(Box::pin(responses)))
    }

    type SearchStream = ResponseStream<pb::SearchResponse>;

    /// Counted against the stream limit like a follow; dropped by the
    /// client, it stops scanning.
    async fn search(
        &self,
        request: Request<pb::SearchRequest>,
    ) -> Result<Response<Self::SearchStream>, Status> {
        let query = convert::search_query(request.into_inner(), &self.limits)?;
        let permit = self.streams.acquire(None, &self.limits)?;
        let max_bytes = self.limits.max_response_bytes;
        let responses = self.sessions.search(query).flat_map(move |event| {
            let _open = &permit;
            let messages = event.and_then(|event| convert::search_responses(event, max_bytes));
            futures::stream::iter(match messages {
                Ok(messages) => messages.into_iter().map(Ok).collect(),
                Err(err) => vec![Err(Status::from(err))],
            })
        });
        Ok(Response::new(Box::pin(responses)))
    }
}
