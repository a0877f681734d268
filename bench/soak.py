"""Soak (issue 19): a fixed open-loop mix against the platform as production runs it, for
minutes, watching throughput, latency and the memory of every process.

The platform (bench.soak_stack): an embedded PostgreSQL, a Temporal dev server, one `reengage
serve` and one `reengage worker` process, the Twilio carrier against a local fake Twilio. The
seed: a brand with 4 sending locations (a sender number each) and 16 more, consenting contacts
spread over the sending ones (an explicit time zone where the whole run falls inside the send
window, so the texts go out at any hour), a template with a tracked link and a sequence of two
steps (the text at once, a second one 30 days later: an enrollment sleeps until it exits).

The mix, per second at `--rate 1` (each operation on its own fixed schedule, open loop: the
i-th at start + i/rate whatever the answers so far; latency is from that scheduled instant):

    Enroll                      1.0   a fresh contact (gRPC)
    BulkEnroll                  0.2   a stream of 5 fresh contacts (gRPC)
    inbound reply               2.0   signed Twilio webhook from the oldest texted contact that
                                      has not replied yet: its enrollment exits (as many
                                      replies as contacts enrolled, so the number of running
                                      enrollments stays level: a steady state, not a ramp)
    link click                  1.0   GET of a tracked link from a sent text (a browser)
    status callback             4.0   signed Twilio callback, "sent" then "delivered" per text
    GetLocation                 1.0   (gRPC)
    ListLocations               0.5   a page of 50 (gRPC)
    GetLocationReport           0.2   (gRPC)

An operation with nothing to act on yet (no text to reply to, click or call back) is counted
under "no target" and not offered. Each interval (a minute by default) prints per operation:
offered, done, errors, no target, p50/p99 latency (an operation counts as done in the
interval its answer came in), and the memory of every process: the RSS of serve, worker,
postgres (the postmaster and its backends, summed), temporal and the bench itself (the load
generator and the fake Twilio: context, not judged). The sum of PostgreSQL's RSS counts a page
of its shared buffers once per backend that touched it, so it climbs for a long while without
any leak: beside it, "pg private" (what its processes hold of their own) and "pg shared" (the
shared memory in use, each page once: the buffer cache, which fills up to shared_buffers as
the data grows), both summed proportional shares (PSS) from /proc (bench.soak_stack).

At the end: totals; the checks (every contact enrolled got exactly one text at the fake
carrier; the ledger and the carrier agree, message for message; every enrollment that got a
reply exited; no ERROR or traceback in the serve and worker logs; /metrics of serve and worker
answer, or are skipped with a note while no listener exists); and a growth verdict per process
(serve, worker, temporal by RSS, PostgreSQL by "pg private"; the others are context) over the
samples after the warm-up (the first 2 minutes or 20 % of the run, whichever is longer). A
process GROWS when all three hold: the least-squares slope of its memory over those samples is
at least 1 MB/min, the fitted rise over them is at least 5 % of its memory when the warm-up
ended, and the slope over the last half of them is still at least 1 MB/min (a cache that fills
up and levels off is not a trend; a leak keeps its slope). The Temporal dev server keeps
memory for every workflow that ever ran (40-50 KB each without Reengage:
bench/temporal_retention.py), so it grows only when its slope is also at least 100 KB per
enrollment started. Fewer than 4 samples after the warm-up: not judged (a short run cannot
tell).

Exit code 0 when there were no errors, every check passed and no process grows; else 1.
`python -m bench.soak [--minutes 10 | --seconds S] [--rate R] [--interval S] [--warm-up S]`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import re
import sys
import tempfile
import time
import uuid
from collections import Counter, deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import httpx
from psycopg_pool import AsyncConnectionPool
from rich.console import Console
from rich.table import Table
from twilio.request_validator import RequestValidator

from bench.soak_stack import MEASURES, PG_PRIVATE, SoakStack, running_stack
from reengage.v1 import enrollments_pb2 as enrollments_pb
from reengage.v1 import enrollments_pb2_grpc, reports_pb2_grpc, tenants_pb2_grpc
from reengage.v1 import reports_pb2 as reports_pb
from reengage.v1 import tenants_pb2 as tenants_pb
from server.app import open_pool
from server.http.sms import INBOUND_PATH
from tenants.compliance.send_rules import Recipient, allowed_at
from tenants.contacts import contacts
from tenants.contacts.consent import ConsentChannel, ConsentEvidence, ConsentKind, append_events
from tenants.contacts.model import ContactInput, validate
from tenants.content import templates
from tenants.core.names import TenantScope
from tenants.org import api_keys, franchisors, locations
from tenants.org.access import Principal, Role
from tenants.sequences import definitions as sequences
from tenants.sequences.model import Definition, Step

DAY = 86_400
OPERATOR = Principal("soak", "setup", Role.OPERATOR, None)
BRAND = TenantScope("soak")
SENDING_LOCATIONS = 4
QUIET_LOCATIONS = 16
BULK = 5  # contacts per BulkEnroll stream
BODY = (
    "Hi {{contact.first_name|there}}, {{brand.name}} misses you! 20% off this week:"
    " {{link:https://shop.example/welcome-back}} Reply STOP to opt out"
)
REPLY = "Sounds good, see you Saturday"
BROWSER = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15"
    " (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1"
)
EVIDENCE = ConsentEvidence(
    ConsentKind.GRANT,
    ConsentChannel.IMPORT,
    datetime(2026, 1, 5, tzinfo=UTC),
    source="soak.csv",
    disclosure_text="I agree to texts from Soak Brand.",
)
CALL_TIMEOUT = 30.0  # seconds: an answer later than this is an error
SETTLE = 90.0  # seconds after the load for the last texts and exits
# the growth verdict (module doc)
GROWTH_MB_PER_MIN = 1.0
GROWTH_SHARE = 0.05
MIN_JUDGED_SAMPLES = 4
WARM_UP_SHARE = 0.2
WARM_UP_MIN_SECONDS = 120.0
# judged for growth: PostgreSQL by its private memory (bench.soak_stack: the sum of its RSS
# counts shared buffers once per backend, and the buffer cache fills as the data grows); the
# bench (load generator and fake carrier) is context
JUDGED = ("serve", "worker", PG_PRIVATE, "temporal")
# The Temporal dev server keeps memory for every workflow that ran, finished or not: 40-50 KB
# each with trivial workflows and no Reengage at all (bench/temporal_retention.py), linear
# over thousands (it is not what production runs: deploy/ has a Temporal cluster). Its climb
# counts as growth only above this much per enrollment started (about twice that).
TEMPORAL_KB_PER_ENROLLMENT = 100.0
LOG_PROBLEM = re.compile(r"\bERROR\b|\bCRITICAL\b|Traceback \(most recent call last\)")
# zones for the contacts: the first where the whole run falls inside the send window; the Etc
# zones cover every whole-hour offset, so one always does
ZONES = (
    "America/New_York",
    "America/Los_Angeles",
    "Pacific/Honolulu",
    "Europe/London",
    "Asia/Tokyo",
    "Australia/Sydney",
    *(f"Etc/GMT{offset:+d}" for offset in range(-14, 13)),
)


@dataclass(frozen=True)
class Operation:
    key: str
    label: str
    per_second: float  # at --rate 1


MIX = (
    Operation("enroll", "Enroll", 1.0),
    Operation("bulk_enroll", f"BulkEnroll ({BULK} contacts)", 0.2),
    Operation("reply", "inbound reply (webhook)", 2.0),
    Operation("click", "link click (GET /l/…)", 1.0),
    Operation("status", "status callback (webhook)", 4.0),
    Operation("get_location", "GetLocation", 1.0),
    Operation("list_locations", "ListLocations (50)", 0.5),
    Operation("report", "GetLocationReport", 0.2),
)
CONTACTS_PER_SECOND = 1.0 + 0.2 * BULK  # at --rate 1


class SoakError(Exception):
    """An operation's wrong answer (counted as an error)."""


