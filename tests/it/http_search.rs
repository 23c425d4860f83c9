//! The HTTP side of search and export: `GET /api/v1/search` (its JSON,
//! filters as query parameters, errors naming the parameter, tokens), the
//! new `ignore_case` and `regex` parameters of the entry pages, and
//! `GET /api/v1/sessions/{id}/export` as text and ndjson: headers, every
//! entry once and in order, and a large session sent in many chunks as it
//! is read (over HTTP/1.1, chunked), not as one buffered body.

use std::net::SocketAddr;
use std::time::Duration;

use sessionlog::pb;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::common::http::get;
use crate::common::{Client, TestServer, append_entries, end_session, entry, start_session};

async fn serve() -> (TestServer, Client, SocketAddr) {
    let server = TestServer::builder().http().start().await;
    let client = server.client().await;
    let addr = server.http_addr.expect("http");
    (server, client, addr)
}

fn hits_of(body: &serde_json::Value) -> Vec<(String, u64)> {
    body["hits"]
        .as_array()
        .expect("hits")
        .iter()
        .map(|hit| {
            (
                hit["session_id"].as_str().expect("id").to_owned(),
                hit["entry"]["seq"].as_u64().expect("seq"),
            )
        })
        .collect()
}

#[tokio::test]
async fn search_answers_hits_and_summary_as_json() {
    let (_server, _client, addr) = server_with_two_sessions().await;
    let (old, new) = (&addr.1, &addr.2);
    let addr = addr.0;
    let answer = get(addr, "/api/v1/search?contains=boom", &[]).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let body = answer.json();
    assert_eq!(
        hits_of(&body),
        vec![(new.clone(), 2), (old.clone(), 1)],
        "newest session first"
    );
    let hit = &body["hits"][0]["entry"];
    assert_eq!(hit["message"], "a \u{1b}[31mboom\u{1b}[0m");
    assert_eq!(hit["level"], "error");
    assert_eq!(hit["logger"], "test");
    let summary = &body["summary"];
    assert_eq!(summary["sessions_scanned"], 2);
    assert_eq!(summary["entries_scanned"], 5);
    assert!(summary["bytes_scanned"].as_u64().expect("bytes") > 0);
    assert_eq!(summary["limit_reached"], false);

    let answer = get(
        addr,
        "/api/v1/search?contains=BOOM&ignore_case=true&limit=1",
        &[],
    )
    .await;
    let body = answer.json();
    assert_eq!(hits_of(&body), vec![(new.clone(), 2)]);
    assert_eq!(body["summary"]["limit_reached"], true);
    let answer = get(
        addr,
        "/api/v1/search?regex=%5Ea%20boom%24&app=new&level=error",
        &[],
    )
    .await;
    assert_eq!(hits_of(&answer.json()), vec![(new.clone(), 2)]);
    let answer = get(addr, "/api/v1/search?state=ended&logger=te", &[]).await;
    assert_eq!(hits_of(&answer.json()).len(), 2, "{}", answer.body);
    let answer = get(
        addr,
        "/api/v1/search?since=2000-01-01T00:00:00Z&until=1h",
        &[],
    )
    .await;
    assert!(hits_of(&answer.json()).is_empty(), "{}", answer.body);
    let answer = get(addr, "/api/v1/search?since=1h", &[]).await;
    assert_eq!(hits_of(&answer.json()).len(), 5);

    for (query, parameter) in [
        ("regex=%28", "filter.regex"),
        ("since=yesterday", "since"),
        ("limit=-1", "limit"),
        ("colour=1", "colour"),
    ] {
        let answer = get(addr, &format!("/api/v1/search?{query}"), &[]).await;
        assert_eq!(answer.status, 400, "{query}: {}", answer.body);
        assert!(answer.body.contains(parameter), "{query}: {}", answer.body);
    }
    // The entry pages take the new filter parameters too.
    let answer = get(
        addr,
        &format!("/api/v1/sessions/{new}/entries?regex=BO%2BM&ignore_case=1"),
        &[],
    )
    .await;
    let seqs: Vec<u64> = answer.json()["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|entry| entry["seq"].as_u64().expect("seq"))
        .collect();
    assert_eq!(seqs, vec![2]);
}

/// A server, and two sessions: `old` (ended: "boom", "quiet", the end
/// entry) and `new` ("fine", a coloured "a boom").
async fn server_with_two_sessions() -> (TestServer, Client, (SocketAddr, String, String)) {
    let (server, mut client, addr) = serve().await;
    let old = start_session(&mut client, "old").await;
    append_entries(&mut client, &old, vec![entry("boom"), entry("quiet")]).await;
    end_session(&mut client, &old, "done").await;
    let new = start_session(&mut client, "new").await;
    let coloured = pb::LogEntry {
        level: pb::Level::Error.into(),
        ..entry("a \x1b[31mboom\x1b[0m")
    };
    append_entries(&mut client, &new, vec![entry("fine"), coloured]).await;
    (server, client, (addr, old, new))
}

#[tokio::test]
async fn search_needs_the_token_like_other_api_routes() {
    let dir = tempfile::tempdir().expect("dir");
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "s3cret\n").expect("token");
    let server = TestServer::builder()
        .http()
        .configure(|settings| settings.auth_token_file = Some(token_file.clone()))
        .start()
        .await;
    let addr = server.http_addr.expect("http");
    assert_eq!(get(addr, "/api/v1/search", &[]).await.status, 401);
    let ok = get(
        addr,
        "/api/v1/search",
        &[("Authorization", "Bearer s3cret")],
    )
    .await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(
        get(addr, "/api/v1/sessions/x/export", &[]).await.status,
        401
    );
}

