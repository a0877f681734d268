"""`reengage worker` SIGKILLed again and again while texts go out: every due step is still sent
exactly once (the ledger row is committed before the carrier is called, and the outbox carrier
delivers a message id at most once)."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import psutil
import pytest
from psycopg_pool import AsyncConnectionPool
from temporalio.testing import WorkflowEnvironment

from tenants.compliance.send_rules import Recipient, allowed_at
from tenants.compliance.zones import infer_zone
from tenants.core.names import ChildName
from tenants.enrollment.records import Enrollment
from tenants.org import locations
from tenants.sequences.model import Step
from tests.enrollment_support import brand_template, consenting_contact, make_sequence
from tests.support import A_DOWNTOWN, OPERATOR, World
from workflows.client import EnrollmentClient
from workflows.enrolling import enroll

pytestmark = pytest.mark.e2e
REENGAGE = str(Path(sys.executable).parent / "reengage")
CONTACTS = 40
STEPS = 2
MIN_KILLS = 3
MAX_KILLS = 6  # more kills only while none has caught a reserved, unconfirmed send
# per sender number (all contacts share downtown's one): a burst of 40 due steps takes 2 s to
# leave, so a kill finds ledger rows reserved and not yet confirmed by the carrier
SENDS_PER_SECOND = 20
# Seconds the last worker gets to finish every enrollment. An activity that dies with its
# worker is retried when its heartbeat (send_step, 15 s) or start-to-close timeout (the other
# activities, 30 s) runs out; completion was observed ~33 s after the last restart.
COMPLETION_TIMEOUT = 90.0
READY_LINE = "worker polling task queue"
# Zones tried for the contacts, named ones first; the Etc zones cover every whole-hour offset,
# so one of them always has a local time inside the send window.
NAMED_ZONES = (
    "America/New_York",
    "America/Chicago",
    "America/Denver",
    "America/Los_Angeles",
    "Pacific/Honolulu",
    "Europe/London",
    "Europe/Berlin",
    "Asia/Kolkata",
    "Asia/Tokyo",
    "Australia/Sydney",
    "Pacific/Auckland",
)
ETC_ZONES = tuple(f"Etc/GMT{offset:+d}" for offset in range(-14, 13))


def phone(i: int) -> str:
    return f"+1212201{i:04d}"  # New York numbers: no state rule narrows the window


@dataclass
class WorkerProcess:
    process: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def ready(self) -> bool:
        return READY_LINE in self.output()

    def exited(self) -> bool:
        return self.process.poll() is not None

    def kill(self) -> None:
        """SIGKILL to the process, its process group and every descendant: no clean-up."""
        try:
            family = psutil.Process(self.process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            family = []
        try:
            os.killpg(self.process.pid, signal.SIGKILL)  # started in its own session
        except ProcessLookupError:
            pass
        for child in family:
            try:
                child.kill()
            except psutil.NoSuchProcess:
                pass
        self.process.wait(30)


StartWorker = Callable[[], WorkerProcess]


@pytest.fixture
def worker_env(database_url: str, dev_env: WorkflowEnvironment, tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REENGAGE_")}
    env.update(
        REENGAGE_DATABASE_URL=database_url,
        REENGAGE_TEMPORAL_ADDRESS=dev_env.client.service_client.config.target_host,
        REENGAGE_TASK_QUEUE=f"crash-{uuid.uuid4().hex[:8]}",
        REENGAGE_CARRIER="outbox",
        REENGAGE_SENDS_PER_SECOND=str(SENDS_PER_SECOND),
        REENGAGE_DATA_DIR=str(tmp_path / ".reengage"),
        REENGAGE_LOG_LEVEL="INFO",
    )
    return env


@pytest.fixture
def start_worker(worker_env: dict[str, str], tmp_path: Path) -> Iterator[StartWorker]:
    started: list[WorkerProcess] = []

    def start() -> WorkerProcess:
        log = tmp_path / f"worker-{len(started)}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [REENGAGE, "worker"],
                env=worker_env,
                cwd=tmp_path,
                stdout=out,
                stderr=out,
                start_new_session=True,  # its own process group, killed as a whole
            )
        worker = WorkerProcess(proc, log)
        started.append(worker)
        return worker

    try:
        yield start
    finally:
        for worker in started:
            worker.kill()


async def wait_ready(worker: WorkerProcess, within: float = 60) -> None:
    deadline = time.monotonic() + within
    while not worker.ready():
        if worker.exited():
            raise AssertionError(f"the worker exited while starting:\n{worker.output()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"the worker did not poll within {within}s:\n{worker.output()}")
        await asyncio.sleep(0.05)


async def open_zone(pool: AsyncConnectionPool[Any]) -> str:
    """Widens downtown's window to 08:00-21:00 and returns a zone where a text to our contacts
    is allowed now and for the next half hour (local hour 10..18 preferred)."""
    async with pool.connection() as conn:
        location = await locations.update_location(
            conn,
            OPERATOR,
            A_DOWNTOWN,
            locations.LocationInput(send_window=locations.SendWindowInput("08:00", "21:00")),
            ["send_window"],
            "",
        )
    now = datetime.now(UTC)

    def open_for_a_while(zone: str) -> bool:
        states = infer_zone(phone(0), explicit_zone=zone, location_zone=location.time_zone).states
        recipient = Recipient((zone,), states)
        return all(
            allowed_at(recipient, location.send_window, now + timedelta(minutes=m))[0]
            for m in (0, 5, 10, 20, 30)
        )

    candidates = (*NAMED_ZONES, *ETC_ZONES)
    preferred = [z for z in candidates if 10 <= now.astimezone(ZoneInfo(z)).hour <= 18]
    for zone in [*preferred, *candidates]:
        if open_for_a_while(zone):
            return zone
    raise AssertionError(f"no zone has an open send window at {now.isoformat()}")


async def ledger(pool: AsyncConnectionPool[Any]) -> tuple[Counter[str], int]:
    """The outbound messages by status, and the outbox deliveries."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT status, count(*) FROM messages WHERE direction = 'outbound' GROUP BY status"
        )
        statuses = Counter({status: n for status, n in await cur.fetchall()})
        cur = await conn.execute("SELECT count(*) FROM outbox_deliveries")
        row = await cur.fetchone()
    assert row is not None
    return statuses, row[0]


