"""Start a session, append a few batches of structured entries, end it.

Prints the new session id on stdout; progress goes to stderr. Each batch
carries a batch id, and one batch is sent twice to show that a retry is
stored once. From the repository root, with the stubs generated as
examples/python/README.md shows:

    PYTHONPATH=target/python-stubs python examples/python/producer.py \
        --server 127.0.0.1:50051 [--token-file FILE]
"""

import argparse
import os
import sys
import uuid

import grpc
from google.protobuf import struct_pb2

from sessionlog_client import add_connection_args, connect, pb, pb_grpc

# (level, logger, message, format, fields) per entry, one list per batch.
BATCHES = [
    [
        (pb.LEVEL_INFO, "build", "fetching sources", "", {"repo": "sessionlog"}),
        (
            pb.LEVEL_DEBUG,
            "build",
            "cache hit for 12 crates",
            "cache hit for {count} crates",
            {"count": 12},
        ),
        (pb.LEVEL_INFO, "build", "compiling", "", {}),
    ],
    [
        (
            pb.LEVEL_WARN,
            "test",
            "slow test: follow_resumes",
            "",
            {"test": "follow_resumes", "seconds": 4.5},
        ),
        (pb.LEVEL_ERROR, "test", "flaky test retried", "", {"attempt": 2, "passed": True}),
    ],
    [
        (
            pb.LEVEL_INFO,
            "deploy",
            "uploaded 3 artifacts",
            "uploaded {n} artifacts",
            {"n": 3, "tags": ["linux", "x86_64"]},
        ),
    ],
]


def entry(level: int, logger: str, message: str, template: str, fields: dict) -> pb.LogEntry:
    struct = struct_pb2.Struct()
    struct.update(fields)
    log_entry = pb.LogEntry(
        level=level, logger=logger, message=message, format=template, fields=struct
    )
    log_entry.timestamp.GetCurrentTime()
    return log_entry


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_connection_args(parser)
    parser.add_argument("--app", default="python-producer", help="the session's app name")
    args = parser.parse_args()

    channel, metadata = connect(args)
    client = pb_grpc.SessionLogStub(channel)

    start = pb.StartSessionRequest(app_name=args.app, mode="example", platform=sys.platform)
    start.metadata.update({"language": "python", "pid": os.getpid()})
    session = client.StartSession(start, metadata=metadata, timeout=10)

    for entries in BATCHES:
        request = pb.AppendRequest(
            session_id=session.id,
            batch_id=uuid.uuid4().hex,  # made once per batch, reused on retry
            entries=[entry(*spec) for spec in entries],
        )
        response = client.Append(request, metadata=metadata, timeout=10)
        print(f"appended seqs {response.first_seq}..{response.last_seq}", file=sys.stderr)

    # A retry of the last batch (as after a lost response) is stored once.
    retry = client.Append(request, metadata=metadata, timeout=10)
    same_seqs = (retry.first_seq, retry.last_seq) == (response.first_seq, response.last_seq)
    if not (retry.duplicate and same_seqs):
        sys.exit(f"retry of batch {request.batch_id} was stored again: {retry}")
    print(f"retried batch {request.batch_id}: stored once", file=sys.stderr)

    client.EndSession(
        pb.EndSessionRequest(session_id=session.id, reason="done"), metadata=metadata, timeout=10
    )
    print(session.id)


if __name__ == "__main__":
    try:
        main()
    except grpc.RpcError as error:
        sys.exit(f"producer: {error.code().name}: {error.details()}")
