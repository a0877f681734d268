"""Hostile input over the real gRPC server never comes back INTERNAL (issue 13, items 2 and 3).

* a NUL or other control character in any string field of any request is INVALID_ARGUMENT
  with a BadRequest field violation naming the field's path in the request (nested messages,
  map entries, streamed messages), and nothing is written;
* a page token forged to carry one, or carrying the wrong types, is INVALID_ARGUMENT on
  `page_token`;
* a Timestamp outside 0001-01-01..9999-12-31 or with nanos outside 0..999,999,999, and a
  Duration beyond ±10,000 years or with nanos of the other sign, are INVALID_ARGUMENT naming
  the field; date arithmetic that would run past those bounds (a simulation started near year 1
  or 9999 with a wait) is INVALID_ARGUMENT naming the field that caused it;
* a message that is not valid protobuf (invalid UTF-8 in a string field), a huge string and
  extreme integers are refused cleanly, and the server keeps answering.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from google.protobuf import duration_pb2, timestamp_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from psycopg_pool import AsyncConnectionPool

from reengage.v1 import contacts_pb2 as cpb
from reengage.v1 import contacts_pb2_grpc, sequences_pb2_grpc, templates_pb2_grpc
from reengage.v1 import sequences_pb2 as spb
from reengage.v1 import templates_pb2 as tpb
from tenants.sequences.model import Step
from tests.access_matrix import Stack, matrix_fixtures
from tests.enrollment_support import brand_template, consenting_contact, make_sequence
from tests.inbound_support import row_count
from tests.support import A, RpcFailure, World, failure

ACME = "franchisors/acme"
DOWNTOWN = "franchisors/acme/locations/downtown"
NUL = "\x00"
MAX_SECONDS = 253_402_300_799  # 9999-12-31T23:59:59Z
MIN_SECONDS = -62_135_596_800  # 0001-01-01T00:00:00Z
DAY = 86_400
GRANT = cpb.ConsentEvidence(
    kind=cpb.CONSENT_KIND_GRANT,
    channel=cpb.CONSENT_CHANNEL_PAPER_FORM,
    occurred_at=timestamp_pb2.Timestamp(seconds=1_767_225_600),  # 2026-01-01
    source="signup sheet",
    disclosure_text="I agree to texts from Acme Coffee.",
)


class Api:
    """Calls any service as one of the world's principals."""

    def __init__(self, channel: grpc.aio.Channel, world: World) -> None:
        self.channel = channel
        self.world = world
        self.stubs = {
            "templates": templates_pb2_grpc.TemplateServiceStub(channel),
            "contacts": contacts_pb2_grpc.ContactServiceStub(channel),
            "sequences": sequences_pb2_grpc.SequenceServiceStub(channel),
        }

    async def __call__(self, service: str, method: str, request: Any, who: str = "a_admin") -> Any:
        call = getattr(self.stubs[service], method)
        return await call(request, metadata=self.world.metadata(who), timeout=30)

    async def fails(
        self, service: str, method: str, request: Any, who: str = "a_admin"
    ) -> RpcFailure:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await self(service, method, request, who)
        return failure(raised.value)

    async def healthy(self) -> bool:
        stub = health_pb2_grpc.HealthStub(self.channel)
        answer = await stub.Check(health_pb2.HealthCheckRequest(), timeout=10)
        return bool(answer.status == health_pb2.HealthCheckResponse.SERVING)


seeded, shared_stack = matrix_fixtures()


@pytest.fixture
async def api(channel: grpc.aio.Channel, world: World) -> Api:
    """For a case that writes (or seeds what it needs): a database and server of its own."""
    return Api(channel, world)


@pytest.fixture
def refusing(shared_stack: Stack) -> Api:
    """For a case that is refused or only reads: the module's shared server and database."""
    return Api(shared_stack.channel, shared_stack.world)


def assert_refused(got: RpcFailure, field: str) -> None:
    """INVALID_ARGUMENT with ErrorInfo, and a BadRequest violation on exactly this field."""
    assert got.code == grpc.StatusCode.INVALID_ARGUMENT, got
    assert got.error_info is not None and got.error_info.domain == "reengage.dev", got
    assert got.error_info.reason == "INVALID_ARGUMENT", got
    assert field in got.violations, got


def forged_token(payload: Any) -> str:
    raw = json.dumps(payload).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


# --- control characters --------------------------------------------------------------------


async def test_a_template_body_with_a_nul_is_refused_on_template_body(
    api: Api, pool: AsyncConnectionPool[Any]
) -> None:
    request = tpb.CreateTemplateRequest(
        parent=ACME,
        template_id="nul",
        template=tpb.Template(display_name="Nul", body=f"Hi{NUL} there. Reply STOP to opt out"),
    )
    assert_refused(await api.fails("templates", "CreateTemplate", request), "template.body")
    assert await row_count(pool, "templates") == 0


