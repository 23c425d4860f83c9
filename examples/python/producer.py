"""Start a session, append a few batches of structured entries, end it.

Prints the new session id on stdout; progress goes to stderr. Each batch
carries a batch id, and one batch is sent twice to show that a retry is
stored once. With the package installed (examples/python/README.md):

    python examples/python/producer.py --server 127.0.0.1:50051 [--token-file FILE]
"""

import argparse
import os
import sys
import uuid

import sessionlog
from sessionlog import Entry

from sessionlog_client import add_connection_args, connect

BATCHES = [
    [
        Entry("fetching sources", level="info", logger="build", fields={"repo": "sessionlog"}),
        Entry(
            "cache hit for 12 crates",
            level="debug",
            logger="build",
            format="cache hit for {count} crates",
            fields={"count": 12},
        ),
        Entry("compiling", level="info", logger="build"),
    ],
    [
        Entry(
            "slow test: follow_resumes",
            level="warn",
            logger="test",
            fields={"test": "follow_resumes", "seconds": 4.5},
        ),
        Entry("flaky test retried", level="error", logger="test", fields={"attempt": 2, "passed": True}),
    ],
    [
        Entry(
            "uploaded 3 artifacts",
            level="info",
            logger="deploy",
            format="uploaded {n} artifacts",
            fields={"n": 3, "tags": ["linux", "x86_64"]},
        ),
    ],
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_connection_args(parser)
    parser.add_argument("--app", default="python-producer", help="the session's app name")
    args = parser.parse_args()

    with connect(args) as client:
        session = client.start_session(
            app_name=args.app,
            mode="example",
            platform=sys.platform,
            metadata={"language": "python", "pid": os.getpid()},
        )
        for entries in BATCHES:
            batch_id = uuid.uuid4().hex  # made once per batch, reused on retry
            result = client.append(session.id, entries, batch_id=batch_id)
            print(f"appended seqs {result.first_seq}..{result.last_seq}", file=sys.stderr)

        # A retry of the last batch (as after a lost response) is stored once.
        retry = client.append(session.id, entries, batch_id=batch_id)
        same_seqs = (retry.first_seq, retry.last_seq) == (result.first_seq, result.last_seq)
        if not (retry.duplicate and same_seqs):
            sys.exit(f"retry of batch {batch_id} was stored again: {retry}")
        print(f"retried batch {batch_id}: stored once", file=sys.stderr)

        client.end_session(session.id, reason="done")
    print(session.id)


if __name__ == "__main__":
    try:
        main()
    except sessionlog.Error as error:
        sys.exit(f"producer: {error}")
