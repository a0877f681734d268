"""The seeded world of the contact and sequence suites (templates, contacts with a grant and a
text, sequences, in every scope) and the request builders of their access table."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import grpc
import pytest
from google.protobuf import field_mask_pb2, timestamp_pb2

from reengage.v1 import contacts_pb2 as cpb
from reengage.v1 import contacts_pb2_grpc, sequences_pb2_grpc, templates_pb2_grpc
from reengage.v1 import sequences_pb2 as spb
from reengage.v1 import templates_pb2 as tpb
from tenants.contacts import consent, contacts
from tenants.contacts.model import COLLECTION, ContactInput
from tenants.core.names import TenantScope, parse_child
from tenants.inbound.texts import InboundSms, receive
from tenants.sequences import definitions as sequences
from tests.access_matrix import (
    B_NOPE,
    IA,
    NOPE,
    PD,
    Build,
    Metadata,
    Pool,
    Stack,
    _counter,
    fresh,
    fresh_phone,
    simple,
)
from tests.support import (
    A_DOWNTOWN,
    A_UPTOWN,
    B_HARBOR,
    OPERATOR,
    A,
    B,
    World,
)

# A contact name (or parent) outside any location is malformed: INVALID_ARGUMENT. A caller who
# could not act there anyway (another franchisor, a location principal at the franchisor node)
# may be refused first instead: either reveals nothing.
XI = (IA, PD)

BODY = "Hi {{contact.first_name|there}}! Reply STOP to opt out"
DISCLOSURE = (
    "I agree to receive marketing texts. Msg & data rates may apply. Reply STOP to opt out."
)


def ts(when: datetime) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(when)
    return stamp


def now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


# Fixed past instants for evidence and activities recorded by the matrix (idempotent by design).
PAST = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)

# ---------------------------------------------------------------------------------------------
# The world every matrix row starts from
# ---------------------------------------------------------------------------------------------


def tname(scope: TenantScope, template_id: str) -> str:
    return f"{scope.name}/templates/{template_id}"


def cname(scope: TenantScope, contact_id: str) -> str:
    return f"{scope.name}/contacts/{contact_id}"


def sname(scope: TenantScope, sequence_id: str) -> str:
    return f"{scope.name}/sequences/{sequence_id}"


A_TPL = tname(A, "hello")
DT_TPL = tname(A_DOWNTOWN, "dt-hello")
UT_TPL = tname(A_UPTOWN, "ut-hello")
B_TPL = tname(B, "b-hello")
HB_TPL = tname(B_HARBOR, "hb-hello")
TEMPLATES = (
    ("a_admin", A, "hello"),
    ("a_admin", A_DOWNTOWN, "dt-hello"),
    ("a_admin", A_UPTOWN, "ut-hello"),
    ("b_admin", B, "b-hello"),
    ("b_admin", B_HARBOR, "hb-hello"),
)

DT_ANN = cname(A_DOWNTOWN, "ann")
UT_BOB = cname(A_UPTOWN, "bob")
HB_CY = cname(B_HARBOR, "cy")
DT_MISSING = cname(A_DOWNTOWN, "missing")
UT_MISSING = cname(A_UPTOWN, "missing")
HB_MISSING = cname(B_HARBOR, "missing")
BNOPE_MISSING = cname(B_NOPE, "missing")
A_LEVEL_CONTACT = cname(A, "ann")  # not at a location: no such name can exist
CONTACTS = (
    (DT_ANN, "+12125550111", "Ann"),
    (UT_BOB, "+13105550112", "Bob"),
    (HB_CY, "+13125550113", "Cy"),
)

A_SEQ = sname(A, "welcome")
DT_SEQ = sname(A_DOWNTOWN, "dt-seq")
UT_SEQ = sname(A_UPTOWN, "ut-seq")
B_SEQ = sname(B, "b-welcome")
HB_SEQ = sname(B_HARBOR, "hb-seq")
A_SEQ_MISSING = sname(A, "missing")
UT_SEQ_MISSING = sname(A_UPTOWN, "missing")
B_SEQ_MISSING = sname(B, "missing")
HB_SEQ_MISSING = sname(B_HARBOR, "missing")
NOPE_SEQ_MISSING = sname(NOPE, "missing")
SEQUENCES = (
    (A_SEQ, (A_TPL,)),
    (DT_SEQ, (A_TPL, DT_TPL)),
    (UT_SEQ, (UT_TPL,)),
    (B_SEQ, (B_TPL,)),
    (HB_SEQ, (B_TPL, HB_TPL)),
)


def grant_evidence(when: datetime = PAST) -> consent.ConsentEvidence:
    return consent.ConsentEvidence(
        kind=consent.ConsentKind.GRANT,
        channel=consent.ConsentChannel.API,
        occurred_at=when,
        source="https://shop.example/join",
        disclosure_text=DISCLOSURE,
    )


async def make_templates(channel: grpc.aio.Channel, world: World) -> None:
    """The brand and location templates sequences refer to, created over gRPC."""
    stub = templates_pb2_grpc.TemplateServiceStub(channel)
    for who, parent, template_id in TEMPLATES:
        template = tpb.Template(display_name="Hello", body=BODY)
        if not parent.is_location:
            template.lock_mode = tpb.LOCK_MODE_LOCKED
        await stub.CreateTemplate(
            tpb.CreateTemplateRequest(
                parent=parent.name, template_id=template_id, template=template
            ),
            metadata=world.metadata(who),
        )


async def make_sequence(pool: Pool, name: str, templates: tuple[str, ...]) -> str:
    """Creates a sequence directly (as the platform) and returns its name."""
    child = parse_child(name, sequences.COLLECTION)
    async with pool.connection() as conn:
        await sequences.create_sequence(
            conn,
            OPERATOR,
            child.scope,
            child.id,
            "Welcome back",
            sequences.Definition(steps=tuple(sequences.Step(template=t) for t in templates)),
        )
    return name


async def seed(channel: grpc.aio.Channel, world: World, pool: Pool) -> None:
    """Templates, contacts (each with a consent grant and a text) and sequences in every scope,
    so a read or a list has something to leak."""
    await make_templates(channel, world)
    async with pool.connection() as conn:
        for name, phone, first in CONTACTS:
            child = parse_child(name, COLLECTION)
            await contacts.create_contact(
                conn,
                OPERATOR,
                child.scope,
                child.id,
                ContactInput(phone_number=phone, first_name=first),
            )
            await consent.record_consent(conn, OPERATOR, child, grant_evidence())
            await conn.execute(
                "INSERT INTO messages (franchisor_id, location_id, contact_id, direction, body,"
                " encoding, segments, status) VALUES (%s, %s, %s, 'outbound', %s, 'GSM-7', 1,"
                " 'delivered')",
                (
                    child.scope.franchisor_id,
                    child.scope.location_id,
                    child.id,
                    f"Hi {first}! Reply STOP to opt out",
                ),
            )
    for name, templates in SEQUENCES:
        await make_sequence(pool, name, templates)


# ---------------------------------------------------------------------------------------------
# Builders: one request of one RPC; a mutating one names targets of its own.
# ---------------------------------------------------------------------------------------------

Target = Callable[[Pool], Awaitable[str]]


def fixed(name: str) -> Target:
    async def target(pool: Pool) -> str:
        return name

    return target


def new_sequence(scope: TenantScope, *templates: str) -> Target:
    async def target(pool: Pool) -> str:
        return await make_sequence(pool, sname(scope, fresh("seq")), templates)

    return target


# ContactService requests


def create_contact(parent: TenantScope) -> Build:
    return simple(
        lambda: cpb.CreateContactRequest(
            parent=parent.name,
            contact=cpb.Contact(phone_number=fresh_phone(), first_name="New"),
        )
    )


def get_contact(name: str) -> Build:
    return simple(lambda: cpb.GetContactRequest(name=name))


def list_contacts(parent: TenantScope) -> Build:
    return simple(lambda: cpb.ListContactsRequest(parent=parent.name))


def update_contact(name: str) -> Build:
    return simple(
        lambda: cpb.UpdateContactRequest(
            contact=cpb.Contact(name=name, first_name=f"Renamed {next(_counter)}"),
            update_mask=field_mask_pb2.FieldMask(paths=["first_name"]),
        )
    )


def import_evidence() -> cpb.ConsentEvidence:
    return cpb.ConsentEvidence(
        kind=cpb.CONSENT_KIND_GRANT,
        channel=cpb.CONSENT_CHANNEL_IMPORT,
        occurred_at=ts(PAST),
        source="customers.csv",
        disclosure_text=DISCLOSURE,
    )


def import_contacts(parent: TenantScope) -> Build:
    """A client stream of one message: the parent and one row."""
    return simple(
        lambda: [
            cpb.ImportContactsRequest(
                parent=parent.name,
                source="customers.csv",
                rows=[
                    cpb.ImportRow(
                        row_number=1,
                        contact=cpb.Contact(phone_number=fresh_phone(), first_name="Imported"),
                        consent=import_evidence(),
                    )
                ],
            )
        ]
    )


def grant(occurred: datetime = PAST, **fields: Any) -> cpb.ConsentEvidence:
    evidence = cpb.ConsentEvidence(
        kind=cpb.CONSENT_KIND_GRANT,
        channel=cpb.CONSENT_CHANNEL_API,
        occurred_at=ts(occurred),
        scope=cpb.CONSENT_SCOPE_LOCATION,
        source="https://shop.example/join",
        disclosure_text=DISCLOSURE,
    )
    for key, value in fields.items():
        setattr(evidence, key, value)
    return evidence


def revoke(occurred: datetime) -> cpb.ConsentEvidence:
    return cpb.ConsentEvidence(
        kind=cpb.CONSENT_KIND_REVOKE,
        channel=cpb.CONSENT_CHANNEL_SMS_REPLY,
        occurred_at=ts(occurred),
        scope=cpb.CONSENT_SCOPE_LOCATION,
        raw_text="STOP",
    )


def record_consent(name: str) -> Build:
    return simple(lambda: cpb.RecordConsentRequest(contact=name, evidence=grant()))


def record_brand_revocation(name: str) -> Build:
    """A revocation asking for the whole brand while the franchisor keeps opt-outs to their
    location (the default): CONSENT_REVOKE_BRAND_WIDE, franchisor admins and operators."""
    return simple(
        lambda: cpb.RecordConsentRequest(
            contact=name,
            evidence=cpb.ConsentEvidence(
                kind=cpb.CONSENT_KIND_REVOKE,
                channel=cpb.CONSENT_CHANNEL_STAFF,
                occurred_at=ts(PAST),
                scope=cpb.CONSENT_SCOPE_BRAND,
                raw_text="no more texts from any of your shops",
            ),
        )
    )


def list_consent_events(name: str) -> Build:
    return simple(lambda: cpb.ListConsentEventsRequest(contact=name))


def record_activity(name: str) -> Build:
    return simple(
        lambda: cpb.RecordActivityRequest(
            contact=name,
            activity=cpb.Activity(kind="visit", occurred_at=ts(PAST), reference=fresh("visit")),
        )
    )


def get_conversation(name: str) -> Build:
    return simple(lambda: cpb.GetConversationRequest(contact=name))


# The review queue: flagged inbound texts (tenants/inbound/review_queue.py)
SENDER_NUMBERS = {  # the sender numbers of tests.support's locations
    A_DOWNTOWN: "+12125550101",
    A_UPTOWN: "+13105550102",
    B_HARBOR: "+13125550103",
}


async def flag_text(pool: Pool, location: TenantScope) -> str:
    """A text from a stranger at location that may be an opt-out ("stop by"): flagged, handled
    as a reply. Returns its name."""
    async with pool.connection() as conn:
        outcome = await receive(
            conn,
            InboundSms(
                "twilio",
                fresh("SM"),
                fresh_phone(),
                SENDER_NUMBERS[location],
                "Can you stop by the counter tomorrow?",
                datetime.now(UTC),
            ),
        )
    assert outcome.review_reason, outcome
    return f"{location.name}/inboundMessages/{outcome.inbound_id}"


def list_flagged(parent: TenantScope) -> Build:
    async def build(pool: Pool) -> Any:
        for location in SENDER_NUMBERS:  # something to leak at every location
            await flag_text(pool, location)
        return cpb.ListFlaggedMessagesRequest(parent=parent.name)

    return build


def resolve_flagged(location: TenantScope | None, name: str = "") -> Build:
    """A fresh flagged text at location (each cell its own), or the fixed name."""

    async def build(pool: Pool) -> Any:
        target = await flag_text(pool, location) if location is not None else name
        return cpb.ResolveFlaggedMessageRequest(
            name=target, resolution=cpb.FLAGGED_RESOLUTION_NOT_OPT_OUT
        )

    return build


# Consent evidence export (tenants/reports/evidence.py): a server stream, collected as a list


def export_evidence(name: str) -> Build:
    return simple(lambda: cpb.ExportContactEvidenceRequest(contact=name))


def export_evidence_by_phone(location: TenantScope, phone: str) -> Build:
    return simple(
        lambda: cpb.ExportContactEvidenceRequest(location=location.name, phone_number=phone)
    )


# SequenceService requests


def sequence_body(*templates: str) -> spb.Sequence:
    return spb.Sequence(display_name="Win back", steps=[spb.Step(template=t) for t in templates])


def create_sequence(parent: TenantScope, *templates: str) -> Build:
    return simple(
        lambda: spb.CreateSequenceRequest(
            parent=parent.name, sequence_id=fresh("seq"), sequence=sequence_body(*templates)
        )
    )


def get_sequence(name: str) -> Build:
    return simple(lambda: spb.GetSequenceRequest(name=name))


def list_sequences(parent: TenantScope, scope: int = 0) -> Build:
    return simple(lambda: spb.ListSequencesRequest(parent=parent.name, scope=scope))  # type: ignore[arg-type]


def update_sequence(target: Target) -> Build:
    async def build(pool: Pool) -> Any:
        return spb.UpdateSequenceRequest(
            sequence=spb.Sequence(name=await target(pool), display_name=f"Renamed {fresh()}"),
            update_mask=field_mask_pb2.FieldMask(paths=["display_name"]),
        )

    return build


def archive_sequence(target: Target) -> Build:
    async def build(pool: Pool) -> Any:
        return spb.ArchiveSequenceRequest(name=await target(pool))

    return build


def pause_sequence(target: Target) -> Build:
    async def build(pool: Pool) -> Any:
        return spb.PauseSequenceRequest(name=await target(pool))

    return build


def activate_sequence(target: Target) -> Build:
    async def build(pool: Pool) -> Any:
        return spb.ActivateSequenceRequest(name=await target(pool))

    return build


def simulate(name: str, contact: str) -> Build:
    return simple(
        lambda: spb.SimulateSequenceRequest(
            name=name, contact=contact, start_time=ts(datetime(2026, 3, 2, 15, 0, tzinfo=UTC))
        )
    )


def simulate_described(name: str, location: TenantScope) -> Build:
    return simple(
        lambda: spb.SimulateSequenceRequest(
            name=name,
            described_contact=spb.DescribedContact(phone_number="+12125550177"),
            location=location.name,
            start_time=ts(datetime(2026, 3, 2, 15, 0, tzinfo=UTC)),
        )
    )


SCOPE_LOCATION = tpb.TEMPLATE_LIST_SCOPE_LOCATION
SCOPE_ALL = tpb.TEMPLATE_LIST_SCOPE_ALL


async def seed_stack(stack: Stack) -> None:
    await seed(stack.channel, stack.world, stack.pool)


def contact_stub(channel: grpc.aio.Channel) -> contacts_pb2_grpc.ContactServiceStub:
    return contacts_pb2_grpc.ContactServiceStub(channel)


def sequence_stub(channel: grpc.aio.Channel) -> sequences_pb2_grpc.SequenceServiceStub:
    return sequences_pb2_grpc.SequenceServiceStub(channel)


# ---------------------------------------------------------------------------------------------
# Helpers of the behaviour tests
# ---------------------------------------------------------------------------------------------


async def new_contact(
    channel: grpc.aio.Channel,
    world: World,
    who: str = "a_admin",
    parent: TenantScope = A_DOWNTOWN,
    contact_id: str = "",
    **fields: Any,
) -> cpb.Contact:
    fields.setdefault("phone_number", fresh_phone())
    return await contact_stub(channel).CreateContact(  # type: ignore[no-any-return]
        cpb.CreateContactRequest(
            parent=parent.name, contact_id=contact_id, contact=cpb.Contact(**fields)
        ),
        metadata=world.metadata(who),
    )


async def list_all_contacts(
    channel: grpc.aio.Channel, metadata: Metadata, page_size: int = 0, **request: Any
) -> list[cpb.Contact]:
    seen: list[cpb.Contact] = []
    token = ""
    for _ in range(100):
        page = await contact_stub(channel).ListContacts(
            cpb.ListContactsRequest(page_size=page_size, page_token=token, **request),
            metadata=metadata,
        )
        seen += page.contacts
        token = page.next_page_token
        if not token:
            return seen
    pytest.fail("ListContacts never ends")


async def list_all_sequences(
    channel: grpc.aio.Channel, metadata: Metadata, **request: Any
) -> list[str]:
    seen: list[str] = []
    token = ""
    for _ in range(100):
        page = await sequence_stub(channel).ListSequences(
            spb.ListSequencesRequest(page_size=1, page_token=token, **request),
            metadata=metadata,
        )
        seen += [s.name for s in page.sequences]
        token = page.next_page_token
        if not token:
            return seen
    pytest.fail("ListSequences never ends")


def ids(found: list[cpb.Contact]) -> list[str]:
    return [c.name.rsplit("/", 1)[1] for c in found]
