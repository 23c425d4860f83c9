//! The session lifecycle end to end through the generated client.

mod common;

use common::{TestServer, append, read_all, start_session};
use sessionlog::pb;

#[tokio::test]
async fn start_append_read_end_get() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let id = start_session(&mut client, "smoke").await;
    assert_eq!(append(&mut client, &id, &["a", "b"]).await, (1, 2));
    assert_eq!(append(&mut client, &id, &["c"]).await, (3, 3));
    let ended = client
        .end_session(pb::EndSessionRequest {
            session_id: id.clone(),
            reason: "done".into(),
        })
        .await
        .expect("end")
        .into_inner();
    assert_eq!(ended.state(), pb::SessionState::Ended);
    assert_eq!(ended.last_seq, 4);
    let entries = read_all(&mut client, &id).await;
    let messages: Vec<_> = entries.iter().map(|e| e.message.as_str()).collect();
    assert_eq!(messages, ["a", "b", "c", "Session ended: done"]);
    server.shutdown().await;
}
