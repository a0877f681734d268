"""An enrollment's story after it ends (issue 15, point 7): the history kept in the read model
and answered by GetEnrollment and ListEnrollments, the `ReengageEnrollmentId` search attribute
that finds its workflow, and `reengage enrollments show|list` printing it with local times.

The real gRPC server, PostgreSQL, and the enrollment workflows run by a real worker on the
Temporal time-skipping server (the search attribute on the dev server, whose visibility store
answers list queries)."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import grpc
import pytest
from psycopg_pool import AsyncConnectionPool
from temporalio.client import WorkflowExecutionStatus
from temporalio.converter import DataConverter
from temporalio.testing import WorkflowEnvironment

from reengage.v1 import enrollments_pb2 as pb
from reengage.v1 import enrollments_pb2_grpc
from server.cli.display import local_time
from tenants.core.names import ChildName
from tenants.core.vocabulary import EnrollmentStatus
from tenants.enrollment.records import workflow_id_for
from tenants.sequences.model import Step
from tests.cli_support import run_cli
from tests.enrollment_service_support import terminate_all
from tests.enrollment_support import (
    DAY,
    Running,
    brand_template,
    consenting_contact,
    end_leftover_run,
    enrollment_server,
    make_sequence,
    morning_zone,
    running_worker,
    start_enrollment,
)
from tests.support import A_DOWNTOWN, A_UPTOWN, World
from tests.waiting import eventually
from workflows import search_attributes as sa
from workflows.enrollment_types import Transition

DOWNTOWN = A_DOWNTOWN.name
NEW_YORK = ZoneInfo("America/New_York")  # downtown's zone (tests.support)
LONG = 365 * DAY
ENROLLMENT_ID = re.compile(r"\be[0-9a-f]{20}\b")
DEFAULT = DataConverter.default


@dataclass
class Stack:
    target: str
    stub: enrollments_pb2_grpc.EnrollmentServiceStub
    world: World
    env: WorkflowEnvironment
    pool: AsyncConnectionPool[Any]
    running: Running
    capsys: pytest.CaptureFixture[str]

    async def get(self, name: str) -> pb.Enrollment:
        return await self.stub.GetEnrollment(
            pb.GetEnrollmentRequest(name=name), metadata=self.world.metadata("a_admin")
        )

    async def list(self, **request: Any) -> list[pb.Enrollment]:
        request.setdefault("parent", DOWNTOWN)
        found = await self.stub.ListEnrollments(
            pb.ListEnrollmentsRequest(**request), metadata=self.world.metadata("a_admin")
        )
        return list(found.enrollments)

    async def enroll(self, contact: ChildName, sequence: ChildName) -> pb.Enrollment:
        return await self.stub.Enroll(
            pb.EnrollRequest(contact=contact.name, sequence=sequence.name),
            metadata=self.world.metadata("a_admin"),
        )

    async def reengage(self, *argv: str, who: str = "a_admin") -> tuple[int, str, str]:
        """`reengage enrollments …` in process: (exit code, stdout, stderr)."""
        key = self.world.tokens.get(who, who)
        return await run_cli(self.capsys, self.target, key, "enrollments", *argv)

    async def replied(self, phone: str = "+12125550142", first_name: str = "Dana") -> pb.Enrollment:
        """An enrollment whose step 0 was sent and whose contact then replied: ended, exited
        with `replied`, its workflow closed."""
        template = await brand_template(self.pool, f"t{phone[-4:]}")
        sequence = await make_sequence(
            self.pool, [Step(template, 0), Step(template, LONG)], f"s{phone[-4:]}"
        )
        zone = await morning_zone(self.env)  # step 0 goes out at once
        contact = await consenting_contact(self.pool, phone, first_name, time_zone=zone)
        name = (await self.enroll(contact, sequence)).name
        for _ in range(48):  # the window may open later: skip time until step 0 is sent
            if any(" step 0 sent " in h for h in (await self.get(name)).history):
                break
            await asyncio.sleep(0.2)
            await self.env.sleep(timedelta(hours=2))
        else:
            raise AssertionError(f"{name}: step 0 was never sent")
        workflow_id = workflow_id_for(contact.scope, contact.id)
        await self.running.workflows.signal_reply(workflow_id, f"SM-reply-{phone}")

        async def ended() -> pb.Enrollment | None:
            found = await self.get(name)
            return found if found.HasField("end_time") else None

        done = await eventually(ended, what=f"{name} to end")
        handle = self.env.client.get_workflow_handle(workflow_id)

        async def closed() -> bool:
            return (await handle.describe()).status != WorkflowExecutionStatus.RUNNING

        await eventually(closed, what=f"the workflow of {name} to close")
        return done


@pytest.fixture
async def stack(
    time_skipping_env: WorkflowEnvironment,
    pool: AsyncConnectionPool[Any],
    world: World,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> AsyncIterator[Stack]:
    for variable in ("REENGAGE_DATA_DIR", "XDG_CONFIG_HOME", "XDG_STATE_HOME"):
        monkeypatch.setenv(variable, str(tmp_path / variable.lower()))  # no real stack's
    monkeypatch.delenv("REENGAGE_API_KEY", raising=False)
    monkeypatch.setenv("COLUMNS", "80")  # the CLI's rich console is 80 columns wide
    async with running_worker(time_skipping_env.client, pool) as running:
        try:
            async with (
                enrollment_server(pool, running.workflows) as target,
                grpc.aio.insecure_channel(target) as channel,
            ):
                yield Stack(
                    target,
                    enrollments_pb2_grpc.EnrollmentServiceStub(channel),
                    world,
                    time_skipping_env,
                    pool,
                    running,
                    capsys,
                )
        finally:
            await terminate_all(time_skipping_env, pool)


# -- the history kept in the read model ----------------------------------------------------------


async def test_an_enrollment_that_ended_keeps_its_history(stack: Stack) -> None:
    ended = await stack.replied()
    assert ended.status == pb.ENROLLMENT_STATUS_EXITED and ended.exit_reason == "replied"
    texts = [line.split(" ", 1)[1] for line in ended.history]
    assert texts[0].startswith("step 0 sent (message "), ended.history
    assert texts[-1] == "exit: replied", ended.history
    # each line starts with its UTC instant
    assert all(
        datetime.fromisoformat(h.split(" ")[0]).utcoffset() == timedelta(0) for h in ended.history
    )

    # the workflow has closed: the record answers, with the history it kept
    again = await stack.get(ended.name)
    assert list(again.history) == list(ended.history)
    listed = await stack.list(status=pb.ENROLLMENT_STATUS_EXITED)
    assert [(e.name, list(e.history)) for e in listed] == [(ended.name, list(ended.history))]
    async with stack.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT history FROM enrollments WHERE id = %s", (ended.name.rsplit("/", 1)[-1],)
        )
        row = await cur.fetchone()
    assert row is not None and row[0] == list(ended.history)


async def test_a_running_enrollment_is_listed_without_a_history_and_keeps_none_yet(
    stack: Stack,
) -> None:
    """Only the final transition carries the history: a running one's is read live."""
    template = await brand_template(stack.pool)
    sequence = await make_sequence(stack.pool, [Step(template, LONG)])
    running = await stack.enroll(await consenting_contact(stack.pool), sequence)
    await stack.get(running.name)
    async with stack.pool.connection() as conn:
        cur = await conn.execute("SELECT history FROM enrollments")
        assert await cur.fetchall() == [(None,)]
    assert [list(e.history) for e in await stack.list()] == [[]]


