//! Compiles `proto/` with protox (a pure-Rust protobuf compiler), so no
//! system `protoc` is needed, and writes the descriptor set for reflection.

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
        .build_server(true)
        // Malformed requests are INVALID_ARGUMENT, not INTERNAL.
        .codec_path("crate::api::codec::Codec")
        .compile_fds(descriptors)?;
    Ok(())
}
