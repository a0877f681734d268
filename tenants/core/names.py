"""Resource names (AIP-122): parsing and formatting, with field-level validation errors."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from tenants.core.errors import FieldViolation, InvalidArgument

RESOURCE_ID = re.compile(r"^[a-z](?:[a-z0-9-]{0,61}[a-z0-9])?$")
ID_RULE = "must be 1-63 characters of a-z, 0-9 and '-', start with a letter, not end with '-'"


def id_problem(value: str) -> str | None:
    """Why value is not a resource id, or None when it is one."""
    return None if RESOURCE_ID.fullmatch(value) else f"{value[:80]!r} {ID_RULE}"


def check_id(value: str, field: str) -> str:
    problem = id_problem(value)
    if problem:
        raise InvalidArgument([FieldViolation(field, problem)])
    return value


@dataclass(frozen=True, order=True)
class TenantScope:
    """A node of the tenant tree: a franchisor, or one of its locations."""

    franchisor_id: str
    location_id: str | None = None

    @property
    def name(self) -> str:
        if self.location_id is None:
            return f"franchisors/{self.franchisor_id}"
        return f"franchisors/{self.franchisor_id}/locations/{self.location_id}"

    @property
    def is_location(self) -> bool:
        return self.location_id is not None

    @property
    def franchisor(self) -> TenantScope:
        return TenantScope(self.franchisor_id)


@dataclass(frozen=True)
class ChildName:
    """`<scope>/<collection>/<id>`, e.g. franchisors/f/locations/l/staffMembers/s."""

    scope: TenantScope
    collection: str
    id: str

    @property
    def name(self) -> str:
        return f"{self.scope.name}/{self.collection}/{self.id}"


def _segments(name: str, field: str) -> list[str]:
    if not name:
        raise InvalidArgument([FieldViolation(field, "is required")])
    if len(name) > 300:
        raise InvalidArgument([FieldViolation(field, "is longer than 300 characters")])
    return name.split("/")


def parse_scope(name: str, field: str = "parent") -> TenantScope:
    """Parses `franchisors/{f}` or `franchisors/{f}/locations/{l}`."""
    parts = _segments(name, field)
    if len(parts) == 2 and parts[0] == "franchisors":
        return TenantScope(check_id(parts[1], field))
    if len(parts) == 4 and parts[0] == "franchisors" and parts[2] == "locations":
        return TenantScope(check_id(parts[1], field), check_id(parts[3], field))
    raise InvalidArgument(
        [
            FieldViolation(
                field,
                f"{name[:80]!r} is not a franchisor or location name "
                "(franchisors/{f} or franchisors/{f}/locations/{l})",
            )
        ]
    )


def parse_franchisor(name: str, field: str = "name") -> TenantScope:
    scope = parse_scope(name, field)
    if scope.is_location:
        raise InvalidArgument([FieldViolation(field, f"{name!r} is not franchisors/{{f}}")])
    return scope


def parse_location(name: str, field: str = "name") -> TenantScope:
    scope = parse_scope(name, field)
    if not scope.is_location:
        raise InvalidArgument(
            [FieldViolation(field, f"{name!r} is not franchisors/{{f}}/locations/{{l}}")]
        )
    return scope


def parse_child(name: str, collection: str, field: str = "name") -> ChildName:
    """Parses `<franchisor or location>/<collection>/<id>`."""
    parts = _segments(name, field)
    if len(parts) in (4, 6) and parts[-2] == collection:
        scope = parse_scope("/".join(parts[:-2]), field)
        return ChildName(scope, collection, check_id(parts[-1], field))
    raise InvalidArgument(
        [
            FieldViolation(
                field,
                f"{name[:80]!r} is not franchisors/{{f}}[/locations/{{l}}]/{collection}/{{id}}",
            )
        ]
    )


MAX_DISPLAY_NAME = 200


def display_name_problem(value: str) -> str | None:
    """Why value is not a usable display name, or None when it is."""
    if not value.strip():
        return "is required"
    if len(value) > MAX_DISPLAY_NAME:
        return f"is longer than {MAX_DISPLAY_NAME} characters"
    if any(unicodedata.category(c) == "Cc" for c in value):
        return "contains control characters"
    return None
