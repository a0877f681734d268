"""Contacts carry their ids in other systems (a CRM, a shop): written by CreateContact,
UpdateContact (mask path `external_ids` replaces the set) and the CSV import, shown by
Get/ListContacts and `reengage contacts show`, found by ListContacts' external id filter; an id
is unique per location and source."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import field_mask_pb2
from google.protobuf.timestamp_pb2 import Timestamp
from psycopg_pool import AsyncConnectionPool
from temporalio.testing import WorkflowEnvironment

from reengage.v1 import contacts_pb2 as cpb
from tenants.contacts import external_ids
from tests.access_matrix import AB, AE, IA, refused
from tests.cli_support import run_cli
from tests.contact_sequence_fixtures import contact_stub, ids, list_all_contacts, new_contact
from tests.support import A_DOWNTOWN, A_UPTOWN, World

DOWNTOWN = A_DOWNTOWN.name
CONSENT = "Reply Y to get texts from Acme. STOP to end."


def xid(source: str, value: str) -> cpb.ExternalId:
    return cpb.ExternalId(source=source, id=value)


def pairs(contact: cpb.Contact) -> list[tuple[str, str]]:
    return [(x.source, x.id) for x in contact.external_ids]


def timestamp(when: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(when)
    return stamp


def mask(*paths: str) -> field_mask_pb2.FieldMask:
    return field_mask_pb2.FieldMask(paths=list(paths))


async def test_create_update_get_and_list_carry_the_ids_and_the_audit_keeps_only_sources(
    channel: grpc.aio.Channel, world: World, pool: AsyncConnectionPool[Any]
) -> None:
    stub = contact_stub(channel)
    md = world.metadata("a_downtown_manager")
    made = await new_contact(
        channel,
        world,
        who="a_downtown_manager",
        contact_id="nora",
        first_name="Nora",
        external_ids=[xid("shopify", " 7781 "), xid("hubspot", "hs-0042")],
    )
    # trimmed, ordered by source
    assert pairs(made) == [("hubspot", "hs-0042"), ("shopify", "7781")]
    got = await stub.GetContact(cpb.GetContactRequest(name=made.name), metadata=md)
    assert pairs(got) == pairs(made)
    await new_contact(channel, world, contact_id="omar", first_name="Omar")
    listed = await list_all_contacts(channel, md, parent=DOWNTOWN, page_size=1)
    assert {c.name.rsplit("/", 1)[1]: pairs(c) for c in listed} == {
        "nora": [("hubspot", "hs-0042"), ("shopify", "7781")],
        "omar": [],
    }

    # another field's update leaves the ids alone
    renamed = await stub.UpdateContact(
        cpb.UpdateContactRequest(
            contact=cpb.Contact(name=made.name, first_name="Norah"), update_mask=mask("first_name")
        ),
        metadata=md,
    )
    assert renamed.first_name == "Norah" and pairs(renamed) == pairs(made)
    # `external_ids` replaces the whole set, with a new etag; a stale etag changes nothing
    replaced = await stub.UpdateContact(
        cpb.UpdateContactRequest(
            contact=cpb.Contact(
                name=made.name,
                etag=renamed.etag,
                external_ids=[xid("hubspot", "hs-0042"), xid("segment", "user_42")],
            ),
            update_mask=mask("external_ids"),
        ),
        metadata=md,
    )
    assert pairs(replaced) == [("hubspot", "hs-0042"), ("segment", "user_42")]
    assert replaced.etag != renamed.etag and replaced.first_name == "Norah"
    await refused(
        stub.UpdateContact(
            cpb.UpdateContactRequest(
                contact=cpb.Contact(name=made.name, etag=renamed.etag, external_ids=[]),
                update_mask=mask("external_ids"),
            ),
            metadata=md,
        ),
        AB,
        reason="ETAG_MISMATCH",
    )
    got = await stub.GetContact(cpb.GetContactRequest(name=made.name), metadata=md)
    assert pairs(got) == pairs(replaced) and got.etag == replaced.etag
    # the shopify id is free again
    await new_contact(channel, world, external_ids=[xid("shopify", "7781")])

    # an empty set clears them
    cleared = await stub.UpdateContact(
        cpb.UpdateContactRequest(
            contact=cpb.Contact(name=made.name), update_mask=mask("external_ids")
        ),
        metadata=md,
    )
    assert pairs(cleared) == []

    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT action, details::text FROM audit_log WHERE resource = %s ORDER BY id",
            (made.name,),
        )
        audits = await cur.fetchall()
    assert [a for a, _ in audits] == ["contact.create"] + ["contact.update"] * 3
    assert '"external_id_sources": ["hubspot", "shopify"]' in audits[0][1]
    assert '"external_ids"' in audits[2][1] and "segment" in audits[2][1]
    for _, details in audits:  # the systems, never the ids
        assert "hs-0042" not in details and "7781" not in details and "user_42" not in details


async def test_an_id_is_unique_per_location_and_source(
    channel: grpc.aio.Channel, world: World
) -> None:
    stub = contact_stub(channel)
    md = world.metadata("a_admin")
    first = await new_contact(channel, world, contact_id="ana", external_ids=[xid("hubspot", "1")])
    phone = "+12125550177"
    got = await refused(
        stub.CreateContact(
            cpb.CreateContactRequest(
                parent=DOWNTOWN,
                contact=cpb.Contact(phone_number=phone, external_ids=[xid("hubspot", "1")]),
            ),
            metadata=md,
        ),
        AE,
        reason="EXTERNAL_ID_TAKEN",
    )
    assert "hubspot" in got.message and first.name in got.message
    assert got.error_info is not None and got.error_info.metadata["source"] == "hubspot"
    # nothing of the refused contact was written
    assert await list_all_contacts(channel, md, parent=DOWNTOWN, phone_number=phone) == []

    # the same id at another location, and for another source, is another contact's
    uptown = await new_contact(
        channel, world, parent=A_UPTOWN, phone_number=phone, external_ids=[xid("hubspot", "1")]
    )
    other_source = await new_contact(
        channel, world, phone_number=phone, external_ids=[xid("zendesk", "1")]
    )
    assert pairs(uptown) == [("hubspot", "1")] and pairs(other_source) == [("zendesk", "1")]

    # an update that would take it is refused whole: the contact's ids stay as they were
    await refused(
        stub.UpdateContact(
            cpb.UpdateContactRequest(
                contact=cpb.Contact(
                    name=other_source.name,
                    first_name="Taken",
                    external_ids=[xid("hubspot", "1")],
                ),
                update_mask=mask("external_ids", "first_name"),
            ),
            metadata=md,
        ),
        AE,
        reason="EXTERNAL_ID_TAKEN",
    )
    after = await stub.GetContact(cpb.GetContactRequest(name=other_source.name), metadata=md)
    assert pairs(after) == [("zendesk", "1")] and after.first_name == ""
    assert after.etag == other_source.etag
    # a contact may set its own id again
    again = await stub.UpdateContact(
        cpb.UpdateContactRequest(
            contact=cpb.Contact(name=first.name, external_ids=[xid("hubspot", "1")]),
            update_mask=mask("external_ids"),
        ),
        metadata=md,
    )
    assert pairs(again) == [("hubspot", "1")]


TWENTY_ONE = [xid(f"s{i}", "x") for i in range(21)]


@pytest.mark.parametrize(
    ("external_ids", "violations"),
    [
        ([xid("HubSpot", "1")], ("contact.external_ids[0].source",)),
        ([xid("", "1")], ("contact.external_ids[0].source",)),
        ([xid("-crm", "1")], ("contact.external_ids[0].source",)),
        ([xid("crm.io", "1")], ("contact.external_ids[0].source",)),
        ([xid("a" * 64, "1")], ("contact.external_ids[0].source",)),
        ([xid("crm", "")], ("contact.external_ids[0].id",)),
        ([xid("crm", "   ")], ("contact.external_ids[0].id",)),
        ([xid("crm", "x" * 201)], ("contact.external_ids[0].id",)),
        ([xid("crm", "a\tb")], ("contact.external_ids[0].id",)),
        ([xid("crm", "a\nb")], ("contact.external_ids[0].id",)),
        ([xid("crm", "1"), xid("crm", "2")], ("contact.external_ids[1].source",)),
        (TWENTY_ONE, ("contact.external_ids",)),
        (
            [xid("Bad", "1"), xid("ok", "")],
            ("contact.external_ids[0].source", "contact.external_ids[1].id"),
        ),
    ],
    ids=[
        "upper-case-source",
        "no-source",
        "source-starting-with-dash",
        "source-with-a-dot",
        "64-character-source",
        "no-id",
        "blank-id",
        "201-character-id",
        "tab-in-id",
        "line-break-in-id",
        "one-source-twice",
        "21-ids",
        "several-at-once",
    ],
)
async def test_bad_external_ids_are_invalid_arguments_naming_each(
    external_ids: list[cpb.ExternalId],
    violations: tuple[str, ...],
    channel: grpc.aio.Channel,
    world: World,
) -> None:
    stub = contact_stub(channel)
    await refused(
        stub.CreateContact(
            cpb.CreateContactRequest(
                parent=DOWNTOWN,
                contact=cpb.Contact(phone_number="+12125550160", external_ids=external_ids),
            ),
            metadata=world.metadata("a_admin"),
        ),
        IA,
        fields=violations,
    )
    assert await list_all_contacts(channel, world.metadata("a_admin"), parent=DOWNTOWN) == []


async def test_limits_are_inclusive(channel: grpc.aio.Channel, world: World) -> None:
    twenty = [xid(f"{i:02d}-" + "s" * 60, "i" * 200) for i in range(20)]
    made = await new_contact(channel, world, external_ids=twenty)
    assert len(made.external_ids) == 20
    assert {len(x.source) for x in made.external_ids} == {63}
    assert {len(x.id) for x in made.external_ids} == {200}


async def test_list_filter_needs_both_fields_and_binds_its_page_tokens(
    channel: grpc.aio.Channel, world: World
) -> None:
    stub = contact_stub(channel)
    md = world.metadata("a_downtown_staff")
    for contact_id, value in (("c-a", "A-1"), ("c-b", "B-2"), ("c-c", "C-3")):
        await new_contact(
            channel, world, contact_id=contact_id, external_ids=[xid("hubspot", value)]
        )
    await new_contact(
        channel, world, parent=A_UPTOWN, contact_id="c-b", external_ids=[xid("hubspot", "A-1")]
    )

    found = await stub.ListContacts(
        cpb.ListContactsRequest(parent=DOWNTOWN, external_id=" B-2", external_id_source="hubspot"),
        metadata=md,
    )
    assert ids(list(found.contacts)) == ["c-b"] and found.next_page_token == ""
    assert pairs(found.contacts[0]) == [("hubspot", "B-2")]
    for value, source in (("b-2", "hubspot"), ("B-2", "shopify"), ("B-", "hubspot")):
        none = await stub.ListContacts(
            cpb.ListContactsRequest(parent=DOWNTOWN, external_id=value, external_id_source=source),
            metadata=md,
        )
        assert list(none.contacts) == []

    # both or neither
    await refused(
        stub.ListContacts(cpb.ListContactsRequest(parent=DOWNTOWN, external_id="B-2"), metadata=md),
        IA,
        fields=("external_id_source",),
    )
    await refused(
        stub.ListContacts(
            cpb.ListContactsRequest(parent=DOWNTOWN, external_id_source="hubspot"), metadata=md
        ),
        IA,
        fields=("external_id",),
    )
    await refused(
        stub.ListContacts(
            cpb.ListContactsRequest(parent=DOWNTOWN, external_id="1", external_id_source="Hub"),
            metadata=md,
        ),
        IA,
        fields=("external_id_source",),
    )

    # a page token continues only the list it came from
    first = await stub.ListContacts(
        cpb.ListContactsRequest(parent=DOWNTOWN, page_size=1), metadata=md
    )
    assert ids(list(first.contacts)) == ["c-a"] and first.next_page_token
    await refused(
        stub.ListContacts(
            cpb.ListContactsRequest(
                parent=DOWNTOWN,
                page_size=1,
                page_token=first.next_page_token,
                external_id="B-2",
                external_id_source="hubspot",
            ),
            metadata=md,
        ),
        IA,
        fields=("page_token",),
    )
    second = await stub.ListContacts(
        cpb.ListContactsRequest(parent=DOWNTOWN, page_size=1, page_token=first.next_page_token),
        metadata=md,
    )
    assert ids(list(second.contacts)) == ["c-b"]


# -- the CSV import and the CLI ------------------------------------------------------------------

CSV = """\
phone,first_name,consent_at,external_id,external_source
(212) 555-0101,Ana,2026-01-10T15:00:00Z,hs-1,hubspot
(212) 555-0102,Ben,2026-01-10T15:00:00Z,sf-2,
(212) 555-0103,Cy,2026-01-10T15:00:00Z,hs-3,Hub Spot
(212) 555-0104,Dee,2026-01-10T15:00:00Z,hs-taken,hubspot
(212) 555-0105,Eve,2026-01-10T15:00:00Z,hs-1,hubspot
(212) 555-0106,Fay,2026-01-10T15:00:00Z,7781,shopify
(212) 555-0107,Gus,2026-01-10T15:00:00Z,,
"""


def table_row(out: str, line: str) -> str:
    """The line of a printed table for the file's line (rich draws cells between │)."""
    for text in out.splitlines():
        cells = [c.strip() for c in text.split("│")]
        if len(cells) > 2 and cells[1] == line:
            return text
    raise AssertionError(f"line {line} is not in the tables:\n{out}")


