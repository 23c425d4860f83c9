//! `opentelemetry.proto.collector.logs.v1.LogsService` on the gRPC port:
//! each export goes to the OTLP intake (`otlp`), and its failure becomes
//! a status in the one place that maps them (`status`).

use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use tonic::{Request, Response, Status};

use crate::otlp::OtlpIntake;
use crate::pb::otlp_logs::logs_service_server::LogsService;

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
        request: Request<ExportLogsServiceRequest>,
    ) -> Result<Response<ExportLogsServiceResponse>, Status> {
        self.intake
            .export(request.into_inner())
            .await
            .map(Response::new)
            .map_err(Status::from)
    }
}
