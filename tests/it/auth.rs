//! Bearer tokens and socket modes: who gets in.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use sessionlog::client::Connection;
use sessionlog::pb;
use sessionlog::server::ListenAddr;
use sessionlog::server::Listener;
use tonic::Code;
use tonic_health::pb::HealthCheckRequest;

use crate::common::TestServer;
use crate::common::access::server_with_tokens;

async fn list_with(server: &TestServer, token_file: Option<&Path>) -> Result<(), tonic::Status> {
    let connection = Connection::connect(&server.url(), token_file)
        .await
        .expect("connect");
    connection
        .sessions()
        .list_sessions(pb::ListSessionsRequest::default())
        .await
        .map(|_| ())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_need_a_valid_bearer_token_but_health_does_not() {
    let dir = tempfile::tempdir().expect("temp dir");
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, "# deploy bot\nalpha-token\nbeta-token\n").expect("tokens");
    let good = dir.path().join("good");
    std::fs::write(&good, "beta-token\n").expect("good");
    let bad = dir.path().join("bad");
    std::fs::write(&bad, "gamma-token\n").expect("bad");
    let server = server_with_tokens(&tokens).await;

    let missing = list_with(&server, None).await.expect_err("no token");
    assert_eq!(missing.code(), Code::Unauthenticated);
    assert!(
        missing.message().contains("Bearer"),
        "{}",
        missing.message()
    );
    let wrong = list_with(&server, Some(&bad))
        .await
        .expect_err("wrong token");
    assert_eq!(wrong.code(), Code::Unauthenticated);
    assert!(!wrong.message().contains("gamma"), "tokens never echo back");
    list_with(&server, Some(&good))
        .await
        .expect("a listed token");

    let anonymous = Connection::connect(&server.url(), None)
        .await
        .expect("connect");
    let health = anonymous
        .health()
        .check(HealthCheckRequest::default())
        .await
        .expect("health needs no token");
    assert_eq!(health.into_inner().status, 1, "SERVING");
    let channel = tonic::transport::Endpoint::from_shared(server.url())
        .expect("url")
        .connect()
        .await
        .expect("connect");
    let mut reflection =
        tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient::new(channel);
    let request = tonic_reflection::pb::v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            tonic_reflection::pb::v1::server_reflection_request::MessageRequest::ListServices(
                String::new(),
            ),
        ),
    };
    let refused = reflection
        .server_reflection_info(futures::stream::iter([request]))
        .await
        .expect_err("reflection needs a token");
    assert_eq!(refused.code(), Code::Unauthenticated);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotated_tokens_take_effect_without_a_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, "old-token\n").expect("tokens");
    let old = dir.path().join("old");
    std::fs::write(&old, "old-token\n").expect("old");
    let new = dir.path().join("new");
    std::fs::write(&new, "new-token\n").expect("new");
    let server = server_with_tokens(&tokens).await;
    list_with(&server, Some(&old))
        .await
        .expect("old token before rotation");
    std::fs::write(&tokens, "new-token\n").expect("rotate");
    // The file is checked every second; allow a few.
    let mut rotated = false;
    for _ in 0..50 {
        if list_with(&server, Some(&old)).await.is_err() {
            rotated = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(rotated, "the old token stopped working");
    list_with(&server, Some(&new))
        .await
        .expect("new token after rotation");
    server.shutdown().await;
}

#[tokio::test]
async fn unix_sockets_are_owner_and_group_only_by_default() {
    let dir = tempfile::tempdir().expect("temp dir");
    let default_path = dir.path().join("default.sock");
    let _default = Listener::bind(&ListenAddr::Unix(default_path.clone()))
        .await
        .expect("bind");
    let mode = std::fs::metadata(&default_path)
        .expect("socket")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o660);
    let private_path = dir.path().join("private.sock");
    let _private = Listener::bind_with_mode(&ListenAddr::Unix(private_path.clone()), 0o600)
        .await
        .expect("bind");
    let mode = std::fs::metadata(&private_path)
        .expect("socket")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
}
