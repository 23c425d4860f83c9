//! A minimal HTTP/1.0 client for the HTTP edge's tests: one request per
//! connection, the whole answer, or an SSE stream read event by event.
//! No client library: the bytes on the wire are what `curl -N` sees.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// A whole answer.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: u16,
    /// Lower-cased names.
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: String,
}

impl Answer {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|err| {
            panic!(
                "not JSON ({err}) in a {} answer: {:?}",
                self.status, self.body
            )
        })
    }

    /// The `error.code` of an error body.
    pub(crate) fn error_code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or_else(|| panic!("no error code in {}", self.body))
            .to_owned()
    }
}

async fn send(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let mut request = format!("GET {path} HTTP/1.0\r\n");
    // The server's own address, as a browser would send it, unless the
    // test gives its own.
    if !headers
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("host"))
    {
        request.push_str(&format!("Host: {addr}\r\n"));
    }
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await.expect("request");
    stream
}

async fn read_head(reader: &mut BufReader<TcpStream>) -> (u16, Vec<(String, String)>) {
    let mut status_line = String::new();
    reader
        .read_line(&mut status_line)
        .await
        .expect("status line");
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status in {status_line:?}"));
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).await.expect("header line");
        let line = line.trim_end();
        if line.is_empty() {
            return (status, headers);
        }
        let (name, value) = line.split_once(':').expect("a header");
        headers.push((name.to_ascii_lowercase(), value.trim().to_owned()));
    }
}

/// `GET path` with `headers`; the whole answer within 10 s.
pub(crate) async fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Answer {
    tokio::time::timeout(Duration::from_secs(10), async {
        let mut reader = BufReader::new(send(addr, path, headers).await);
        let (status, headers) = read_head(&mut reader).await;
        let mut body = String::new();
        reader.read_to_string(&mut body).await.expect("body");
        Answer {
            status,
            headers,
            body,
        }
    })
    .await
    .expect("an answer within 10 s")
}

/// A whole answer with a binary body.
#[derive(Debug)]
pub(crate) struct BinaryAnswer {
    pub(crate) status: u16,
    /// Lower-cased names.
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

impl BinaryAnswer {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

/// `POST path` with `headers` and `body`; the whole answer within 10 s.
#[allow(dead_code)] // not every suite posts
pub(crate) async fn post(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> BinaryAnswer {
    tokio::time::timeout(Duration::from_secs(10), async {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        let mut request = format!(
            "POST {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Length: {}\r\n",
            body.len()
        );
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        stream.write_all(request.as_bytes()).await.expect("request");
        stream.write_all(body).await.expect("body");
        let mut reader = BufReader::new(stream);
        let (status, headers) = read_head(&mut reader).await;
        let mut body = Vec::new();
        reader.read_to_end(&mut body).await.expect("body");
        BinaryAnswer {
            status,
            headers,
            body,
        }
    })
    .await
    .expect("an answer within 10 s")
}

/// One SSE event: the fields `curl -N` shows.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SseEvent {
    /// `message` when the stream names none.
    pub(crate) event: String,
    pub(crate) id: Option<String>,
    pub(crate) data: String,
}

impl SseEvent {
    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.data).unwrap_or_else(|err| panic!("not JSON ({err}): {self:?}"))
    }
}

/// An open SSE stream.
pub(crate) struct Sse {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    reader: BufReader<TcpStream>,
    /// Comment lines seen (`:keep-alive`).
    pub(crate) comments: usize,
}

impl Sse {
    /// Opens `path`; the answer's head within 10 s.
    pub(crate) async fn open(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Self {
        tokio::time::timeout(Duration::from_secs(10), async {
            let mut reader = BufReader::new(send(addr, path, headers).await);
            let (status, headers) = read_head(&mut reader).await;
            Self {
                status,
                headers,
                reader,
                comments: 0,
            }
        })
        .await
        .expect("a head within 10 s")
    }

    /// The next event with data; `None` when the stream closed. Fails
    /// after `within` without one.
    pub(crate) async fn next_within(&mut self, within: Duration) -> Option<SseEvent> {
        tokio::time::timeout(within, self.next_event())
            .await
            .expect("an SSE event in time")
    }

    /// The next event within 10 s.
    pub(crate) async fn next(&mut self) -> Option<SseEvent> {
        self.next_within(Duration::from_secs(10)).await
    }

    async fn next_event(&mut self) -> Option<SseEvent> {
        let (mut event, mut id, mut data) = (None, None, Vec::new());
        loop {
            let mut line = String::new();
            if self.reader.read_line(&mut line).await.expect("read") == 0 {
                return None;
            }
            let line = line.trim_end_matches(['\r', '\n']);
            if line.is_empty() {
                if data.is_empty() {
                    (event, id) = (None, None);
                    continue;
                }
                return Some(SseEvent {
                    event: event.unwrap_or_else(|| "message".to_owned()),
                    id,
                    data: data.join("\n"),
                });
            }
            if line.starts_with(':') {
                self.comments += 1;
                continue;
            }
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value).to_owned();
            match field {
                "event" => event = Some(value),
                "id" => id = Some(value),
                "data" => data.push(value),
                _ => {}
            }
        }
    }

    /// Events until the stream closes (each within 10 s).
    pub(crate) async fn rest(&mut self) -> Vec<SseEvent> {
        let mut events = Vec::new();
        while let Some(event) = self.next().await {
            events.push(event);
        }
        events
    }
}
