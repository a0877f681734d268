"""`reengage contacts import`: a real gRPC client, good rows kept, every bad row reported."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

from psycopg_pool import AsyncConnectionPool

from tests.support import World

REENGAGE = str(Path(sys.executable).parent / "reengage")
CSV = """\
phone,first_name,last_name,state,consent_at,consent_source,attr.favorite_drink,favorite_color
(212) 555-0101,Ana,Ruiz,NY,2026-01-10T15:00:00Z,spring signup,flat white,blue
+1 310 555 0102,Ben,Ode,CA,2026-01-11T15:00:00Z,spring signup,,green
3055550103,Cy,Lee,,2026-01-12T15:00:00Z,,cold brew,red
12345,Bad,Phone,,2026-01-12T15:00:00Z,,,
+44 20 7946 0958,Land,Line,,2026-01-12T15:00:00Z,,,
+1 800 555 0199,Toll,Free,,2026-01-12T15:00:00Z,,,
212.555.0101,Ana,Again,NY,2026-01-10T15:00:00Z,,,
(646) 555-0104,No,Consent,NY,,,,
(646) 555-0105,Bad,Time,NY,yesterday,,,
(646) 555-0106,Bad,State,ZZ,2026-01-12T15:00:00Z,,,
"""


async def run_import(target: str, key: str, path: Path) -> tuple[int, str, str]:
    env = {**os.environ, "REENGAGE_API_KEY": key, "COLUMNS": "200"}
    proc = await asyncio.create_subprocess_exec(
        REENGAGE,
        "contacts",
        "import",
        str(path),
        "--location",
        "franchisors/acme/locations/downtown",
        "--target",
        target,
        "--consent-text",
        "Reply Y to get texts from Acme. STOP to end.",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def table_row(out: str, row: str) -> str:
    """The line of the rejected-rows table for row (rich draws cells between │)."""
    for line in out.splitlines():
        cells = [c.strip() for c in line.split("│")]
        if len(cells) > 2 and cells[1] == row:
            return line
    raise AssertionError(f"row {row} is not in the table:\n{out}")


async def counts(pool: AsyncConnectionPool[Any]) -> tuple[int, int, list[Any]]:
    async with pool.connection() as conn:
        contacts = await (await conn.execute("SELECT count(*) FROM contacts")).fetchone()
        events = await (await conn.execute("SELECT count(*) FROM consent_events")).fetchone()
        rows = await (
            await conn.execute(
                "SELECT phone_e164, first_name, attrs, version FROM contacts ORDER BY phone_e164"
            )
        ).fetchall()
    assert contacts and events
    return contacts[0], events[0], rows


async def test_import_keeps_good_rows_reports_every_bad_one_and_reimport_changes_nothing(
    grpc_target: str, world: World, pool: AsyncConnectionPool[Any], tmp_path: Path
) -> None:
    path = tmp_path / "crm-export.csv"
    path.write_text(CSV)
    code, out, err = await run_import(grpc_target, world.tokens["a_downtown_manager"], path)
    assert code == 3, err
    assert "created: 3" in out and "rejected: 7" in out
    for row, says in [
        ("5", "not a valid phone number"),
        ("6", "landline"),
        ("7", "toll-free"),
        ("8", "duplicate of row 2"),
        ("9", "consent"),
        ("10", "not a time"),
        ("11", "not a US state"),
    ]:
        line = table_row(out, row)
        assert says in line, (row, line)
    assert "ignored unknown column 'favorite_color'" in out
    contacts, events, rows = await counts(pool)
    assert (contacts, events) == (3, 3)
    assert rows[0][0] == "+12125550101" and rows[0][2] == {"favorite_drink": "flat white"}

    code, out, _ = await run_import(grpc_target, world.tokens["a_downtown_manager"], path)
    assert code == 3
    assert "created: 0  updated: 0  unchanged: 3  rejected: 7" in out
    assert await counts(pool) == (contacts, events, rows)  # same rows, same versions


async def test_a_location_staff_key_cannot_import(
    grpc_target: str, world: World, tmp_path: Path
) -> None:
    path = tmp_path / "x.csv"
    path.write_text(CSV)
    code, _, err = await run_import(grpc_target, world.tokens["a_downtown_staff"], path)
    assert code == 1 and "PERMISSION_DENIED" in err
