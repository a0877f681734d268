"""Every RPC of every service, fuzzed from its descriptors against the real server (issue 13).

The RPCs are read from the generated modules of `protos/reengage/v1` at collection time, so an
RPC added to a .proto is fuzzed without touching this file. For each, hypothesis builds
requests field by field from the request's descriptor: strings with control characters, huge
strings and strings just under the platform's cap, resource names of the test world and bad
ones, forged page tokens, extreme integers, enum numbers the API does not define, Timestamps
and Durations at and beyond their ranges, nested messages, repeated fields, maps and oneofs;
streaming RPCs get a few such messages; and now and then raw bytes that are no valid message
(invalid UTF-8 in a string field: a lone surrogate) go through an identity serializer.

Each call is made with a franchisor admin's key (sometimes a location manager's) against the
real server with Temporal (EnrollmentService included), and must end in an answer or a
refusal that is neither INTERNAL nor UNKNOWN nor a hang (DEADLINE_EXCEEDED), and every refusal
carries an ErrorInfo detail; the server still answers the gRPC health check after each call.
The one refusal without details is the transport's own RESOURCE_EXHAUSTED for a message over
the server's 8 MiB limit.
"""

from __future__ import annotations

import base64
import importlib
import json
import pkgutil
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import grpc
import pytest
from google.protobuf import duration_pb2, field_mask_pb2, message_factory, timestamp_pb2
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor
from google.protobuf.message import Message
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from psycopg_pool import AsyncConnectionPool
from temporalio.testing import WorkflowEnvironment

import reengage.v1
from reengage.v1 import contacts_pb2 as cpb
from reengage.v1 import enrollments_pb2 as epb
from reengage.v1 import reports_pb2 as rpb
from reengage.v1 import sequences_pb2 as spb
from reengage.v1 import templates_pb2 as tpb
from reengage.v1 import tenants_pb2 as tnpb
from tenants.core.input_validity import (
    MAX_DURATION_SECONDS,
    MAX_TEXT_LENGTH,
    MAX_TIMESTAMP_SECONDS,
    MIN_TIMESTAMP_SECONDS,
)
from tenants.sequences.model import Step
from tests.enrollment_support import (
    brand_template,
    consenting_contact,
    end_leftover_run,
    enrollment_server,
    make_sequence,
    running_worker,
)
from tests.support import A, World

TRANSPORT_LIMIT = 8 * 1024 * 1024  # grpc.max_receive_message_length of the server
DAY = 86_400
NOW = int(datetime(2026, 3, 2, tzinfo=UTC).timestamp())


def _rpcs() -> list[tuple[str, MethodDescriptor]]:
    found = []
    for module in sorted(pkgutil.iter_modules(reengage.v1.__path__), key=lambda m: m.name):
        if not module.name.endswith("_pb2"):
            continue
        descriptor = importlib.import_module(f"reengage.v1.{module.name}").DESCRIPTOR
        for service in descriptor.services_by_name.values():
            for method in service.methods:
                found.append((f"/{service.full_name}/{method.name}", method))
    return found


RPCS = _rpcs()


def _field_names(descriptor: Descriptor, seen: set[str]) -> set[str]:
    """Every field name of descriptor and the messages in it (for update_mask paths)."""
    if descriptor.full_name in seen:
        return set()
    seen.add(descriptor.full_name)
    names = {f.name for f in descriptor.fields}
    for f in descriptor.fields:
        if f.message_type is not None:
            names |= _field_names(f.message_type, seen)
    return names


FIELD_NAMES = sorted(set().union(*(_field_names(m.input_type, set()) for _, m in RPCS)))


# --- values ----------------------------------------------------------------------------------

