//! TLS and mutual TLS on TCP listeners, from the Rust client, and
//! forwarding over TLS (OTLP/gRPC, and OTLP/HTTP through a TLS front).

use std::path::Path;

use sessionlog::client::{ClientTls, Connection};
use sessionlog::pb;
use sessionlog::server::TlsFiles;

use crate::common;
use crate::common::TestServer;
use crate::common::access::{Pki, https, tls_server};
use crate::common::request;

async fn start_over(server: &str, tls: &ClientTls) -> anyhow::Result<String> {
    let connection = Connection::connect_with(server, None, tls).await?;
    let session = connection
        .sessions()
        .start_session(pb::StartSessionRequest::default())
        .await?;
    Ok(session.into_inner().id)
}

fn trusting(ca: &Path) -> ClientTls {
    ClientTls {
        ca_file: Some(ca.to_path_buf()),
        ..ClientTls::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_serves_clients_that_trust_the_ca_and_refuses_plaintext() {
    let pki = Pki::new();
    let server = tls_server(&pki, false).await;
    start_over(&https(&server), &trusting(&pki.path("ca.pem")))
        .await
        .expect("a TLS call");
    let plaintext = start_over(&server.url(), &ClientTls::default()).await;
    assert!(plaintext.is_err(), "plaintext to a TLS port fails");
    let stranger = Pki::new();
    let untrusted = start_over(&https(&server), &trusting(&stranger.path("ca.pem"))).await;
    assert!(
        untrusted.is_err(),
        "a server cert from another CA is not trusted"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_needs_a_client_certificate_from_the_ca() {
    let pki = Pki::new();
    let server = tls_server(&pki, true).await;
    let without = start_over(&https(&server), &trusting(&pki.path("ca.pem"))).await;
    assert!(without.is_err(), "no client certificate");
    let (cert, key) = pki.issue("client", &["ci-runner"]);
    let with_cert = ClientTls {
        cert_file: Some(cert),
        key_file: Some(key),
        ..trusting(&pki.path("ca.pem"))
    };
    start_over(&https(&server), &with_cert)
        .await
        .expect("a client certificate from the CA");
    let stranger = Pki::new();
    let (cert, key) = stranger.issue("intruder", &["intruder"]);
    let foreign_cert = ClientTls {
        cert_file: Some(cert),
        key_file: Some(key),
        ..trusting(&pki.path("ca.pem"))
    };
    assert!(
        start_over(&https(&server), &foreign_cert).await.is_err(),
        "a client cert from another CA"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_over_https_with_a_header_reaches_a_central_server_that_needs_a_token() {
    let pki = Pki::new();
    let (cert, key) = pki.issue("central", &["localhost", "127.0.0.1"]);
    let tokens = pki.path("tokens");
    std::fs::write(&tokens, "central-token\n").expect("write tokens");
    let central = TestServer::builder()
        .configure(|settings| {
            settings.tls = Some(TlsFiles {
                cert,
                key,
                client_ca: None,
            });
            settings.auth_token_file = Some(tokens.clone());
        })
        .start()
        .await;
    let ca = pki.path("ca.pem");
    let sidecar = TestServer::builder()
        .configure(|settings| {
            settings.forward.targets = vec![https(&central)];
            settings.forward.ca_file = Some(ca.clone());
            settings.forward.headers = vec![(
                "authorization".to_owned(),
                "Bearer central-token".to_owned(),
            )];
            settings.forward.max_records = 100;
            settings.forward.linger = std::time::Duration::from_millis(1);
        })
        .start()
        .await;
    let mut client = sidecar.client().await;
    client
        .start_session(request::start("over-https"))
        .await
        .expect("start");
    common::append(&mut client, "over-https", &["one", "two", "three"]).await;
    common::end_session(&mut client, "over-https", "done").await;

    // Read it back from the central server, over TLS with the token.
    std::fs::write(pki.path("token"), "central-token\n").expect("write token");
    let mut central_client =
        Connection::connect_with(&https(&central), Some(&pki.path("token")), &trusting(&ca))
            .await
            .expect("connect")
            .sessions();
    tokio::time::timeout(std::time::Duration::from_secs(30), async {
        let mut events = central_client
            .watch_sessions(pb::WatchSessionsRequest {
                include_existing: true,
                ..Default::default()
            })
            .await
            .expect("watch")
            .into_inner();
        while let Some(event) = tokio_stream::StreamExt::next(&mut events).await {
            if event
                .expect("event")
                .session
                .is_some_and(|session| session.id == "over-https")
            {
                return;
            }
        }
    })
    .await
    .expect("the session reaches the central server");
    let mut stream = central_client
        .follow(pb::FollowRequest {
            session_id: "over-https".into(),
            ..Default::default()
        })
        .await
        .expect("follow")
        .into_inner();
    let mut messages = Vec::new();
    while let Some(response) = tokio_stream::StreamExt::next(&mut stream).await {
        match response.expect("follow").event {
            Some(pb::follow_response::Event::Batch(batch)) => {
                messages.extend(batch.entries.into_iter().map(|entry| entry.message));
            }
            Some(pb::follow_response::Event::Ended(session)) => {
                assert_eq!(session.end_reason, "done");
                break;
            }
            _ => {}
        }
    }
    assert_eq!(messages, ["one", "two", "three", "Session ended: done"]);
    sidecar.shutdown().await;
    central.shutdown().await;
}

/// A TLS front on loopback for `backend` (plain TCP), with a certificate
/// for `localhost` from `pki`; its port.
async fn tls_front(pki: &Pki, backend: std::net::SocketAddr) -> u16 {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};

    let (cert, key) = pki.issue("front", &["localhost"]);
    let chain = CertificateDer::pem_file_iter(&cert)
        .expect("cert")
        .collect::<Result<Vec<_>, _>>()
        .expect("cert pem");
    let key = PrivateKeyDer::from_pem_file(&key).expect("key");
    let config = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(stream).await else {
                    return;
                };
                let Ok(mut plain) = tokio::net::TcpStream::connect(backend).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_over_otlp_https_trusts_the_ca_file_and_sends_the_header() {
    let pki = Pki::new();
    let tokens = pki.path("tokens");
    std::fs::write(&tokens, "central-token\n").expect("write tokens");
    let central = TestServer::builder()
        .http()
        .configure(|settings| settings.auth_token_file = Some(tokens.clone()))
        .start()
        .await;
    let port = tls_front(&pki, central.http_addr.expect("http")).await;
    let ca = pki.path("ca.pem");
    let sidecar = TestServer::builder()
        .configure(|settings| {
            settings.forward.targets = vec![format!("https://localhost:{port}/v1/logs")];
            settings.forward.ca_file = Some(ca.clone());
            settings.forward.headers = vec![(
                "authorization".to_owned(),
                "Bearer central-token".to_owned(),
            )];
            settings.forward.linger = std::time::Duration::from_millis(1);
        })
        .start()
        .await;
    let mut client = sidecar.client().await;
    client
        .start_session(request::start("over-otlp-https"))
        .await
        .expect("start");
    common::append(&mut client, "over-otlp-https", &["one", "two"]).await;
    common::end_session(&mut client, "over-otlp-https", "done").await;

    // The central server has it, ended, once the sidecar's exports landed.
    std::fs::write(pki.path("token"), "central-token\n").expect("write token");
    let mut central_client = Connection::connect(&central.url(), Some(&pki.path("token")))
        .await
        .expect("connect")
        .sessions();
    let ended = tokio::time::timeout(std::time::Duration::from_secs(30), async {
        // Follow needs the session: wait for the first export to start it.
        let mut events = central_client
            .watch_sessions(pb::WatchSessionsRequest {
                include_existing: true,
                ..Default::default()
            })
            .await
            .expect("watch")
            .into_inner();
        while let Some(event) = tokio_stream::StreamExt::next(&mut events).await {
            if event
                .expect("event")
                .session
                .is_some_and(|session| session.id == "over-otlp-https")
            {
                break;
            }
        }
        let mut stream = central_client
            .follow(pb::FollowRequest {
                session_id: "over-otlp-https".into(),
                ..Default::default()
            })
            .await
            .expect("follow")
            .into_inner();
        let mut messages = Vec::new();
        while let Some(event) = tokio_stream::StreamExt::next(&mut stream).await {
            match event.expect("event").event {
                Some(pb::follow_response::Event::Batch(batch)) => {
                    messages.extend(batch.entries.into_iter().map(|e| e.message));
                }
                Some(pb::follow_response::Event::Ended(_)) => return messages,
                _ => {}
            }
        }
        messages
    })
    .await
    .expect("the central server got the session in time");
    assert_eq!(ended, ["one", "two", "Session ended: done"]);
    sidecar.shutdown().await;
    central.shutdown().await;
}
