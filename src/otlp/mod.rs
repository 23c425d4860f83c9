//! The OTLP edge, beside `api`: OpenTelemetry log exports in, through the
//! same limits and rules as the sessionlog API. `mapping` is the one
//! translation between the two models; `outbound` writes what it reads, for
//! exports to OpenTelemetry backends.

mod intake;
pub(crate) mod mapping;
pub(crate) mod outbound;

pub(crate) use intake::OtlpIntake;