async def test_an_enrollment_ended_before_histories_were_kept_reads_its_closed_run(
    stack: Stack,
) -> None:
    ended = await stack.replied()
    async with stack.pool.connection() as conn:  # as a row from before migration 0014
        await conn.execute("UPDATE enrollments SET history = NULL")
    again = await stack.get(ended.name)
    assert list(again.history) == list(ended.history)
    assert again.status == pb.ENROLLMENT_STATUS_EXITED and again.exit_reason == "replied"


def test_a_transition_recorded_before_it_carried_the_history_still_decodes() -> None:
    """A record_transition input in a history written by an older worker has no `history`:
    it decodes as None, which leaves the kept history as it is."""
    [payload] = DEFAULT.payload_converter.to_payloads(
        [{"enrollment_id": "e1", "status": "exited", "step_index": 1, "exit_reason": "replied"}]
    )
    [old] = DEFAULT.payload_converter.from_payloads([payload], [Transition])
    assert old.status is EnrollmentStatus.EXITED and old.history is None
    final = Transition("e1", EnrollmentStatus.EXITED, 1, "", "replied", ["t exit: replied"])
    [wire] = DEFAULT.payload_converter.to_payloads([final])
    assert json.loads(wire.data)["history"] == ["t exit: replied"]


# -- the search attribute -----------------------------------------------------------------------


