"""`reengage contacts import` on a new user's first day (issue 15): times without an offset are
read in the location's zone, other time formats are refused naming the accepted ones, a rejected
row names the column as the header spells it (or the flag) and its line, and the result names
the contacts created (ImportContactsResponse.contacts)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import timestamp_pb2
from psycopg_pool import AsyncConnectionPool

from reengage.v1 import contacts_pb2 as pb
from reengage.v1 import contacts_pb2_grpc
from server.cli.main import build_parser
from tenants.contacts import importing
from tests.cli_support import run_cli
from tests.support import World

DOWNTOWN = "franchisors/acme/locations/downtown"  # America/New_York
DISCLOSURE = "Reply Y to get texts from Acme. STOP to end."


@pytest.fixture(autouse=True)
def wide(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")  # a reason on one line of the table


async def import_csv(
    capsys: pytest.CaptureFixture[str],
    target: str,
    world: World,
    path: Path,
    text: str,
    *flags: str,
) -> tuple[int, str, str]:
    await asyncio.to_thread(path.write_text, text)
    key = world.tokens["a_downtown_manager"]
    return await run_cli(
        capsys, target, key, "contacts", "import", str(path), "--location", DOWNTOWN, *flags
    )


def table_cells(out: str, line: str) -> list[str]:
    """The cells of the table row of the file's line `line` (rich draws cells between │)."""
    for row in out.splitlines():
        cells = [c.strip() for c in row.split("│")]
        if len(cells) > 2 and cells[1] == line:
            return cells[1:-1]
    raise AssertionError(f"line {line} is not in a table:\n{out}")


async def consent_times(pool: AsyncConnectionPool[Any]) -> dict[str, datetime]:
    async with pool.connection() as conn:
        rows = await (
            await conn.execute("SELECT phone_e164, occurred_at FROM consent_events")
        ).fetchall()
    return {phone: when.astimezone(UTC) for phone, when in rows}


async def test_a_time_without_an_offset_is_read_in_the_locations_zone(
    capsys: pytest.CaptureFixture[str],
    grpc_target: str,
    world: World,
    pool: AsyncConnectionPool[Any],
    tmp_path: Path,
) -> None:
    code, out, err = await import_csv(
        capsys,
        grpc_target,
        world,
        tmp_path / "crm.csv",
        "phone,consent_at\n"
        "(212) 555-0111,2026-11-02 09:30\n"
        "(212) 555-0112,2026-11-02\n"
        "(212) 555-0113,2026-11-02T09:30:00Z\n"
        "(212) 555-0114,2026-07-02T09:30:15\n"
        "(212) 555-0115,2026-11-02T09:30-08:00\n",
        "--consent-text",
        DISCLOSURE,
    )
    assert code == 0, err + out
    assert await consent_times(pool) == {
        "+12125550111": datetime(2026, 11, 2, 14, 30, tzinfo=UTC),  # EST, not 09:30Z
        "+12125550112": datetime(2026, 11, 2, 5, 0, tzinfo=UTC),  # midnight there
        "+12125550113": datetime(2026, 11, 2, 9, 30, tzinfo=UTC),  # as given
        "+12125550114": datetime(2026, 7, 2, 13, 30, 15, tzinfo=UTC),  # EDT in July
        "+12125550115": datetime(2026, 11, 2, 17, 30, tzinfo=UTC),
    }
    assert "3 consent time(s) without an offset read as America/New_York time" in out


