"""Follow a session: print its entries after a cursor, then live ones, until it ends.

One line per entry on stdout (`seq LEVEL logger: message key=value ...`);
events go to stderr. When the connection drops (UNAVAILABLE: the server
restarted or is unreachable) the package's `follow` reconnects with backoff
and resumes after the last entry it delivered, so nothing is printed twice
or skipped. Exits 0 once the session has ended and every entry is printed.
With the package installed (examples/python/README.md):

    python examples/python/follower.py --server 127.0.0.1:50051 \
        [--token-file FILE] [--after SEQ] SESSION_ID
"""

import argparse
import json
import sys

import sessionlog
from sessionlog import Batch, CaughtUp, Ended, Entry, Reconnecting, Truncated

from sessionlog_client import add_connection_args, connect

GIVE_UP_AFTER_SECONDS = 60.0  # of failed reconnects in a row


def render(entry: Entry) -> str:
    level = str(entry.level).upper()
    line = f"{entry.seq:>4} {level:<8} {entry.logger}: {entry.message}"
    for key, value in sorted(entry.fields.items()):
        line += f" {key}={json.dumps(value)}"
    return line


def follow(client: sessionlog.Client, session_id: str, after_seq: int) -> str:
    """Prints the session's entries after `after_seq`; returns the end reason."""
    for event in client.follow(session_id, after_seq, give_up_after=GIVE_UP_AFTER_SECONDS):
        if isinstance(event, Batch):
            for entry in event.entries:
                print(render(entry))
            sys.stdout.flush()
        elif isinstance(event, CaughtUp):
            print(f"caught up at seq {event.cursor}; following live", file=sys.stderr)
        elif isinstance(event, Truncated):
            print(f"entries before seq {event.first_available_seq} were pruned", file=sys.stderr)
        elif isinstance(event, Reconnecting):
            print(
                f"disconnected ({event.error.details}); resuming after seq {event.after_seq}",
                file=sys.stderr,
            )
        elif isinstance(event, Ended):
            return event.session.end_reason
    sys.exit("follower: the stream closed before the session ended")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_connection_args(parser)
    parser.add_argument(
        "--after", type=int, default=0, metavar="SEQ", help="print entries after this seq"
    )
    parser.add_argument("session_id")
    args = parser.parse_args()

    with connect(args) as client:
        reason = follow(client, args.session_id, args.after)
    print(f"session ended: {reason}", file=sys.stderr)


if __name__ == "__main__":
    try:
        main()
    except sessionlog.Error as error:
        sys.exit(f"follower: {error}")
    except KeyboardInterrupt:
        sys.exit(130)