@dataclass
class Stats:
    offered: int = 0
    done: int = 0
    errors: int = 0
    no_target: int = 0
    latencies: list[float] = field(default_factory=list)

    def p(self, q: float) -> float | None:
        """The q-quantile of the latencies in ms (nearest rank), None without any."""
        if not self.latencies:
            return None
        ordered = sorted(self.latencies)
        return 1000 * ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


@dataclass
class Sample:
    """One interval: its end (seconds since the load started), the operations, the memory
    (MB by measure: bench.soak_stack.MEASURES)."""

    at: float
    ops: dict[str, Stats]
    memory: dict[str, float]


@dataclass
class Person:
    phone: str
    name: str  # the contact's resource name
    location: int
    enrollment: str = ""  # the enrollment's id once enrolled
    texted: bool = False
    replied: bool = False


@dataclass
class Seeded:
    token: str
    sequence: str
    locations: list[str]  # resource names, the sending ones first
    senders: list[str]
    people: list[Person]
    zone: str


@dataclass
class Plan:
    seconds: float
    interval: float
    rate: float
    warm_up: float

    @property
    def contacts(self) -> int:
        return math.ceil(self.seconds * CONTACTS_PER_SECOND * self.rate * 1.05) + 2 * BULK


@dataclass
class Check:
    name: str
    passed: bool | None  # None: skipped
    detail: str


@dataclass
class Growth:
    process: str
    start_mb: float
    end_mb: float
    slope: float | None  # MB/min; None: not judged
    rise: float | None  # share of start_mb
    late_slope: float | None  # MB/min over the last half of the judged samples
    grows: bool
    judged: bool
    per_enrollment_kb: float | None = None  # the Temporal dev server's slope per enrollment

    def verdict(self) -> str:
        if self.slope is None or self.rise is None or self.late_slope is None:
            return f"not judged (< {MIN_JUDGED_SAMPLES} samples after the warm-up)"
        climbed = self.slope >= GROWTH_MB_PER_MIN and self.rise >= GROWTH_SHARE
        if self.grows:
            word = "GROWS" if self.judged else "climbs"
        elif climbed and self.late_slope < GROWTH_MB_PER_MIN:
            word = "levels off"  # climbed, but no longer in the last half
        elif climbed and self.per_enrollment_kb is not None:
            word = (
                f"climbs {self.per_enrollment_kb:,.0f} KB per enrollment: the dev server's"
                f" own (< {TEMPORAL_KB_PER_ENROLLMENT:g})"
            )
        else:
            word = "flat"
        return word if self.judged else f"{word} (context)"


