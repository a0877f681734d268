"""reengage.v1.SequenceService: a thin translator between protobuf and
`tenants.sequences.definitions`."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import grpc
from google.protobuf import duration_pb2
from psycopg_pool import AsyncConnectionPool

from reengage.v1 import sequences_pb2 as pb
from reengage.v1 import sequences_pb2_grpc, templates_pb2, tenants_pb2
from server.grpc.auth import principal
from server.grpc.converters import ENCODING_TO_PB, PB_TO_SCOPE, require, timestamp
from tenants.compliance.send_rules import rules_version
from tenants.compliance.send_window import SendWindow
from tenants.content.previews import SampleContact
from tenants.core.errors import FieldViolation, InvalidArgument
from tenants.core.languages import language_problem
from tenants.core.names import parse_child, parse_location, parse_scope
from tenants.core.pagination import page_request
from tenants.org.listing import ListScope
from tenants.sequences import definitions as sequences
from tenants.sequences import simulation
from tenants.sequences.model import (
    COLLECTION,
    Definition,
    EntryTrigger,
    ExitEvent,
    FrequencyCap,
    Sequence,
    SequenceState,
    Step,
    WaitFrom,
)
from workflows.client import EnrollmentClient
from workflows.scan_types import SteerAction

EXIT_TO_PB = {e: pb.ExitEvent.Value(f"EXIT_EVENT_{e.name}") for e in ExitEvent}
PB_TO_EXIT = {v: k for k, v in EXIT_TO_PB.items()}
SIGNAL_TO_PB = {
    "reply": pb.ENGAGEMENT_SIGNAL_REPLY,
    "click": pb.ENGAGEMENT_SIGNAL_CLICK,
    "purchase": pb.ENGAGEMENT_SIGNAL_PURCHASE,
}
PB_TO_SIGNAL = {v: k for k, v in SIGNAL_TO_PB.items()}
STATE_TO_PB = {s: pb.SequenceState.Value(f"SEQUENCE_STATE_{s.name}") for s in SequenceState}
OUTCOME_TO_PB = {
    o: pb.PlannedOutcome.Value(f"PLANNED_OUTCOME_{o.name}") for o in simulation.PlannedOutcome
}


def seconds(d: duration_pb2.Duration) -> int:
    return int(d.seconds)


def duration(value: int) -> duration_pb2.Duration:
    return duration_pb2.Duration(seconds=value)


def definition_input(m: pb.Sequence) -> Definition:
    """The definition as sent; nonsense that cannot be represented is INVALID_ARGUMENT here,
    the rules are checked by tenants.sequences.definitions."""
    problems: list[FieldViolation] = []
    steps = []
    for i, s in enumerate(m.steps):
        if s.wait.nanos or s.wait.seconds < 0:
            problems.append(FieldViolation(f"sequence.steps[{i}].wait", "whole, positive seconds"))
        steps.append(
            Step(
                template=s.template,
                wait_seconds=seconds(s.wait),
                wait_from=WaitFrom.ENROLLMENT
                if s.wait_from == pb.WAIT_FROM_ENROLLMENT
                else WaitFrom.PREVIOUS_STEP,
                require_approval=s.require_approval,
                skip_if_activity_since_enrollment=tuple(s.skip_if_activity_since_enrollment),
            )
        )
    exits = []
    for e in m.exit_events:
        if e not in PB_TO_EXIT:
            problems.append(FieldViolation("sequence.exit_events", f"unknown exit event {e}"))
        else:
            exits.append(PB_TO_EXIT[e])
    trigger = m.entry_trigger
    which = trigger.WhichOneof("trigger")
    if which == "inactivity":
        signals = [PB_TO_SIGNAL.get(x, "") for x in trigger.inactivity.signals]
        entry = EntryTrigger("inactivity", trigger.inactivity.days, tuple(x for x in signals if x))
        if "" in signals:
            problems.append(
                FieldViolation(
                    "sequence.entry_trigger.inactivity.signals", "REPLY, CLICK or PURCHASE"
                )
            )
    elif which == "activity_kind":
        entry = EntryTrigger("activity", activity_kind=trigger.activity_kind)
    else:
        entry = EntryTrigger()
    window = None
    if m.HasField("send_window"):
        try:
            window = SendWindow.parse(
                m.send_window.start_time,
                m.send_window.end_time,
                [int(d) for d in m.send_window.days],
                "sequence.send_window",
            )
        except InvalidArgument as exc:
            problems.extend(exc.violations)
    cap = None
    if m.HasField("frequency_cap"):
        cap = FrequencyCap(m.frequency_cap.max_messages, seconds(m.frequency_cap.period))
    if problems:
        raise InvalidArgument(problems)
    return Definition(
        steps=tuple(steps),
        exit_events=tuple(exits),
        entry=entry,
        priority=m.priority,
        cooldown_seconds=seconds(m.cooldown),
        send_window=window,
        frequency_cap=cap,
        interrupt_lower_priority=m.interrupt_lower_priority,
    )


def sequence_pb(s: Sequence) -> pb.Sequence:
    d = s.definition
    trigger = pb.EntryTrigger()
    if d.entry.kind == "inactivity":
        trigger.inactivity.CopyFrom(
            pb.InactivityTrigger(
                days=d.entry.inactivity_days, signals=[SIGNAL_TO_PB[x] for x in d.entry.signals]
            )
        )
    elif d.entry.kind == "activity":
        trigger.activity_kind = d.entry.activity_kind
    w = d.send_window
    return pb.Sequence(
        name=s.name.name,
        display_name=s.display_name,
        steps=[
            pb.Step(
                wait=duration(step.wait_seconds),
                wait_from=pb.WAIT_FROM_ENROLLMENT
                if step.wait_from is WaitFrom.ENROLLMENT
                else pb.WAIT_FROM_PREVIOUS_STEP,
                template=step.template,
                require_approval=step.require_approval,
                skip_if_activity_since_enrollment=list(step.skip_if_activity_since_enrollment),
            )
            for step in d.steps
        ],
        exit_events=[EXIT_TO_PB[e] for e in d.exit_events],
        entry_trigger=trigger,
        priority=d.priority,
        cooldown=duration(d.cooldown_seconds),
        send_window=tenants_pb2.SendWindow(
            start_time=w.start_time,
            end_time=w.end_time,
            days=list(w.days),  # ISO weekday numbers are the enum numbers
        )
        if w
        else None,
        frequency_cap=pb.FrequencyCap(
            max_messages=d.frequency_cap.max_messages,
            period=duration(d.frequency_cap.period_seconds),
        )
        if d.frequency_cap
        else None,
        interrupt_lower_priority=d.interrupt_lower_priority,
        state=STATE_TO_PB[s.state],
        create_time=timestamp(s.create_time),
        update_time=timestamp(s.update_time),
        etag=s.etag,
        warnings=list(s.warnings),
    )


class SequenceService(sequences_pb2_grpc.SequenceServiceServicer):
    def __init__(
        self,
        pool: AsyncConnectionPool[Any],
        public_url: str,
        workflows: EnrollmentClient | None = None,
    ) -> None:
        self._pool = pool
        self._workflows = workflows
        self._public_url = public_url

    async def CreateSequence(
        self, request: pb.CreateSequenceRequest, context: grpc.aio.ServicerContext
    ) -> pb.Sequence:
        parent = parse_scope(request.parent, "parent")
        require(request, "sequence")
        async with self._pool.connection() as conn:
            created = await sequences.create_sequence(
                conn,
                principal(),
                parent,
                request.sequence_id,
                request.sequence.display_name,
                definition_input(request.sequence),
            )
        return sequence_pb(created)

    async def GetSequence(
        self, request: pb.GetSequenceRequest, context: grpc.aio.ServicerContext
    ) -> pb.Sequence:
        name = parse_child(request.name, COLLECTION)
        async with self._pool.connection() as conn:
            found = await sequences.get_sequence(conn, principal(), name)
            return sequence_pb(await sequences.with_warnings(conn, found))

    async def ListSequences(
        self, request: pb.ListSequencesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListSequencesResponse:
        parent = parse_scope(request.parent, "parent")
        if request.scope not in PB_TO_SCOPE:
            raise InvalidArgument([FieldViolation("scope", f"unknown scope {request.scope}")])
        scope: ListScope = PB_TO_SCOPE.get(request.scope, ListScope.DEFAULT)
        list_name = f"{parent.name}/sequences?scope={scope}&archived={request.show_archived}"
        page = page_request(list_name, request.page_size, request.page_token)
        async with self._pool.connection() as conn:
            found, token = await sequences.list_sequences(
                conn, principal(), parent, page, scope, request.show_archived
            )
        return pb.ListSequencesResponse(
            sequences=[sequence_pb(s) for s in found], next_page_token=token
        )

    async def UpdateSequence(
        self, request: pb.UpdateSequenceRequest, context: grpc.aio.ServicerContext
    ) -> pb.Sequence:
        require(request, "sequence")
        name = parse_child(request.sequence.name, COLLECTION, "sequence.name")
        async with self._pool.connection() as conn:
            updated = await sequences.update_sequence(
                conn,
                principal(),
                name,
                request.sequence.display_name,
                definition_input(request.sequence),
                list(request.update_mask.paths),
                request.sequence.etag,
            )
        return sequence_pb(updated)

    async def ArchiveSequence(
        self, request: pb.ArchiveSequenceRequest, context: grpc.aio.ServicerContext
    ) -> pb.Sequence:
        name = parse_child(request.name, COLLECTION)
        async with self._pool.connection() as conn:
            return sequence_pb(
                await sequences.archive_sequence(conn, principal(), name, request.etag)
            )

    async def PauseSequence(
        self, request: pb.PauseSequenceRequest, context: grpc.aio.ServicerContext
    ) -> pb.Sequence:
        return await self._set_state(request.name, request.etag, SequenceState.PAUSED)

    async def ActivateSequence(
        self, request: pb.ActivateSequenceRequest, context: grpc.aio.ServicerContext
    ) -> pb.Sequence:
        return await self._set_state(request.name, request.etag, SequenceState.ACTIVE)

    async def _set_state(self, raw_name: str, etag: str, state: SequenceState) -> pb.Sequence:
        """The state changes first (no new enrollments while paused; a step that falls due
        holds), then a workflow pauses or resumes the running enrollments in batches."""
        name = parse_child(raw_name, COLLECTION)
        async with self._pool.connection() as conn:
            sequence, _ = await sequences.set_state(conn, principal(), name, state, etag)
        if self._workflows is not None:
            # also when nothing changed: a retry after a failed start must still steer them
            # (one steering run per state version: a repeated call finds it)
            paused = state is SequenceState.PAUSED
            action = SteerAction.PAUSE if paused else SteerAction.RESUME
            await self._workflows.steer_sequence(name.name, action, f"{action}-v{sequence.version}")
        return sequence_pb(sequence)

    async def SimulateSequence(
        self, request: pb.SimulateSequenceRequest, context: grpc.aio.ServicerContext
    ) -> pb.SimulateSequenceResponse:
        name = parse_child(request.name, COLLECTION)
        contact = None
        described = None
        if request.WhichOneof("subject") == "contact":
            contact = parse_child(request.contact, "contacts", "contact")
        elif request.WhichOneof("subject") == "described_contact":
            d = request.described_contact
            v = d.values
            if d.preferred_language and (problem := language_problem(d.preferred_language)):
                raise InvalidArgument(
                    [FieldViolation("described_contact.preferred_language", problem)]
                )
            described = simulation.DescribedContact(
                d.phone_number,
                d.time_zone,
                d.address_region,
                SampleContact(
                    v.first_name,
                    v.last_name,
                    dict(v.attrs),
                    v.last_purchase_item,
                    v.last_activity_date,
                )
                if d.HasField("values")
                else None,
                d.preferred_language,
            )
        location = parse_location(request.location, "location") if request.location else None
        start = (
            request.start_time.ToDatetime(tzinfo=UTC)
            if request.HasField("start_time")
            else datetime.now(UTC)
        )
        async with self._pool.connection() as conn:
            planned = await simulation.simulate_sequence(
                conn, principal(), name, contact, described, location, start, self._public_url
            )
        return pb.SimulateSequenceResponse(
            steps=[
                pb.PlannedStep(
                    step_index=p.index,
                    due_time=timestamp(p.due),
                    send_time=timestamp(p.send_at),
                    local_send_time=p.local_send_time,
                    time_zones=list(p.zones),
                    outcome=OUTCOME_TO_PB[p.outcome],
                    reasons=list(p.reasons),
                    text=p.text,
                    encoding=ENCODING_TO_PB[p.segments.encoding]
                    if p.segments
                    else templates_pb2.ENCODING_UNSPECIFIED,
                    segment_count=p.segments.segments if p.segments else 0,
                    template_revision=p.template_revision,
                    first_message=p.first_message,
                    language=p.language,
                )
                for p in planned
            ],
            rules_version=rules_version(),
            warnings=[w for p in planned for w in p.warnings],
        )
