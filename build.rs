//! Compiles `proto/` with protox (a pure-Rust protobuf compiler), so no
//! system `protoc` is needed, and writes the descriptor set for reflection;
//! generates the server's trait apart from the messages and client (see
//! `api::wire`), and the OTLP logs service stub.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = [
        "proto/sessionlog/v1/sessionlog.proto",
        "proto/sessionlog/storage/v1/storage.proto",
    ];
    for proto in protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    let descriptors = protox::compile(protos, ["proto"])?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("sessionlog_descriptor.bin"),
        prost::Message::encode_to_vec(&descriptors),
    )?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(false)
        .compile_fds(descriptors.clone())?;
    // The server's trait, generated apart: its messages are the ones above,
    // except `AppendRequest`, whose entries it keeps encoded, and
    // `FollowResponse`, which it sends already encoded.
    let server_dir = out_dir.join("server");
    std::fs::create_dir_all(&server_dir)?;
    tonic_prost_build::configure()
        .build_client(false)
        .build_server(true)
        .out_dir(&server_dir)
        .extern_path(".sessionlog.v1", "crate::pb")
        .extern_path(
            ".sessionlog.v1.FollowResponse",
            "crate::api::wire::EncodedFollowResponse",
        )
        .extern_path(
            ".sessionlog.v1.AppendRequest",
            "crate::api::wire::WireAppendRequest",
        )
        .extern_path(".sessionlog.storage.v1", "crate::store::schema")
        // Malformed requests are INVALID_ARGUMENT, not INTERNAL.
        .codec_path("crate::api::codec::Codec")
        .compile_fds(descriptors)?;
    otlp_logs_service(&server_dir);
    Ok(())
}

/// The OTLP logs service stub, over the message types of the
/// `opentelemetry-proto` crate but with our codec, so a malformed export is
/// INVALID_ARGUMENT like any other request; and, apart (into `server/`),
/// the server the intake serves, whose request arrives undecoded
/// (`api::wire::EncodedExport`, through `api::codec::ExportCodec`), so its
/// records are counted before a decode materialises them.
fn otlp_logs_service(server_dir: &std::path::Path) {
    let messages = "::opentelemetry_proto::tonic::collector::logs::v1";
    let service = |input_type: String, codec_path: &str| {
        let export = tonic_build::manual::Method::builder()
            .name("export")
            .route_name("Export")
            .input_type(input_type)
            .output_type(format!("{messages}::ExportLogsServiceResponse"))
            .codec_path(codec_path)
            .build();
        tonic_build::manual::Service::builder()
            .name("LogsService")
            .package("opentelemetry.proto.collector.logs.v1")
            .method(export)
            .build()
    };
    tonic_build::manual::Builder::new().compile(&[service(
        format!("{messages}::ExportLogsServiceRequest"),
        "crate::api::codec::Codec",
    )]);
    tonic_build::manual::Builder::new()
        .build_client(false)
        .out_dir(server_dir)
        .compile(&[service(
            "crate::api::wire::EncodedExport".to_owned(),
            "crate::api::codec::ExportCodec",
        )]);
}