@dataclass
class Outcome:
    plan: Plan
    zone: str
    samples: list[Sample]
    before: dict[str, float]  # memory before the load
    totals: dict[str, Stats]
    error_kinds: Counter[str]
    enrollments: int  # enrollments started during the load
    checks: list[Check] = field(default_factory=list)

    @property
    def enrollments_per_minute(self) -> float:
        return self.enrollments / (self.plan.seconds / 60)


# --- seeding -------------------------------------------------------------------------------


async def _seed(pool: AsyncConnectionPool[Any], public_url: str, plan: Plan) -> Seeded:
    senders = [f"+1212555{101 + i:04d}" for i in range(SENDING_LOCATIONS)]
    names: list[str] = []
    async with pool.connection() as conn:
        await franchisors.create_franchisor(conn, OPERATOR, BRAND.franchisor_id, "Soak Brand")
        for i in range(SENDING_LOCATIONS + QUIET_LOCATIONS):
            sending = i < SENDING_LOCATIONS
            location = await locations.create_location(
                conn,
                OPERATOR,
                BRAND,
                f"loc-{i:02d}",
                locations.LocationInput(
                    display_name=f"Soak {i:02d}",
                    time_zone="America/New_York",
                    sender_phone_numbers=(senders[i],) if sending else (),
                    send_window=locations.SendWindowInput("08:00", "21:00") if sending else None,
                ),
            )
            names.append(
                f"franchisors/{BRAND.franchisor_id}/locations/{location.scope.location_id}"
            )
        template = await templates.create_template(
            conn,
            OPERATOR,
            BRAND,
            "welcome-back",
            templates.TemplateInput("Welcome back", BODY),
            public_url,
        )
        steps = (Step(template.name.name, 0), Step(template.name.name, 30 * DAY))
        sequence = await sequences.create_sequence(
            conn, OPERATOR, BRAND, "win-back", "Win back", Definition(steps=steps)
        )
        key = await api_keys.issue_key(conn, "soak", BRAND, "", "soak", Role.FRANCHISOR_ADMIN)
        first = await locations.load_location(conn, TenantScope(BRAND.franchisor_id, "loc-00"))
    zone = _daytime_zone(first, plan.seconds + SETTLE + 600)
    people = await _contacts(pool, plan.contacts, zone)
    return Seeded(key.token, sequence.name.name, names, senders, people, zone)


def _daytime_zone(location: locations.Location, span: float) -> str:
    """A zone where a New York number may be texted from now until span seconds from now."""
    now = time.time()
    for zone in ZONES:
        sample = validate(ContactInput(phone_number="+12123000000", time_zone=zone), location)
        recipient = Recipient(sample.inferred.zones, sample.inferred.states)
        instants = [now + s for s in range(0, int(span) + 60, 60)]
        if all(allowed_at(recipient, location.send_window, _utc(t))[0] for t in instants):
            return zone
    raise SystemExit("no zone has the whole run inside the send window (a state holiday?)")