async def test_a_template_filter_text_with_a_nul_is_refused_on_text(refusing: Api) -> None:
    request = tpb.ListTemplatesRequest(parent=ACME, text=f"latte{NUL}")
    assert_refused(await refusing.fails("templates", "ListTemplates", request), "text")


async def test_a_contact_email_with_a_nul_is_refused_on_contact_email(
    api: Api, pool: AsyncConnectionPool[Any]
) -> None:
    request = cpb.CreateContactRequest(
        parent=DOWNTOWN,
        contact=cpb.Contact(phone_number="+12125550142", email=f"dana{NUL}@example.com"),
    )
    assert_refused(await api.fails("contacts", "CreateContact", request), "contact.email")
    assert await row_count(pool, "contacts") == 0


async def test_a_control_character_in_an_attribute_value_names_the_map_entry(refusing: Api) -> None:
    request = cpb.CreateContactRequest(
        parent=DOWNTOWN,
        contact=cpb.Contact(phone_number="+12125550142", attributes={"vip": "gold\x1b[31m"}),
    )
    assert_refused(
        await refusing.fails("contacts", "CreateContact", request), "contact.attributes[vip]"
    )


@pytest.mark.parametrize("field", ["source", "disclosure_text", "raw_text", "user_agent"])
async def test_consent_evidence_with_a_nul_is_refused_on_its_field(
    api: Api, pool: AsyncConnectionPool[Any], field: str
) -> None:
    contact = await consenting_contact(pool)
    events = await row_count(pool, "consent_events")
    evidence = cpb.ConsentEvidence()
    evidence.CopyFrom(GRANT)
    setattr(evidence, field, f"a{NUL}b")
    request = cpb.RecordConsentRequest(contact=contact.name, evidence=evidence)
    assert_refused(await api.fails("contacts", "RecordConsent", request), f"evidence.{field}")
    assert await row_count(pool, "consent_events") == events


async def test_an_activity_reference_with_a_nul_is_refused_on_activity_reference(
    api: Api, pool: AsyncConnectionPool[Any]
) -> None:
    contact = await consenting_contact(pool)
    request = cpb.RecordActivityRequest(
        contact=contact.name,
        activity=cpb.Activity(
            kind="purchase",
            occurred_at=timestamp_pb2.Timestamp(seconds=1_767_225_600),
            reference=f"order-1{NUL}",
        ),
    )
    assert_refused(await api.fails("contacts", "RecordActivity", request), "activity.reference")
    assert await row_count(pool, "activities") == 0


async def test_multi_line_texts_keep_tabs_and_line_breaks(
    api: Api, pool: AsyncConnectionPool[Any]
) -> None:
    contact = await consenting_contact(pool)
    evidence = cpb.ConsentEvidence()
    evidence.CopyFrom(GRANT)
    evidence.disclosure_text = "I agree to texts from Acme Coffee.\r\n\tMsg & data rates apply."
    request = cpb.RecordConsentRequest(contact=contact.name, evidence=evidence)
    recorded = await api("contacts", "RecordConsent", request)
    assert recorded.evidence.disclosure_text == evidence.disclosure_text


@pytest.mark.parametrize(
    "after",
    [
        pytest.param(f"dana{NUL}", id="nul-in-key"),
        pytest.param(7, id="number-key"),
        pytest.param(["a"], id="list-key"),
    ],
)
async def test_a_forged_page_token_is_refused_on_page_token(refusing: Api, after: Any) -> None:
    token = forged_token({"p": f"{DOWNTOWN}/contacts?", "a": after})
    request = cpb.ListContactsRequest(parent=DOWNTOWN, page_token=token)
    assert_refused(await refusing.fails("contacts", "ListContacts", request), "page_token")


async def test_a_forged_time_key_with_a_huge_id_is_refused_on_page_token(
    api: Api, pool: AsyncConnectionPool[Any]
) -> None:
    contact = await consenting_contact(pool)
    token = forged_token(
        {"p": f"{contact.name}/consentEvents", "a": "2026-01-01T00:00:00+00:00|" + "9" * 30}
    )
    request = cpb.ListConsentEventsRequest(contact=contact.name, page_token=token)
    assert_refused(await api.fails("contacts", "ListConsentEvents", request), "page_token")


