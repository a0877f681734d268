"""A contact's preferred language: a BCP-47 tag written by CreateContact, UpdateContact (mask
path `preferred_language`) and the import (column `preferred_language` or `language`), shown by
Get/ListContacts and `reengage contacts show`; inferred as `es` from a reply that looks Spanish
when the brand allows it, never over an explicit preference and never from a keyword."""

from __future__ import annotations

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
from reengage.v1 import tenants_pb2 as tnpb
from reengage.v1 import tenants_pb2_grpc
from tenants.contacts.model import ContactInput, validate
from tenants.core import languages
from tenants.core.errors import InvalidArgument
from tenants.inbound.texts import InboundSms, receive
from tenants.org.locations import load_location
from tests.access_matrix import fresh, fresh_phone
from tests.cli_support import run_cli
from tests.contact_sequence_fixtures import contact_stub, list_all_contacts, new_contact
from tests.support import A_DOWNTOWN, A, World, failure

DOWNTOWN = A_DOWNTOWN.name
DOWNTOWN_NUMBER = "+12125550101"  # build_world's sender number of downtown
CONSENT = "Reply Y to get texts from Acme. STOP to end."


def mask(*paths: str) -> field_mask_pb2.FieldMask:
    return field_mask_pb2.FieldMask(paths=list(paths))


# -- the tags -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tag", "normalized"),
    [
        ("en", "en"),
        ("ES", "es"),
        ("es-mx", "es-MX"),
        ("es-419", "es-419"),
        ("zh-hant", "zh-Hant"),
        ("ZH-HANT-tw", "zh-Hant-TW"),
        ("haw", "haw"),
        ("", ""),
    ],
)
def test_a_language_tag_is_normalized_to_its_conventional_case(tag: str, normalized: str) -> None:
    if tag:
        assert languages.language_problem(tag) is None
    assert languages.normalize(tag) == normalized


@pytest.mark.parametrize(
    ("tag", "says"),
    [
        ("", "is empty"),
        ("e", "is not a language tag"),
        ("english", "is not a language tag"),
        ("Spanish", "is not a language tag"),
        ("es_MX", "write 'es-MX'"),
        (" es", "spaces"),
        ("es-MX-x-private", "is not a language tag"),
        ("es-M", "is not a language tag"),
        ("es-12", "is not a language tag"),
        ("e1", "is not a language tag"),
        ("es-MX;DROP", "is not a language tag"),
    ],
)
def test_a_bad_language_tag_is_refused_with_the_reason(tag: str, says: str) -> None:
    problem = languages.language_problem(tag)
    assert problem is not None and says in problem
    if tag:
        with pytest.raises(ValueError):
            languages.normalize(tag)


def test_primary_and_service_language() -> None:
    assert languages.primary("es-MX") == "es"
    assert languages.primary("ES") == "es"
    assert languages.primary("") == ""
    assert languages.DEFAULT_LANGUAGE == "en" and languages.SUPPORTED == ("en", "es")
    assert [
        languages.service_language(t) for t in ("", "en", "es", "es-419", "fr", "pt-BR", "x")
    ] == ["en", "en", "es", "es", "en", "en", "en"]


SPANISH = [
    "Sí, gracias",
    "Hola",
    "Gracias!!",
    "¿A qué hora abren?",
    "¡Perfecto!",
    "Quiero cancelar mi cita",
    "Nos vemos mañana",
    "Buenos días",
    "Claro que sí",
    "Perfecto, nos vemos el sábado",
    "¿Tienen espacio para el martes?",
    "Está bien",
    "No puedo hoy, tal vez la próxima semana",
    "Me interesa la oferta, cuánto cuesta?",
    "ok gracias",
    "Muchas gracias por el descuento",
    "Dónde están ubicados",
    "Ya voy",
    "Lo siento, no puedo ir",
]

