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
from tenants.core.names import parse_child, parse_location
from tenants.core.pagination import page_request
from tenants.core.vocabulary import EnrollmentStatus
from tenants.enrollment import records as enrollments
from tenants.enrollment.records import Enrollment
from tenants.org.access import Action, authorize
from tenants.sequences.model import COLLECTION as SEQUENCES
from workflows.client import EnrollmentClient, UpdateRefused
from workflows.enrolling import enroll
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


class EnrollmentService(enrollments_pb2_grpc.EnrollmentServiceServicer):
    def __init__(self, pool: AsyncConnectionPool[Any], workflows: EnrollmentClient) -> None:
        self._pool = pool
        self._workflows = workflows

    async def _enroll(self, contact: str, sequence: str) -> tuple[Enrollment, bool]:
        contact_name = parse_child(contact, CONTACTS, "contact")
        sequence_name = parse_child(sequence, SEQUENCES, "sequence")
        if not contact_name.scope.is_location:
            raise InvalidArgument([FieldViolation("contact", "contacts live at locations")])
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
        # up to BULK_IN_FLIGHT contacts at once; the results keep the order of the requests
        # (tasks copy the RPC's context, so they act for the same caller)
        gate = asyncio.Semaphore(BULK_IN_FLIGHT)

        async def one(request: pb.BulkEnrollRequest) -> pb.BulkEnrollResult:
            result = pb.BulkEnrollResult(contact=request.contact)
            try:
                request_checks.check(request)  # left to us by the interceptor: per item
                enrollment, created = await self._enroll(request.contact, request.sequence)
            except DomainError as exc:
                result.error_code = to_status(exc).code.name
                result.error_reason = exc.reason
                result.error_message = exc.message
            else:
                result.enrollment = enrollment.name.name
                result.created = created
            finally:
                gate.release()
            return result

        tasks: list[asyncio.Task[pb.BulkEnrollResult]] = []
        try:
            async for request in request_iterator:
                await gate.acquire()  # reading waits while BULK_IN_FLIGHT are in flight
                tasks.append(asyncio.create_task(one(request)))
            results = await asyncio.gather(*tasks)
        finally:
            # A call that fails (an undecodable message mid-stream, an unexpected error, the
            # client gone) answers only once the enrollments it started have finished: none goes
            # on after its failure was answered, and none fails unobserved. Enrolling is
            # idempotent, so the caller's retry finds those done.
            await asyncio.gather(*tasks, return_exceptions=True)
        answer = pb.BulkEnrollResponse(results=results)
        for result in answer.results:
            if result.error_code:
                answer.refused += 1
            elif result.created:
                answer.enrolled += 1
            else:
                answer.already_enrolled += 1
        return answer

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
        self, name_text: str, update: Callable[[str], Awaitable[str]]
    ) -> pb.Enrollment:
        """Runs `update` (one of the workflow facade's updates, given the workflow id) on a
        running enrollment the caller may steer; the enrollment as it is afterwards."""
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
            return await self._live(await enrollments.get_enrollment(conn, principal(), name))

    async def PauseEnrollment(
        self, request: pb.PauseEnrollmentRequest, context: grpc.aio.ServicerContext
    ) -> pb.Enrollment:
        return await self._steer(
            request.name, lambda workflow_id: self._workflows.pause(workflow_id, request.request_id)
        )

    async def ResumeEnrollment(
        self, request: pb.ResumeEnrollmentRequest, context: grpc.aio.ServicerContext
    ) -> pb.Enrollment:
        return await self._steer(
            request.name,
            lambda workflow_id: self._workflows.resume(workflow_id, request.request_id),
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
        )
