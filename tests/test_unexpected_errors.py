"""An unexpected database error never writes personal data to the application log: psycopg's
message and DETAIL quote the row (`Key (..., phone_e164)=(..., +1212...)`), so what is logged is
the class, SQLSTATE, constraint and traceback frames (issue 13)."""

from __future__ import annotations

import logging
from typing import Any

import grpc
import psycopg
import pytest
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from reengage.v1 import contacts_pb2 as pb
from reengage.v1 import contacts_pb2_grpc
from tenants.contacts import contacts
from tenants.core.names import ChildName
from tenants.core.unexpected_errors import log_unexpected
from tenants.org.access import Principal
from tests.enrollment_support import consenting_contact
from tests.support import World, failure

PHONE = "+12125550142"


async def duplicate_the_contact(
    conn: AsyncConnection[Any], principal: Principal, name: ChildName
) -> Any:
    """A real unique violation on (franchisor, location, phone): a copy of the contact."""
    await conn.execute(
        'INSERT INTO contacts SELECT (jsonb_populate_record(c, \'{"id": "cdup"}\')).*'
        " FROM contacts c WHERE franchisor_id = %s AND location_id = %s AND id = %s",
        (name.scope.franchisor_id, name.scope.location_id, name.id),
    )


async def test_an_rpc_failing_on_a_unique_violation_logs_no_phone_number(
    channel: grpc.aio.Channel,
    world: World,
    pool: AsyncConnectionPool[Any],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    contact = await consenting_contact(pool, PHONE)
    monkeypatch.setattr(contacts, "get_contact", duplicate_the_contact)
    caplog.set_level(logging.INFO)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await contacts_pb2_grpc.ContactServiceStub(channel).GetContact(
            pb.GetContactRequest(name=contact.name), metadata=world.metadata("a_admin")
        )
    assert failure(caught.value).code == grpc.StatusCode.INTERNAL
    [record] = [r for r in caplog.records if r.name == "server.grpc.auth"]
    assert record.levelno == logging.ERROR
    logged = caplog.text
    assert PHONE not in logged and "5550142" not in logged
    assert "already exists" not in logged  # no message, no DETAIL
    assert "unhandled error in RPC" in logged
    assert "UniqueViolation" in logged and "sqlstate 23505" in logged
    assert "constraint contacts_" in logged  # the constraint's name says which rule
    assert "duplicate_the_contact" in logged  # the frames are there


def test_an_error_raised_while_handling_a_database_error_hides_that_errors_text_too(
    caplog: pytest.LogCaptureFixture,
) -> None:
    try:
        try:
            raise psycopg.errors.UniqueViolation(f"Key (phone_e164)=({PHONE}) already exists")
        except psycopg.Error:
            raise KeyError("step")  # with the database error as its context
    except KeyError as error:
        log_unexpected(logging.getLogger("tests.unexpected"), error, "%s failed", "the step")
    assert PHONE not in caplog.text
    assert "the step failed" in caplog.text
    assert "UniqueViolation (sqlstate 23505" in caplog.text and "KeyError: 'step'" in caplog.text
    assert "test_unexpected_errors.py" in caplog.text  # the frames of both


def test_any_other_error_keeps_its_usual_traceback(caplog: pytest.LogCaptureFixture) -> None:
    try:
        raise AttributeError("'NoneType' object has no attribute 'thread_ts'")
    except AttributeError as error:
        log_unexpected(logging.getLogger("tests.unexpected"), error, "it failed")
    [record] = caplog.records
    assert record.levelno == logging.ERROR and record.exc_info is not None
    assert "no attribute 'thread_ts'" in caplog.text
