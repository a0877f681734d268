"""Which text a location sends for a template in a contact's language (docs/languages.md).

A location's override covers one language at a time, so the text comes from the first of these
that has an approved (live) one:

1. the location's override of the template, in the contact's language;
2. the brand template, in the contact's language;
3. the override, in its default language;
4. the brand template, in its default language (what every location sent before languages).

"In the contact's language" is the exact tag first, then the primary language's own tag (a
contact preferring `es-MX` gets `es`), then another tag of the same primary language (the first
by tag: `es-US`); a template's default-language text counts as a text in its language. A contact
without a preference (or with a tag that is not one) starts at step 3.

Only an approved text is ever chosen: an override's Spanish text waiting for the brand's approval
is not sent, the next step of the list is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection

from tenants.content.templates import COLLECTION, LockMode, Template, Variant, load_template
from tenants.core import languages
from tenants.core.names import ChildName, TenantScope


@dataclass(frozen=True)
class ChosenText:
    """The template whose text a location sends (the override or the named template) and its
    live text chosen for the contact's language; variant is None when nothing is approved."""

    template: Template
    variant: Variant | None


def live_text_in(template: Template, language: str) -> Variant | None:
    """The template's live text for a contact preferring `language` (a normalized tag): the
    exact tag, else the primary language's tag, else another tag of that primary language (the
    first by tag). None when no approved text matches (or language is "")."""
    if not language:
        return None
    live = sorted(
        (v for v in (template.default_variant, *template.variants) if v.live_body is not None),
        key=lambda v: v.language,
    )
    wanted = languages.primary(language)
    for matches in (
        lambda tag: tag == language,
        lambda tag: tag == wanted,
        lambda tag: languages.primary(tag) == wanted,
    ):
        found = next((v for v in live if matches(v.language)), None)
        if found is not None:
            return found
    return None


async def location_override(
    conn: AsyncConnection[Any], location: TenantScope, brand: Template
) -> Template | None:
    """The location's not archived override of an EDITABLE brand template, approved or not (a
    LOCKED brand template wins over any override made while it was editable)."""
    if not (brand.is_brand and brand.lock_mode is LockMode.EDITABLE and location.is_location):
        return None
    cur = await conn.execute(
        "SELECT id FROM templates WHERE franchisor_id = %s AND location_id = %s"
        " AND override_of = %s AND NOT archived",
        (location.franchisor_id, location.location_id, brand.name.id),
    )
    row = await cur.fetchone()
    if row is None:
        return None
    return await load_template(conn, ChildName(location, COLLECTION, row[0]))


def contact_language(tag: str) -> str:
    """A contact's preference as a normalized tag; "" for none or for a tag that is not one
    (the template's default language is sent: never a refusal at send time)."""
    try:
        return languages.normalize(tag.strip())
    except ValueError:
        return ""


async def choose_text(
    conn: AsyncConnection[Any], location: TenantScope, name: ChildName, language: str
) -> ChosenText:
    """The text the location sends for the template `name` to a contact preferring `language`
    (any tag; "" for no preference), by the fallback of the module docstring."""
    template = await load_template(conn, name)
    override = await location_override(conn, location, template)
    candidates = [t for t in (override, template) if t is not None]
    wanted = contact_language(language)
    for candidate in candidates:
        found = live_text_in(candidate, wanted)
        if found is not None:
            return ChosenText(candidate, found)
    for candidate in candidates:
        if candidate.live_revision is not None:
            return ChosenText(candidate, candidate.default_variant)
    return ChosenText(template, None)
