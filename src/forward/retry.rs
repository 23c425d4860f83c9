//! When a failed export is tried again, as the OTLP specification says:
//! over gRPC the retryable codes (and RESOURCE_EXHAUSTED only when the
//! server sends `RetryInfo`), the server's `RetryInfo` delay when given;
//! over HTTP 429, 502, 503 and 504, with `Retry-After` when given; else an
//! exponential backoff with jitter, so many sidecars coming back after one
//! outage do not retry in step. `Refusal` is what either protocol's
//! failure comes to.

use std::time::Duration;

use prost::Message;
use tonic::Code;

/// Why an export did not go through, and what to do about it.
#[derive(Debug)]
pub(super) struct Refusal {
    pub(super) reason: String,
    pub(super) then: Then,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Then {
    /// Send the same export again after this long.
    RetryAfter(std::time::Duration),
    /// The target cannot decompress it: send it again uncompressed, now.
    Resend,
    /// The target refused it for good: its records are dropped.
    Drop,
}

const FIRST_DELAY: Duration = Duration::from_millis(100);
const MAX_DELAY: Duration = Duration::from_secs(30);

/// `google.rpc.Status`, as far as the delay needs it.
#[derive(Clone, PartialEq, Message)]
struct RpcStatus {
    #[prost(message, repeated, tag = "3")]
    details: Vec<prost_types::Any>,
}

/// `google.rpc.RetryInfo`.
#[derive(Clone, PartialEq, Message)]
struct RetryInfo {
    #[prost(message, optional, tag = "1")]
    retry_delay: Option<prost_types::Duration>,
}

const RETRY_INFO_TYPE: &str = "type.googleapis.com/google.rpc.RetryInfo";

/// How long to wait before trying again, or `None` when the export must
/// not be retried (the target refused it for good).
pub(super) fn delay(status: &tonic::Status, attempt: u32) -> Option<Duration> {
    let asked = retry_info(status);
    let retryable = match status.code() {
        Code::Cancelled
        | Code::DeadlineExceeded
        | Code::Aborted
        | Code::OutOfRange
        | Code::Unavailable
        | Code::DataLoss => true,
        Code::ResourceExhausted => asked.is_some(),
        _ => false,
    };
    retryable.then(|| asked.unwrap_or_else(|| backoff(attempt)).min(MAX_DELAY))
}

/// How long to wait before posting an OTLP/HTTP export again, or `None`
/// when it must not be (the specification's retryable statuses are 429,
/// 502, 503 and 504; every other failure is for good). The server's
/// `Retry-After` (in seconds) sets the delay when given, capped like the
/// backoff.
pub(super) fn http_delay(status: u16, retry_after: Option<&str>, attempt: u32) -> Option<Duration> {
    if !matches!(status, 429 | 502 | 503 | 504) {
        return None;
    }
    let asked = retry_after
        .and_then(|value| value.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    Some(asked.unwrap_or_else(|| backoff(attempt)).min(MAX_DELAY))
}

/// 100 ms doubling per attempt up to 30 s, each scaled by a random factor
/// between 0.5 and 1.5.
pub(super) fn backoff(attempt: u32) -> Duration {
    let base = FIRST_DELAY
        .saturating_mul(1u32 << attempt.min(16))
        .min(MAX_DELAY);
    let mut byte = [0u8; 1];
    let jitter = match ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut byte) {
        Ok(()) => 0.5 + f64::from(byte[0]) / 255.0,
        Err(_) => 1.0,
    };
    base.mul_f64(jitter)
}

fn retry_info(status: &tonic::Status) -> Option<Duration> {
    let details = RpcStatus::decode(status.details()).ok()?;
    let any = details
        .details
        .iter()
        .find(|any| any.type_url == RETRY_INFO_TYPE)?;
    let delay = RetryInfo::decode(any.value.as_slice()).ok()?.retry_delay?;
    Duration::try_from(delay).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_retry_info(code: Code, seconds: i64) -> tonic::Status {
        let info = RetryInfo {
            retry_delay: Some(prost_types::Duration { seconds, nanos: 0 }),
        };
        let details = RpcStatus {
            details: vec![prost_types::Any {
                type_url: RETRY_INFO_TYPE.into(),
                value: info.encode_to_vec(),
            }],
        };
        tonic::Status::with_details(code, "slow down", details.encode_to_vec().into())
    }

    #[test]
    fn retryable_codes_back_off_and_others_do_not_retry() {
        for code in [Code::Unavailable, Code::DeadlineExceeded, Code::Aborted] {
            let delay = delay(&tonic::Status::new(code, "x"), 0).expect("retried");
            assert!(delay >= Duration::from_millis(50) && delay <= Duration::from_millis(150));
        }
        for code in [
            Code::InvalidArgument,
            Code::Unauthenticated,
            Code::PermissionDenied,
            Code::ResourceExhausted,
        ] {
            assert_eq!(delay(&tonic::Status::new(code, "x"), 0), None, "{code:?}");
        }
    }

    #[test]
    fn retry_info_sets_the_delay_and_allows_resource_exhausted() {
        let status = with_retry_info(Code::ResourceExhausted, 7);
        assert_eq!(delay(&status, 3), Some(Duration::from_secs(7)));
        let status = with_retry_info(Code::Unavailable, 3600);
        assert_eq!(delay(&status, 0), Some(MAX_DELAY));
    }

    #[test]
    fn http_statuses_retry_as_the_otlp_specification_says() {
        assert_eq!(http_delay(503, Some("7"), 0), Some(Duration::from_secs(7)));
        assert_eq!(http_delay(429, Some("86400"), 0), Some(MAX_DELAY));
        for status in [502, 504] {
            let delay = http_delay(status, None, 0).expect("retried");
            assert!(delay <= Duration::from_millis(150), "{status}");
        }
        let dated = http_delay(503, Some("Wed, 21 Oct 2015 07:28:00 GMT"), 0);
        assert!(dated.is_some_and(|delay| delay <= Duration::from_millis(150)));
        for status in [400, 401, 403, 404, 413, 500] {
            assert_eq!(http_delay(status, Some("1"), 0), None, "{status}");
        }
    }

    #[test]
    fn backoff_grows_and_stops_at_the_cap() {
        assert!(backoff(0) <= Duration::from_millis(150));
        assert!(backoff(4) >= Duration::from_millis(800));
        assert!(backoff(30) <= MAX_DELAY.mul_f64(1.5));
    }
}
