"""reengage.v1.EnrollmentService: a thin translator between protobuf, the entry rules and the
workflow facade."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from typing import Any

import grpc
from psycopg_pool import AsyncConnectionPool

from reengage.v1 import enrollments_pb2 as pb
from reengage.v1 import enrollments_pb2_grpc
from server.grpc import request_checks
from server.grpc.auth import principal
from server.grpc.converters import PB_TO_STATUS, STATUS_TO_PB, timestamp
from server.grpc.errors import to_status
from tenants.contacts.model import COLLECTION as CONTACTS
from tenants.content.bodies import check_edited_text
from tenants.core.errors import DomainError, FailedPrecondition, FieldViolation, InvalidArgument
from tenants.core.names import ChildName, TenantScope, parse_child, parse_location
from tenants.core.pagination import page_request
from tenants.core.vocabulary import EnrollmentStatus
from tenants.enrollment import records as enrollments
from tenants.enrollment.records import Enrollment
from tenants.org import audit
from tenants.org.access import Action, authorize
from tenants.sequences.model import COLLECTION as SEQUENCES
from workflows.client import EnrollmentClient, UpdateRefused
from workflows.enrolling import enroll, enroll_many
from workflows.enrollment_types import ApprovalAction, Decision

BULK_IN_FLIGHT = 16
ACTIONS = {pb.ApprovalAction.Value(f"APPROVAL_ACTION_{a.name}"): a for a in ApprovalAction}


def enrollment_pb(e: Enrollment) -> pb.Enrollment:
    return pb.Enrollment(
        name=e.name.name,
        contact=e.contact.name,
        sequence=e.sequence.name,
        status=STATUS_TO_PB[e.status],
        exit_reason=e.exit_reason,
        current_step=e.current_step,
        next_wake_time=timestamp(e.next_wake_at),
        enroll_time=timestamp(e.enrolled_at),
        end_time=timestamp(e.ended_at),
        pending_approval_step=-1,
        history=e.history or (),
    )


def _names(contact: str, sequence: str) -> tuple[ChildName, ChildName]:
    contact_name = parse_child(contact, CONTACTS, "contact")
    sequence_name = parse_child(sequence, SEQUENCES, "sequence")
    if not contact_name.scope.is_location:
        raise InvalidArgument([FieldViolation("contact", "contacts live at locations")])
    return contact_name, sequence_name


def _refused(result: pb.BulkEnrollResult, exc: DomainError) -> None:
    result.error_code = to_status(exc).code.name
    result.error_reason = exc.reason
    result.error_message = exc.message


class EnrollmentService(enrollments_pb2_grpc.EnrollmentServiceServicer):
    def __init__(self, pool: AsyncConnectionPool[Any], workflows: EnrollmentClient) -> None:
        self._pool = pool
        self._workflows = workflows

    async def _enroll(self, contact: str, sequence: str) -> tuple[Enrollment, bool]:
        contact_name, sequence_name = _names(contact, sequence)
        async with self._pool.connection() as conn:
            return await enroll(conn, self._workflows, principal(), contact_name, sequence_name)

    async def Enroll(
        self, request: pb.EnrollRequest, context: grpc.aio.ServicerContext
    ) -> pb.Enrollment:
        enrollment, _ = await self._enroll(request.contact, request.sequence)
        return enrollment_pb(enrollment)

    async def BulkEnroll(
        self,
        request_iterator: AsyncIterator[pb.BulkEnrollRequest],
        context: grpc.aio.ServicerContext,
    ) -> pb.BulkEnrollResponse:
        # A batch is what the stream has delivered (up to BULK_IN_FLIGHT requests: a fast
        # stream fills it, a slow one is not held up); a batch's contacts of one location and
        # sequence are enrolled set-wise (workflows.enrolling.enroll_many), and while one
        # batch's workflows start the next batch's facts and rows are read and written. At
        # most BULK_IN_FLIGHT workflow starts are in flight; the results keep the order of the
        # requests (tasks copy the RPC's context, so they act for the same caller).
        starts = asyncio.Semaphore(BULK_IN_FLIGHT)
        batches = asyncio.Semaphore(2)
        arrived: asyncio.Queue[pb.BulkEnrollRequest | None] = asyncio.Queue(BULK_IN_FLIGHT)
        results: list[pb.BulkEnrollResult] = []

        async def read() -> None:
            try:
                async for request in request_iterator:
                    await arrived.put(request)
            finally:
                await arrived.put(None)  # the end (or the stream's failure, raised by reader)

        async def run(
            batch: list[pb.BulkEnrollResult], requests: list[pb.BulkEnrollRequest]
        ) -> None:
            try:
                await self._enroll_batch(batch, requests, starts)
            finally:
                batches.release()

        reader = asyncio.create_task(read())
        tasks: list[asyncio.Task[None]] = []
        try:
            ended = False
            while not ended:
                requests: list[pb.BulkEnrollRequest] = []
                item = await arrived.get()
                while item is not None:
                    requests.append(item)
                    if len(requests) == BULK_IN_FLIGHT or arrived.empty():
                        break
                    item = arrived.get_nowait()
                ended = item is None
                if requests:
                    batch = [pb.BulkEnrollResult(contact=r.contact) for r in requests]
                    results += batch
                    await batches.acquire()  # reading waits while two batches are in flight
                    tasks.append(asyncio.create_task(run(batch, requests)))
            await reader  # raises what the stream raised (an undecodable message)
            await asyncio.gather(*tasks)
        finally:
            # A call that fails (an undecodable message mid-stream, an unexpected error, the
            # client gone) answers only once the enrollments it started have finished: none goes
            # on after its failure was answered, and none fails unobserved. Enrolling is
            # idempotent, so the caller's retry finds those done.
            reader.cancel()
            await asyncio.gather(reader, *tasks, return_exceptions=True)
        answer = pb.BulkEnrollResponse(results=results)
        for result in answer.results:
            if result.error_code:
                answer.refused += 1
            elif result.created:
                answer.enrolled += 1
            else:
                answer.already_enrolled += 1
        return answer

    async def _enroll_batch(
        self,
        results: list[pb.BulkEnrollResult],
        requests: list[pb.BulkEnrollRequest],
        starts: asyncio.Semaphore,
    ) -> None:
        """Fills results (one per request): the contacts of each location and sequence
        enrolled together."""
        groups: dict[tuple[TenantScope, str], list[tuple[pb.BulkEnrollResult, ChildName]]] = {}
        for result, request in zip(results, requests, strict=True):
            try:
                request_checks.check(request)  # left to us by the interceptor: per item
                contact, sequence = _names(request.contact, request.sequence)
            except DomainError as exc:
                _refused(result, exc)
                continue
            groups.setdefault((contact.scope, sequence.name), []).append((result, contact))
        for (_, sequence_name), members in groups.items():
            sequence = parse_child(sequence_name, SEQUENCES, "sequence")
            async with self._pool.connection() as conn:
                answers = await enroll_many(
                    conn, self._workflows, principal(), [c for _, c in members], sequence, starts
                )
            for (result, _), enrolled in zip(members, answers, strict=True):
                if isinstance(enrolled, DomainError):
                    _refused(result, enrolled)
                else:
                    result.enrollment = enrolled[0].name.name
                    result.created = enrolled[1]

    async def GetEnrollment(
        self, request: pb.GetEnrollmentRequest, context: grpc.aio.ServicerContext
    ) -> pb.Enrollment:
        name = parse_child(request.name, enrollments.COLLECTION)
        async with self._pool.connection() as conn:
            found = await enrollments.get_enrollment(conn, principal(), name)
        return await self._live(found)

    async def _live(self, found: Enrollment) -> pb.Enrollment:
        """The record, overlaid with the workflow's live state while it runs. An ended one
        answers with its kept history; one ended before histories were kept (or by a worker
        that did not send it) asks its closed run, while Temporal retains it."""
        answer = enrollment_pb(found)
        if not found.running:
            if found.history is None and found.run_id:
                try:
                    closed = await self._workflows.state(found.workflow_id, found.run_id)
                except Exception:  # the record answers without it
                    return answer
                answer.history.extend(closed.history)
            return answer
        try:
            state = await self._workflows.state(found.workflow_id)
        except Exception:  # the record answers when the live state is unavailable
            return answer
        answer.status = STATUS_TO_PB[state.status]
        answer.exit_reason = state.exit_reason
        # The read model's wake time is written by an activity after the workflow moved on:
        # the live state's is the one that goes with the live step and pending approval.
        answer.ClearField("next_wake_time")
        if state.next_wake and state.status in (
            EnrollmentStatus.ACTIVE,
            EnrollmentStatus.AWAITING_APPROVAL,
        ):
            answer.next_wake_time.CopyFrom(timestamp(datetime.fromisoformat(state.next_wake)))
        answer.pending_approval_step = state.pending_approval_step
        answer.pending_text = state.pending_text
        answer.history.extend(state.history)
        answer.current_step = state.step_index
        return answer

    async def ListEnrollments(
        self, request: pb.ListEnrollmentsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListEnrollmentsResponse:
        location = parse_location(request.parent, "parent")
        contact = parse_child(request.contact, CONTACTS, "contact") if request.contact else None
        if contact is not None and contact.scope != location:
            raise InvalidArgument(
                [FieldViolation("contact", f"is not a contact of {location.name}")]
            )
        where = enrollments.EnrollmentFilter(
            status=PB_TO_STATUS.get(request.status),
            sequence=parse_child(request.sequence, SEQUENCES, "sequence")
            if request.sequence
            else None,
            contact=contact.id if contact is not None else None,
        )
        page = page_request(
            f"{location.name}/enrollments?{where}", request.page_size, request.page_token
        )
        async with self._pool.connection() as conn:
            found, token = await enrollments.list_enrollments(
                conn, principal(), location, page, where
            )
        return pb.ListEnrollmentsResponse(
            enrollments=[enrollment_pb(e) for e in found], next_page_token=token
        )

    async def _steer(
        self,
        name_text: str,
        update: Callable[[str], Awaitable[str]],
        verb: str,
        request_id: str,
        **details: Any,
    ) -> pb.Enrollment:
        """Runs `update` (one of the workflow facade's updates, given the workflow id) on a
        running enrollment the caller may steer, audits it as `enrollment.{verb}` (as Slack and
        the dashboard do, `via="api"`); the enrollment as it is afterwards."""
        name = parse_child(name_text, enrollments.COLLECTION)
        authorize(principal(), Action.ENROLLMENT_STEER, name.scope)
        async with self._pool.connection() as conn:
            found = await enrollments.get_enrollment(conn, principal(), name)
        if not found.running:
            raise FailedPrecondition(f"{name.name} has ended", reason="ENDED")
        try:
            await update(found.workflow_id)
        except UpdateRefused as exc:
            raise FailedPrecondition(exc.message, reason=exc.reason) from None
        async with self._pool.connection() as conn:
            # a retried request (the same request_id) decides once and is audited each time,
            # with the request id that tells the retries apart from new decisions
            await audit.record(
                conn,
                principal(),
                f"enrollment.{verb}",
                name.name,
                name.scope.franchisor_id,
                via="api",
                request_id=request_id,
                **details,
            )
            return await self._live(await enrollments.get_enrollment(conn, principal(), name))

    async def PauseEnrollment(
        self, request: pb.PauseEnrollmentRequest, context: grpc.aio.ServicerContext
    ) -> pb.Enrollment:
        return await self._steer(
            request.name,
            lambda workflow_id: self._workflows.pause(workflow_id, request.request_id),
            "pause",
            request.request_id,
        )

    async def ResumeEnrollment(
        self, request: pb.ResumeEnrollmentRequest, context: grpc.aio.ServicerContext
    ) -> pb.Enrollment:
        return await self._steer(
            request.name,
            lambda workflow_id: self._workflows.resume(workflow_id, request.request_id),
            "resume",
            request.request_id,
        )

    async def CancelEnrollment(
        self, request: pb.CancelEnrollmentRequest, context: grpc.aio.ServicerContext
    ) -> pb.Enrollment:
        if len(request.reason) > 200:
            raise InvalidArgument([FieldViolation("reason", "is longer than 200 characters")])
        reason = request.reason or "cancelled over the API"
        return await self._steer(
            request.name,
            lambda workflow_id: self._workflows.cancel(workflow_id, reason, request.request_id),
            "cancel",
            request.request_id,
            reason=reason,
        )

    async def DecideApproval(
        self, request: pb.DecideApprovalRequest, context: grpc.aio.ServicerContext
    ) -> pb.Enrollment:
        action = ACTIONS.get(request.action)
        if action is None:
            raise InvalidArgument([FieldViolation("action", "APPROVE, EDIT or SKIP")])
        if action is ApprovalAction.EDIT:
            check_edited_text(request.text, "text")  # a sendable text, sent as written
        decision = Decision(request.step_index, action, request.text, principal().label)
        return await self._steer(
            request.name,
            lambda workflow_id: self._workflows.decide_approval(
                workflow_id, decision, request.request_id
            ),
            action.value,
            request.request_id,
            step=request.step_index,
        )
