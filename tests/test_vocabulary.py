"""The workflow vocabulary: outcomes, verdicts and statuses are enums, each word its own type,
and on the wire (Temporal payloads, protos) they are the same strings as before, so recorded
histories and running enrollments read them unchanged."""

from __future__ import annotations

import json
from typing import Any

import pytest
from temporalio import activity, workflow
from temporalio.converter import DataConverter

from reengage.v1 import enrollments_pb2, sequences_pb2
from server.cli import approvals as approvals_cli
from server.grpc import enrollment_service, sequence_service
from tenants.core.vocabulary import EnrollmentStatus, ExitReason
from tenants.sequences.model import ExitEvent
from tenants.sequences.planning import Outcome
from tenants.sequences.simulation import PlannedOutcome
from workflows.enrollment import EnrollmentWorkflow
from workflows.enrollment_activities import EnrollmentActivities
from workflows.enrollment_types import (
    ApprovalAction,
    Decision,
    EnrollmentInput,
    EnrollmentState,
    Prepared,
    SendOutcome,
    SendStepResult,
    StepPlan,
    Transition,
)
from workflows.scan import InactivityScanWorkflow, SteerSequenceWorkflow
from workflows.scan_activities import ScanActivities
from workflows.scan_types import SteerAction, SteerInput

CONVERTER = DataConverter.default.payload_converter


def on_the_wire(value: object) -> Any:
    [payload] = CONVERTER.to_payloads([value])
    return json.loads(payload.data)


def read_back(value: object, as_type: type) -> Any:
    [decoded] = CONVERTER.from_payloads(CONVERTER.to_payloads([value]), [as_type])
    return decoded


def test_skipping_a_step_and_a_person_skipping_it_are_different_words() -> None:
    step_skipped, person_skipped = Outcome.SKIP, ApprovalAction.SKIP
    assert type(step_skipped) is not type(person_skipped)
    assert step_skipped is not person_skipped  # the same text on the wire, not the same meaning
    assert step_skipped.value == person_skipped.value == "skip"


def test_the_enums_keep_their_wire_values() -> None:
    assert [o.value for o in Outcome] == ["send", "defer", "skip", "block"]
    assert [r.value for r in SendStepResult] == ["sent", "defer", "skip", "block"]
    assert [a.value for a in ApprovalAction] == ["approve", "edit", "skip"]
    assert [o.value for o in PlannedOutcome] == ["send", "send_after_approval", "skip", "block"]
    assert [a.value for a in SteerAction] == ["pause", "resume"]
    assert [s.value for s in EnrollmentStatus] == [
        "active",
        "paused",
        "awaiting_approval",
        "completed",
        "exited",
    ]
    assert {r.value for r in ExitReason} >= {
        "replied",
        "opted_out",
        "clicked",
        "purchased",
        "appointment_completed",
        "no_consent",
        "undeliverable",
        "preempted",
        "cancelled",
        "start_failed",
        "start_conflict",
    }


def test_temporal_payloads_carry_the_enums_as_plain_strings() -> None:
    assert on_the_wire(Prepared(Outcome.DEFER, "2025-01-01T10:00:00+00:00"))["outcome"] == "defer"
    assert on_the_wire(SendOutcome(SendStepResult.SENT, message_id=7))["outcome"] == "sent"
    assert on_the_wire(Decision(0, ApprovalAction.EDIT, "new text"))["action"] == "edit"
    assert on_the_wire(Transition("e1", EnrollmentStatus.AWAITING_APPROVAL, 0))["status"] == (
        "awaiting_approval"
    )
    started = EnrollmentInput("e1", "f", "l", "s", [StepPlan(0, False)], [ExitEvent.REPLY])
    assert on_the_wire(started)["exit_events"] == ["reply"]
    assert on_the_wire(SteerInput("sequences/s", SteerAction.PAUSE, "r"))["action"] == "pause"


