//! The standard services on the API port (health, reflection), and serving
//! on a Unix socket.

use std::path::{Path, PathBuf};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use prost::Message;
use sessionlog::pb;
use sessionlog::pb::session_log_client::SessionLogClient;
use sessionlog::server::{ListenAddr, Listener, Listeners, serve};
use tokio::sync::oneshot;
use tonic::Code;
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_reflection::pb::{v1, v1alpha};

use crate::common;
use crate::common::FsyncPolicy;
use crate::common::{TestServer, append, read_all, start_session};

const SERVICE: &str = "sessionlog.v1.SessionLog";

async fn channel(server: &TestServer) -> Channel {
    Endpoint::from_shared(server.url())
        .expect("endpoint")
        .connect()
        .await
        .expect("connect")
}

async fn health_status(channel: Channel, service: &str) -> Result<ServingStatus, tonic::Status> {
    let response = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: service.to_owned(),
        })
        .await?
        .into_inner();
    Ok(response.status())
}

#[tokio::test]
async fn health_reports_serving_for_the_server_and_the_sessionlog_service() {
    let server = TestServer::start().await;
    let channel = channel(&server).await;
    for service in ["", SERVICE] {
        assert_eq!(
            health_status(channel.clone(), service)
                .await
                .expect("health check"),
            ServingStatus::Serving,
            "service {service:?}"
        );
    }
    let unknown = health_status(channel.clone(), "no.such.Service")
        .await
        .expect_err("an unknown service is not reported");
    assert_eq!(unknown.code(), Code::NotFound);

    // The API answers on the same channel.
    let mut client = SessionLogClient::new(channel);
    start_session(&mut client, "same-channel").await;
    server.shutdown().await;
}

#[tokio::test]
async fn reflection_v1_lists_the_sessionlog_service_and_describes_it() {
    let server = TestServer::start().await;
    let mut reflection =
        v1::server_reflection_client::ServerReflectionClient::new(channel(&server).await);
    let request = |message_request| v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(message_request),
    };
    let requests = vec![
        request(v1::server_reflection_request::MessageRequest::ListServices(
            String::new(),
        )),
        request(
            v1::server_reflection_request::MessageRequest::FileContainingSymbol(SERVICE.to_owned()),
        ),
    ];
    let mut responses = reflection
        .server_reflection_info(futures::stream::iter(requests))
        .await
        .expect("reflection stream")
        .into_inner();

    let listed = responses
        .message()
        .await
        .expect("list response")
        .expect("one response per request");
    let Some(v1::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
        listed.message_response
    else {
        panic!("not a list-services response: {listed:?}");
    };
    let names: Vec<&str> = list.service.iter().map(|s| s.name.as_str()).collect();
    assert!(names.contains(&SERVICE), "{names:?}");
    assert!(names.contains(&"grpc.health.v1.Health"), "{names:?}");

    let described = responses
        .message()
        .await
        .expect("file response")
        .expect("one response per request");
    let Some(v1::server_reflection_response::MessageResponse::FileDescriptorResponse(files)) =
        described.message_response
    else {
        panic!("not a file-descriptor response: {described:?}");
    };
    let service = files
        .file_descriptor_proto
        .iter()
        .map(|bytes| prost_types::FileDescriptorProto::decode(bytes.as_slice()).expect("decodes"))
        .filter(|file| file.package() == "sessionlog.v1")
        .flat_map(|file| file.service)
        .find(|service| service.name() == "SessionLog")
        .expect("the file declares sessionlog.v1.SessionLog");
    let methods: Vec<&str> = service.method.iter().map(|m| m.name()).collect();
    for rpc in [
        "StartSession",
        "UpdateSession",
        "EndSession",
        "Heartbeat",
        "GetSession",
        "ListSessions",
        "DeleteSession",
        "Append",
        "AppendStream",
        "Read",
        "Follow",
        "WatchSessions",
    ] {
        assert!(methods.contains(&rpc), "{rpc} missing from {methods:?}");
    }
    server.shutdown().await;
}

#[tokio::test]
async fn reflection_v1alpha_lists_the_sessionlog_service() {
    let server = TestServer::start().await;
    let mut reflection =
        v1alpha::server_reflection_client::ServerReflectionClient::new(channel(&server).await);
    let requests = vec![v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            v1alpha::server_reflection_request::MessageRequest::ListServices(String::new()),
        ),
    }];
    let mut responses = reflection
        .server_reflection_info(futures::stream::iter(requests))
        .await
        .expect("reflection stream")
        .into_inner();
    let listed = responses
        .message()
        .await
        .expect("list response")
        .expect("one response");
    let Some(v1alpha::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
        listed.message_response
    else {
        panic!("not a list-services response: {listed:?}");
    };
    assert!(list.service.iter().any(|s| s.name == SERVICE), "{list:?}");
    server.shutdown().await;
}

/// A server on `listeners` over `data_dir`; send on the sender to stop it.
fn spawn_server(
    listeners: Vec<Listener>,
    data_dir: &Path,
) -> (
    oneshot::Sender<()>,
    tokio::task::JoinHandle<anyhow::Result<()>>,
) {
    let settings = common::settings(data_dir, FsyncPolicy::Never);
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let task = tokio::spawn(serve(Listeners::grpc(listeners), settings, async {
        let _ = stop_rx.await;
    }));
    (stop_tx, task)
}

