"""Inputs and outputs of the inactivity scan and the sequence steering workflows (plain
dataclasses: Temporal's default converter serialises them)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

# Activity names: the one spelling `@activity.defn` (scan_activities) and the workflows
# (scan) share; the workflows cannot import the activities' module (it imports the client,
# which starts these workflows).
PLAN_INACTIVITY_SCAN = "plan_inactivity_scan"
SCAN_INACTIVITY_PAGE = "scan_inactivity_page"
STEER_SEQUENCE_BATCH = "steer_sequence_batch"


class SteerAction(StrEnum):
    """What SteerSequence does to every running enrollment of a sequence."""

    PAUSE = "pause"
    RESUME = "resume"


@dataclass
class ScanTarget:
    sequence: str
    franchisor_id: str
    location_id: str
    days: int
    signals: list[str]
    priority: int


@dataclass
class ScanPlan:
    targets: list[ScanTarget]
    started_at: str  # ISO: the instant the cutoffs count from, fixed for the whole scan


@dataclass
class ScanInput:
    """Empty to start a scan; continue-as-new carries the plan and the position."""

    plan: ScanPlan | None = None
    target_index: int = 0
    after_at: str = ""
    after_id: str = ""
    enrolled: int = 0
    refused: int = 0
    pages: int = 0
    runs: int = 1
    page_size: int = 200
    history_limit: int = 2000  # events before continuing as new


@dataclass
class PageRequest:
    target: ScanTarget
    started_at: str
    after_at: str
    after_id: str
    limit: int


@dataclass
class PageResult:
    enrolled: int
    refused: int
    after_at: str = ""
    after_id: str = ""
    done: bool = True  # no further page for this target
    cap_reached: bool = False  # the location's daily cap: the rest waits for tomorrow
    refusals: dict[str, int] = field(default_factory=dict)


@dataclass
class ScanSummary:
    targets: int
    pages: int
    enrolled: int
    refused: int
    runs: int  # this scan's runs (1 + continue-as-new)


@dataclass
class SteerInput:
    """Pause or resume every running enrollment of a sequence, in batches."""

    sequence: str
    action: SteerAction
    request_id: str  # one per PauseSequence/ActivateSequence call: the updates' id prefix
    after_id: str = ""
    steered: int = 0
    batch: int = 50


@dataclass
class SteerBatch:
    sequence: str
    action: SteerAction
    request_id: str
    after_id: str
    limit: int


@dataclass
class SteerResult:
    steered: int
    after_id: str
    done: bool
