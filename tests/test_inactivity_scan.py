"""The inactivity scan (design §5, `tenants/enrollment/triggers.py`, `workflows/scan.py`), proved
on the
time-skipping Temporal server with real PostgreSQL (the Schedule on the dev server): who is
quiet (all signals and a subset, the create_time rule, consent and opt-out), idempotence across
scans, cooldown, priority, the per-location daily cap, continue-as-new, the page query's index
use, the Schedule's wiring, and a scan over 200,000 contacts. Every check looks at an
observable outcome: `enrollments` rows, `enrollment_refusals` rows, the scan's summary, the
query plan, the Schedule's description.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from psycopg_pool import AsyncConnectionPool
from temporalio.client import (
    Client,
    ScheduleActionStartWorkflow,
    ScheduleOverlapPolicy,
    WorkflowExecutionStatus,
)
from temporalio.testing import WorkflowEnvironment

from tenants.contacts import contacts
from tenants.contacts.activity import record_activity
from tenants.contacts.consent import (
    ConsentChannel,
    ConsentEvidence,
    ConsentKind,
    append_events,
    record_consent,
)
from tenants.contacts.model import ContactInput, validate
from tenants.core.names import ChildName, TenantScope
from tenants.enrollment.triggers import InactivityTarget, _quiet_query, quiet_contacts
from tenants.org import locations
from tenants.sequences.model import EntryTrigger, Step
from tests.enrollment_support import (
    DAY,
    Running,
    brand_template,
    consenting_contact,
    make_sequence,
    running_worker,
)
from tests.support import A_DOWNTOWN, A_UPTOWN, B_HARBOR, OPERATOR, World
from workflows.client import EnrollmentClient, StartRequest, UpdateRefused
from workflows.enrolling import enroll
from workflows.scan import InactivityScanWorkflow
from workflows.scan_types import ScanInput, ScanSummary
from workflows.schedules import INACTIVITY_SCAN_ID, ensure_inactivity_scan

ALL_SIGNALS = ("reply", "click", "purchase")
INACTIVE_30 = EntryTrigger("inactivity", 30, ALL_SIGNALS)
GRANT = ConsentEvidence(
    ConsentKind.GRANT,
    ConsentChannel.IMPORT,
    datetime(2026, 1, 5, tzinfo=UTC),
    source="scan-test.csv",
    disclosure_text="I agree to texts from Acme Coffee.",
)


# -- helpers ------------------------------------------------------------------------------


def phone(i: int) -> str:
    return f"+1212{2000000 + i:07d}"


async def backdate(
    pool: AsyncConnectionPool[Any],
    contact_ids: list[str] | str,
    created: int = 90,
    **days_ago: int | None,
) -> None:
    """Sets create_time `created` days before SQL now(), and last_<signal>_at (reply, click,
    purchase) the given days before now(); last_engaged_at is the latest of them unless given
    (engaged=...). One statement: contacts backdated together share the same instants."""
    values: dict[str, int | None] = {"create_time": created}
    for signal in ("reply", "click", "purchase"):
        if signal in days_ago:
            values[f"last_{signal}_at"] = days_ago[signal]
    signals = [d for k, d in days_ago.items() if k != "engaged" and d is not None]
    values["last_engaged_at"] = days_ago.get("engaged", min(signals) if signals else None)
    ids = [contact_ids] if isinstance(contact_ids, str) else contact_ids
    sets = ", ".join(f"{column} = now() - %s::int * interval '1 day'" for column in values)
    async with pool.connection() as conn:
        await conn.execute(
            f"UPDATE contacts SET {sets} WHERE id = ANY(%s)", (*values.values(), ids)
        )


async def quiet_contact(
    pool: AsyncConnectionPool[Any],
    number: str,
    location: TenantScope = A_DOWNTOWN,
    engaged: int | None = 40,
    created: int = 90,
) -> ChildName:
    """A consenting contact whose last engagement (a reply) was `engaged` days ago."""
    contact = await consenting_contact(pool, number, location=location)
    await backdate(pool, contact.id, created=created, reply=engaged)
    return contact


async def record(
    pool: AsyncConnectionPool[Any], contact: ChildName, kind: str, days_ago: float
) -> None:
    """An engagement recorded the way the product records it (inbound reply, tracked click,
    RecordActivity)."""
    async with pool.connection() as conn:
        await record_activity(
            conn, OPERATOR, contact, kind, datetime.now(UTC) - timedelta(days=days_ago)
        )


async def bulk_contacts(
    pool: AsyncConnectionPool[Any], location: TenantScope, numbers: list[str]
) -> list[str]:
    """Consenting contacts in bulk, the way an import stores them (`contacts.insert_many` and
    `append_events`, as bench/enroll.py does); their ids in the order of numbers."""
    async with pool.connection() as conn:
        loc = await locations.load_location(conn, location)
        valid = [
            validate(ContactInput(phone_number=p, first_name=f"P{i}"), loc)
            for i, p in enumerate(numbers)
        ]
        async with conn.transaction():
            await contacts.insert_many(conn, location, valid)
            # fresh statistics first: plans made while the table was nearly empty (the consent
            # events' foreign-key check, append_events' state refresh) read it whole per row
            # of a 20k batch (minutes instead of seconds)
            await conn.execute("ANALYZE contacts")
            cur = await conn.execute(
                "SELECT phone_e164, id FROM contacts WHERE franchisor_id = %s"
                " AND location_id = %s AND phone_e164 = ANY(%s)",
                (location.franchisor_id, location.location_id, [v.phone_e164 for v in valid]),
            )
            ids: dict[str, str] = dict(await cur.fetchall())
            await append_events(
                conn,
                OPERATOR,
                location,
                [(ids[v.phone_e164], v.phone_e164, GRANT) for v in valid],
            )
    return [ids[v.phone_e164] for v in valid]


@asynccontextmanager
async def worker(client: Client, pool: AsyncConnectionPool[Any]) -> AsyncIterator[Running]:
    """A running worker; at the end every enrollment still running is cancelled through it
    and waited for. (Left behind, the scan's enrollments stalled the shared time-skipping
    server's clock for the suites that followed: a task still open when the worker goes, or a
    timer that fires with no worker, holds time. Never terminated mid-task, for that reason.)"""
    async with running_worker(client, pool) as run:
        try:
            yield run
        finally:
            await end_enrollments(run, pool)


async def end_enrollments(run: Running, pool: AsyncConnectionPool[Any]) -> None:
    gate = asyncio.Semaphore(16)

    async def end(workflow_id: str, run_id: str) -> None:
        async with gate:
            with contextlib.suppress(UpdateRefused):
                await asyncio.wait_for(run.workflows.cancel(workflow_id, "the test is over"), 30)
            await asyncio.wait_for(run.workflows.result(workflow_id, run_id), 30)

    for _ in range(100):  # again until none is left (a start may have been in flight)
        async with pool.connection() as conn:
            cur = await conn.execute(
                "SELECT workflow_id, run_id FROM enrollments"
                " WHERE status IN ('active', 'paused', 'awaiting_approval')"
            )
            running = await cur.fetchall()
        if not running:
            return
        if all(run_id for _, run_id in running):
            await asyncio.gather(*(end(w, r) for w, r in running if r))
        else:
            await asyncio.sleep(0.1)
    raise AssertionError(f"enrollments still running: {running}")


async def scan(env: WorkflowEnvironment, run: Running, **params: Any) -> ScanSummary:
    return await env.client.execute_workflow(
        InactivityScanWorkflow.run,
        ScanInput(**params),
        id=f"scan-{uuid.uuid4().hex[:8]}",
        task_queue=run.task_queue,
    )


async def enrollment_rows(pool: AsyncConnectionPool[Any]) -> Counter[tuple[str, str]]:
    """(contact id, sequence id) → number of enrollment rows."""
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT contact_id, sequence_id FROM enrollments")
        return Counter(await cur.fetchall())


async def enrolled_contacts(pool: AsyncConnectionPool[Any]) -> Counter[str]:
    """contact id → number of enrollment rows (any sequence)."""
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT contact_id, count(*) FROM enrollments GROUP BY 1")
        return Counter(dict(await cur.fetchall()))


async def refusals(pool: AsyncConnectionPool[Any]) -> list[tuple[str, str, str, str]]:
    """(contact id, sequence id, path, reason) of every refusal row."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT contact_id, sequence_id, path, reason FROM enrollment_refusals ORDER BY id"
        )
        return list(await cur.fetchall())