async def read_model(pool: AsyncConnectionPool[Any], ids: list[str]) -> Counter[str]:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT status, count(*) FROM enrollments WHERE id = ANY(%s) GROUP BY status", (ids,)
        )
        return Counter({status: n for status, n in await cur.fetchall()})


async def send_in_flight(
    pool: AsyncConnectionPool[Any], within: float = 60
) -> tuple[Counter[str], int]:
    """The ledger as soon as a row is reserved ('sending') and not yet confirmed."""
    deadline = time.monotonic() + within
    while not (seen := await ledger(pool))[0]["sending"]:
        assert time.monotonic() < deadline, f"no send was in flight within {within}s"
        await asyncio.sleep(0.005)
    return seen


@dataclass(frozen=True)
class Kill:
    after: float  # seconds after the worker began polling (the first: after the first send)
    statuses: Counter[str]  # the outbound ledger at the kill
    deliveries: int

    @property
    def caught_a_send(self) -> bool:
        """A ledger row was reserved (sending) but not confirmed when the worker died."""
        return self.statuses["sending"] > 0


async def stuck(
    pool: AsyncConnectionPool[Any], env: WorkflowEnvironment, enrollments: list[Enrollment]
) -> str:
    """What each unfinished enrollment waits for: its row, its messages, its pending
    activities and the workflow's own account."""
    lines = []
    async with pool.connection() as conn:
        for e in enrollments:
            cur = await conn.execute(
                "SELECT status, current_step, next_wake_at FROM enrollments WHERE id = %s",
                (e.id,),
            )
            row = await cur.fetchone()
            if row is None or row[0] == "completed":
                continue
            cur = await conn.execute(
                "SELECT id, step_index, status, create_time, status_time FROM messages"
                " WHERE enrollment_id = %s ORDER BY id",
                (e.id,),
            )
            messages = await cur.fetchall()
            handle = env.client.get_workflow_handle(e.workflow_id, run_id=e.run_id)
            described = await handle.describe()
            pending = [
                f"{a.activity_type.name} attempt {a.attempt} state {a.state}"
                f" started {a.last_started_time.ToDatetime().isoformat()}"
                f" by {a.last_worker_identity}"
                for a in described.raw_description.pending_activities
            ]
            lines.append(
                f"{e.id}: row {row}, messages {messages}, workflow {described.status},"
                f" pending {pending}"
            )
    return "\n".join(lines)


def tails(workers: list[WorkerProcess], lines: int = 30) -> str:
    return "\n".join(
        f"--- {w.log.name}:\n" + "\n".join(w.output().splitlines()[-lines:]) for w in workers
    )