async def test_the_temporal_ui_finds_an_enrollment_by_its_id(
    dev_env: WorkflowEnvironment, pool: AsyncConnectionPool[Any], world: World
) -> None:
    template = await brand_template(pool)
    sequence = await make_sequence(pool, [Step(template, LONG)])
    dana = await consenting_contact(pool, "+12125550142", "Dana")
    lee = await consenting_contact(pool, "+12125550143", "Lee")
    async with running_worker(dev_env.client, pool) as running:
        enrollments = [
            await start_enrollment(pool, running, contact, sequence) for contact in (dana, lee)
        ]
        try:
            for enrollment in enrollments:
                query = f'{sa.ENROLLMENT_ID.name}="{enrollment.id}"'

                async def found(query: str = query) -> list[str] | None:
                    ids = [w.id async for w in dev_env.client.list_workflows(query)]
                    return ids or None  # visibility follows the start a moment later

                assert await eventually(found, what=query) == [enrollment.workflow_id]
                [listed] = [w async for w in dev_env.client.list_workflows(query)]
                assert listed.typed_search_attributes.get(sa.ENROLLMENT_ID) == enrollment.id
                assert listed.typed_search_attributes.get(sa.LOCATION_ID) == "downtown"
        finally:
            for enrollment in enrollments:
                await end_leftover_run(
                    dev_env.client, running.workflows, enrollment.workflow_id, enrollment.run_id
                )


# -- reengage enrollments show ----------------------------------------------------------------


def lines_of(out: str) -> list[str]:
    return [line.rstrip() for line in out.splitlines()]


async def test_show_prints_a_replied_enrollments_story_in_the_locations_time(
    stack: Stack,
) -> None:
    ended = await stack.replied()
    bare = ended.name.rsplit("/", 1)[-1]
    code, out, err = await stack.reengage("show", bare)
    assert code == 0, err
    lines = lines_of(out)
    assert all(len(line) <= 80 for line in lines), out

    def value(label: str) -> str:
        line = next(line for line in lines if line.startswith(f"{label} "))
        return line.removeprefix(label).strip()

    assert value("status") == "exited"
    assert value("exit reason") == "replied"
    assert value("current step") == "1"
    assert value("enrolled") == local_time(ended.enroll_time.ToDatetime(), NEW_YORK)
    assert value("ended") == local_time(ended.end_time.ToDatetime(), NEW_YORK)
    assert "(" in value("ended") and value("ended").endswith(" UTC)")  # UTC beside local
    assert value("enrollment") == bare and value("location") == DOWNTOWN
    assert value("contact") == ended.contact.rsplit("/", 1)[-1]
    assert value("sequence") == ended.sequence
    history = lines[lines.index("history") + 1 :]
    assert len(history) == len(ended.history), out
    for shown, kept in zip(history, ended.history, strict=True):
        at, text = kept.split(" ", 1)
        local = local_time(datetime.fromisoformat(at), NEW_YORK, seconds=True)
        assert shown.split() == [*local.split(), *text.split()], (shown, kept)
        assert at not in shown  # the ISO instant is reformatted

    # the full name shows the same
    code, again, err = await stack.reengage("show", ended.name)
    assert code == 0 and again == out, err


