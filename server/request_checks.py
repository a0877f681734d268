"""The floor every request message stands on, checked from its protobuf descriptor.

`violations(message)` walks a request (nested messages, repeated fields, maps, oneofs) and
names, by its path in the request (`template.body`, `contact.attributes[vip]`,
`sequence.steps[2].wait`), every field that breaks the platform-wide rules of
`tenants.input_validity`: text with control characters or of absurd length, a Timestamp or
Duration out of range, an enum number the API does not define. The auth interceptor applies it
to every request before the servicer runs, and to every message of a request stream; the
servicers' own rules (lengths, formats, permissions) come after.

A message that is not valid protobuf at all (invalid UTF-8 in a string field: a lone
surrogate, say) is decoded to an `Undecodable` marker by `tolerant`, and refused as
INVALID_ARGUMENT (reason MALFORMED_REQUEST) instead of grpc's INTERNAL.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from tenants.errors import FieldViolation, InvalidArgument
from tenants.input_validity import duration_problem, shown, text_problem, timestamp_problem

# More would only make the answer longer (grpc_errors sends at most 10): one is enough to act on.
MAX_VIOLATIONS = 10

# Streams whose items the servicer judges one by one, so that a bad item is answered like any
# other bad item (ImportContacts: a rejected row with its reason; BulkEnroll: a refused result)
# instead of ending the stream. The interceptor checks the other fields of each message.
ITEMS_JUDGED_BY_THE_SERVICER: dict[str, frozenset[str]] = {
    "/reengage.v1.ContactService/ImportContacts": frozenset({"rows"}),
    "/reengage.v1.EnrollmentService/BulkEnroll": frozenset({"contact", "sequence"}),
}

_TIMESTAMP = "google.protobuf.Timestamp"
_DURATION = "google.protobuf.Duration"


class MalformedRequest(InvalidArgument):
    """The bytes received are not a message of the method's request type."""

    reason = "MALFORMED_REQUEST"


@dataclass(frozen=True)
class Undecodable:
    """Stands in for a request message that could not be parsed."""

    type_name: str
    error: str


def tolerant(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    """deserializer, answering Undecodable instead of raising (grpc would answer INTERNAL)."""
    if deserializer is None:
        return None

    def decode(raw: bytes) -> Any:
        try:
            return deserializer(raw)
        except Exception as exc:  # DecodeError, or anything a parser may raise on garbage
            return Undecodable(getattr(deserializer, "__qualname__", "request"), str(exc)[:200])

    return decode


def check(message: Any, skip: frozenset[str] = frozenset(), prefix: str = "") -> None:
    """Raises INVALID_ARGUMENT listing what `violations` finds (MALFORMED_REQUEST for an
    undecodable message)."""
    if isinstance(message, Undecodable):
        raise MalformedRequest([], f"the request is not a valid protobuf message: {message.error}")
    found = violations(message, skip, prefix)
    if found:
        raise InvalidArgument(found)


def violations(
    message: Message, skip: frozenset[str] = frozenset(), prefix: str = ""
) -> list[FieldViolation]:
    """Every field of message (and of the messages in it) that breaks the platform-wide rules,
    by path, at most MAX_VIOLATIONS; top-level fields named in skip are left out."""
    found: list[FieldViolation] = []
    _walk(message, prefix, skip, found)
    return found[:MAX_VIOLATIONS]


def _walk(message: Message, prefix: str, skip: frozenset[str], found: list[FieldViolation]) -> None:
    descriptor = message.DESCRIPTOR
    if descriptor.full_name == _TIMESTAMP:
        _add(found, prefix, timestamp_problem(message.seconds, message.nanos))  # type: ignore[attr-defined]
        return
    if descriptor.full_name == _DURATION:
        _add(found, prefix, duration_problem(message.seconds, message.nanos))  # type: ignore[attr-defined]
        return
    for field, value in message.ListFields():
        if field.name in skip or len(found) >= MAX_VIOLATIONS:
            continue
        path = f"{prefix}.{field.name}" if prefix else field.name
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            value_field = field.message_type.fields_by_name["value"]
            for key, item in value.items():
                entry = f"{path}[{shown(str(key))}]"
                if isinstance(key, str) and (problem := text_problem(key)):
                    _add(found, entry, f"key {problem}")
                _value(value_field, item, entry, found)
        elif field.is_repeated:
            for index, item in enumerate(value):
                # an enum list is named as a whole, as the domain names it
                # (`sequence.exit_events`); other items by index (`sequence.steps[2]`)
                _value(field, item, path if field.enum_type else f"{path}[{index}]", found)
        else:
            _value(field, value, path, found)


def _value(field: FieldDescriptor, value: Any, path: str, found: list[FieldViolation]) -> None:
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        _walk(value, path, frozenset(), found)
    elif field.type == FieldDescriptor.TYPE_STRING:
        _add(found, path, text_problem(value))
    elif field.enum_type is not None and value not in field.enum_type.values_by_number:
        _add(found, path, f"{value} is not a value of {field.enum_type.name}")


def _add(found: list[FieldViolation], path: str, problem: str | None) -> None:
    if problem and len(found) < MAX_VIOLATIONS:
        found.append(FieldViolation(path, problem))