NASTY_CHARS = ["\x00", "\x01", "\x08", "\x1b", "\x7f", "\x85", "\x9f", "\u2028", "\ufeff", "\t"]
NASTY_CHARS += ["\n", "\r", "/", "{", "}", "|", "%", "'", '"', "\\", "é", "😀", "a", "Z", "0"]
nasty_text = st.one_of(
    st.text(st.characters(exclude_categories=("Cs",)), max_size=20),
    st.text(st.sampled_from(NASTY_CHARS), max_size=20),
)
huge_text = st.sampled_from(
    [MAX_TEXT_LENGTH - 1, MAX_TEXT_LENGTH, MAX_TEXT_LENGTH + 1, 300_000, 20_000, 2_000]
).map(lambda n: "x" * n)
plain_values = st.sampled_from(
    [
        "",
        "downtown",
        "uptown",
        "hello",
        "winback",
        "new-id",
        "Acme",
        "+12125550142",
        "+12125550199",
        "2125550177",
        "America/New_York",
        "Nowhere/Zone",
        "NY",
        "09:00",
        "21:00",
        "24:61",
        "purchase",
        "cart_abandoned",
        "dana@example.com",
        "Hi {{contact.first_name|there}}! Reply STOP to opt out",
        "{{link:https://bit.ly/x}} {{contact.nope}}",
        "U0123ABCD",
        "C0123ABCD",
        "*",
    ]
)


def resource_names(scene: dict[str, str]) -> st.SearchStrategy[str]:
    known = list(scene.values())
    bad = [
        "franchisors/",
        "franchisors//locations/x",
        "franchisors/acme/locations/",
        "franchisors/acme/contacts/c1",
        "franchisors/bravo/locations/harbor",
        "franchisors/bravo/locations/harbor/contacts/x1",
        "franchisors/acme/locations/downtown/contacts/../../x",
        "franchisors/ACME",
        "franchisors/acme/locations/downtown/enrollments/e" + "9" * 40,
        "franchisors/acme/templates/" + "a" * 64,
        "franchisors/acme/apiKeys/revoked-key",
        "franchisors/acme/staffMembers/nobody",
    ]
    return st.one_of(
        st.sampled_from(known + bad),
        st.builds(lambda base, tail: f"{base}/{tail}", st.sampled_from(known), nasty_text),
    )


def forged_tokens(scene: dict[str, str]) -> st.SearchStrategy[str]:
    keys = st.one_of(
        nasty_text,
        st.integers(),
        st.none(),
        st.lists(st.integers(), max_size=2),
        st.sampled_from(["2026-01-01T00:00:00+00:00|" + "9" * 30, "0001-01-01T00:00:00|1"]),
        st.sampled_from(["9" * 12, "-1", "١٢"]),
    )
    parents = st.one_of(nasty_text, st.sampled_from([f"{v}/contacts?" for v in scene.values()]))
    payloads = st.builds(lambda p, a: {"p": p, "a": a}, parents, keys)
    as_token = st.builds(
        lambda d: base64.urlsafe_b64encode(json.dumps(d).encode()).decode().rstrip("="),
        st.one_of(payloads, st.dictionaries(nasty_text, keys, max_size=2)),
    )
    return st.one_of(as_token, nasty_text)


NAME_FIELDS = {"name", "parent", "contact", "sequence", "template", "location", "override_of"}


# NUL first and most: it is what PostgreSQL refuses outright
CONTROLS = st.sampled_from(["\x00", "\x00", "\x00", "\x01", "\x1b", "\x7f", "\x85", "\x9f"])


@st.composite
def spiked(draw: st.DrawFn, plausible: st.SearchStrategy[str]) -> str:
    """A plausible value with a control character put in it."""
    value = draw(plausible)
    at = draw(st.integers(0, len(value)))
    return value[:at] + draw(CONTROLS) + value[at:]


def hostile_strings(scene: dict[str, str], field: FieldDescriptor) -> st.SearchStrategy[str]:
    plausible = plausible_strings(scene, field)
    options = [*[spiked(plausible)] * 5, nasty_text, resource_names(scene), huge_text]
    if "token" in field.name:
        options.insert(0, forged_tokens(scene))
    return st.one_of(*options)


