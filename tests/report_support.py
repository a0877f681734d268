"""Hand-made rollups for the report suites: report_days / report_day_reasons rows and sequence
definitions written directly, so each report is checked against numbers computed by hand
(the rollups' own correctness is tests/test_report_rollups*)."""

from __future__ import annotations

from datetime import date
from typing import Any

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from tenants.core.names import ChildName, TenantScope
from tenants.org import locations
from tenants.sequences.model import Definition, Step
from tests.support import OPERATOR


async def add_sequence(
    conn: AsyncConnection[Any],
    scope: TenantScope,
    sequence_id: str,
    display_name: str,
    templates: list[str],
) -> ChildName:
    """A sequence row whose steps send templates (names only: reports need no template)."""
    definition = Definition(steps=tuple(Step(t) for t in templates))
    await conn.execute(
        "INSERT INTO sequences (franchisor_id, location_id, id, display_name, definition)"
        " VALUES (%s, %s, %s, %s, %s)",
        (scope.franchisor_id, scope.location_id, sequence_id, display_name,
         Jsonb(definition.to_json())),
    )  # fmt: skip
    return ChildName(scope, "sequences", sequence_id)


async def add_location(
    conn: AsyncConnection[Any], scope: TenantScope, zone: str = "America/New_York"
) -> None:
    await locations.create_location(
        conn,
        OPERATOR,
        scope.franchisor,
        scope.location_id or "",
        locations.LocationInput(display_name=(scope.location_id or "").title(), time_zone=zone),
    )


async def rollup(
    conn: AsyncConnection[Any],
    zone_kind: str,
    day: date,
    location: TenantScope,
    sequence: ChildName,
    step: int = 0,
    **counts: int,
) -> None:
    """Adds counts to one report_days row (created at zeros when missing)."""
    columns = ", ".join(counts)
    values = ", ".join(f"%({c})s" for c in counts)
    updates = ", ".join(f"{c} = report_days.{c} + EXCLUDED.{c}" for c in counts)
    await conn.execute(
        "INSERT INTO report_days (franchisor_id, zone_kind, day, location_id,"
        f" sequence_location_id, sequence_id, step_index{', ' if counts else ''}{columns})"
        f" VALUES (%(f)s, %(z)s, %(d)s, %(l)s, %(sl)s, %(s)s, %(i)s{', ' if counts else ''}"
        f"{values}) ON CONFLICT (franchisor_id, zone_kind, day, location_id,"
        " sequence_location_id, sequence_id, step_index) DO "
        + (f"UPDATE SET {updates}" if counts else "NOTHING"),
        {
            "f": location.franchisor_id,
            "z": zone_kind,
            "d": day,
            "l": location.location_id,
            "sl": sequence.scope.location_id or "",
            "s": sequence.id,
            "i": step,
            **counts,
        },
    )


async def reason(
    conn: AsyncConnection[Any],
    zone_kind: str,
    day: date,
    location: TenantScope,
    sequence: ChildName,
    step: int,
    kind: str,
    why: str,
    count: int,
) -> None:
    """Adds count to one report_day_reasons row ('exit' by exit reason, 'error' by code)."""
    await conn.execute(
        "INSERT INTO report_day_reasons (franchisor_id, zone_kind, day, location_id,"
        " sequence_location_id, sequence_id, step_index, kind, reason, count)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
        " ON CONFLICT (franchisor_id, zone_kind, day, location_id, sequence_location_id,"
        " sequence_id, step_index, kind, reason)"
        " DO UPDATE SET count = report_day_reasons.count + EXCLUDED.count",
        (location.franchisor_id, zone_kind, day, location.location_id,
         sequence.scope.location_id or "", sequence.id, step, kind, why, count),
    )  # fmt: skip
