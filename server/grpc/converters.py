"""Conversions between protobuf messages and domain values that more than one servicer needs
(each servicer keeps its own resource converters; none imports another servicer)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from google.protobuf import timestamp_pb2

from reengage.v1 import enrollments_pb2, templates_pb2, tenants_pb2
from tenants.content.segments import Encoding
from tenants.core.errors import FieldViolation, InvalidArgument
from tenants.core.vocabulary import EnrollmentStatus
from tenants.org.listing import ListScope


def timestamp(value: datetime | None) -> timestamp_pb2.Timestamp | None:
    if value is None:
        return None
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(value)
    return ts


def require(message: Any, field: str) -> None:
    if not message.HasField(field):
        raise InvalidArgument([FieldViolation(field, "is required")])


DAY_NAMES = {i: tenants_pb2.DayOfWeek.Name(i) for i in range(1, 8)}
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
