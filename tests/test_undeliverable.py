"""Delivery failures end hopeless enrollments (issue 13, item 10;
`tenants/contacts/undeliverable.py`):
a permanent carrier error in a signed status callback, or 3 unreachable ones in a row, ends the
running enrollment as `undeliverable` and marks the contact; the inactivity scan and Enroll
leave a marked contact out until a later text to it is delivered, and a new number (a new
contact) is not marked. Real PostgreSQL, the Temporal time-skipping server, the SMS routes in
process, real gRPC, and the local fake of Twilio's Messages API."""

# ruff: noqa: F811  (the fake_twilio fixture is imported, then requested by name)

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
from google.protobuf import field_mask_pb2
from psycopg_pool import AsyncConnectionPool
from temporalio.testing import WorkflowEnvironment

from bots.messages import notice_message
from reengage.v1 import contacts_pb2 as cpb
from reengage.v1 import contacts_pb2_grpc, enrollments_pb2_grpc
from reengage.v1 import enrollments_pb2 as epb
from tenants.core.names import ChildName
from tenants.enrollment.records import Enrollment
from tenants.followups import notices
from tenants.followups import owed as followups
from tenants.sequences.model import Step
from tests.enrollment_service_support import terminate_all
from tests.enrollment_support import (
    DAY,
    Running,
    brand_template,
    consenting_contact,
    enrollment_server,
    make_sequence,
    run_to_end,
    running_worker,
)
from tests.fake_twilio import FakeTwilio, fake_twilio  # noqa: F401
from tests.inbound_support import ACCOUNT, DOWNTOWN_NUMBER, Edge, rows, sms_edge
from tests.support import OPERATOR, World, failure
from tests.test_enrollment_twilio import carrier
from tests.test_inactivity_scan import INACTIVE_30, enrolled_contacts, phone, quiet_contact, scan
from tests.test_inactivity_scan import refusals as refusal_rows
from tests.test_inactivity_scan import worker as scan_worker
from workflows.client import EnrollmentClient
from workflows.enrolling import enroll

MANAGER = "a_downtown_manager"


def callback(sid: str, status: str, error_code: str = "") -> dict[str, str]:
    """A Twilio status callback's form (signed by `Edge.status`)."""
    form = {"MessageSid": sid, "AccountSid": ACCOUNT, "MessageStatus": status}
    if error_code:
        form["ErrorCode"] = error_code
    return form


async def report(edge: Edge, message: tuple[int, str], status: str, code: str = "") -> None:
    """The carrier reports `status` for a ledger row (id, sid), through the signed webhook."""
    message_id, sid = message
    answer = await edge.status(callback(sid, status, code), query=f"m={message_id}")
    assert answer.status_code == 200


async def nth_text(
    env: WorkflowEnvironment, pool: AsyncConnectionPool[Any], n: int
) -> tuple[int, str]:
    """(ledger id, Twilio sid) of the enrollment's n-th text (from 0), skipping time until
    Twilio took it."""
    for _ in range(24 * 5):
        sent = await rows(
            pool,
            "SELECT id, carrier_message_id FROM messages WHERE direction = 'outbound'"
            " AND carrier_message_id IS NOT NULL ORDER BY id",
        )
        if len(sent) > n:
            return int(sent[n][0]), str(sent[n][1])
        await env.sleep(timedelta(hours=1))
    raise AssertionError(f"text {n} was never sent")


async def text_to(pool: AsyncConnectionPool[Any], contact: ChildName) -> tuple[int, str]:
    """An outbound ledger row, as if a text had been handed to Twilio: (id, sid)."""
    sid = "SM" + secrets.token_hex(16)
    [(message_id,)] = await rows(
        pool,
        "INSERT INTO messages (franchisor_id, location_id, contact_id, direction, body, encoding,"
        " segments, carrier, carrier_message_id, status, from_number, to_number)"
        " SELECT franchisor_id, location_id, id, 'outbound', 'Hi, we miss you! Reply STOP to"
        " opt out', 'GSM-7', 1, 'twilio', %s, 'sent', %s, phone_e164 FROM contacts"
        " WHERE franchisor_id = %s AND location_id = %s AND id = %s RETURNING id",
        sid,
        DOWNTOWN_NUMBER,
        contact.scope.franchisor_id,
        contact.scope.location_id,
        contact.id,
    )
    return int(message_id), sid


async def mark_of(pool: AsyncConnectionPool[Any], contact: ChildName) -> tuple[bool, str]:
    """(marked undeliverable, the error code that marked it) as stored."""
    [(marked, code)] = await rows(
        pool,
        "SELECT undeliverable_at IS NOT NULL, undeliverable_code FROM contacts WHERE id = %s",
        contact.id,
    )
    return bool(marked), str(code)


