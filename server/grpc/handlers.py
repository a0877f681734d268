"""What the server's interceptors share to wrap a method's handler: its behaviour, whether its
requests and responses stream, its codec, and a handler of the same kind around another
behaviour. grpc.aio tells coroutine and async-generator behaviours apart by inspection, so each
interceptor gives `HandlerKind.make` a real `async def` (or async generator) wrapper."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc

_CONSTRUCTORS = {  # (streaming requests, streaming responses)
    (False, False): grpc.unary_unary_rpc_method_handler,
    (True, False): grpc.stream_unary_rpc_method_handler,
    (False, True): grpc.unary_stream_rpc_method_handler,
    (True, True): grpc.stream_stream_rpc_method_handler,
}


@dataclass(frozen=True)
class HandlerKind:
    behaviour: Callable[..., Any]  # the handler's own (request, context) callable
    streams_requests: bool
    streams_responses: bool
    request_deserializer: Any
    response_serializer: Any

    def make(
        self, behaviour: Callable[..., Any], request_deserializer: Any = None
    ) -> grpc.RpcMethodHandler:
        """A handler of the same kind running `behaviour` (with another request deserializer
        when given)."""
        make = _CONSTRUCTORS[(self.streams_requests, self.streams_responses)]
        return make(
            behaviour, request_deserializer or self.request_deserializer, self.response_serializer
        )


def kind_of(h: grpc.RpcMethodHandler) -> HandlerKind:
    """The behaviour and kind of a method's handler."""
    return HandlerKind(
        h.unary_unary or h.stream_unary or h.unary_stream or h.stream_stream,
        streams_requests=bool(h.stream_unary or h.stream_stream),
        streams_responses=bool(h.unary_stream or h.stream_stream),
        request_deserializer=h.request_deserializer,
        response_serializer=h.response_serializer,
    )
