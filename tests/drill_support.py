"""The failure drills' shared parts (tests/test_drill_*.py, docs/drills.md).

* `Roles`: the platform's processes, `reengage serve` and `reengage worker`, each on free ports
  (gRPC, HTTP, metrics) with a data dir of its own, in its own process group; every one is
  SIGKILLed in teardown (the `roles` fixture), a drill kills one (`Role.kill`) when it wants.
* `TwilioSide`: what Twilio does in a drill: contacts' texts as signed inbound webhooks,
  delivered to a serve replica again until one answers 200 (Twilio retries a 5xx), and a
  status callback for every message the fake carrier created (tests.fake_twilio).
* The counts every drill asserts: each due step sent exactly once, seen from the carrier (every
  POST the fake recorded, mapped to its ledger row by the `?m=` of its StatusCallback URL) and
  from the ledger (one outbound row per enrollment and step); replies recorded once; how the
  enrollments ended.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import psutil
import pytest
from psycopg_pool import AsyncConnectionPool
from temporalio.client import Client
from twilio.request_validator import RequestValidator

from server.embedded import free_port
from server.http.sms import INBOUND_PATH
from tenants.core.names import ChildName
from tenants.enrollment.records import Enrollment
from tests.fake_twilio import FakeTwilio
from tests.support import OPERATOR
from tests.test_worker_crash import open_zone, phone
from workflows.client import EnrollmentClient
from workflows.enrolling import enroll

__all__ = ["open_zone", "phone"]  # tests.test_worker_crash's: a zone whose window is open now

REENGAGE = str(Path(sys.executable).parent / "reengage")
PUBLIC_URL = "https://reengage.example"  # REENGAGE_PUBLIC_URL: the URL Twilio signs
SENDER = "+12125550101"  # acme/downtown's one sender number (tests.support.build_world)
ACCOUNT = "AC" + "0" * 32
READY_LINES = {"serve": "serving: gRPC", "worker": "worker polling task queue"}


def platform_env(
    *,
    database_url: str,
    temporal_address: str,
    twilio: FakeTwilio,
    sends_per_second: float,
    task_queue: str = "",
    **extra: str,
) -> dict[str, str]:
    """What every process of a drill shares: the engines, one task queue, the Twilio carrier
    against the fake, the pace, webhooks to loopback allowed (the drills' receiver), no
    schedules (nothing but the drill runs)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("REENGAGE_")}
    env.update(
        REENGAGE_DATABASE_URL=database_url,
        REENGAGE_TEMPORAL_ADDRESS=temporal_address,
        REENGAGE_TASK_QUEUE=task_queue or f"drill-{uuid.uuid4().hex[:8]}",
        REENGAGE_PUBLIC_URL=PUBLIC_URL,
        REENGAGE_SENDS_PER_SECOND=str(sends_per_second),
        REENGAGE_SCAN_INTERVAL_MINUTES="0",
        REENGAGE_DIGEST_SCHEDULE="0",
        REENGAGE_WEBHOOKS_ALLOW_PRIVATE="1",
        REENGAGE_WEBHOOKS_ALLOW_HTTP="1",
        REENGAGE_LOG_LEVEL="INFO",
    )
    env.update(
        REENGAGE_CARRIER="twilio",
        TWILIO_ACCOUNT_SID=twilio.account_sid,
        TWILIO_AUTH_TOKEN=twilio.auth_token,  # also what the inbound webhooks are signed with
        TWILIO_API_BASE=twilio.base_url,
    )
    env.update(extra)
    return env


