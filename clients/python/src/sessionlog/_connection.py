"""Where the server is and how to reach it: the `server` string, the token
and the TLS files, read like the `sessionlog` command line reads them
(arguments first, then SESSIONLOG_SERVER, SESSIONLOG_TOKEN_FILE,
SESSIONLOG_CA_FILE, SESSIONLOG_CERT_FILE and SESSIONLOG_KEY_FILE), and the
grpcio channels made from them.

Channels keep grpcio's default options but for reconnect backoff (so a
restarted server is found again within 2 s rather than grpcio's 2 minutes):
in particular the 4 MiB receive limit stands, which the server's responses
stay under, and `unix:` targets need no `:authority` option.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Union
from urllib.parse import urlsplit

import grpc
import grpc.aio

DEFAULT_SERVER = "http://127.0.0.1:50051"

PathLike = Union[str, "os.PathLike[str]"]

CHANNEL_OPTIONS: Sequence[tuple[str, int]] = (
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.min_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 2000),
)


def _env(name: str) -> str | None:
    """An environment variable; empty counts as unset."""
    return os.environ.get(name) or None


def read_token(path: PathLike) -> str:
    """The first line of `path` that is neither blank nor a `#` comment."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise ValueError(f"cannot read the token file {path}: {error}") from error
    for line in text.splitlines():
        token = line.strip()
        if token and not token.startswith("#"):
            if not token.isascii() or not token.isprintable():
                raise ValueError(f"the token in {path} is not printable ASCII")
            return token
    raise ValueError(f"the token file {path} is empty")


@dataclass(frozen=True)
class Target:
    """A parsed `server`: grpcio's target string and whether it uses TLS."""

    server: str
    grpc_target: str
    tls: bool


def parse_server(server: str) -> Target:
    """`http://host:port`, `https://host:port`, `unix:/path` or `host:port`
    (plaintext). A URL without a port gets 80 or 443, as in the CLI."""
    if server.startswith("unix:"):
        if server == "unix:":
            raise ValueError("`unix:` needs a socket path, e.g. unix:/run/sessionlog.sock")
        return Target(server, server, tls=False)
    if "://" not in server:
        if not server or server.startswith(("/", ":")) or "/" in server:
            raise ValueError(
                f"`{server}` is not http://host:port, https://host:port, host:port or unix:/path"
            )
        return Target(server, server, tls=False)
    parts = urlsplit(server)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"`{server}` is not http://host:port, https://host:port or unix:/path")
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        raise ValueError(f"`{server}`: a server URL has only a host and a port")
    tls = parts.scheme == "https"
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    try:
        port = parts.port or (443 if tls else 80)
    except ValueError as error:
        raise ValueError(f"`{server}`: {error}") from None
    return Target(server, f"{host}:{port}", tls=tls)


class Connection:
    """The settings of one client: target, call metadata, credentials."""

    def __init__(
        self,
        server: str | None,
        token: str | None,
        token_file: PathLike | None,
        ca_file: PathLike | None,
        cert_file: PathLike | None,
        key_file: PathLike | None,
    ) -> None:
        self.target = parse_server(server or _env("SESSIONLOG_SERVER") or DEFAULT_SERVER)
        if token is None:
            token_file = token_file or _env("SESSIONLOG_TOKEN_FILE")
            token = read_token(token_file) if token_file else None
        self.metadata: tuple[tuple[str, str], ...] = (
            (("authorization", f"Bearer {token}"),) if token else ()
        )
        self.credentials: grpc.ChannelCredentials | None = None
        if self.target.tls:
            self.credentials = _credentials(
                ca_file or _env("SESSIONLOG_CA_FILE"),
                cert_file or _env("SESSIONLOG_CERT_FILE"),
                key_file or _env("SESSIONLOG_KEY_FILE"),
            )

    def channel(self) -> grpc.Channel:
        if self.credentials is not None:
            return grpc.secure_channel(
                self.target.grpc_target, self.credentials, options=CHANNEL_OPTIONS
            )
        return grpc.insecure_channel(self.target.grpc_target, options=CHANNEL_OPTIONS)

    def aio_channel(self) -> grpc.aio.Channel:
        """A channel for the running event loop (grpc.aio binds to it)."""
        if self.credentials is not None:
            return grpc.aio.secure_channel(
                self.target.grpc_target, self.credentials, options=CHANNEL_OPTIONS
            )
        return grpc.aio.insecure_channel(self.target.grpc_target, options=CHANNEL_OPTIONS)


def _read(path: PathLike, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as error:
        raise ValueError(f"cannot read the {what} {path}: {error}") from error


def _credentials(
    ca_file: PathLike | None, cert_file: PathLike | None, key_file: PathLike | None
) -> grpc.ChannelCredentials:
    """The CA to trust (default: grpcio's roots) and a client certificate."""
    if (cert_file is None) != (key_file is None):
        raise ValueError("a client certificate needs both cert_file and key_file")
    return grpc.ssl_channel_credentials(
        root_certificates=_read(ca_file, "CA file") if ca_file else None,
        private_key=_read(key_file, "key file") if key_file else None,
        certificate_chain=_read(cert_file, "certificate file") if cert_file else None,
    )
