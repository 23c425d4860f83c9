"""The one error type calls raise, and which failures a retry may fix."""

from __future__ import annotations

import grpc


class Error(Exception):
    """A call failed: `code` is the gRPC status code, `details` the server's
    message (or grpcio's, for a failure on the way)."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"{code.name}: {details}")
        self.code = code
        self.details = details

    @classmethod
    def from_rpc(cls, error: grpc.RpcError) -> Error:
        """The status of a failed grpcio call."""
        code = grpc.StatusCode.UNKNOWN
        details = str(error)
        if isinstance(error, grpc.Call):
            code = error.code()
            details = error.details() or ""
        return cls(code, details)


TRANSIENT = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        # How grpcio reports a connection cut in mid-call, and a deadline
        # passed while the server was away.
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.CANCELLED,
    }
)


def is_transient(error: Error) -> bool:
    """What the Rust client retries: a retry with the same batch id, or a
    follow from the last cursor, cannot store or show anything twice."""
    return error.code in TRANSIENT
