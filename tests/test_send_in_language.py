"""Each contact is sent its language's approved text (docs/languages.md), through the real send
path: the enrollment workflow on the time-skipping Temporal server, the outbox carrier and real
PostgreSQL. A Spanish-preferring contact (es, or es-MX by its primary subtag) gets the approved
`es` text; a contact without a preference, or preferring a language nobody wrote, gets the
default; an override's Spanish text still waiting for the brand's approval is not sent (its
approved English one is). SimulateSequence shows the same texts. A Spanish first text that says
"Responde STOP para cancelar" needs no English opt-out line."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import grpc
import pytest
from psycopg_pool import AsyncConnectionPool
from temporalio.testing import WorkflowEnvironment

from reengage.v1 import sequences_pb2 as spb
from reengage.v1 import sequences_pb2_grpc, templates_pb2
from tenants.content import approvals
from tenants.content import templates as tpl
from tenants.content.first_message import OPT_OUT_LINE, outgoing_text, says_how_to_opt_out
from tenants.core.names import ChildName
from tenants.sequences.model import Step
from tenants.sequences.simulation import simulate_sequence
from tests.enrollment_support import (
    consenting_contact,
    end_leftover_run,
    make_sequence,
    morning_zone,
    run_to_end,
    running_worker,
    start_enrollment,
)
from tests.support import A_DOWNTOWN, OPERATOR, A, World, failure

Pool = AsyncConnectionPool[Any]
URL = "http://localhost:8080"
BRAND = "Acme Coffee"
EN = "Hi {{contact.first_name|there}}, Acme Coffee misses you! Reply STOP to opt out"
ES = "Hola {{contact.first_name|amigo}}, Acme Coffee te extraña. Responde STOP para cancelar"
OVERRIDE_EN = (
    "Hi {{contact.first_name|there}}, Acme Coffee Downtown misses you! Reply STOP to opt out"
)
OVERRIDE_ES = (
    "Hola {{contact.first_name|amigo}}, Acme Coffee Centro te extraña. Responde STOP para cancelar"
)


async def editable_brand_template(pool: Pool, spanish: str | None = ES) -> ChildName:
    """A brand template in English, and its approved Spanish text unless spanish is None."""
    async with pool.connection() as conn:
        made = await tpl.create_template(
            conn, OPERATOR, A, "hello", tpl.TemplateInput("Hello", EN, tpl.LockMode.EDITABLE), URL
        )
        if spanish is not None:
            await tpl.update_template(
                conn, OPERATOR, made.name, tpl.TemplateInput(body=spanish), ["body"], "", URL, "es"
            )
    return made.name


async def texts_sent(pool: Pool) -> dict[str, tuple[str, str]]:
    """Each contact's first name → (the text the outbox delivered, the revision recorded)."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT c.first_name, d.body, m.template_revision FROM messages m"
            " JOIN contacts c ON (c.franchisor_id, c.location_id, c.id)"
            "    = (m.franchisor_id, m.location_id, m.contact_id)"
            " JOIN outbox_deliveries d ON d.message_id = m.id WHERE m.direction = 'outbound'"
        )
        return {name: (body, revision) for name, body, revision in await cur.fetchall()}


async def run_each(
    env: WorkflowEnvironment, pool: Pool, sequence: ChildName, contacts: list[ChildName]
) -> None:
    async with running_worker(env.client, pool) as run:
        started = []
        try:
            for contact in contacts:
                enrollment = await start_enrollment(pool, run, contact, sequence)
                started.append(enrollment)
                assert await run_to_end(env, run.workflows, enrollment) == "completed"
        finally:
            for enrollment in started:
                await end_leftover_run(
                    env.client, run.workflows, enrollment.workflow_id, enrollment.run_id
                )


async def test_each_contact_gets_its_languages_approved_text_or_the_default(
    time_skipping_env: WorkflowEnvironment, pool: Pool, world: World
) -> None:
    env = time_skipping_env
    template = await editable_brand_template(pool)
    sequence = await make_sequence(pool, [Step(template.name, 0)])
    zone = await morning_zone(env)
    people = [
        ("Ana", "+12125550151", "es"),
        ("Dario", "+12125550152", "es-MX"),  # no es-MX text: the es one, by primary subtag
        ("Bob", "+12125550153", ""),  # no preference: the default
        ("Chloe", "+12125550154", "fr"),  # nobody wrote French: the default
    ]
    contacts = [
        await consenting_contact(pool, phone, name, time_zone=zone, preferred_language=language)
        for name, phone, language in people
    ]
    await run_each(env, pool, sequence, contacts)

    revisions = template.name + "/revisions/"
    spanish = "Hola {}, Acme Coffee te extraña. Responde STOP para cancelar"
    english = "Hi {}, Acme Coffee misses you! Reply STOP to opt out"
    # a compliant first text in Spanish goes out as written: no English line added
    assert await texts_sent(pool) == {
        "Ana": (spanish.format("Ana"), revisions + "2"),
        "Dario": (spanish.format("Dario"), revisions + "2"),
        "Bob": (english.format("Bob"), revisions + "1"),
        "Chloe": (english.format("Chloe"), revisions + "1"),
    }

    # SimulateSequence shows each contact the text the send path sent, and its language
    start = datetime(2026, 3, 2, 15, tzinfo=UTC)
    async with pool.connection() as conn:
        planned = {
            name: (await simulate_sequence(conn, OPERATOR, sequence, c, None, None, start, URL))[0]
            for (name, _, _), c in zip(people, contacts, strict=True)
        }
    assert {name: (p.text, p.language) for name, p in planned.items()} == {
        "Ana": (spanish.format("Ana"), "es"),
        "Dario": (spanish.format("Dario"), "es"),
        "Bob": (english.format("Bob"), "en"),
        "Chloe": (english.format("Chloe"), "en"),
    }


