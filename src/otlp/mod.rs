//! The OTLP edge, beside `api`: OpenTelemetry log exports in, through the
//! same limits and rules as the sessionlog API. `mapping` is the one
//! translation between the two models, used both ways.

mod intake;
pub mod mapping;

pub use intake::OtlpIntake;
