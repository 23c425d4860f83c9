//! TLS from the CLI: it speaks https with a CA and a client certificate.

use std::process::Stdio;

use crate::common::access::{Pki, https, tls_server};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_speaks_https_with_a_ca_and_client_certificate() {
    let pki = Pki::new();
    let server = tls_server(&pki, true).await;
    let (cert, key) = pki.issue("cli", &["cli"]);
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_sessionlog"))
        .args([
            "start",
            "--app",
            "tls-cli",
            "--server",
            &https(&server),
            "--ca-file",
        ])
        .arg(pki.path("ca.pem"))
        .arg("--cert-file")
        .arg(&cert)
        .arg("--key-file")
        .arg(&key)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .expect("run");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        !String::from_utf8_lossy(&output.stdout).trim().is_empty(),
        "printed the id"
    );
    server.shutdown().await;
}