@dataclass
class Role:
    """One `reengage serve` or `reengage worker` process."""

    kind: str  # serve | worker
    name: str
    env: dict[str, str]
    log: Path
    process: subprocess.Popen[bytes]

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.env['REENGAGE_HTTP_PORT']}"

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def ready(self) -> bool:
        return READY_LINES[self.kind] in self.output()

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

    def sent_from(self, port: int) -> bool:
        """Whether a TCP connection from this local port is this process's."""
        try:
            connections = psutil.Process(self.process.pid).net_connections(kind="tcp")
        except psutil.Error:
            return False
        return any(c.laddr and c.laddr.port == port for c in connections)

    def counts(self, *phrases: str) -> dict[str, int]:
        """How many lines of this process's log hold each phrase."""
        lines = self.output().splitlines()
        return {phrase: sum(phrase in line for line in lines) for phrase in phrases}

    async def wait_ready(self, within: float = 120) -> None:
        deadline = time.monotonic() + within
        while not self.ready():
            if self.exited():
                raise AssertionError(f"{self.name} exited while starting:\n{self.output()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name} not ready within {within}s:\n{self.output()}")
            await asyncio.sleep(0.1)


class Roles:
    """The processes a drill starts, from one shared environment (`platform_env`)."""

    def __init__(self, tmp_path: Path) -> None:
        self._tmp = tmp_path
        self.started: list[Role] = []
        self.env: dict[str, str] = {}

    def start(self, kind: str, name: str = "", **extra: str) -> Role:
        assert self.env, "set roles.env (platform_env) first"
        name = name or f"{kind}-{len(self.started)}"
        env = dict(self.env)
        env.update(
            REENGAGE_GRPC_PORT=str(free_port()),
            REENGAGE_HTTP_PORT=str(free_port()),
            REENGAGE_METRICS_PORT=str(free_port()),
            REENGAGE_DATA_DIR=str(self._tmp / name),
            **extra,
        )
        log = self._tmp / f"{name}.log"
        with open(log, "wb") as out:
            process = subprocess.Popen(
                [REENGAGE, kind],
                env=env,
                cwd=self._tmp,
                stdout=out,
                stderr=out,
                start_new_session=True,  # its own process group, killed as a whole
            )
        role = Role(kind, name, env, log, process)
        self.started.append(role)
        return role

    def running(self) -> list[Role]:
        return [r for r in self.started if not r.exited()]

    def tails(self, lines: int = 40) -> str:
        return "\n".join(
            f"--- {r.name} ({'exited ' + str(r.process.returncode) if r.exited() else 'running'}):"
            "\n" + "\n".join(r.output().splitlines()[-lines:])
            for r in self.started
        )

    def kill_all(self) -> None:
        for role in self.started:
            role.kill()


@pytest.fixture
def roles(tmp_path: Path) -> Iterator[Roles]:
    started = Roles(tmp_path)
    try:
        yield started
    finally:
        started.kill_all()


def inbound_form(sender: str, body: str, to: str = SENDER) -> dict[str, str]:
    """A contact's text as Twilio posts it (a fresh MessageSid)."""
    return {
        "MessageSid": "SM" + uuid.uuid4().hex,
        "AccountSid": ACCOUNT,
        "From": sender,
        "To": to,
        "Body": body,
        "NumMedia": "0",
        "NumSegments": "1",
    }


@dataclass
class Delivery:
    """One webhook as Twilio keeps delivering it: every answer it got, in order (0: no answer,
    the connection failed or timed out)."""

    form: dict[str, str]
    answers: list[int] = field(default_factory=list)

    @property
    def sid(self) -> str:
        return self.form["MessageSid"]

    @property
    def recorded(self) -> bool:
        return 200 in self.answers


