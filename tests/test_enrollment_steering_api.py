"""reengage.v1.EnrollmentService over real gRPC, continued: pause, resume, cancel and approval
decisions, and who may do which (location staff steer, viewers read, other franchisors are
denied whether or not the enrollment exists)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
from psycopg_pool import AsyncConnectionPool
from temporalio.testing import WorkflowEnvironment

from reengage.v1 import enrollments_pb2 as pb
from reengage.v1 import enrollments_pb2_grpc
from server.grpc.enrollment_service import EnrollmentService
from tenants.core.names import ChildName
from tests.enrollment_service_support import (
    DOWNTOWN,
    NOWHERE,
    SHORTENED,
    Api,
    approval_sequence,
    long_sequence,
    precondition,
    refused,
    terminate_all,
    workflow_closed,
)
from tests.enrollment_support import (
    consenting_contact,
    enrollment_server,
    morning_zone,
    running_worker,
    sent_messages,
)
from tests.support import A_UPTOWN, World


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


async def test_each_steering_call_over_the_api_is_audited_and_a_refused_one_is_not(
    api: Api,
) -> None:
    sequence = await approval_sequence(api.pool)
    contact = await consenting_contact(api.pool)
    name = (await api.enroll(contact, sequence)).name
    await api.awaiting_approval(name)

    async def audited() -> list[tuple[str, str, str, str, Any]]:
        async with api.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT action, principal, franchisor_id, details->>'via', details FROM audit_log"
                " WHERE resource = %s ORDER BY id",
                (name,),
            )
            return [tuple(r) for r in await cur.fetchall()]  # type: ignore[misc]

    await api.decide(name, 0, pb.APPROVAL_ACTION_SKIP, who="a_downtown_manager", request_id="d-1")
    await api.eventually(name, lambda e: e.current_step == 1)
    await api.pause(name, request_id="p-1")
    await api.resume(name, request_id="r-1")
    await api.cancel(name, reason="moved away", request_id="c-1")
    assert await precondition(api.pause(name)) == "ENDED"  # refused: not audited

    found = await audited()
    assert [(a, f, via) for a, _, f, via, _ in found] == [
        ("enrollment.create", "acme", None),
        ("enrollment.skip", "acme", "api"),
        ("enrollment.pause", "acme", "api"),
        ("enrollment.resume", "acme", "api"),
        ("enrollment.cancel", "acme", "api"),
    ]
    _, skip, pause, _, cancel = found
    assert skip[4]["step"] == 0 and skip[4]["request_id"] == "d-1"
    assert pause[4]["request_id"] == "p-1"
    assert cancel[4]["reason"] == "moved away"
    assert skip[1] != pause[1]  # who decided: the manager's key, then the admin's