def plausible_strings(scene: dict[str, str], field: FieldDescriptor) -> st.SearchStrategy[str]:
    if "token" in field.name:
        return st.just("")
    if field.name in NAME_FIELDS:
        # a resource that fits the field (a parent, a location) or the one the RPC is about
        # (GetContact: the contact), then any
        everything = list(scene.values())
        wanted = SCENE_FOR.get(field.name) or tuple(
            k for k in scene if k in field.containing_type.name.lower()
        )
        fitting = [scene[k] for k in wanted if k in scene] or everything
        return st.one_of(*[st.sampled_from(fitting)] * 3, st.sampled_from(everything))
    if field.name.endswith("_id") and field.containing_type.name.startswith("Create"):
        return st.from_regex(r"[a-z][a-z0-9-]{0,12}", fullmatch=True)
    if field.name in PLAUSIBLE:
        return st.one_of(PLAUSIBLE[field.name], PLAUSIBLE[field.name], plain_values)
    return plain_values


PLAUSIBLE: dict[str, st.SearchStrategy[str]] = {
    "display_name": st.sampled_from(["Win back", "Downtown", "Hello"]),
    "body": st.sampled_from(
        [
            "Hi {{contact.first_name|there}}, {{brand.name}} misses you! Reply STOP to opt out",
            "{{location.name}}: {{link:https://shop.example/cart}} Reply STOP to opt out",
            "Come back! " * 40,
        ]
    ),
    "phone_number": st.from_regex(r"\+1212555014[0-9]", fullmatch=True),
    "sender_phone_numbers": st.from_regex(r"\+1646555014[0-9]", fullmatch=True),
    "time_zone": st.sampled_from(["America/New_York", "America/Chicago", "Pacific/Honolulu"]),
    "key": st.from_regex(r"[a-z][a-z_]{0,8}", fullmatch=True),
    "start_time": st.sampled_from(["08:00", "09:30", "12:00"]),
    "end_time": st.sampled_from(["17:00", "20:00", "21:00"]),
    "kind": st.sampled_from(["purchase", "visit", "cart_abandoned"]),
    "activity_kind": st.sampled_from(["cart_abandoned", "appointment_completed"]),
    "source": st.sampled_from(["signup sheet", "https://acme.example/join"]),
    "disclosure_text": st.just("I agree to texts from Acme Coffee. Reply STOP to opt out."),
    "email": st.just("dana@example.com"),
    "address_region": st.sampled_from(["NY", "Florida", "TX"]),
    "region_code": st.just("US"),
    "slack_channel_id": st.just("C0123ABCD"),
    "slack_user_id": st.just("U0123ABCD"),
}


# which resources of the scene fit a name field
SCENE_FOR = {
    "parent": ("franchisor", "location", "uptown"),
    "location": ("location", "uptown"),
    "contact": ("contact",),
    "sequence": ("sequence",),
    "template": ("template",),
    "override_of": ("template",),
}


def integers(bits: int, signed: bool) -> st.SearchStrategy[int]:
    low, high = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
    edges = [low, high, 0, 1, 50, 1000, 1001, 3650, 3651] + ([-1] if signed else [])
    return st.one_of(st.sampled_from(edges), st.integers(low, high))


