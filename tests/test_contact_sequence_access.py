"""reengage.v1.ContactService and SequenceService over the real gRPC server: who may do what,
and what each does with good and bad input.

* The authorization matrix: every RPC of both services against a set of targets (a location's
  own contacts and sequences, a sibling location's, the brand's, the other franchisor's, names
  that do not exist, and contact names outside any location), by every principal of the test
  world plus three callers that must not authenticate. `EXPECTED` is the whole table: one row per
  (RPC, target), one column per principal. Each row is one test case that seeds the world once
  and checks every cell (all mismatches are reported together); a mutating cell gets targets of
  its own, so cells never see each other's effects.
* Visibility: a location lists only its own contacts, its own and its brand's sequences; nobody
  sees another franchisor (no answer of an acme principal mentions bravo, and vice versa).
* Which templates a sequence may use.
* Consent events are append-only (no RPC, no SQL path changes one); a revocation suppresses the
  contact until a later grant; re-recording the same evidence is one event.
* Bad input: phones, zones, regions, attributes, names, masks, etags, consent evidence,
  activities, sequence definitions, each refused with field violations.
* Time zone inference, ListContacts filters and page tokens, GetConversation.

Rules (DESIGN §4/§5, COMPLIANCE §2, tenants/org/access.py, contacts.proto, sequences.proto):

* contacts live only at locations (`franchisors/{f}/locations/{l}/contacts/{c}`);
* CONTACT_READ (get, list, consent events, conversation): franchisor admins and viewers, and the
  location's manager and staff;
* CONTACT_WRITE (create, update, import, RecordConsent, RecordActivity): franchisor admins and
  the location's manager; a revocation asking for the whole brand while the franchisor keeps
  opt-outs to their location (CONSENT_REVOKE_BRAND_WIDE): franchisor admins only;
* the review queue: ListFlaggedMessages is CONTACT_READ (at a franchisor: franchisor principals,
  every location); ResolveFlaggedMessage is FLAGGED_MESSAGE_RESOLVE (franchisor admins and the
  location's manager, not viewers or staff);
* SEQUENCE_READ like templates: brand sequences are read by every principal of the franchisor
  (location staff included); a location's sequences by the franchisor's admins and viewers and
  that location's principals;
* SEQUENCE_WRITE: franchisor admins (brand and location sequences), a location's manager for its
  own location only;
* nobody crosses franchisors: PERMISSION_DENIED whether or not the target exists;
* no key / revoked key / malformed key: UNAUTHENTICATED; the operator may do everything.
"""

from __future__ import annotations

import hashlib
import itertools
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import psycopg
import pytest
from google.protobuf import duration_pb2, field_mask_pb2, text_format, timestamp_pb2
from psycopg_pool import AsyncConnectionPool

from reengage.v1 import contacts_pb2 as cpb
from reengage.v1 import contacts_pb2_grpc, sequences_pb2_grpc, templates_pb2_grpc, tenants_pb2
from reengage.v1 import sequences_pb2 as spb
from reengage.v1 import templates_pb2 as tpb
from tenants.contacts import consent, contacts
from tenants.core.names import TenantScope, parse_child
from tenants.inbound.texts import InboundSms, receive
from tenants.sequences import definitions as sequences
from tests.support import (
    A_DOWNTOWN,
    A_UPTOWN,
    B_HARBOR,
    OPERATOR,
    PRINCIPALS,
    A,
    B,
    RpcFailure,
    World,
    failure,
)

Pool = AsyncConnectionPool[Any]
Metadata = tuple[tuple[str, str], ...]

OK = grpc.StatusCode.OK
PD = grpc.StatusCode.PERMISSION_DENIED
NF = grpc.StatusCode.NOT_FOUND
UA = grpc.StatusCode.UNAUTHENTICATED
IA = grpc.StatusCode.INVALID_ARGUMENT
AB = grpc.StatusCode.ABORTED
AE = grpc.StatusCode.ALREADY_EXISTS
# Listing under a parent that does not exist, by someone who would be allowed to list it if it
# existed: an empty page or NOT_FOUND (an OK answer must then be empty). Cross-tenant cells are
# exact.
E = (OK, NF)
# A contact name (or parent) outside any location is malformed: INVALID_ARGUMENT. A caller who
# could not act there anyway (another franchisor, a location principal at the franchisor node)
# may be refused first instead: either reveals nothing.
XI = (IA, PD)

DOMAIN = "reengage.dev"

LABELS = (
    "operator",
    "a_admin",
    "a_viewer",
    "a_downtown_manager",
    "a_downtown_staff",
    "b_admin",
    "b_harbor_manager",
    "none",
    "revoked",
    "malformed",
)
UNAUTHENTICATED_LABELS = ("none", "revoked", "malformed")

BODY = "Hi {{contact.first_name|there}}! Reply STOP to opt out"
DISCLOSURE = (
    "I agree to receive marketing texts. Msg & data rates may apply. Reply STOP to opt out."
)

A_NOPE = TenantScope("acme", "nope")
B_NOPE = TenantScope("bravo", "nope")
NOPE = TenantScope("nope")

_counter = itertools.count(1000)


def fresh(prefix: str = "x") -> str:
    return f"{prefix}-{next(_counter)}"


