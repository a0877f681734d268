"""reengage.v1.EnrollmentService over real gRPC: the auth interceptor, the servicer, the entry
rules in PostgreSQL and the enrollment workflows on the Temporal time-skipping server, run by a
real worker. Time moves only when a test skips it (`time_skipping_env.sleep`)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
from psycopg_pool import AsyncConnectionPool
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowExecutionStatus, WorkflowHandle
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from reengage.v1 import enrollments_pb2 as pb
from reengage.v1 import enrollments_pb2_grpc
from server.grpc.enrollment_service import EnrollmentService
from tenants.contacts import contacts
from tenants.contacts.consent import ConsentChannel, ConsentEvidence, ConsentKind, record_consent
from tenants.core.names import ChildName
from tenants.enrollment.records import workflow_id_for
from tenants.sequences import definitions as sequences
from tenants.sequences.definitions import Step
from tests.enrollment_support import (
    DAY,
    brand_template,
    consenting_contact,
    enrollment_server,
    make_sequence,
    morning_zone,
    running_worker,
    sent_messages,
)
from tests.support import A_DOWNTOWN, A_UPTOWN, B_HARBOR, OPERATOR, RpcFailure, World, failure

LONG = 365 * DAY  # a wait no test outlives: the enrollment keeps running
DOWNTOWN = A_DOWNTOWN.name
NOWHERE = f"{DOWNTOWN}/enrollments/enothere"
SHORTENED = "Come back for a free latte: bit.ly/acme-latte Reply STOP to opt out"


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


async def terminate_all(env: WorkflowEnvironment, pool: AsyncConnectionPool[Any]) -> None:
    """Ends the test's workflows once none has a task in flight. The time-skipping server is
    shared by the session and does not skip time while a workflow or activity task is open, and
    a task left open (its worker gone, or its workflow terminated under it) stays open for good:
    every later test's clock would stand still."""
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT DISTINCT workflow_id FROM enrollments")
        ids = [row[0] for row in await cur.fetchall()]
    for workflow_id in ids:
        handle = env.client.get_workflow_handle(workflow_id)
        for _ in range(400):
            if (await handle.describe()).status != WorkflowExecutionStatus.RUNNING:
                break
            if await _quiet(handle):
                with contextlib.suppress(RPCError):  # it may have just completed
                    await handle.terminate("test over")
                break
            await asyncio.sleep(0.025)
        else:
            raise AssertionError(f"{workflow_id} never settled")


async def _quiet(handle: WorkflowHandle[Any, Any]) -> bool:
    """No activity and no workflow task open in the run's history."""
    open_activities: set[int] = set()
    task_open = False
    async for event in handle.fetch_history_events():
        kind = event.event_type
        if kind == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            open_activities.add(event.event_id)
        elif kind in _ACTIVITY_CLOSED:
            attributes = getattr(event, _ACTIVITY_CLOSED[kind])
            open_activities.discard(attributes.scheduled_event_id)
        elif kind == EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED:
            task_open = True
        elif kind in _TASK_CLOSED:
            task_open = False
    return not open_activities and not task_open


_ACTIVITY_CLOSED = {
    EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED: "activity_task_completed_event_attributes",
    EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED: "activity_task_failed_event_attributes",
    EventType.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT: "activity_task_timed_out_event_attributes",
    EventType.EVENT_TYPE_ACTIVITY_TASK_CANCELED: "activity_task_canceled_event_attributes",
}
_TASK_CLOSED = {
    EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED,
    EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED,
    EventType.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT,
}