NOT_SPANISH = [
    "Yes thanks",
    "STOP",
    "HELP",
    "Ok",
    "no",
    "👍",
    "",
    "12:30",
    "Can I get a cita tomorrow",
    "I'm running late",
    "I\u2019m running late",
    "Thank you so much",
    "Yes",
    "see you then",
    "what time do you close",
    "Can you do 3pm?",
    "sounds good",
    "Hola! Can I book for tomorrow at 5?",
    "Love the new café on Main",
    "Sure, see you Saturday",
    # short words English texting shares with Spanish prove nothing (an unaccented "si" too)
    "si",
    "Love u",
    "See u soon",
    "C u",
    "See ya",
    "Love ya",
    "Mi bad",
    "LA",
    "Al",
]


@pytest.mark.parametrize("text", SPANISH)
def test_a_spanish_reply_looks_spanish(text: str) -> None:
    assert languages.looks_spanish(text), languages.spanish_score(text)


@pytest.mark.parametrize("text", NOT_SPANISH)
def test_an_english_or_wordless_reply_does_not_look_spanish(text: str) -> None:
    assert not languages.looks_spanish(text), languages.spanish_score(text)


# -- the contact: validation and the API ---------------------------------------------------------


async def test_validation_normalizes_the_tag_and_names_the_field_of_a_bad_one(
    pool: AsyncConnectionPool[Any], world: World
) -> None:
    async with pool.connection() as conn:
        location = await load_location(conn, A_DOWNTOWN)
    phone = "+12125550188"
    valid = validate(ContactInput(phone_number=phone, preferred_language=" es-mx "), location)
    assert valid.preferred_language == "es-MX"
    assert validate(ContactInput(phone_number=phone), location).preferred_language == ""
    with pytest.raises(InvalidArgument) as caught:
        validate(ContactInput(phone_number=phone, preferred_language="Spanish"), location)
    [violation] = caught.value.violations
    assert violation.field == "contact.preferred_language"
    assert "BCP-47" in violation.description


async def test_create_get_update_and_list_carry_the_preferred_language(
    channel: grpc.aio.Channel, world: World, pool: AsyncConnectionPool[Any]
) -> None:
    stub = contact_stub(channel)
    md = world.metadata("a_downtown_manager")
    made = await new_contact(
        channel, world, who="a_downtown_manager", contact_id="lupe", preferred_language="ES-mx"
    )
    assert made.preferred_language == "es-MX"
    plain = await new_contact(channel, world, contact_id="pat")
    assert plain.preferred_language == ""  # no preference

    got = await stub.GetContact(cpb.GetContactRequest(name=made.name), metadata=md)
    assert got.preferred_language == "es-MX"
    listed = {
        c.name: c.preferred_language for c in await list_all_contacts(channel, md, parent=DOWNTOWN)
    }
    assert listed == {made.name: "es-MX", plain.name: ""}

    # another field's update leaves it; the mask path changes it; "" clears it
    renamed = await stub.UpdateContact(
        cpb.UpdateContactRequest(
            contact=cpb.Contact(name=made.name, first_name="Lupe"), update_mask=mask("first_name")
        ),
        metadata=md,
    )
    assert renamed.preferred_language == "es-MX"
    english = await stub.UpdateContact(
        cpb.UpdateContactRequest(
            contact=cpb.Contact(name=made.name, preferred_language="en", etag=renamed.etag),
            update_mask=mask("preferred_language"),
        ),
        metadata=md,
    )
    assert english.preferred_language == "en" and english.etag != renamed.etag
    cleared = await stub.UpdateContact(
        cpb.UpdateContactRequest(
            contact=cpb.Contact(name=made.name), update_mask=mask("preferred_language")
        ),
        metadata=md,
    )
    assert cleared.preferred_language == "" and cleared.first_name == "Lupe"

    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT details->'fields' FROM audit_log WHERE action = 'contact.update'"
            " AND resource = %s ORDER BY id",
            (made.name,),
        )
        audited = [row[0] for row in await cur.fetchall()]
    assert audited == [["first_name"], ["preferred_language"], ["preferred_language"]]