# -- 1. who is quiet ----------------------------------------------------------------------


async def test_scan_enrolls_exactly_the_contacts_quiet_for_n_days(
    pool: AsyncConnectionPool[Any], world: World, time_skipping_env: WorkflowEnvironment
) -> None:
    template = await brand_template(pool)
    await make_sequence(pool, [Step(template, 30 * DAY)], entry=INACTIVE_30)
    quiet = await quiet_contact(pool, phone(1), engaged=40)
    just_past = await quiet_contact(pool, phone(2), engaged=31)
    not_yet = await quiet_contact(pool, phone(3), engaged=29)
    replied_yesterday = await quiet_contact(pool, phone(4), engaged=1)
    clicked_yesterday = await consenting_contact(pool, phone(5))
    await backdate(pool, clicked_yesterday.id, reply=200, click=1)
    added_today = await consenting_contact(pool, phone(6))  # never engaged, create_time now
    added_60_days_ago = await consenting_contact(pool, phone(7))
    await backdate(pool, added_60_days_ago.id, created=60)  # never engaged: counts from then
    opted_out = await quiet_contact(pool, phone(8))
    async with pool.connection() as conn:
        await record_consent(
            conn,
            OPERATOR,
            opted_out,
            ConsentEvidence(
                ConsentKind.REVOKE,
                ConsentChannel.STAFF,
                datetime.now(UTC) - timedelta(hours=1),
                raw_text="please stop texting me",
            ),
        )
        no_consent = await contacts.create_contact(
            conn, OPERATOR, A_DOWNTOWN, "", ContactInput(phone_number=phone(9))
        )
    await backdate(pool, no_consent.name.id, reply=40)
    texted_back = await consenting_contact(pool, phone(12))  # old, replied by SMS yesterday
    await backdate(pool, texted_back.id, created=90)
    await record(pool, texted_back, "reply", 1)
    uptown = await quiet_contact(pool, phone(10), location=A_UPTOWN)  # a brand sequence
    other_brand = await quiet_contact(pool, phone(11), location=B_HARBOR)

    async with worker(time_skipping_env.client, pool) as run:
        summary = await scan(time_skipping_env, run)

    rows = await enrolled_contacts(pool)
    assert set(rows) == {quiet.id, just_past.id, added_60_days_ago.id, uptown.id}
    assert all(n == 1 for n in rows.values())
    for absent in (
        not_yet,
        replied_yesterday,
        clicked_yesterday,
        added_today,
        opted_out,
        no_consent.name,
        other_brand,
        texted_back,
    ):
        assert absent.id not in rows, absent.name
    # two targets (the brand sequence at downtown and at uptown); the contacts that cannot
    # enter anyway (opted out, no consent) are left out by the query, not refused
    assert (summary.targets, summary.enrolled, summary.refused, summary.runs) == (2, 4, 0, 1)
    assert await refusals(pool) == []