class TwilioSide:
    """Twilio's half of a drill, signing with the auth token the processes have as
    TWILIO_AUTH_TOKEN (the fake's, when they send through it)."""

    def __init__(
        self, fake: FakeTwilio | None = None, timeout: float = 15.0, auth_token: str = ""
    ) -> None:
        self.fake = fake
        self.auth_token = auth_token or (fake.auth_token if fake else "")
        assert self.auth_token, "a token to sign with"
        # Twilio gives a webhook 15 s before it counts it as failed
        self.http = httpx.AsyncClient(timeout=timeout)

    async def aclose(self) -> None:
        await self.http.aclose()

    def _signature(self, public_path: str, form: dict[str, str]) -> str:
        url = PUBLIC_URL + public_path
        return str(RequestValidator(self.auth_token).compute_signature(url, form))

    async def post(self, base: str, public_path: str, form: dict[str, str]) -> int:
        """One delivery to a replica at `base`: its answer's status, 0 for none."""
        try:
            answer = await self.http.post(
                base + public_path,
                data=form,
                headers={"X-Twilio-Signature": self._signature(public_path, form)},
            )
        except httpx.HTTPError:
            return 0
        return answer.status_code

    async def deliver(self, base: str, delivery: Delivery) -> int:
        answer = await self.post(base, INBOUND_PATH, delivery.form)
        delivery.answers.append(answer)
        return answer

    async def deliver_until_recorded(
        self,
        bases: Sequence[str],
        deliveries: Sequence[Delivery],
        within: float,
        every: float = 1.0,
    ) -> None:
        """Delivers each webhook again (round-robin over the replicas) until one answers 200,
        as Twilio retries a 5xx; fails after `within` seconds."""
        deadline = time.monotonic() + within
        turn = 0
        while pending := [d for d in deliveries if not d.recorded]:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{len(pending)} webhooks still not answered 200 after {within}s:"
                    f" {[d.answers for d in pending]}"
                )
            answers = await asyncio.gather(
                *(self.deliver(bases[(turn + i) % len(bases)], d) for i, d in enumerate(pending))
            )
            turn += 1
            if any(a != 200 for a in answers):
                await asyncio.sleep(every)

    async def status_callbacks(self, bases: Sequence[str], status: str = "delivered") -> int:
        """The status callback Twilio sends for every message the fake created (to its
        StatusCallback URL, on our public host), spread over the replicas: how many were
        answered 200."""
        assert self.fake is not None, "status callbacks come from the fake carrier"
        answered = 0
        for i, message in enumerate(self.fake.created):
            callback = urlsplit(message.status_callback)
            path = callback.path + (f"?{callback.query}" if callback.query else "")
            form = {
                "MessageSid": message.sid,
                "MessageStatus": status,
                "AccountSid": self.fake.account_sid,
                "From": message.from_,
                "To": message.to,
            }
            if await self.post(bases[i % len(bases)], path, form) == 200:
                answered += 1
        return answered


def ledger_id(message_status_callback: str) -> int | None:
    """The ledger row a POST to the carrier was for (its StatusCallback's `?m=`)."""
    values = parse_qs(urlsplit(message_status_callback).query).get("m", [])
    return int(values[0]) if values and values[0].isdigit() else None


@dataclass(frozen=True)
class Outbound:
    id: int
    enrollment_id: str
    step: int
    status: str
    to_number: str


async def outbound(pool: AsyncConnectionPool[Any]) -> list[Outbound]:
    """Every outbound ledger row of a step (service texts have no enrollment)."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT id, enrollment_id, step_index, status, to_number FROM messages"
            " WHERE direction = 'outbound' AND enrollment_id IS NOT NULL ORDER BY id"
        )
        return [Outbound(*row) for row in await cur.fetchall()]


async def enrollment_states(
    pool: AsyncConnectionPool[Any], ids: Sequence[str]
) -> dict[str, tuple[str, str]]:
    """Each enrollment's (status, exit reason) in the read model."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT id, status, exit_reason FROM enrollments WHERE id = ANY(%s)", (list(ids),)
        )
        return {row[0]: (row[1], row[2]) for row in await cur.fetchall()}


