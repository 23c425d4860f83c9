//! A session as the contract carries it: a `StartSession` request checked
//! against the limits into the record the rules store, and a session's view
//! back as the contract's message.

use crate::pb;
use crate::sessions::SessionView;
use crate::store::schema::{State, StoredSession};

use super::error::{RequestError, invalid};
use super::limits::Limits;
use super::request::optional_id;

/// A new session's record, checked against the limits.
pub(crate) fn new_session(
    request: pb::StartSessionRequest,
    limits: &Limits,
) -> Result<StoredSession, RequestError> {
    optional_id("session_id", &request.session_id)?;
    optional_id("parent_session_id", &request.parent_session_id)?;
    limits.name("app_name", &request.app_name)?;
    limits.name("mode", &request.mode)?;
    limits.name("platform", &request.platform)?;
    limits.name("job_id", &request.job_id)?;
    limits.metadata(request.metadata.as_ref())?;
    if let Some(ttl) = &request.lease_ttl
        && std::time::Duration::try_from(*ttl).is_err()
    {
        return Err(invalid(
            "lease_ttl",
            "must be a non-negative, normalized duration",
        ));
    }
    Ok(StoredSession {
        id: request.session_id,
        app_name: request.app_name,
        mode: request.mode,
        platform: request.platform,
        client_pid: request.client_pid,
        parent_session_id: request.parent_session_id,
        job_id: request.job_id,
        metadata: request.metadata,
        lease_ttl: request.lease_ttl,
        ..StoredSession::default()
    })
}

/// A session's view as the contract's message.
pub(crate) fn session(view: SessionView) -> pb::Session {
    let SessionView {
        record, counters, ..
    } = view;
    pb::Session {
        state: record.state,
        id: record.id,
        app_name: record.app_name,
        mode: record.mode,
        platform: record.platform,
        client_pid: record.client_pid,
        parent_session_id: record.parent_session_id,
        job_id: record.job_id,
        metadata: record.metadata,
        created_at: record.created_at,
        updated_at: record.updated_at,
        ended_at: record.ended_at,
        end_reason: record.end_reason,
        last_seq: counters.last_seq,
        entry_count: counters.entry_count,
        size_bytes: counters.size_bytes,
        lease_ttl: record.lease_ttl,
    }
}

/// A session state as the contract's enum.
pub(crate) fn session_state(state: State) -> pb::SessionState {
    match state {
        State::Unspecified => pb::SessionState::Unspecified,
        State::Active => pb::SessionState::Active,
        State::Ended => pb::SessionState::Ended,
    }
}
