//! One forwarding target: its OTLP client (connected lazily, so a target
//! that is down at start-up is retried like one that goes down later), the
//! headers it gets, and its stable id for cursors.

use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use tonic::codec::CompressionEncoding;
use tonic::metadata::{AsciiMetadataKey, AsciiMetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

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

#[derive(Debug)]
pub(super) struct Target {
    pub url: String,
    /// Names the target's cursors: the URL's SHA-256, so reordering or
    /// adding targets keeps each one's place.
    pub id: String,
    /// Uncompressed; `client()` adds the compression.
    base: Client,
    /// How exports are compressed, until the target turns out not to take
    /// it (`refuses_compression`).
    compression: Option<CompressionEncoding>,
}

impl Target {
    pub(super) fn new(
        url: &str,
        headers: &[(String, String)],
        tls: &ClientTls,
        compression: Option<CompressionEncoding>,
    ) -> anyhow::Result<Self> {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            anyhow::bail!("--forward-otlp `{url}`: use http://host:port or https://host:port");
        }
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
        let base = LogsServiceClient::with_interceptor(connection.channel(), Headers(headers));
        let digest = ring::digest::digest(&ring::digest::SHA256, url.as_bytes());
        let id = digest.as_ref()[..16]
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect();
        Ok(Self {
            url: url.to_owned(),
            id,
            base,
            compression,
        })
    }

    /// A client for the next export.
    pub(super) fn client(&self) -> Client {
        match self.compression {
            // Answers come back compressed only if the target chooses to;
            // accepting both costs nothing when it does not.
            Some(encoding) => self
                .base
                .clone()
                .send_compressed(encoding)
                .accept_compressed(CompressionEncoding::Gzip)
                .accept_compressed(CompressionEncoding::Zstd),
            None => self.base.clone(),
        }
    }

    /// Whether `status` says the target cannot decompress what was sent.
    /// Then exports go uncompressed from here on, and the one refused is
    /// sent again: UNIMPLEMENTED is not retried, so without this a target
    /// without gzip (an older sessionlog) would have every record dropped.
    /// Servers word it differently ("Content is compressed with gzip which
    /// isn't supported", "Decompressor is not installed", "Can't find
    /// decompressor"); all say "compress".
    pub(super) fn refuses_compression(&mut self, status: &tonic::Status) -> bool {
        let refused = self.compression.is_some()
            && status.code() == tonic::Code::Unimplemented
            && status.message().to_ascii_lowercase().contains("compress");
        if refused {
            tracing::warn!(
                target = %self.url,
                error = %status.message(),
                "the target does not take compressed exports; sending them uncompressed"
            );
            self.compression = None;
        }
        refused
    }
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
