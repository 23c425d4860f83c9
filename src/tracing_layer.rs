//! A `tracing` layer that ships a program's own events into a session.
//!
//! Each event becomes an entry: its level, its target as the logger, its
//! message, and its fields plus those of the spans around it (the event's
//! own win) as structured fields; span or event fields named `trace_id`
//! (32 hex digits) and `span_id` (16) become the entry's ids. Events are
//! handed to a bounded buffer and never wait: when the buffer is full they
//! are dropped and counted. A thread of its own, with its own Tokio
//! runtime, sends them in batches, so the layer works in any program, async
//! or not. Dropping the [`LayerGuard`] flushes what is buffered (within the
//! flush timeout) before it returns.
//!
//! Events from the transport's own crates (`h2`, `hyper`, `tonic`, `tower`)
//! are not shipped: sending them would log the sending, without end.
//!
//! ```no_run
//! use tracing_subscriber::prelude::*;
//!
//! let (layer, guard) = sessionlog::tracing_layer::Builder::new("http://127.0.0.1:50051")
//!     .app_name("my-tool")
//!     .build()?;
//! tracing_subscriber::registry().with(layer).init();
//! tracing::info!(files = 3, "copied");
//! drop(guard); // flushes
//! # Ok::<(), anyhow::Error>(())
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::mpsc as std_mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use prost_types::value::Kind;
use prost_types::{Struct, Value};
use tokio::sync::oneshot;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

use crate::client::{
    ClientTls, Connection, LogWriter, WriterHandle, WriterOptions, WriterReport, WriterTarget,
};
use crate::pb;

/// Targets whose events are never shipped (see the module doc).
const TRANSPORT_TARGETS: [&str; 4] = ["h2", "hyper", "tonic", "tower"];
/// Integers beyond this lose precision as a protobuf number, so they stay text.
const MAX_EXACT_INTEGER: u64 = 1 << 53;

/// Configures the layer and its session.
#[derive(Debug, Clone)]
pub struct Builder {
    server: String,
    token_file: Option<PathBuf>,
    tls: ClientTls,
    session: pb::StartSessionRequest,
    existing: bool,
    options: WriterOptions,
    flush_timeout: Duration,
}

impl Builder {
    /// A layer for `server` (`http://`, `https://` or `unix:`) that starts
    /// a new session named after this program.
    pub fn new(server: impl Into<String>) -> Self {
        let app_name = std::env::args()
            .next()
            .and_then(|arg0| {
                std::path::Path::new(&arg0)
                    .file_name()
                    .map(|name| name.to_string_lossy().into_owned())
            })
            .unwrap_or_default();
        Self {
            server: server.into(),
            token_file: None,
            tls: ClientTls::default(),
            session: pb::StartSessionRequest {
                app_name,
                client_pid: std::process::id(),
                ..Default::default()
            },
            existing: false,
            options: WriterOptions::default(),
            flush_timeout: Duration::from_secs(5),
        }
    }

    pub fn app_name(mut self, app_name: impl Into<String>) -> Self {
        self.session.app_name = app_name.into();
        self
    }

    /// The new session's id (default: a fresh ULID).
    pub fn session_id(mut self, session_id: impl Into<String>) -> Self {
        self.session.session_id = session_id.into();
        self
    }

    /// Write to this existing session instead of starting one.
    pub fn existing_session(mut self, session_id: impl Into<String>) -> Self {
        self.session.session_id = session_id.into();
        self.existing = true;
        self
    }

    /// Everything else about the new session (app, job, metadata, lease).
    /// Its `session_id` and `client_pid` are kept when set.
    pub fn session(mut self, session: pb::StartSessionRequest) -> Self {
        self.session = pb::StartSessionRequest {
            session_id: if session.session_id.is_empty() {
                self.session.session_id
            } else {
                session.session_id
            },
            client_pid: if session.client_pid == 0 {
                self.session.client_pid
            } else {
                session.client_pid
            },
            ..session
        };
        self
    }

