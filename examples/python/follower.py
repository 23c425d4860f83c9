"""Follow a session: print its entries after a cursor, then live ones, until it ends.

One line per entry on stdout (`seq LEVEL logger: message key=value ...`);
events go to stderr. When the connection drops (UNAVAILABLE: the server
restarted or is unreachable) it reconnects with backoff and resumes after the
last entry it printed, so nothing is printed twice or skipped. Exits 0 once
the session has ended and every entry is printed. From the repository root,
with the stubs generated as examples/python/README.md shows:

    PYTHONPATH=target/python-stubs python examples/python/follower.py \
        --server 127.0.0.1:50051 [--token-file FILE] [--after SEQ] SESSION_ID
"""

import argparse
import json
import sys
import time

import grpc
from google.protobuf import json_format

from sessionlog_client import add_connection_args, connect, pb, pb_grpc

MAX_RETRIES = 10  # consecutive failed reconnects before giving up
MAX_BACKOFF_SECONDS = 5.0


def render(entry: pb.LogEntry) -> str:
    level = pb.Level.Name(entry.level).removeprefix("LEVEL_")
    line = f"{entry.seq:>4} {level:<8} {entry.logger}: {entry.message}"
    for key, value in sorted(json_format.MessageToDict(entry.fields).items()):
        if isinstance(value, float) and value.is_integer():
            value = int(value)  # Struct numbers are doubles; show 3, not 3.0
        line += f" {key}={json.dumps(value)}"
    return line


def follow(client: pb_grpc.SessionLogStub, metadata, session_id: str, after_seq: int) -> str:
    """Prints the session's entries after `after_seq`; returns the end reason."""
    cursor = after_seq
    retries = 0
    while True:
        request = pb.FollowRequest(session_id=session_id, after_seq=cursor)
        try:
            for response in client.Follow(request, metadata=metadata):
                retries = 0
                event = response.WhichOneof("event")
                if event == "batch":
                    for entry in response.batch.entries:
                        print(render(entry))
                    sys.stdout.flush()
                    cursor = response.batch.cursor
                elif event == "caught_up":
                    cursor = response.caught_up.cursor
                    print(f"caught up at seq {cursor}; following live", file=sys.stderr)
                elif event == "truncated":
                    first = response.truncated.first_available_seq
                    print(f"entries before seq {first} were pruned", file=sys.stderr)
                elif event == "ended":
                    return response.ended.end_reason
            sys.exit("follower: the stream closed before the session ended")
        except grpc.RpcError as error:
            if error.code() != grpc.StatusCode.UNAVAILABLE or retries == MAX_RETRIES:
                raise
            delay = min(0.2 * 2**retries, MAX_BACKOFF_SECONDS)
            retries += 1
            print(
                f"disconnected ({error.details()}); resuming after seq {cursor} in {delay:.1f}s",
                file=sys.stderr,
            )
            time.sleep(delay)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_connection_args(parser)
    parser.add_argument(
        "--after", type=int, default=0, metavar="SEQ", help="print entries after this seq"
    )
    parser.add_argument("session_id")
    args = parser.parse_args()

    channel, metadata = connect(args)
    reason = follow(pb_grpc.SessionLogStub(channel), metadata, args.session_id, args.after)
    print(f"session ended: {reason}", file=sys.stderr)


if __name__ == "__main__":
    try:
        main()
    except grpc.RpcError as error:
        sys.exit(f"follower: {error.code().name}: {error.details()}")
    except KeyboardInterrupt:
        sys.exit(130)
