//! Connections a hostile peer opens: over the cap they are closed at once
//! while clients inside it keep working; peers that send nothing, or half
//! an HTTP header, are closed after their deadline.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use sessionlog::pb;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::TestServer;

/// Reads until the server closes `stream` (EOF or a reset), failing the
/// test if that takes over `within`; the time it took.
async fn closed_by_server(stream: &mut TcpStream, within: Duration) -> Duration {
    let started = Instant::now();
    let mut buf = [0_u8; 1024];
    tokio::time::timeout(within, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .expect("the server closes the connection in time");
    started.elapsed()
}

async fn list(client: &mut crate::common::Client) {
    client
        .list_sessions(pb::ListSessionsRequest::default())
        .await
        .expect("list sessions");
}

#[tokio::test]
async fn connections_over_the_cap_are_closed_while_clients_within_it_work() {
    let server = TestServer::builder()
        .configure(|settings| settings.connections.max_connections = Some(2))
        .start()
        .await;
    let mut client = server.client().await;
    list(&mut client).await;
    // The second slot: an idle peer.
    let idle = TcpStream::connect(server.addr).await.expect("connect");
    let mut over = TcpStream::connect(server.addr).await.expect("connect");
    closed_by_server(&mut over, Duration::from_secs(5)).await;
    list(&mut client).await;
    // A connection still in its handshake would hold up the drain.
    drop(idle);
    server.shutdown().await;
}

#[tokio::test]
async fn a_silent_connection_is_closed_after_the_handshake_timeout() {
    let timeout = Duration::from_millis(300);
    let server = TestServer::builder()
        .configure(|settings| settings.connections.handshake_timeout = timeout)
        .start()
        .await;
    let mut silent = TcpStream::connect(server.addr).await.expect("connect");
    // Part of the HTTP/2 preface, then nothing.
    silent.write_all(b"PRI * HTTP/2.0").await.expect("write");
    let took = closed_by_server(&mut silent, Duration::from_secs(10)).await;
    assert!(took >= timeout / 2, "closed after {took:?}");
    // A real client is not affected by the deadline.
    let mut client = server.client().await;
    list(&mut client).await;
    server.shutdown().await;
}

async fn slowloris(addr: SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let head = format!("GET /api/v1/sessions HTTP/1.1\r\nHost: {addr}\r\nX-Slow: ab");
    stream.write_all(head.as_bytes()).await.expect("write");
    stream
}

#[tokio::test]
async fn a_slowloris_http_client_is_closed_after_the_header_timeout() {
    let timeout = Duration::from_millis(500);
    let server = TestServer::builder()
        .http()
        .configure(|settings| {
            settings.connections.header_read_timeout = timeout;
            settings.connections.handshake_timeout = timeout;
        })
        .start()
        .await;
    let http_addr = server.http_addr.expect("http listener");
    let mut slow = slowloris(http_addr).await;
    let took = closed_by_server(&mut slow, Duration::from_secs(10)).await;
    assert!(took >= timeout / 2, "closed after {took:?}");
    // A silent one is closed too (by the handshake deadline).
    let mut silent = TcpStream::connect(http_addr).await.expect("connect");
    closed_by_server(&mut silent, Duration::from_secs(10)).await;
    server.shutdown().await;
}

#[tokio::test]
async fn http_connections_over_the_cap_are_closed() {
    let server = TestServer::builder()
        .http()
        .configure(|settings| settings.connections.max_connections = Some(1))
        .start()
        .await;
    let http_addr = server.http_addr.expect("http listener");
    let held = slowloris(http_addr).await;
    let mut over = TcpStream::connect(http_addr).await.expect("connect");
    closed_by_server(&mut over, Duration::from_secs(5)).await;
    drop(held);
    server.shutdown().await;
}