async def test_sigkilled_workers_send_every_due_step_exactly_once(
    dev_env: WorkflowEnvironment,
    pool: AsyncConnectionPool[Any],
    world: World,
    worker_env: dict[str, str],
    start_worker: StartWorker,
) -> None:
    began = time.monotonic()
    rng = random.Random()
    zone = await open_zone(pool)
    template = await brand_template(pool)
    sequence = await make_sequence(pool, [Step(template, 0), Step(template, 5)])
    contacts: list[ChildName] = [
        await consenting_contact(pool, phone=phone(i), first_name=f"C{i}", time_zone=zone)
        for i in range(CONTACTS)
    ]
    workflows = EnrollmentClient(dev_env.client, worker_env["REENGAGE_TASK_QUEUE"])

    async def enroll_all() -> list[Enrollment]:
        enrolled = []
        async with pool.connection() as conn:
            for contact in contacts:
                enrollment, created = await enroll(conn, workflows, OPERATOR, contact, sequence)
                assert created, contact.name
                enrolled.append(enrollment)
        return enrolled

    workers = [start_worker()]
    await wait_ready(workers[-1])
    enrolling = asyncio.create_task(enroll_all())  # the API path, while the worker sends
    kills: list[Kill] = []
    try:
        while len(kills) < MIN_KILLS or (
            len(kills) < MAX_KILLS and not any(k.caught_a_send for k in kills)
        ):
            polling = time.monotonic()
            if not kills:  # the first kill lands the moment a reserved send is unconfirmed
                statuses, deliveries = await send_in_flight(pool)
            else:
                await asyncio.sleep(rng.uniform(0.3, 1.5))
                statuses, deliveries = await ledger(pool)
            assert not workers[-1].exited(), tails(workers)
            workers[-1].kill()
            kills.append(Kill(time.monotonic() - polling, statuses, deliveries))
            workers.append(start_worker())
            await wait_ready(workers[-1])
        enrollments = await enrolling
    finally:
        if not enrolling.done():
            enrolling.cancel()
    last_restart = time.monotonic()
    ids = [e.id for e in enrollments]

    deadline = last_restart + COMPLETION_TIMEOUT
    while (states := await read_model(pool, ids))["completed"] < CONTACTS:
        assert not workers[-1].exited(), f"the last worker exited:\n{tails(workers)}"
        if time.monotonic() > deadline:
            statuses, deliveries = await ledger(pool)
            raise AssertionError(
                f"after {COMPLETION_TIMEOUT:.0f}s: enrollments {dict(states)}, messages"
                f" {dict(statuses)}, deliveries {deliveries}, kills {kills}\n"
                f"{await stuck(pool, dev_env, enrollments)}\n{tails(workers)}"
            )
        await asyncio.sleep(0.5)
    finished = time.monotonic()

    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT id, enrollment_id, step_index, idempotency_key, status FROM messages"
            " WHERE direction = 'outbound' ORDER BY id"
        )
        messages = await cur.fetchall()
        cur = await conn.execute("SELECT message_id FROM outbox_deliveries ORDER BY message_id")
        delivered = [r[0] for r in await cur.fetchall()]

    print(
        f"\n{len(kills)} kills; total {finished - began:.1f}s (completion took"
        f" {finished - last_restart:.1f}s after the last restart); zone {zone}"
    )
    for n, kill in enumerate(kills, 1):
        print(
            f"  kill {n} after {kill.after:.2f}s: messages {dict(kill.statuses)},"
            f" deliveries {kill.deliveries}"
        )

    assert len(kills) >= MIN_KILLS
    assert any(k.caught_a_send for k in kills), f"no kill caught a send in flight: {kills}"
    assert len(messages) == CONTACTS * STEPS, Counter(m[1] for m in messages)
    per_enrollment = Counter(m[1] for m in messages)
    assert set(per_enrollment) == set(ids)
    assert set(per_enrollment.values()) == {STEPS}
    assert {(m[1], m[2]) for m in messages} == {(e, s) for e in ids for s in range(STEPS)}
    keys = [m[3] for m in messages]
    assert len(set(keys)) == len(keys)
    assert set(keys) == {f"{m[1]}:{m[2]}" for m in messages}
    statuses = Counter(m[4] for m in messages)
    assert not statuses["sending"] and not statuses["unknown"], statuses
    assert statuses == Counter({"sent": CONTACTS * STEPS}), statuses
    assert len(delivered) == len(messages)
    assert delivered == [m[0] for m in messages]