async def test_a_control_character_in_a_streamed_message_aborts_the_import_unwritten(
    api: Api, pool: AsyncConnectionPool[Any], world: World
) -> None:
    async def messages() -> AsyncIterator[cpb.ImportContactsRequest]:
        yield cpb.ImportContactsRequest(parent=DOWNTOWN, source="crm.csv")
        yield cpb.ImportContactsRequest(source=f"crm{NUL}.csv")

    stub = contacts_pb2_grpc.ContactServiceStub(api.channel)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.ImportContacts(messages(), metadata=world.metadata("a_admin"), timeout=30)
    assert_refused(failure(raised.value), "source")
    assert await row_count(pool, "contacts") == 0


async def test_a_bad_import_row_is_rejected_with_its_reason_and_the_others_land(
    api: Api, pool: AsyncConnectionPool[Any], world: World
) -> None:
    out_of_range = cpb.ConsentEvidence()
    out_of_range.CopyFrom(GRANT)
    out_of_range.occurred_at.seconds = MAX_SECONDS + 1
    rows = [
        cpb.ImportRow(
            row_number=1, contact=cpb.Contact(phone_number="+12125550142"), consent=GRANT
        ),
        cpb.ImportRow(
            row_number=2,
            contact=cpb.Contact(phone_number="+12125550143", first_name=f"Ro{NUL}b"),
            consent=GRANT,
        ),
        cpb.ImportRow(
            row_number=3, contact=cpb.Contact(phone_number="+12125550144"), consent=out_of_range
        ),
    ]

    async def messages() -> AsyncIterator[cpb.ImportContactsRequest]:
        yield cpb.ImportContactsRequest(parent=DOWNTOWN, source="crm.csv", rows=rows)

    stub = contacts_pb2_grpc.ContactServiceStub(api.channel)
    answer = await stub.ImportContacts(messages(), metadata=world.metadata("a_admin"), timeout=30)
    assert answer.created == 1
    rejected = {r.row_number: r.field for r in answer.rejected}
    assert rejected == {2: "first_name", 3: "consent.occurred_at"}
    assert await row_count(pool, "contacts") == 1


# --- timestamps and durations ----------------------------------------------------------------


@pytest.mark.parametrize(
    "stamp",
    [
        pytest.param(timestamp_pb2.Timestamp(seconds=MAX_SECONDS + 1), id="after-9999"),
        pytest.param(timestamp_pb2.Timestamp(seconds=MIN_SECONDS - 1), id="before-0001"),
        pytest.param(timestamp_pb2.Timestamp(seconds=0, nanos=-1), id="negative-nanos"),
        pytest.param(timestamp_pb2.Timestamp(seconds=0, nanos=1_000_000_000), id="nanos-1e9"),
    ],
)
async def test_an_out_of_range_inactive_since_is_refused_on_its_field(
    refusing: Api, stamp: timestamp_pb2.Timestamp
) -> None:
    request = cpb.ListContactsRequest(parent=DOWNTOWN, inactive_since=stamp)
    assert_refused(await refusing.fails("contacts", "ListContacts", request), "inactive_since")


async def test_an_activity_time_with_invalid_nanos_is_refused_on_activity_occurred_at(
    api: Api, pool: AsyncConnectionPool[Any]
) -> None:
    contact = await consenting_contact(pool)
    request = cpb.RecordActivityRequest(
        contact=contact.name,
        activity=cpb.Activity(
            kind="purchase", occurred_at=timestamp_pb2.Timestamp(seconds=0, nanos=-5)
        ),
    )
    assert_refused(await api.fails("contacts", "RecordActivity", request), "activity.occurred_at")


async def test_a_consent_time_before_year_one_is_refused_on_evidence_occurred_at(
    api: Api, pool: AsyncConnectionPool[Any]
) -> None:
    contact = await consenting_contact(pool)
    evidence = cpb.ConsentEvidence()
    evidence.CopyFrom(GRANT)
    evidence.occurred_at.seconds = MIN_SECONDS - DAY
    request = cpb.RecordConsentRequest(contact=contact.name, evidence=evidence)
    assert_refused(await api.fails("contacts", "RecordConsent", request), "evidence.occurred_at")


@pytest.mark.parametrize(
    ("wait", "field"),
    [
        pytest.param(
            duration_pb2.Duration(seconds=DAY, nanos=-1), "sequence.steps[0].wait", id="sign"
        ),
        pytest.param(
            duration_pb2.Duration(seconds=315_576_000_001), "sequence.steps[0].wait", id="huge"
        ),
    ],
)
async def test_an_invalid_duration_is_refused_on_its_field(
    api: Api, pool: AsyncConnectionPool[Any], wait: duration_pb2.Duration, field: str
) -> None:
    template = await brand_template(pool)
    request = spb.CreateSequenceRequest(
        parent=ACME,
        sequence_id="winback",
        sequence=spb.Sequence(
            display_name="Win back", steps=[spb.Step(template=template, wait=wait)]
        ),
    )
    assert_refused(await api.fails("sequences", "CreateSequence", request), field)