@dataclass
class Api:
    stub: enrollments_pb2_grpc.EnrollmentServiceStub
    world: World
    env: WorkflowEnvironment
    pool: AsyncConnectionPool[Any]

    def md(self, who: str) -> tuple[tuple[str, str], ...]:
        return self.world.metadata(who)

    async def enroll(
        self, contact: ChildName | str, sequence: ChildName | str, who: str = "a_admin"
    ) -> pb.Enrollment:
        return await self.stub.Enroll(
            pb.EnrollRequest(contact=_name(contact), sequence=_name(sequence)),
            metadata=self.md(who),
        )

    async def bulk(
        self, pairs: list[tuple[ChildName | str, ChildName | str]], who: str = "a_admin"
    ) -> pb.BulkEnrollResponse:
        async def requests() -> AsyncIterator[pb.BulkEnrollRequest]:
            for contact, sequence in pairs:
                yield pb.BulkEnrollRequest(contact=_name(contact), sequence=_name(sequence))

        return await self.stub.BulkEnroll(requests(), metadata=self.md(who))

    async def get(self, name: str, who: str = "a_admin") -> pb.Enrollment:
        return await self.stub.GetEnrollment(
            pb.GetEnrollmentRequest(name=name), metadata=self.md(who)
        )

    async def list(self, who: str = "a_admin", **request: Any) -> pb.ListEnrollmentsResponse:
        request.setdefault("parent", DOWNTOWN)
        return await self.stub.ListEnrollments(
            pb.ListEnrollmentsRequest(**request), metadata=self.md(who)
        )

    async def pause(self, name: str, who: str = "a_admin", request_id: str = "") -> pb.Enrollment:
        return await self.stub.PauseEnrollment(
            pb.PauseEnrollmentRequest(name=name, request_id=request_id), metadata=self.md(who)
        )

    async def resume(self, name: str, who: str = "a_admin", request_id: str = "") -> pb.Enrollment:
        return await self.stub.ResumeEnrollment(
            pb.ResumeEnrollmentRequest(name=name, request_id=request_id), metadata=self.md(who)
        )

    async def cancel(
        self, name: str, who: str = "a_admin", reason: str = "", request_id: str = ""
    ) -> pb.Enrollment:
        return await self.stub.CancelEnrollment(
            pb.CancelEnrollmentRequest(name=name, reason=reason, request_id=request_id),
            metadata=self.md(who),
        )

    async def decide(
        self,
        name: str,
        step: int,
        action: int = pb.APPROVAL_ACTION_APPROVE,
        text: str = "",
        who: str = "a_admin",
        request_id: str = "",
    ) -> pb.Enrollment:
        return await self.stub.DecideApproval(
            pb.DecideApprovalRequest(
                name=name,
                step_index=step,
                action=action,
                text=text,
                request_id=request_id,
            ),
            metadata=self.md(who),
        )

    async def eventually(
        self, name: str, check: Callable[[pb.Enrollment], bool], seconds: float = 10
    ) -> pb.Enrollment:
        """Polls GetEnrollment in real time (no time skipped) until check passes."""
        deadline = asyncio.get_running_loop().time() + seconds
        while True:
            found = await self.get(name)
            if check(found):
                return found
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"{name} never got there: {found}")
            await asyncio.sleep(0.05)

    async def skip_until(
        self, name: str, check: Callable[[pb.Enrollment], bool], what: str
    ) -> pb.Enrollment:
        """Skips time in two-hour strides (a step may wait for the send window to open) until
        check passes."""
        for _ in range(48):
            found = await self.get(name)
            if check(found):
                return found
            await self.env.sleep(timedelta(hours=2))
        raise AssertionError(f"{name}: {what} never happened: {found}")

    async def awaiting_approval(self, name: str, step: int = 0) -> pb.Enrollment:
        return await self.skip_until(
            name, lambda e: e.pending_approval_step == step, f"step {step} awaiting approval"
        )

    async def sent(self, name: str, step: int = 0) -> pb.Enrollment:
        return await self.skip_until(
            name, lambda e: any(f"step {step} sent" in h for h in e.history), f"step {step} sent"
        )


def _name(value: ChildName | str) -> str:
    return value if isinstance(value, str) else value.name


async def refused(call: Awaitable[Any]) -> RpcFailure:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return failure(caught.value)


async def precondition(call: Awaitable[Any]) -> str:
    """The ErrorInfo reason of a FAILED_PRECONDITION refusal."""
    err = await refused(call)
    assert err.code == grpc.StatusCode.FAILED_PRECONDITION, err
    assert err.error_info is not None
    return str(err.error_info.reason)


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


async def long_sequence(
    pool: AsyncConnectionPool[Any], sid: str = "winback", **kw: Any
) -> ChildName:
    """A one-step sequence whose step is a year away: its enrollments keep running."""
    template = await brand_template(pool, f"t-{sid}")
    return await make_sequence(pool, [Step(template, LONG)], sid, **kw)


async def approval_sequence(pool: AsyncConnectionPool[Any]) -> ChildName:
    """Step 0 at once and needing approval; step 1 a year later."""
    template = await brand_template(pool)
    return await make_sequence(
        pool, [Step(template, 0, require_approval=True), Step(template, LONG)], "approved"
    )


async def bare_contact(
    pool: AsyncConnectionPool[Any], phone: str, location: Any = A_DOWNTOWN
) -> ChildName:
    async with pool.connection() as conn:
        c = await contacts.create_contact(
            conn,
            OPERATOR,
            location,
            "",
            contacts.ContactInput(phone_number=phone, first_name="Lee"),
        )
    return c.name


