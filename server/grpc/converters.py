"""Conversions between protobuf messages and domain values that more than one servicer needs
(each servicer keeps its own resource converters; none imports another servicer)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from google.protobuf import timestamp_pb2

from reengage.v1 import enrollments_pb2, templates_pb2
from tenants.content.segments import Encoding
from tenants.core.errors import FieldViolation, InvalidArgument
from tenants.core.vocabulary import EnrollmentStatus
from tenants.org.listing import ListScope

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def timestamp(value: datetime | None) -> timestamp_pb2.Timestamp | None:
    """The Timestamp of a datetime (a naive one is UTC), exact to the microsecond; computed
    directly (Timestamp.FromDatetime is a slow pure-Python path: a list page makes dozens)."""
    if value is None:
        return None
    since = (value if value.tzinfo is not None else value.replace(tzinfo=UTC)) - _EPOCH
    return timestamp_pb2.Timestamp(
        seconds=since.days * 86_400 + since.seconds, nanos=since.microseconds * 1000
    )


def set_timestamp(target: timestamp_pb2.Timestamp, value: datetime) -> None:
    """Sets target (a message's Timestamp field, in place) to value, like `timestamp`: a
    field set in place costs no message of its own and no copy into its parent."""
    since = (value if value.tzinfo is not None else value.replace(tzinfo=UTC)) - _EPOCH
    target.seconds = since.days * 86_400 + since.seconds
    target.nanos = since.microseconds * 1000


def require(message: Any, field: str) -> None:
    if not message.HasField(field):
        raise InvalidArgument([FieldViolation(field, "is required")])


PB_TO_SCOPE = {
    templates_pb2.TEMPLATE_LIST_SCOPE_UNSPECIFIED: ListScope.DEFAULT,
    templates_pb2.TEMPLATE_LIST_SCOPE_BRAND: ListScope.BRAND,
    templates_pb2.TEMPLATE_LIST_SCOPE_LOCATION: ListScope.LOCATION,
    templates_pb2.TEMPLATE_LIST_SCOPE_ALL: ListScope.ALL,
}
ENCODING_TO_PB = {
    Encoding.GSM7: templates_pb2.ENCODING_GSM7,
    Encoding.UCS2: templates_pb2.ENCODING_UCS2,
}
STATUS_TO_PB = {
    s: enrollments_pb2.EnrollmentStatus.Value(f"ENROLLMENT_STATUS_{s.name}")
    for s in EnrollmentStatus
}
PB_TO_STATUS = {v: k for k, v in STATUS_TO_PB.items()}
