//! `POST /v1/logs`: OTLP/HTTP logs in, as the OTLP specification has it.
//! The body is an `ExportLogsServiceRequest` in protobuf
//! (`application/x-protobuf`) or the OTLP JSON encoding
//! (`application/json`), optionally gzip or zstd (`Content-Encoding`).
//! Whatever came in becomes the encoded protobuf export and goes to the
//! same `OtlpIntake` as gRPC's `LogsService`, so counting, limits, mapping,
//! leases and batch ids are one code path. The answer is an
//! `ExportLogsServiceResponse` (with `partial_success`) in the request's
//! encoding; a failure is a `google.rpc.Status` in it, with the HTTP
//! status `error::otlp_status` chooses.
//!
//! Reading and decompressing are bounded by `--max-message-size` on both
//! sides (the bytes sent and the bytes they inflate to); decompressing and
//! JSON decoding run on the blocking pool.

use std::io::Read as _;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt as _;
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use prost::Message as _;
use prost::bytes::Bytes;

use crate::edge::{Code, Failure};

use super::HttpEdge;
use super::auth;
use super::error::{grpc_code_number, otlp_status, retry_after_seconds};

const PROTOBUF: &str = "application/x-protobuf";
const JSON: &str = "application/json";

/// How a request's body (and so its answer) is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Protobuf,
    Json,
}

/// How a request's body is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Compression {
    Identity,
    Gzip,
    Zstd,
}

/// A refused export, rendered in the request's encoding.
#[derive(Debug)]
struct OtlpError {
    failure: Failure,
    encoding: Encoding,
    /// Set for a request this route cannot read at all (415).
    status: Option<StatusCode>,
}

/// `google.rpc.Status`, the body of a failed OTLP/HTTP export.
#[derive(Clone, PartialEq, prost::Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

/// `POST /v1/logs`.
pub(super) async fn export(State(edge): State<HttpEdge>, request: Request) -> Response {
    // Errors before the content type is known are rendered as protobuf,
    // the encoding OTLP/HTTP clients send by default.
    let encoding = match encoding(request.headers()) {
        Ok(encoding) => encoding,
        Err(message) => return unsupported(message, Encoding::Protobuf),
    };
    match accept(&edge, request, encoding).await {
        Ok(response) => answer(StatusCode::OK, encoding, &response),
        Err(error) => error.into_response(),
    }
}

async fn accept(
    edge: &HttpEdge,
    request: Request,
    encoding: Encoding,
) -> Result<ExportLogsServiceResponse, OtlpError> {
    let fail = |failure| OtlpError {
        failure,
        encoding,
        status: None,
    };
    auth::authorize(&edge.auth, request.headers()).map_err(fail)?;
    let Some(intake) = edge.otlp.clone() else {
        return Err(fail(Failure::new(
            Code::NotFound,
            "this server takes no OTLP exports",
        )));
    };
    let compression = compression(request.headers()).map_err(|message| OtlpError {
        status: Some(StatusCode::UNSUPPORTED_MEDIA_TYPE),
        ..fail(Failure::new(Code::InvalidArgument, message))
    })?;
    let max = edge.limits.max_message_bytes;
    let body = read_body(request.into_body(), max).await.map_err(fail)?;
    let export = tokio::task::spawn_blocking(move || {
        let body = decompress(body, compression, max)?;
        to_protobuf(body, encoding)
    })
    .await
    .map_err(|_| {
        fail(Failure::new(
            Code::Internal,
            "decoding the export failed; see the server log",
        ))
    })?
    .map_err(fail)?;
    intake.export_encoded(export).await.map_err(fail)
}

/// The body's encoding from `Content-Type` (parameters such as `charset`
/// aside).
fn encoding(headers: &HeaderMap) -> Result<Encoding, String> {
    let value = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    let media = value.split(';').next().unwrap_or_default().trim();
    if media.eq_ignore_ascii_case(PROTOBUF) || media.eq_ignore_ascii_case("application/protobuf") {
        Ok(Encoding::Protobuf)
    } else if media.eq_ignore_ascii_case(JSON) {
        Ok(Encoding::Json)
    } else {
        Err(format!(
            "`Content-Type` must be `{PROTOBUF}` or `{JSON}`, not `{value}`"
        ))
    }
}