    pub fn token_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.token_file = Some(path.into());
        self
    }

    pub fn tls(mut self, tls: ClientTls) -> Self {
        self.tls = tls;
        self
    }

    /// How events are buffered and batched.
    pub fn writer_options(mut self, options: WriterOptions) -> Self {
        self.options = options;
        self
    }

    /// How long dropping the guard may take to send what is buffered.
    pub fn flush_timeout(mut self, timeout: Duration) -> Self {
        self.flush_timeout = timeout;
        self
    }

    /// Starts the sending thread. Fails on a malformed server address or
    /// unreadable token or TLS files, not when the server is down: events
    /// wait in the buffer until it is up.
    pub fn build(mut self) -> anyhow::Result<(SessionLogLayer, LayerGuard)> {
        if self.session.session_id.is_empty() {
            self.session.session_id = ulid::Ulid::generate().to_string();
        }
        let session_id = self.session.session_id.clone();
        let (ready_tx, ready_rx) = std_mpsc::channel();
        let (close_tx, close_rx) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("sessionlog-layer".into())
            .spawn(move || sender_thread(self, ready_tx, close_rx))
            .context("cannot start the sessionlog layer's thread")?;
        let writer = match ready_rx.recv() {
            Ok(Ok(writer)) => writer,
            Ok(Err(err)) => {
                let _ = thread.join();
                return Err(err);
            }
            Err(_) => anyhow::bail!("the sessionlog layer's thread stopped while starting"),
        };
        Ok((
            SessionLogLayer { writer },
            LayerGuard {
                session_id,
                close_tx: Some(close_tx),
                thread: Some(thread),
            },
        ))
    }
}

/// The sending thread: a runtime of its own whose events go nowhere (so the
/// layer never sees the sending), the writer, and the close.
fn sender_thread(
    builder: Builder,
    ready_tx: std_mpsc::Sender<anyhow::Result<WriterHandle>>,
    close_rx: oneshot::Receiver<()>,
) -> WriterReport {
    let _quiet = tracing::subscriber::set_default(tracing::subscriber::NoSubscriber::default());
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            let _ = ready_tx.send(Err(anyhow::anyhow!("cannot start a runtime: {err}")));
            return WriterReport::default();
        }
    };
    runtime.block_on(async move {
        let connection = match Connection::connect_lazy(
            &builder.server,
            builder.token_file.as_deref(),
            &builder.tls,
        ) {
            Ok(connection) => connection,
            Err(err) => {
                let _ = ready_tx.send(Err(err));
                return WriterReport::default();
            }
        };
        let target = if builder.existing {
            WriterTarget::Existing(builder.session.session_id.clone())
        } else {
            WriterTarget::Start(builder.session.clone())
        };
        let writer = LogWriter::spawn(connection.sessions(), target, builder.options);
        if ready_tx.send(Ok(writer.handle())).is_err() {
            return WriterReport::default();
        }
        // The guard dropped (or closed): flush and stop.
        let _ = close_rx.await;
        writer.close(builder.flush_timeout).await
    })
}

/// Flushes on drop; `close` does the same and tells what was sent.
#[derive(Debug)]
pub struct LayerGuard {
    session_id: String,
    close_tx: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<WriterReport>>,
}

impl LayerGuard {
    /// The session the events go to.
    pub fn session_id(&self) -> &str {
        &self.session_id
    }

    /// Sends what is buffered (within the flush timeout) and reports.
    pub fn close(mut self) -> WriterReport {
        self.finish()
    }

    fn finish(&mut self) -> WriterReport {
        if let Some(close_tx) = self.close_tx.take() {
            let _ = close_tx.send(());
        }
        self.thread
            .take()
            .and_then(|thread| thread.join().ok())
            .unwrap_or_default()
    }
}

impl Drop for LayerGuard {
    fn drop(&mut self) {
        self.finish();
    }
}

/// The layer: turns events into entries for the writer.
#[derive(Debug, Clone)]
pub struct SessionLogLayer {
    writer: WriterHandle,
}

/// The fields a span was created or recorded with.
#[derive(Debug, Default)]
struct SpanFields(BTreeMap<String, Value>);

