"""SimulateSequence over the real gRPC server, continued: a location's override of an editable
brand template (and a locked one ignoring it), the rendered text, its encoding and segments; bad
requests and permissions; and at each planned send time the send path's own decision
(`tenants.sequences.planning.decide`) says SEND at exactly that instant."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import grpc
import pytest
from google.protobuf import field_mask_pb2
from psycopg_pool import AsyncConnectionPool

from reengage.v1 import sequences_pb2 as spb
from reengage.v1 import templates_pb2 as tpb
from tenants.compliance import send_rules
from tenants.compliance.send_rules import Recipient, allowed_at
from tenants.compliance.send_window import SendWindow
from tenants.compliance.zones import infer_zone
from tenants.contacts.model import ConsentState
from tenants.content import templates
from tenants.content.bodies import SAMPLE_VALUES, preview_link_maker
from tenants.content.placeholders import RenderContext, parse, render
from tenants.org import locations
from tenants.sequences import definitions as sequences
from tenants.sequences import simulation
from tenants.sequences.model import Definition, FrequencyCap, Step
from tenants.sequences.planning import Outcome, StepFacts, decide
from tests.simulation_support import (
    BODY,
    BOISE,
    CHICAGO,
    DAY,
    DOWNTOWN,
    HOUR,
    IA,
    LOS_ANGELES,
    NEW_YORK,
    PD,
    PUBLIC_URL,
    RSQUO,
    SEND,
    UPTOWN,
    Api,
    described,
    local,
    step,
    ts,
)
from tests.support import A_DOWNTOWN, OPERATOR, A, World


@pytest.fixture
def api(channel: grpc.aio.Channel, world: World) -> Api:
    return Api(channel, world)


# --- templates: overrides, rendering ---------------------------------------------------------


async def test_an_approved_override_is_used_until_the_brand_template_is_locked(
    api: Api,
) -> None:
    brand = await api.template(
        "Acme Coffee: 10% off this week. Reply STOP to opt out", lock=tpb.LOCK_MODE_EDITABLE
    )
    seq = await api.sequence([step(brand.name)])
    start = local(NEW_YORK, 2026, 3, 10, 10)
    person = described("+12125551234")

    async def plan_at(location: str) -> spb.PlannedStep:
        (p,) = (await api.simulate(seq, start, person=person, location=location)).steps
        return p

    override = await api.templates.CreateTemplate(
        tpb.CreateTemplateRequest(
            parent=DOWNTOWN,
            template_id="promo-downtown",
            template=tpb.Template(
                display_name="Downtown promo",
                body="Downtown: a free cookie with any coffee. Reply STOP to opt out",
                override_of=brand.name,
            ),
        ),
        metadata=api.md("a_downtown_manager"),
    )
    draft = await plan_at(DOWNTOWN)
    assert draft.template_revision == brand.live_revision, "a draft override is not used"
    await api.templates.SubmitTemplate(
        tpb.SubmitTemplateRequest(name=override.name), metadata=api.md("a_downtown_manager")
    )
    approved = await api.templates.ApproveTemplate(
        tpb.ApproveTemplateRequest(name=override.name), metadata=api.md("a_admin")
    )
    assert approved.live_revision.startswith(override.name + "/revisions/")

    p = await plan_at(DOWNTOWN)
    assert p.template_revision == approved.live_revision
    # the override does not name the brand: its first text gets it (compliance §2.13)
    assert p.text == "Acme Coffee: Downtown: a free cookie with any coffee. Reply STOP to opt out"
    other = await plan_at(UPTOWN)  # another location sends the brand's text
    assert other.template_revision == brand.live_revision
    assert other.text == "Acme Coffee: 10% off this week. Reply STOP to opt out"

    locked = await api.templates.UpdateTemplate(
        tpb.UpdateTemplateRequest(
            template=tpb.Template(name=brand.name, lock_mode=tpb.LOCK_MODE_LOCKED),
            update_mask=field_mask_pb2.FieldMask(paths=["lock_mode"]),
        ),
        metadata=api.md("a_admin"),
    )
    assert locked.lock_mode == tpb.LOCK_MODE_LOCKED
    p = await plan_at(DOWNTOWN)
    assert p.template_revision == brand.live_revision == locked.live_revision
    assert p.text == "Acme Coffee: 10% off this week. Reply STOP to opt out"


async def test_rendered_text_encoding_and_segments(api: Api) -> None:
    bodies = [
        "Hi {{contact.first_name}}, your {{last_purchase.item}} misses you at "
        "{{location.name}} ({{brand.name}}). Reply STOP to opt out",
        "It" + RSQUO + "s been a while, {{contact.first_name}}! Reply STOP to opt out",
        "a" * 161,
        "a" * 69 + RSQUO,
        "a" * 70 + RSQUO,
    ]
    made = [await api.template(b) for b in bodies]
    seq = await api.sequence([step(t.name, DAY) for t in made])
    values = tpb.SampleContact(first_name="Ana", last_name="Diaz", last_purchase_item="latte")
    start = local(NEW_YORK, 2026, 3, 10, 10)
    plan = await api.simulate(seq, start, person=described("+12125551234", values=values))
    expected = [
        (
            "Hi Ana, your latte misses you at Downtown (Acme Coffee). Reply STOP to opt out",
            tpb.ENCODING_GSM7,
            1,
        ),
        ("It" + RSQUO + "s been a while, Ana! Reply STOP to opt out", tpb.ENCODING_UCS2, 1),
        ("a" * 161, tpb.ENCODING_GSM7, 2),
        ("a" * 69 + RSQUO, tpb.ENCODING_UCS2, 1),
        ("a" * 70 + RSQUO, tpb.ENCODING_UCS2, 2),
    ]
    assert [(p.text, p.encoding, p.segment_count) for p in plan.steps] == expected
    assert [p.template_revision for p in plan.steps] == [t.live_revision for t in made]
    assert [p.outcome for p in plan.steps] == [SEND] * 5
    assert plan.rules_version
    assert plan.rules_version == send_rules.rules_version()


# --- bad requests and permissions ----------------------------------------------------------


async def test_bad_requests_and_permissions(api: Api) -> None:
    brand_seq, _ = await api.simple_sequence([0])
    t = await api.template()
    downtown_seq = await api.sequence([step(t.name)], parent=DOWNTOWN)
    uptown_contact = await api.contact("+13105557401", UPTOWN)
    downtown_contact = await api.contact("+12125557402")
    start = ts(local(NEW_YORK, 2026, 3, 10, 10))
    person = described("+12125551234")

    no_subject = await api.fails(spb.SimulateSequenceRequest(name=brand_seq, start_time=start))
    assert no_subject.code == IA, no_subject
    assert "contact" in no_subject.violations, no_subject

    no_location = await api.fails(
        spb.SimulateSequenceRequest(name=brand_seq, described_contact=person, start_time=start)
    )
    assert no_location.code == IA, no_location
    assert "location" in no_location.violations, no_location

    other_location = await api.fails(
        spb.SimulateSequenceRequest(name=downtown_seq, contact=uptown_contact, start_time=start)
    )
    assert other_location.code == IA, other_location

    other_brand = await api.fails(
        spb.SimulateSequenceRequest(
            name=brand_seq, described_contact=person, location=DOWNTOWN, start_time=start
        ),
        who="b_admin",
    )
    assert other_brand.code == PD, other_brand

    sibling = await api.fails(
        spb.SimulateSequenceRequest(name=brand_seq, contact=uptown_contact, start_time=start),
        who="a_downtown_staff",
    )
    assert sibling.code == PD, sibling
    sibling_described = await api.fails(
        spb.SimulateSequenceRequest(
            name=brand_seq, described_contact=person, location=UPTOWN, start_time=start
        ),
        who="a_downtown_staff",
    )
    assert sibling_described.code == PD, sibling_described

    # The controls: staff plan for their own location's contact; a location sequence defaults
    # to its own location for a described contact.
    own = await api.simulate(
        brand_seq, start.ToDatetime(tzinfo=UTC), contact=downtown_contact, who="a_downtown_staff"
    )
    assert [p.outcome for p in own.steps] == [SEND]
    mine = await api.simulate(downtown_seq, start.ToDatetime(tzinfo=UTC), person=person)
    assert [p.outcome for p in mine.steps] == [SEND]


# --- the simulation and the send path's decision agree --------------------------------------


@dataclass(frozen=True)
class Scenario:
    label: str
    phone: str
    start: datetime
    waits: tuple[int, ...]
    window: SendWindow | None = None
    cap: FrequencyCap | None = None


SCENARIOS = (
    Scenario("LA 07:30", "+13105551234", local(LOS_ANGELES, 2026, 3, 10, 7, 30), (0, 0)),
    Scenario(
        "FL 20:15, 4 steps", "+13055551234", local(NEW_YORK, 2026, 3, 10, 20, 15), (0, 0, 0, 0)
    ),
    Scenario("TX Sunday", "+12145551234", local(CHICAGO, 2026, 3, 15, 10), (0, HOUR)),
    Scenario("LA Sunday", "+15045551234", local(CHICAGO, 2026, 3, 15, 10), (0,)),
    Scenario(
        "weekly DST", "+12125551234", local(NEW_YORK, 2026, 3, 1, 9, 30), (0, 7 * DAY, 7 * DAY)
    ),
    Scenario("Idaho overlap", "+12085551234", local(BOISE, 2026, 3, 10, 8, 30), (0, 11 * HOUR)),
    Scenario(
        "sequence window and cap",
        "+12125551234",
        local(NEW_YORK, 2026, 3, 10, 9),
        (0, DAY, 2 * HOUR),
        window=SendWindow(10 * 60, 12 * 60),
        cap=FrequencyCap(2, 7 * DAY),
    ),
)


async def test_decide_sends_at_every_planned_send_time(
    pool: AsyncConnectionPool[Any], world: World
) -> None:
    """No gRPC: for each planned step, the shared decision judged at the planned send time (as
    the enrollment workflow does when its timer fires) says SEND at exactly that instant."""
    link_for = preview_link_maker(PUBLIC_URL)
    async with pool.connection() as conn:
        template = await templates.create_template(
            conn,
            OPERATOR,
            A,
            "agree",
            templates.TemplateInput("Agree", BODY, templates.LockMode.LOCKED),
            PUBLIC_URL,
        )
        loc = await locations.get_location(conn, OPERATOR, A_DOWNTOWN)
        brand = "Acme Coffee"
        for n, sc in enumerate(SCENARIOS):
            seq = await sequences.create_sequence(
                conn,
                OPERATOR,
                A,
                f"agree-{n}",
                sc.label,
                Definition(
                    steps=tuple(Step(template.name.name, w) for w in sc.waits),
                    send_window=sc.window,
                    frequency_cap=sc.cap,
                ),
            )
            planned = await simulation.simulate_sequence(
                conn,
                OPERATOR,
                seq.name,
                None,
                simulation.DescribedContact(sc.phone),
                A_DOWNTOWN,
                sc.start,
                PUBLIC_URL,
            )
            # The facts, from the same inputs the simulation reads.
            zones = infer_zone(sc.phone, location_zone=loc.time_zone)
            recipient = Recipient(zones.zones, zones.states)
            window = loc.send_window.narrowed_by(seq.definition.send_window)
            assert window is not None
            values = {**SAMPLE_VALUES, "brand.name": brand, "location.name": loc.display_name}
            rendering = render(parse(BODY), RenderContext(values), link_for)
            sends: list[datetime] = []
            assert len(planned) == len(sc.waits), sc.label
            for p, st in zip(planned, seq.definition.steps, strict=True):
                assert p.outcome == "send" and p.send_at is not None, (sc.label, p)
                assert p.zones == recipient.zones, sc.label
                facts = StepFacts(
                    consent=ConsentState.GRANTED,
                    opted_out=False,
                    recipient=recipient,
                    window=window,
                    rendering=rendering,
                    template_problem="",
                    activity_kinds_since_enrollment=frozenset(),
                    recent_sends=tuple(sends),
                    sequence_sends=tuple(sends),
                    sequence_cap=seq.definition.frequency_cap,
                )
                at_send = decide(st, p.due, p.send_at, facts, f"agree|{n}|{p.index}")
                assert at_send.outcome is Outcome.SEND, (sc.label, p.index, at_send)
                assert at_send.at == p.send_at, (sc.label, p.index, at_send, p.send_at)
                # The carrier hand-off re-check agrees too.
                ok, why = allowed_at(recipient, window, p.send_at)
                assert ok, (sc.label, p.index, why)
                if p.send_at > p.due:  # deferred: judged when it fell due, it waits
                    early = decide(st, p.due, p.due, facts, f"agree|{n}|{p.index}")
                    assert early.outcome is Outcome.DEFER, (sc.label, p.index, early)
                    assert early.at is not None and early.at > p.due
                sends.append(p.send_at)