fn compression(headers: &HeaderMap) -> Result<Compression, String> {
    let value = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .trim();
    match value.to_ascii_lowercase().as_str() {
        "" | "identity" => Ok(Compression::Identity),
        "gzip" | "x-gzip" => Ok(Compression::Gzip),
        "zstd" => Ok(Compression::Zstd),
        _ => Err(format!(
            "`Content-Encoding` must be `gzip`, `zstd` or absent, not `{value}`"
        )),
    }
}

fn too_large(max: usize, what: &str) -> Failure {
    Failure::new(
        Code::ResourceExhausted,
        format!("the export is larger than `--max-message-size` ({max} bytes) {what}"),
    )
}

/// The whole body, refused once it passes `max` bytes.
async fn read_body(body: Body, max: usize) -> Result<Bytes, Failure> {
    let mut stream = body.into_data_stream();
    let mut collected = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|err| {
            Failure::new(
                Code::InvalidArgument,
                format!("the request body could not be read: {err}"),
            )
        })?;
        if collected.len() + chunk.len() > max {
            return Err(too_large(max, "as sent"));
        }
        collected.extend_from_slice(&chunk);
    }
    Ok(collected.into())
}

/// The body inflated, refused once it passes `max` bytes.
fn decompress(body: Bytes, compression: Compression, max: usize) -> Result<Bytes, Failure> {
    let reader: Box<dyn std::io::Read> = match compression {
        Compression::Identity => return Ok(body),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(&body[..])),
        Compression::Zstd => {
            Box::new(zstd::stream::read::Decoder::new(&body[..]).map_err(|err| {
                Failure::new(Code::InvalidArgument, format!("the zstd body: {err}"))
            })?)
        }
    };
    let limit = u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1);
    let mut inflated = Vec::new();
    reader
        .take(limit)
        .read_to_end(&mut inflated)
        .map_err(|err| {
            Failure::new(
                Code::InvalidArgument,
                format!("the body does not decompress as its `Content-Encoding` says: {err}"),
            )
        })?;
    if inflated.len() > max {
        return Err(too_large(max, "once decompressed"));
    }
    Ok(inflated.into())
}

/// The export as protobuf: JSON is decoded and encoded again, so the one
/// intake counts and decodes every export alike.
fn to_protobuf(body: Bytes, encoding: Encoding) -> Result<Bytes, Failure> {
    match encoding {
        Encoding::Protobuf => Ok(body),
        Encoding::Json => {
            let request: ExportLogsServiceRequest =
                serde_json::from_slice(&body).map_err(|err| {
                    Failure::new(
                        Code::InvalidArgument,
                        format!("the body is not an OTLP JSON logs export: {err}"),
                    )
                })?;
            Ok(request.encode_to_vec().into())
        }
    }
}

/// A `200` with the export's answer.
fn answer(
    status: StatusCode,
    encoding: Encoding,
    response: &ExportLogsServiceResponse,
) -> Response {
    let body = match encoding {
        Encoding::Protobuf => response.encode_to_vec(),
        Encoding::Json => response_json(response).to_string().into_bytes(),
    };
    encoded(status, encoding, body)
}

/// `ExportLogsServiceResponse` in the OTLP JSON encoding: camelCase, the
/// 64-bit count as a string, nothing for an empty `partial_success`.
fn response_json(response: &ExportLogsServiceResponse) -> serde_json::Value {
    match &response.partial_success {
        Some(partial) => serde_json::json!({
            "partialSuccess": {
                "rejectedLogRecords": partial.rejected_log_records.to_string(),
                "errorMessage": partial.error_message,
            }
        }),
        None => serde_json::json!({}),
    }
}

