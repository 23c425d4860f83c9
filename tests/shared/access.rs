//! Servers that check who calls: a test CA that issues TLS files, a server
//! that serves TLS (and asks for client certificates when told), and one
//! that wants bearer tokens.

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use sessionlog::server::TlsFiles;

use super::TestServer;

/// A CA and PEM files signed by it, in a temporary directory.
pub(crate) struct Pki {
    dir: tempfile::TempDir,
    ca: CertifiedIssuer<'static, KeyPair>,
}

impl Pki {
    pub(crate) fn new() -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca =
            CertifiedIssuer::self_signed(params, KeyPair::generate().expect("key")).expect("ca");
        let pki = Self {
            dir: tempfile::tempdir().expect("temp dir"),
            ca,
        };
        std::fs::write(pki.path("ca.pem"), pki.ca.pem()).expect("write ca");
        pki
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes `<name>.pem` and `<name>.key` for these subject names.
    pub(crate) fn issue(&self, name: &str, subject_alt_names: &[&str]) -> (PathBuf, PathBuf) {
        let key = KeyPair::generate().expect("key");
        let names: Vec<String> = subject_alt_names
            .iter()
            .map(|name| (*name).to_owned())
            .collect();
        let cert = CertificateParams::new(names)
            .expect("params")
            .signed_by(&key, &self.ca)
            .expect("sign");
        let (cert_path, key_path) = (
            self.path(&format!("{name}.pem")),
            self.path(&format!("{name}.key")),
        );
        std::fs::write(&cert_path, cert.pem()).expect("write cert");
        std::fs::write(&key_path, key.serialize_pem()).expect("write key");
        (cert_path, key_path)
    }
}

/// A server with a certificate from `pki` for `localhost` and `127.0.0.1`;
/// with `require_client_certs`, callers need a certificate from `pki` too.
pub(crate) async fn tls_server(pki: &Pki, require_client_certs: bool) -> TestServer {
    let (cert, key) = pki.issue("server", &["localhost", "127.0.0.1"]);
    let client_ca = require_client_certs.then(|| pki.path("ca.pem"));
    TestServer::builder()
        .configure(move |settings| {
            settings.tls = Some(TlsFiles {
                cert,
                key,
                client_ca,
            });
        })
        .start()
        .await
}

/// The `https://` URL of a TLS `server`.
pub(crate) fn https(server: &TestServer) -> String {
    format!("https://127.0.0.1:{}", server.addr.port())
}

/// A server that takes the bearer tokens listed in `tokens_file`.
pub(crate) async fn server_with_tokens(tokens_file: &Path) -> TestServer {
    let path = tokens_file.to_path_buf();
    TestServer::builder()
        .configure(move |settings| settings.auth_token_file = Some(path))
        .start()
        .await
}