@pytest.mark.parametrize("bad", ["Spanish", "es_MX", "e", "es-MX-x-private"])
async def test_a_bad_language_is_invalid_argument_on_its_field_and_writes_nothing(
    channel: grpc.aio.Channel, world: World, bad: str
) -> None:
    stub = contact_stub(channel)
    md = world.metadata("a_admin")
    with pytest.raises(grpc.aio.AioRpcError) as created:
        await new_contact(channel, world, contact_id="bad", preferred_language=bad)
    refused = failure(created.value)
    assert refused.code is grpc.StatusCode.INVALID_ARGUMENT
    assert "contact.preferred_language" in refused.violations
    assert await list_all_contacts(channel, md, parent=DOWNTOWN) == []

    made = await new_contact(channel, world, contact_id="good", preferred_language="es")
    with pytest.raises(grpc.aio.AioRpcError) as updated:
        await stub.UpdateContact(
            cpb.UpdateContactRequest(
                contact=cpb.Contact(name=made.name, preferred_language=bad),
                update_mask=mask("preferred_language"),
            ),
            metadata=md,
        )
    assert failure(updated.value).violations.keys() == {"contact.preferred_language"}
    got = await stub.GetContact(cpb.GetContactRequest(name=made.name), metadata=md)
    assert (got.preferred_language, got.etag) == ("es", made.etag)


# -- the import ------------------------------------------------------------------------------------


def _grant() -> cpb.ConsentEvidence:
    stamp = Timestamp()
    stamp.FromDatetime(datetime(2026, 1, 10, tzinfo=UTC))
    return cpb.ConsentEvidence(
        kind=cpb.CONSENT_KIND_GRANT,
        channel=cpb.CONSENT_CHANNEL_IMPORT,
        occurred_at=stamp,
        source="crm sync",
        disclosure_text=CONSENT,
    )


async def _import(channel: grpc.aio.Channel, world: World, rows: list[cpb.ImportRow]) -> Any:
    async def requests() -> Any:
        yield cpb.ImportContactsRequest(parent=DOWNTOWN, source="crm", rows=rows)

    return await contact_stub(channel).ImportContacts(
        requests(), metadata=world.metadata("a_admin")
    )


async def test_import_sets_languages_rejects_bad_ones_and_an_empty_cell_keeps_the_preference(
    channel: grpc.aio.Channel, world: World
) -> None:
    kept = await new_contact(
        channel, world, contact_id="kept", phone_number="+12125550114", preferred_language="es"
    )

    def row(number: int, phone: str, language: str) -> cpb.ImportRow:
        contact = cpb.Contact(phone_number=phone, preferred_language=language)
        return cpb.ImportRow(row_number=number, contact=contact, consent=_grant())

    rows = [
        row(1, "+12125550111", "es-mx"),
        row(2, "+12125550112", "Klingon"),
        row(3, "+12125550113", ""),
        row(4, "+12125550114", ""),  # the existing contact: keeps es
    ]
    answer = await _import(channel, world, rows)
    assert (answer.created, answer.rejected[0].row_number) == (2, 2)
    [rejected] = answer.rejected
    assert rejected.field == "preferred_language" and "BCP-47" in rejected.reason

    md = world.metadata("a_admin")
    found = {
        c.phone_number: c.preferred_language
        for c in await list_all_contacts(channel, md, parent=DOWNTOWN)
    }
    assert found == {"+12125550111": "es-MX", "+12125550113": "", "+12125550114": "es"}
    got = await contact_stub(channel).GetContact(cpb.GetContactRequest(name=kept.name), metadata=md)
    # the consent grant is new: updated, but the language stayed
    assert got.preferred_language == "es"

    # the same rows again change nothing; a language cell changes an existing contact
    again = await _import(channel, world, rows)
    assert (again.created, again.updated, again.unchanged) == (0, 0, 3)
    changed = await _import(channel, world, [row(1, "+12125550114", "en")])
    assert (changed.updated, changed.unchanged) == (1, 0)
    got = await contact_stub(channel).GetContact(cpb.GetContactRequest(name=kept.name), metadata=md)
    assert got.preferred_language == "en"