async def workflow_closed(api: Api, contact: ChildName) -> None:
    handle = api.env.client.get_workflow_handle(workflow_id_for(contact.scope, contact.id))
    for _ in range(200):
        if (await handle.describe()).status != WorkflowExecutionStatus.RUNNING:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"the workflow of {contact.name} still runs")


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
    assert ended.pending_approval_step == -1 and not ended.history  # the record answers
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
    enroll_now = EnrollmentService._enroll

    async def slow_enroll(self: EnrollmentService, contact: str, seq: str) -> Any:
        await asyncio.sleep(0.3)
        done = await enroll_now(self, contact, seq)
        finished.append(contact)
        return done

    monkeypatch.setattr(EnrollmentService, "_enroll", slow_enroll)
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


# -- Pause, resume, cancel and approval decisions -----------------------------------------------


async def test_pause_resume_and_cancel_are_refused_when_they_do_not_apply(api: Api) -> None:
    sequence = await long_sequence(api.pool)
    contact = await consenting_contact(api.pool)
    name = (await api.enroll(contact, sequence)).name
    assert await precondition(api.resume(name)) == "NOT_PAUSED"
    await api.pause(name)
    assert await precondition(api.pause(name)) == "ALREADY_PAUSED"
    await api.resume(name)
    assert await precondition(api.resume(name)) == "NOT_PAUSED"
    await api.pause(name)
    await api.cancel(name, reason="moved away")
    ended = await api.eventually(name, lambda e: e.status == pb.ENROLLMENT_STATUS_EXITED)
    assert ended.exit_reason == "cancelled"
    await workflow_closed(api, contact)
    for call in (
        api.pause(name),
        api.resume(name),
        api.cancel(name),
        api.decide(name, 0, pb.APPROVAL_ACTION_APPROVE),
    ):
        assert await precondition(call) == "ENDED"
    err = await refused(api.cancel(name, reason="x" * 201))
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT and "reason" in err.violations


async def test_steering_right_after_a_cancel_is_refused_as_ended(api: Api) -> None:
    sequence = await long_sequence(api.pool)
    contact = await consenting_contact(api.pool)
    name = (await api.enroll(contact, sequence)).name
    await api.cancel(name)
    # the workflow is still closing (its last transition is being recorded): the same refusal
    assert await precondition(api.pause(name)) == "ENDED"
    assert await precondition(api.cancel(name)) == "ENDED"


async def test_pause_resume_and_cancel_answer_the_enrollment_as_steered(api: Api) -> None:
    sequence = await long_sequence(api.pool)
    contact = await consenting_contact(api.pool)
    name = (await api.enroll(contact, sequence)).name
    paused = await api.pause(name)
    assert paused.name == name
    assert paused.status == pb.ENROLLMENT_STATUS_PAUSED
    assert (await api.get(name)).status == pb.ENROLLMENT_STATUS_PAUSED  # the live state
    resumed = await api.resume(name)
    assert resumed.status == pb.ENROLLMENT_STATUS_ACTIVE
    cancelled = await api.cancel(name)
    assert cancelled.status == pb.ENROLLMENT_STATUS_EXITED
    assert cancelled.exit_reason == "cancelled"


async def test_approval_decisions_are_checked_and_an_edit_is_sent_as_edited(api: Api) -> None:
    sequence = await approval_sequence(api.pool)
    # the edit is sent at once only inside the window: a zone where it is morning now
    contact = await consenting_contact(api.pool, time_zone=await morning_zone(api.env))
    name = (await api.enroll(contact, sequence)).name
    assert await precondition(api.decide(name, 0)) == "NO_PENDING_APPROVAL"
    await api.awaiting_approval(name)
    assert await precondition(api.decide(name, 1)) == "STALE_DECISION"
    err = await refused(api.decide(name, 0, pb.APPROVAL_ACTION_EDIT, SHORTENED))
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT and "text" in err.violations, err
    err = await refused(api.decide(name, 0, pb.APPROVAL_ACTION_UNSPECIFIED))
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT and "action" in err.violations
    still = await api.get(name)
    assert still.pending_approval_step == 0  # none of the refusals decided anything

    edited = "Dana, your next latte is on us at Acme Coffee. Reply STOP to opt out"
    await api.decide(name, 0, pb.APPROVAL_ACTION_EDIT, edited, who="a_downtown_manager")
    await api.sent(name)
    assert [(m[0], m[1]) for m in await sent_messages(api.pool)] == [(0, edited)]
    assert await precondition(api.decide(name, 0)) == "NO_PENDING_APPROVAL"