def fresh_phone() -> str:
    return f"+1212555{next(_counter) % 9000 + 1000:04d}"


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
            child = parse_child(name, contacts.COLLECTION)
            await contacts.create_contact(
                conn,
                OPERATOR,
                child.scope,
                child.id,
                contacts.ContactInput(phone_number=phone, first_name=first),
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
# Cases: one RPC against one target. `build` makes the request and any targets it needs.
# ---------------------------------------------------------------------------------------------

Build = Callable[[Pool], Awaitable[Any]]
Target = Callable[[Pool], Awaitable[str]]


@dataclass(frozen=True)
class Case:
    rpc: str
    target: str
    franchisor: str  # the franchisor the target belongs to
    build: Build

    @property
    def id(self) -> str:
        return f"{self.rpc}[{self.target}]"


def simple(make: Callable[[], Any]) -> Build:
    async def build(pool: Pool) -> Any:
        return make()

    return build


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

CASES: dict[str, Case] = {
    case.id: case
    for case in (
        # CreateContact
        Case("CreateContact", "acme/downtown", "acme", create_contact(A_DOWNTOWN)),
        Case("CreateContact", "acme/uptown", "acme", create_contact(A_UPTOWN)),
        Case("CreateContact", "acme/nope", "acme", create_contact(A_NOPE)),
        Case("CreateContact", "acme franchisor", "acme", create_contact(A)),
        Case("CreateContact", "bravo/harbor", "bravo", create_contact(B_HARBOR)),
        Case("CreateContact", "bravo/nope", "bravo", create_contact(B_NOPE)),
        # GetContact
        Case("GetContact", "acme/downtown contact", "acme", get_contact(DT_ANN)),
        Case("GetContact", "acme/uptown contact", "acme", get_contact(UT_BOB)),
        Case("GetContact", "acme/downtown missing", "acme", get_contact(DT_MISSING)),
        Case("GetContact", "acme/uptown missing", "acme", get_contact(UT_MISSING)),
        Case("GetContact", "acme franchisor-level", "acme", get_contact(A_LEVEL_CONTACT)),
        Case("GetContact", "bravo/harbor contact", "bravo", get_contact(HB_CY)),
        Case("GetContact", "bravo/harbor missing", "bravo", get_contact(HB_MISSING)),
        Case("GetContact", "bravo/nope missing", "bravo", get_contact(BNOPE_MISSING)),
        # ListContacts
        Case("ListContacts", "acme/downtown", "acme", list_contacts(A_DOWNTOWN)),
        Case("ListContacts", "acme/uptown", "acme", list_contacts(A_UPTOWN)),
        Case("ListContacts", "acme franchisor", "acme", list_contacts(A)),
        Case("ListContacts", "bravo/harbor", "bravo", list_contacts(B_HARBOR)),
        Case("ListContacts", "bravo/nope", "bravo", list_contacts(B_NOPE)),
        # UpdateContact
        Case("UpdateContact", "acme/downtown contact", "acme", update_contact(DT_ANN)),
        Case("UpdateContact", "acme/uptown contact", "acme", update_contact(UT_BOB)),
        Case("UpdateContact", "acme/downtown missing", "acme", update_contact(DT_MISSING)),
        Case("UpdateContact", "acme franchisor-level", "acme", update_contact(A_LEVEL_CONTACT)),
        Case("UpdateContact", "bravo/harbor contact", "bravo", update_contact(HB_CY)),
        Case("UpdateContact", "bravo/harbor missing", "bravo", update_contact(HB_MISSING)),
        # ImportContacts
        Case("ImportContacts", "acme/downtown", "acme", import_contacts(A_DOWNTOWN)),
        Case("ImportContacts", "acme/uptown", "acme", import_contacts(A_UPTOWN)),
        Case("ImportContacts", "acme franchisor", "acme", import_contacts(A)),
        Case("ImportContacts", "bravo/harbor", "bravo", import_contacts(B_HARBOR)),
        Case("ImportContacts", "bravo/nope", "bravo", import_contacts(B_NOPE)),
        # RecordConsent
        Case("RecordConsent", "acme/downtown contact", "acme", record_consent(DT_ANN)),
        Case("RecordConsent", "acme/uptown contact", "acme", record_consent(UT_BOB)),
        Case("RecordConsent", "acme/downtown missing", "acme", record_consent(DT_MISSING)),
        Case("RecordConsent", "acme franchisor-level", "acme", record_consent(A_LEVEL_CONTACT)),
        Case("RecordConsent", "bravo/harbor contact", "bravo", record_consent(HB_CY)),
        Case("RecordConsent", "bravo/harbor missing", "bravo", record_consent(HB_MISSING)),
        Case(
            "RecordConsent",
            "acme/downtown contact brand-wide revoke",
            "acme",
            record_brand_revocation(DT_ANN),
        ),
        Case(
            "RecordConsent",
            "bravo/harbor contact brand-wide revoke",
            "bravo",
            record_brand_revocation(HB_CY),
        ),
        # ListConsentEvents
        Case("ListConsentEvents", "acme/downtown contact", "acme", list_consent_events(DT_ANN)),
        Case("ListConsentEvents", "acme/uptown contact", "acme", list_consent_events(UT_BOB)),
        Case(
            "ListConsentEvents",
            "acme/downtown missing",
            "acme",
            list_consent_events(DT_MISSING),
        ),
        Case(
            "ListConsentEvents",
            "acme franchisor-level",
            "acme",
            list_consent_events(A_LEVEL_CONTACT),
        ),
        Case("ListConsentEvents", "bravo/harbor contact", "bravo", list_consent_events(HB_CY)),
        Case(
            "ListConsentEvents",
            "bravo/harbor missing",
            "bravo",
            list_consent_events(HB_MISSING),
        ),
        # RecordActivity
        Case("RecordActivity", "acme/downtown contact", "acme", record_activity(DT_ANN)),
        Case("RecordActivity", "acme/uptown contact", "acme", record_activity(UT_BOB)),
        Case("RecordActivity", "acme/downtown missing", "acme", record_activity(DT_MISSING)),
        Case("RecordActivity", "acme franchisor-level", "acme", record_activity(A_LEVEL_CONTACT)),
        Case("RecordActivity", "bravo/harbor contact", "bravo", record_activity(HB_CY)),
        Case("RecordActivity", "bravo/harbor missing", "bravo", record_activity(HB_MISSING)),
        # GetConversation
        Case("GetConversation", "acme/downtown contact", "acme", get_conversation(DT_ANN)),
        Case("GetConversation", "acme/uptown contact", "acme", get_conversation(UT_BOB)),
        Case("GetConversation", "acme/downtown missing", "acme", get_conversation(DT_MISSING)),
        Case("GetConversation", "acme franchisor-level", "acme", get_conversation(A_LEVEL_CONTACT)),
        Case("GetConversation", "bravo/harbor contact", "bravo", get_conversation(HB_CY)),
        Case("GetConversation", "bravo/harbor missing", "bravo", get_conversation(HB_MISSING)),
        # ListFlaggedMessages
        Case("ListFlaggedMessages", "acme/downtown", "acme", list_flagged(A_DOWNTOWN)),
        Case("ListFlaggedMessages", "acme/uptown", "acme", list_flagged(A_UPTOWN)),
        Case("ListFlaggedMessages", "acme franchisor", "acme", list_flagged(A)),
        Case("ListFlaggedMessages", "bravo/harbor", "bravo", list_flagged(B_HARBOR)),
        Case("ListFlaggedMessages", "bravo/nope", "bravo", list_flagged(B_NOPE)),
        # ResolveFlaggedMessage
        Case("ResolveFlaggedMessage", "acme/downtown text", "acme", resolve_flagged(A_DOWNTOWN)),
        Case("ResolveFlaggedMessage", "acme/uptown text", "acme", resolve_flagged(A_UPTOWN)),
        Case(
            "ResolveFlaggedMessage",
            "acme/downtown missing",
            "acme",
            resolve_flagged(None, f"{A_DOWNTOWN.name}/inboundMessages/999999"),
        ),
        Case(
            "ResolveFlaggedMessage",
            "acme franchisor-level",
            "acme",
            resolve_flagged(None, f"{A.name}/inboundMessages/1"),
        ),
        Case("ResolveFlaggedMessage", "bravo/harbor text", "bravo", resolve_flagged(B_HARBOR)),
        Case(
            "ResolveFlaggedMessage",
            "bravo/harbor missing",
            "bravo",
            resolve_flagged(None, f"{B_HARBOR.name}/inboundMessages/999999"),
        ),
        # ExportContactEvidence
        Case("ExportContactEvidence", "acme/downtown contact", "acme", export_evidence(DT_ANN)),
        Case("ExportContactEvidence", "acme/uptown contact", "acme", export_evidence(UT_BOB)),
        Case("ExportContactEvidence", "acme/downtown missing", "acme", export_evidence(DT_MISSING)),
        Case(
            "ExportContactEvidence",
            "acme franchisor-level",
            "acme",
            export_evidence(A_LEVEL_CONTACT),
        ),
        Case("ExportContactEvidence", "bravo/harbor contact", "bravo", export_evidence(HB_CY)),
        Case("ExportContactEvidence", "bravo/harbor missing", "bravo", export_evidence(HB_MISSING)),
        Case(
            "ExportContactEvidence",
            "acme/downtown by phone",
            "acme",
            export_evidence_by_phone(A_DOWNTOWN, "(212) 555-0111"),
        ),
        Case(
            "ExportContactEvidence",
            "acme/downtown unknown phone",
            "acme",
            export_evidence_by_phone(A_DOWNTOWN, "+12125550199"),
        ),
        Case(
            "ExportContactEvidence",
            "acme/nope by phone",
            "acme",
            export_evidence_by_phone(A_NOPE, "+12125550111"),
        ),
        Case(
            "ExportContactEvidence",
            "bravo/harbor by phone",
            "bravo",
            export_evidence_by_phone(B_HARBOR, "+13125550113"),
        ),
        # CreateSequence
        Case("CreateSequence", "acme brand", "acme", create_sequence(A, A_TPL)),
        Case(
            "CreateSequence",
            "acme/downtown brand+own templates",
            "acme",
            create_sequence(A_DOWNTOWN, A_TPL, DT_TPL),
        ),
        Case("CreateSequence", "acme/uptown", "acme", create_sequence(A_UPTOWN, UT_TPL)),
        Case("CreateSequence", "acme/nope", "acme", create_sequence(A_NOPE, A_TPL)),
        Case(
            "CreateSequence",
            "acme/downtown with uptown template",
            "acme",
            create_sequence(A_DOWNTOWN, A_TPL, UT_TPL),
        ),
        Case(
            "CreateSequence",
            "acme brand with downtown template",
            "acme",
            create_sequence(A, DT_TPL),
        ),
        Case(
            "CreateSequence",
            "acme/downtown with bravo template",
            "acme",
            create_sequence(A_DOWNTOWN, B_TPL),
        ),
        Case("CreateSequence", "bravo brand", "bravo", create_sequence(B, B_TPL)),
        Case("CreateSequence", "bravo/harbor", "bravo", create_sequence(B_HARBOR, B_TPL, HB_TPL)),
        Case("CreateSequence", "bravo/nope", "bravo", create_sequence(B_NOPE, B_TPL)),
        Case("CreateSequence", "nope brand", "nope", create_sequence(NOPE, A_TPL)),
        # GetSequence
        Case("GetSequence", "acme brand", "acme", get_sequence(A_SEQ)),
        Case("GetSequence", "acme/downtown", "acme", get_sequence(DT_SEQ)),
        Case("GetSequence", "acme/uptown", "acme", get_sequence(UT_SEQ)),
        Case("GetSequence", "acme missing brand", "acme", get_sequence(A_SEQ_MISSING)),
        Case("GetSequence", "acme/uptown missing", "acme", get_sequence(UT_SEQ_MISSING)),
        Case("GetSequence", "bravo brand", "bravo", get_sequence(B_SEQ)),
        Case("GetSequence", "bravo/harbor", "bravo", get_sequence(HB_SEQ)),
        Case("GetSequence", "bravo missing brand", "bravo", get_sequence(B_SEQ_MISSING)),
        Case("GetSequence", "bravo/harbor missing", "bravo", get_sequence(HB_SEQ_MISSING)),
        Case("GetSequence", "nope missing brand", "nope", get_sequence(NOPE_SEQ_MISSING)),
        # ListSequences
        Case("ListSequences", "acme", "acme", list_sequences(A)),
        Case("ListSequences", "acme scope location", "acme", list_sequences(A, SCOPE_LOCATION)),
        Case("ListSequences", "acme scope all", "acme", list_sequences(A, SCOPE_ALL)),
        Case("ListSequences", "acme/downtown", "acme", list_sequences(A_DOWNTOWN)),
        Case("ListSequences", "acme/uptown", "acme", list_sequences(A_UPTOWN)),
        Case("ListSequences", "bravo", "bravo", list_sequences(B)),
        Case("ListSequences", "bravo/harbor", "bravo", list_sequences(B_HARBOR)),
        Case("ListSequences", "bravo/nope", "bravo", list_sequences(B_NOPE)),
        Case("ListSequences", "nope", "nope", list_sequences(NOPE)),
        # UpdateSequence
        Case("UpdateSequence", "acme brand", "acme", update_sequence(new_sequence(A, A_TPL))),
        Case(
            "UpdateSequence",
            "acme/downtown",
            "acme",
            update_sequence(new_sequence(A_DOWNTOWN, A_TPL, DT_TPL)),
        ),
        Case(
            "UpdateSequence",
            "acme/uptown",
            "acme",
            update_sequence(new_sequence(A_UPTOWN, UT_TPL)),
        ),
        Case("UpdateSequence", "acme missing brand", "acme", update_sequence(fixed(A_SEQ_MISSING))),
        Case("UpdateSequence", "bravo brand", "bravo", update_sequence(new_sequence(B, B_TPL))),
        Case(
            "UpdateSequence",
            "bravo/harbor",
            "bravo",
            update_sequence(new_sequence(B_HARBOR, HB_TPL)),
        ),
        Case(
            "UpdateSequence",
            "bravo/harbor missing",
            "bravo",
            update_sequence(fixed(HB_SEQ_MISSING)),
        ),
        # ArchiveSequence
        Case("ArchiveSequence", "acme brand", "acme", archive_sequence(new_sequence(A, A_TPL))),
        Case(
            "ArchiveSequence",
            "acme/downtown",
            "acme",
            archive_sequence(new_sequence(A_DOWNTOWN, DT_TPL)),
        ),
        Case(
            "ArchiveSequence",
            "acme/uptown",
            "acme",
            archive_sequence(new_sequence(A_UPTOWN, UT_TPL)),
        ),
        Case(
            "ArchiveSequence", "acme missing brand", "acme", archive_sequence(fixed(A_SEQ_MISSING))
        ),
        Case("ArchiveSequence", "bravo brand", "bravo", archive_sequence(new_sequence(B, B_TPL))),
        Case(
            "ArchiveSequence",
            "bravo/harbor",
            "bravo",
            archive_sequence(new_sequence(B_HARBOR, HB_TPL)),
        ),
        Case(
            "ArchiveSequence",
            "bravo/harbor missing",
            "bravo",
            archive_sequence(fixed(HB_SEQ_MISSING)),
        ),
        # PauseSequence (the same access as ArchiveSequence)
        Case("PauseSequence", "acme brand", "acme", pause_sequence(new_sequence(A, A_TPL))),
        Case(
            "PauseSequence",
            "acme/downtown",
            "acme",
            pause_sequence(new_sequence(A_DOWNTOWN, DT_TPL)),
        ),
        Case(
            "PauseSequence",
            "acme/uptown",
            "acme",
            pause_sequence(new_sequence(A_UPTOWN, UT_TPL)),
        ),
        Case("PauseSequence", "acme missing brand", "acme", pause_sequence(fixed(A_SEQ_MISSING))),
        Case("PauseSequence", "bravo brand", "bravo", pause_sequence(new_sequence(B, B_TPL))),
        Case(
            "PauseSequence",
            "bravo/harbor",
            "bravo",
            pause_sequence(new_sequence(B_HARBOR, HB_TPL)),
        ),
        Case(
            "PauseSequence",
            "bravo/harbor missing",
            "bravo",
            pause_sequence(fixed(HB_SEQ_MISSING)),
        ),
        # ActivateSequence (the same access as ArchiveSequence)
        Case("ActivateSequence", "acme brand", "acme", activate_sequence(new_sequence(A, A_TPL))),
        Case(
            "ActivateSequence",
            "acme/downtown",
            "acme",
            activate_sequence(new_sequence(A_DOWNTOWN, DT_TPL)),
        ),
        Case(
            "ActivateSequence",
            "acme/uptown",
            "acme",
            activate_sequence(new_sequence(A_UPTOWN, UT_TPL)),
        ),
        Case(
            "ActivateSequence",
            "acme missing brand",
            "acme",
            activate_sequence(fixed(A_SEQ_MISSING)),
        ),
        Case("ActivateSequence", "bravo brand", "bravo", activate_sequence(new_sequence(B, B_TPL))),
        Case(
            "ActivateSequence",
            "bravo/harbor",
            "bravo",
            activate_sequence(new_sequence(B_HARBOR, HB_TPL)),
        ),
        Case(
            "ActivateSequence",
            "bravo/harbor missing",
            "bravo",
            activate_sequence(fixed(HB_SEQ_MISSING)),
        ),
        # SimulateSequence
        Case(
            "SimulateSequence",
            "acme brand for downtown contact",
            "acme",
            simulate(A_SEQ, DT_ANN),
        ),
        Case("SimulateSequence", "acme brand for uptown contact", "acme", simulate(A_SEQ, UT_BOB)),
        Case(
            "SimulateSequence",
            "acme/downtown for downtown contact",
            "acme",
            simulate(DT_SEQ, DT_ANN),
        ),
        Case(
            "SimulateSequence",
            "acme/uptown for uptown contact",
            "acme",
            simulate(UT_SEQ, UT_BOB),
        ),
        Case(
            "SimulateSequence",
            "acme/downtown for uptown contact",
            "acme",
            simulate(DT_SEQ, UT_BOB),
        ),
        Case(
            "SimulateSequence",
            "acme brand described at downtown",
            "acme",
            simulate_described(A_SEQ, A_DOWNTOWN),
        ),
        Case(
            "SimulateSequence",
            "acme brand described at uptown",
            "acme",
            simulate_described(A_SEQ, A_UPTOWN),
        ),
        Case(
            "SimulateSequence",
            "acme brand for bravo contact",
            "acme",
            simulate(A_SEQ, HB_CY),
        ),
        Case(
            "SimulateSequence",
            "acme missing brand for downtown contact",
            "acme",
            simulate(A_SEQ_MISSING, DT_ANN),
        ),
        Case(
            "SimulateSequence",
            "bravo brand for harbor contact",
            "bravo",
            simulate(B_SEQ, HB_CY),
        ),
        Case(
            "SimulateSequence",
            "bravo missing brand for harbor contact",
            "bravo",
            simulate(B_SEQ_MISSING, HB_CY),
        ),
    )
}

# ---------------------------------------------------------------------------------------------
# The expected table. Columns (see LABELS):
#   operator, a_admin, a_viewer, a_downtown_manager, a_downtown_staff, b_admin, b_harbor_manager,
#   none, revoked, malformed
# ---------------------------------------------------------------------------------------------

# fmt: off
EXPECTED: dict[str, tuple[Any, ...]] = {
    # case                                                (op  aA  aV  aM  aS  bA  bM  no  rv  mf)
    "CreateContact[acme/downtown]":                       (OK, OK, PD, OK, PD, PD, PD, UA, UA, UA),
    "CreateContact[acme/uptown]":                         (OK, OK, PD, PD, PD, PD, PD, UA, UA, UA),
    "CreateContact[acme/nope]":                           (NF, NF, PD, PD, PD, PD, PD, UA, UA, UA),
    "CreateContact[acme franchisor]":                     (IA, IA, XI, XI, XI, XI, XI, UA, UA, UA),
    "CreateContact[bravo/harbor]":                        (OK, PD, PD, PD, PD, OK, OK, UA, UA, UA),
    "CreateContact[bravo/nope]":                          (NF, PD, PD, PD, PD, NF, PD, UA, UA, UA),
    "GetContact[acme/downtown contact]":                  (OK, OK, OK, OK, OK, PD, PD, UA, UA, UA),
    "GetContact[acme/uptown contact]":                    (OK, OK, OK, PD, PD, PD, PD, UA, UA, UA),
    "GetContact[acme/downtown missing]":                  (NF, NF, NF, NF, NF, PD, PD, UA, UA, UA),
    "GetContact[acme/uptown missing]":                    (NF, NF, NF, PD, PD, PD, PD, UA, UA, UA),
    "GetContact[acme franchisor-level]":                  (IA, IA, IA, XI, XI, XI, XI, UA, UA, UA),
    "GetContact[bravo/harbor contact]":                   (OK, PD, PD, PD, PD, OK, OK, UA, UA, UA),
    "GetContact[bravo/harbor missing]":                   (NF, PD, PD, PD, PD, NF, NF, UA, UA, UA),
    "GetContact[bravo/nope missing]":                     (NF, PD, PD, PD, PD, NF, PD, UA, UA, UA),
    "ListContacts[acme/downtown]":                        (OK, OK, OK, OK, OK, PD, PD, UA, UA, UA),
    "ListContacts[acme/uptown]":                          (OK, OK, OK, PD, PD, PD, PD, UA, UA, UA),
    "ListContacts[acme franchisor]":                      (IA, IA, IA, XI, XI, XI, XI, UA, UA, UA),
    "ListContacts[bravo/harbor]":                         (OK, PD, PD, PD, PD, OK, OK, UA, UA, UA),
    "ListContacts[bravo/nope]":                           (E,  PD, PD, PD, PD, E,  PD, UA, UA, UA),
    "UpdateContact[acme/downtown contact]":               (OK, OK, PD, OK, PD, PD, PD, UA, UA, UA),
    "UpdateContact[acme/uptown contact]":                 (OK, OK, PD, PD, PD, PD, PD, UA, UA, UA),
    "UpdateContact[acme/downtown missing]":               (NF, NF, PD, NF, PD, PD, PD, UA, UA, UA),
    "UpdateContact[acme franchisor-level]":               (IA, IA, XI, XI, XI, XI, XI, UA, UA, UA),
    "UpdateContact[bravo/harbor contact]":                (OK, PD, PD, PD, PD, OK, OK, UA, UA, UA),
    "UpdateContact[bravo/harbor missing]":                (NF, PD, PD, PD, PD, NF, NF, UA, UA, UA),
    "ImportContacts[acme/downtown]":                      (OK, OK, PD, OK, PD, PD, PD, UA, UA, UA),
    "ImportContacts[acme/uptown]":                        (OK, OK, PD, PD, PD, PD, PD, UA, UA, UA),
    "ImportContacts[acme franchisor]":                    (IA, IA, XI, XI, XI, XI, XI, UA, UA, UA),
    "ImportContacts[bravo/harbor]":                       (OK, PD, PD, PD, PD, OK, OK, UA, UA, UA),
    "ImportContacts[bravo/nope]":                         (NF, PD, PD, PD, PD, NF, PD, UA, UA, UA),
    "RecordConsent[acme/downtown contact]":               (OK, OK, PD, OK, PD, PD, PD, UA, UA, UA),
    "RecordConsent[acme/uptown contact]":                 (OK, OK, PD, PD, PD, PD, PD, UA, UA, UA),
    "RecordConsent[acme/downtown missing]":               (NF, NF, PD, NF, PD, PD, PD, UA, UA, UA),
    "RecordConsent[acme franchisor-level]":               (IA, IA, XI, XI, XI, XI, XI, UA, UA, UA),
    "RecordConsent[bravo/harbor contact]":                (OK, PD, PD, PD, PD, OK, OK, UA, UA, UA),
    "RecordConsent[bravo/harbor missing]":                (NF, PD, PD, PD, PD, NF, NF, UA, UA, UA),
    "RecordConsent[acme/downtown contact brand-wide revoke]": (OK, OK, PD, PD, PD, PD, PD, UA, UA, UA),  # noqa: E501
    "RecordConsent[bravo/harbor contact brand-wide revoke]": (OK, PD, PD, PD, PD, OK, PD, UA, UA, UA),  # noqa: E501
    "ListConsentEvents[acme/downtown contact]":           (OK, OK, OK, OK, OK, PD, PD, UA, UA, UA),
    "ListConsentEvents[acme/uptown contact]":             (OK, OK, OK, PD, PD, PD, PD, UA, UA, UA),
    "ListConsentEvents[acme/downtown missing]":           (NF, NF, NF, NF, NF, PD, PD, UA, UA, UA),
    "ListConsentEvents[acme franchisor-level]":           (IA, IA, IA, XI, XI, XI, XI, UA, UA, UA),
    "ListConsentEvents[bravo/harbor contact]":            (OK, PD, PD, PD, PD, OK, OK, UA, UA, UA),
    "ListConsentEvents[bravo/harbor missing]":            (NF, PD, PD, PD, PD, NF, NF, UA, UA, UA),
    "RecordActivity[acme/downtown contact]":              (OK, OK, PD, OK, PD, PD, PD, UA, UA, UA),
    "RecordActivity[acme/uptown contact]":                (OK, OK, PD, PD, PD, PD, PD, UA, UA, UA),
    "RecordActivity[acme/downtown missing]":              (NF, NF, PD, NF, PD, PD, PD, UA, UA, UA),
    "RecordActivity[acme franchisor-level]":              (IA, IA, XI, XI, XI, XI, XI, UA, UA, UA),
    "RecordActivity[bravo/harbor contact]":               (OK, PD, PD, PD, PD, OK, OK, UA, UA, UA),
    "RecordActivity[bravo/harbor missing]":               (NF, PD, PD, PD, PD, NF, NF, UA, UA, UA),
    "GetConversation[acme/downtown contact]":             (OK, OK, OK, OK, OK, PD, PD, UA, UA, UA),
    "GetConversation[acme/uptown contact]":               (OK, OK, OK, PD, PD, PD, PD, UA, UA, UA),
    "GetConversation[acme/downtown missing]":             (NF, NF, NF, NF, NF, PD, PD, UA, UA, UA),
    "GetConversation[acme franchisor-level]":             (IA, IA, IA, XI, XI, XI, XI, UA, UA, UA),
    "GetConversation[bravo/harbor contact]":              (OK, PD, PD, PD, PD, OK, OK, UA, UA, UA),
    "GetConversation[bravo/harbor missing]":              (NF, PD, PD, PD, PD, NF, NF, UA, UA, UA),
    "ListFlaggedMessages[acme/downtown]":                 (OK, OK, OK, OK, OK, PD, PD, UA, UA, UA),
    "ListFlaggedMessages[acme/uptown]":                   (OK, OK, OK, PD, PD, PD, PD, UA, UA, UA),
    "ListFlaggedMessages[acme franchisor]":               (OK, OK, OK, PD, PD, PD, PD, UA, UA, UA),
    "ListFlaggedMessages[bravo/harbor]":                  (OK, PD, PD, PD, PD, OK, OK, UA, UA, UA),
    "ListFlaggedMessages[bravo/nope]":                    (E,  PD, PD, PD, PD, E,  PD, UA, UA, UA),
    "ResolveFlaggedMessage[acme/downtown text]":          (OK, OK, PD, OK, PD, PD, PD, UA, UA, UA),
    "ResolveFlaggedMessage[acme/uptown text]":            (OK, OK, PD, PD, PD, PD, PD, UA, UA, UA),
    "ResolveFlaggedMessage[acme/downtown missing]":       (NF, NF, PD, NF, PD, PD, PD, UA, UA, UA),
    "ResolveFlaggedMessage[acme franchisor-level]":       (IA, IA, XI, XI, XI, XI, XI, UA, UA, UA),
    "ResolveFlaggedMessage[bravo/harbor text]":           (OK, PD, PD, PD, PD, OK, OK, UA, UA, UA),
    "ResolveFlaggedMessage[bravo/harbor missing]":        (NF, PD, PD, PD, PD, NF, NF, UA, UA, UA),
    "ExportContactEvidence[acme/downtown contact]":       (OK, OK, OK, OK, PD, PD, PD, UA, UA, UA),
    "ExportContactEvidence[acme/uptown contact]":         (OK, OK, OK, PD, PD, PD, PD, UA, UA, UA),
    "ExportContactEvidence[acme/downtown missing]":       (NF, NF, NF, NF, PD, PD, PD, UA, UA, UA),
    "ExportContactEvidence[acme franchisor-level]":       (IA, IA, IA, XI, XI, XI, XI, UA, UA, UA),
    "ExportContactEvidence[bravo/harbor contact]":        (OK, PD, PD, PD, PD, OK, OK, UA, UA, UA),
    "ExportContactEvidence[bravo/harbor missing]":        (NF, PD, PD, PD, PD, NF, NF, UA, UA, UA),
    "ExportContactEvidence[acme/downtown by phone]":      (OK, OK, OK, OK, PD, PD, PD, UA, UA, UA),
    "ExportContactEvidence[acme/downtown unknown phone]": (NF, NF, NF, NF, PD, PD, PD, UA, UA, UA),
    "ExportContactEvidence[acme/nope by phone]":          (NF, NF, NF, PD, PD, PD, PD, UA, UA, UA),
    "ExportContactEvidence[bravo/harbor by phone]":       (OK, PD, PD, PD, PD, OK, OK, UA, UA, UA),
    "CreateSequence[acme brand]":                         (OK, OK, PD, PD, PD, PD, PD, UA, UA, UA),
    "CreateSequence[acme/downtown brand+own templates]":  (OK, OK, PD, OK, PD, PD, PD, UA, UA, UA),
    "CreateSequence[acme/uptown]":                        (OK, OK, PD, PD, PD, PD, PD, UA, UA, UA),
    "CreateSequence[acme/nope]":                          (NF, NF, PD, PD, PD, PD, PD, UA, UA, UA),
    "CreateSequence[acme/downtown with uptown template]": (IA, IA, PD, IA, PD, PD, PD, UA, UA, UA),
    "CreateSequence[acme brand with downtown template]":  (IA, IA, PD, PD, PD, PD, PD, UA, UA, UA),
    "CreateSequence[acme/downtown with bravo template]":  (IA, IA, PD, IA, PD, PD, PD, UA, UA, UA),
    "CreateSequence[bravo brand]":                        (OK, PD, PD, PD, PD, OK, PD, UA, UA, UA),
    "CreateSequence[bravo/harbor]":                       (OK, PD, PD, PD, PD, OK, OK, UA, UA, UA),
    "CreateSequence[bravo/nope]":                         (NF, PD, PD, PD, PD, NF, PD, UA, UA, UA),
    "CreateSequence[nope brand]":                         (NF, PD, PD, PD, PD, PD, PD, UA, UA, UA),
    "GetSequence[acme brand]":                            (OK, OK, OK, OK, OK, PD, PD, UA, UA, UA),
    "GetSequence[acme/downtown]":                         (OK, OK, OK, OK, OK, PD, PD, UA, UA, UA),
    "GetSequence[acme/uptown]":                           (OK, OK, OK, PD, PD, PD, PD, UA, UA, UA),
    "GetSequence[acme missing brand]":                    (NF, NF, NF, NF, NF, PD, PD, UA, UA, UA),
    "GetSequence[acme/uptown missing]":                   (NF, NF, NF, PD, PD, PD, PD, UA, UA, UA),
    "GetSequence[bravo brand]":                           (OK, PD, PD, PD, PD, OK, OK, UA, UA, UA),
    "GetSequence[bravo/harbor]":                          (OK, PD, PD, PD, PD, OK, OK, UA, UA, UA),
    "GetSequence[bravo missing brand]":                   (NF, PD, PD, PD, PD, NF, NF, UA, UA, UA),
    "GetSequence[bravo/harbor missing]":                  (NF, PD, PD, PD, PD, NF, NF, UA, UA, UA),
    "GetSequence[nope missing brand]":                    (NF, PD, PD, PD, PD, PD, PD, UA, UA, UA),
    "ListSequences[acme]":                                (OK, OK, OK, OK, OK, PD, PD, UA, UA, UA),
    "ListSequences[acme scope location]":                 (OK, OK, OK, PD, PD, PD, PD, UA, UA, UA),
    "ListSequences[acme scope all]":                      (OK, OK, OK, PD, PD, PD, PD, UA, UA, UA),
    "ListSequences[acme/downtown]":                       (OK, OK, OK, OK, OK, PD, PD, UA, UA, UA),
    "ListSequences[acme/uptown]":                         (OK, OK, OK, PD, PD, PD, PD, UA, UA, UA),
    "ListSequences[bravo]":                               (OK, PD, PD, PD, PD, OK, OK, UA, UA, UA),
    "ListSequences[bravo/harbor]":                        (OK, PD, PD, PD, PD, OK, OK, UA, UA, UA),
    "ListSequences[bravo/nope]":                          (E,  PD, PD, PD, PD, E,  PD, UA, UA, UA),
    "ListSequences[nope]":                                (E,  PD, PD, PD, PD, PD, PD, UA, UA, UA),
    "UpdateSequence[acme brand]":                         (OK, OK, PD, PD, PD, PD, PD, UA, UA, UA),
    "UpdateSequence[acme/downtown]":                      (OK, OK, PD, OK, PD, PD, PD, UA, UA, UA),
    "UpdateSequence[acme/uptown]":                        (OK, OK, PD, PD, PD, PD, PD, UA, UA, UA),
    "UpdateSequence[acme missing brand]":                 (NF, NF, PD, PD, PD, PD, PD, UA, UA, UA),
    "UpdateSequence[bravo brand]":                        (OK, PD, PD, PD, PD, OK, PD, UA, UA, UA),
    "UpdateSequence[bravo/harbor]":                       (OK, PD, PD, PD, PD, OK, OK, UA, UA, UA),
    "UpdateSequence[bravo/harbor missing]":               (NF, PD, PD, PD, PD, NF, NF, UA, UA, UA),
    "ArchiveSequence[acme brand]":                        (OK, OK, PD, PD, PD, PD, PD, UA, UA, UA),
    "ArchiveSequence[acme/downtown]":                     (OK, OK, PD, OK, PD, PD, PD, UA, UA, UA),
    "ArchiveSequence[acme/uptown]":                       (OK, OK, PD, PD, PD, PD, PD, UA, UA, UA),
    "ArchiveSequence[acme missing brand]":                (NF, NF, PD, PD, PD, PD, PD, UA, UA, UA),
    "ArchiveSequence[bravo brand]":                       (OK, PD, PD, PD, PD, OK, PD, UA, UA, UA),
    "ArchiveSequence[bravo/harbor]":                      (OK, PD, PD, PD, PD, OK, OK, UA, UA, UA),
    "ArchiveSequence[bravo/harbor missing]":              (NF, PD, PD, PD, PD, NF, NF, UA, UA, UA),
    "PauseSequence[acme brand]":                        (OK, OK, PD, PD, PD, PD, PD, UA, UA, UA),
    "PauseSequence[acme/downtown]":                     (OK, OK, PD, OK, PD, PD, PD, UA, UA, UA),
    "PauseSequence[acme/uptown]":                       (OK, OK, PD, PD, PD, PD, PD, UA, UA, UA),
    "PauseSequence[acme missing brand]":                (NF, NF, PD, PD, PD, PD, PD, UA, UA, UA),
    "PauseSequence[bravo brand]":                       (OK, PD, PD, PD, PD, OK, PD, UA, UA, UA),
    "PauseSequence[bravo/harbor]":                      (OK, PD, PD, PD, PD, OK, OK, UA, UA, UA),
    "PauseSequence[bravo/harbor missing]":              (NF, PD, PD, PD, PD, NF, NF, UA, UA, UA),
    "ActivateSequence[acme brand]":                        (OK, OK, PD, PD, PD, PD, PD, UA, UA, UA),
    "ActivateSequence[acme/downtown]":                     (OK, OK, PD, OK, PD, PD, PD, UA, UA, UA),
    "ActivateSequence[acme/uptown]":                       (OK, OK, PD, PD, PD, PD, PD, UA, UA, UA),
    "ActivateSequence[acme missing brand]":                (NF, NF, PD, PD, PD, PD, PD, UA, UA, UA),
    "ActivateSequence[bravo brand]":                       (OK, PD, PD, PD, PD, OK, PD, UA, UA, UA),
    "ActivateSequence[bravo/harbor]":                      (OK, PD, PD, PD, PD, OK, OK, UA, UA, UA),
    "ActivateSequence[bravo/harbor missing]":              (NF, PD, PD, PD, PD, NF, NF, UA, UA, UA),
    "SimulateSequence[acme brand for downtown contact]":  (OK, OK, OK, OK, OK, PD, PD, UA, UA, UA),
    "SimulateSequence[acme brand for uptown contact]":    (OK, OK, OK, PD, PD, PD, PD, UA, UA, UA),
    "SimulateSequence[acme/downtown for downtown contact]": (OK, OK, OK, OK, OK, PD, PD, UA, UA, UA),  # noqa: E501
    "SimulateSequence[acme/uptown for uptown contact]":   (OK, OK, OK, PD, PD, PD, PD, UA, UA, UA),
    "SimulateSequence[acme/downtown for uptown contact]": (IA, IA, IA, PD, PD, PD, PD, UA, UA, UA),
    "SimulateSequence[acme brand described at downtown]": (OK, OK, OK, OK, OK, PD, PD, UA, UA, UA),
    "SimulateSequence[acme brand described at uptown]":   (OK, OK, OK, PD, PD, PD, PD, UA, UA, UA),
    "SimulateSequence[acme brand for bravo contact]":     (IA, PD, PD, PD, PD, PD, PD, UA, UA, UA),
    "SimulateSequence[acme missing brand for downtown contact]": (NF, NF, NF, NF, NF, PD, PD, UA, UA, UA),  # noqa: E501
    "SimulateSequence[bravo brand for harbor contact]":   (OK, PD, PD, PD, PD, OK, OK, UA, UA, UA),
    "SimulateSequence[bravo missing brand for harbor contact]": (NF, PD, PD, PD, PD, NF, NF, UA, UA, UA),  # noqa: E501
}
# fmt: on

CONTACT_RPCS = (
    "CreateContact",
    "GetContact",
    "ListContacts",
    "UpdateContact",
    "ImportContacts",
    "RecordConsent",
    "ListConsentEvents",
    "RecordActivity",
    "GetConversation",
    "ListFlaggedMessages",
    "ResolveFlaggedMessage",
    "ExportContactEvidence",
)
SERVER_STREAMS = ("ExportContactEvidence",)
SEQUENCE_RPCS = (
    "CreateSequence",
    "GetSequence",
    "ListSequences",
    "UpdateSequence",
    "ArchiveSequence",
    "PauseSequence",
    "ActivateSequence",
    "SimulateSequence",
)


def expected_codes(case_id: str, label: str) -> tuple[grpc.StatusCode, ...]:
    cell = EXPECTED[case_id][LABELS.index(label)]
    return cell if isinstance(cell, tuple) else (cell,)


def test_the_table_covers_every_rpc_case_and_principal() -> None:
    assert set(EXPECTED) == set(CASES)
    assert all(len(row) == len(LABELS) for row in EXPECTED.values())
    assert {case.rpc for case in CASES.values()} == set(CONTACT_RPCS) | set(SEQUENCE_RPCS)
    contact_service = cpb.DESCRIPTOR.services_by_name["ContactService"]
    assert {m.name for m in contact_service.methods} == set(CONTACT_RPCS)
    sequence_service = spb.DESCRIPTOR.services_by_name["SequenceService"]
    assert {m.name for m in sequence_service.methods} == set(SEQUENCE_RPCS)
    assert set(LABELS) == set(PRINCIPALS) | set(UNAUTHENTICATED_LABELS)
    for row in EXPECTED.values():
        assert all(row[LABELS.index(who)] == UA for who in UNAUTHENTICATED_LABELS)
        assert row[LABELS.index("operator")] != PD


# ---------------------------------------------------------------------------------------------
# Calling and checking one cell
# ---------------------------------------------------------------------------------------------

_RESOURCE = re.compile(r"franchisors/([a-z0-9-]+)(?:/locations/([a-z0-9-]+))?")
_REASONS = {PD: "PERMISSION_DENIED", NF: "RESOURCE_NOT_FOUND", AB: "ETAG_MISMATCH"}


def contact_stub(channel: grpc.aio.Channel) -> contacts_pb2_grpc.ContactServiceStub:
    return contacts_pb2_grpc.ContactServiceStub(channel)


def sequence_stub(channel: grpc.aio.Channel) -> sequences_pb2_grpc.SequenceServiceStub:
    return sequences_pb2_grpc.SequenceServiceStub(channel)


async def call(channel: grpc.aio.Channel, rpc: str, request: Any, metadata: Metadata) -> Any:
    if rpc in CONTACT_RPCS:
        method = getattr(contact_stub(channel), rpc)
    else:
        method = getattr(sequence_stub(channel), rpc)
    if rpc in SERVER_STREAMS:  # every record of a server stream, as a list
        return [record async for record in method(request, metadata=metadata, timeout=30)]
    if isinstance(request, list):  # a client stream
        return await method(iter(request), metadata=metadata, timeout=30)
    return await method(request, metadata=metadata, timeout=30)


def assert_only_own_data(response: Any, scope: TenantScope | None, case_id: str, home: str) -> None:
    """A successful answer holds nothing of another franchisor (not even its name), nor, for a
    location principal, of a sibling location: every resource it names lies in the caller's
    reach (its franchisor's brand resources and, for a location principal, its own location)."""
    answers = response if isinstance(response, list) else [response]  # a stream: every record
    text = "".join(text_format.MessageToString(answer) for answer in answers)
    for other in {"acme", "bravo"} - {home}:
        assert other not in text.lower(), f"{case_id}: answer mentions {other!r}:\n{text}"
    for franchisor_id, location_id in _RESOURCE.findall(text):
        assert franchisor_id == home, f"{case_id}: names franchisors/{franchisor_id}:\n{text}"
        if scope is not None and scope.is_location and location_id:
            assert location_id == scope.location_id, (
                f"{case_id}: a {scope.name} principal sees location {location_id}:\n{text}"
            )


def assert_error_details(got: RpcFailure) -> None:
    assert got.error_info is not None, f"{got.code} without an ErrorInfo detail: {got.message}"
    assert got.error_info.domain == DOMAIN
    assert got.error_info.reason, "ErrorInfo.reason is empty"
    if got.code in _REASONS:
        assert got.error_info.reason == _REASONS[got.code], got.error_info.reason
    if got.code == UA:
        assert got.error_info.reason.startswith("API_KEY_"), got.error_info.reason
    if got.code == IA:
        assert got.violations, f"INVALID_ARGUMENT without field violations: {got.message}"
    assert got.message, "an error without a message"


def listed_names(response: Any) -> list[str]:
    if isinstance(response, cpb.ListContactsResponse):
        return [c.name for c in response.contacts]
    if isinstance(response, spb.ListSequencesResponse):
        return [s.name for s in response.sequences]
    if isinstance(response, cpb.ListFlaggedMessagesResponse):
        return [m.name for m in response.flagged_messages]
    return []


def check_success(case: Case, label: str, response: Any) -> None:
    """What an OK answer must hold beyond visibility."""
    where = f"{case.id} as {label}"
    if isinstance(response, cpb.ImportContactsResponse):
        assert (response.rows, response.created, list(response.rejected)) == (1, 1, []), (
            f"{where}: {response}"
        )
    if isinstance(response, spb.SimulateSequenceResponse):
        assert response.steps, f"{where}: a simulation without steps"
    if case.rpc == "ExportContactEvidence":  # the seeded grant and text, header to summary
        header, summary = response[0].header, response[-1].summary
        assert header.contact.name and header.rules_version, f"{where}: {response[0]}"
        assert (summary.consent_events, summary.outbound_messages) == (1, 1), f"{where}: {summary}"
    if isinstance(response, cpb.FlaggedMessage):
        assert response.resolution == cpb.FLAGGED_RESOLUTION_NOT_OPT_OUT, f"{where}: {response}"
    if (
        case.rpc in ("ListContacts", "ListSequences", "ListFlaggedMessages")
        and "nope" not in case.target
    ):
        assert listed_names(response), f"{where}: an empty list"


async def check_cell(
    channel: grpc.aio.Channel, pool: Pool, case: Case, label: str, metadata: Metadata
) -> None:
    expected = expected_codes(case.id, label)
    scope = PRINCIPALS[label][1] if label in PRINCIPALS else None
    request = await case.build(pool)
    try:
        response = await call(channel, case.rpc, request, metadata)
    except grpc.aio.AioRpcError as error:
        got = failure(error)
        assert got.code in expected, (
            f"{case.id} as {label}: expected {[c.name for c in expected]},"
            f" got {got.code.name}: {got.message}"
        )
        assert_error_details(got)
        return
    assert OK in expected, f"{case.id} as {label}: expected {[c.name for c in expected]}, got OK"
    home = scope.franchisor_id if scope is not None else case.franchisor
    assert_only_own_data(response, scope, f"{case.id} as {label}", home)
    if expected != (OK,):  # a list under a parent that does not exist: nothing in it
        assert not listed_names(response), (
            f"{case.id} as {label}: expected an empty answer or NOT_FOUND, got"
            f" {listed_names(response)}"
        )
        return
    check_success(case, label, response)


@pytest.mark.parametrize("case_id", list(EXPECTED))
async def test_access_matrix(
    case_id: str, channel: grpc.aio.Channel, world: World, pool: Pool
) -> None:
    """One row of the table: every principal in turn, every mismatch reported."""
    await seed(channel, world, pool)
    mismatches: list[str] = []
    for label in LABELS:
        try:
            await check_cell(channel, pool, CASES[case_id], label, world.metadata(label))
        except AssertionError as mismatch:
            mismatches.append(str(mismatch).splitlines()[0])
    assert not mismatches, "\n".join(mismatches)


# ---------------------------------------------------------------------------------------------
# Helpers for the behaviour tests
# ---------------------------------------------------------------------------------------------


async def refused(
    pending: Awaitable[Any],
    code: grpc.StatusCode,
    *,
    reason: str | None = None,
    fields: tuple[str, ...] = (),
) -> RpcFailure:
    """Awaits a call that must fail with code (and ErrorInfo reason / violations on fields)."""
    try:
        response = await pending
    except grpc.aio.AioRpcError as error:
        got = failure(error)
        assert got.code == code, f"expected {code.name}, got {got.code.name}: {got.message}"
        assert_error_details(got)
        if reason is not None:
            assert got.error_info is not None and got.error_info.reason == reason, got
        missing = [f for f in fields if f not in got.violations]
        assert not missing, f"no violation on {missing}; violations: {got.violations}"
        return got
    pytest.fail(f"expected {code.name}, got OK: {response}")


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


# ---------------------------------------------------------------------------------------------
# Visibility
# ---------------------------------------------------------------------------------------------


async def test_a_location_sees_only_its_own_contacts_and_its_own_and_brand_sequences(
    channel: grpc.aio.Channel, world: World, pool: Pool
) -> None:
    await seed(channel, world, pool)
    extra = await new_contact(channel, world, parent=A_DOWNTOWN, contact_id="dan")
    await new_contact(channel, world, parent=A_UPTOWN, contact_id="uma")
    stub, seqs = contact_stub(channel), sequence_stub(channel)

    for label in ("a_downtown_manager", "a_downtown_staff"):
        md = world.metadata(label)
        found = await list_all_contacts(channel, md, page_size=1, parent=A_DOWNTOWN.name)
        assert [c.name for c in found] == [DT_ANN, extra.name]
        assert await list_all_sequences(channel, md, parent=A_DOWNTOWN.name) == [A_SEQ, DT_SEQ]
        assert await list_all_sequences(channel, md, parent=A.name) == [A_SEQ]
        for pending in (
            stub.ListContacts(cpb.ListContactsRequest(parent=A_UPTOWN.name), metadata=md),
            stub.GetContact(cpb.GetContactRequest(name=UT_BOB), metadata=md),
            stub.UpdateContact(
                cpb.UpdateContactRequest(
                    contact=cpb.Contact(name=UT_BOB, first_name="Mallory"),
                    update_mask=field_mask_pb2.FieldMask(paths=["first_name"]),
                ),
                metadata=md,
            ),
            seqs.GetSequence(spb.GetSequenceRequest(name=UT_SEQ), metadata=md),
            seqs.ListSequences(spb.ListSequencesRequest(parent=A_UPTOWN.name), metadata=md),
            seqs.ListSequences(
                spb.ListSequencesRequest(parent=A.name, scope=SCOPE_ALL), metadata=md
            ),
            seqs.UpdateSequence(
                spb.UpdateSequenceRequest(
                    sequence=spb.Sequence(name=UT_SEQ, display_name="Mine now"),
                    update_mask=field_mask_pb2.FieldMask(paths=["display_name"]),
                ),
                metadata=md,
            ),
            seqs.ArchiveSequence(spb.ArchiveSequenceRequest(name=UT_SEQ), metadata=md),
        ):
            await refused(pending, PD)
    # nothing of uptown changed
    bob = await stub.GetContact(
        cpb.GetContactRequest(name=UT_BOB), metadata=world.metadata("a_admin")
    )
    assert bob.first_name == "Bob"
    ut = await seqs.GetSequence(
        spb.GetSequenceRequest(name=UT_SEQ), metadata=world.metadata("a_admin")
    )
    assert (ut.display_name, ut.state) == ("Welcome back", spb.SEQUENCE_STATE_ACTIVE)

    # a franchisor principal sees every location's, on request
    everything = [A_SEQ, DT_SEQ, UT_SEQ]
    for label in ("a_admin", "a_viewer", "operator"):
        md = world.metadata(label)
        assert await list_all_sequences(channel, md, parent=A.name, scope=SCOPE_ALL) == everything
        assert await list_all_sequences(channel, md, parent=A.name) == [A_SEQ]
    md = world.metadata("b_harbor_manager")
    assert await list_all_sequences(channel, md, parent=B_HARBOR.name) == [B_SEQ, HB_SEQ]
    found = await list_all_contacts(channel, md, parent=B_HARBOR.name)
    assert [c.name for c in found] == [HB_CY]


async def test_a_sequence_uses_brand_and_own_location_templates_only(
    channel: grpc.aio.Channel, world: World, pool: Pool
) -> None:
    await seed(channel, world, pool)
    seqs = sequence_stub(channel)
    manager, admin = world.metadata("a_downtown_manager"), world.metadata("a_admin")

    def create(parent: TenantScope, *templates: str) -> spb.CreateSequenceRequest:
        return spb.CreateSequenceRequest(
            parent=parent.name, sequence_id=fresh("seq"), sequence=sequence_body(*templates)
        )

    made = await seqs.CreateSequence(create(A_DOWNTOWN, A_TPL, DT_TPL, A_TPL), metadata=manager)
    assert made.name.startswith(f"{A_DOWNTOWN.name}/sequences/")
    assert [s.template for s in made.steps] == [A_TPL, DT_TPL, A_TPL]
    assert made.state == spb.SEQUENCE_STATE_ACTIVE
    # reply and opt-out always end an enrollment
    assert {spb.EXIT_EVENT_REPLY, spb.EXIT_EVENT_OPT_OUT} <= set(made.exit_events)

    for who in (manager, admin):
        await refused(
            seqs.CreateSequence(create(A_DOWNTOWN, A_TPL, UT_TPL), metadata=who),
            IA,
            fields=("sequence.steps[1].template",),
        )
        await refused(
            seqs.CreateSequence(create(A_DOWNTOWN, B_TPL), metadata=who),
            IA,
            fields=("sequence.steps[0].template",),
        )
    got = await refused(
        seqs.CreateSequence(create(A, A_TPL, A_TPL, DT_TPL), metadata=admin),
        IA,
        fields=("sequence.steps[2].template",),
    )
    assert "sequence.steps[0].template" not in got.violations
    # a location manager creates no brand sequence, whatever its templates
    await refused(seqs.CreateSequence(create(A, A_TPL), metadata=manager), PD)
    # nor may an update point a location sequence at a sibling's template
    await refused(
        seqs.UpdateSequence(
            spb.UpdateSequenceRequest(
                sequence=spb.Sequence(
                    name=made.name, steps=[spb.Step(template=A_TPL), spb.Step(template=UT_TPL)]
                ),
                update_mask=field_mask_pb2.FieldMask(paths=["steps"]),
            ),
            metadata=manager,
        ),
        IA,
        fields=("sequence.steps[1].template",),
    )
    again = await seqs.GetSequence(spb.GetSequenceRequest(name=made.name), metadata=manager)
    assert [s.template for s in again.steps] == [A_TPL, DT_TPL, A_TPL]
    listed = await list_all_sequences(channel, admin, parent=A.name, scope=SCOPE_ALL)
    assert listed == [A_SEQ, DT_SEQ, made.name, UT_SEQ]


# ---------------------------------------------------------------------------------------------
# Consent: append-only, and what it does to the contact
# ---------------------------------------------------------------------------------------------


def test_no_rpc_changes_or_deletes_a_consent_event() -> None:
    service = cpb.DESCRIPTOR.services_by_name["ContactService"]
    names = [m.name for m in service.methods]
    changers = [
        n
        for n in names
        if n.startswith(("Update", "Delete", "Remove", "Edit", "Patch", "Replace", "Purge"))
        and "Consent" in n
    ]
    assert changers == []
    assert sorted(n for n in names if "Consent" in n) == ["ListConsentEvents", "RecordConsent"]


async def consent_rows(pool: Pool) -> list[tuple[Any, ...]]:
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT * FROM consent_events ORDER BY id")
        return await cur.fetchall()


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE consent_events SET source = 'forged', disclosure_text = 'forged'",
        "UPDATE consent_events SET kind = 'grant' WHERE kind = 'revoke'",
        "DELETE FROM consent_events",
        "DELETE FROM consent_events WHERE kind = 'revoke'",
        "TRUNCATE consent_events",
        "TRUNCATE contacts, consent_events CASCADE",
    ],
)
async def test_sql_cannot_change_delete_or_truncate_consent_events(
    statement: str, channel: grpc.aio.Channel, world: World, pool: Pool
) -> None:
    stub = contact_stub(channel)
    md = world.metadata("a_admin")
    contact = await new_contact(channel, world)
    t0 = now()
    await stub.RecordConsent(
        cpb.RecordConsentRequest(contact=contact.name, evidence=grant(t0 - timedelta(days=3))),
        metadata=md,
    )
    await stub.RecordConsent(
        cpb.RecordConsentRequest(contact=contact.name, evidence=revoke(t0 - timedelta(days=1))),
        metadata=md,
    )
    before = await consent_rows(pool)
    assert len(before) == 2
    async with pool.connection() as conn:
        with pytest.raises(psycopg.Error) as raised:
            await conn.execute(statement)
    assert "append-only" in str(raised.value), str(raised.value)
    assert await consent_rows(pool) == before
    listed = await stub.ListConsentEvents(
        cpb.ListConsentEventsRequest(contact=contact.name), metadata=md
    )
    assert [e.evidence.kind for e in listed.consent_events] == [
        cpb.CONSENT_KIND_GRANT,
        cpb.CONSENT_KIND_REVOKE,
    ]
    got = await stub.GetContact(cpb.GetContactRequest(name=contact.name), metadata=md)
    assert (got.opted_out, got.consent_state) == (True, cpb.CONSENT_STATE_REVOKED)


