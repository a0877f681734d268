"""Duplicates are found without PostgreSQL raising (issue 13 item 7): a caught unique violation
makes the server log `ERROR: duplicate key ...` with `DETAIL: Key (..., phone_e164)=(...,
+1...)`, i.e. personal data. Every create that can meet an existing row answers exactly as
before (ALREADY_EXISTS and its reason), writes nothing, and leaves no error in the server log.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from server.embedded import NO_PERSONAL_DATA_IN_LOG
from tenants.contacts import contacts
from tenants.contacts.model import Contact, ContactInput
from tenants.content import templates
from tenants.core.errors import AlreadyExists, NotFound
from tenants.core.names import TenantScope
from tenants.enrollment.entry import decide_entry, insert_enrollment
from tenants.inbound.opt_outs import _suppressed_stranger
from tenants.org import api_keys, franchisors, locations, staff
from tenants.org.access import Role
from tenants.sequences import definitions as sequences
from tenants.sequences.model import Definition, Step
from tests.enrollment_support import brand_template, consenting_contact, make_sequence
from tests.inbound_support import row_count
from tests.support import A_DOWNTOWN, A_UPTOWN, OPERATOR, A, World
from tests.waiting import eventually

PHONE = "+12125550177"
OTHER_PHONE = "+12125550178"


@pytest.fixture
def server_log(postgres_admin_url: str) -> Path:
    if os.environ.get("REENGAGE_TEST_DATABASE_URL"):
        pytest.skip("the server log of an external PostgreSQL is not readable here")
    with psycopg.connect(postgres_admin_url) as conn:
        row = conn.execute("SHOW data_directory").fetchone()
    assert row is not None
    return Path(row[0]) / "server.log"  # where server.embedded sends the server's output


def _size(log: Path) -> int:
    return log.stat().st_size


def _written_since(log: Path, start: int) -> str:
    with log.open("rb") as f:
        f.seek(start)
        return f.read().decode("utf-8", "replace")


@asynccontextmanager
async def no_new_server_errors(
    log: Path, pool: AsyncConnectionPool[Any], *secrets: str
) -> AsyncIterator[None]:
    """Fails when the server logs an error (or any of `secrets`) inside the block. The block's
    lines are in the log once a marker logged after it is (however slow the machine)."""
    start = _size(log)
    yield
    marker = f"reengage-test-marker-{uuid.uuid4().hex}"
    async with pool.connection() as conn:
        await conn.execute(f"DO $$ BEGIN RAISE LOG '{marker}'; END $$")

    async def marked() -> bool:
        return marker in _written_since(log, start)

    await eventually(marked, 30, what="the marker in the server log")
    written = _written_since(log, start)
    errors = [line for line in written.splitlines() if "ERROR" in line or "DETAIL" in line]
    assert errors == []
    for secret in secrets:
        assert secret not in written


async def refused(call: Awaitable[Any]) -> AlreadyExists:
    with pytest.raises(AlreadyExists) as caught:
        await call
    return caught.value


def test_the_embedded_server_keeps_details_and_statements_out_of_its_log() -> None:
    assert "log_error_verbosity=terse" in NO_PERSONAL_DATA_IN_LOG
    assert "log_min_error_statement=panic" in NO_PERSONAL_DATA_IN_LOG


async def test_a_duplicate_contact_is_refused_as_before_without_an_error_in_the_server_log(
    pool: AsyncConnectionPool[Any], world: World, server_log: Path
) -> None:
    async with pool.connection() as conn:
        first = await contacts.create_contact(
            conn, OPERATOR, A_DOWNTOWN, "dana", ContactInput(phone_number=PHONE)
        )
    before = await row_count(pool, "contacts"), await row_count(pool, "audit_log")
    async with no_new_server_errors(server_log, pool, PHONE, PHONE[2:]), pool.connection() as conn:
        same_phone = await refused(
            contacts.create_contact(
                conn, OPERATOR, A_DOWNTOWN, "", ContactInput(phone_number=PHONE)
            )
        )
        same_id = await refused(
            contacts.create_contact(
                conn, OPERATOR, A_DOWNTOWN, "dana", ContactInput(phone_number=OTHER_PHONE)
            )
        )
        # an opt-out from a number the location knows finds that contact
        location = await locations.get_location(conn, OPERATOR, A_DOWNTOWN)
        found = await _suppressed_stranger(conn, location, PHONE, 1)
    assert same_phone.reason == "PHONE_NUMBER_TAKEN"
    assert same_id.reason == "RESOURCE_ALREADY_EXISTS"
    assert same_id.message == "franchisors/acme/locations/downtown/contacts/dana already exists"
    assert found is not None and found.name == first.name
    assert (await row_count(pool, "contacts"), await row_count(pool, "audit_log")) == before
    # another location may hold the same number
    async with pool.connection() as conn:
        await contacts.create_contact(
            conn, OPERATOR, A_UPTOWN, "", ContactInput(phone_number=PHONE)
        )


async def test_two_concurrent_creates_of_one_contact_one_wins_the_other_is_refused(
    pool: AsyncConnectionPool[Any], world: World, server_log: Path
) -> None:
    async def create() -> Any:
        async with pool.connection() as conn:
            return await contacts.create_contact(
                conn, OPERATOR, A_DOWNTOWN, "", ContactInput(phone_number=PHONE)
            )

    async with no_new_server_errors(server_log, pool, PHONE, PHONE[2:]):
        results = await asyncio.gather(*(create() for _ in range(6)), return_exceptions=True)
    created = [r for r in results if isinstance(r, Contact)]
    refusals = [r for r in results if isinstance(r, AlreadyExists)]
    assert len(created) == 1
    assert len(refusals) == 5
    assert {r.reason for r in refusals} == {"PHONE_NUMBER_TAKEN"}
    assert await row_count(pool, "contacts") == 1


async def test_every_other_create_meets_its_duplicate_without_an_error_in_the_server_log(
    pool: AsyncConnectionPool[Any], world: World, server_log: Path
) -> None:
    tenants_before = await row_count(pool, "franchisors"), await row_count(pool, "locations")
    async with pool.connection() as conn:
        await staff.create_staff_member(
            conn, OPERATOR, A, "ana", "Ana", Role.FRANCHISOR_ADMIN, "U0123ABCD", ""
        )
        brand = await templates.create_template(
            conn,
            OPERATOR,
            A,
            "hello",
            templates.TemplateInput(
                "Hello", "Hi from Acme! Reply STOP to opt out", templates.LockMode.EDITABLE
            ),
            "http://localhost:8080",
        )
        override = templates.TemplateInput(
            "Mine", "Hi from downtown! Reply STOP to opt out", override_of=brand.name.name
        )
        await templates.create_template(
            conn, OPERATOR, A_DOWNTOWN, "mine", override, "http://localhost:8080"
        )
        await sequences.create_sequence(
            conn,
            OPERATOR,
            A,
            "winback",
            "Win back",
            Definition(steps=(Step(brand.name.name, 0),)),
        )
        await api_keys.create_api_key(
            conn, OPERATOR, A, "reporting", "Reports", Role.FRANCHISOR_VIEWER
        )
    counts = {
        t: await row_count(pool, t)
        for t in ("staff_members", "templates", "template_revisions", "sequences", "api_keys")
    }
    audited = await row_count(pool, "audit_log")

    checks: list[tuple[str, Callable[[Any], Awaitable[Any]], str]] = [
        (
            "franchisor",
            lambda c: franchisors.create_franchisor(c, OPERATOR, "acme", "Acme again"),
            "RESOURCE_ALREADY_EXISTS",
        ),
        (
            "location",
            lambda c: locations.create_location(
                c, OPERATOR, A, "downtown", locations.LocationInput("Again", "America/New_York")
            ),
            "RESOURCE_ALREADY_EXISTS",
        ),
        (
            "sender number",  # downtown's sender number, asked for by a new location
            lambda c: locations.create_location(
                c,
                OPERATOR,
                A,
                "midtown",
                locations.LocationInput(
                    "Midtown", "America/New_York", sender_phone_numbers=("+12125550101",)
                ),
            ),
            "SENDER_NUMBER_TAKEN",
        ),
        (
            "staff id",
            lambda c: staff.create_staff_member(
                c, OPERATOR, A, "ana", "Ana B", Role.FRANCHISOR_VIEWER, "", ""
            ),
            "RESOURCE_ALREADY_EXISTS",
        ),
        (
            "staff Slack user",
            lambda c: staff.create_staff_member(
                c, OPERATOR, A, "bob", "Bob", Role.FRANCHISOR_VIEWER, "U0123ABCD", ""
            ),
            "SLACK_USER_TAKEN",
        ),
        (
            "template",
            lambda c: templates.create_template(
                c,
                OPERATOR,
                A,
                "hello",
                templates.TemplateInput("Hello", "Hi again! Reply STOP to opt out"),
                "http://localhost:8080",
            ),
            "RESOURCE_ALREADY_EXISTS",
        ),
        (
            "template override",
            lambda c: templates.create_template(
                c, OPERATOR, A_DOWNTOWN, "mine2", override, "http://localhost:8080"
            ),
            "OVERRIDE_EXISTS",
        ),
        (
            "sequence",
            lambda c: sequences.create_sequence(
                c,
                OPERATOR,
                A,
                "winback",
                "Again",
                Definition(steps=(Step(brand.name.name, 0),)),
            ),
            "RESOURCE_ALREADY_EXISTS",
        ),
        (
            "API key",
            lambda c: api_keys.create_api_key(
                c, OPERATOR, A, "reporting", "Again", Role.FRANCHISOR_VIEWER
            ),
            "RESOURCE_ALREADY_EXISTS",
        ),
    ]
    async with no_new_server_errors(server_log, pool, "+12125550101", "2125550101"):
        for what, create, reason in checks:
            async with pool.connection() as conn:
                assert (await refused(create(conn))).reason == reason, what
        async with pool.connection() as conn:
            with pytest.raises(NotFound):
                await locations.create_location(
                    conn,
                    OPERATOR,
                    TenantScope("nobody"),
                    "x",
                    locations.LocationInput("X", "America/New_York"),
                )
    assert {t: await row_count(pool, t) for t in counts} == counts
    assert (
        await row_count(pool, "franchisors"),
        await row_count(pool, "locations"),
    ) == tenants_before
    assert await row_count(pool, "audit_log") == audited


async def test_a_second_enrollment_of_a_contact_finds_the_running_one_without_an_error(
    pool: AsyncConnectionPool[Any], world: World, server_log: Path
) -> None:
    template = await brand_template(pool)
    winback = await make_sequence(pool, [Step(template, 0)])
    other = await make_sequence(pool, [Step(template, 0)], sid="other")
    contact = await consenting_contact(pool, phone=PHONE)
    now = datetime.now(UTC)
    async with pool.connection() as conn:
        entry = await decide_entry(conn, OPERATOR, contact, winback, now)
        other_entry = await decide_entry(conn, OPERATOR, contact, other, now)
        first, created = await insert_enrollment(conn, OPERATOR, entry, now)
    assert created
    async with no_new_server_errors(server_log, pool, PHONE, PHONE[2:]), pool.connection() as conn:
        again, created_again = await insert_enrollment(conn, OPERATOR, entry, now)
        running = await refused(insert_enrollment(conn, OPERATOR, other_entry, now))
    assert (again.id, created_again) == (first.id, False)
    assert running.reason == "ENROLLMENT_RUNNING"
    assert running.metadata == {"enrollment": first.name.name}
    assert await row_count(pool, "enrollments") == 1