async fn stop_server(
    stop_tx: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
) {
    let _ = stop_tx.send(());
    tokio::time::timeout(Duration::from_secs(30), task)
        .await
        .expect("shutdown finishes in time")
        .expect("server task")
        .expect("server stopped cleanly");
}

async fn unix_channel(path: PathBuf) -> Channel {
    Endpoint::try_from("http://[::]:50051")
        .expect("endpoint")
        .connect_with_connector(tower::service_fn(move |_| {
            let path = path.clone();
            async move {
                Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(path).await?))
            }
        }))
        .await
        .expect("connect over the unix socket")
}

#[tokio::test]
async fn a_server_on_a_unix_socket_answers_the_api_and_health() {
    let dir = tempfile::tempdir().expect("temp dir");
    let socket = dir.path().join("sessionlog.sock");
    let data_dir = dir.path().join("data");
    let listener = Listener::bind(&ListenAddr::Unix(socket.clone()))
        .await
        .expect("bind unix socket");
    assert_eq!(listener.local_addr(), format!("unix:{}", socket.display()));
    let (stop_tx, task) = spawn_server(vec![listener], &data_dir);

    let channel = unix_channel(socket.clone()).await;
    let mut client = SessionLogClient::new(channel.clone());
    let session = client
        .start_session(pb::StartSessionRequest {
            session_id: "over-unix".into(),
            app_name: "sidecar".into(),
            ..Default::default()
        })
        .await
        .expect("start over the unix socket")
        .into_inner();
    assert_eq!(session.id, "over-unix");
    assert_eq!(session.state(), pb::SessionState::Active);
    assert_eq!(append(&mut client, "over-unix", &["hello"]).await, (1, 1));
    assert_eq!(read_all(&mut client, "over-unix").await.len(), 1);
    for service in ["", SERVICE] {
        assert_eq!(
            health_status(channel.clone(), service)
                .await
                .expect("health over the unix socket"),
            ServingStatus::Serving
        );
    }

    // A live server's socket is not taken over.
    assert!(
        Listener::bind(&ListenAddr::Unix(socket.clone()))
            .await
            .is_err(),
        "bound a socket a live server answers on"
    );
    drop(client);
    drop(channel);
    stop_server(stop_tx, task).await;

    // After it stopped, a new server takes the path over and has the data.
    let listener = Listener::bind(&ListenAddr::Unix(socket.clone()))
        .await
        .expect("bind again after the server stopped");
    let (stop_tx, task) = spawn_server(vec![listener], &data_dir);
    let mut client = SessionLogClient::new(unix_channel(socket.clone()).await);
    let entries = read_all(&mut client, "over-unix").await;
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].message, "hello");
    drop(client);
    stop_server(stop_tx, task).await;
}

#[tokio::test]
async fn one_server_serves_tcp_and_unix_listeners_over_the_same_store() {
    let dir = tempfile::tempdir().expect("temp dir");
    let socket = dir.path().join("both.sock");
    let unix = Listener::bind(&ListenAddr::Unix(socket.clone()))
        .await
        .expect("bind unix socket");
    let tcp = Listener::bind(&ListenAddr::Tcp("127.0.0.1:0".into()))
        .await
        .expect("bind tcp");
    let tcp_url = format!("http://{}", tcp.local_addr());
    let (stop_tx, task) = spawn_server(vec![unix, tcp], &dir.path().join("data"));

    let mut over_unix = SessionLogClient::new(unix_channel(socket).await);
    let mut over_tcp = SessionLogClient::connect(tcp_url)
        .await
        .expect("connect tcp");
    let id = start_session(&mut over_unix, "both").await;
    assert_eq!(append(&mut over_tcp, &id, &["via tcp"]).await, (1, 1));
    assert_eq!(append(&mut over_unix, &id, &["via unix"]).await, (2, 2));
    let entries = read_all(&mut over_tcp, &id).await;
    let messages: Vec<&str> = entries.iter().map(|e| e.message.as_str()).collect();
    assert_eq!(messages, ["via tcp", "via unix"]);
    drop(over_unix);
    drop(over_tcp);
    stop_server(stop_tx, task).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_open_health_watches_and_does_not_wait_out_the_grace() {
    let grace = Duration::from_secs(30);
    let server = TestServer::builder()
        .configure(move |settings| settings.shutdown_grace = grace)
        .start()
        .await;
    let channel = channel(&server).await;
    let mut watches = Vec::new();
    for service in ["", SERVICE] {
        let mut statuses = HealthClient::new(channel.clone())
            .watch(HealthCheckRequest {
                service: service.to_owned(),
            })
            .await
            .expect("watch")
            .into_inner();
        let first = statuses.message().await.expect("a status").expect("open");
        assert_eq!(first.status(), ServingStatus::Serving);
        watches.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            loop {
                match statuses.message().await {
                    Ok(Some(response)) => seen.push(response.status()),
                    Ok(None) => return (seen, None),
                    Err(status) => return (seen, Some(status.code())),
                }
            }
        }));
    }
    let began = std::time::Instant::now();
    server.stop().await.expect("a clean stop");
    // Waiting out the grace would take 30 s.
    assert!(
        began.elapsed() < Duration::from_secs(10),
        "shutdown took {:?}",
        began.elapsed()
    );
    for watch in watches {
        let (seen, ended) = watch.await.expect("reader");
        assert_eq!(seen, [ServingStatus::NotServing], "told before the end");
        assert_eq!(ended, Some(Code::Unavailable));
    }
}