INT_TYPES = {
    FieldDescriptor.TYPE_INT32: (32, True),
    FieldDescriptor.TYPE_SINT32: (32, True),
    FieldDescriptor.TYPE_SFIXED32: (32, True),
    FieldDescriptor.TYPE_INT64: (64, True),
    FieldDescriptor.TYPE_SINT64: (64, True),
    FieldDescriptor.TYPE_SFIXED64: (64, True),
    FieldDescriptor.TYPE_UINT32: (32, False),
    FieldDescriptor.TYPE_FIXED32: (32, False),
    FieldDescriptor.TYPE_UINT64: (64, False),
    FieldDescriptor.TYPE_FIXED64: (64, False),
}
nanos = st.one_of(
    st.sampled_from([0, 1, -1, 999_999_999, 1_000_000_000, -999_999_999]),
    st.integers(-(2**31), 2**31 - 1),
)
timestamp_seconds = st.one_of(
    st.sampled_from(
        [
            MIN_TIMESTAMP_SECONDS - 1,
            MIN_TIMESTAMP_SECONDS,
            MIN_TIMESTAMP_SECONDS + DAY,
            MAX_TIMESTAMP_SECONDS - DAY,
            MAX_TIMESTAMP_SECONDS,
            MAX_TIMESTAMP_SECONDS + 1,
            0,
            NOW,
            NOW + 365 * DAY,
        ]
    ),
    st.integers(-(2**63), 2**63 - 1),
)
DURATION_EDGES = (MAX_DURATION_SECONDS, MAX_DURATION_SECONDS + 1, -MAX_DURATION_SECONDS - 1)
duration_seconds = st.one_of(
    st.sampled_from([0, 1, -1, 3600, DAY, 7 * DAY, 366 * DAY, 3651 * DAY, *DURATION_EDGES]),
    st.integers(-(2**63), 2**63 - 1),
)


@st.composite
def messages(
    draw: st.DrawFn,
    descriptor: Descriptor,
    scene: dict[str, str],
    hostility: int,
    depth: int = 0,
    presence: int = 83,
) -> Message:
    """A message of descriptor's type, each field set with a chance of presence percent; each
    value is hostile with a chance of hostility percent, else plausible (names of the scene,
    small numbers, times near now), so that requests also get past the first check. Nested to
    a depth of 3."""
    message = message_factory.GetMessageClass(descriptor)()
    if depth > 3:
        return message
    hostile = draw(st.integers(0, 99)) < hostility
    if descriptor.full_name in ("google.protobuf.Timestamp", "google.protobuf.Duration"):
        if hostile:
            bound = timestamp_seconds if descriptor.name == "Timestamp" else duration_seconds
            message.seconds, message.nanos = draw(bound), draw(nanos)  # type: ignore[attr-defined]
        else:
            plausible = NOW + 400 * DAY if descriptor.name == "Timestamp" else 2 * DAY
            message.seconds = draw(st.integers(0, plausible))  # type: ignore[attr-defined]
        return message
    if descriptor.full_name == "google.protobuf.FieldMask":
        paths = st.sampled_from(["*", *FIELD_NAMES])
        if hostile:
            paths = st.one_of(paths, nasty_text)
        message.paths.extend(draw(st.lists(paths, max_size=3)))  # type: ignore[attr-defined]
        return message
    for field in descriptor.fields:
        if draw(st.integers(0, 99)) < presence:
            hostile = draw(st.integers(0, 99)) < hostility
            put(draw, message, field, scene, hostile, hostility, depth, presence)
    return message


def put(
    draw: st.DrawFn,
    message: Message,
    field: FieldDescriptor,
    scene: dict[str, str],
    hostile: bool,
    hostility: int,
    depth: int,
    presence: int,
) -> None:
    """Sets message's field to drawn values (a repeated field or map: up to 3)."""
    target = getattr(message, field.name)
    if is_map(field):
        key_field = field.message_type.fields_by_name["key"]
        value_field = field.message_type.fields_by_name["value"]
        entries = draw(
            st.dictionaries(
                values(key_field, scene, hostile, hostility, depth, presence),
                values(value_field, scene, hostile, hostility, depth, presence),
                max_size=3,
            )
        )
        for key, value in entries.items():
            if value_field.message_type is not None:
                target[key].CopyFrom(value)
            else:
                target[key] = value
    elif field.is_repeated:
        items = draw(
            st.lists(values(field, scene, hostile, hostility, depth, presence), max_size=3)
        )
        if field.message_type is not None:
            for item in items:
                target.add().CopyFrom(item)
        else:
            target.extend(items)
    elif field.message_type is not None:
        target.CopyFrom(draw(values(field, scene, hostile, hostility, depth, presence)))
    else:
        setattr(
            message, field.name, draw(values(field, scene, hostile, hostility, depth, presence))
        )


