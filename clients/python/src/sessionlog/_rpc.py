"""Typed callables for the `sessionlog.v1.SessionLog` methods, on a grpcio
channel (sync or aio). Paths and message types come from the generated
descriptor, and each method is checked against it when the module loads,
so a proto that no longer matches fails at import, not mid-call.
"""

from __future__ import annotations

from typing import Generic, TypeVar

import grpc
import grpc.aio
from google.protobuf.message import Message

from sessionlog.v1 import sessionlog_pb2 as pb

Request = TypeVar("Request", bound=Message)
Response = TypeVar("Response", bound=Message)

_SERVICE = pb.DESCRIPTOR.services_by_name["SessionLog"]


class Method(Generic[Request, Response]):
    """One method: its path and how to (de)serialize its messages."""

    def __init__(
        self, name: str, request: type[Request], response: type[Response], streaming: bool
    ) -> None:
        method = _SERVICE.methods_by_name.get(name)
        if method is None:
            raise ImportError(f"the generated sessionlog proto has no method {name}")
        if (
            method.input_type.full_name != request.DESCRIPTOR.full_name
            or method.output_type.full_name != response.DESCRIPTOR.full_name
            or method.server_streaming != streaming
        ):
            raise ImportError(f"the generated sessionlog proto's {name} has another signature")
        self.path = f"/{_SERVICE.full_name}/{name}"
        self.request = request
        self.response = response

    def _deserialize(self, data: bytes) -> Response:
        return self.response.FromString(data)

    @staticmethod
    def _serialize(message: Request) -> bytes:
        return message.SerializeToString()

    def unary(self, channel: grpc.Channel) -> grpc.UnaryUnaryMultiCallable[Request, Response]:
        return channel.unary_unary(
            self.path, request_serializer=self._serialize, response_deserializer=self._deserialize
        )

    def stream(self, channel: grpc.Channel) -> grpc.UnaryStreamMultiCallable[Request, Response]:
        return channel.unary_stream(
            self.path, request_serializer=self._serialize, response_deserializer=self._deserialize
        )

    def aio_stream(
        self, channel: grpc.aio.Channel
    ) -> grpc.aio.UnaryStreamMultiCallable[Request, Response]:
        return channel.unary_stream(
            self.path, request_serializer=self._serialize, response_deserializer=self._deserialize
        )


def _unary(name: str, request: type[Request], response: type[Response]) -> Method[Request, Response]:
    return Method(name, request, response, streaming=False)


def _stream(
    name: str, request: type[Request], response: type[Response]
) -> Method[Request, Response]:
    return Method(name, request, response, streaming=True)


START_SESSION = _unary("StartSession", pb.StartSessionRequest, pb.Session)
UPDATE_SESSION = _unary("UpdateSession", pb.UpdateSessionRequest, pb.Session)
END_SESSION = _unary("EndSession", pb.EndSessionRequest, pb.Session)
HEARTBEAT = _unary("Heartbeat", pb.HeartbeatRequest, pb.HeartbeatResponse)
GET_SESSION = _unary("GetSession", pb.GetSessionRequest, pb.Session)
LIST_SESSIONS = _unary("ListSessions", pb.ListSessionsRequest, pb.ListSessionsResponse)
DELETE_SESSION = _unary("DeleteSession", pb.DeleteSessionRequest, pb.DeleteSessionResponse)
APPEND = _unary("Append", pb.AppendRequest, pb.AppendResponse)
READ = _unary("Read", pb.ReadRequest, pb.ReadResponse)
FOLLOW = _stream("Follow", pb.FollowRequest, pb.FollowResponse)
WATCH_SESSIONS = _stream("WatchSessions", pb.WatchSessionsRequest, pb.SessionEvent)


class Stub:
    """The unary and streaming callables on one sync channel."""

    def __init__(self, channel: grpc.Channel) -> None:
        self.start_session = START_SESSION.unary(channel)
        self.update_session = UPDATE_SESSION.unary(channel)
        self.end_session = END_SESSION.unary(channel)
        self.heartbeat = HEARTBEAT.unary(channel)
        self.get_session = GET_SESSION.unary(channel)
        self.list_sessions = LIST_SESSIONS.unary(channel)
        self.delete_session = DELETE_SESSION.unary(channel)
        self.append = APPEND.unary(channel)
        self.read = READ.unary(channel)
        self.follow = FOLLOW.stream(channel)
        self.watch_sessions = WATCH_SESSIONS.stream(channel)

