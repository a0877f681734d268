"""The values a contact's texts are rendered with: the contact, its location and its brand."""

from __future__ import annotations

from zoneinfo import ZoneInfo

from tenants.contacts import Contact
from tenants.locations import Location
from tenants.placeholders import RenderContext


def contact_context(contact: Contact, location: Location, brand_name: str) -> RenderContext:
    last_activity = ""
    if contact.last_activity_at is not None:
        local = contact.last_activity_at.astimezone(ZoneInfo(contact.zones[0]))
        last_activity = f"{local:%b} {local.day}"
    return RenderContext(
        {
            "contact.first_name": contact.first_name,
            "contact.last_name": contact.last_name,
            "location.name": location.display_name,
            "location.phone": location.sender_phone_numbers[0]
            if location.sender_phone_numbers
            else "",
            "brand.name": brand_name,
            "last_purchase.item": contact.last_purchase_item,
            "last_activity.date": last_activity,
        },
        contact.attrs,
    )