def _utc(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


async def _contacts(pool: AsyncConnectionPool[Any], count: int, zone: str) -> list[Person]:
    """Consenting contacts, spread over the sending locations (the import's set-wise path)."""
    people: list[Person] = []
    for i in range(SENDING_LOCATIONS):
        scope = TenantScope(BRAND.franchisor_id, f"loc-{i:02d}")
        phones = [f"+1212{3000000 + n:07d}" for n in range(i, count, SENDING_LOCATIONS)]
        async with pool.connection() as conn:
            location = await locations.load_location(conn, scope)
            valid = [
                validate(ContactInput(phone_number=p, first_name=f"P{n}", time_zone=zone), location)
                for n, p in enumerate(phones)
            ]
            async with conn.transaction():
                await contacts.insert_many(conn, scope, valid)
                stored = await contacts.load_by_phones(conn, scope, [v.phone_e164 for v in valid])
                await append_events(
                    conn,
                    OPERATOR,
                    scope,
                    [(stored[v.phone_e164].name.id, v.phone_e164, EVIDENCE) for v in valid],
                )
        people += [Person(p, stored[p].name.name, i) for p in phones]
    people.sort(key=lambda p: p.phone)
    return people


# --- the load ------------------------------------------------------------------------------

Action = Callable[[], Awaitable[None]]


class Load:
    """The mix's operations, their targets and their statistics."""

    def __init__(self, stack: SoakStack, seeded: Seeded, channel: grpc.aio.Channel) -> None:
        self.stack = stack
        self.seeded = seeded
        self.metadata = (("authorization", f"Bearer {seeded.token}"),)
        self.enrollments = enrollments_pb2_grpc.EnrollmentServiceStub(channel)
        self.tenants = tenants_pb2_grpc.TenantServiceStub(channel)
        self.reports = reports_pb2_grpc.ReportServiceStub(channel)
        self.http = httpx.AsyncClient(
            timeout=CALL_TIMEOUT,
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=32),
        )
        self.validator = RequestValidator(stack.twilio.auth_token)
        self.random = random.Random(19)
        self.fresh: deque[Person] = deque(seeded.people)
        self.by_phone = {p.phone: p for p in seeded.people}
        self.to_reply: deque[Person] = deque()
        self.callbacks: deque[tuple[str, str, str, str, str]] = deque()
        self.links: list[str] = []
        self.texts_seen = 0
        self.interval = {op.key: Stats() for op in MIX}
        self.totals = {op.key: Stats() for op in MIX}
        self.error_kinds: Counter[str] = Counter()
        self.in_flight: set[asyncio.Task[None]] = set()

    # the carrier's side: what the fake Twilio received

    def watch_texts(self) -> None:
        """Takes the texts the fake carrier created since the last look: each can now be
        replied to, clicked and called back."""
        created = self.stack.twilio.created
        for message in created[self.texts_seen :]:
            person = self.by_phone.get(message.to)
            if person is None:
                continue
            person.texted = True
            self.to_reply.append(person)
            link = re.search(r"https?://\S+/l/[A-Za-z0-9]+", message.body)
            if link:
                self.links.append(link.group(0))
            for status in ("sent", "delivered"):
                self.callbacks.append(
                    (message.status_callback, message.sid, status, message.from_, message.to)
                )
        self.texts_seen = len(created)

    # the operations: each returns its action, or None when it has no target yet

    def action(self, key: str) -> Action | None:
        return getattr(self, f"_{key}")()  # type: ignore[no-any-return]

    def _enroll(self) -> Action | None:
        if not self.fresh:
            return None
        person = self.fresh.popleft()

        async def act() -> None:
            answer = await self.enrollments.Enroll(
                enrollments_pb.EnrollRequest(contact=person.name, sequence=self.seeded.sequence),
                metadata=self.metadata,
                timeout=CALL_TIMEOUT,
            )
            person.enrollment = answer.name.rsplit("/", 1)[1]

        return act

    def _bulk_enroll(self) -> Action | None:
        if not self.fresh:
            return None
        people = [self.fresh.popleft() for _ in range(min(BULK, len(self.fresh)))]

        async def requests() -> AsyncIterator[enrollments_pb.BulkEnrollRequest]:
            for person in people:
                yield enrollments_pb.BulkEnrollRequest(
                    contact=person.name, sequence=self.seeded.sequence
                )

        async def act() -> None:
            answer = await self.enrollments.BulkEnroll(
                requests(), metadata=self.metadata, timeout=CALL_TIMEOUT
            )
            for person, result in zip(people, answer.results, strict=True):
                if result.enrollment and not result.error_code:
                    person.enrollment = result.enrollment.rsplit("/", 1)[1]
            if answer.enrolled != len(people):
                reasons = sorted({r.error_reason for r in answer.results if r.error_code})
                raise SoakError(
                    f"BulkEnroll enrolled {answer.enrolled} of {len(people)}: {reasons}"
                )

        return act

    def _reply(self) -> Action | None:
        if not self.to_reply:
            return None
        person = self.to_reply.popleft()
        url = self.stack.public_url + INBOUND_PATH
        form = {
            "MessageSid": "SM" + uuid.uuid4().hex,
            "AccountSid": self.stack.twilio.account_sid,
            "From": person.phone,
            "To": self.seeded.senders[person.location],
            "Body": REPLY,
            "NumMedia": "0",
        }

        async def act() -> None:
            signature = self.validator.compute_signature(url, form)
            answer = await self.http.post(url, data=form, headers={"X-Twilio-Signature": signature})
            if answer.status_code != 200:
                raise SoakError(f"inbound reply answered {answer.status_code}")
            person.replied = True

        return act

    def _click(self) -> Action | None:
        if not self.links:
            return None
        link = self.random.choice(self.links)

        async def act() -> None:
            answer = await self.http.get(link, headers={"User-Agent": BROWSER})
            if answer.status_code != 302:
                raise SoakError(f"tracked link answered {answer.status_code}")

        return act

    def _status(self) -> Action | None:
        if not self.callbacks:
            return None
        url, sid, status, sender, to = self.callbacks.popleft()
        form = {
            "MessageSid": sid,
            "SmsSid": sid,
            "AccountSid": self.stack.twilio.account_sid,
            "MessageStatus": status,
            "SmsStatus": status,
            "From": sender,
            "To": to,
            "ApiVersion": "2010-04-01",
        }

        async def act() -> None:
            signature = self.validator.compute_signature(url, form)
            answer = await self.http.post(url, data=form, headers={"X-Twilio-Signature": signature})
            if answer.status_code != 200:
                raise SoakError(f"status callback answered {answer.status_code}")

        return act

    def _get_location(self) -> Action | None:
        name = self.random.choice(self.seeded.locations)

        async def act() -> None:
            answer = await self.tenants.GetLocation(
                tenants_pb.GetLocationRequest(name=name),
                metadata=self.metadata,
                timeout=CALL_TIMEOUT,
            )
            if answer.name != name:
                raise SoakError("GetLocation answered another location")

        return act

    def _list_locations(self) -> Action | None:
        async def act() -> None:
            answer = await self.tenants.ListLocations(
                tenants_pb.ListLocationsRequest(
                    parent=f"franchisors/{BRAND.franchisor_id}", page_size=50
                ),
                metadata=self.metadata,
                timeout=CALL_TIMEOUT,
            )
            if len(answer.locations) != len(self.seeded.locations):
                raise SoakError(f"ListLocations listed {len(answer.locations)} locations")

        return act

    def _report(self) -> Action | None:
        name = self.random.choice(self.seeded.locations[:SENDING_LOCATIONS])

        async def act() -> None:
            answer = await self.reports.GetLocationReport(
                reports_pb.GetLocationReportRequest(name=name),
                metadata=self.metadata,
                timeout=CALL_TIMEOUT,
            )
            if answer.location != name:
                raise SoakError("GetLocationReport answered another location")

        return act

    # running them

    def offer(self, key: str, scheduled: float) -> None:
        action = self.action(key)
        if action is None:
            self.interval[key].no_target += 1
            self.totals[key].no_target += 1
            return
        self.interval[key].offered += 1
        self.totals[key].offered += 1
        task = asyncio.create_task(self._run(key, scheduled, action))
        self.in_flight.add(task)
        task.add_done_callback(self.in_flight.discard)

    async def _run(self, key: str, scheduled: float, action: Action) -> None:
        try:
            await action()
        except (SoakError, grpc.aio.AioRpcError, httpx.HTTPError) as error:
            for stats in (self.interval[key], self.totals[key]):
                stats.errors += 1
            self.error_kinds[f"{key}: {_describe(error)}"] += 1
            return
        latency = time.monotonic() - scheduled
        for stats in (self.interval[key], self.totals[key]):
            stats.done += 1
            stats.latencies.append(latency)

    async def schedule(self, op: Operation, rate: float, start: float, end: float) -> None:
        """Offers op at start + i / (its rate), until end (open loop)."""
        per_second = op.per_second * rate
        if per_second <= 0:
            return
        # the operations start staggered within their first period, not all at once
        phase = self.random.random() / per_second
        i = 0
        while (at := start + phase + i / per_second) < end:
            if (wait := at - time.monotonic()) > 0:
                await asyncio.sleep(wait)
            self.offer(op.key, at)
            i += 1

    def take_interval(self) -> dict[str, Stats]:
        taken, self.interval = self.interval, {op.key: Stats() for op in MIX}
        return taken