async def inbound_recorded(pool: AsyncConnectionPool[Any], sids: Sequence[str]) -> Counter[str]:
    """How many inbound ledger rows each carrier message id has."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT carrier_message_id FROM inbound_messages WHERE carrier_message_id = ANY(%s)",
            (list(sids),),
        )
        return Counter(row[0] for row in await cur.fetchall())


@dataclass(frozen=True)
class Sends:
    """Every due step as the carrier and the ledger saw it."""

    rows: list[Outbound]
    posts: Counter[int]  # ledger id -> POSTs that created a message for it
    strays: int  # POSTs that created a message for no ledger row

    @property
    def duplicates(self) -> int:
        """Texts beyond one per step: a ledger row POSTed twice, or a step with two rows."""
        per_step = Counter((r.enrollment_id, r.step) for r in self.rows)
        return sum(n - 1 for n in self.posts.values() if n > 1) + sum(
            n - 1 for n in per_step.values() if n > 1
        )

    def lost(self, expected: set[tuple[str, int]]) -> set[tuple[str, int]]:
        """The expected (enrollment, step) pairs the carrier never received."""
        received = {(r.enrollment_id, r.step) for r in self.rows if self.posts[r.id]}
        return expected - received

    def summary(self) -> str:
        return (
            f"{len(self.rows)} ledger rows {dict(Counter(r.status for r in self.rows))},"
            f" {sum(self.posts.values())} carrier POSTs, {self.duplicates} duplicates,"
            f" {self.strays} strays"
        )


async def sends(pool: AsyncConnectionPool[Any], fake: FakeTwilio) -> Sends:
    posts: Counter[int] = Counter()
    strays = 0
    for message in fake.created:
        found = ledger_id(message.status_callback)
        if found is None:
            strays += 1
        else:
            posts[found] += 1
    rows = await outbound(pool)
    known = {r.id for r in rows}
    strays += sum(n for m, n in posts.items() if m not in known)
    return Sends(rows, posts, strays)


def closest_gaps(times: Sequence[datetime], count: int = 3) -> list[float]:
    """The `count` shortest gaps (seconds) between consecutive sends."""
    gaps = sorted((b - a).total_seconds() for a, b in itertools.pairwise(times))
    return gaps[:count]


async def enroll_all(
    pool: AsyncConnectionPool[Any],
    workflows: EnrollmentClient,
    contacts: Sequence[ChildName],
    sequence: ChildName,
) -> list[Enrollment]:
    """Enrolls every contact (as the operator), all of them new."""
    enrolled = []
    async with pool.connection() as conn:
        for contact in contacts:
            enrollment, created = await enroll(conn, workflows, OPERATOR, contact, sequence)
            assert created, contact.name
            enrolled.append(enrollment)
    return enrolled


async def wait_for(
    what: str, check: Any, within: float, *, every: float = 0.25, explain: Any = None
) -> Any:
    """Awaits check() until truthy (returned); after `within` seconds fails with `what` and,
    when given, what explain() says (the processes' logs)."""
    deadline = time.monotonic() + within
    while True:
        found = await check()
        if found:
            return found
        if time.monotonic() > deadline:
            detail = explain() if explain is not None else ""
            raise AssertionError(f"not within {within:.0f}s: {what}\n{detail}")
        await asyncio.sleep(every)


@dataclass
class HealthWatch:
    """GET /healthz of a serve replica every `every` seconds, in the background: what it
    answered and when (seconds on the monotonic clock)."""

    url: str
    every: float = 0.5
    seen: list[tuple[float, int, str]] = field(default_factory=list)
    _task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._watch())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _watch(self) -> None:
        async with httpx.AsyncClient(timeout=10) as http:
            while True:
                try:
                    answer = await http.get(self.url + "/healthz")
                    status = str(answer.json().get("status", ""))
                    self.seen.append((time.monotonic(), answer.status_code, status))
                except (httpx.HTTPError, ValueError):
                    self.seen.append((time.monotonic(), 0, "no answer"))
                await asyncio.sleep(self.every)

    def between(self, start: float, end: float) -> list[tuple[float, int, str]]:
        return [s for s in self.seen if start <= s[0] <= end]


async def step_attempts(client: Client, enrollments: Sequence[Enrollment]) -> Counter[int]:
    """How many attempts the enrollments' steps took: {attempts: local activities}, read from
    the markers their workflows' histories record for each completed local activity."""
    attempts: Counter[int] = Counter()
    for enrollment in enrollments:
        handle = client.get_workflow_handle(enrollment.workflow_id, run_id=enrollment.run_id)
        history = await handle.fetch_history()
        for event in history.events:
            if not event.HasField("marker_recorded_event_attributes"):
                continue
            details = event.marker_recorded_event_attributes.details
            if "data" in details and details["data"].payloads:
                marker = json.loads(details["data"].payloads[0].data)
                attempts[int(marker.get("attempt", 1))] += 1
    return attempts
