"""A local OTLP/HTTP trace collector for tests of server.tracing: it accepts
`POST /v1/traces` with a protobuf `ExportTraceServiceRequest` (gzip or not), as
opentelemetry-exporter-otlp-proto-http sends it, keeps every span, and answers an empty
`ExportTraceServiceResponse`.

    with running_collector() as collector:
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = collector.base_url
        ...
        spans = collector.spans  # every span received, as ReceivedSpan
"""

from __future__ import annotations

import contextlib
import gzip
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.local_http import serving

PROTOBUF = "application/x-protobuf"


@dataclass(frozen=True)
class ReceivedSpan:
    service: str  # the resource's service.name
    scope: str  # the instrumentation scope's name
    trace_id: str  # hex
    span_id: str
    parent_id: str  # "" for a root span
    name: str
    kind: str  # SERVER, CLIENT, INTERNAL...
    attributes: dict[str, Any]


def _value(value: AnyValue) -> Any:
    which = value.WhichOneof("value")
    return getattr(value, which) if which else None


class FakeCollector:
    def __init__(self) -> None:
        self.base_url = ""
        self.requests = 0  # POSTs received (any path)
        self._lock = threading.Lock()
        self._spans: list[ReceivedSpan] = []
        self.app = Starlette(routes=[Route("/v1/traces", self._traces, methods=["POST"])])

    @property
    def spans(self) -> list[ReceivedSpan]:
        with self._lock:
            return list(self._spans)

    async def _traces(self, request: Request) -> Response:
        body = await request.body()
        if request.headers.get("content-encoding") == "gzip":
            body = gzip.decompress(body)
        with self._lock:
            self.requests += 1
        if request.headers.get("content-type") != PROTOBUF:
            return Response(status_code=415)
        export = ExportTraceServiceRequest.FromString(body)
        received = []
        for resource_spans in export.resource_spans:
            resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    received.append(
                        ReceivedSpan(
                            service=str(resource.get("service.name", "")),
                            scope=scope_spans.scope.name,
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent_id=span.parent_span_id.hex(),
                            name=span.name,
                            kind=Span.SpanKind.Name(span.kind).removeprefix("SPAN_KIND_"),
                            attributes={a.key: _value(a.value) for a in span.attributes},
                        )
                    )
        with self._lock:
            self._spans += received
        return Response(ExportTraceServiceResponse().SerializeToString(), media_type=PROTOBUF)


@contextlib.contextmanager
def running_collector() -> Iterator[FakeCollector]:
    """Serves a FakeCollector on a free 127.0.0.1 port for the duration of the block."""
    collector = FakeCollector()
    with serving(collector.app, "fake-otlp") as base_url:
        collector.base_url = base_url
        yield collector
