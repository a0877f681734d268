"""What the SimulateSequence suites share: the zones and outcomes they name, and an `Api` that sets
up locations, templates, contacts and sequences over gRPC and simulates as a principal."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import grpc
import pytest
from google.protobuf import duration_pb2, field_mask_pb2, timestamp_pb2
from google.protobuf.message import Message

from reengage.v1 import contacts_pb2 as cpb
from reengage.v1 import contacts_pb2_grpc, sequences_pb2_grpc, templates_pb2_grpc, tenants_pb2_grpc
from reengage.v1 import sequences_pb2 as spb
from reengage.v1 import templates_pb2 as tpb
from reengage.v1 import tenants_pb2 as tnpb
from tests.support import RpcFailure, World, failure

ACME = "franchisors/acme"
DOWNTOWN = "franchisors/acme/locations/downtown"
UPTOWN = "franchisors/acme/locations/uptown"
PUBLIC_URL = "http://localhost:8080"  # the test server's public URL

NEW_YORK = "America/New_York"
LOS_ANGELES = "America/Los_Angeles"
CHICAGO = "America/Chicago"
BOISE = "America/Boise"

JITTER = timedelta(minutes=5)
DAY = 86_400
HOUR = 3_600

SEND = spb.PLANNED_OUTCOME_SEND
SEND_AFTER_APPROVAL = spb.PLANNED_OUTCOME_SEND_AFTER_APPROVAL
SKIP = spb.PLANNED_OUTCOME_SKIP
BLOCK = spb.PLANNED_OUTCOME_BLOCK

IA = grpc.StatusCode.INVALID_ARGUMENT
PD = grpc.StatusCode.PERMISSION_DENIED

RSQUO = "\u2019"  # a curly apostrophe: outside GSM-7
BODY = "Acme misses you! Come back this week. Reply STOP to opt out"


# --- helpers -------------------------------------------------------------------------------


def local(zone: str, y: int, mo: int, d: int, h: int, mi: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=ZoneInfo(zone))


def ts(value: datetime) -> timestamp_pb2.Timestamp:
    out = timestamp_pb2.Timestamp()
    out.FromDatetime(value.astimezone(UTC))
    return out


def sent(p: spb.PlannedStep) -> datetime:
    assert p.HasField("send_time"), f"step {p.step_index} has no send_time: {p}"
    return p.send_time.ToDatetime(tzinfo=UTC)


def due(p: spb.PlannedStep) -> datetime:
    return p.due_time.ToDatetime(tzinfo=UTC)


def mentions(p: spb.PlannedStep, *needles: str) -> bool:
    return all(any(n in r for r in p.reasons) for n in needles)


def assert_at_opening(p: spb.PlannedStep, opening: datetime, *rules: str) -> None:
    """A deferred step: at or after the opening, within the jitter, reasons naming the rules."""
    at = sent(p)
    assert opening <= at < opening + JITTER, (
        f"step {p.step_index}: sent {at.isoformat()} ({p.local_send_time}), expected the "
        f"opening {opening.isoformat()} plus under 5 minutes; reasons {list(p.reasons)}"
    )
    assert p.outcome in (SEND, SEND_AFTER_APPROVAL), p
    assert mentions(p, *rules), f"step {p.step_index}: reasons {list(p.reasons)} lack {rules}"


def assert_not_moved(p: spb.PlannedStep, when: datetime) -> None:
    assert due(p) == when, (p.step_index, due(p), when)
    assert sent(p) == when, (p.step_index, p.local_send_time, list(p.reasons))
    assert list(p.reasons) == [], p


def step(
    template: str,
    wait: int = 0,
    *,
    from_enrollment: bool = False,
    require_approval: bool = False,
    skip_if: tuple[str, ...] = (),
) -> spb.Step:
    return spb.Step(
        wait=duration_pb2.Duration(seconds=wait),
        wait_from=spb.WAIT_FROM_ENROLLMENT if from_enrollment else spb.WAIT_FROM_PREVIOUS_STEP,
        template=template,
        require_approval=require_approval,
        skip_if_activity_since_enrollment=list(skip_if),
    )


def described(
    phone: str,
    time_zone: str = "",
    address_region: str = "",
    values: tpb.SampleContact | None = None,
) -> spb.DescribedContact:
    return spb.DescribedContact(
        phone_number=phone, time_zone=time_zone, address_region=address_region, values=values
    )


class Api:
    """The four services, called as one of the world's principals."""

    def __init__(self, channel: grpc.aio.Channel, world: World) -> None:
        self.world = world
        self.templates = templates_pb2_grpc.TemplateServiceStub(channel)
        self.contacts = contacts_pb2_grpc.ContactServiceStub(channel)
        self.sequences = sequences_pb2_grpc.SequenceServiceStub(channel)
        self.tenants = tenants_pb2_grpc.TenantServiceStub(channel)
        self._ids = 0

    def fresh(self, prefix: str) -> str:
        self._ids += 1
        return f"{prefix}-{self._ids}"

    def md(self, who: str) -> tuple[tuple[str, str], ...]:
        return self.world.metadata(who)

    async def template(
        self,
        body: str = BODY,
        parent: str = ACME,
        lock: int = tpb.LOCK_MODE_LOCKED,
        who: str = "a_admin",
    ) -> tpb.Template:
        return await self.templates.CreateTemplate(
            tpb.CreateTemplateRequest(
                parent=parent,
                template_id=self.fresh("tpl"),
                template=tpb.Template(display_name="Win back", body=body, lock_mode=lock),
            ),
            metadata=self.md(who),
        )

    async def sequence(
        self,
        steps: list[spb.Step],
        parent: str = ACME,
        window: tuple[str, str] | None = None,
        cap: tuple[int, int] | None = None,
    ) -> str:
        seq = spb.Sequence(display_name="Win back", steps=steps)
        if window is not None:
            seq.send_window.CopyFrom(tnpb.SendWindow(start_time=window[0], end_time=window[1]))
        if cap is not None:
            seq.frequency_cap.CopyFrom(
                spb.FrequencyCap(max_messages=cap[0], period=duration_pb2.Duration(seconds=cap[1]))
            )
        created = await self.sequences.CreateSequence(
            spb.CreateSequenceRequest(parent=parent, sequence_id=self.fresh("seq"), sequence=seq),
            metadata=self.md("a_admin"),
        )
        return created.name

    async def simple_sequence(self, waits: list[int], body: str = BODY) -> tuple[str, str]:
        """A brand sequence of steps with these waits on one fresh template: (sequence, rev)."""
        t = await self.template(body)
        return await self.sequence([step(t.name, w) for w in waits]), t.live_revision

    async def widen(self, location: str) -> None:
        """The location's window becomes the legal maximum 08:00-21:00."""
        await self.tenants.UpdateLocation(
            tnpb.UpdateLocationRequest(
                location=tnpb.Location(
                    name=location,
                    send_window=tnpb.SendWindow(start_time="08:00", end_time="21:00"),
                ),
                update_mask=field_mask_pb2.FieldMask(paths=["send_window"]),
            ),
            metadata=self.md("a_admin"),
        )

    async def contact(
        self,
        phone: str,
        location: str = DOWNTOWN,
        *,
        first_name: str = "Sam",
        last_name: str = "",
        time_zone: str = "",
        address_region: str = "",
        consent: bool = True,
    ) -> str:
        created = await self.contacts.CreateContact(
            cpb.CreateContactRequest(
                parent=location,
                contact_id=self.fresh("c"),
                contact=cpb.Contact(
                    phone_number=phone,
                    first_name=first_name,
                    last_name=last_name,
                    time_zone=time_zone,
                    address_region=address_region,
                ),
            ),
            metadata=self.md("a_admin"),
        )
        if consent:
            await self.consent(created.name, cpb.CONSENT_KIND_GRANT)
        return created.name

    async def consent(self, contact: str, kind: int) -> None:
        now = datetime.now(UTC)
        evidence = (
            cpb.ConsentEvidence(
                kind=kind,
                channel=cpb.CONSENT_CHANNEL_PAPER_FORM,
                occurred_at=ts(now - timedelta(days=10)),
                source="in-store form #42",
                disclosure_text="I agree to receive marketing texts from Acme Coffee. "
                "Msg & data rates may apply. Reply STOP to opt out.",
            )
            if kind == cpb.CONSENT_KIND_GRANT
            else cpb.ConsentEvidence(
                kind=kind,
                channel=cpb.CONSENT_CHANNEL_SMS_REPLY,
                occurred_at=ts(now - timedelta(days=1)),
                raw_text="STOP",
            )
        )
        await self.contacts.RecordConsent(
            cpb.RecordConsentRequest(contact=contact, evidence=evidence),
            metadata=self.md("a_admin"),
        )

    async def simulate(
        self,
        sequence: str,
        start: datetime | None,
        *,
        contact: str = "",
        person: spb.DescribedContact | None = None,
        location: str | None = None,
        who: str = "a_admin",
    ) -> spb.SimulateSequenceResponse:
        """A described contact plans at downtown unless told otherwise."""
        if location is None:
            location = DOWNTOWN if person is not None else ""
        request = spb.SimulateSequenceRequest(name=sequence, location=location)
        if contact:
            request.contact = contact
        if person is not None:
            request.described_contact.CopyFrom(person)
        if start is not None:
            request.start_time.CopyFrom(ts(start))
        return await self.sequences.SimulateSequence(request, metadata=self.md(who))

    async def fails(self, request: Message, who: str = "a_admin") -> RpcFailure:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await self.sequences.SimulateSequence(request, metadata=self.md(who))
        return failure(raised.value)