async def test_a_spanish_text_waiting_for_approval_is_not_sent(
    time_skipping_env: WorkflowEnvironment, pool: Pool, world: World
) -> None:
    """Downtown's override: its English text approved, its Spanish one submitted but not yet
    decided; the brand has no Spanish text. A Spanish-preferring contact at downtown gets the
    override's approved English text; once the brand approves the Spanish one, the next
    contact gets it."""
    env = time_skipping_env
    template = await editable_brand_template(pool, spanish=None)
    async with pool.connection() as conn:
        mine = await tpl.create_template(
            conn,
            OPERATOR,
            A_DOWNTOWN,
            "dt-hello",
            tpl.TemplateInput("Mine", OVERRIDE_EN, None, template.name),
            URL,
        )
        await approvals.submit_template(conn, OPERATOR, mine.name, "")
        await approvals.approve_template(conn, OPERATOR, mine.name, "")
        await tpl.update_template(
            conn, OPERATOR, mine.name, tpl.TemplateInput(body=OVERRIDE_ES), ["body"], "", URL, "es"
        )
        await approvals.submit_template(conn, OPERATOR, mine.name, "", "es")
    sequence = await make_sequence(pool, [Step(template.name, 0)])
    zone = await morning_zone(env)
    ana = await consenting_contact(
        pool, "+12125550151", "Ana", time_zone=zone, preferred_language="es"
    )
    await run_each(env, pool, sequence, [ana])

    async with pool.connection() as conn:
        await approvals.approve_template(conn, OPERATOR, mine.name, "", "es")
    eva = await consenting_contact(
        pool, "+12125550155", "Eva", time_zone=zone, preferred_language="es"
    )
    await run_each(env, pool, sequence, [eva])

    revisions = mine.name.name + "/revisions/"
    assert await texts_sent(pool) == {
        "Ana": (
            "Hi Ana, Acme Coffee Downtown misses you! Reply STOP to opt out",
            revisions + "3",
        ),
        "Eva": (
            "Hola Eva, Acme Coffee Centro te extraña. Responde STOP para cancelar",
            revisions + "6",
        ),
    }


# -- the first text in Spanish ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "instructs"),
    [
        ("Responde STOP para cancelar", True),
        ("Responda STOP para darse de baja", True),
        ("Envía 'STOP' para salir", True),
        ("ENVIA stop", True),
        ("Escribe: STOP", True),
        ("Contesta con \u201cSTOP\u201d", True),
        ("STOP para dejar de recibir mensajes", True),
        ("Para darte de baja, responde BAJA", True),
        # Spanish words that instruct nothing
        ("Responde SÍ para confirmar tu cita", False),
        ("Para cancelar tu cita llámanos", False),
        ("Stop por la tienda hoy", False),
        ("No te detengas: 2x1 hoy", False),
        ("Más info: acme.example/para-darte-de-baja", False),
    ],
)
def test_a_spanish_text_says_how_to_opt_out_with_stop_kept_in_english(
    text: str, instructs: bool
) -> None:
    assert says_how_to_opt_out(text) is instructs
    sent = outgoing_text(f"{BRAND}: {text}", BRAND, first_message=True)
    assert sent.added_opt_out is not instructs
    assert sent.text.endswith(OPT_OUT_LINE) is not instructs


async def test_a_spanish_first_text_without_the_opt_out_gets_the_spanish_line(
    time_skipping_env: WorkflowEnvironment, pool: Pool, world: World
) -> None:
    env = time_skipping_env
    template = await editable_brand_template(
        pool, spanish="Hola {{contact.first_name|amigo}}, Acme Coffee te extraña."
    )
    sequence = await make_sequence(pool, [Step(template.name, 0)])
    zone = await morning_zone(env)
    ana = await consenting_contact(
        pool, "+12125550161", "Ana", time_zone=zone, preferred_language="es"
    )
    await run_each(env, pool, sequence, [ana])
    body, _ = (await texts_sent(pool))["Ana"]
    assert body == "Hola Ana, Acme Coffee te extraña.\nResponde STOP para cancelar"


async def test_simulate_sequence_over_grpc_renders_a_described_contacts_language(
    pool: Pool, world: World, channel: grpc.aio.Channel
) -> None:
    template = await editable_brand_template(pool)
    sequence = await make_sequence(pool, [Step(template.name, 0)])
    stub = sequences_pb2_grpc.SequenceServiceStub(channel)

    async def simulate(language: str) -> spb.PlannedStep:
        answer = await stub.SimulateSequence(
            spb.SimulateSequenceRequest(
                name=sequence.name,
                described_contact=spb.DescribedContact(
                    phone_number="+12125550199",
                    values=templates_pb2.SampleContact(first_name="Ana"),
                    preferred_language=language,
                ),
                location=A_DOWNTOWN.name,
            ),
            metadata=world.metadata("a_admin"),
        )
        return answer.steps[0]

    spanish, english = await simulate("es-MX"), await simulate("")
    assert spanish.language == "es" and spanish.text.startswith("Hola Ana, Acme Coffee te extraña")
    assert english.language == "en" and english.text.startswith("Hi Ana, Acme Coffee misses you")
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await simulate("Spanish!")
    assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert list(failure(refused.value).violations) == ["described_contact.preferred_language"]