async def test_cli_import_reads_the_language_column_and_show_prints_the_language(
    time_skipping_env: WorkflowEnvironment,  # `contacts show` asks for running enrollments
    grpc_target: str,
    world: World,
    channel: grpc.aio.Channel,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    path = tmp_path / "languages.csv"
    path.write_text(
        "phone,first_name,consent_at,Language\n"
        "(212) 555-0121,Ana,2026-01-10T15:00:00Z,es-MX\n"
        "(212) 555-0122,Ben,2026-01-10T15:00:00Z,español\n"
        "(212) 555-0123,Cy,2026-01-10T15:00:00Z,\n",
        encoding="utf-8",
    )
    key = world.tokens["a_downtown_manager"]
    code, out, err = await run_cli(
        capsys,
        grpc_target,
        key,
        "contacts",
        "import",
        str(path),
        "--location",
        "downtown",
        "--consent-text",
        CONSENT,
    )
    assert code == 3, out + err
    assert "rows: 3  created: 2  updated: 0  unchanged: 0  rejected: 1" in out, out
    [ben] = [
        line for line in out.splitlines() if [c.strip() for c in line.split("│")][1:2] == ["3"]
    ]
    assert "Language" in ben and "BCP-47" in ben, out  # the column as the header spells it

    md = world.metadata("a_admin")
    found = {
        c.first_name: c.preferred_language
        for c in await list_all_contacts(channel, md, parent=DOWNTOWN)
    }
    assert found == {"Ana": "es-MX", "Cy": ""}

    code, out, err = await run_cli(
        capsys, grpc_target, key, "contacts", "show", "--phone", "(212) 555-0121"
    )
    assert code == 0, err
    assert any(line.split()[:2] == ["language", "es-MX"] for line in out.splitlines()), out
    code, out, err = await run_cli(
        capsys, grpc_target, key, "contacts", "show", "--phone", "(212) 555-0123"
    )
    assert code == 0, err
    assert "no preference" in out, out


# -- the brand's setting and inference ------------------------------------------------------------


async def _set_inference(channel: grpc.aio.Channel, world: World, on: bool) -> tnpb.Franchisor:
    stub = tenants_pb2_grpc.TenantServiceStub(channel)
    return await stub.UpdateFranchisor(
        tnpb.UpdateFranchisorRequest(
            franchisor=tnpb.Franchisor(name=A.name, infer_contact_language=on),
            update_mask=mask("infer_contact_language"),
        ),
        metadata=world.metadata("a_admin"),
    )


async def test_the_brand_setting_is_off_by_default_and_set_by_its_mask_path(
    channel: grpc.aio.Channel, world: World, pool: AsyncConnectionPool[Any]
) -> None:
    stub = tenants_pb2_grpc.TenantServiceStub(channel)
    md = world.metadata("a_admin")
    brand = await stub.GetFranchisor(tnpb.GetFranchisorRequest(name=A.name), metadata=md)
    assert brand.HasField("infer_contact_language") and not brand.infer_contact_language
    on = await _set_inference(channel, world, True)
    assert on.infer_contact_language and on.etag != brand.etag
    # "*" without the field leaves it (a client that knows nothing of it changes nothing)
    renamed = await stub.UpdateFranchisor(
        tnpb.UpdateFranchisorRequest(
            franchisor=tnpb.Franchisor(name=A.name, display_name="Acme Café", slack_channel_id=""),
            update_mask=mask("*"),
        ),
        metadata=md,
    )
    assert renamed.infer_contact_language and renamed.display_name == "Acme Café"
    off = await _set_inference(channel, world, False)
    assert not off.infer_contact_language
    # a manager may not change brand settings
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.UpdateFranchisor(
            tnpb.UpdateFranchisorRequest(
                franchisor=tnpb.Franchisor(name=A.name, infer_contact_language=True),
                update_mask=mask("infer_contact_language"),
            ),
            metadata=world.metadata("a_downtown_manager"),
        )
    assert refused.value.code() is grpc.StatusCode.PERMISSION_DENIED
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT details->'infer_contact_language' FROM audit_log"
            " WHERE action = 'franchisor.update' AND details ? 'infer_contact_language'"
            " ORDER BY id"
        )
        changes = [row[0] for row in await cur.fetchall()]
    assert changes == [{"from": False, "to": True}, {"from": True, "to": False}]


