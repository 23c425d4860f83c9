//! Requests as tests send them when they check the answer themselves (a
//! status code, a whole response): one constructor per RPC, every other
//! field left at its default.

use std::time::Duration;

use prost_types::Struct;
use sessionlog::pb;

/// Starts the session `session_id`.
pub(crate) fn start(session_id: &str) -> pb::StartSessionRequest {
    pb::StartSessionRequest {
        session_id: session_id.to_owned(),
        ..Default::default()
    }
}

/// Starts a session with a generated id and a lease of `ttl`.
pub(crate) fn start_leased(ttl: Duration) -> pb::StartSessionRequest {
    pb::StartSessionRequest {
        lease_ttl: Some(prost_types::Duration::try_from(ttl).expect("a lease fits")),
        ..Default::default()
    }
}

pub(crate) fn get(session_id: &str) -> pb::GetSessionRequest {
    pb::GetSessionRequest {
        session_id: session_id.to_owned(),
    }
}

pub(crate) fn update(session_id: &str, metadata: Option<Struct>) -> pb::UpdateSessionRequest {
    pb::UpdateSessionRequest {
        session_id: session_id.to_owned(),
        metadata,
    }
}

pub(crate) fn end(session_id: &str, reason: &str) -> pb::EndSessionRequest {
    pb::EndSessionRequest {
        session_id: session_id.to_owned(),
        reason: reason.to_owned(),
    }
}

pub(crate) fn heartbeat(session_id: &str) -> pb::HeartbeatRequest {
    pb::HeartbeatRequest {
        session_id: session_id.to_owned(),
    }
}

pub(crate) fn delete(session_id: &str, force: bool) -> pb::DeleteSessionRequest {
    pb::DeleteSessionRequest {
        session_id: session_id.to_owned(),
        force,
    }
}

/// Appends `entries` as one batch, without a batch id.
pub(crate) fn append(session_id: &str, entries: Vec<pb::LogEntry>) -> pb::AppendRequest {
    pb::AppendRequest {
        session_id: session_id.to_owned(),
        entries,
        ..Default::default()
    }
}

/// Reads the first page.
pub(crate) fn read(session_id: &str) -> pb::ReadRequest {
    pb::ReadRequest {
        session_id: session_id.to_owned(),
        ..Default::default()
    }
}

/// An OTLP attribute with a string value.
pub(crate) fn kv(key: &str, value: &str) -> opentelemetry_proto::tonic::common::v1::KeyValue {
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(Value::StringValue(value.into())),
        }),
        ..Default::default()
    }
}