async def test_an_edit_with_placeholders_is_refused_because_it_is_sent_as_written(
    api: Api,
) -> None:
    sequence = await approval_sequence(api.pool)
    contact = await consenting_contact(api.pool)
    name = (await api.enroll(contact, sequence)).name
    await api.awaiting_approval(name)
    err = await refused(api.decide(name, 0, pb.APPROVAL_ACTION_EDIT, "Hi {{contact.first_name}}"))
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT, err
    assert "exactly as written" in err.violations["text"]
    assert (await api.get(name)).pending_approval_step == 0  # nothing was decided
    assert await sent_messages(api.pool) == []


async def test_a_skip_decision_sends_nothing_for_the_step(api: Api) -> None:
    sequence = await approval_sequence(api.pool)
    contact = await consenting_contact(api.pool)
    name = (await api.enroll(contact, sequence)).name
    await api.awaiting_approval(name)
    await api.decide(name, 0, pb.APPROVAL_ACTION_SKIP)
    after = await api.eventually(name, lambda e: e.current_step == 1)
    assert any("step 0 skip by" in line for line in after.history), after.history
    assert await sent_messages(api.pool) == []


async def test_an_unanswered_approval_skips_the_step_and_a_late_decision_is_refused(
    api: Api,
) -> None:
    sequence = await approval_sequence(api.pool)
    contact = await consenting_contact(api.pool)
    name = (await api.enroll(contact, sequence)).name
    await api.awaiting_approval(name)
    await api.env.sleep(timedelta(hours=25))  # the approval deadline is a day
    after = await api.eventually(name, lambda e: e.current_step == 1)
    assert after.pending_approval_step == -1
    assert any("step 0 approval timed out: skipped" in h for h in after.history), after.history
    assert await precondition(api.decide(name, 0)) == "NO_PENDING_APPROVAL"
    assert await sent_messages(api.pool) == []


async def test_the_same_request_id_twice_decides_once(api: Api) -> None:
    sequence = await approval_sequence(api.pool)
    # the approved text is sent at once only inside the window: a zone where it is morning now
    contact = await consenting_contact(api.pool, time_zone=await morning_zone(api.env))
    name = (await api.enroll(contact, sequence)).name
    await api.awaiting_approval(name)
    for _ in range(2):  # a double click
        await api.decide(name, 0, pb.APPROVAL_ACTION_APPROVE, request_id="slack-action-1")
    after = await api.sent(name)
    assert sum("step 0 approve" in line for line in after.history) == 1, after.history
    assert [m[0] for m in await sent_messages(api.pool)] == [0]
    # a new request is a new decision: refused now that nothing is pending
    assert await precondition(api.decide(name, 0, request_id="slack-action-2")) == (
        "NO_PENDING_APPROVAL"
    )

    for _ in range(2):
        await api.pause(name, request_id="pause-1")
    assert await precondition(api.pause(name, request_id="pause-2")) == "ALREADY_PAUSED"
    assert sum(line.endswith(" paused") for line in (await api.get(name)).history) == 1


# -- Permissions ----------------------------------------------------------------------------------


async def test_location_staff_may_steer_and_decide_but_not_enroll(api: Api) -> None:
    sequence = await approval_sequence(api.pool)
    # the approved text is sent at once only inside the window: a zone where it is morning now
    contact = await consenting_contact(api.pool, time_zone=await morning_zone(api.env))
    other = await consenting_contact(api.pool, "+12125550149")
    err = await refused(api.enroll(contact, sequence, who="a_downtown_staff"))
    assert err.code == grpc.StatusCode.PERMISSION_DENIED, err
    bulk = await api.bulk([(other, sequence)], who="a_downtown_staff")
    assert [r.error_code for r in bulk.results] == ["PERMISSION_DENIED"] and bulk.refused == 1
    assert not (await api.list()).enrollments

    name = (await api.enroll(contact, sequence, who="a_downtown_manager")).name
    await api.awaiting_approval(name)
    staff = "a_downtown_staff"
    assert (await api.get(name, who=staff)).pending_approval_step == 0
    assert [e.name for e in (await api.list(who=staff)).enrollments] == [name]
    await api.pause(name, who=staff)
    await api.resume(name, who=staff)
    await api.decide(name, 0, pb.APPROVAL_ACTION_APPROVE, who=staff)
    after = await api.sent(name)
    assert any("approve by api_key:" in line and "staff" in line for line in after.history), (
        after.history
    )
    await api.cancel(name, who=staff)

    uptown_contact = await consenting_contact(api.pool, "+13105550150", location=A_UPTOWN)
    uptown = (await api.enroll(uptown_contact, sequence)).name
    for call in (api.get(uptown, who=staff), api.pause(uptown, who=staff)):
        assert (await refused(call)).code == grpc.StatusCode.PERMISSION_DENIED
    err = await refused(api.list(who=staff, parent=A_UPTOWN.name))
    assert err.code == grpc.StatusCode.PERMISSION_DENIED


