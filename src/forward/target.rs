//! One forwarding target: its OTLP client, over gRPC or HTTP (connected
//! lazily, so a target that is down at start-up is retried like one that
//! goes down later), the headers it gets, its stable id for cursors, and
//! what each failed gRPC export means (`retry::Refusal`).

use futures::future::BoxFuture;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use tonic::codec::CompressionEncoding;
use tonic::metadata::{AsciiMetadataKey, AsciiMetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use super::ForwardCompression;
use super::http::HttpExporter;
use super::retry::{self, Refusal, Then};
use crate::client::{ClientTls, Connection};

/// Adds the configured headers to every export.
#[derive(Debug, Clone)]
pub(super) struct Headers(Vec<(AsciiMetadataKey, AsciiMetadataValue)>);

impl tonic::service::Interceptor for Headers {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        for (key, value) in &self.0 {
            request.metadata_mut().insert(key.clone(), value.clone());
        }
        Ok(request)
    }
}

pub(super) type Client = LogsServiceClient<InterceptedService<Channel, Headers>>;

/// How a target is spoken to: OTLP/gRPC (a URL without a path) or
/// OTLP/HTTP (a URL with one).
#[derive(Debug)]
enum Transport {
    /// Uncompressed; `Target::export` adds the compression.
    Grpc(Client),
    /// Boxed: hyper's client is several times a tonic channel's size.
    Http(Box<HttpExporter>),
}

#[derive(Debug)]
pub(super) struct Target {
    pub url: String,
    /// Names the target's cursors: the URL's SHA-256, so reordering or
    /// adding targets keeps each one's place.
    pub id: String,
    transport: Transport,
    /// How exports are compressed, until the target turns out not to take
    /// it (`Then::Resend`).
    compression: ForwardCompression,
}

impl Target {
    /// A target from its URL: `http(s)://host:port` is OTLP/gRPC;
    /// with a path (`http://host:4318/v1/logs`) it is OTLP/HTTP, posted to
    /// that path as it is.
    pub(super) fn new(
        url: &str,
        headers: &[(String, String)],
        tls: &ClientTls,
        compression: ForwardCompression,
    ) -> anyhow::Result<Self> {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            anyhow::bail!(
                "--forward-otlp `{url}`: use http://host:port (OTLP/gRPC) or \
                 http://host:port/path (OTLP/HTTP), or https://"
            );
        }
        let uri: axum::http::Uri = url
            .parse()
            .map_err(|err| anyhow::anyhow!("--forward-otlp `{url}`: not a URL ({err})"))?;
        let transport = if uri.path().is_empty() || uri.path() == "/" {
            Transport::Grpc(grpc_client(url, headers, tls)?)
        } else {
            Transport::Http(Box::new(HttpExporter::new(uri, headers, tls)?))
        };
        let digest = ring::digest::digest(&ring::digest::SHA256, url.as_bytes());
        let id = digest.as_ref()[..16]
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect();
        Ok(Self {
            url: url.to_owned(),
            id,
            transport,
            compression,
        })
    }

    /// Whether exports go over OTLP/HTTP (for the log).
    pub(super) fn protocol(&self) -> &'static str {
        match self.transport {
            Transport::Grpc(_) => "otlp/grpc",
            Transport::Http(_) => "otlp/http",
        }
    }

    /// Sends one export; `attempt` (0 for the first) sets the backoff.
    pub(super) fn export(
        &self,
        request: ExportLogsServiceRequest,
        attempt: u32,
    ) -> BoxFuture<'static, Result<ExportLogsServiceResponse, Refusal>> {
        let compression = self.compression;
        match &self.transport {
            Transport::Http(exporter) => {
                let exporter = HttpExporter::clone(exporter);
                Box::pin(async move { exporter.export(&request, compression, attempt).await })
            }
            Transport::Grpc(base) => {
                let mut client = match compression.encoding() {
                    // Answers come back compressed only if the target
                    // chooses to; accepting both costs nothing when it
                    // does not.
                    Some(encoding) => base
                        .clone()
                        .send_compressed(encoding)
                        .accept_compressed(CompressionEncoding::Gzip)
                        .accept_compressed(CompressionEncoding::Zstd),
                    None => base.clone(),
                };
                Box::pin(async move {
                    client
                        .export(request)
                        .await
                        .map(tonic::Response::into_inner)
                        .map_err(|status| grpc_refusal(&status, compression, attempt))
                })
            }
        }
    }

    /// The target cannot decompress what was sent (`Then::Resend`):
    /// exports go uncompressed from here on.
    pub(super) fn stop_compressing(&mut self, reason: &str) {
        tracing::warn!(
            target = %self.url,
            error = %reason,
            "the target does not take compressed exports; sending them uncompressed"
        );
        self.compression = ForwardCompression::None;
    }
}

fn grpc_client(url: &str, headers: &[(String, String)], tls: &ClientTls) -> anyhow::Result<Client> {
    let connection = Connection::connect_lazy(url, None, tls)?;
    let headers = headers
        .iter()
        .map(|(name, value)| {
            let key = AsciiMetadataKey::from_bytes(name.as_bytes()).map_err(|_| {
                anyhow::anyhow!("--forward-header `{name}`: not a valid header name")
            })?;
            let value = AsciiMetadataValue::try_from(value.as_str()).map_err(|_| {
                anyhow::anyhow!("--forward-header `{name}`: the value must be visible ASCII")
            })?;
            Ok((key, value))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(LogsServiceClient::with_interceptor(
        connection.channel(),
        Headers(headers),
    ))
}

/// What a failed gRPC export means. A target that cannot decompress what
/// was sent answers UNIMPLEMENTED, which is not retried, so without
/// `Resend` a target without gzip (an older sessionlog) would have every
/// record dropped. Servers word it differently ("Content is compressed
/// with gzip which isn't supported", "Decompressor is not installed",
/// "Can't find decompressor"); all say "compress".
fn grpc_refusal(status: &tonic::Status, compression: ForwardCompression, attempt: u32) -> Refusal {
    let reason = format!("{:?}: {}", status.code(), status.message());
    let then = if compression != ForwardCompression::None
        && status.code() == tonic::Code::Unimplemented
        && status.message().to_ascii_lowercase().contains("compress")
    {
        Then::Resend
    } else {
        match retry::delay(status, attempt) {
            Some(delay) => Then::RetryAfter(delay),
            None => Then::Drop,
        }
    };
    Refusal { reason, then }
}

/// `name=value`, as `--forward-header` takes it.
pub(crate) fn parse_header(text: &str) -> Result<(String, String), String> {
    let (name, value) = text
        .split_once('=')
        .ok_or_else(|| format!("`{text}`: expected name=value"))?;
    let name = name.trim().to_ascii_lowercase();
    if name.is_empty() {
        return Err(format!("`{text}`: the header name is empty"));
    }
    Ok((name, value.trim().to_owned()))
}