def is_map(field: FieldDescriptor) -> bool:
    return field.message_type is not None and field.message_type.GetOptions().map_entry


LEAF_TYPES = {"google.protobuf.Timestamp", "google.protobuf.Duration", "google.protobuf.FieldMask"}


def leaf_paths(descriptor: Descriptor, depth: int = 0) -> list[tuple[FieldDescriptor, ...]]:
    """Every chain of fields from descriptor down to a leaf: a scalar, a map, a Timestamp,
    Duration or FieldMask, or a message at depth 3."""
    found: list[tuple[FieldDescriptor, ...]] = []
    for field in descriptor.fields:
        message = field.message_type
        if message is None or is_map(field) or message.full_name in LEAF_TYPES or depth >= 3:
            found.append((field,))
        else:
            found.extend((field, *rest) for rest in leaf_paths(message, depth + 1))
    return found


def is_set(message: Message, path: tuple[FieldDescriptor, ...]) -> bool:
    target: Any = message
    for field in path:
        value = getattr(target, field.name)
        if field.is_repeated or is_map(field):
            if not len(value):
                return False
            value = value if is_map(field) else value[0]
        elif field.message_type is not None and not target.HasField(field.name):
            return False
        elif field.message_type is None and value == field.default_value:
            return False
        target = value
    return True


@st.composite
def made_hostile(draw: st.DrawFn, base: Message, scene: dict[str, str]) -> Message:
    """base with one or two of its leaves (set or not) given a hostile value."""
    request = type(base)()
    request.CopyFrom(base)
    paths = leaf_paths(base.DESCRIPTOR)
    given = [p for p in paths if is_set(base, p)]  # mostly the fields the valid request uses
    for _ in range(draw(st.sampled_from([1, 1, 1, 2]))):
        *way, leaf = draw(
            st.one_of(st.sampled_from(given), st.sampled_from(given), st.sampled_from(paths))
        )
        target: Any = request
        for field in way:
            target = getattr(target, field.name)
            if field.is_repeated:
                target = target[0] if len(target) else target.add()
        target.ClearField(leaf.name)
        put(draw, target, leaf, scene, True, 100, 0, 83)
    return request


def values(
    field: FieldDescriptor,
    scene: dict[str, str],
    hostile: bool,
    hostility: int,
    depth: int,
    presence: int,
) -> st.SearchStrategy[Any]:
    """Values for field: hostile ones, or plausible ones."""
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        return messages(field.message_type, scene, hostility, depth + 1, presence)
    if field.type == FieldDescriptor.TYPE_STRING:
        return (hostile_strings if hostile else plausible_strings)(scene, field)
    if field.type == FieldDescriptor.TYPE_BYTES:
        return st.binary(max_size=40)
    if field.type == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if field.type in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        width = 32 if field.type == FieldDescriptor.TYPE_FLOAT else 64
        return st.floats(width=width) if hostile else st.floats(0, 100, width=width)
    if field.type == FieldDescriptor.TYPE_ENUM:
        defined = st.sampled_from([v.number for v in field.enum_type.values])
        return st.one_of(defined, integers(32, True), st.integers(-3, 20)) if hostile else defined
    bits, signed = INT_TYPES[field.type]
    return integers(bits, signed) if hostile else st.integers(0, 60)