@asynccontextmanager
async def enrolled_with_twilio(
    env: WorkflowEnvironment,
    pool: AsyncConnectionPool[Any],
    fake: FakeTwilio,
    waits: list[int],
) -> AsyncIterator[tuple[Running, Edge, Enrollment, ChildName]]:
    """A contact enrolled in a sequence with these waits, sent through (fake) Twilio, and the
    SMS routes whose follow-ups reach the enrollment."""
    template = await brand_template(pool)
    sequence = await make_sequence(pool, [Step(template, wait) for wait in waits])
    contact = await consenting_contact(pool)
    async with running_worker(env.client, pool, carrier(fake)) as run:
        async with sms_edge(pool, run.workflows) as edge:
            async with pool.connection() as conn:
                enrollment, _ = await enroll(conn, run.workflows, OPERATOR, contact, sequence)
            yield run, edge, enrollment, contact


# -- a permanent failure ------------------------------------------------------------------


@pytest.mark.parametrize("code", ["30005", "30006"])
async def test_a_permanent_failure_ends_the_running_enrollment_and_marks_the_contact(
    code: str,
    time_skipping_env: WorkflowEnvironment,
    pool: AsyncConnectionPool[Any],
    world: World,
    fake_twilio: FakeTwilio,
    channel: grpc.aio.Channel,
) -> None:
    env = time_skipping_env
    async with enrolled_with_twilio(env, pool, fake_twilio, [0, 3 * DAY, 3 * DAY]) as (
        run,
        edge,
        enrollment,
        contact,
    ):
        first = await nth_text(env, pool, 0)
        await report(edge, first, "sent")
        await report(edge, first, "undelivered", code)
        assert await run_to_end(env, run.workflows, enrollment) == "undeliverable"
    assert len(fake_twilio.created) == 1  # the later steps were never tried
    [(status, reason)] = await rows(pool, "SELECT status, exit_reason FROM enrollments")
    assert (status, reason) == ("exited", "undeliverable")
    assert await rows(pool, "SELECT status, error_code FROM messages") == [("undelivered", code)]

    shown = await contacts_pb2_grpc.ContactServiceStub(channel).GetContact(
        cpb.GetContactRequest(name=contact.name), metadata=world.metadata(MANAGER)
    )
    assert shown.undeliverable and shown.undeliverable_error_code == code
    assert shown.HasField("undeliverable_time")

    # staff are told, in words
    async with pool.connection() as conn:
        [owed] = await rows(
            pool,
            "SELECT id FROM followups WHERE kind = 'notify'"
            " AND payload->>'kind' = 'enrollment_exited'",
        )
        [exited] = await followups.claim(conn, datetime.now(UTC), [int(owed[0])])
        notice = notices.Notice.of(exited)
        _, blocks = notice_message(notice, await notices.facts(conn, notice))
    assert notice.payload["reason"] == "undeliverable"
    assert "the number cannot receive texts" in str(blocks)


async def test_a_number_twilio_refuses_at_once_marks_the_contact_too(
    time_skipping_env: WorkflowEnvironment,
    pool: AsyncConnectionPool[Any],
    world: World,
    fake_twilio: FakeTwilio,
) -> None:
    fake_twilio.fail_next(http_status=400, code=21211)
    env = time_skipping_env
    async with enrolled_with_twilio(env, pool, fake_twilio, [0, DAY]) as (run, _, enrollment, c):
        assert await run_to_end(env, run.workflows, enrollment) == "undeliverable"
    assert await mark_of(pool, c) == (True, "21211")


# -- unreachable, in a row ----------------------------------------------------------------


async def test_three_unreachable_in_a_row_end_the_enrollment_and_mark_the_contact(
    time_skipping_env: WorkflowEnvironment,
    pool: AsyncConnectionPool[Any],
    world: World,
    fake_twilio: FakeTwilio,
) -> None:
    env = time_skipping_env
    waits = [0, DAY, DAY, DAY, DAY]
    async with enrolled_with_twilio(env, pool, fake_twilio, waits) as (run, edge, enrollment, c):
        for n in range(3):
            assert await mark_of(pool, c) == (False, "")
            await report(edge, await nth_text(env, pool, n), "undelivered", "30003")
        assert await run_to_end(env, run.workflows, enrollment) == "undeliverable"
    assert len(fake_twilio.created) == 3
    assert await mark_of(pool, c) == (True, "30003")


async def test_two_unreachable_then_a_delivery_do_not_end_the_enrollment(
    time_skipping_env: WorkflowEnvironment,
    pool: AsyncConnectionPool[Any],
    world: World,
    fake_twilio: FakeTwilio,
) -> None:
    env = time_skipping_env
    waits = [0, DAY, DAY, DAY, DAY]
    outcomes = [("undelivered", "30003"), ("failed", "30004"), ("delivered", "")]
    outcomes += [("undelivered", "30003"), ("undelivered", "30003")]
    async with enrolled_with_twilio(env, pool, fake_twilio, waits) as (run, edge, enrollment, c):
        for n, (status, code) in enumerate(outcomes):
            await report(edge, await nth_text(env, pool, n), status, code)
        assert await run_to_end(env, run.workflows, enrollment) == "completed"
    assert len(fake_twilio.created) == 5
    assert await mark_of(pool, c) == (False, "")  # two in a row since the delivery


