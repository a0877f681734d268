"""CLIs print what the server holds as text, never as rich markup: a text's body, a contact's
name or a rejected row's reason that looks like markup (`[/]`, `[link=...]`) is shown as
written, and does not crash the command (issue 13)."""

from __future__ import annotations

from typing import Any

import pytest
from psycopg_pool import AsyncConnectionPool
from rich.console import Console

from reengage.v1 import contacts_pb2 as pb
from server.carriers.outbox import OutboxCarrier
from server.cli.contacts import ImportReport, print_report
from server.cli.outbox import show_outbox
from tests.enrollment_support import consenting_contact, reserved_service_text
from tests.support import World

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
    text = await reserved_service_text(pool, contact, MARKUP, SENDER, PHONE, "markup-test")
    await OutboxCarrier(pool).send(text)
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