def _describe(error: BaseException) -> str:
    if isinstance(error, grpc.aio.AioRpcError):
        return f"{error.code().name}: {(error.details() or '')[:120]}"
    return f"{type(error).__name__}: {str(error)[:120]}"


async def _soak(stack: SoakStack, plan: Plan, console: Console) -> Outcome:
    pool = open_pool(stack.database_url, max_size=4)
    await pool.open(wait=True, timeout=30)
    try:
        seeded = await _seed(pool, stack.public_url, plan)
        console.print(
            f"seeded: {len(seeded.locations)} locations, {len(seeded.people):,} contacts"
            f" (zone {seeded.zone}), sequence {seeded.sequence}; load for {plan.seconds:g} s,"
            f" rate x{plan.rate:g} ({_offered_per_second(plan.rate):.1f} operations/s offered)"
        )
        async with grpc.aio.insecure_channel(stack.grpc_target) as channel:
            load = Load(stack, seeded, channel)
            try:
                outcome = await _drive(load, stack, plan, console)
                outcome.zone = seeded.zone
                outcome.checks = await _checks(load, stack, pool)
            finally:
                await load.http.aclose()
    finally:
        await pool.close()
    return outcome


def _offered_per_second(rate: float) -> float:
    return sum(op.per_second for op in MIX) * rate