async def test_a_revocation_suppresses_until_a_later_grant(
    channel: grpc.aio.Channel, world: World, pool: Pool
) -> None:
    stub = contact_stub(channel)
    md = world.metadata("a_downtown_manager")
    contact = await new_contact(channel, world, who="a_downtown_manager")
    assert (contact.consent_state, contact.opted_out) == (cpb.CONSENT_STATE_NONE, False)
    assert not contact.HasField("opt_out_time")

    async def record(evidence: cpb.ConsentEvidence) -> cpb.ConsentEvent:
        return await stub.RecordConsent(  # type: ignore[no-any-return]
            cpb.RecordConsentRequest(contact=contact.name, evidence=evidence), metadata=md
        )

    async def state() -> cpb.Contact:
        return await stub.GetContact(cpb.GetContactRequest(name=contact.name), metadata=md)  # type: ignore[no-any-return]

    t0 = now()
    first = await record(grant(t0 - timedelta(days=10)))
    assert first.name.startswith(f"{contact.name}/consentEvents/")
    assert first.evidence == grant(t0 - timedelta(days=10))
    assert first.disclosure_sha256 == hashlib.sha256(DISCLOSURE.encode()).hexdigest()
    assert first.recorded_by.endswith("a-downtown-manager")
    c = await state()
    assert (c.consent_state, c.opted_out) == (cpb.CONSENT_STATE_GRANTED, False)

    # the same evidence again is the same event
    again = await record(grant(t0 - timedelta(days=10)))
    assert again == first
    listed = await stub.ListConsentEvents(
        cpb.ListConsentEventsRequest(contact=contact.name), metadata=md
    )
    assert list(listed.consent_events) == [first]

    stop = await record(revoke(t0 - timedelta(days=5)))
    c = await state()
    assert (c.consent_state, c.opted_out) == (cpb.CONSENT_STATE_REVOKED, True)
    assert c.HasField("opt_out_time")
    opt_out_time = c.opt_out_time

    # a grant that happened before the revocation does not lift it
    stale = await record(grant(t0 - timedelta(days=7), source="https://shop.example/old-form"))
    c = await state()
    assert (c.consent_state, c.opted_out) == (cpb.CONSENT_STATE_REVOKED, True)
    assert c.opt_out_time == opt_out_time

    # a later grant does
    later = await record(
        grant(
            t0 - timedelta(days=1),
            channel=cpb.CONSENT_CHANNEL_SMS_KEYWORD,
            source="keyword START, inbound message SM123",
        )
    )
    c = await state()
    assert (c.consent_state, c.opted_out) == (cpb.CONSENT_STATE_GRANTED, False)
    assert not c.HasField("opt_out_time")

    listed = await stub.ListConsentEvents(
        cpb.ListConsentEventsRequest(contact=contact.name), metadata=md
    )
    recorded = [first, stop, stale, later]
    assert sorted(e.name for e in listed.consent_events) == sorted(e.name for e in recorded)
    by_name = {e.name: e for e in listed.consent_events}
    for event in recorded:
        assert by_name[event.name] == event, "a listed event differs from what was recorded"
    # every reader sees the same events, page by page
    paged: list[cpb.ConsentEvent] = []
    token = ""
    while True:
        page = await stub.ListConsentEvents(
            cpb.ListConsentEventsRequest(contact=contact.name, page_size=1, page_token=token),
            metadata=world.metadata("a_viewer"),
        )
        paged += page.consent_events
        token = page.next_page_token
        if not token:
            break
    assert paged == list(listed.consent_events)