# -- 2. idempotent across scans -----------------------------------------------------------


async def test_a_second_scan_enrolls_nobody_twice(
    pool: AsyncConnectionPool[Any], world: World, time_skipping_env: WorkflowEnvironment
) -> None:
    template = await brand_template(pool)
    await make_sequence(pool, [Step(template, 30 * DAY)], entry=INACTIVE_30)
    people = [await quiet_contact(pool, phone(i), engaged=40 + i) for i in range(5)]

    async with worker(time_skipping_env.client, pool) as run:
        first = await scan(time_skipping_env, run, page_size=2)
        second = await scan(time_skipping_env, run, page_size=2)

    assert first.enrolled == 5
    assert second.enrolled == 0
    assert second.refused == 0  # running contacts are left out by the query
    rows = await enrolled_contacts(pool)
    assert rows == Counter({p.id: 1 for p in people})


# -- 3. cooldown --------------------------------------------------------------------------


async def test_cooldown_skips_the_contact_and_records_one_refusal_a_day(
    pool: AsyncConnectionPool[Any], world: World, time_skipping_env: WorkflowEnvironment
) -> None:
    template = await brand_template(pool)
    sequence = await make_sequence(
        pool, [Step(template, 30 * DAY)], entry=INACTIVE_30, cooldown_seconds=30 * DAY
    )
    cooling = await quiet_contact(pool, phone(1))

    async with worker(time_skipping_env.client, pool) as run:
        first = await scan(time_skipping_env, run)
        assert first.enrolled == 1
        async with pool.connection() as conn:
            cur = await conn.execute(
                "SELECT workflow_id, run_id FROM enrollments WHERE contact_id = %s",
                (cooling.id,),
            )
            row = await cur.fetchone()
        assert row is not None
        workflow_id, run_id = row
        await run.workflows.cancel(workflow_id, "test: end it", update_id="cancel-1")
        await run.workflows.result(workflow_id, run_id)
        async with pool.connection() as conn:
            cur = await conn.execute(
                "SELECT status, ended_at IS NOT NULL FROM enrollments WHERE contact_id = %s",
                (cooling.id,),
            )
            assert await cur.fetchall() == [("exited", True)]

        fresh = await quiet_contact(pool, phone(2))  # not in cooldown: enrolled meanwhile
        second = await scan(time_skipping_env, run)
        third = await scan(time_skipping_env, run)

    assert (second.enrolled, second.refused) == (1, 1)
    assert (third.enrolled, third.refused) == (0, 1)  # refused again, but recorded once a day
    assert await refusals(pool) == [(cooling.id, sequence.id, "scan", "COOLDOWN")]
    assert await enrolled_contacts(pool) == Counter({cooling.id: 1, fresh.id: 1})