fn encoded(status: StatusCode, encoding: Encoding, body: Vec<u8>) -> Response {
    let content_type = match encoding {
        Encoding::Protobuf => PROTOBUF,
        Encoding::Json => JSON,
    };
    (status, [(header::CONTENT_TYPE, content_type)], body).into_response()
}

fn unsupported(message: String, encoding: Encoding) -> Response {
    OtlpError {
        failure: Failure::new(Code::InvalidArgument, message),
        encoding,
        status: Some(StatusCode::UNSUPPORTED_MEDIA_TYPE),
    }
    .into_response()
}

impl IntoResponse for OtlpError {
    fn into_response(self) -> Response {
        let status = self.status.unwrap_or_else(|| otlp_status(&self.failure));
        let rpc = RpcStatus {
            code: grpc_code_number(self.failure.code),
            message: self.failure.message.clone(),
        };
        let body = match self.encoding {
            Encoding::Protobuf => rpc.encode_to_vec(),
            Encoding::Json => serde_json::json!({"code": rpc.code, "message": rpc.message})
                .to_string()
                .into_bytes(),
        };
        let mut response = encoded(status, self.encoding, body);
        let headers = response.headers_mut();
        if let Some(seconds) = retry_after_seconds(&self.failure, status) {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if self.failure.code == Code::Unauthenticated {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"sessionlog\""),
            );
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(name, value)| (name.clone(), HeaderValue::from_str(value).expect("value")))
            .collect()
    }

    #[test]
    fn content_types_and_encodings_are_read_as_the_spec_names_them() {
        let json = headers(&[(header::CONTENT_TYPE, "application/json; charset=utf-8")]);
        assert_eq!(encoding(&json), Ok(Encoding::Json));
        let proto = headers(&[(header::CONTENT_TYPE, "application/x-protobuf")]);
        assert_eq!(encoding(&proto), Ok(Encoding::Protobuf));
        assert!(encoding(&headers(&[(header::CONTENT_TYPE, "text/plain")])).is_err());
        assert!(encoding(&HeaderMap::new()).is_err());
        let gzip = headers(&[(header::CONTENT_ENCODING, "GZIP")]);
        assert_eq!(compression(&gzip), Ok(Compression::Gzip));
        assert_eq!(compression(&HeaderMap::new()), Ok(Compression::Identity));
        assert!(compression(&headers(&[(header::CONTENT_ENCODING, "br")])).is_err());
    }

    #[test]
    fn decompression_stops_at_the_limit() {
        let plain = vec![b'a'; 4096];
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &plain).expect("gzip");
        let gz: Bytes = gz.finish().expect("gzip").into();
        let inflated = decompress(gz.clone(), Compression::Gzip, 4096).expect("fits");
        assert_eq!(inflated.len(), 4096);
        let refused = decompress(gz, Compression::Gzip, 4095).expect_err("too large");
        assert_eq!(refused.code, Code::ResourceExhausted);
        let zstd: Bytes = zstd::encode_all(&plain[..], 1).expect("zstd").into();
        assert_eq!(
            decompress(zstd, Compression::Zstd, 4096)
                .expect("fits")
                .len(),
            4096
        );
        let garbage = decompress(Bytes::from_static(b"nope"), Compression::Gzip, 10);
        assert_eq!(garbage.expect_err("bad").code, Code::InvalidArgument);
    }

    #[test]
    fn json_answers_follow_the_otlp_json_encoding() {
        let empty = ExportLogsServiceResponse::default();
        assert_eq!(response_json(&empty).to_string(), "{}");
        let partial = ExportLogsServiceResponse {
            partial_success: Some(
                opentelemetry_proto::tonic::collector::logs::v1::ExportLogsPartialSuccess {
                    rejected_log_records: 3,
                    error_message: "ended".into(),
                },
            ),
        };
        assert_eq!(
            response_json(&partial)["partialSuccess"]["rejectedLogRecords"],
            "3"
        );
    }
}
