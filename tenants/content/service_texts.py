"""The texts the platform answers with on its own (compliance §2.10, §2.11): the opt-out and
START confirmations and the HELP answer. No link and no offer in any of them."""

from __future__ import annotations

from tenants.org.locations import Location


def _program(brand: str, location: Location) -> str:
    return f"{brand} {location.display_name}".strip() if brand else location.display_name


def opt_out_confirmation(brand: str, location: Location) -> str:
    """compliance §2.10: confirms, says how to come back; no link, no offer."""
    return (
        f"{_program(brand, location)}: You are unsubscribed and will receive no more messages."
        " Reply START to resubscribe."
    )


def help_text(brand: str, location: Location) -> str:
    """compliance §2.11: who, support contact, frequency, rates, how to stop."""
    support = location.sender_phone_numbers[0] if location.sender_phone_numbers else ""
    contact_line = f" For help call {support}." if support else ""
    return (
        f"{_program(brand, location)}: Msg frequency varies.{contact_line}"
        " Msg & data rates may apply. Reply STOP to opt out."
    )


def start_confirmation(brand: str, location: Location) -> str:
    return (
        f"{_program(brand, location)}: You are subscribed to texts again. Msg frequency varies."
        " Msg & data rates may apply. Reply HELP for help, STOP to opt out."
    )