# -- 4. a subset of signals ---------------------------------------------------------------


async def test_subset_signals_count_only_those_signals(
    pool: AsyncConnectionPool[Any], world: World, time_skipping_env: WorkflowEnvironment
) -> None:
    template = await brand_template(pool)
    await make_sequence(
        pool,
        [Step(template, 30 * DAY)],
        entry=EntryTrigger("inactivity", 30, ("purchase",)),
    )
    # replied yesterday, but the last purchase was 100 days ago: quiet for this trigger
    replied = [await consenting_contact(pool, phone(i)) for i in range(5)]
    await backdate(pool, [c.id for c in replied], created=300, reply=1, purchase=100)
    purchased = await consenting_contact(pool, phone(10))
    await backdate(pool, purchased.id, created=300, reply=200, purchase=1)
    # never purchased, replied yesterday, added 90 days ago: counts from create_time
    never_bought = await consenting_contact(pool, phone(11))
    await backdate(pool, never_bought.id, created=90, reply=1)
    new_buyer = await consenting_contact(pool, phone(12))  # added today, never purchased
    await backdate(pool, new_buyer.id, created=0, reply=1)
    # the same, recorded as activities: bought 100 days ago, replied and clicked yesterday
    recorded = await consenting_contact(pool, phone(13))
    await backdate(pool, recorded.id, created=300)
    await record(pool, recorded, "purchase", 100)
    await record(pool, recorded, "reply", 1)
    await record(pool, recorded, "click", 0.5)
    bought_recently = await consenting_contact(pool, phone(14))
    await backdate(pool, bought_recently.id, created=300)
    await record(pool, bought_recently, "purchase", 2)

    async with worker(time_skipping_env.client, pool) as run:
        summary = await scan(time_skipping_env, run, page_size=2)  # several id-keyset pages

    expected = {c.id for c in replied} | {never_bought.id, recorded.id}
    rows = await enrolled_contacts(pool)
    assert rows == Counter({cid: 1 for cid in expected})
    assert summary.enrolled == 7
    assert summary.pages >= 4  # downtown in pages of 2, then uptown