async def test_consent_events_are_listed_oldest_first(
    channel: grpc.aio.Channel, world: World, pool: Pool
) -> None:
    """Oldest first: in the order they happened (occurred_at), even when recorded later."""
    stub = contact_stub(channel)
    md = world.metadata("a_admin")
    contact = await new_contact(channel, world)
    t0 = now()
    recorded = []
    for evidence in (
        grant(t0 - timedelta(days=10)),
        revoke(t0 - timedelta(days=5)),
        grant(t0 - timedelta(days=7), source="https://shop.example/paper-scan"),
        grant(t0 - timedelta(days=1), source="https://shop.example/again"),
    ):
        recorded.append(
            await stub.RecordConsent(
                cpb.RecordConsentRequest(contact=contact.name, evidence=evidence), metadata=md
            )
        )
    listed = await stub.ListConsentEvents(
        cpb.ListConsentEventsRequest(contact=contact.name), metadata=md
    )
    oldest_first = sorted(recorded, key=lambda e: e.evidence.occurred_at.ToDatetime())
    assert [e.name for e in listed.consent_events] == [e.name for e in oldest_first]
    assert list(listed.consent_events) == oldest_first


# ---------------------------------------------------------------------------------------------
# Bad input: contacts
# ---------------------------------------------------------------------------------------------

