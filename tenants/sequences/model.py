"""What a sequence is: its steps (wait, template, approval, skip conditions), entry triggers,
exit events, caps and priority, and the stored sequence with its state. The rules that validate a
definition and its storage are in `tenants.sequences.definitions`."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from tenants.compliance.send_window import SendWindow
from tenants.core.names import ChildName

COLLECTION = "sequences"


MAX_STEPS = 20


DAY = 86_400


MAX_WAIT = 366 * DAY


MAX_PRIORITY = 1000


MAX_COOLDOWN = 3650 * DAY


class WaitFrom(StrEnum):
    PREVIOUS_STEP = "previous_step"
    ENROLLMENT = "enrollment"


class ExitEvent(StrEnum):
    REPLY = "reply"
    OPT_OUT = "opt_out"
    CLICK = "click"
    PURCHASE = "purchase"
    APPOINTMENT = "appointment"


ALWAYS_EXIT = (ExitEvent.REPLY, ExitEvent.OPT_OUT)


ENGAGEMENT_SIGNALS = frozenset({"reply", "click", "purchase"})


class SequenceState(StrEnum):
    ACTIVE = "active"
    PAUSED = "paused"
    ARCHIVED = "archived"


@dataclass(frozen=True)
class Step:
    template: str  # a template's resource name
    wait_seconds: int = 0
    wait_from: WaitFrom = WaitFrom.PREVIOUS_STEP
    require_approval: bool = False
    # skip the step when the contact had an activity of one of these kinds since enrollment
    skip_if_activity_since_enrollment: tuple[str, ...] = ()


@dataclass(frozen=True)
class EntryTrigger:
    """How contacts enter automatically: "manual" (only Enroll), "inactivity" (no engagement
    signal for inactivity_days) or "activity" (an activity of activity_kind)."""

    kind: str = "manual"
    inactivity_days: int = 0
    signals: tuple[str, ...] = ()
    activity_kind: str = ""


@dataclass(frozen=True)
class FrequencyCap:
    max_messages: int
    period_seconds: int


@dataclass(frozen=True)
class Definition:
    steps: tuple[Step, ...]
    exit_events: tuple[ExitEvent, ...] = ALWAYS_EXIT
    entry: EntryTrigger = field(default_factory=EntryTrigger)
    priority: int = 0
    cooldown_seconds: int = 0
    send_window: SendWindow | None = None  # None: the location's window
    frequency_cap: FrequencyCap | None = None
    # end a running enrollment of lower priority to enroll here (else: refuse the entry)
    interrupt_lower_priority: bool = False

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Definition:
        window = data.get("send_window")
        cap = data.get("frequency_cap")
        return cls(
            steps=tuple(
                Step(
                    s["template"],
                    s["wait_seconds"],
                    WaitFrom(s["wait_from"]),
                    s["require_approval"],
                    tuple(s["skip_if_activity_since_enrollment"]),
                )
                for s in data["steps"]
            ),
            exit_events=tuple(ExitEvent(e) for e in data["exit_events"]),
            entry=EntryTrigger(
                data["entry"]["kind"],
                data["entry"]["inactivity_days"],
                tuple(data["entry"]["signals"]),
                data["entry"]["activity_kind"],
            ),
            priority=data["priority"],
            cooldown_seconds=data["cooldown_seconds"],
            send_window=(
                SendWindow(window["start_minute"], window["end_minute"], tuple(window["days"]))
                if window
                else None
            ),
            frequency_cap=FrequencyCap(**cap) if cap else None,
            interrupt_lower_priority=bool(data.get("interrupt_lower_priority", False)),
        )


@dataclass(frozen=True)
class Sequence:
    name: ChildName
    display_name: str
    definition: Definition
    state: SequenceState
    create_time: datetime
    update_time: datetime
    version: int
    # what the author should know (e.g. the first text gets the brand and opt-out line added);
    # filled by create, update and get, not by list
    warnings: tuple[str, ...] = ()

    @property
    def etag(self) -> str:
        return f'"{self.version}"'