@pytest.mark.parametrize(
    "start",
    [
        pytest.param(MAX_SECONDS - DAY, id="near-9999"),
        pytest.param(MIN_SECONDS, id="year-one"),
    ],
)
async def test_a_simulation_that_runs_past_the_calendar_is_refused_on_start_time(
    api: Api, pool: AsyncConnectionPool[Any], start: int
) -> None:
    template = await brand_template(pool)
    name = await make_sequence(pool, [Step(template, wait_seconds=3 * DAY)], scope=A)
    request = spb.SimulateSequenceRequest(
        name=name.name,
        described_contact=spb.DescribedContact(phone_number="+12125550142"),
        location=DOWNTOWN,
        start_time=timestamp_pb2.Timestamp(seconds=start),
    )
    assert_refused(await api.fails("sequences", "SimulateSequence", request), "start_time")


# --- undecodable, huge and extreme ----------------------------------------------------------


def _raw_call(channel: grpc.aio.Channel, method: str) -> Any:
    return channel.unary_unary(
        method, request_serializer=lambda b: b, response_deserializer=lambda b: b
    )


async def test_a_message_with_invalid_utf8_is_refused_with_error_info(refusing: Api) -> None:
    # field 6 (text) of ListTemplatesRequest carries a lone surrogate encoded as UTF-8 bytes
    valid = tpb.ListTemplatesRequest(parent=ACME).SerializeToString()
    broken = valid + b"\x32\x03\xed\xa0\x80"
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await _raw_call(refusing.channel, "/reengage.v1.TemplateService/ListTemplates")(
            broken, metadata=refusing.world.metadata("a_admin"), timeout=10
        )
    got = failure(raised.value)
    assert got.code == grpc.StatusCode.INVALID_ARGUMENT, got
    assert got.error_info is not None and got.error_info.reason == "MALFORMED_REQUEST", got
    assert await refusing.healthy()


async def test_a_one_megabyte_name_is_refused_on_its_field(refusing: Api) -> None:
    request = tpb.CreateTemplateRequest(
        parent=ACME,
        template_id="big",
        template=tpb.Template(display_name="x" * 1_000_000, body="Hi. Reply STOP to opt out"),
    )
    assert_refused(
        await refusing.fails("templates", "CreateTemplate", request), "template.display_name"
    )


async def test_a_ten_megabyte_message_is_refused_and_the_server_keeps_answering(
    refusing: Api,
) -> None:
    request = tpb.GetTemplateRequest(name="x" * 10_000_000)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await refusing("templates", "GetTemplate", request)
    assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert await refusing.healthy()


@pytest.mark.parametrize("size", [-1, -(2**31), 2**31 - 1])
async def test_extreme_page_sizes_are_refused_or_clamped(refusing: Api, size: int) -> None:
    request = tpb.ListTemplatesRequest(parent=ACME, page_size=size)
    if size < 0:
        assert_refused(await refusing.fails("templates", "ListTemplates", request), "page_size")
    else:
        assert (await refusing("templates", "ListTemplates", request)).next_page_token == ""


async def test_an_enum_number_the_api_does_not_define_is_refused_on_its_field(
    refusing: Api,
) -> None:
    request = tpb.ListTemplatesRequest(parent=ACME, state=99)  # type: ignore[arg-type]
    assert_refused(await refusing.fails("templates", "ListTemplates", request), "state")


async def test_a_message_type_the_fuzzer_cannot_reach_still_round_trips(refusing: Api) -> None:
    """The control: an ordinary request passes the checks unchanged."""
    request = tpb.ListTemplatesRequest(parent=ACME, text="latte\tmocha")
    assert (await refusing("templates", "ListTemplates", request)).templates == []


async def test_a_refusal_listing_many_bad_fields_still_reaches_the_caller(api: Api) -> None:
    # fifty attributes, each with a bad key: the domain names every one of them, and the answer
    # is cut (10 violations, a short message) to fit the HTTP/2 trailers clients accept
    keys = {f"Bad Key {i:02d} " + "x" * 30: "gold" for i in range(50)}
    request = cpb.CreateContactRequest(
        parent=DOWNTOWN, contact=cpb.Contact(phone_number="+12125550142", attributes=keys)
    )
    got = await api.fails("contacts", "CreateContact", request)
    assert got.code == grpc.StatusCode.INVALID_ARGUMENT, got
    assert got.error_info is not None and got.error_info.reason == "INVALID_ARGUMENT"
    assert 1 <= len(got.violations) <= 10
    assert all(f.startswith("contact.attributes[Bad Key") for f in got.violations)
    assert len(got.message) <= 300