async def test_a_time_in_another_format_is_refused_naming_the_formats_the_column_and_line(
    capsys: pytest.CaptureFixture[str],
    grpc_target: str,
    world: World,
    pool: AsyncConnectionPool[Any],
    tmp_path: Path,
) -> None:
    code, out, _ = await import_csv(
        capsys,
        grpc_target,
        world,
        tmp_path / "crm.csv",
        "mobile,opted_in_at\n"
        "(212) 555-0121,2026-11-01T10:00:00Z\n"
        "\n"  # a blank line still counts as a line of the file
        "(212) 555-0122,11/01/2026\n"
        "(212) 555-0123,2099-01-01T00:00:00Z\n",
        "--consent-text",
        DISCLOSURE,
    )
    assert code == 3
    assert "line: the file's line, the header is line 1" in out
    _, column, reason = table_cells(out, "4")
    assert column == "opted_in_at"
    assert "'11/01/2026' is not a time in an accepted format" in reason
    for accepted in ("YYYY-MM-DD HH:MM[:SS]", "YYYY-MM-DD (midnight)", "ISO 8601 with an offset"):
        assert accepted in reason
    assert "America/New_York time" in reason
    assert table_cells(out, "5")[1:] == ["opted_in_at", "is in the future"]  # the server's
    assert list(await consent_times(pool)) == ["+12125550121"]


async def test_a_missing_consent_text_names_the_column_and_the_flag(
    capsys: pytest.CaptureFixture[str],
    grpc_target: str,
    world: World,
    pool: AsyncConnectionPool[Any],
    tmp_path: Path,
) -> None:
    code, out, _ = await import_csv(
        capsys,
        grpc_target,
        world,
        tmp_path / "crm.csv",
        "phone,consent_at,consent_text\n"
        f"(212) 555-0131,2026-11-01T10:00:00Z,{DISCLOSURE}\n"
        "(212) 555-0132,2026-11-01T10:00:00Z,\n",
    )
    assert code == 3
    assert table_cells(out, "3")[1] == "consent_text or --consent-text"
    assert "consent.disclosure_text" not in out

    code, _, err = await import_csv(
        capsys,
        grpc_target,
        world,
        tmp_path / "no-text.csv",
        "phone,consent_at\n(212) 555-0133,2026-11-01T10:00:00Z\n",
    )
    assert code == 1
    assert "no consent_text column" in err and "pass --consent-text" in err

    code, out, _ = await import_csv(
        capsys,
        grpc_target,
        world,
        tmp_path / "long-text.csv",
        "phone,consent_at\n(212) 555-0134,2026-11-01T10:00:00Z\n",
        "--consent-text",
        "x" * 2001,
    )
    assert code == 3
    assert table_cells(out, "2")[1] == "--consent-text"
    assert list(await consent_times(pool)) == ["+12125550131"]


async def test_a_bad_phone_is_named_by_its_column(
    capsys: pytest.CaptureFixture[str], grpc_target: str, world: World, tmp_path: Path
) -> None:
    code, out, _ = await import_csv(
        capsys,
        grpc_target,
        world,
        tmp_path / "crm.csv",
        "phone,consent_at,consent_channel\n"
        "12345,2026-11-01T10:00:00Z,\n"
        "(212) 555-0141,2026-11-01T10:00:00Z,carrier_pigeon\n",
        "--consent-text",
        DISCLOSURE,
    )
    assert code == 3
    _, column, reason = table_cells(out, "2")
    assert column == "phone" and "not a valid phone number" in reason
    assert table_cells(out, "3")[1] == "consent_channel"
    assert "phone_number" not in out


async def test_the_result_names_the_contacts_created(
    capsys: pytest.CaptureFixture[str],
    grpc_target: str,
    world: World,
    pool: AsyncConnectionPool[Any],
    tmp_path: Path,
) -> None:
    rows = "".join(f"(646) 555-{100 + i:04d},2026-11-01 10:00\n" for i in range(25))
    code, out, err = await import_csv(
        capsys,
        grpc_target,
        world,
        tmp_path / "crm.csv",
        "phone,consent_at\n" + rows,
        "--consent-text",
        DISCLOSURE,
    )
    assert code == 0, err
    async with pool.connection() as conn:
        ids = dict(await (await conn.execute("SELECT phone_e164, id FROM contacts")).fetchall())
    _, phone, contact, outcome = table_cells(out, "2")
    assert (phone, contact, outcome) == ("+16465550100", ids["+16465550100"], "created")
    assert table_cells(out, "21")[1] == "+16465550119"  # the 20th row shown, the rest counted
    assert "+16465550120" not in out
    assert f"… and 5 more: `reengage contacts list --location {DOWNTOWN}`" in out

    # the id printed is what `contacts evidence` (like every command) takes
    code, out, err = await run_cli(
        capsys,
        grpc_target,
        world.tokens["a_downtown_manager"],
        "contacts",
        "evidence",
        f"{DOWNTOWN}/contacts/{contact}",
    )
    assert code == 0, err
    assert "+16465550100" in out