async def _drive(load: Load, stack: SoakStack, plan: Plan, console: Console) -> Outcome:
    before = stack.memory_mb()
    samples: list[Sample] = []
    start = time.monotonic() + 0.5
    end = start + plan.seconds
    schedulers = [asyncio.create_task(load.schedule(op, plan.rate, start, end)) for op in MIX]

    async def watch() -> None:
        while True:
            load.watch_texts()
            await asyncio.sleep(0.2)

    watcher = asyncio.create_task(watch())
    try:
        boundaries = math.ceil(plan.seconds / plan.interval - 1e-9)
        for k in range(1, boundaries + 1):
            at = min(start + k * plan.interval, end)
            await asyncio.sleep(max(0.0, at - time.monotonic()))
            if k == boundaries:
                await asyncio.gather(*schedulers)
                if load.in_flight:  # the last operations answer (each has CALL_TIMEOUT)
                    await asyncio.wait(list(load.in_flight), timeout=CALL_TIMEOUT + 5)
            if dead := stack.dead_roles():
                tails = "\n".join(f"--- {r}:\n{stack.roles[r].tail()}" for r in dead)
                raise SystemExit(f"soak: reengage {', '.join(dead)} exited mid-run\n{tails}")
            sample = Sample(at - start, load.take_interval(), stack.memory_mb())
            samples.append(sample)
            _print_interval(console, sample, plan)
        # the last texts go out and are seen, so the checks judge a settled platform
        deadline = time.monotonic() + SETTLE
        while time.monotonic() < deadline:
            load.watch_texts()
            if all(p.texted for p in load.by_phone.values() if p.enrollment):
                break
            await asyncio.sleep(0.5)
    finally:
        watcher.cancel()
        for task in schedulers:
            task.cancel()
        await asyncio.gather(watcher, *schedulers, return_exceptions=True)
    enrolled = sum(1 for p in load.by_phone.values() if p.enrollment)
    return Outcome(plan, "", samples, before, load.totals, load.error_kinds, enrolled)


# --- the checks ----------------------------------------------------------------------------


async def _checks(load: Load, stack: SoakStack, pool: AsyncConnectionPool[Any]) -> list[Check]:
    checks = [_texts_check(load), await _ledger_check(load, stack, pool)]
    checks.append(await _exits_check(load, pool))
    for name in ("serve", "worker"):
        checks.append(await _metrics_check(name, stack.roles[name].metrics_port))
    return checks


def _texts_check(load: Load) -> Check:
    enrolled = [p for p in load.by_phone.values() if p.enrollment]
    per_number = Counter(m.to for m in load.stack.twilio.created)
    untexted = sum(1 for p in enrolled if per_number[p.phone] == 0)
    twice = sum(1 for n in per_number.values() if n > 1)
    return Check(
        "every enrolled contact got exactly one text at the carrier",
        untexted == 0 and twice == 0 and bool(enrolled),
        f"{len(enrolled):,} enrolled, {len(per_number):,} texted; not texted: {untexted},"
        f" texted twice or more: {twice}",
    )


async def _ledger_check(load: Load, stack: SoakStack, pool: AsyncConnectionPool[Any]) -> Check:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT carrier_message_id, enrollment_id, step_index FROM messages"
            " WHERE direction = 'outbound' AND franchisor_id = %s",
            (BRAND.franchisor_id,),
        )
        rows = await cur.fetchall()
    ledger_sids = Counter(r[0] for r in rows if r[0])
    per_step = Counter((r[1], r[2]) for r in rows)
    carrier_sids = {m.sid for m in stack.twilio.created}
    unrecorded = len(carrier_sids - set(ledger_sids))  # sent, and the ledger does not know it
    unsent = sum(1 for r in rows if not r[0] or r[0] not in carrier_sids)
    repeated = sum(1 for n in per_step.values() if n > 1) + sum(
        1 for n in ledger_sids.values() if n > 1
    )
    return Check(
        "ledger and carrier agree: no duplicate sends",
        unrecorded == 0 and unsent == 0 and repeated == 0,
        f"{len(rows):,} ledger texts, {len(carrier_sids):,} at the carrier; sent but not in the"
        f" ledger: {unrecorded}, in the ledger but not sent: {unsent}, duplicates: {repeated}",
    )


async def _exits_check(load: Load, pool: AsyncConnectionPool[Any]) -> Check:
    replied = {p.enrollment for p in load.by_phone.values() if p.replied and p.enrollment}
    unknown = sum(1 for p in load.by_phone.values() if p.replied and not p.enrollment)
    running: set[str] = set(replied)
    deadline = time.monotonic() + SETTLE
    while running and time.monotonic() < deadline:
        async with pool.connection() as conn:
            cur = await conn.execute(
                "SELECT id FROM enrollments WHERE id = ANY(%s) AND status <> 'exited'",
                (list(replied),),
            )
            running = {r[0] for r in await cur.fetchall()}
        if running:
            await asyncio.sleep(0.5)
    return Check(
        "every enrollment that got a reply exited",
        not running and unknown == 0 and bool(replied),
        f"{len(replied):,} replied, {len(replied) - len(running):,} exited;"
        f" not exited {SETTLE:g} s after the load: {len(running)}"
        + (f", enrollment unknown: {unknown}" if unknown else ""),
    )


async def _metrics_check(name: str, port: int) -> Check:
    title = f"/metrics of {name} answers"
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        async with httpx.AsyncClient(timeout=10) as http:
            answer = await http.get(url)
    except httpx.ConnectError:
        return Check(title, None, f"skipped: nothing listens on REENGAGE_METRICS_PORT ({port}) yet")
    except httpx.HTTPError as error:
        return Check(title, False, f"{type(error).__name__}")
    families = answer.text.count("# TYPE ")
    return Check(
        title,
        answer.status_code == 200 and families > 0,
        f"HTTP {answer.status_code}, {families} metric families, {len(answer.content):,} bytes",
    )


