"""reengage.v1.EnrollmentService over real gRPC: the auth interceptor, the servicer, the entry
rules in PostgreSQL and the enrollment workflows on the Temporal time-skipping server, run by a
real worker. Time moves only when a test skips it (`time_skipping_env.sleep`). This file: Enroll
and its entry rules, BulkEnroll, GetEnrollment and ListEnrollments."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
from psycopg_pool import AsyncConnectionPool
from temporalio.testing import WorkflowEnvironment

from reengage.v1 import enrollments_pb2 as pb
from reengage.v1 import enrollments_pb2_grpc
from server.grpc import enrollment_service
from tenants.contacts.consent import ConsentChannel, ConsentEvidence, ConsentKind, record_consent
from tenants.core.names import ChildName
from tenants.sequences import definitions as sequences
from tests.enrollment_service_support import (
    DOWNTOWN,
    Api,
    _name,
    approval_sequence,
    bare_contact,
    long_sequence,
    precondition,
    refused,
    terminate_all,
    workflow_closed,
)
from tests.enrollment_support import (
    DAY,
    consenting_contact,
    enrollment_server,
    morning_zone,
    running_worker,
    sent_messages,
)
from tests.support import A_UPTOWN, B_HARBOR, OPERATOR, World
from workflows.enrolling import enroll_many


@pytest.fixture
async def enrollment_channel(
    time_skipping_env: WorkflowEnvironment, pool: AsyncConnectionPool[Any]
) -> AsyncIterator[grpc.aio.Channel]:
    """A worker for the enrollment workflows and the real gRPC server using it."""
    async with running_worker(time_skipping_env.client, pool) as running:
        try:
            async with (
                enrollment_server(pool, running.workflows) as target,
                grpc.aio.insecure_channel(target) as channel,
            ):
                yield channel
        finally:
            await terminate_all(time_skipping_env, pool)


@pytest.fixture
async def api(
    enrollment_channel: grpc.aio.Channel,
    world: World,
    time_skipping_env: WorkflowEnvironment,
    pool: AsyncConnectionPool[Any],
) -> Api:
    return Api(
        enrollments_pb2_grpc.EnrollmentServiceStub(enrollment_channel),
        world,
        time_skipping_env,
        pool,
    )


# -- Enroll and its entry rules ----------------------------------------------------------------


async def test_enroll_starts_an_active_enrollment_and_enrolling_again_answers_the_same(
    api: Api,
) -> None:
    sequence = await long_sequence(api.pool)
    contact = await consenting_contact(api.pool)
    first = await api.enroll(contact, sequence)
    assert first.name.startswith(f"{DOWNTOWN}/enrollments/")
    assert first.contact == contact.name and first.sequence == sequence.name
    assert first.status == pb.ENROLLMENT_STATUS_ACTIVE
    assert first.enroll_time.seconds > 0 and not first.HasField("end_time")
    again = await api.enroll(contact, sequence, who="a_downtown_manager")
    assert again.name == first.name and again.status == pb.ENROLLMENT_STATUS_ACTIVE
    listed = await api.list()
    assert [e.name for e in listed.enrollments] == [first.name]
    live = await api.get(first.name)
    assert live.status == pb.ENROLLMENT_STATUS_ACTIVE and live.pending_approval_step == -1


async def test_a_contact_running_another_sequence_is_already_exists_naming_the_running_one(
    api: Api,
) -> None:
    winback = await long_sequence(api.pool, "winback")
    welcome = await long_sequence(api.pool, "welcome")
    contact = await consenting_contact(api.pool)
    running = await api.enroll(contact, winback)
    err = await refused(api.enroll(contact, welcome))
    assert err.code == grpc.StatusCode.ALREADY_EXISTS, err
    assert err.error_info is not None
    assert err.error_info.reason == "ENROLLMENT_RUNNING"
    assert err.error_info.metadata["enrollment"] == running.name
    assert [e.name for e in (await api.list()).enrollments] == [running.name]


async def test_a_contact_without_consent_is_refused_no_consent(api: Api) -> None:
    sequence = await long_sequence(api.pool)
    contact = await bare_contact(api.pool, "+12125550143")
    assert await precondition(api.enroll(contact, sequence)) == "NO_CONSENT"
    assert not (await api.list()).enrollments


async def test_an_opted_out_contact_is_refused_opted_out(api: Api) -> None:
    sequence = await long_sequence(api.pool)
    contact = await consenting_contact(api.pool)
    async with api.pool.connection() as conn:
        await record_consent(
            conn,
            OPERATOR,
            contact,
            ConsentEvidence(
                ConsentKind.REVOKE,
                ConsentChannel.SMS_REPLY,
                datetime.now(UTC) - timedelta(minutes=1),
                raw_text="STOP",
            ),
        )
    assert await precondition(api.enroll(contact, sequence)) == "OPTED_OUT"
    assert not (await api.list()).enrollments


async def test_after_an_enrollment_ends_the_cooldown_refuses_until_it_has_passed(
    api: Api,
) -> None:
    sequence = await long_sequence(api.pool, cooldown_seconds=30 * DAY)
    contact = await consenting_contact(api.pool)
    first = await api.enroll(contact, sequence)
    await api.cancel(first.name, reason="customer asked")
    # the live state says EXITED a moment before the read model has recorded the end time
    ended = await api.eventually(
        first.name,
        lambda e: e.status == pb.ENROLLMENT_STATUS_EXITED and e.HasField("end_time"),
    )
    assert ended.exit_reason == "cancelled"
    assert ended.pending_approval_step == -1  # the record answers, with the history it kept
    assert any(h.endswith(" cancelled: customer asked") for h in ended.history), ended.history
    await workflow_closed(api, contact)

    err = await refused(api.enroll(contact, sequence))
    assert err.code == grpc.StatusCode.FAILED_PRECONDITION, err
    assert err.error_info is not None and err.error_info.reason == "COOLDOWN"
    until = datetime.fromisoformat(err.error_info.metadata["until"])
    assert until == ended.end_time.ToDatetime(tzinfo=UTC) + timedelta(days=30)

    async with api.pool.connection() as conn:  # 31 days later (the rule reads the real clock)
        await conn.execute(
            "UPDATE enrollments SET ended_at = ended_at - interval '31 days' WHERE id = %s",
            (first.name.rsplit("/", 1)[1],),
        )
    second = await api.enroll(contact, sequence)
    assert second.name != first.name and second.status == pb.ENROLLMENT_STATUS_ACTIVE


@pytest.mark.parametrize("state", ["paused", "archived"])
async def test_a_sequence_that_is_not_active_is_failed_precondition(api: Api, state: str) -> None:
    sequence = await long_sequence(api.pool)
    contact = await consenting_contact(api.pool)
    async with api.pool.connection() as conn:
        if state == "archived":
            await sequences.archive_sequence(conn, OPERATOR, sequence, "")
        else:  # no API pauses a sequence yet: the state as an operator would set it
            await conn.execute(
                "UPDATE sequences SET state = 'paused' WHERE franchisor_id = 'acme' AND id = %s",
                (sequence.id,),
            )
    assert await precondition(api.enroll(contact, sequence)) == "SEQUENCE_NOT_ACTIVE"
    assert not (await api.list()).enrollments


async def test_a_sequence_of_another_location_is_invalid_argument(api: Api) -> None:
    uptown_only = await long_sequence(api.pool, "uptown-special", scope=A_UPTOWN)
    contact = await consenting_contact(api.pool)
    err = await refused(api.enroll(contact, uptown_only))
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT, err
    assert "sequence" in err.violations
    uptown_contact = await consenting_contact(api.pool, "+13105550144", location=A_UPTOWN)
    enrolled = await api.enroll(uptown_contact, uptown_only)
    assert enrolled.name.startswith(f"{A_UPTOWN.name}/enrollments/")


# -- BulkEnroll ---------------------------------------------------------------------------------


async def test_bulk_enroll_answers_one_result_per_request_in_order_with_counts(api: Api) -> None:
    sequence = await long_sequence(api.pool)
    good = await consenting_contact(api.pool, "+12125550145")
    other_good = await consenting_contact(api.pool, "+12125550146")
    no_consent = await bare_contact(api.pool, "+12125550147")
    missing = f"{DOWNTOWN}/contacts/cnothere"
    bravo = await consenting_contact(api.pool, "+13125550148", location=B_HARBOR)
    requests: list[tuple[ChildName | str, ChildName | str]] = [
        (good, sequence),
        (good, sequence),
        (no_consent, sequence),
        (missing, sequence),
        (bravo, sequence),
        (other_good, sequence),
    ]
    answer = await api.bulk(requests)
    results = list(answer.results)
    assert [r.contact for r in results] == [_name(c) for c, _ in requests]
    first, duplicate, refused_consent, not_found, foreign, second = results
    assert first.created and first.enrollment.startswith(f"{DOWNTOWN}/enrollments/")
    assert not first.error_code and not first.error_reason
    assert not duplicate.created and duplicate.enrollment == first.enrollment
    assert not duplicate.error_code
    assert (refused_consent.error_code, refused_consent.error_reason) == (
        "FAILED_PRECONDITION",
        "NO_CONSENT",
    )
    assert not refused_consent.enrollment and refused_consent.error_message
    assert not_found.error_code == "NOT_FOUND" and not not_found.enrollment
    assert foreign.error_code == "PERMISSION_DENIED" and not foreign.enrollment
    assert second.created and second.enrollment not in ("", first.enrollment)
    assert (answer.enrolled, answer.already_enrolled, answer.refused) == (2, 1, 3)
    listed = await api.list()
    assert sorted(e.name for e in listed.enrollments) == sorted(
        [first.enrollment, second.enrollment]
    )


async def test_a_bulk_enroll_cut_by_an_undecodable_message_enrolls_nothing_after_it_failed(
    api: Api, enrollment_channel: grpc.aio.Channel, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The enrollments already under way finish before the call answers its error; none goes
    on (or fails unobserved) after the caller was told the call failed."""
    sequence = await long_sequence(api.pool)
    contacts_ = [await consenting_contact(api.pool, f"+1212555014{n}") for n in (5, 6)]
    finished: list[str] = []

    async def slow_enroll_many(
        conn: Any, workflows: Any, who: Any, contacts: Any, *rest: Any
    ) -> Any:
        await asyncio.sleep(0.3)
        done = await enroll_many(conn, workflows, who, contacts, *rest)
        finished.extend(c.name for c in contacts)
        return done

    monkeypatch.setattr(enrollment_service, "enroll_many", slow_enroll_many)
    good = [
        pb.BulkEnrollRequest(contact=c.name, sequence=sequence.name).SerializeToString()
        for c in contacts_
    ]
    undecodable = bytes([(1 << 3) | 2, 3]) + b"\xed\xa0\x80"  # contact: a lone surrogate

    async def stream() -> AsyncIterator[bytes]:
        for raw in [*good, undecodable]:
            yield raw

    call = enrollment_channel.stream_unary(
        "/reengage.v1.EnrollmentService/BulkEnroll",
        request_serializer=lambda b: b,
        response_deserializer=lambda b: b,
    )
    err = await refused(call(stream(), metadata=api.md("a_admin"), timeout=30))
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT, err
    when_answered = list(finished)
    await asyncio.sleep(0.6)
    assert sorted(when_answered) == sorted(c.name for c in contacts_)
    assert finished == when_answered


