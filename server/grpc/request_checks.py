"""The floor every request message stands on, checked from its protobuf descriptor.

`violations(message)` walks a request (nested messages, repeated fields, maps, oneofs) and
names, by its path in the request (`template.body`, `contact.attributes[vip]`,
`sequence.steps[2].wait`), every field that breaks the platform-wide rules of
`tenants.core.input_validity`: text with control characters or of absurd length, a Timestamp or
Duration out of range, an enum number the API does not define. The auth interceptor applies it
to every request before the servicer runs, and to every message of a request stream; the
servicers' own rules (lengths, formats, permissions) come after.

A message that is not valid protobuf at all (invalid UTF-8 in a string field: a lone
surrogate, say) is decoded to an `Undecodable` marker by `tolerant`, and refused as
INVALID_ARGUMENT (reason MALFORMED_REQUEST) instead of grpc's INTERNAL.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from server.grpc.errors import MAX_VIOLATIONS
from tenants.core.errors import FieldViolation, InvalidArgument
from tenants.core.input_validity import duration_problem, shown, text_problem, timestamp_problem

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


def check(message: Any, skip: frozenset[str] = frozenset()) -> None:
    """Raises INVALID_ARGUMENT listing what `violations` finds (MALFORMED_REQUEST for an
    undecodable message)."""
    if isinstance(message, Undecodable):
        raise MalformedRequest([], f"the request is not a valid protobuf message: {message.error}")
    found = violations(message, skip)
    if found:
        raise InvalidArgument(found)


def violations(message: Message, skip: frozenset[str] = frozenset()) -> list[FieldViolation]:
    """Every field of message (and of the messages in it) that breaks the platform-wide rules,
    by path, at most MAX_VIOLATIONS; top-level fields named in skip are left out."""
    found: list[FieldViolation] = []
    _walk(message, None, skip, found)
    return found


# What is checked depends only on the message type, so it is worked out once per type (_plan)
# and the walk over a request only looks at fields that have something to check.

_NOTHING, _TEXT, _ENUM, _MESSAGE = range(4)


@dataclass(frozen=True)
class _ValueCheck:
    """What one value of a field needs: the text rules, an enum's numbers, or a walk."""

    kind: int  # _NOTHING, _TEXT, _ENUM or _MESSAGE
    enum_name: str = ""
    enum_numbers: frozenset[int] = frozenset()


@dataclass(frozen=True)
class _FieldCheck:
    """What a field needs: value (what each of its values needs), text_keys (a map whose
    keys are text), and how its values are named: a map's by key, a list's by index (an enum
    list as a whole, as the domain names it: `sequence.exit_events`)."""

    value: _ValueCheck
    is_map: bool = False
    text_keys: bool = False
    by_index: bool = False


@dataclass(frozen=True)
class _Plan:
    """A message type's checks: a Timestamp or Duration is checked as a whole (special), any
    other type field by field (only the fields with something to check, by number; extensions,
    if the type has any, as they come), or not at all (unchecked)."""

    special: str | None
    fields: dict[int, _FieldCheck]
    unchecked: bool = False


# Where a value sits in the request, turned into a path only when it has a problem:
# None for the request itself, then (parent, _FIELD, name), (parent, _INDEX, index) or
# (parent, _KEY, map key).
_FIELD, _INDEX, _KEY = range(3)
_Where = tuple[Any, int, Any] | None


def _path(where: _Where) -> str:
    parts: list[str] = []
    while where is not None:
        where, step, part = where
        if step == _FIELD:
            parts.append(f".{part}" if where is not None else part)
        elif step == _INDEX:
            parts.append(f"[{part}]")
        else:
            parts.append(f"[{shown(str(part))}]")
    return "".join(reversed(parts))


