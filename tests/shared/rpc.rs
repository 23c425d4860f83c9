//! The calls most tests make on the way to what they check: start a
//! session, append, read everything back, get it, end it. Each fails the
//! test when the call fails.

use sessionlog::pb;

use super::Client;

/// Starts a session with this app name and returns its id.
pub(crate) async fn start_session(client: &mut Client, app_name: &str) -> String {
    client
        .start_session(pb::StartSessionRequest {
            app_name: app_name.to_owned(),
            ..Default::default()
        })
        .await
        .expect("start session")
        .into_inner()
        .id
}

/// An entry with this message at info level.
pub(crate) fn entry(message: impl Into<String>) -> pb::LogEntry {
    pb::LogEntry {
        level: pb::Level::Info.into(),
        logger: "test".to_owned(),
        message: message.into(),
        ..Default::default()
    }
}

/// Appends `messages` as one batch; returns (first_seq, last_seq).
pub(crate) async fn append(client: &mut Client, session_id: &str, messages: &[&str]) -> (u64, u64) {
    let response = client
        .append(pb::AppendRequest {
            session_id: session_id.to_owned(),
            entries: messages.iter().map(|m| entry(*m)).collect(),
            ..Default::default()
        })
        .await
        .expect("append")
        .into_inner();
    (response.first_seq, response.last_seq)
}

/// Every entry of a session, paging with `Read`.
pub(crate) async fn read_all(client: &mut Client, session_id: &str) -> Vec<pb::LogEntry> {
    let mut entries = Vec::new();
    let mut after_seq = 0;
    loop {
        let page = client
            .read(pb::ReadRequest {
                session_id: session_id.to_owned(),
                after_seq,
                ..Default::default()
            })
            .await
            .expect("read")
            .into_inner();
        let done = page.next_cursor == after_seq
            || page.next_cursor >= page.last_seq && page.entries.is_empty();
        entries.extend(page.entries);
        if done || page.next_cursor >= page.last_seq {
            return entries;
        }
        after_seq = page.next_cursor;
    }
}

/// The session as `GetSession` returns it now.
pub(crate) async fn get_session(client: &mut Client, session_id: &str) -> pb::Session {
    client
        .get_session(pb::GetSessionRequest {
            session_id: session_id.to_owned(),
        })
        .await
        .expect("get session")
        .into_inner()
}

/// Ends a session with `reason`; returns the ended session.
pub(crate) async fn end_session(
    client: &mut Client,
    session_id: &str,
    reason: &str,
) -> pb::Session {
    client
        .end_session(pb::EndSessionRequest {
            session_id: session_id.to_owned(),
            reason: reason.to_owned(),
        })
        .await
        .expect("end session")
        .into_inner()
}
