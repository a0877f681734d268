"""The values a contact's texts are rendered with: the contact, its location and its brand."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from psycopg import AsyncConnection

from tenants.contacts.model import Contact
from tenants.content.language_variants import choose_text
from tenants.content.placeholders import (
    LinkMaker,
    RenderContext,
    Rendering,
    TemplateSyntaxError,
    parse,
    render,
)
from tenants.content.templates import COLLECTION as TEMPLATES
from tenants.content.templates import template_key
from tenants.core.errors import InvalidArgument
from tenants.core.names import TenantScope, parse_child
from tenants.org.locations import Location


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


# Given the target URLs of a text (in order), the link maker to render it with: preview codes
# for simulations, codes allocated in `tracked_links` for a real send.
LinkSource = Callable[[tuple[str, ...]], Awaitable[LinkMaker]]


def fixed_links(link_for: LinkMaker) -> LinkSource:
    async def source(urls: tuple[str, ...]) -> LinkMaker:
        return link_for

    return source


@dataclass(frozen=True)
class StepText:
    """A step's text for a location: the rendering, or why there is none."""

    rendering: Rendering | None
    problem: str
    template_revision: str
    language: str = ""  # the language of the text rendered (a variant's tag or the default's)


async def render_step(
    conn: AsyncConnection[Any],
    location: TenantScope,
    template_name: str,
    context: RenderContext,
    links: LinkSource,
    language: str = "",
) -> StepText:
    """Renders the live text a location sends for a step's template to a contact preferring
    `language` (a BCP-47 tag, "" for none): the approved override or brand text in that language,
    else in the default language (`content.language_variants`); an archived or never-approved
    template is a problem."""
    chosen = await choose_text(conn, location, parse_child(template_name, TEMPLATES), language)
    template, variant = chosen.template, chosen.variant
    if template.archived:
        return StepText(None, f"{template.name.name} is archived", "")
    if variant is None or variant.live_body is None:
        return StepText(None, f"{template.name.name} has no approved revision", "")
    parsed = parse(variant.live_body)
    urls = tuple(dict.fromkeys(link.url for link in parsed.links))
    return StepText(
        render(parsed, context, await links(urls)),
        "",
        template.revision_name(variant.live_revision),
        variant.language,
    )


async def sent_coupon_code(conn: AsyncConnection[Any], template_revision: str, text: str) -> str:
    """The coupon code a step's text is recorded with (messages.coupon_code): the first
    {{coupon:CODE}} of the revision it was rendered from, as long as the text still carries the
    code (an approver may have edited it out); "" when it carries none."""
    template_name, _, number = template_revision.rpartition("/revisions/")
    if not template_name or not number.isdigit():
        return ""
    try:
        template = parse_child(template_name, TEMPLATES)
    except InvalidArgument:
        return ""
    cur = await conn.execute(
        "SELECT body FROM template_revisions WHERE franchisor_id = %s"
        " AND location_id IS NOT DISTINCT FROM %s AND template_id = %s AND number = %s",
        (*template_key(template), int(number)),
    )
    row = await cur.fetchone()
    try:
        coupons = parse(row[0]).coupons if row else ()
    except TemplateSyntaxError:  # a body older than today's rules
        return ""
    if not coupons:
        return ""
    code = coupons[0].code
    standing_alone = rf"(?<![A-Za-z0-9_-]){re.escape(code)}(?![A-Za-z0-9_-])"
    return code if re.search(standing_alone, text) else ""