def test_payloads_written_as_strings_read_back_as_the_enums() -> None:
    """What an older worker recorded (plain strings) decodes into the members."""
    prepared = read_back({"outcome": "block", "reasons": ["opted_out"]}, Prepared)
    assert prepared.outcome is Outcome.BLOCK
    assert read_back({"outcome": "skip", "reason": "x"}, SendOutcome).outcome is SendStepResult.SKIP
    decision = read_back({"step_index": 1, "action": "skip"}, Decision)
    assert decision.action is ApprovalAction.SKIP
    state = read_back(
        {
            "status": "paused",
            "step_index": 0,
            "next_wake": "",
            "exit_reason": "",
            "pending_approval_step": -1,
            "pending_text": "",
            "history": [],
        },
        EnrollmentState,
    )
    assert state.status is EnrollmentStatus.PAUSED
    started = read_back(
        {
            "enrollment_id": "e1",
            "franchisor_id": "f",
            "location_id": "l",
            "sequence_id": "s",
            "steps": [],
            "exit_events": ["reply", "opt_out"],
        },
        EnrollmentInput,
    )
    assert started.exit_events == [ExitEvent.REPLY, ExitEvent.OPT_OUT]
    assert all(type(e) is ExitEvent for e in started.exit_events)


def test_an_unknown_verdict_does_not_decode() -> None:
    with pytest.raises(Exception, match="field action"):
        read_back({"step_index": 0, "action": "maybe"}, Decision)


def test_activity_and_update_names_stay_those_the_histories_recorded() -> None:
    enrollment = {
        activity._Definition.must_from_callable(f).name
        for f in (
            EnrollmentActivities.due_time,
            EnrollmentActivities.prepare_step,
            EnrollmentActivities.send_step,
            EnrollmentActivities.record_transition,
            EnrollmentActivities.notify_approval,
        )
    }
    assert enrollment == {
        "due_time",
        "prepare_step",
        "send_step",
        "record_transition",
        "notify_approval",
    }
    scan = {
        activity._Definition.must_from_callable(f).name
        for f in (
            ScanActivities.plan_inactivity_scan,
            ScanActivities.scan_inactivity_page,
            ScanActivities.steer_sequence_batch,
        )
    }
    assert scan == {"plan_inactivity_scan", "scan_inactivity_page", "steer_sequence_batch"}
    defn = workflow._Definition.must_from_class(EnrollmentWorkflow)
    assert defn.name == "Enrollment"
    assert {"pause", "resume", "cancel", "decide_approval"} <= set(defn.updates)
    assert {"inbound_reply", "opted_out", "undeliverable", "activity_event"} <= set(defn.signals)
    assert workflow._Definition.must_from_class(InactivityScanWorkflow).name == "InactivityScan"
    assert workflow._Definition.must_from_class(SteerSequenceWorkflow).name == "SteerSequence"


def test_every_word_has_its_proto_value() -> None:
    assert enrollment_service.ACTIONS == {
        enrollments_pb2.APPROVAL_ACTION_APPROVE: ApprovalAction.APPROVE,
        enrollments_pb2.APPROVAL_ACTION_EDIT: ApprovalAction.EDIT,
        enrollments_pb2.APPROVAL_ACTION_SKIP: ApprovalAction.SKIP,
    }
    assert approvals_cli.ACTIONS == {v: k for k, v in enrollment_service.ACTIONS.items()}
    assert sequence_service.OUTCOME_TO_PB == {
        PlannedOutcome.SEND: sequences_pb2.PLANNED_OUTCOME_SEND,
        PlannedOutcome.SEND_AFTER_APPROVAL: sequences_pb2.PLANNED_OUTCOME_SEND_AFTER_APPROVAL,
        PlannedOutcome.SKIP: sequences_pb2.PLANNED_OUTCOME_SKIP,
        PlannedOutcome.BLOCK: sequences_pb2.PLANNED_OUTCOME_BLOCK,
    }