async def test_import_sets_ids_and_rejects_bad_and_clashing_ones_by_their_line(
    grpc_target: str,
    world: World,
    channel: grpc.aio.Channel,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    holder = await new_contact(
        channel, world, contact_id="holder", external_ids=[xid("hubspot", "hs-taken")]
    )
    fay = await new_contact(
        channel,
        world,
        contact_id="fay",
        phone_number="+12125550106",
        external_ids=[xid("hubspot", "hs-6")],
    )
    path = tmp_path / "crm.csv"
    path.write_text(CSV)
    key = world.tokens["a_downtown_manager"]
    argv = ("contacts", "import", str(path), "--location", "downtown", "--consent-text", CONSENT)

    code, out, err = await run_cli(
        capsys, grpc_target, key, *argv, "--external-source", "salesforce"
    )
    assert code == 3, out + err
    assert "rows: 7  created: 3  updated: 1  unchanged: 0  rejected: 3" in out, out
    cy, dee, eve = table_row(out, "4"), table_row(out, "5"), table_row(out, "6")
    assert "external_source" in cy and "is a source" in cy
    assert "external_id" in dee and f"taken by {holder.name}" in dee and "hs-taken" not in dee
    assert "external_id" in eve and "row 2" in eve

    stub = contact_stub(channel)
    md = world.metadata("a_admin")
    found = {
        c.phone_number: pairs(c) for c in await list_all_contacts(channel, md, parent=DOWNTOWN)
    }
    assert found["+12125550101"] == [("hubspot", "hs-1")]
    assert found["+12125550102"] == [("salesforce", "sf-2")]  # the flag's source
    assert found["+12125550107"] == []
    for rejected in ("+12125550103", "+12125550104", "+12125550105"):
        assert rejected not in found  # nothing of a rejected row is written
    # set beside the contact's id of another source, with a new etag
    got = await stub.GetContact(cpb.GetContactRequest(name=fay.name), metadata=md)
    assert pairs(got) == [("hubspot", "hs-6"), ("shopify", "7781")]
    assert got.etag != fay.etag and got.first_name == "Fay"
    held = await stub.GetContact(cpb.GetContactRequest(name=holder.name), metadata=md)
    assert pairs(held) == [("hubspot", "hs-taken")]

    # importing the same file again changes nothing
    code, out, err = await run_cli(
        capsys, grpc_target, key, *argv, "--external-source", "salesforce"
    )
    assert code == 3, err
    assert "rows: 7  created: 0  updated: 0  unchanged: 4  rejected: 3" in out, out
    again = await stub.GetContact(cpb.GetContactRequest(name=fay.name), metadata=md)
    assert again.etag == got.etag

    # an id column needs its source, and the flag needs the column
    no_source = tmp_path / "no-source.csv"
    no_source.write_text("phone,consent_at,external_id\n(212) 555-0108,2026-01-10,x-8\n")
    code, out, err = await run_cli(
        capsys, grpc_target, key, "contacts", "import", str(no_source), *argv[3:]
    )
    assert code == 1 and "--external-source" in err, err
    no_ids = tmp_path / "no-ids.csv"
    no_ids.write_text("phone,consent_at\n(212) 555-0108,2026-01-10\n")
    code, out, err = await run_cli(
        capsys,
        grpc_target,
        key,
        "contacts",
        "import",
        str(no_ids),
        *argv[3:],
        "--external-source",
        "hubspot",
    )
    assert code == 1 and "no external_id column" in err, err


async def test_import_over_grpc_names_the_field_of_a_bad_or_taken_id(
    channel: grpc.aio.Channel, world: World
) -> None:
    await new_contact(channel, world, contact_id="holder", external_ids=[xid("crm", "taken")])
    grant = cpb.ConsentEvidence(
        kind=cpb.CONSENT_KIND_GRANT,
        channel=cpb.CONSENT_CHANNEL_IMPORT,
        occurred_at=timestamp(datetime(2026, 1, 10, tzinfo=UTC)),
        source="crm sync",
        disclosure_text=CONSENT,
    )

    def row(number: int, phone: str, *external: cpb.ExternalId) -> cpb.ImportRow:
        contact = cpb.Contact(phone_number=phone, external_ids=list(external))
        return cpb.ImportRow(row_number=number, contact=contact, consent=grant)

    rows = [
        row(1, "+12125550111", xid("crm", "good")),
        row(2, "+12125550112", xid("crm", "taken")),
        row(3, "+12125550113", xid("crm", "x" * 201)),
        row(4, "+12125550114", xid("crm", "1"), xid("shop", "good")),
    ]

    async def requests() -> Any:
        yield cpb.ImportContactsRequest(parent=DOWNTOWN, source="crm", rows=rows)

    answer = await contact_stub(channel).ImportContacts(
        requests(), metadata=world.metadata("a_admin")
    )
    assert (answer.created, answer.updated) == (2, 0)
    rejected = {r.row_number: (r.field, r.reason) for r in answer.rejected}
    assert set(rejected) == {2, 3}
    assert rejected[2][0] == "external_ids[0].id" and "holder" in rejected[2][1]
    assert rejected[3][0] == "external_ids[0].id" and "200" in rejected[3][1]
    made = {c.row_number: c.name for c in answer.contacts}
    got = await contact_stub(channel).GetContact(
        cpb.GetContactRequest(name=made[4]), metadata=world.metadata("a_admin")
    )
    assert pairs(got) == [("crm", "1"), ("shop", "good")]


async def test_cli_show_prints_the_ids_and_list_finds_a_contact_by_one(
    time_skipping_env: WorkflowEnvironment,
    grpc_target: str,
    channel: grpc.aio.Channel,
    world: World,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    dana = await new_contact(
        channel,
        world,
        contact_id="dana",
        first_name="Dana",
        external_ids=[xid("hubspot", "hs-501"), xid("shopify", "88")],
    )
    await new_contact(channel, world, contact_id="lee", external_ids=[xid("hubspot", "hs-502")])
    key = world.tokens["a_downtown_staff"]

    code, out, err = await run_cli(capsys, grpc_target, key, "contacts", "show", "dana")
    assert code == 0, err
    assert "external ids" in out and "hubspot hs-501, shopify 88" in out, out
    code, out, err = await run_cli(
        capsys, grpc_target, key, "contacts", "show", "--phone", dana.phone_number
    )
    assert code == 0, err
    assert "hubspot hs-501" in out

    code, out, err = await run_cli(
        capsys,
        grpc_target,
        key,
        "contacts",
        "list",
        "--location",
        "downtown",
        "--external-id",
        "hs-501",
        "--source",
        "hubspot",
    )
    assert code == 0, err
    assert "dana" in out and "lee" not in out and "1 contact at" in out, out
    code, out, err = await run_cli(
        capsys, grpc_target, key, "contacts", "list", "--external-id", "hs-501"
    )
    assert code == 1 and "--external-id and --source" in err, err
    code, out, err = await run_cli(
        capsys,
        grpc_target,
        key,
        "contacts",
        "list",
        "--location",
        "downtown",
        "--external-id",
        "hs-501",
        "--source",
        "Hub Spot",
    )
    assert code == 1 and err.startswith("reengage: --source: "), err


async def test_the_intake_finds_a_contact_by_an_id_at_its_location_or_across_the_brand(
    channel: grpc.aio.Channel, world: World, pool: AsyncConnectionPool[Any]
) -> None:
    downtown = await new_contact(channel, world, external_ids=[xid("segment", "u-1")])
    uptown = await new_contact(
        channel, world, parent=A_UPTOWN, external_ids=[xid("segment", "u-1"), xid("crm", "9")]
    )
    async with pool.connection() as conn:
        found = await external_ids.find_contact(conn, A_DOWNTOWN, "segment", " u-1 ")
        assert found is not None and found.name == downtown.name
        assert await external_ids.find_contact(conn, A_DOWNTOWN, "crm", "9") is None
        both = await external_ids.find_in_brand(conn, "acme", "segment", "u-1")
        assert [n.name for n in both] == [downtown.name, uptown.name]
        one = await external_ids.find_in_brand(conn, "acme", "crm", "9")
        assert [n.name for n in one] == [uptown.name]
        assert await external_ids.find_in_brand(conn, "bravo", "crm", "9") == []


async def test_two_contacts_swapping_ids_at_once_never_answer_internal(
    channel: grpc.aio.Channel, world: World
) -> None:
    """A: X→Y while B: Y→X, at once: each update deletes its old id before it inserts the
    other's, so the two transactions wait on each other and PostgreSQL aborts one (a
    deadlock). The aborted update is run again and then sees the other's id: ALREADY_EXISTS,
    never INTERNAL; the ids stay unique whichever order won."""
    stub = contact_stub(channel)
    for round_ in range(8):
        x, y = f"x-{round_}", f"y-{round_}"
        a = await new_contact(channel, world, external_ids=[xid("crm", x)])
        b = await new_contact(channel, world, external_ids=[xid("crm", y)])

        async def swap(contact: cpb.Contact, to: str) -> grpc.StatusCode:
            request = cpb.UpdateContactRequest(
                contact=cpb.Contact(name=contact.name, external_ids=[xid("crm", to)]),
                update_mask=mask("external_ids"),
            )
            try:
                await stub.UpdateContact(request, metadata=world.metadata("a_admin"))
            except grpc.aio.AioRpcError as err:
                return err.code()
            return grpc.StatusCode.OK

        codes = await asyncio.gather(swap(a, y), swap(b, x))
        assert set(codes) <= {grpc.StatusCode.OK, grpc.StatusCode.ALREADY_EXISTS}, codes
        got = [
            pairs(
                await stub.GetContact(
                    cpb.GetContactRequest(name=c.name), metadata=world.metadata("a_admin")
                )
            )
            for c in (a, b)
        ]
        assert got[0] != got[1] or got[0] == []  # never one id on both
