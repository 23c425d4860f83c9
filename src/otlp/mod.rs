//! The OTLP edge, beside `api`: OpenTelemetry log exports in, through the
//! same limits and rules as the sessionlog API. `mapping` is the one
//! translation between the two models; `outbound` writes what it reads, for
//! exports to OpenTelemetry backends; `census` counts an export's records
//! on its bytes, before it is decoded.

pub(crate) mod census;
mod intake;
pub(crate) mod mapping;
pub(crate) mod outbound;

pub(crate) use intake::OtlpIntake;
