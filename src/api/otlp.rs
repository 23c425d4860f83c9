//! `opentelemetry.proto.collector.logs.v1.LogsService` on the gRPC port:
//! each export arrives encoded and goes as it is to the OTLP intake
//! (`otlp`), which counts its records on the bytes (`--max-otlp-records`)
//! before decoding it; its failure becomes a status in the one place that
//! maps them (`status`).

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceResponse;
use tonic::{Request, Response, Status};

use super::wire::EncodedExport;
use crate::otlp::OtlpIntake;
use crate::pb::otlp_intake::logs_service_server::LogsService;

/// The OTLP logs service.
#[derive(Debug, Clone)]
pub(crate) struct OtlpService {
    intake: OtlpIntake,
}

impl OtlpService {
    pub(crate) fn new(intake: OtlpIntake) -> Self {
        Self { intake }
    }
}

#[tonic::async_trait]
impl LogsService for OtlpService {
    async fn export(
        &self,
        request: Request<EncodedExport>,
    ) -> Result<Response<ExportLogsServiceResponse>, Status> {
        self.intake
            .export_encoded(request.into_inner().bytes)
            .await
            .map(Response::new)
            .map_err(Status::from)
    }
}