def valid_requests(scene: dict[str, str]) -> dict[str, Message]:
    """A request each of the main RPCs answers, to be made hostile a few fields at a time.
    (RPCs without one, new ones included, are fuzzed from scratch only.)"""
    now = timestamp_pb2.Timestamp(seconds=NOW)
    grant = cpb.ConsentEvidence(
        kind=cpb.CONSENT_KIND_GRANT,
        channel=cpb.CONSENT_CHANNEL_PAPER_FORM,
        occurred_at=now,
        source="signup sheet",
        disclosure_text="I agree to texts from Acme Coffee.",
    )
    contact = cpb.Contact(
        phone_number="+12125550143",
        first_name="Robin",
        email="robin@example.com",
        attributes={"tier": "gold"},
        time_zone="America/New_York",
        address_region="NY",
    )
    step = spb.Step(template=scene["template"], wait=duration_pb2.Duration(seconds=DAY))
    sequence = spb.Sequence(
        display_name="Win back",
        steps=[step, step],
        entry_trigger=spb.EntryTrigger(
            inactivity=spb.InactivityTrigger(days=30, signals=[spb.ENGAGEMENT_SIGNAL_REPLY])
        ),
        cooldown=duration_pb2.Duration(seconds=30 * DAY),
        send_window=tnpb.SendWindow(start_time="09:00", end_time="20:00"),
        frequency_cap=spb.FrequencyCap(max_messages=2, period=duration_pb2.Duration(seconds=DAY)),
    )
    location = tnpb.Location(
        display_name="Midtown",
        time_zone="America/New_York",
        sender_phone_numbers=["+16465550149"],
        send_window=tnpb.SendWindow(start_time="09:00", end_time="20:00"),
        daily_enrollment_cap=100,
    )
    body = "Hi {{contact.first_name|there}}, {{brand.name}} misses you! Reply STOP to opt out"
    services = {
        "TemplateService": {
            "CreateTemplate": tpb.CreateTemplateRequest(
                parent=scene["franchisor"],
                template_id="fresh",
                template=tpb.Template(display_name="Fresh", body=body),
            ),
            "PreviewTemplate": tpb.PreviewTemplateRequest(
                body=body,
                location=scene["location"],
                contact=tpb.SampleContact(first_name="Dana", attrs={"tier": "gold"}),
                first_message=True,
            ),
            "ListTemplates": tpb.ListTemplatesRequest(parent=scene["location"], text="misses"),
        },
        "ContactService": {
            "CreateContact": cpb.CreateContactRequest(parent=scene["location"], contact=contact),
            "UpdateContact": cpb.UpdateContactRequest(
                contact=cpb.Contact(name=scene["contact"], first_name="Dee", time_zone="UTC"),
                update_mask=field_mask_pb2.FieldMask(paths=["first_name"]),
            ),
            "ImportContacts": cpb.ImportContactsRequest(
                parent=scene["location"],
                source="crm.csv",
                rows=[cpb.ImportRow(row_number=1, contact=contact, consent=grant)],
            ),
            "RecordConsent": cpb.RecordConsentRequest(contact=scene["contact"], evidence=grant),
            "RecordActivity": cpb.RecordActivityRequest(
                contact=scene["contact"],
                activity=cpb.Activity(kind="purchase", occurred_at=now, reference="o-1"),
            ),
            "ListContacts": cpb.ListContactsRequest(parent=scene["location"], inactive_since=now),
        },
        "SequenceService": {
            "CreateSequence": spb.CreateSequenceRequest(
                parent=scene["franchisor"], sequence_id="fresh", sequence=sequence
            ),
            "UpdateSequence": spb.UpdateSequenceRequest(
                sequence=spb.Sequence(name=scene["sequence"], steps=[step], display_name="W"),
                update_mask=field_mask_pb2.FieldMask(paths=["steps", "display_name"]),
            ),
            "SimulateSequence": spb.SimulateSequenceRequest(
                name=scene["sequence"], contact=scene["contact"], start_time=now
            ),
        },
        "TenantService": {
            "CreateLocation": tnpb.CreateLocationRequest(
                parent=scene["franchisor"], location_id="midtown", location=location
            ),
            "UpdateLocation": tnpb.UpdateLocationRequest(
                location=tnpb.Location(name=scene["location"], daily_enrollment_cap=5),
                update_mask=field_mask_pb2.FieldMask(paths=["daily_enrollment_cap"]),
            ),
            "CreateStaffMember": tnpb.CreateStaffMemberRequest(
                parent=scene["location"],
                staff_member_id="sam",
                staff_member=tnpb.StaffMember(
                    display_name="Sam", role=tnpb.ROLE_LOCATION_STAFF, slack_user_id="U0SAM"
                ),
            ),
        },
        "EnrollmentService": {
            "Enroll": epb.EnrollRequest(contact=scene["contact"], sequence=scene["sequence"]),
        },
        "ReportService": {
            "GetSequenceReport": rpb.GetSequenceReportRequest(
                name=scene["sequence"], location=scene["location"]
            ),
            "GetLocationReport": rpb.GetLocationReportRequest(name=scene["location"]),
            "GetFranchisorReport": rpb.GetFranchisorReportRequest(
                name=scene["franchisor"], order_by="click_through_rate asc", page_size=1
            ),
            "ExportReport": rpb.ExportReportRequest(
                parent=scene["franchisor"], grouping=rpb.EXPORT_GROUPING_BY_LOCATION
            ),
        },
    }
    return {
        f"/reengage.v1.{service}/{method}": request
        for service, methods in services.items()
        for method, request in methods.items()
    }