ATTRS_51 = {f"attr_{i}": "x" for i in range(51)}


@pytest.mark.parametrize(
    ("fields", "violations", "fragment"),
    [
        ({"phone_number": "12345"}, ("contact.phone_number",), ""),
        ({"phone_number": ""}, ("contact.phone_number",), ""),
        ({"phone_number": "+44 20 7946 0958"}, ("contact.phone_number",), "landline"),
        ({"phone_number": "+1 800 555 0199"}, ("contact.phone_number",), "toll-free"),
        ({"time_zone": "Mars/Olympus_Mons"}, ("contact.time_zone",), ""),
        ({"address_region": "ZZ"}, ("contact.address_region",), ""),
        ({"address_region": "Atlantis"}, ("contact.address_region",), ""),
        ({"attributes": {"FavoriteDrink": "latte"}}, ("contact.attributes",), "FavoriteDrink"),
        ({"attributes": {"favorite-drink": "latte"}}, ("contact.attributes",), "favorite-drink"),
        ({"attributes": ATTRS_51}, ("contact.attributes",), ""),
        ({"first_name": "A" * 101}, ("contact.first_name",), ""),
        ({"last_name": "B" * 101}, ("contact.last_name",), ""),
        (
            {"time_zone": "Nowhere/Land", "address_region": "ZZ", "first_name": "C" * 101},
            ("contact.time_zone", "contact.address_region", "contact.first_name"),
            "",
        ),
    ],
    ids=[
        "invalid-phone",
        "no-phone",
        "landline",
        "toll-free",
        "bad-time-zone",
        "bad-region-code",
        "bad-region-name",
        "attribute-key-camel-case",
        "attribute-key-dashes",
        "51-attributes",
        "long-first-name",
        "long-last-name",
        "several-at-once",
    ],
)
async def test_bad_contact_fields_are_invalid_arguments(
    fields: dict[str, Any],
    violations: tuple[str, ...],
    fragment: str,
    channel: grpc.aio.Channel,
    world: World,
) -> None:
    fields = {"phone_number": "+12125550160", **fields}
    attrs = fields.pop("attributes", {})
    stub = contact_stub(channel)
    request = cpb.CreateContactRequest(
        parent=A_DOWNTOWN.name, contact=cpb.Contact(attributes=attrs, **fields)
    )
    try:
        response = await stub.CreateContact(request, metadata=world.metadata("a_admin"))
    except grpc.aio.AioRpcError as error:
        got = failure(error)
    else:
        pytest.fail(f"expected INVALID_ARGUMENT, got {response}")
    assert got.code == IA, got
    assert_error_details(got)
    for field in violations:
        matching = [f for f in got.violations if f == field or f.startswith(field + "[")]
        assert matching, f"no violation on {field}: {got.violations}"
        if fragment:
            assert any(fragment in f + got.violations[f] for f in matching), got.violations
    found = await list_all_contacts(channel, world.metadata("a_admin"), parent=A_DOWNTOWN.name)
    assert found == []


