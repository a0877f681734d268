"""Partial updates: which fields an Update*'s `update_mask` names, and whether the caller's
etag is still current. Every Update* in the domain uses these two, so a mask or a stale etag is
refused the same way (and with the same words) everywhere."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from tenants.core.errors import EtagMismatch, Violations


def mask_fields(
    update_mask: Iterable[str],
    updatable: Iterable[str],
    problems: Violations,
    *,
    every: Iterable[str] | None = None,
    fixed: Mapping[str, str] | None = None,
) -> set[str]:
    """The fields the mask names ("*": `every`, by default every updatable one). Problems with
    the mask are added to `problems` on `update_mask`: an empty mask, a field that exists but
    never changes (`fixed`: field → why), a field that cannot be updated."""
    allowed = set(updatable)
    never = dict(fixed or {})
    fields = set(update_mask)
    if "*" in fields:
        fields = set(allowed if every is None else every)
    if not fields:
        problems.add("update_mask", "is required: name the fields to change")
    for field, why in never.items():
        if field in fields:
            problems.add("update_mask", why)
    for unknown in sorted(fields - allowed - set(never)):
        problems.add("update_mask", f"{unknown[:60]!r} cannot be updated")
    return fields


def masked_fields(update_mask: Iterable[str], updatable: Iterable[str]) -> set[str]:
    """mask_fields, raising every problem with the mask as INVALID_ARGUMENT on update_mask."""
    problems = Violations()
    fields = mask_fields(update_mask, updatable, problems)
    problems.raise_if_any()
    return fields


def check_etag(resource: str, current_etag: str, etag: str) -> None:
    """An Update*/Delete*'s etag, when given, must be the resource's current one."""
    if etag and etag != current_etag:
        raise EtagMismatch(
            f"{resource} changed since etag {etag}; read it again", resource=resource
        )