def undecodable(method: MethodDescriptor) -> bytes:
    """A request whose first string field carries UTF-8 bytes of a lone surrogate."""
    field = next(
        (f for f in method.input_type.fields if f.type == FieldDescriptor.TYPE_STRING), None
    )
    number = field.number if field is not None else 1
    return bytes([(number << 3) | 2, 3]) + b"\xed\xa0\x80"


# --- the server --------------------------------------------------------------------------------


@pytest.fixture
async def scene(pool: AsyncConnectionPool[Any], world: World) -> dict[str, str]:
    """Names of real resources of the world, so that fuzzed requests also reach deep code."""
    template = await brand_template(pool)
    sequence = await make_sequence(pool, [Step(template, wait_seconds=365 * DAY)])
    contact = await consenting_contact(pool)
    return {
        "franchisor": A.name,
        "location": "franchisors/acme/locations/downtown",
        "uptown": "franchisors/acme/locations/uptown",
        "apikey": "franchisors/acme/apiKeys/revoked-key",
        "staffmember": "franchisors/acme/staffMembers/nobody",
        "template": template,
        "sequence": sequence.name,
        "contact": contact.name,
        "enrollment": "franchisors/acme/locations/downtown/enrollments/e1",
    }


@pytest.fixture
async def fuzz_channel(
    time_skipping_env: WorkflowEnvironment, pool: AsyncConnectionPool[Any]
) -> AsyncIterator[grpc.aio.Channel]:
    """The real gRPC server, EnrollmentService included, with a worker for its workflows."""
    async with running_worker(time_skipping_env.client, pool) as running:
        try:
            async with (
                enrollment_server(pool, running.workflows) as target,
                grpc.aio.insecure_channel(target) as channel,
            ):
                yield channel
        finally:
            async with pool.connection() as conn:
                cur = await conn.execute("SELECT workflow_id, run_id FROM enrollments")
                runs = await cur.fetchall()
            for workflow_id, run_id in runs:  # enrollments the fuzzer made: end them
                await end_leftover_run(
                    running.client, running.workflows, workflow_id, run_id or None
                )


