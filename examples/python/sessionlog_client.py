"""What the examples share: the generated stubs and the connection options.

`--server` takes `host:port` or `unix:/path/to.sock`; `--token-file` names a
file whose first token (blank lines and `#` comments skipped) is sent as
`authorization: Bearer <token>` on every call.
"""

import argparse
import sys

import grpc

try:
    from sessionlog.v1 import sessionlog_pb2 as pb
    from sessionlog.v1 import sessionlog_pb2_grpc as pb_grpc
except ImportError as error:
    sys.exit(
        f"cannot import the generated sessionlog stubs ({error}); generate them "
        "and put their directory on PYTHONPATH, see examples/python/README.md"
    )

__all__ = ["pb", "pb_grpc", "add_connection_args", "connect", "read_token"]

# Reconnect soon after the server comes back rather than after gRPC's default
# backoff, which grows to two minutes.
CHANNEL_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.min_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 2000),
]


def add_connection_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--server",
        default="127.0.0.1:50051",
        help="host:port or unix:/path/to.sock (default: %(default)s)",
    )
    parser.add_argument(
        "--token-file",
        help="file with the bearer token to send (first non-comment line)",
    )


def read_token(path: str) -> str:
    with open(path, encoding="utf-8") as file:
        for line in file:
            token = line.strip()
            if token and not token.startswith("#"):
                return token
    sys.exit(f"{path}: no token in the file")


def connect(args: argparse.Namespace) -> tuple[grpc.Channel, list[tuple[str, str]]]:
    """Returns a plaintext channel to `--server` and the metadata for each call."""
    # No option for `unix:` targets: the server serves the socket path that
    # gRPC's C core sends as `:authority`.
    channel = grpc.insecure_channel(args.server, options=CHANNEL_OPTIONS)
    metadata = []
    if args.token_file:
        metadata.append(("authorization", f"Bearer {read_token(args.token_file)}"))
    return channel, metadata