async def test_limits_are_inclusive(channel: grpc.aio.Channel, world: World) -> None:
    made = await new_contact(
        channel,
        world,
        first_name="A" * 100,
        last_name="B" * 100,
        attributes={f"attr_{i}": "v" * 500 for i in range(50)},
    )
    assert len(made.attributes) == 50
    assert len(made.first_name) == 100


async def test_phone_numbers_are_normalised_and_unique_per_location(
    channel: grpc.aio.Channel, world: World
) -> None:
    stub = contact_stub(channel)
    made = await new_contact(channel, world, phone_number="(212) 555-0101", first_name="Nora")
    assert made.phone_number == "+12125550101"
    got = await stub.GetContact(
        cpb.GetContactRequest(name=made.name), metadata=world.metadata("a_downtown_staff")
    )
    assert got.phone_number == "+12125550101"

    for spelling in ("+1 212 555 0101", "212.555.0101", "+12125550101"):
        await refused(
            stub.CreateContact(
                cpb.CreateContactRequest(
                    parent=A_DOWNTOWN.name,
                    contact=cpb.Contact(phone_number=spelling, first_name="Dup"),
                ),
                metadata=world.metadata("a_downtown_manager"),
            ),
            AE,
            reason="PHONE_NUMBER_TAKEN",
        )
    # the same person at another location is another contact
    other = await new_contact(channel, world, parent=A_UPTOWN, phone_number="(212) 555-0101")
    assert other.phone_number == "+12125550101"
    assert other.name.startswith(f"{A_UPTOWN.name}/contacts/")
    found = await list_all_contacts(channel, world.metadata("a_admin"), parent=A_DOWNTOWN.name)
    assert [c.name for c in found] == [made.name]


async def test_update_contact_refuses_the_phone_and_stale_etags(
    channel: grpc.aio.Channel, world: World
) -> None:
    stub = contact_stub(channel)
    md = world.metadata("a_downtown_manager")
    made = await new_contact(channel, world, first_name="Olga")

    def update(contact: cpb.Contact, *paths: str) -> Any:
        return stub.UpdateContact(
            cpb.UpdateContactRequest(
                contact=contact, update_mask=field_mask_pb2.FieldMask(paths=list(paths))
            ),
            metadata=md,
        )

    for paths in (("phone_number",), ("first_name", "phone_number")):
        await refused(
            update(
                cpb.Contact(name=made.name, phone_number="+12125550999", first_name="X"), *paths
            ),
            IA,
            fields=("update_mask",),
        )
    await refused(update(cpb.Contact(name=made.name, first_name="X")), IA, fields=("update_mask",))
    await refused(
        update(cpb.Contact(name=made.name, time_zone="Mars/Base"), "time_zone"),
        IA,
        fields=("contact.time_zone",),
    )
    unchanged = await stub.GetContact(cpb.GetContactRequest(name=made.name), metadata=md)
    assert (unchanged.phone_number, unchanged.first_name) == (made.phone_number, "Olga")
    assert unchanged.etag == made.etag

    updated = await update(
        cpb.Contact(name=made.name, first_name="Olivia", etag=made.etag), "first_name"
    )
    assert updated.first_name == "Olivia"
    assert updated.etag != made.etag
    assert updated.phone_number == made.phone_number
    await refused(
        update(cpb.Contact(name=made.name, first_name="Stale", etag=made.etag), "first_name"),
        AB,
        reason="ETAG_MISMATCH",
    )
    final = await stub.GetContact(cpb.GetContactRequest(name=made.name), metadata=md)
    assert final.first_name == "Olivia"
    assert final.etag == updated.etag


# ---------------------------------------------------------------------------------------------
# Bad input: consent evidence and activities
# ---------------------------------------------------------------------------------------------


def _without(evidence: cpb.ConsentEvidence, *fields: str) -> cpb.ConsentEvidence:
    copy = cpb.ConsentEvidence()
    copy.CopyFrom(evidence)
    for field in fields:
        copy.ClearField(field)
    return copy