def _log_check(stack: SoakStack) -> Check:
    """No ERROR, CRITICAL or traceback line in the logs of serve and worker (after they
    stopped, so their shutdown counts too)."""
    found: list[str] = []
    counts: dict[str, int] = {}
    for name, role in stack.roles.items():
        problems = [line for line in role.output().splitlines() if LOG_PROBLEM.search(line)]
        counts[name] = len(problems)
        found += [f"{name}: {line[:160]}" for line in problems[:3]]
    detail = ", ".join(f"{name} {n}" for name, n in counts.items())
    if found:
        detail += "; first: " + " | ".join(found)
    return Check("no ERROR or traceback in the serve and worker logs", not found, detail)


# --- the verdict and the tables ------------------------------------------------------------


def growth(
    samples: list[Sample], warm_up: float, enrollments_per_minute: float = 0.0
) -> list[Growth]:
    """Per measure: the least-squares slope of its memory (MB/min) over the samples from the
    end of the warm-up on, the rise it fits, the slope over their last half, and the verdict
    (module doc); the Temporal dev server's slope also per enrollment started."""
    out: list[Growth] = []
    for process in MEASURES:
        points = [(s.at / 60, s.memory[process]) for s in samples if s.at >= warm_up - 1e-6]
        start_mb = points[0][1] if points else (samples[-1].memory[process] if samples else 0.0)
        end_mb = samples[-1].memory[process] if samples else 0.0
        if len(points) < MIN_JUDGED_SAMPLES:
            out.append(Growth(process, start_mb, end_mb, None, None, None, False, False))
            continue
        slope = least_squares_slope(points)
        late = least_squares_slope(points[len(points) // 2 :])
        span = points[-1][0] - points[0][0]
        rise = slope * span / start_mb if start_mb else 0.0
        climbs = slope >= GROWTH_MB_PER_MIN and rise >= GROWTH_SHARE and late >= GROWTH_MB_PER_MIN
        per_enrollment = None
        if process == "temporal" and enrollments_per_minute > 0:
            per_enrollment = slope * 1024 / enrollments_per_minute
            climbs = climbs and per_enrollment >= TEMPORAL_KB_PER_ENROLLMENT
        out.append(
            Growth(
                process,
                start_mb,
                end_mb,
                slope,
                rise,
                late,
                climbs,
                process in JUDGED,
                per_enrollment,
            )
        )
    return out


def least_squares_slope(points: list[tuple[float, float]]) -> float:
    n = len(points)
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    spread = sum((x - mean_x) ** 2 for x, _ in points)
    if spread == 0:
        return 0.0
    return sum((x - mean_x) * (y - mean_y) for x, y in points) / spread


def _slope(value: float | None) -> str:
    return "-" if value is None else f"{value:+.2f}"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def _stamp(seconds: float, plan: Plan) -> str:
    if plan.interval == 60 and seconds % 60 < 1e-6:
        return f"minute {seconds / 60:.0f}"
    return f"{seconds:,.0f} s"


def _ops_table(title: str, ops: dict[str, Stats]) -> Table:
    table = Table(title=title)
    table.add_column("operation")
    for column in ("offered", "done", "errors", "no target", "p50 ms", "p99 ms"):
        table.add_column(column, justify="right")
    for op in MIX:
        s = ops[op.key]
        table.add_row(
            op.label,
            f"{s.offered:,}",
            f"{s.done:,}",
            f"{s.errors:,}",
            f"{s.no_target:,}",
            _ms(s.p(0.5)),
            _ms(s.p(0.99)),
        )
    return table


def _print_interval(console: Console, sample: Sample, plan: Plan) -> None:
    console.print(_ops_table(f"soak, {_stamp(sample.at, plan)}", sample.ops))
    rss = Table(title="memory MB (RSS; PostgreSQL's private and shared PSS)")
    for process in MEASURES:
        rss.add_column(process, justify="right")
    rss.add_row(*(f"{sample.memory[p]:,.0f}" for p in MEASURES))
    console.print(rss)


def _print_outcome(console: Console, outcome: Outcome, growths: list[Growth]) -> None:
    plan = outcome.plan
    by_time = Table(title="per interval: operations done, errors, p99 of all, memory MB")
    for column in ("at", "done", "errors", "p99 ms", *MEASURES):
        by_time.add_column(column, justify="right")
    by_time.add_row("before", "", "", "", *(f"{outcome.before[p]:,.0f}" for p in MEASURES))
    for s in outcome.samples:
        merged = Stats(latencies=[v for st in s.ops.values() for v in st.latencies])
        by_time.add_row(
            _stamp(s.at, plan),
            f"{sum(st.done for st in s.ops.values()):,}",
            f"{sum(st.errors for st in s.ops.values()):,}",
            _ms(merged.p(0.99)),
            *(f"{s.memory[p]:,.0f}" for p in MEASURES),
        )
    console.print(by_time)
    console.print(_ops_table(f"soak totals, {plan.seconds:g} s", outcome.totals))
    if outcome.error_kinds:
        for kind, n in outcome.error_kinds.most_common(10):
            console.print(f"  error x{n}: {kind}")
    checks = Table(title="checks after the load")
    checks.add_column("check")
    checks.add_column("result")
    checks.add_column("detail")
    for c in outcome.checks:
        checks.add_row(c.name, {True: "ok", False: "FAILED", None: "skipped"}[c.passed], c.detail)
    console.print(checks)
    verdict = Table(
        title=f"memory growth after the warm-up ({plan.warm_up:g} s): GROWS when the slope ≥"
        f" {GROWTH_MB_PER_MIN:g} MB/min, the rise ≥ {GROWTH_SHARE:.0%} and the last half's"
        f" slope ≥ {GROWTH_MB_PER_MIN:g} MB/min"
    )
    for column in ("measure", "after warm-up MB", "end MB", "slope MB/min", "rise", "last half"):
        verdict.add_column(column, justify="right")
    verdict.add_column("verdict")
    for g in growths:
        word = g.verdict()
        verdict.add_row(
            g.process,
            f"{g.start_mb:,.0f}",
            f"{g.end_mb:,.0f}",
            _slope(g.slope),
            "-" if g.rise is None else f"{g.rise:+.1%}",
            _slope(g.late_slope),
            word,
        )
    console.print(verdict)


def summary(outcome: Outcome, growths: list[Growth], code: int) -> dict[str, Any]:
    """The run in one JSON object (the last line of the output, for CI and tests)."""
    return {
        "exit_code": code,
        "seconds": outcome.plan.seconds,
        "rate": outcome.plan.rate,
        "operations": {
            key: {
                "offered": s.offered,
                "done": s.done,
                "errors": s.errors,
                "no_target": s.no_target,
                "p50_ms": s.p(0.5),
                "p99_ms": s.p(0.99),
            }
            for key, s in outcome.totals.items()
        },
        "errors": sum(s.errors for s in outcome.totals.values()),
        "enrollments": outcome.enrollments,
        "memory_mb": {p: [round(s.memory[p], 1) for s in outcome.samples] for p in MEASURES},
        "checks": {c.name: c.passed for c in outcome.checks},
        "growth": {
            g.process: {
                "slope_mb_per_min": g.slope,
                "rise": g.rise,
                "late_slope_mb_per_min": g.late_slope,
                "kb_per_enrollment": g.per_enrollment_kb,
                "grows": g.grows,
                "judged": g.judged,
            }
            for g in growths
        },
    }


def run(plan: Plan) -> int:
    """The soak (module doc); its exit code."""
    console = Console(width=max(Console().width, 110))
    with tempfile.TemporaryDirectory(prefix="reengage-soak-") as tmp:
        with running_stack(Path(tmp)) as stack:
            console.print(
                f"platform up: serve pid {stack.roles['serve'].process.pid}, worker pid"
                f" {stack.roles['worker'].process.pid}, PostgreSQL :{stack.postgres.port},"
                f" Temporal {stack.temporal.address}"
            )
            outcome = asyncio.run(_soak(stack, plan, console))
            stack.stop()
            outcome.checks.append(_log_check(stack))
    growths = growth(outcome.samples, plan.warm_up, outcome.enrollments_per_minute)
    errors = sum(s.errors for s in outcome.totals.values())
    failed = [c for c in outcome.checks if c.passed is False]
    grows = [g for g in growths if g.grows and g.judged]
    code = 1 if errors or failed or grows else 0
    _print_outcome(console, outcome, growths)
    console.print(
        f"verdict: {errors} errors, {len(failed)} failed checks, growth in"
        f" {', '.join(g.process for g in grows) or 'no process'}: exit code {code}"
    )
    print("soak-summary: " + json.dumps(summary(outcome, growths, code)), flush=True)
    return code


def plan_from(argv: list[str]) -> Plan:
    parser = argparse.ArgumentParser(
        prog="python -m bench.soak", description=__doc__.split("\n\n")[0] if __doc__ else ""
    )
    duration = parser.add_mutually_exclusive_group()
    duration.add_argument("--minutes", type=float, help="how long the mix runs (default 10)")
    duration.add_argument("--seconds", type=float, help="how long the mix runs, in seconds")
    parser.add_argument("--rate", type=float, default=1.0, help="scales the whole mix (1.0)")
    parser.add_argument("--interval", type=float, default=60.0, help="seconds per row (60)")
    parser.add_argument(
        "--warm-up",
        type=float,
        help="seconds not judged for growth (default: 2 minutes or 20%% of the run)",
    )
    args = parser.parse_args(argv)
    seconds = args.seconds if args.seconds is not None else 60 * (args.minutes or 10.0)
    if seconds <= 0 or args.interval <= 0 or args.rate <= 0:
        parser.error("duration, interval and rate must be positive")
    warm_up = args.warm_up
    if warm_up is None:
        warm_up = max(WARM_UP_MIN_SECONDS, WARM_UP_SHARE * seconds)
    return Plan(seconds, args.interval, args.rate, warm_up)


def main(argv: list[str] | None = None) -> int:
    return run(plan_from(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    sys.exit(main())
