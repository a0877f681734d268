"""CLIs print what the server holds as text, never as rich markup: a text's body, a contact's
name or a rejected row's reason that looks like markup (`[/]`, `[link=...]`) is shown as
written, and does not crash the command (issue 13)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from psycopg_pool import AsyncConnectionPool
from rich.console import Console

from reengage.v1 import contacts_pb2 as pb
from server.carriers.outbox import OutboxCarrier
from server.cli.contacts import ImportReport, print_report
from server.cli.outbox import show_outbox
from tenants.content.segments import count
from tenants.messages import ledger
from tests.enrollment_support import consenting_contact
from tests.support import World
from workflows.carrier import OutboundText

MARKUP = "[/] see [link=https://evil.example]x[/link]"
SENDER = "+12125550101"  # acme/downtown's number (tests.support)
PHONE = "+12125550142"


async def test_reengage_outbox_shows_a_body_that_looks_like_markup_as_written(
    pool: AsyncConnectionPool[Any],
    world: World,
    database_url: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("COLUMNS", "250")
    contact = await consenting_contact(pool, PHONE)
    carrier = OutboxCarrier(pool)
    counted = count(MARKUP)
    async with pool.connection() as conn:
        reservation = await ledger.reserve_outbound(
            conn,
            franchisor_id=contact.scope.franchisor_id,
            location_id=contact.scope.location_id or "",
            contact_id=contact.id,
            enrollment_id=None,
            step_index=None,
            body=MARKUP,
            encoding=counted.encoding.value,
            segments=counted.segments,
            template_revision="",
            carrier=carrier.name,
            from_number=SENDER,
            to_number=PHONE,
            now=datetime.now(UTC),
            key="markup-test",
        )
    await carrier.send(OutboundText(reservation.message_id, "markup-test", SENDER, PHONE, MARKUP))
    capsys.readouterr()
    show_outbox(database_url, 10, None)
    assert MARKUP in capsys.readouterr().out


def test_an_import_report_shows_reasons_and_columns_as_written(
    capsys: pytest.CaptureFixture[str],
) -> None:
    response = pb.ImportContactsResponse(
        rows=1, rejected=[pb.RejectedRow(row_number=2, field="x", reason=MARKUP)]
    )
    print_report(ImportReport(response, [], ["[/]"]), Console(width=250))
    out = capsys.readouterr().out
    assert MARKUP in out and "'[/]'" in out
