"""The texts the platform answers with on its own (compliance §2.10, §2.11): the opt-out and
START confirmations and the HELP answer. No link and no offer in any of them.

Each exists in the languages of `tenants.core.languages.SUPPORTED` and is chosen by the
contact's preferred language (its primary subtag: `es-MX` reads Spanish); a language without
texts, or no preference, gets English. The keywords STOP, START and HELP stay in English in
every language: they are what the carrier and `tenants.compliance.keywords` recognise. The
Spanish texts avoid á í ó ú (outside GSM-7) so that they cost what the English ones cost.
"""

from __future__ import annotations

from tenants.core.languages import service_language
from tenants.org.locations import Location


def _program(brand: str, location: Location) -> str:
    return f"{brand} {location.display_name}".strip() if brand else location.display_name


def opt_out_confirmation(brand: str, location: Location, language: str = "") -> str:
    """compliance §2.10: confirms, says how to come back; no link, no offer. language: the
    contact's preferred language ("" for none)."""
    if service_language(language) == "es":
        return (
            f"{_program(brand, location)}: Te diste de baja y ya no te enviaremos mensajes."
            " Responde START para volver a suscribirte."
        )
    return (
        f"{_program(brand, location)}: You are unsubscribed and will receive no more messages."
        " Reply START to resubscribe."
    )


def help_text(brand: str, location: Location, language: str = "") -> str:
    """compliance §2.11: who, support contact, frequency, rates, how to stop. language: the
    contact's preferred language ("" for none)."""
    support = location.sender_phone_numbers[0] if location.sender_phone_numbers else ""
    if service_language(language) == "es":
        contact_line = f" Para ayuda llama al {support}." if support else ""
        return (
            f"{_program(brand, location)}: Frecuencia de mensajes variable.{contact_line}"
            " Pueden aplicarse tarifas de mensajes y datos. Responde STOP para cancelar."
        )
    contact_line = f" For help call {support}." if support else ""
    return (
        f"{_program(brand, location)}: Msg frequency varies.{contact_line}"
        " Msg & data rates may apply. Reply STOP to opt out."
    )


def start_confirmation(brand: str, location: Location, language: str = "") -> str:
    """compliance §2.12: consent renewed, with frequency, rates, HELP and how to stop; it is
    also the disclosure text of the consent event the START records. language: the contact's
    preferred language ("" for none)."""
    if service_language(language) == "es":
        return (
            f"{_program(brand, location)}: Te suscribiste de nuevo a nuestros mensajes."
            " Frecuencia de mensajes variable. Pueden aplicarse tarifas de mensajes y datos."
            " Responde HELP para ayuda, STOP para cancelar."
        )
    return (
        f"{_program(brand, location)}: You are subscribed to texts again. Msg frequency varies."
        " Msg & data rates may apply. Reply HELP for help, STOP to opt out."
    )
