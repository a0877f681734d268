"""The platform's own texts in the contact's language (compliance §2.10 to §2.12): the opt-out
and START confirmations and the HELP answer exist in English and Spanish, say what compliance
asks for in both, keep the keywords STOP, START and HELP untranslated, and are chosen by the
contact's preferred language (its primary subtag); any other language, no preference and a
stranger get English."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
from psycopg_pool import AsyncConnectionPool

from tenants.compliance.send_window import SendWindow
from tenants.contacts.contacts import create_contact
from tenants.contacts.model import ContactInput
from tenants.content.segments import Encoding, count
from tenants.content.service_texts import help_text, opt_out_confirmation, start_confirmation
from tenants.core.names import TenantScope
from tenants.inbound.texts import InboundSms, receive
from tenants.org.locations import Location
from tests.access_matrix import fresh, fresh_phone
from tests.support import A_DOWNTOWN, OPERATOR, World

DOWNTOWN_NUMBER = "+12125550101"  # build_world's sender number of downtown
NOW = datetime(2026, 11, 2, 14, 0, tzinfo=UTC)
LOCATION = Location(
    TenantScope("acme", "downtown"),
    "Downtown",
    "America/New_York",
    "US",
    (DOWNTOWN_NUMBER,),
    SendWindow(),
    "",
    NOW,
    NOW,
    1,
)
BRAND = "Acme Coffee"
TEXTS = (opt_out_confirmation, help_text, start_confirmation)


@pytest.mark.parametrize(
    ("language", "spanish"),
    [
        ("", False),
        ("en", False),
        ("en-GB", False),
        ("es", True),
        ("es-MX", True),
        ("es-419", True),
        ("fr", False),  # no platform texts in French: English
        ("pt-BR", False),
        ("Spanish", False),  # not a tag (never stored): English
    ],
)
@pytest.mark.parametrize("text", TEXTS, ids=lambda f: f.__name__)
def test_each_text_is_chosen_by_the_primary_language(
    text: Any, language: str, spanish: bool
) -> None:
    assert text(BRAND, LOCATION, language) == text(BRAND, LOCATION, "es" if spanish else "en")
    assert text(BRAND, LOCATION, "es") != text(BRAND, LOCATION, "en")


def test_without_a_language_the_texts_are_the_english_ones_as_before() -> None:
    assert opt_out_confirmation(BRAND, LOCATION) == (
        "Acme Coffee Downtown: You are unsubscribed and will receive no more messages."
        " Reply START to resubscribe."
    )
    assert help_text(BRAND, LOCATION) == (
        "Acme Coffee Downtown: Msg frequency varies. For help call +12125550101."
        " Msg & data rates may apply. Reply STOP to opt out."
    )
    assert start_confirmation(BRAND, LOCATION).startswith(
        "Acme Coffee Downtown: You are subscribed to texts again."
    )


def test_the_spanish_help_answer_says_what_compliance_asks_for() -> None:
    """§2.11: who, a support contact, message frequency, rates, how to stop (keyword STOP)."""
    answer = help_text(BRAND, LOCATION, "es")
    assert answer.startswith("Acme Coffee Downtown: ")
    assert "Frecuencia de mensajes variable." in answer
    assert "Para ayuda llama al +12125550101." in answer
    assert "Pueden aplicarse tarifas de mensajes y datos." in answer
    assert answer.endswith("Responde STOP para cancelar.")
    no_number = replace(LOCATION, sender_phone_numbers=())
    assert "llama" not in help_text(BRAND, no_number, "es")


def test_the_spanish_confirmations_keep_the_keywords_and_carry_no_link_or_offer() -> None:
    stop = opt_out_confirmation(BRAND, LOCATION, "es")
    assert stop == (
        "Acme Coffee Downtown: Te diste de baja y ya no te enviaremos mensajes."
        " Responde START para volver a suscribirte."
    )
    start = start_confirmation(BRAND, LOCATION, "es-MX")
    assert "Te suscribiste de nuevo" in start
    assert "Frecuencia de mensajes variable." in start
    assert "Pueden aplicarse tarifas de mensajes y datos." in start
    assert "Responde HELP para ayuda, STOP para cancelar." in start
    for body in (stop, start, help_text(BRAND, LOCATION, "es")):
        assert "http" not in body and "%" not in body and "{{" not in body


@pytest.mark.parametrize("language", ["en", "es"])
@pytest.mark.parametrize("text", TEXTS, ids=lambda f: f.__name__)
def test_every_text_is_gsm7_and_fits_one_or_two_segments(text: Any, language: str) -> None:
    counted = count(text(BRAND, LOCATION, language))
    assert counted.encoding is Encoding.GSM7
    assert counted.segments <= 2


def test_a_brand_name_alone_or_none_still_names_the_program() -> None:
    assert opt_out_confirmation("", LOCATION, "es").startswith("Downtown: Te diste de baja")


# -- through the inbound edge ------------------------------------------------------------------


async def _contact(pool: AsyncConnectionPool[Any], language: str) -> str:
    """A new downtown contact preferring language; returns its phone number."""
    phone = fresh_phone()
    async with pool.connection() as conn:
        await create_contact(
            conn,
            OPERATOR,
            A_DOWNTOWN,
            "",
            ContactInput(phone_number=phone, preferred_language=language),
        )
    return phone


async def _answer(pool: AsyncConnectionPool[Any], sender: str, body: str) -> str:
    """Texts body from sender to downtown; returns the service text owed in answer."""
    message_id = fresh("SM")
    async with pool.connection() as conn:
        await receive(
            conn,
            InboundSms("twilio", message_id, sender, DOWNTOWN_NUMBER, body, datetime.now(UTC)),
        )
        cur = await conn.execute(
            "SELECT body FROM followups WHERE kind = 'service_text' AND event_id LIKE %s",
            (f"%:{message_id}",),
        )
        [(answer,)] = await cur.fetchall()
    return str(answer)


async def test_a_spanish_contact_gets_the_spanish_stop_help_and_start_answers(
    pool: AsyncConnectionPool[Any], world: World
) -> None:
    phone = await _contact(pool, "es")
    help_answer = await _answer(pool, phone, "HELP")
    assert help_answer == help_text("Acme Coffee", LOCATION, "es")
    stop_answer = await _answer(pool, phone, "STOP")
    assert stop_answer == opt_out_confirmation("Acme Coffee", LOCATION, "es")
    start_answer = await _answer(pool, phone, "START")
    assert start_answer == start_confirmation("Acme Coffee", LOCATION, "es")
    # the START's consent event records the disclosure the contact was sent: the Spanish one
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT disclosure_text FROM consent_events WHERE phone_e164 = %s AND kind = 'grant'",
            (phone,),
        )
        assert await cur.fetchall() == [(start_answer,)]


@pytest.mark.parametrize(
    ("language", "spanish"), [("es-MX", True), ("", False), ("en", False), ("fr", False)]
)
async def test_the_opt_out_confirmation_follows_the_contacts_language(
    pool: AsyncConnectionPool[Any], world: World, language: str, spanish: bool
) -> None:
    phone = await _contact(pool, language)
    answer = await _answer(pool, phone, "stop")
    assert answer == opt_out_confirmation("Acme Coffee", LOCATION, "es" if spanish else "en")


async def test_a_stranger_gets_english_even_when_writing_spanish(
    pool: AsyncConnectionPool[Any], world: World
) -> None:
    answer = await _answer(pool, fresh_phone(), "¡STOP!")
    assert answer == opt_out_confirmation("Acme Coffee", LOCATION)
