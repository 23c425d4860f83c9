"""`https://` servers: the CA to trust (an argument or SESSIONLOG_CA_FILE)
and a client certificate for a server that requires one (mutual TLS).
The certificates are made with the openssl command line."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

import sessionlog

from conftest import ServerProcess


def openssl(directory: Path, *args: str) -> None:
    subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True, timeout=30)


def make_certificates(directory: Path) -> None:
    """A CA, a server certificate for localhost and a client certificate."""
    key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    openssl(directory, "req", "-x509", *key, "-keyout", "ca.key", "-out", "ca.pem",
            "-days", "1", "-subj", "/CN=sessionlog test CA")  # fmt: skip
    for name, extensions in (
        ("server", "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth"),
        ("client", "extendedKeyUsage=clientAuth"),
    ):
        openssl(directory, "req", *key, "-keyout", f"{name}.key", "-out", f"{name}.csr",
                "-subj", f"/CN={name}")  # fmt: skip
        (directory / f"{name}.ext").write_text(
            f"basicConstraints=CA:FALSE\n{extensions}\n", encoding="utf-8"
        )
        openssl(directory, "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem",
                "-CAkey", "ca.key", "-CAcreateserial", "-out", f"{name}.pem", "-days", "1",
                "-extfile", f"{name}.ext")  # fmt: skip


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    directory = tmp_path_factory.mktemp("tls")
    make_certificates(directory)
    process = ServerProcess(
        directory,
        "--tls-cert", str(directory / "server.pem"),
        "--tls-key", str(directory / "server.key"),
        "--tls-client-ca", str(directory / "ca.pem"),
    )  # fmt: skip
    process.start()
    try:
        yield process
    finally:
        process.stop()


def https(server: ServerProcess) -> str:
    return "https://localhost:" + server.tcp_address.rsplit(":", 1)[1]


def test_a_client_certificate_and_the_ca_reach_a_mutual_tls_server(
    tls_server: ServerProcess,
) -> None:
    certificates = tls_server.directory
    with tls_server.client(
        https(tls_server),
        ca_file=certificates / "ca.pem",
        cert_file=certificates / "client.pem",
        key_file=certificates / "client.key",
    ) as client:
        session = client.start_session(app_name="tls")
        client.append(session.id, ["over TLS"])
        assert [e.message for e in client.read(session.id).entries] == ["over TLS"]


def test_the_ca_and_certificate_come_from_the_environment(
    tls_server: ServerProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    certificates = tls_server.directory
    monkeypatch.setenv("SESSIONLOG_CA_FILE", str(certificates / "ca.pem"))
    monkeypatch.setenv("SESSIONLOG_CERT_FILE", str(certificates / "client.pem"))
    monkeypatch.setenv("SESSIONLOG_KEY_FILE", str(certificates / "client.key"))
    with tls_server.client(https(tls_server)) as client:
        assert client.start_session(app_name="tls-env").active


def test_an_untrusted_server_or_a_missing_client_certificate_fails(
    tls_server: ServerProcess,
) -> None:
    certificates = tls_server.directory
    with tls_server.client(https(tls_server)) as untrusted:  # grpcio's roots only
        with pytest.raises(sessionlog.Error) as raised:
            untrusted.start_session()
    assert raised.value.code == grpc.StatusCode.UNAVAILABLE
    with tls_server.client(https(tls_server), ca_file=certificates / "ca.pem") as anonymous:
        with pytest.raises(sessionlog.Error) as refused:
            anonymous.start_session()
    assert refused.value.code == grpc.StatusCode.UNAVAILABLE
    with pytest.raises(ValueError, match="both cert_file and key_file"):
        sessionlog.Client(https(tls_server), cert_file=certificates / "client.pem")
