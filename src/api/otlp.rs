//! `opentelemetry.proto.collector.logs.v1.LogsService` on the gRPC port:
//! each export arrives encoded; its records are counted on the bytes
//! (`--max-otlp-records`) before it is decoded, then it goes to the OTLP
//! intake (`otlp`), and its failure becomes a status in the one place that
//! maps them (`status`).

use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use prost::Message;
use tonic::{Request, Response, Status};

use super::codec::decode_fault;
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
        let bytes = request.into_inner().bytes;
        self.intake.check_records(&bytes)?;
        let request = ExportLogsServiceRequest::decode(bytes).map_err(|err| {
            Status::invalid_argument(format!(
                "the message is not valid protobuf: {}",
                decode_fault(&err.to_string())
            ))
        })?;
        self.intake
            .export(request)
            .await
            .map(Response::new)
            .map_err(Status::from)
    }
}