@pytest.mark.parametrize("code", ["30007", "30008", "21408", "30001"])
async def test_failures_that_say_nothing_about_the_number_never_mark_it(
    code: str, time_skipping_env: WorkflowEnvironment, pool: AsyncConnectionPool[Any], world: World
) -> None:
    contact = await consenting_contact(pool)
    async with sms_edge(pool, EnrollmentClient(time_skipping_env.client, "nobody")) as edge:
        for _ in range(4):
            await report(edge, await text_to(pool, contact), "undelivered", code)
    assert await mark_of(pool, contact) == (False, "")


# -- entry: the scan and Enroll -----------------------------------------------------------


async def test_the_scan_leaves_a_marked_contact_out_until_a_later_delivery_or_a_new_number(
    time_skipping_env: WorkflowEnvironment, pool: AsyncConnectionPool[Any], world: World
) -> None:
    env = time_skipping_env
    template = await brand_template(pool)
    # a step no scan outlives: every enrollment keeps running, so no contact enters twice
    await make_sequence(pool, [Step(template, 365 * DAY)], entry=INACTIVE_30)
    marked = await quiet_contact(pool, phone(1))
    quiet = await quiet_contact(pool, phone(2))
    older = await text_to(pool, marked)
    failed = await text_to(pool, marked)
    async with scan_worker(env.client, pool) as run, sms_edge(pool, run.workflows) as edge:
        await report(edge, failed, "undelivered", "30005")
        await scan(env, run)
        assert set(await enrolled_contacts(pool)) == {quiet.id}

        new_number = await quiet_contact(pool, phone(3))  # a new number is a new contact
        await report(edge, older, "delivered")  # late news of an older text proves nothing
        await scan(env, run)
        assert set(await enrolled_contacts(pool)) == {quiet.id, new_number.id}

        later = await text_to(pool, marked)  # e.g. the answer to a HELP
        await report(edge, later, "delivered")
        await scan(env, run)
        assert set(await enrolled_contacts(pool)) == {quiet.id, new_number.id, marked.id}
    # left out by the query, not refused one by one
    assert [r for r in await refusal_rows(pool) if r[3] == "UNDELIVERABLE"] == []


async def test_enroll_is_refused_while_marked_and_get_contact_shows_the_mark(
    time_skipping_env: WorkflowEnvironment, pool: AsyncConnectionPool[Any], world: World
) -> None:
    env = time_skipping_env
    template = await brand_template(pool)
    sequence = await make_sequence(pool, [Step(template, 365 * DAY)])
    contact = await consenting_contact(pool)
    failed = await text_to(pool, contact)
    async with running_worker(env.client, pool) as run, sms_edge(pool, run.workflows) as edge:
        try:
            async with (
                enrollment_server(pool, run.workflows) as target,
                grpc.aio.insecure_channel(target) as ch,
            ):
                people = contacts_pb2_grpc.ContactServiceStub(ch)
                api = enrollments_pb2_grpc.EnrollmentServiceStub(ch)
                meta = world.metadata(MANAGER)
                request = epb.EnrollRequest(contact=contact.name, sequence=sequence.name)

                await report(edge, failed, "failed", "21614")
                shown = await people.GetContact(
                    cpb.GetContactRequest(name=contact.name), metadata=meta
                )
                assert (shown.undeliverable, shown.undeliverable_error_code) == (True, "21614")
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await api.Enroll(request, metadata=meta)
                got = failure(refused.value)
                assert got.code is grpc.StatusCode.FAILED_PRECONDITION
                assert got.error_info is not None
                assert got.error_info.reason == "UNDELIVERABLE"
                assert got.error_info.metadata["error_code"] == "21614"
                assert "21614" in got.message

                # editing the contact keeps the mark (its number cannot change)
                edited = await people.UpdateContact(
                    cpb.UpdateContactRequest(
                        contact=cpb.Contact(name=contact.name, first_name="Dani"),
                        update_mask=field_mask_pb2.FieldMask(paths=["first_name"]),
                    ),
                    metadata=meta,
                )
                assert edited.undeliverable

                await report(edge, await text_to(pool, contact), "delivered")
                cleared = await people.GetContact(
                    cpb.GetContactRequest(name=contact.name), metadata=meta
                )
                assert not cleared.undeliverable and not cleared.undeliverable_error_code
                assert not cleared.HasField("undeliverable_time")
                assert cleared.etag != edited.etag
                enrolled = await api.Enroll(request, metadata=meta)
                assert enrolled.status == epb.ENROLLMENT_STATUS_ACTIVE
        finally:
            await terminate_all(env, pool)
    refused_rows = await rows(pool, "SELECT path, reason FROM enrollment_refusals")
    assert refused_rows == [("api", "UNDELIVERABLE")]