async def test_show_of_an_unknown_id_fails_with_one_clear_line(stack: Stack) -> None:
    code, out, err = await stack.reengage("show", "enothere")
    assert code == 1 and out == ""
    assert err.strip().splitlines() == [
        "reengage: enrollment: no enrollment 'enothere' in the franchisors and locations your"
        " key can see"
    ]
    code, out, err = await stack.reengage("show", "enothere", "--location", A_UPTOWN.name)
    assert code == 1
    assert err.strip() == f"reengage: enrollment: no enrollment 'enothere' in {A_UPTOWN.name}"


async def test_show_of_a_running_enrollment_has_its_next_wake_and_live_history(
    stack: Stack,
) -> None:
    template = await brand_template(stack.pool)
    sequence = await make_sequence(stack.pool, [Step(template, LONG)])
    running = await stack.enroll(await consenting_contact(stack.pool), sequence)
    live = await eventually(
        lambda: _with_wake(stack, running.name), what="the first wake to be recorded"
    )
    code, out, err = await stack.reengage("show", running.name.rsplit("/", 1)[-1])
    assert code == 0, err
    out = "\n".join(lines_of(out))
    assert re.search(r"^status\s+active$", out, re.M), out
    wake = local_time(live.next_wake_time.ToDatetime(), NEW_YORK)
    assert re.search(rf"^next wake\s+{re.escape(wake)}$", out, re.M), out
    assert re.search(r"^history\s+\(none\)$", out, re.M), out
    assert "ended" not in out


async def _with_wake(stack: Stack, name: str) -> pb.Enrollment | None:
    found = await stack.get(name)
    return found if found.HasField("next_wake_time") else None


# -- reengage enrollments list ----------------------------------------------------------------


async def test_list_shows_a_locations_enrollments_filtered_within_80_columns(
    stack: Stack,
) -> None:
    ended = await stack.replied()
    template = await brand_template(stack.pool, "long")
    waiting = await make_sequence(stack.pool, [Step(template, LONG)], "waiting")
    running = [
        (await stack.enroll(await consenting_contact(stack.pool, f"+1212555016{i}"), waiting))
        for i in range(3)
    ]
    uptown = await consenting_contact(stack.pool, "+13105550150", "Ana", location=A_UPTOWN)
    elsewhere = await stack.enroll(uptown, waiting)

    def ids(out: str) -> list[str]:
        return ENROLLMENT_ID.findall(out)

    def last(e: pb.Enrollment) -> str:
        return e.name.rsplit("/", 1)[-1]

    code, out, err = await stack.reengage("list", "--location", DOWNTOWN)
    assert code == 0, err
    assert all(len(line) <= 80 for line in lines_of(out)), out
    assert sorted(ids(out)) == sorted(last(e) for e in [ended, *running])
    assert last(elsewhere) not in out
    assert f"4 enrollments at {DOWNTOWN}" in out

    code, out, err = await stack.reengage("list", "--location", DOWNTOWN, "--status", "exited")
    assert code == 0, err
    assert ids(out) == [last(ended)] and "replied" in out
    code, out, err = await stack.reengage("list", "--location", DOWNTOWN, "--sequence", "waiting")
    assert code == 0, err
    assert sorted(ids(out)) == sorted(last(e) for e in running)
    code, out, err = await stack.reengage("list", "--location", DOWNTOWN, "--limit", "2")
    assert code == 0, err
    assert len(ids(out)) == 2 and f"2 enrollments at {DOWNTOWN}" in out
    code, out, err = await stack.reengage("list", "--location", DOWNTOWN, "--status", "paused")
    assert code == 0 and out.strip() == f"no paused enrollments at {DOWNTOWN}", err

    code, out, err = await stack.reengage("list", "--location", "downtown")
    assert code == 1
    assert err.strip() == (
        "reengage: --location: 'downtown' is not a location name (franchisors/{f}/locations/{l})"
    )