@functools.cache
def _has_rules(descriptor: Descriptor) -> bool:
    """Whether a message of this type, or any message it can hold, has something to check."""
    seen = {descriptor.full_name}
    pending = [descriptor]
    while pending:
        current = pending.pop()
        if current.full_name in (_TIMESTAMP, _DURATION) or current.extension_ranges:
            return True
        for field in current.fields:
            if field.type == FieldDescriptor.TYPE_STRING or field.enum_type is not None:
                return True
            held = field.message_type
            if field.type == FieldDescriptor.TYPE_MESSAGE and held is not None:
                if held.full_name not in seen:
                    seen.add(held.full_name)
                    pending.append(held)
    return False


_UNCHECKED = _ValueCheck(_NOTHING)


def _value_check(field: FieldDescriptor) -> _ValueCheck:
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        return _ValueCheck(_MESSAGE) if _has_rules(field.message_type) else _UNCHECKED
    if field.type == FieldDescriptor.TYPE_STRING:
        return _ValueCheck(_TEXT)
    if field.enum_type is not None:
        numbers = frozenset(field.enum_type.values_by_number)
        return _ValueCheck(_ENUM, field.enum_type.name, numbers)
    return _UNCHECKED


def _field_check(field: FieldDescriptor) -> _FieldCheck | None:
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        entry = field.message_type
        value = _value_check(entry.fields_by_name["value"])
        text_keys = entry.fields_by_name["key"].type == FieldDescriptor.TYPE_STRING
        if value is _UNCHECKED and not text_keys:
            return None
        return _FieldCheck(value, is_map=True, text_keys=text_keys)
    value = _value_check(field)
    if value is _UNCHECKED:
        return None
    return _FieldCheck(value, by_index=field.is_repeated and field.enum_type is None)


@functools.cache
def _plan(descriptor: Descriptor) -> _Plan:
    if descriptor.full_name in (_TIMESTAMP, _DURATION):
        return _Plan(descriptor.full_name, {})
    checks = {field.number: _field_check(field) for field in descriptor.fields}
    fields = {number: check for number, check in checks.items() if check is not None}
    return _Plan(None, fields, unchecked=not fields and not descriptor.extension_ranges)


def _walk(
    message: Message, where: _Where, skip: frozenset[str], found: list[FieldViolation]
) -> None:
    plan = _plan(message.DESCRIPTOR)
    if plan.special is not None:
        problem = (timestamp_problem if plan.special == _TIMESTAMP else duration_problem)(
            message.seconds,  # type: ignore[attr-defined]
            message.nanos,  # type: ignore[attr-defined]
        )
        _add(found, where, problem)
        return
    if plan.unchecked:
        return
    for field, value in message.ListFields():
        check = plan.fields.get(field.number)
        if check is None:
            if not field.is_extension or (check := _field_check(field)) is None:
                continue
        if field.name in skip:
            continue
        if len(found) >= MAX_VIOLATIONS:
            return
        at = (where, _FIELD, field.name)
        if check.is_map:
            for key, item in value.items():
                entry = (at, _KEY, key)
                if check.text_keys and (problem := text_problem(key)):
                    _add(found, entry, f"key {problem}")
                if check.value is not _UNCHECKED:
                    _value(check.value, item, entry, found)
        elif check.by_index:
            for index, item in enumerate(value):
                _value(check.value, item, (at, _INDEX, index), found)
        elif field.is_repeated:
            for item in value:
                _value(check.value, item, at, found)
        else:
            _value(check.value, value, at, found)


def _value(check: _ValueCheck, value: Any, where: _Where, found: list[FieldViolation]) -> None:
    if check.kind == _MESSAGE:
        _walk(value, where, frozenset(), found)
    elif check.kind == _TEXT:
        _add(found, where, text_problem(value))
    elif check.kind == _ENUM and value not in check.enum_numbers:
        _add(found, where, f"{value} is not a value of {check.enum_name}")


def _add(found: list[FieldViolation], where: _Where, problem: str | None) -> None:
    if problem and len(found) < MAX_VIOLATIONS:
        found.append(FieldViolation(_path(where), problem))