@pytest.mark.parametrize(
    ("make", "violations"),
    [
        (lambda t: _without(grant(t), "source"), ("evidence.source",)),
        (lambda t: _without(grant(t), "disclosure_text"), ("evidence.disclosure_text",)),
        (lambda t: _without(grant(t), "occurred_at"), ("evidence.occurred_at",)),
        (
            lambda t: _without(grant(t), "source", "disclosure_text", "occurred_at"),
            ("evidence.source", "evidence.disclosure_text", "evidence.occurred_at"),
        ),
        (
            lambda t: grant(t, channel=cpb.CONSENT_CHANNEL_WEB_FORM),
            ("evidence.ip_address", "evidence.user_agent"),
        ),
        (lambda t: grant(t + timedelta(days=1)), ("evidence.occurred_at",)),
        (lambda t: grant(t, channel=cpb.CONSENT_CHANNEL_SMS_REPLY), ("evidence.channel",)),
        (lambda t: _without(grant(t), "channel"), ("evidence.channel",)),
        (lambda t: _without(grant(t), "kind"), ("evidence.kind",)),
        (lambda t: _without(revoke(t), "occurred_at"), ("evidence.occurred_at",)),
    ],
    ids=[
        "grant-without-source",
        "grant-without-disclosure",
        "grant-without-occurred-at",
        "grant-without-all-three",
        "web-form-without-ip-and-user-agent",
        "occurred-in-the-future",
        "sms-reply-cannot-grant",
        "no-channel",
        "no-kind",
        "revoke-without-occurred-at",
    ],
)
async def test_incomplete_consent_evidence_is_refused_naming_each_field(
    make: Callable[[datetime], cpb.ConsentEvidence],
    violations: tuple[str, ...],
    channel: grpc.aio.Channel,
    world: World,
) -> None:
    stub = contact_stub(channel)
    md = world.metadata("a_admin")
    contact = await new_contact(channel, world)
    await refused(
        stub.RecordConsent(
            cpb.RecordConsentRequest(contact=contact.name, evidence=make(now())), metadata=md
        ),
        IA,
        fields=violations,
    )
    listed = await stub.ListConsentEvents(
        cpb.ListConsentEventsRequest(contact=contact.name), metadata=md
    )
    assert list(listed.consent_events) == []
    got = await stub.GetContact(cpb.GetContactRequest(name=contact.name), metadata=md)
    assert got.consent_state == cpb.CONSENT_STATE_NONE


async def test_web_form_consent_with_its_evidence_is_recorded(
    channel: grpc.aio.Channel, world: World
) -> None:
    stub = contact_stub(channel)
    contact = await new_contact(channel, world)
    evidence = grant(
        now() - timedelta(hours=1),
        channel=cpb.CONSENT_CHANNEL_WEB_FORM,
        ip_address="203.0.113.7",
        user_agent="Mozilla/5.0",
    )
    event = await stub.RecordConsent(
        cpb.RecordConsentRequest(contact=contact.name, evidence=evidence),
        metadata=world.metadata("a_admin"),
    )
    assert event.evidence == evidence


@pytest.mark.parametrize(
    ("activity", "violations"),
    [
        ({"kind": "Purchase!"}, ("activity.kind",)),
        ({"kind": ""}, ("activity.kind",)),
        ({"occurred_at": None}, ("activity.occurred_at",)),
        ({"occurred_at": "future"}, ("activity.occurred_at",)),
        ({"kind": "Purchase!", "occurred_at": None}, ("activity.kind", "activity.occurred_at")),
    ],
    ids=["bad-kind", "no-kind", "no-occurred-at", "future-occurred-at", "both"],
)
async def test_bad_activities_are_refused_naming_each_field(
    activity: dict[str, Any],
    violations: tuple[str, ...],
    channel: grpc.aio.Channel,
    world: World,
    pool: Pool,
) -> None:
    stub = contact_stub(channel)
    md = world.metadata("a_downtown_manager")
    contact = await new_contact(channel, world)
    message = cpb.Activity(kind=activity.get("kind", "purchase"), reference="order-9")
    when = activity.get("occurred_at", "past")
    if when == "past":
        message.occurred_at.CopyFrom(ts(now() - timedelta(days=1)))
    elif when == "future":
        message.occurred_at.CopyFrom(ts(now() + timedelta(days=1)))
    await refused(
        stub.RecordActivity(
            cpb.RecordActivityRequest(contact=contact.name, activity=message), metadata=md
        ),
        IA,
        fields=violations,
    )
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT count(*) FROM activities")
        assert await cur.fetchone() == (0,)
    got = await stub.GetContact(cpb.GetContactRequest(name=contact.name), metadata=md)
    assert not got.HasField("last_activity_time")


async def test_an_activity_with_the_same_reference_is_recorded_once(
    channel: grpc.aio.Channel, world: World, pool: Pool
) -> None:
    stub = contact_stub(channel)
    md = world.metadata("a_downtown_manager")
    contact = await new_contact(channel, world)
    t0 = now()
    first = await stub.RecordActivity(
        cpb.RecordActivityRequest(
            contact=contact.name,
            activity=cpb.Activity(
                kind="purchase",
                occurred_at=ts(t0 - timedelta(days=3)),
                reference="order-42",
                item="Latte",
            ),
        ),
        metadata=md,
    )
    assert first.name.startswith(f"{contact.name}/activities/")
    after_first = await stub.GetContact(cpb.GetContactRequest(name=contact.name), metadata=md)
    assert after_first.last_purchase_time == ts(t0 - timedelta(days=3))
    assert after_first.last_activity_time == ts(t0 - timedelta(days=3))

    second = await stub.RecordActivity(
        cpb.RecordActivityRequest(
            contact=contact.name,
            activity=cpb.Activity(
                kind="purchase",
                occurred_at=ts(t0 - timedelta(days=1)),
                reference="order-42",
                item="Mocha",
            ),
        ),
        metadata=md,
    )
    assert second.name == first.name
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT count(*), min(item) FROM activities WHERE contact_id = %s",
            (contact.name.rsplit("/", 1)[1],),
        )
        assert await cur.fetchone() == (1, "Latte")
    after_second = await stub.GetContact(cpb.GetContactRequest(name=contact.name), metadata=md)
    assert after_second.last_purchase_time == after_first.last_purchase_time
    assert after_second.last_activity_time == after_first.last_activity_time


# ---------------------------------------------------------------------------------------------
# Bad input: sequences
# ---------------------------------------------------------------------------------------------


def step(template: str = A_TPL, days: int = 0) -> spb.Step:
    return spb.Step(template=template, wait=duration_pb2.Duration(seconds=days * 86_400))


def inactivity(days: int, *signals: int) -> spb.EntryTrigger:
    return spb.EntryTrigger(inactivity=spb.InactivityTrigger(days=days, signals=list(signals)))


ARCHIVED_TPL = tname(A, "retired")

BAD_SEQUENCES: list[tuple[str, dict[str, Any], tuple[str, ...]]] = [
    ("no-steps", {"steps": []}, ("sequence.steps",)),
    ("21-steps", {"steps": [step() for _ in range(21)]}, ("sequence.steps",)),
    ("wait-367-days", {"steps": [step(days=367)]}, ("sequence.steps[0].wait",)),
    (
        "wait-367-days-on-step-2",
        {"steps": [step(), step(days=367)]},
        ("sequence.steps[1].wait",),
    ),
    (
        "window-from-07:00",
        {"send_window": tenants_pb2.SendWindow(start_time="07:00", end_time="20:00")},
        ("sequence.send_window.start_time",),
    ),
    (
        "window-until-22:00",
        {"send_window": tenants_pb2.SendWindow(start_time="09:00", end_time="22:00")},
        ("sequence.send_window.end_time",),
    ),
    (
        "inactivity-0-days",
        {"entry_trigger": inactivity(0, spb.ENGAGEMENT_SIGNAL_PURCHASE)},
        ("sequence.entry_trigger.inactivity.days",),
    ),
    (
        "inactivity-without-signals",
        {"entry_trigger": inactivity(30)},
        ("sequence.entry_trigger.inactivity.signals",),
    ),
    (
        "unknown-template",
        {"steps": [step(tname(A, "no-such-template"))]},
        ("sequence.steps[0].template",),
    ),
    ("archived-template", {"steps": [step(ARCHIVED_TPL)]}, ("sequence.steps[0].template",)),
    ("priority-5000", {"priority": 5000}, ("sequence.priority",)),
]


@pytest.mark.parametrize(
    ("fields", "violations"),
    [pytest.param(fields, violations, id=case_id) for case_id, fields, violations in BAD_SEQUENCES],
)
async def test_bad_sequences_are_invalid_arguments(
    fields: dict[str, Any],
    violations: tuple[str, ...],
    channel: grpc.aio.Channel,
    world: World,
) -> None:
    md = world.metadata("a_admin")
    templates = templates_pb2_grpc.TemplateServiceStub(channel)
    for template_id in ("hello", "retired"):
        await templates.CreateTemplate(
            tpb.CreateTemplateRequest(
                parent=A.name,
                template_id=template_id,
                template=tpb.Template(
                    display_name="Hello", body=BODY, lock_mode=tpb.LOCK_MODE_LOCKED
                ),
            ),
            metadata=md,
        )
    await templates.ArchiveTemplate(tpb.ArchiveTemplateRequest(name=ARCHIVED_TPL), metadata=md)
    fields = {"display_name": "Bad", "steps": [step()], **fields}
    seqs = sequence_stub(channel)
    for parent in (A, A_DOWNTOWN):
        await refused(
            seqs.CreateSequence(
                spb.CreateSequenceRequest(
                    parent=parent.name, sequence_id="bad", sequence=spb.Sequence(**fields)
                ),
                metadata=md,
            ),
            IA,
            fields=violations,
        )
    assert await list_all_sequences(channel, md, parent=A.name, scope=SCOPE_ALL) == []

    # the same definition is refused by an update too, and the sequence stays as it was
    good = await seqs.CreateSequence(
        spb.CreateSequenceRequest(
            parent=A.name,
            sequence_id="good",
            sequence=spb.Sequence(display_name="Good", steps=[step(days=366)]),
        ),
        metadata=md,
    )
    await refused(
        seqs.UpdateSequence(
            spb.UpdateSequenceRequest(
                sequence=spb.Sequence(name=good.name, **fields),
                update_mask=field_mask_pb2.FieldMask(paths=["*"]),
            ),
            metadata=md,
        ),
        IA,
        fields=violations,
    )
    assert await seqs.GetSequence(spb.GetSequenceRequest(name=good.name), metadata=md) == good


# ---------------------------------------------------------------------------------------------
# Time zone inference
# ---------------------------------------------------------------------------------------------


async def test_the_time_zone_and_its_source_are_visible_on_the_contact(
    channel: grpc.aio.Channel, world: World
) -> None:
    explicit = await new_contact(
        channel, world, phone_number="+12125550150", time_zone="America/Chicago"
    )
    assert explicit.time_zone_source == cpb.TIME_ZONE_SOURCE_EXPLICIT
    assert list(explicit.effective_time_zones) == ["America/Chicago"]
    assert "NY" in explicit.rule_regions

    utah = await new_contact(channel, world, phone_number="+12125550151", address_region="UT")
    assert utah.time_zone_source == cpb.TIME_ZONE_SOURCE_ADDRESS
    assert list(utah.effective_time_zones) == ["America/Denver"]
    assert utah.address_region == "UT"
    assert {"UT", "NY"} <= set(utah.rule_regions)

    miami = await new_contact(channel, world, phone_number="(305) 555-0142")
    assert miami.phone_number == "+13055550142"
    assert miami.time_zone_source == cpb.TIME_ZONE_SOURCE_AREA_CODE
    assert list(miami.effective_time_zones) == ["America/New_York"]
    assert "FL" in miami.rule_regions

    idaho = await new_contact(channel, world, phone_number="(208) 555-0143")
    assert idaho.time_zone_source == cpb.TIME_ZONE_SOURCE_AREA_CODE
    assert len(idaho.effective_time_zones) == 2, idaho.effective_time_zones
    assert len(set(idaho.effective_time_zones)) == 2
    assert "ID" in idaho.rule_regions

    # a multi-zone address state does not decide the zone: the area code does
    florida = await new_contact(channel, world, phone_number="+12125550152", address_region="FL")
    assert florida.time_zone_source == cpb.TIME_ZONE_SOURCE_AREA_CODE
    assert list(florida.effective_time_zones) == ["America/New_York"]
    assert {"NY", "FL"} <= set(florida.rule_regions)

    # an explicit zone beats the area code, and clearing it brings the inference back
    stub = contact_stub(channel)
    md = world.metadata("a_downtown_manager")
    mask = field_mask_pb2.FieldMask(paths=["time_zone"])
    pinned = await stub.UpdateContact(
        cpb.UpdateContactRequest(
            contact=cpb.Contact(name=idaho.name, time_zone="America/Boise"), update_mask=mask
        ),
        metadata=md,
    )
    assert pinned.time_zone_source == cpb.TIME_ZONE_SOURCE_EXPLICIT
    assert list(pinned.effective_time_zones) == ["America/Boise"]
    cleared = await stub.UpdateContact(
        cpb.UpdateContactRequest(contact=cpb.Contact(name=idaho.name), update_mask=mask),
        metadata=md,
    )
    assert cleared.time_zone_source == cpb.TIME_ZONE_SOURCE_AREA_CODE
    assert list(cleared.effective_time_zones) == list(idaho.effective_time_zones)