# -- 5. priority --------------------------------------------------------------------------


async def _two_inactivity_sequences(pool: AsyncConnectionPool[Any]) -> tuple[str, str]:
    template = await brand_template(pool)
    # the lower one first: its sort key is older, so only the priority can put it second
    low = await make_sequence(
        pool, [Step(template, 30 * DAY)], sid="winback-low", entry=INACTIVE_30, priority=1
    )
    high = await make_sequence(
        pool, [Step(template, 30 * DAY)], sid="winback-high", entry=INACTIVE_30, priority=5
    )
    return low.id, high.id


async def test_higher_priority_sequence_enrolls_the_contact(
    pool: AsyncConnectionPool[Any], world: World, time_skipping_env: WorkflowEnvironment
) -> None:
    low, high = await _two_inactivity_sequences(pool)
    people = [await quiet_contact(pool, phone(i)) for i in range(3)]

    async with worker(time_skipping_env.client, pool) as run:
        summary = await scan(time_skipping_env, run)

    assert await enrollment_rows(pool) == Counter({(p.id, high): 1 for p in people})
    assert summary.targets == 4  # two sequences at two locations
    assert summary.enrolled == 3
    assert low not in {s for _, s in await enrollment_rows(pool)}


async def test_lower_priority_sequence_records_enrollment_running_refusal(
    pool: AsyncConnectionPool[Any], world: World, time_skipping_env: WorkflowEnvironment
) -> None:
    low, high = await _two_inactivity_sequences(pool)
    contact = await quiet_contact(pool, phone(1))

    async with worker(time_skipping_env.client, pool) as run:
        summary = await scan(time_skipping_env, run)

    assert await enrollment_rows(pool) == Counter({(contact.id, high): 1})
    assert summary.refused == 1
    assert await refusals(pool) == [(contact.id, low, "scan", "ENROLLMENT_RUNNING")]


async def test_scan_interrupts_a_lower_priority_enrollment_when_the_sequence_says_so(
    pool: AsyncConnectionPool[Any], world: World, time_skipping_env: WorkflowEnvironment
) -> None:
    template = await brand_template(pool)
    manual = await make_sequence(pool, [Step(template, 30 * DAY)], sid="manual", priority=0)
    urgent = await make_sequence(
        pool,
        [Step(template, 30 * DAY)],
        sid="winback-urgent",
        entry=INACTIVE_30,
        priority=5,
        interrupt_lower_priority=True,
    )
    contact = await quiet_contact(pool, phone(1))

    async with worker(time_skipping_env.client, pool) as run:
        async with pool.connection() as conn:
            _, created = await enroll(conn, run.workflows, OPERATOR, contact, manual)
        assert created
        summary = await scan(time_skipping_env, run)
        assert summary.enrolled == 1
        async with pool.connection() as conn:  # before the worker's clean-up cancels the rest
            cur = await conn.execute(
                "SELECT sequence_id, status, exit_reason FROM enrollments WHERE contact_id = %s"
                " ORDER BY enrolled_at",
                (contact.id,),
            )
            assert await cur.fetchall() == [
                (manual.id, "exited", "preempted"),
                (urgent.id, "active", ""),
            ]


# -- a page retried after a partial failure -----------------------------------------------