/// A GET over HTTP/1.1: the head, and the body's chunks as they came.
async fn get_chunked(addr: SocketAddr, path: &str) -> (u16, Vec<(String, String)>, Vec<Vec<u8>>) {
    tokio::time::timeout(Duration::from_secs(20), async {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.expect("request");
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        reader.read_line(&mut line).await.expect("status");
        let status = line
            .split_whitespace()
            .nth(1)
            .and_then(|code| code.parse().ok())
            .expect("a status");
        let mut headers = Vec::new();
        loop {
            line.clear();
            reader.read_line(&mut line).await.expect("header");
            let Some((name, value)) = line.trim_end().split_once(':') else {
                break;
            };
            headers.push((name.to_ascii_lowercase(), value.trim().to_owned()));
        }
        let mut chunks = Vec::new();
        loop {
            line.clear();
            reader.read_line(&mut line).await.expect("chunk size");
            let size = usize::from_str_radix(line.trim_end(), 16).expect("a hex chunk size");
            let mut chunk = vec![0; size + 2];
            reader.read_exact(&mut chunk).await.expect("chunk");
            chunk.truncate(size);
            if size == 0 {
                break;
            }
            chunks.push(chunk);
        }
        (status, headers, chunks)
    })
    .await
    .expect("the export within 20 s")
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
}

#[tokio::test]
async fn export_streams_a_large_session_as_text_or_ndjson() {
    const ENTRIES: u64 = 20_000;
    let (_server, mut client, addr) = serve().await;
    let id = start_session(&mut client, "export").await;
    let line = "x".repeat(150);
    for first in (0..ENTRIES).step_by(1_000) {
        let entries = (first + 1..=first + 1_000)
            .map(|n| entry(format!("entry {n} {line}")))
            .collect();
        append_entries(&mut client, &id, entries).await;
    }
    end_session(&mut client, &id, "done").await;

    let (status, headers, chunks) =
        get_chunked(addr, &format!("/api/v1/sessions/{id}/export?format=text")).await;
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "transfer-encoding"), Some("chunked"));
    assert_eq!(header(&headers, "content-length"), None);
    assert!(header(&headers, "content-type").is_some_and(|v| v.starts_with("text/plain")));
    let disposition = header(&headers, "content-disposition").expect("disposition");
    assert_eq!(disposition, format!("attachment; filename=\"{id}.log\""));
    // About 3.5 MB, sent as read: a chunk per store page (1 MiB at most).
    assert!(chunks.len() >= 3, "{} chunks", chunks.len());
    assert!(chunks.iter().all(|chunk| chunk.len() <= 1_300_000));
    let text = String::from_utf8(chunks.concat()).expect("utf-8");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len() as u64, ENTRIES + 1);
    for (n, line) in lines.iter().take(ENTRIES as usize).enumerate() {
        let suffix = format!(" INFO test: entry {} {}", n + 1, "x".repeat(150));
        assert!(line.ends_with(&suffix), "line {n}: {line}");
        assert!(line.starts_with("20"), "a time first: {line}");
    }
    assert!(lines[ENTRIES as usize].ends_with(" INFO sessions: Session ended: done"));

    let (status, headers, chunks) =
        get_chunked(addr, &format!("/api/v1/sessions/{id}/export?format=ndjson")).await;
    assert_eq!(status, 200);
    assert_eq!(
        header(&headers, "content-type"),
        Some("application/x-ndjson")
    );
    assert_eq!(
        header(&headers, "content-disposition"),
        Some(format!("attachment; filename=\"{id}.ndjson\"").as_str())
    );
    let text = String::from_utf8(chunks.concat()).expect("utf-8");
    let seqs: Vec<u64> = text
        .lines()
        .map(|line| {
            let entry: serde_json::Value = serde_json::from_str(line).expect("one JSON per line");
            entry["seq"].as_u64().expect("seq")
        })
        .collect();
    assert_eq!(seqs, (1..=ENTRIES + 1).collect::<Vec<_>>());

    let answer = get(
        addr,
        &format!("/api/v1/sessions/{id}/export?format=csv"),
        &[],
    )
    .await;
    assert_eq!(answer.status, 400);
    assert!(answer.body.contains("format"), "{}", answer.body);
    let answer = get(addr, "/api/v1/sessions/nope/export", &[]).await;
    assert_eq!(answer.status, 404);
}