# ---------------------------------------------------------------------------------------------
# ListContacts: filters and pages
# ---------------------------------------------------------------------------------------------


async def test_list_contacts_filters_by_opt_out_consent_and_inactivity(
    channel: grpc.aio.Channel, world: World
) -> None:
    stub = contact_stub(channel)
    admin = world.metadata("a_admin")
    t0 = now()
    for contact_id in ("c-buyer", "c-granted", "c-none", "c-replier", "c-revoked", "c-visitor"):
        await new_contact(channel, world, contact_id=contact_id)

    def name(contact_id: str) -> str:
        return cname(A_DOWNTOWN, contact_id)

    for contact_id in ("c-buyer", "c-granted", "c-replier", "c-revoked"):
        await stub.RecordConsent(
            cpb.RecordConsentRequest(
                contact=name(contact_id), evidence=grant(t0 - timedelta(days=30))
            ),
            metadata=admin,
        )
    await stub.RecordConsent(
        cpb.RecordConsentRequest(
            contact=name("c-revoked"), evidence=revoke(t0 - timedelta(days=3))
        ),
        metadata=admin,
    )
    for contact_id, kind, days_ago in (
        ("c-buyer", "purchase", 2),
        ("c-replier", "reply", 10),
        ("c-visitor", "visit", 1),  # not engagement
    ):
        await stub.RecordActivity(
            cpb.RecordActivityRequest(
                contact=name(contact_id),
                activity=cpb.Activity(kind=kind, occurred_at=ts(t0 - timedelta(days=days_ago))),
            ),
            metadata=admin,
        )

    async def listed(**filters: Any) -> list[str]:
        found = await list_all_contacts(
            channel,
            world.metadata("a_downtown_staff"),
            page_size=2,
            parent=A_DOWNTOWN.name,
            **filters,
        )
        return ids(found)

    everyone = ["c-buyer", "c-granted", "c-none", "c-replier", "c-revoked", "c-visitor"]
    assert await listed() == everyone
    assert await listed(opt_out=cpb.OPT_OUT_FILTER_OPTED_OUT) == ["c-revoked"]
    assert await listed(opt_out=cpb.OPT_OUT_FILTER_NOT_OPTED_OUT) == [
        c for c in everyone if c != "c-revoked"
    ]
    assert await listed(consent_state=cpb.CONSENT_STATE_GRANTED) == [
        "c-buyer",
        "c-granted",
        "c-replier",
    ]
    assert await listed(consent_state=cpb.CONSENT_STATE_REVOKED) == ["c-revoked"]
    assert await listed(consent_state=cpb.CONSENT_STATE_NONE) == ["c-none", "c-visitor"]
    assert await listed(inactive_since=ts(t0 - timedelta(days=5))) == [
        c for c in everyone if c != "c-buyer"
    ]
    assert await listed(inactive_since=ts(t0 - timedelta(days=20))) == [
        "c-granted",
        "c-none",
        "c-revoked",
        "c-visitor",
    ]
    assert await listed(
        opt_out=cpb.OPT_OUT_FILTER_NOT_OPTED_OUT,
        consent_state=cpb.CONSENT_STATE_GRANTED,
        inactive_since=ts(t0 - timedelta(days=5)),
    ) == ["c-granted", "c-replier"]

    # a page token continues only the list it came from
    first = await stub.ListContacts(
        cpb.ListContactsRequest(
            parent=A_DOWNTOWN.name, page_size=2, opt_out=cpb.OPT_OUT_FILTER_NOT_OPTED_OUT
        ),
        metadata=admin,
    )
    token = first.next_page_token
    assert ids(list(first.contacts)) == ["c-buyer", "c-granted"] and token
    for other in (
        {"opt_out": cpb.OPT_OUT_FILTER_OPTED_OUT},
        {"opt_out": cpb.OPT_OUT_FILTER_UNSPECIFIED},
        {"opt_out": cpb.OPT_OUT_FILTER_NOT_OPTED_OUT, "consent_state": cpb.CONSENT_STATE_GRANTED},
        {"opt_out": cpb.OPT_OUT_FILTER_NOT_OPTED_OUT, "inactive_since": ts(t0)},
    ):
        await refused(
            stub.ListContacts(
                cpb.ListContactsRequest(
                    parent=A_DOWNTOWN.name, page_size=2, page_token=token, **other
                ),
                metadata=admin,
            ),
            IA,
            fields=("page_token",),
        )
    await refused(
        stub.ListContacts(
            cpb.ListContactsRequest(
                parent=A_UPTOWN.name,
                page_size=2,
                page_token=token,
                opt_out=cpb.OPT_OUT_FILTER_NOT_OPTED_OUT,
            ),
            metadata=admin,
        ),
        IA,
        fields=("page_token",),
    )
    await refused(
        stub.ListContacts(
            cpb.ListContactsRequest(parent=A_DOWNTOWN.name, page_token="garbage"), metadata=admin
        ),
        IA,
        fields=("page_token",),
    )
    second = await stub.ListContacts(
        cpb.ListContactsRequest(
            parent=A_DOWNTOWN.name,
            page_size=2,
            page_token=token,
            opt_out=cpb.OPT_OUT_FILTER_NOT_OPTED_OUT,
        ),
        metadata=admin,
    )
    assert ids(list(second.contacts)) == ["c-none", "c-replier"]


async def test_120_contacts_in_pages_of_50_each_once(
    channel: grpc.aio.Channel, world: World
) -> None:
    stub = contact_stub(channel)
    phones = [f"+1212555{2000 + i:04d}" for i in range(120)]

    def rows(start: int, stop: int) -> list[cpb.ImportRow]:
        return [
            cpb.ImportRow(
                row_number=i + 1,
                contact=cpb.Contact(phone_number=phones[i], first_name=f"Guest {i}"),
                consent=import_evidence(),
            )
            for i in range(start, stop)
        ]

    requests = [
        cpb.ImportContactsRequest(parent=A_DOWNTOWN.name, source="guests.csv", rows=rows(0, 70)),
        cpb.ImportContactsRequest(rows=rows(70, 120)),
    ]
    result = await stub.ImportContacts(iter(requests), metadata=world.metadata("a_admin"))
    assert (result.rows, result.created, list(result.rejected)) == (120, 120, [])

    pages: list[list[cpb.Contact]] = []
    token = ""
    while True:
        page = await stub.ListContacts(
            cpb.ListContactsRequest(parent=A_DOWNTOWN.name, page_size=50, page_token=token),
            metadata=world.metadata("a_downtown_staff"),
        )
        pages.append(list(page.contacts))
        token = page.next_page_token
        if not token:
            break
        assert len(pages) < 10
    assert [len(p) for p in pages] == [50, 50, 20]
    names = [c.name for p in pages for c in p]
    assert len(set(names)) == 120
    assert names == sorted(names, key=lambda n: n.rsplit("/", 1)[1])
    assert sorted(c.phone_number for p in pages for c in p) == sorted(phones)
    assert all(c.consent_state == cpb.CONSENT_STATE_GRANTED for p in pages for c in p)

    # importing the same rows again changes nothing
    again = await stub.ImportContacts(iter(requests), metadata=world.metadata("a_admin"))
    assert (again.rows, again.created, again.updated, again.unchanged) == (120, 0, 0, 120)


# ---------------------------------------------------------------------------------------------
# GetConversation
# ---------------------------------------------------------------------------------------------


async def insert_message(
    pool: Pool, contact: str, direction: str, body: str, at: datetime, status: str = "delivered"
) -> None:
    child = parse_child(contact, contacts.COLLECTION)
    async with pool.connection() as conn:
        await conn.execute(
            "INSERT INTO messages (franchisor_id, location_id, contact_id, direction, body,"
            " encoding, segments, status, create_time) VALUES (%s, %s, %s, %s, %s, 'GSM-7', 1,"
            " %s, %s)",
            (
                child.scope.franchisor_id,
                child.scope.location_id,
                child.id,
                direction,
                body,
                status,
                at,
            ),
        )


async def test_a_conversation_is_newest_first_paged_and_stays_at_its_location(
    channel: grpc.aio.Channel, world: World, pool: Pool
) -> None:
    stub = contact_stub(channel)
    ann = await new_contact(channel, world, contact_id="ann", first_name="Ann")
    other = await new_contact(channel, world, contact_id="other")
    bob = await new_contact(channel, world, parent=A_UPTOWN, contact_id="bob")
    t0 = now() - timedelta(days=1)
    texts = [
        ("outbound", "Hi Ann! Reply STOP to opt out"),
        ("inbound", "Who is this?"),
        ("outbound", "Acme Coffee downtown: we miss you"),
        ("inbound", "ok see you soon"),
        ("outbound", "Great, your latte is on us"),
    ]
    for minute, (direction, body) in enumerate(texts):
        await insert_message(pool, ann.name, direction, body, t0 + timedelta(minutes=minute))
    await insert_message(pool, other.name, "outbound", "Not Ann's", t0 + timedelta(minutes=9))
    await insert_message(pool, bob.name, "outbound", "Uptown's", t0 + timedelta(minutes=9))

    md = world.metadata("a_downtown_staff")
    whole = await stub.GetConversation(cpb.GetConversationRequest(contact=ann.name), metadata=md)
    assert [m.body for m in whole.messages] == [body for _, body in reversed(texts)]
    assert [m.direction for m in whole.messages] == [
        cpb.MESSAGE_DIRECTION_OUTBOUND if d == "outbound" else cpb.MESSAGE_DIRECTION_INBOUND
        for d, _ in reversed(texts)
    ]
    assert [m.create_time for m in whole.messages] == [
        ts(t0 + timedelta(minutes=m)) for m in reversed(range(len(texts)))
    ]
    assert all(m.name.startswith(f"{ann.name}/messages/") for m in whole.messages)
    assert all(
        (m.encoding, m.segments, m.status) == ("GSM-7", 1, "delivered") for m in whole.messages
    )
    assert not whole.next_page_token

    pages: list[list[str]] = []
    token = ""
    while True:
        page = await stub.GetConversation(
            cpb.GetConversationRequest(contact=ann.name, page_size=2, page_token=token),
            metadata=world.metadata("a_viewer"),
        )
        pages.append([m.name for m in page.messages])
        token = page.next_page_token
        if not token:
            break
        if len(pages) == 1:  # a token continues only its own contact's conversation
            await refused(
                stub.GetConversation(
                    cpb.GetConversationRequest(contact=other.name, page_size=2, page_token=token),
                    metadata=md,
                ),
                IA,
                fields=("page_token",),
            )
    assert [len(p) for p in pages] == [2, 2, 1]
    assert [n for p in pages for n in p] == [m.name for m in whole.messages]

    for label, contact in (
        ("a_downtown_staff", bob.name),
        ("a_downtown_manager", bob.name),
        ("b_harbor_manager", ann.name),
        ("b_admin", ann.name),
    ):
        await refused(
            stub.GetConversation(
                cpb.GetConversationRequest(contact=contact), metadata=world.metadata(label)
            ),
            PD,
        )
    uptown = await stub.GetConversation(
        cpb.GetConversationRequest(contact=bob.name), metadata=world.metadata("a_admin")
    )
    assert [m.body for m in uptown.messages] == ["Uptown's"]


async def test_a_conversation_is_ordered_by_time_not_by_insertion(
    channel: grpc.aio.Channel, world: World, pool: Pool
) -> None:
    """Rows written out of order (a backfill, a late inbound) still read newest first."""
    stub = contact_stub(channel)
    ann = await new_contact(channel, world, contact_id="ann", first_name="Ann")
    t0 = now() - timedelta(days=1)
    for minute in (3, 1, 4, 0, 2):
        await insert_message(
            pool, ann.name, "outbound", f"text {minute}", t0 + timedelta(minutes=minute)
        )
    whole = await stub.GetConversation(
        cpb.GetConversationRequest(contact=ann.name), metadata=world.metadata("a_admin")
    )
    assert [m.body for m in whole.messages] == [f"text {m}" for m in (4, 3, 2, 1, 0)]
    paged: list[str] = []
    token = ""
    while True:
        page = await stub.GetConversation(
            cpb.GetConversationRequest(contact=ann.name, page_size=2, page_token=token),
            metadata=world.metadata("a_admin"),
        )
        paged += [m.body for m in page.messages]
        token = page.next_page_token
        if not token:
            break
    assert paged == [f"text {m}" for m in (4, 3, 2, 1, 0)]
