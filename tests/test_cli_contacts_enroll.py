"""Finding a contact by phone number, and enrolling contacts from the command line.

Over the real gRPC server: ListContacts' phone_number filter takes a number in any format a user
types (parsed with the location's country as default, as writes parse it), refuses one that
does not parse, and binds its page tokens. Then the CLI's own commands (`reengage contacts list`,
`reengage contacts show`, `reengage enroll`) against the real server with enrollment workflows
on the Temporal time-skipping server run by a real worker, their tables at 80 columns.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from psycopg_pool import AsyncConnectionPool
from temporalio.testing import WorkflowEnvironment

from reengage.v1 import contacts_pb2 as cpb
from reengage.v1 import enrollments_pb2 as epb
from reengage.v1 import enrollments_pb2_grpc
from tenants.contacts import contacts
from tenants.contacts.model import ContactInput
from tenants.core.names import ChildName, TenantScope
from tenants.org import locations
from tenants.sequences.model import Step
from tests.access_matrix import IA, refused
from tests.cli_support import run_cli
from tests.contact_sequence_fixtures import contact_stub, ids, new_contact, revoke
from tests.enrollment_service_support import terminate_all
from tests.enrollment_support import (
    DAY,
    brand_template,
    consenting_contact,
    enrollment_server,
    make_sequence,
    running_worker,
)
from tests.support import A_DOWNTOWN, A_UPTOWN, OPERATOR, A, World

DANA = "+12125550142"
LEE = "+12125550143"
TYPED = ("(212) 555-0142", "212-555-0142", "+1 212 555 0142")
DOWNTOWN = A_DOWNTOWN.name
LONDON = TenantScope("acme", "london")
WIDTH = 80

# -- ListContacts' phone filter over gRPC ---------------------------------------------------------


async def listed(channel: grpc.aio.Channel, world: World, **request: Any) -> list[str]:
    page = await contact_stub(channel).ListContacts(
        cpb.ListContactsRequest(**request), metadata=world.metadata("a_downtown_staff")
    )
    return ids(list(page.contacts))


async def test_a_contact_is_found_by_its_phone_number_in_any_format(
    channel: grpc.aio.Channel, world: World
) -> None:
    await new_contact(channel, world, contact_id="c-dana", phone_number=DANA)
    await new_contact(channel, world, contact_id="c-lee", phone_number=LEE)
    # the same number at another location is another contact, not listed at downtown
    await new_contact(channel, world, parent=A_UPTOWN, contact_id="c-dana-up", phone_number=DANA)
    for typed in (*TYPED, DANA):
        assert await listed(channel, world, parent=DOWNTOWN, phone_number=typed) == ["c-dana"]
    assert await listed(channel, world, parent=DOWNTOWN, phone_number="(212) 555-0199") == []
    assert await listed(channel, world, parent=DOWNTOWN) == ["c-dana", "c-lee"]
    # with the other filters
    assert (
        await listed(
            channel,
            world,
            parent=DOWNTOWN,
            phone_number=TYPED[0],
            opt_out=cpb.OPT_OUT_FILTER_OPTED_OUT,
        )
        == []
    )
    await contact_stub(channel).RecordConsent(
        cpb.RecordConsentRequest(
            contact=f"{DOWNTOWN}/contacts/c-dana",
            evidence=revoke(datetime.now(UTC) - timedelta(days=1)),
        ),
        metadata=world.metadata("a_admin"),
    )
    assert await listed(
        channel, world, parent=DOWNTOWN, phone_number=TYPED[1], opt_out=cpb.OPT_OUT_FILTER_OPTED_OUT
    ) == ["c-dana"]


async def test_a_number_is_read_with_the_locations_country_as_writes_read_it(
    channel: grpc.aio.Channel, world: World, pool: AsyncConnectionPool[Any]
) -> None:
    async with pool.connection() as conn:
        await locations.create_location(
            conn,
            OPERATOR,
            A,
            "london",
            locations.LocationInput(
                display_name="London", time_zone="Europe/London", region_code="GB"
            ),
        )
        await contacts.create_contact(
            conn, OPERATOR, LONDON, "c-ana", ContactInput(phone_number="07400 123456")
        )
    admin = world.metadata("a_admin")
    for typed in ("07400 123456", "+44 7400 123456"):
        page = await contact_stub(channel).ListContacts(
            cpb.ListContactsRequest(parent=LONDON.name, phone_number=typed), metadata=admin
        )
        assert ids(list(page.contacts)) == ["c-ana"]
    # at a US location the same digits are no number at all
    await refused(
        contact_stub(channel).ListContacts(
            cpb.ListContactsRequest(parent=DOWNTOWN, phone_number="07400 123456"), metadata=admin
        ),
        IA,
        fields=("phone_number",),
    )


async def test_a_number_that_does_not_parse_is_an_invalid_argument_on_phone_number(
    channel: grpc.aio.Channel, world: World
) -> None:
    for typed in ("12", "not a number", "555-0142-0142-0142"):
        await refused(
            contact_stub(channel).ListContacts(
                cpb.ListContactsRequest(parent=DOWNTOWN, phone_number=typed),
                metadata=world.metadata("a_downtown_staff"),
            ),
            IA,
            fields=("phone_number",),
        )
    # who may not read the location's contacts learns nothing about the number
    await refused(
        contact_stub(channel).ListContacts(
            cpb.ListContactsRequest(parent=DOWNTOWN, phone_number="12"),
            metadata=world.metadata("b_admin"),
        ),
        grpc.StatusCode.PERMISSION_DENIED,
    )


async def test_a_page_token_continues_only_a_list_with_the_same_phone_filter(
    channel: grpc.aio.Channel, world: World
) -> None:
    for contact_id, phone in (("c-a", DANA), ("c-b", LEE), ("c-c", "+12125550144")):
        await new_contact(channel, world, contact_id=contact_id, phone_number=phone)
    stub = contact_stub(channel)
    admin = world.metadata("a_admin")
    first = await stub.ListContacts(
        cpb.ListContactsRequest(parent=DOWNTOWN, page_size=1), metadata=admin
    )
    assert ids(list(first.contacts)) == ["c-a"] and first.next_page_token
    for typed in (DANA, TYPED[0]):
        await refused(
            stub.ListContacts(
                cpb.ListContactsRequest(
                    parent=DOWNTOWN,
                    page_size=1,
                    page_token=first.next_page_token,
                    phone_number=typed,
                ),
                metadata=admin,
            ),
            IA,
            fields=("page_token",),
        )
    # the token still continues its own list
    second = await stub.ListContacts(
        cpb.ListContactsRequest(parent=DOWNTOWN, page_size=1, page_token=first.next_page_token),
        metadata=admin,
    )
    assert ids(list(second.contacts)) == ["c-b"]
    # a number is one contact: its list has no next page, so no token ever carries it
    only = await stub.ListContacts(
        cpb.ListContactsRequest(parent=DOWNTOWN, page_size=1, phone_number=TYPED[2]),
        metadata=admin,
    )
    assert ids(list(only.contacts)) == ["c-a"] and only.next_page_token == ""


# -- the CLI -------------------------------------------------------------------------------------


@dataclass
class Stack:
    target: str
    stub: enrollments_pb2_grpc.EnrollmentServiceStub
    world: World
    pool: AsyncConnectionPool[Any]
    capsys: pytest.CaptureFixture[str]

    async def reengage(self, *argv: str, who: str = "a_admin") -> tuple[int, str, str]:
        """Runs `reengage ...` against the server: (exit code, stdout, stderr)."""
        return await run_cli(self.capsys, self.target, self.world.tokens[who], *argv)

    async def cancel_running(self) -> None:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT franchisor_id, location_id, id FROM enrollments"
                " WHERE status IN ('active', 'paused', 'awaiting_approval')"
            )
            rows = await cur.fetchall()
        for f, loc, eid in rows:
            try:
                await self.stub.CancelEnrollment(
                    epb.CancelEnrollmentRequest(
                        name=f"franchisors/{f}/locations/{loc}/enrollments/{eid}"
                    ),
                    metadata=self.world.metadata("a_admin"),
                )
            except grpc.aio.AioRpcError as err:  # ended meanwhile
                assert err.code() == grpc.StatusCode.FAILED_PRECONDITION, err


@pytest.fixture
async def stack(
    time_skipping_env: WorkflowEnvironment,
    pool: AsyncConnectionPool[Any],
    world: World,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> AsyncIterator[Stack]:
    monkeypatch.setenv("REENGAGE_DATA_DIR", str(tmp_path))  # no demo key of a real `up`
    monkeypatch.delenv("REENGAGE_API_KEY", raising=False)
    monkeypatch.setenv("COLUMNS", str(WIDTH))  # every table must fit 80 columns
    async with running_worker(time_skipping_env.client, pool) as running:
        try:
            async with (
                enrollment_server(pool, running.workflows) as target,
                grpc.aio.insecure_channel(target) as channel,
            ):
                s = Stack(
                    target, enrollments_pb2_grpc.EnrollmentServiceStub(channel), world, pool, capsys
                )
                try:
                    yield s
                finally:
                    await s.cancel_running()
        finally:
            await terminate_all(time_skipping_env, pool)


async def winback(pool: AsyncConnectionPool[Any]) -> ChildName:
    """A brand sequence whose first text is a year away: nothing is sent during a test."""
    template = await brand_template(pool)
    return await make_sequence(pool, [Step(template, 365 * DAY)], "win-back")


async def silent_contact(pool: AsyncConnectionPool[Any], phone: str, first_name: str) -> ChildName:
    """A downtown contact with no consent recorded."""
    async with pool.connection() as conn:
        c = await contacts.create_contact(
            conn, OPERATOR, A_DOWNTOWN, "", ContactInput(phone_number=phone, first_name=first_name)
        )
    return c.name


def fits(out: str) -> None:
    too_wide = [line for line in out.splitlines() if len(line) > WIDTH]
    assert not too_wide, too_wide


async def test_contacts_list_finds_contacts_by_phone_and_state_in_80_columns(
    stack: Stack,
) -> None:
    dana = await consenting_contact(stack.pool, DANA, "Dana")
    lee = await silent_contact(stack.pool, LEE, "Lee")
    ana = await consenting_contact(stack.pool, "+13105550150", "Ana", location=A_UPTOWN)

    for typed in TYPED:
        code, out, err = await stack.reengage(
            "contacts", "list", "--location", "downtown", "--phone", typed
        )
        assert code == 0, err
        fits(out)
        assert dana.id in out and DANA in out and "Dana" in out and "granted" in out
        assert lee.id not in out and "1 contact at franchisors/acme/locations/downtown" in out

    # every location the key can see, with the location beside each contact
    code, out, err = await stack.reengage("contacts", "list")
    assert code == 0, err
    fits(out)
    for contact in (dana, lee, ana):
        assert contact.id in out
    assert "uptown" in out and "no consent" in out

    code, out, err = await stack.reengage(
        "contacts", "list", "--location", DOWNTOWN, "--subscribed"
    )
    assert code == 0, err
    assert dana.id in out and lee.id not in out
    code, out, err = await stack.reengage(
        "contacts", "list", "--location", DOWNTOWN, "--limit", "1"
    )
    assert code == 0, err
    assert out.count("│ c") == 1 and "--limit reached" in out
    code, out, err = await stack.reengage("contacts", "list", "--location", DOWNTOWN, "--opted-out")
    assert code == 0, err
    assert "no contacts match" in out

    # a number that does not parse: the flag the user typed is named
    code, out, err = await stack.reengage(
        "contacts", "list", "--location", DOWNTOWN, "--phone", "12"
    )
    assert code == 1
    assert err.startswith("reengage: --phone: ") and "not a valid phone number" in err


async def test_contacts_show_tells_consent_opt_out_zone_and_the_running_enrollment(
    stack: Stack,
) -> None:
    sequence = await winback(stack.pool)
    dana = await consenting_contact(stack.pool, DANA, "Dana", time_zone="America/Chicago")

    code, out, err = await stack.reengage(
        "contacts", "show", "--phone", TYPED[0], "--location", DOWNTOWN
    )
    assert code == 0, err
    fits(out)
    assert dana.name in out and DANA in out and "Dana" in out
    assert re.search(r"time zone\s+America/Chicago \(given explicitly\)", out)
    assert re.search(r"consent\s+granted", out)
    assert re.search(r"opted out\s+no", out) and re.search(r"undeliverable\s+no", out)
    assert re.search(r"last consent\s+grant, by paper form, on 2026-01-04 19:00 EST", out)
    assert re.search(r"enrollment\s+none running", out)

    enrolled = await stack.stub.Enroll(
        epb.EnrollRequest(contact=dana.name, sequence=sequence.name),
        metadata=stack.world.metadata("a_admin"),
    )
    enrollment_id = enrolled.name.rsplit("/", 1)[-1]
    # by its id alone, without --location: looked up wherever the key reaches
    code, out, err = await stack.reengage("contacts", "show", dana.id)
    assert code == 0, err
    assert re.search(rf"enrollment\s+{enrollment_id} in win-back: active, step 0", out)

    code, out, err = await stack.reengage("contacts", "show", "--phone", "(212) 555-0199")
    assert code == 1 and "no contact with this phone number" in err
    code, out, err = await stack.reengage("contacts", "show")
    assert code == 1 and "give a contact" in err

    # ListEnrollments' contact filter keeps to its location
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stack.stub.ListEnrollments(
            epb.ListEnrollmentsRequest(parent=A_UPTOWN.name, contact=dana.name),
            metadata=stack.world.metadata("a_admin"),
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_enroll_one_phone_prints_the_enrollment_and_its_id(stack: Stack) -> None:
    sequence = await winback(stack.pool)
    dana = await consenting_contact(stack.pool, DANA, "Dana")

    code, out, err = await stack.reengage(
        "enroll", "--sequence", "win-back", "--phone", TYPED[1], "--location", "downtown"
    )
    assert code == 0, err
    match = re.search(r"^enrolled in win-back\nenrollment: (\S+)\nid: (e[0-9a-f]+)$", out, re.M)
    assert match, out
    name, enrollment_id = match[1], match[2]
    assert name == f"{DOWNTOWN}/enrollments/{enrollment_id}"
    found = await stack.stub.GetEnrollment(
        epb.GetEnrollmentRequest(name=name), metadata=stack.world.metadata("a_admin")
    )
    assert found.contact == dana.name and found.sequence == sequence.name

    # again: the running enrollment; without --location the key's two locations are ambiguous
    code, out, err = await stack.reengage(
        "enroll", "--sequence", sequence.name, "--phone", TYPED[2], "--location", DOWNTOWN
    )
    assert code == 0, err
    assert f"already enrolled in win-back\nenrollment: {name}\n" in out
    code, out, err = await stack.reengage("enroll", "--sequence", "win-back", "--phone", DANA)
    assert code == 1 and "--location" in err and "2 locations" in err

    # a number with no contact, and one that does not parse
    code, out, err = await stack.reengage(
        "enroll", "--sequence", "win-back", "--phone", "(212) 555-0199", "--location", DOWNTOWN
    )
    assert code == 1 and "--phone: no contact with this number" in err
    code, out, err = await stack.reengage(
        "enroll", "--sequence", "win-back", "--phone", "12", "--location", DOWNTOWN
    )
    assert code == 1 and "--phone: '12' is not a valid phone number" in err
    # a contact without consent is refused with the reason
    await silent_contact(stack.pool, LEE, "Lee")
    code, out, err = await stack.reengage(
        "enroll", "--sequence", "win-back", "--phone", LEE, "--location", DOWNTOWN
    )
    assert code == 1 and "NO_CONSENT" in err
    code, out, err = await stack.reengage(
        "enroll", "--sequence", "no-such", "--phone", LEE, "--location", DOWNTOWN
    )
    assert code == 1 and "--sequence: no sequence 'no-such'" in err


async def test_enroll_a_csv_reports_every_row_not_enrolled_by_its_line(
    stack: Stack, tmp_path: Path
) -> None:
    sequence = await winback(stack.pool)
    dana = await consenting_contact(stack.pool, DANA, "Dana")
    kim = await consenting_contact(stack.pool, "+12125550144", "Kim")
    lee = await silent_contact(stack.pool, LEE, "Lee")
    await stack.stub.Enroll(  # Kim runs the sequence already
        epb.EnrollRequest(contact=kim.name, sequence=sequence.name),
        metadata=stack.world.metadata("a_admin"),
    )
    csv = tmp_path / "customers.csv"
    csv.write_text(
        "first_name,Mobile\n"
        "Dana,(212) 555-0142\n"  # line 2: enrolled
        "Lee,212-555-0143\n"  # line 3: no consent
        "\n"  # line 4: blank, skipped but counted
        '"Kim\nKimberly",+1 212 555 0144\n'  # lines 5-6 (a cell on two lines): already enrolled
        "Zoe,(212) 555-0199\n"  # line 7: no contact
        "Max,12\n"  # line 8: not a number
        "Dana again,2125550142\n"  # line 9: the same contact as line 2
        "Nobody,\n"  # line 10: empty
    )
    code, out, err = await stack.reengage(
        "enroll", "--sequence", "win-back", "--file", str(csv), "--location", DOWNTOWN
    )
    assert code == 3, err
    fits(out)
    assert "win-back at franchisors/acme/locations/downtown: 7 rows" in out
    assert (
        "enrolled: 1\nalready enrolled: 1\nrefused: 1 (NO_CONSENT 1)\nno contact: 1\n"
        "not a phone number: 1\nno phone: 1\nduplicates: 1\n"
    ) in out
    rows = problem_rows(out)
    assert sorted(rows) == [3, 7, 8, 9, 10], out
    assert rows[3][0] == "212-555-0143" and rows[3][1].startswith("NO_CONSENT: ")
    assert rows[7] == ("(212) 555-0199", "Mobile: no contact with this number at downtown")
    assert rows[8][1].startswith("Mobile: '12' is not a valid phone number")
    assert rows[9][1] == "the same contact as line 2"
    assert rows[10] == ("", "Mobile: is empty")
    assert "phone column: Mobile" in out

    async with stack.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT contact_id FROM enrollments WHERE status = 'active' ORDER BY contact_id"
        )
        running = [r[0] for r in await cur.fetchall()]
    assert running == sorted([dana.id, kim.id]) and lee.id not in running

    # a file without a phone column names the columns it accepts
    bad = tmp_path / "names.csv"
    bad.write_text("first_name,email\nDana,d@example.com\n")
    code, out, err = await stack.reengage(
        "enroll", "--sequence", "win-back", "--file", str(bad), "--location", DOWNTOWN
    )
    assert code == 1 and "no phone column (phone, phone_number, mobile)" in err


def problem_rows(out: str) -> dict[int, tuple[str, str]]:
    """The rows-not-enrolled table: line → (phone, why), wrapped cells joined."""
    rows: dict[int, list[list[str]]] = {}
    current: int | None = None
    for line in out.splitlines():
        if not line.startswith("│"):
            continue
        number, phone, why = (cell.strip() for cell in line.split("│")[1:-1])
        if number:
            current = int(number)
            rows[current] = [[phone], [why]]
        elif current is not None:
            rows[current][0].append(phone)
            rows[current][1].append(why)
    return {
        n: ("".join(p for p in phone if p), " ".join(w for w in why if w))
        for n, (phone, why) in rows.items()
    }