def requests(*rows: tuple[int, str, str]) -> Iterator[pb.ImportContactsRequest]:
    yield pb.ImportContactsRequest(
        parent=DOWNTOWN,
        source="crm.csv",
        rows=[
            pb.ImportRow(
                row_number=number,
                contact=pb.Contact(phone_number=phone, first_name=first),
                consent=pb.ConsentEvidence(
                    kind=pb.CONSENT_KIND_GRANT,
                    channel=pb.CONSENT_CHANNEL_IMPORT,
                    occurred_at=datetime_pb(datetime(2026, 11, 1, 10, tzinfo=UTC)),
                    source="crm.csv",
                    disclosure_text=DISCLOSURE,
                ),
            )
            for number, phone, first in rows
        ],
    )


def datetime_pb(when: datetime) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(when)
    return ts


async def test_import_contacts_answers_the_contacts_it_created_or_updated(
    channel: grpc.aio.Channel,
    world: World,
    pool: AsyncConnectionPool[Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stub = contacts_pb2_grpc.ContactServiceStub(channel)
    meta = world.metadata("a_downtown_manager")
    first = await stub.ImportContacts(
        requests((2, "(212) 555-0151", "Ana"), (3, "212-555-0152", "Ben")), metadata=meta
    )
    async with pool.connection() as conn:
        ids = dict(await (await conn.execute("SELECT phone_e164, id FROM contacts")).fetchall())
    assert [(c.row_number, c.name, c.phone_number, c.outcome) for c in first.contacts] == [
        (
            2,
            f"{DOWNTOWN}/contacts/{ids['+12125550151']}",
            "+12125550151",
            pb.IMPORT_OUTCOME_CREATED,
        ),
        (
            3,
            f"{DOWNTOWN}/contacts/{ids['+12125550152']}",
            "+12125550152",
            pb.IMPORT_OUTCOME_CREATED,
        ),
    ]
    assert first.contacts_not_listed == 0

    again = await stub.ImportContacts(
        requests((7, "(212) 555-0151", "Ana"), (8, "212-555-0152", "Benjamin")), metadata=meta
    )
    assert (again.unchanged, again.updated) == (1, 1)
    assert [(c.row_number, c.phone_number, c.outcome) for c in again.contacts] == [
        (8, "+12125550152", pb.IMPORT_OUTCOME_UPDATED)  # unchanged contacts are counted only
    ]

    monkeypatch.setattr(importing, "MAX_LISTED", 1)  # the server runs in this process
    capped = await stub.ImportContacts(
        requests(
            (2, "(212) 555-0153", "Cy"), (3, "(212) 555-0154", "Di"), (4, "(212) 555-0155", "")
        ),
        metadata=meta,
    )
    assert [c.phone_number for c in capped.contacts] == ["+12125550153"]
    assert (capped.created, capped.contacts_not_listed) == (3, 2)


def test_the_help_names_the_accepted_time_formats_and_the_zone_they_are_read_in(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["contacts", "import", "--help"])
    out = capsys.readouterr().out
    assert "2026-11-02 09:30, 2026-11-02T09:30:15           the location's time zone" in out
    assert "midnight starting that day" in out and "header is line 1" in out
    assert "times without an offset are read in its zone" in out