impl<S> Layer<S> for SessionLogLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        span.extensions_mut().insert(SpanFields(fields.values));
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut fields = Fields::default();
        values.record(&mut fields);
        let mut extensions = span.extensions_mut();
        match extensions.get_mut::<SpanFields>() {
            Some(existing) => existing.0.extend(fields.values),
            None => extensions.insert(SpanFields(fields.values)),
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let metadata = event.metadata();
        let target = metadata.target();
        if TRANSPORT_TARGETS.iter().any(|crate_name| {
            target
                .strip_prefix(crate_name)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with("::"))
        }) {
            return;
        }
        let mut merged = BTreeMap::new();
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope.from_root() {
                if let Some(fields) = span.extensions().get::<SpanFields>() {
                    merged.extend(fields.0.iter().map(|(k, v)| (k.clone(), v.clone())));
                }
            }
        }
        let mut fields = Fields::default();
        event.record(&mut fields);
        merged.extend(fields.values);
        let trace_id = take_hex_id(&mut merged, "trace_id", 16);
        let span_id = take_hex_id(&mut merged, "span_id", 8);
        self.writer.try_write(pb::LogEntry {
            timestamp: Some(SystemTime::now().into()),
            level: level(metadata.level()).into(),
            logger: target.to_owned(),
            message: fields.message,
            fields: (!merged.is_empty()).then(|| Struct {
                fields: merged.into_iter().collect(),
            }),
            trace_id,
            span_id,
            ..Default::default()
        });
    }
}

fn level(level: &Level) -> pb::Level {
    match *level {
        Level::TRACE => pb::Level::Trace,
        Level::DEBUG => pb::Level::Debug,
        Level::INFO => pb::Level::Info,
        Level::WARN => pb::Level::Warn,
        Level::ERROR => pb::Level::Error,
    }
}

/// Removes `name` from `fields` and decodes it when it is a hex id of
/// `bytes` bytes; a field of another shape is left as a field.
fn take_hex_id(fields: &mut BTreeMap<String, Value>, name: &str, bytes: usize) -> Vec<u8> {
    let decoded = match fields.get(name).and_then(|value| value.kind.as_ref()) {
        Some(Kind::StringValue(text)) if text.len() == bytes * 2 => decode_hex(text),
        _ => None,
    };
    match decoded {
        Some(id) => {
            fields.remove(name);
            id
        }
        None => Vec::new(),
    }
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    (0..text.len())
        .step_by(2)
        .map(|at| u8::from_str_radix(text.get(at..at + 2)?, 16).ok())
        .collect()
}

/// Collects an event's or span's fields; `message` separately.
#[derive(Default)]
struct Fields {
    message: String,
    values: BTreeMap<String, Value>,
}

impl Fields {
    fn put(&mut self, field: &Field, kind: Kind) {
        self.values
            .insert(field.name().to_owned(), Value { kind: Some(kind) });
    }
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let text = format!("{value:?}");
        if field.name() == "message" {
            self.message = text;
        } else {
            self.put(field, Kind::StringValue(text));
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = value.to_owned();
        } else {
            self.put(field, Kind::StringValue(value.to_owned()));
        }
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, Kind::BoolValue(value));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, Kind::NumberValue(value));
    }

    #[allow(clippy::cast_precision_loss)] // exact below 2^53
    fn record_i64(&mut self, field: &Field, value: i64) {
        if value.unsigned_abs() <= MAX_EXACT_INTEGER {
            self.put(field, Kind::NumberValue(value as f64));
        } else {
            self.put(field, Kind::StringValue(value.to_string()));
        }
    }

    #[allow(clippy::cast_precision_loss)] // exact below 2^53
    fn record_u64(&mut self, field: &Field, value: u64) {
        if value <= MAX_EXACT_INTEGER {
            self.put(field, Kind::NumberValue(value as f64));
        } else {
            self.put(field, Kind::StringValue(value.to_string()));
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.put(field, Kind::StringValue(value.to_string()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_ids_are_taken_only_in_their_shape() {
        let mut fields = BTreeMap::new();
        let text = |t: &str| Value {
            kind: Some(Kind::StringValue(t.into())),
        };
        fields.insert("trace_id".into(), text("000102030405060708090a0b0c0d0e0f"));
        fields.insert("span_id".into(), text("not-hex-but-16ch"));
        assert_eq!(
            take_hex_id(&mut fields, "trace_id", 16),
            (0..16).collect::<Vec<u8>>()
        );
        assert!(take_hex_id(&mut fields, "span_id", 8).is_empty());
        assert!(!fields.contains_key("trace_id"));
        assert!(fields.contains_key("span_id"), "left as a field");
    }
}