# -- GetEnrollment and ListEnrollments ------------------------------------------------------------


async def test_get_enrollment_shows_the_pending_approval_and_the_history_live(api: Api) -> None:
    sequence = await approval_sequence(api.pool)
    # the approved step is sent at once only inside the window: a zone where it is morning now
    contact = await consenting_contact(api.pool, time_zone=await morning_zone(api.env))
    enrolled = await api.enroll(contact, sequence)
    assert enrolled.pending_approval_step == -1
    pending = await api.awaiting_approval(enrolled.name)
    assert pending.status == pb.ENROLLMENT_STATUS_AWAITING_APPROVAL
    assert pending.current_step == 0
    assert pending.pending_text == "Hi Dana, Acme Coffee misses you! Reply STOP to opt out"
    assert pending.HasField("next_wake_time")  # the approval deadline

    await api.decide(enrolled.name, 0, pb.APPROVAL_ACTION_APPROVE)
    after = await api.sent(enrolled.name)
    assert after.pending_approval_step == -1 and not after.pending_text
    assert any("step 0 approve by api_key:" in line for line in after.history), after.history
    assert after.current_step == 1
    assert [m[0] for m in await sent_messages(api.pool)] == [0]


async def test_list_enrollments_filters_by_status_and_sequence_and_pages(api: Api) -> None:
    winback = await long_sequence(api.pool, "winback")
    welcome = await long_sequence(api.pool, "welcome")
    people = [await consenting_contact(api.pool, f"+1212555015{i}") for i in range(5)]
    names = [(await api.enroll(c, winback)).name for c in people[:4]]
    names.append((await api.enroll(people[4], welcome)).name)
    await api.pause(names[1])
    await api.eventually(names[1], lambda e: e.status == pb.ENROLLMENT_STATUS_PAUSED)
    await api.cancel(names[2])
    await api.eventually(names[2], lambda e: e.status == pb.ENROLLMENT_STATUS_EXITED)

    async def listed(**request: Any) -> list[str]:
        return [e.name for e in (await api.list(**request)).enrollments]

    assert await listed() == sorted(names)
    assert await listed(status=pb.ENROLLMENT_STATUS_ACTIVE) == sorted(
        [names[0], names[3], names[4]]
    )
    assert await listed(status=pb.ENROLLMENT_STATUS_PAUSED) == [names[1]]
    assert await listed(status=pb.ENROLLMENT_STATUS_EXITED) == [names[2]]
    assert await listed(sequence=welcome.name) == [names[4]]
    assert await listed(sequence=winback.name, status=pb.ENROLLMENT_STATUS_ACTIVE) == sorted(
        [names[0], names[3]]
    )
    assert await listed(status=pb.ENROLLMENT_STATUS_COMPLETED) == []
    assert await listed(parent=A_UPTOWN.name) == []

    pages, token = [], ""
    while True:
        page = await api.list(page_size=2, page_token=token)
        pages.append([e.name for e in page.enrollments])
        token = page.next_page_token
        if not token:
            break
    assert [len(p) for p in pages] == [2, 2, 1]
    assert [n for p in pages for n in p] == sorted(names)

    first = await api.list(page_size=1, sequence=winback.name)
    assert first.next_page_token
    err = await refused(api.list(page_size=1, page_token=first.next_page_token))
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT and "page_token" in err.violations
    rest = await api.list(page_size=10, sequence=winback.name, page_token=first.next_page_token)
    assert [e.name for e in first.enrollments] + [e.name for e in rest.enrollments] == sorted(
        names[:4]
    )
