"""What the examples share: `--server` and `--token-file`, and a
`sessionlog.Client` made from them.

`--server` takes `host:port`, `http://host:port` or `unix:/path/to.sock`
(default: $SESSIONLOG_SERVER, else 127.0.0.1:50051); `--token-file` names a
file whose first token (blank lines and `#` comments skipped) is sent as
`authorization: Bearer <token>` on every call (default:
$SESSIONLOG_TOKEN_FILE).
"""

import argparse
import sys

try:
    import sessionlog
except ImportError as error:
    sys.exit(
        f"cannot import the sessionlog package ({error}); install it with "
        "`pip install ./clients/python`, see examples/python/README.md"
    )

__all__ = ["add_connection_args", "connect", "read_token"]


def add_connection_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--server",
        help="host:port, http://host:port or unix:/path/to.sock "
        "(default: $SESSIONLOG_SERVER, else 127.0.0.1:50051)",
    )
    parser.add_argument(
        "--token-file",
        help="file with the bearer token to send (default: $SESSIONLOG_TOKEN_FILE)",
    )


def connect(args: argparse.Namespace) -> sessionlog.Client:
    return sessionlog.Client(args.server, token_file=args.token_file)


def read_token(path: str) -> str:
    """The token as the package reads it, for headers of other clients."""
    with open(path, encoding="utf-8") as file:
        for line in file:
            token = line.strip()
            if token and not token.startswith("#"):
                return token
    sys.exit(f"{path}: no token in the file")
