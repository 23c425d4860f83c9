//! One OTLP/HTTP target (`--forward-otlp` with a path, such as
//! `http://collector:4318/v1/logs` or `https://loki:3100/otlp/v1/logs`):
//! each export is `POST`ed as protobuf (`application/x-protobuf`), gzip
//! unless told otherwise, with the configured headers; the answer is read
//! as the OTLP/HTTP specification says (`retry::http_delay`). Connections
//! are kept and reused by hyper's pool; `https://` trusts the system's
//! roots or `--forward-ca-file`, and presents `--forward-cert-file` when
//! given.

use std::io::Write as _;
use std::sync::Arc;

use anyhow::Context as _;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Uri, header};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use prost::Message as _;
use prost::bytes::Bytes;

use super::ForwardCompression;
use super::retry::{self, Refusal, Then};
use crate::client::ClientTls;

/// The largest answer read; an `ExportLogsServiceResponse` is tiny, and
/// an error page need not be read whole.
const MAX_ANSWER_BYTES: usize = 64 << 10;

type Connector = hyper_rustls::HttpsConnector<HttpConnector>;

#[derive(Debug, Clone)]
pub(super) struct HttpExporter {
    uri: Uri,
    headers: HeaderMap,
    client: Client<Connector, Full<Bytes>>,
}

impl HttpExporter {
    pub(super) fn new(
        uri: Uri,
        headers: &[(String, String)],
        tls: &ClientTls,
    ) -> anyhow::Result<Self> {
        let headers = headers
            .iter()
            .map(|(name, value)| {
                let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                    anyhow::anyhow!("--forward-header `{name}`: not a valid header name")
                })?;
                let value = HeaderValue::from_str(value).map_err(|_| {
                    anyhow::anyhow!("--forward-header `{name}`: the value must be visible ASCII")
                })?;
                Ok((name, value))
            })
            .collect::<anyhow::Result<HeaderMap>>()?;
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls_config(tls)?)
            .https_or_http()
            .enable_http1()
            .build();
        let client = Client::builder(TokioExecutor::new()).build(connector);
        Ok(Self {
            uri,
            headers,
            client,
        })
    }

    /// Posts `export`, compressed with `compression`; the target's answer,
    /// or what to do about its refusal.
    pub(super) async fn export(
        &self,
        export: &ExportLogsServiceRequest,
        compression: ForwardCompression,
        attempt: u32,
    ) -> Result<ExportLogsServiceResponse, Refusal> {
        let body = compress(export.encode_to_vec(), compression).map_err(|err| Refusal {
            reason: format!("cannot compress the export: {err}"),
            then: Then::Drop,
        })?;
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(self.uri.clone())
            .header(header::CONTENT_TYPE, "application/x-protobuf")
            .body(Full::new(Bytes::from(body)))
            .map_err(|err| Refusal {
                reason: format!("cannot build the request: {err}"),
                then: Then::Drop,
            })?;
        let encoding = match compression {
            ForwardCompression::Gzip => Some("gzip"),
            ForwardCompression::Zstd => Some("zstd"),
            ForwardCompression::None => None,
        };
        if let Some(encoding) = encoding {
            request
                .headers_mut()
                .insert(header::CONTENT_ENCODING, HeaderValue::from_static(encoding));
        }
        request.headers_mut().extend(self.headers.clone());
        let response = self.client.request(request).await.map_err(|err| Refusal {
            // Connecting failed or the connection broke: try again.
            reason: format!("no answer: {}", error_chain(&err)),
            then: Then::RetryAfter(retry::backoff(attempt)),
        })?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        let body = Limited::new(response.into_body(), MAX_ANSWER_BYTES)
            .collect()
            .await
            .map(|collected| collected.to_bytes())
            .unwrap_or_default();
        if status.is_success() {
            // An answer that does not decode (some stores send none, or
            // JSON) still acknowledges the records.
            return Ok(ExportLogsServiceResponse::decode(body).unwrap_or_default());
        }
        let reason = format!(
            "HTTP {status}: {}",
            String::from_utf8_lossy(&body[..body.len().min(512)]).trim()
        );
        let then = if status.as_u16() == 415 && compression != ForwardCompression::None {
            Then::Resend
        } else {
            match retry::http_delay(status.as_u16(), retry_after.as_deref(), attempt) {
                Some(delay) => Then::RetryAfter(delay),
                None => Then::Drop,
            }
        };
        Err(Refusal { reason, then })
    }
}

/// What went wrong, with its causes (hyper's own text is "client error").
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn compress(body: Vec<u8>, compression: ForwardCompression) -> std::io::Result<Vec<u8>> {
    match compression {
        ForwardCompression::None => Ok(body),
        ForwardCompression::Gzip => {
            let mut encoder =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            encoder.write_all(&body)?;
            encoder.finish()
        }
        ForwardCompression::Zstd => zstd::encode_all(body.as_slice(), 1),
    }
}

/// rustls settings from the `--forward-*` TLS files: their CA or the
/// system's roots, and the client certificate when given.
fn tls_config(tls: &ClientTls) -> anyhow::Result<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};

    let mut roots = rustls::RootCertStore::empty();
    match &tls.ca_file {
        Some(path) => {
            for cert in CertificateDer::pem_file_iter(path)
                .with_context(|| format!("cannot read the CA file {}", path.display()))?
            {
                let cert = cert.with_context(|| format!("{} is not PEM", path.display()))?;
                roots.add(cert).with_context(|| {
                    format!("a certificate in {} is not usable", path.display())
                })?;
            }
        }
        None => {
            for cert in rustls_native_certs::load_native_certs().certs {
                // A system root rustls cannot use is skipped, as tonic does.
                let _ = roots.add(cert);
            }
        }
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .context("the TLS settings are not usable")?
    .with_root_certificates(roots);
    Ok(match (&tls.cert_file, &tls.key_file) {
        (Some(cert), Some(key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .with_context(|| format!("cannot read {}", cert.display()))?
                .collect::<Result<Vec<_>, _>>()
                .with_context(|| format!("{} is not PEM", cert.display()))?;
            let key = PrivateKeyDer::from_pem_file(key)
                .with_context(|| format!("cannot read the key {}", key.display()))?;
            builder
                .with_client_auth_cert(chain, key)
                .context("the client certificate and key do not make a usable pair")?
        }
        _ => builder.with_no_client_auth(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_compressed_as_asked() {
        let body = vec![b'x'; 1000];
        let gzip = compress(body.clone(), ForwardCompression::Gzip).expect("gzip");
        assert_eq!(&gzip[..2], &[0x1f, 0x8b]);
        let zstd = compress(body.clone(), ForwardCompression::Zstd).expect("zstd");
        assert_eq!(zstd::decode_all(zstd.as_slice()).expect("zstd"), body);
        assert_eq!(
            compress(body.clone(), ForwardCompression::None).ok(),
            Some(body)
        );
    }
}