async def test_a_franchisor_viewer_may_read_but_not_steer(api: Api) -> None:
    sequence = await approval_sequence(api.pool)
    contact = await consenting_contact(api.pool)
    other = await consenting_contact(api.pool, "+12125550149")
    name = (await api.enroll(contact, sequence)).name
    await api.awaiting_approval(name)
    viewer = "a_viewer"
    assert (await api.get(name, who=viewer)).pending_approval_step == 0
    assert [e.name for e in (await api.list(who=viewer)).enrollments] == [name]
    for call in (
        api.pause(name, who=viewer),
        api.resume(name, who=viewer),
        api.cancel(name, who=viewer),
        api.decide(name, 0, who=viewer),
        api.enroll(other, sequence, who=viewer),
    ):
        assert (await refused(call)).code == grpc.StatusCode.PERMISSION_DENIED
    after = await api.get(name)
    assert after.status == pb.ENROLLMENT_STATUS_AWAITING_APPROVAL
    assert after.pending_approval_step == 0 and not any("paused" in h for h in after.history)


@pytest.mark.parametrize("who", ["b_admin", "b_harbor_manager"])
async def test_another_franchisor_is_denied_everything_whether_or_not_it_exists(
    api: Api, who: str
) -> None:
    sequence = await long_sequence(api.pool)
    contact = await consenting_contact(api.pool)
    other = await consenting_contact(api.pool, "+12125550149")
    name = (await api.enroll(contact, sequence)).name
    for target in (name, NOWHERE):
        for call in (
            api.get(target, who=who),
            api.pause(target, who=who),
            api.resume(target, who=who),
            api.cancel(target, who=who),
            api.decide(target, 0, who=who),
        ):
            err = await refused(call)
            assert err.code == grpc.StatusCode.PERMISSION_DENIED, (target, err)
    for call in (
        api.list(who=who),
        api.enroll(other, sequence, who=who),
        api.enroll(f"{DOWNTOWN}/contacts/cnothere", sequence, who=who),
    ):
        assert (await refused(call)).code == grpc.StatusCode.PERMISSION_DENIED
    bulk = await api.bulk([(other, sequence)], who=who)
    assert [r.error_code for r in bulk.results] == ["PERMISSION_DENIED"]
    # nothing changed for acme
    assert (await api.get(name)).status == pb.ENROLLMENT_STATUS_ACTIVE
    assert [e.name for e in (await api.list()).enrollments] == [name]
    err = await refused(api.get(NOWHERE))
    assert err.code == grpc.StatusCode.NOT_FOUND


async def test_a_pending_approval_is_shown_with_its_deadline_even_before_the_read_model_has_it(
    pool: AsyncConnectionPool[Any],
) -> None:
    # The workflow answers its query as soon as it waits for a decision; the read model gets the
    # deadline from an activity a moment later. GetEnrollment must not pair the live pending step
    # with the record's stale (empty) wake time: that race made the approvals CLI test flaky.
    from server.grpc.enrollment_service import EnrollmentService
    from tenants.core.names import TenantScope
    from tenants.core.vocabulary import EnrollmentStatus
    from tenants.enrollment.records import Enrollment
    from workflows.enrollment_types import EnrollmentState

    deadline = datetime(2026, 12, 2, 21, 41, tzinfo=UTC)

    class LiveWorkflows:
        async def state(self, workflow_id: str) -> EnrollmentState:
            return EnrollmentState(
                "awaiting_approval", 0, deadline.isoformat(), "", 0, "Hi Dana", []
            )

    scope = TenantScope("acme", "downtown")
    record = Enrollment(
        ChildName(scope, "enrollments", "e1"),
        "wf",
        "run",
        ChildName(scope, "contacts", "c1"),
        ChildName(scope, "sequences", "s1"),
        1,
        None,  # type: ignore[arg-type]
        EnrollmentStatus.ACTIVE,
        "",
        0,
        None,
        deadline - timedelta(days=1),
        None,
    )
    service = EnrollmentService(pool, LiveWorkflows())  # type: ignore[arg-type]
    shown = await service._live(record)
    assert shown.pending_approval_step == 0
    assert shown.next_wake_time.ToDatetime(UTC) == deadline