async def test_a_retried_page_still_counts_every_enrollment(
    pool: AsyncConnectionPool[Any],
    world: World,
    time_skipping_env: WorkflowEnvironment,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    template = await brand_template(pool)
    await make_sequence(pool, [Step(template, 30 * DAY)], entry=INACTIVE_30)
    people = [await quiet_contact(pool, phone(i), engaged=40 + i) for i in range(5)]
    start = EnrollmentClient.start
    calls = 0

    async def flaky_start(self: EnrollmentClient, request: StartRequest) -> str:
        nonlocal calls
        calls += 1
        if calls == 3:  # Temporal refuses one start: the page fails and is retried
            raise RuntimeError("the workflow service is briefly unavailable")
        return await start(self, request)

    monkeypatch.setattr(EnrollmentClient, "start", flaky_start)
    async with worker(time_skipping_env.client, pool) as run:
        summary = await scan(time_skipping_env, run)
        async with pool.connection() as conn:  # before the worker's clean-up cancels them
            cur = await conn.execute(
                "SELECT contact_id, count(*) FROM enrollments WHERE status = 'active' GROUP BY 1"
            )
            assert dict(await cur.fetchall()) == {p.id: 1 for p in people}
    assert summary.enrolled == 5


# -- 6. the daily cap ---------------------------------------------------------------------


async def test_daily_cap_stops_the_target_early(
    pool: AsyncConnectionPool[Any], world: World, time_skipping_env: WorkflowEnvironment
) -> None:
    template = await brand_template(pool)
    sequence = await make_sequence(pool, [Step(template, 30 * DAY)], entry=INACTIVE_30)
    async with pool.connection() as conn:
        await conn.execute(
            "UPDATE locations SET daily_enrollment_cap = 3"
            " WHERE franchisor_id = 'acme' AND id = 'downtown'"
        )
    people = [await quiet_contact(pool, phone(i), engaged=40 + i) for i in range(10)]

    async with worker(time_skipping_env.client, pool) as run:
        summary = await scan(time_skipping_env, run, page_size=2)

    rows = await enrolled_contacts(pool)
    assert len(rows) == 3 and all(n == 1 for n in rows.values())
    # the quietest first (pages follow the last engagement): 49 and 48 days, then 47 or 46
    assert {people[9].id, people[8].id} < set(rows) < {p.id for p in people[6:]}
    assert summary.enrolled == 3
    # downtown: a page of 2, then a page where the 4th contact hits the cap, then stop (5
    # pages without the cap); uptown: one empty page
    assert summary.pages == 3
    assert summary.refused == 1
    refused = await refusals(pool)
    assert [(s, p, r) for _, s, p, r in refused] == [(sequence.id, "scan", "DAILY_CAP")]
    assert refused[0][0] in {p.id for p in people} - set(rows)


# -- 7. continue-as-new -------------------------------------------------------------------


async def test_a_long_scan_continues_as_new_and_enrolls_everyone_once(
    pool: AsyncConnectionPool[Any], world: World, time_skipping_env: WorkflowEnvironment
) -> None:
    template = await brand_template(pool)
    await make_sequence(pool, [Step(template, 30 * DAY)], entry=INACTIVE_30)
    people = [await consenting_contact(pool, phone(i)) for i in range(15)]
    # one statement: every contact has the same measure, so the keyset's id breaks the ties
    await backdate(pool, [p.id for p in people], reply=40)
    recent = await quiet_contact(pool, phone(20), engaged=2)

    async with worker(time_skipping_env.client, pool) as run:
        handle = await time_skipping_env.client.start_workflow(
            InactivityScanWorkflow.run,
            ScanInput(page_size=2, history_limit=30),
            id=f"scan-{uuid.uuid4().hex[:8]}",
            task_queue=run.task_queue,
        )
        summary = await handle.result()
        first_run = await time_skipping_env.client.get_workflow_handle(
            handle.id, run_id=handle.result_run_id
        ).describe()

    assert first_run.status == WorkflowExecutionStatus.CONTINUED_AS_NEW
    assert summary.runs > 1
    assert summary.enrolled == 15
    assert summary.pages == 9  # 8 pages of 2 at downtown (the last one short), 1 at uptown
    rows = await enrolled_contacts(pool)
    assert rows == Counter({p.id: 1 for p in people})
    assert recent.id not in rows


# -- 8. the page query uses an index ------------------------------------------------------


class _Recorder:
    """A connection stand-in that records the page query and its parameters."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.calls: list[tuple[str, dict[str, Any]]] = []

    async def execute(self, query: str, params: dict[str, Any]) -> Any:
        self.calls.append((query, params))
        return await self.conn.execute(query, params)


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


async def _plan(conn: Any, target: InactivityTarget, after: Any) -> list[dict[str, Any]]:
    """The plan nodes of the page query exactly as quiet_contacts runs it (the same SQL with
    the same parameters, captured from a real call)."""
    recorder = _Recorder(conn)
    now = datetime.now(UTC)
    await quiet_contacts(recorder, target, now, after, 200)  # type: ignore[arg-type]
    [(query, params)] = recorder.calls
    assert query == _quiet_query(target)
    cur = await conn.execute("EXPLAIN (FORMAT JSON) " + query, params)
    row = await cur.fetchone()
    return list(_nodes(row[0][0]["Plan"]))


def _seq_scans_of_contacts(nodes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        n for n in nodes if n["Node Type"] == "Seq Scan" and n.get("Relation Name") == "contacts"
    ]


async def test_the_page_query_uses_an_index(pool: AsyncConnectionPool[Any], world: World) -> None:
    downtown = await bulk_contacts(pool, A_DOWNTOWN, [phone(i) for i in range(4000)])
    await bulk_contacts(pool, A_UPTOWN, [phone(10_000 + i) for i in range(800)])
    await bulk_contacts(pool, B_HARBOR, [phone(20_000 + i) for i in range(800)])
    async with pool.connection() as conn:
        # a spread of ages and signals: some never engaged, some quiet, some recent
        await conn.execute(
            "UPDATE contacts SET create_time = now() - (random() * 400) * interval '1 day',"
            " last_reply_at = CASE WHEN random() < 0.5 THEN now() - (random() * 200)"
            "   * interval '1 day' END,"
            " last_purchase_at = CASE WHEN random() < 0.3 THEN now() - (random() * 200)"
            "   * interval '1 day' END"
        )
        await conn.execute(
            "UPDATE contacts SET last_engaged_at = greatest(last_reply_at, last_purchase_at)"
        )
        await conn.execute("ANALYZE contacts")
        await conn.execute("ANALYZE enrollments")

        def target(signals: tuple[str, ...]) -> InactivityTarget:
            return InactivityTarget(
                "franchisors/acme/sequences/winback", "acme", "downtown", 30, signals, 0
            )

        every = target(ALL_SIGNALS)
        subsets = [target(("purchase",)), target(("reply", "click"))]
        # a later page too: the cursor of a first page
        names, cursor = await quiet_contacts(conn, every, datetime.now(UTC), None, 200)
        assert len(names) == 200 and cursor is not None and names[0].id in downtown
        for t, after in [(every, None), (every, cursor)] + [
            (s, a) for s in subsets for a in (None, (cursor[0], names[-1].id))
        ]:
            nodes = await _plan(conn, t, after)
            assert _seq_scans_of_contacts(nodes) == [], (t.signals, after, nodes)
            if t is every:
                assert "contacts_quiet" in {n.get("Index Name") for n in nodes}, nodes

        # without the index, the all-signals query reads the whole table
        async with conn.transaction(force_rollback=True):  # keeps the index
            await conn.execute("DROP INDEX contacts_quiet")
            nodes = await _plan(conn, every, None)
            assert _seq_scans_of_contacts(nodes), nodes


# -- 9. the Schedule (dev server) ---------------------------------------------------------


async def test_schedule_wiring_on_the_dev_server(
    pool: AsyncConnectionPool[Any], world: World, dev_env: WorkflowEnvironment
) -> None:
    template = await brand_template(pool)
    await make_sequence(pool, [Step(template, 30 * DAY)], entry=INACTIVE_30)
    quiet = await quiet_contact(pool, phone(1))
    client = dev_env.client

    async with worker(client, pool) as run:
        handle = await ensure_inactivity_scan(
            client, run.task_queue, every=timedelta(hours=1), jitter=timedelta(minutes=5)
        )
        try:
            assert handle.id == INACTIVITY_SCAN_ID
            described = await handle.describe()
            schedule = described.schedule
            assert schedule.policy.overlap == ScheduleOverlapPolicy.SKIP
            assert [i.every for i in schedule.spec.intervals] == [timedelta(hours=1)]
            assert schedule.spec.jitter == timedelta(minutes=5)
            action = schedule.action
            assert isinstance(action, ScheduleActionStartWorkflow)
            assert (action.workflow, action.task_queue) == ("InactivityScan", run.task_queue)

            again = await ensure_inactivity_scan(
                client, run.task_queue, every=timedelta(hours=6), jitter=timedelta(minutes=2)
            )
            assert again.id == INACTIVITY_SCAN_ID
            updated = (await handle.describe()).schedule
            assert [i.every for i in updated.spec.intervals] == [timedelta(hours=6)]
            assert updated.spec.jitter == timedelta(minutes=2)
            assert updated.policy.overlap == ScheduleOverlapPolicy.SKIP

            await handle.trigger()
            deadline = time.monotonic() + 30
            enrolled: Counter[str] = Counter()
            workflow_id = ""
            while time.monotonic() < deadline:
                enrolled = await enrolled_contacts(pool)
                actions = (await handle.describe()).info.recent_actions
                if actions:
                    workflow_id = actions[-1].action.workflow_id
                if enrolled and workflow_id:
                    break
                await asyncio.sleep(0.5)
            assert enrolled == Counter({quiet.id: 1})
            summary = await asyncio.wait_for(
                client.get_workflow_handle(workflow_id, result_type=ScanSummary).result(), 30
            )
            assert (summary.enrolled, summary.refused) == (1, 0)
        finally:
            await handle.delete()


# -- 10. 200,000 contacts -----------------------------------------------------------------

BIG = 200_000
BATCH = 20_000
QUIET = 1_000


async def test_a_scan_over_200k_contacts_enrolls_the_1000_quiet_ones(
    pool: AsyncConnectionPool[Any], world: World, time_skipping_env: WorkflowEnvironment
) -> None:
    template = await brand_template(pool)
    await make_sequence(pool, [Step(template, 30 * DAY)], entry=INACTIVE_30)
    began = time.perf_counter()
    ids: list[str] = []
    for start in range(0, BIG, BATCH):
        ids += await bulk_contacts(
            pool, A_DOWNTOWN, [phone(i) for i in range(start, start + BATCH)]
        )
    quiet = ids[:: BIG // QUIET]
    assert len(quiet) == QUIET
    await backdate(pool, quiet, created=90)  # never engaged, added 90 days ago
    recent = ids[1 :: BIG // QUIET]
    await backdate(pool, recent, created=90, purchase=3)  # old, but bought 3 days ago
    async with pool.connection() as conn:
        await conn.execute("ANALYZE contacts")
        cur = await conn.execute(
            "SELECT count(*) FROM contacts WHERE location_id = 'downtown'"
            " AND consent_state = 'granted'"
        )
        assert await cur.fetchone() == (BIG,)
    inserted = time.perf_counter() - began

    async with worker(time_skipping_env.client, pool) as run:
        began = time.perf_counter()
        summary = await scan(time_skipping_env, run)
        scanned = time.perf_counter() - began

    print(
        f"\n200k scan: insert {inserted:.1f} s; scan {scanned:.1f} s,"
        f" {summary.enrolled} enrolled, {summary.enrolled / scanned:.0f} enrollments/s,"
        f" {summary.pages} pages, {summary.runs} run(s)"
    )
    assert summary.enrolled == QUIET
    rows = await enrolled_contacts(pool)
    assert rows == Counter({cid: 1 for cid in quiet})