async def call(
    channel: grpc.aio.Channel, path: str, method: MethodDescriptor, requests: list[Any], who: Any
) -> None:
    """Calls the RPC with requests (messages, or raw bytes) and reads the whole answer."""
    serialize = (
        (lambda r: r) if isinstance(requests[0], bytes) else (lambda r: r.SerializeToString())
    )
    kwargs: dict[str, Any] = {
        "request_serializer": serialize,
        "response_deserializer": lambda b: b,
    }
    options = {"metadata": who, "timeout": 30}
    if method.client_streaming:

        async def stream() -> AsyncIterator[Any]:
            for r in requests:
                yield r

        factory = channel.stream_stream if method.server_streaming else channel.stream_unary
        answer = factory(path, **kwargs)(stream(), **options)
    else:
        factory = channel.unary_stream if method.server_streaming else channel.unary_unary
        answer = factory(path, **kwargs)(requests[0], **options)
    if method.server_streaming:
        async for _ in answer:
            pass
    else:
        await answer


def assert_clean(error: grpc.aio.AioRpcError, size: int) -> None:
    code = error.code()
    assert code not in (
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.UNIMPLEMENTED,
    ), (code, error.details())
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED and size > TRANSPORT_LIMIT:
        return  # the transport's own refusal, before any handler
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None, (code, error.details())
    assert any(d.Is(error_details_pb2.ErrorInfo.DESCRIPTOR) for d in status.details), (
        code,
        error.details(),
    )


async def assert_healthy(channel: grpc.aio.Channel) -> None:
    answer = await health_pb2_grpc.HealthStub(channel).Check(
        health_pb2.HealthCheckRequest(), timeout=10
    )
    assert answer.status == health_pb2.HealthCheckResponse.SERVING


FUZZ = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)


@pytest.mark.parametrize(("path", "method"), RPCS, ids=[p for p, _ in RPCS])
@FUZZ
@given(data=st.data())
async def test_a_fuzzed_request_is_answered_or_refused_cleanly(
    fuzz_channel: grpc.aio.Channel,
    world: World,
    scene: dict[str, str],
    path: str,
    method: MethodDescriptor,
    data: st.DataObject,
) -> None:
    who = world.metadata(data.draw(st.sampled_from(["a_admin"] * 4 + ["a_downtown_manager"])))
    if data.draw(st.integers(0, 9)) == 0:  # not a valid message at all
        requests: list[Any] = [
            data.draw(st.one_of(st.just(undecodable(method)), st.binary(max_size=60)))
        ]
    else:
        count = data.draw(st.integers(1, 3)) if method.client_streaming else 1
        base = valid_requests(scene).get(path)
        requests = []
        for _ in range(count):
            if base is not None and data.draw(st.booleans()):
                # a valid request with a field or two made hostile: gets past the first check
                request = data.draw(made_hostile(base, scene))
            else:
                hostility = data.draw(st.sampled_from([0, 0, 5, 20, 100]))
                request = data.draw(messages(method.input_type, scene, hostility))
            requests.append(request)
    size = sum(len(r) if isinstance(r, bytes) else r.ByteSize() for r in requests)
    try:
        await call(fuzz_channel, path, method, requests, who)
        event("answered")
    except grpc.aio.AioRpcError as error:
        event(error.code().name)
        assert_clean(error, size)
    await assert_healthy(fuzz_channel)


@pytest.mark.parametrize(("path", "method"), RPCS, ids=[p for p, _ in RPCS])
async def test_a_lone_surrogate_is_refused_as_a_malformed_request(
    fuzz_channel: grpc.aio.Channel, world: World, path: str, method: MethodDescriptor
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call(fuzz_channel, path, method, [undecodable(method)], world.metadata("a_admin"))
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT, raised.value.details()
    status = rpc_status.from_call(raised.value)  # type: ignore[arg-type]
    assert status is not None
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info) and info.reason == "MALFORMED_REQUEST"


async def test_the_valid_requests_the_fuzzer_starts_from_are_answered(
    fuzz_channel: grpc.aio.Channel, world: World, scene: dict[str, str]
) -> None:
    """The control: the requests made hostile a few fields at a time are valid as they are,
    so the fuzzer's mutations reach past the first check."""
    by_path = dict(RPCS)
    for path, request in valid_requests(scene).items():
        await call(fuzz_channel, path, by_path[path], [request], world.metadata("a_admin"))