async def _text(pool: AsyncConnectionPool[Any], sender: str, body: str) -> str:
    async with pool.connection() as conn:
        outcome = await receive(
            conn,
            InboundSms("twilio", fresh("SM"), sender, DOWNTOWN_NUMBER, body, datetime.now(UTC)),
        )
    return outcome.classification


async def _language(channel: grpc.aio.Channel, world: World, name: str) -> str:
    got = await contact_stub(channel).GetContact(
        cpb.GetContactRequest(name=name), metadata=world.metadata("a_admin")
    )
    return str(got.preferred_language)


async def test_a_spanish_reply_sets_es_only_when_the_brand_infers(
    channel: grpc.aio.Channel, world: World, pool: AsyncConnectionPool[Any]
) -> None:
    off = await new_contact(channel, world, contact_id="off")
    assert await _text(pool, off.phone_number, "Sí, gracias") == "reply"
    assert await _language(channel, world, off.name) == ""  # the brand did not allow it

    await _set_inference(channel, world, True)
    assert await _text(pool, off.phone_number, "Yes thanks") == "reply"
    assert await _language(channel, world, off.name) == ""  # English stays without one
    before = await contact_stub(channel).GetContact(
        cpb.GetContactRequest(name=off.name), metadata=world.metadata("a_admin")
    )
    assert await _text(pool, off.phone_number, "¿A qué hora abren mañana?") == "reply"
    after = await contact_stub(channel).GetContact(
        cpb.GetContactRequest(name=off.name), metadata=world.metadata("a_admin")
    )
    assert after.preferred_language == "es" and after.etag != before.etag
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT principal, details FROM audit_log WHERE action = 'contact.update'"
            " AND resource = %s",
            (off.name,),
        )
        [(principal, details)] = await cur.fetchall()
    assert principal == "system:inbound-edge", principal
    assert details["fields"] == ["preferred_language"]
    assert details["preferred_language"] == {"from": "", "to": "es"}
    assert details["inferred_from"].startswith(f"{DOWNTOWN}/inboundMessages/")
    assert "abren" not in str(details)  # the text itself stays out of the audit log

    # the other brand's setting is its own: bravo does not infer
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT infer_contact_language FROM franchisors WHERE id = 'bravo'"
        )
        assert await cur.fetchone() == (False,)


async def test_inference_never_replaces_a_preference_and_keywords_never_infer(
    channel: grpc.aio.Channel, world: World, pool: AsyncConnectionPool[Any]
) -> None:
    await _set_inference(channel, world, True)
    english = await new_contact(channel, world, contact_id="english", preferred_language="en")
    assert await _text(pool, english.phone_number, "Hola, gracias") == "reply"
    assert await _language(channel, world, english.name) == "en"
    mexican = await new_contact(channel, world, contact_id="mx", preferred_language="es-MX")
    assert await _text(pool, mexican.phone_number, "Gracias") == "reply"
    assert await _language(channel, world, mexican.name) == "es-MX"

    helped = await new_contact(channel, world, contact_id="helped")
    assert await _text(pool, helped.phone_number, "¿HELP?") == "help"
    stopped = await new_contact(channel, world, contact_id="stopped")
    assert await _text(pool, stopped.phone_number, "¡STOP!") == "opt_out"
    assert await _text(pool, stopped.phone_number, "¡START!") == "start"
    for name in (helped.name, stopped.name):
        assert await _language(channel, world, name) == ""
    # a stranger's Spanish reply finds no contact to set
    assert await _text(pool, fresh_phone(), "Hola, gracias") == "reply"
