"""PreviewTemplate: render a template's live revision (or a draft body) for a contact and say
what would go out: text, encoding, segments, characters forcing UCS-2, warnings."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from psycopg import AsyncConnection

from tenants.content.bodies import (
    SAMPLE_VALUES,
    Preview,
    check_body,
    preview,
    preview_link_maker,
)
from tenants.content.placeholders import RenderContext
from tenants.content.templates import checked_language, get_template
from tenants.core.errors import FieldViolation, InvalidArgument, NotFound
from tenants.core.names import ChildName, TenantScope
from tenants.org.access import Action, Principal, authorize
from tenants.org.franchisors import get_franchisor
from tenants.org.locations import Location, get_location


@dataclass(frozen=True)
class SampleContact:
    """A described contact; None: the documented sample values."""

    first_name: str = ""
    last_name: str = ""
    attrs: dict[str, str] = field(default_factory=dict)
    last_purchase_item: str = ""
    last_activity_date: str = ""


@dataclass(frozen=True)
class PreviewRequest:
    template: ChildName | None
    body: str
    location: TenantScope | None
    contact: SampleContact | None
    first_message: bool
    language: str = ""  # with template: that language's text (a tag), "" for the default


@dataclass(frozen=True)
class TemplatePreview:
    preview: Preview
    revision_name: str
    notes: tuple[str, ...]


def described_context(
    contact: SampleContact | None, brand: str, location: Location | None
) -> RenderContext:
    """Values for a described (not stored) contact: what is given, else the samples."""
    values = dict(SAMPLE_VALUES)
    values["brand.name"] = brand
    if location is not None:
        values["location.name"] = location.display_name
        numbers = location.sender_phone_numbers
        values["location.phone"] = numbers[0] if numbers else ""
    if contact is None:
        return RenderContext(values)
    values.update(
        {
            "contact.first_name": contact.first_name,
            "contact.last_name": contact.last_name,
            "last_purchase.item": contact.last_purchase_item,
            "last_activity.date": contact.last_activity_date,
        }
    )
    return RenderContext(values, dict(contact.attrs))


async def preview_template(
    conn: AsyncConnection[Any], principal: Principal, request: PreviewRequest, public_url: str
) -> TemplatePreview:
    if (request.template is None) == (not request.body):
        raise InvalidArgument(
            [FieldViolation("name", "give either a template name or a draft body, not both")]
        )
    if request.language and request.template is None:
        raise InvalidArgument([FieldViolation("language", "applies to a named template only")])
    language = checked_language(request.language)
    notes: list[str] = []
    revision_name = ""
    text_language = ""  # a named template's text: its language; a draft body: as it reads
    location = request.location
    if request.template is not None:
        template = await get_template(conn, principal, request.template)
        text = template.variant(language)
        text_language = language or template.default_language
        if text is None:
            raise NotFound(
                f"{template.name.name} has no {language} text", resource=template.name.name
            )
        if text.live_body is not None:
            body, revision_name = text.live_body, template.revision_name(text.live_revision)
        else:
            body, revision_name = (
                text.latest_body,
                template.revision_name(text.latest_revision),
            )
            notes.append("no approved revision yet: previewing the latest one")
        if location is None and template.name.scope.is_location:
            location = template.name.scope
        franchisor = template.name.scope.franchisor
    else:
        body = request.body
        if location is None:
            raise InvalidArgument(
                [FieldViolation("location", "is required to preview a draft body")]
            )
        franchisor = location.franchisor
    if location is not None:
        authorize(principal, Action.TEMPLATE_READ, location)  # before any check: no oracle
    if location is not None and location.franchisor_id != franchisor.franchisor_id:
        raise InvalidArgument(
            [FieldViolation("location", "must be a location of the template's franchisor")]
        )
    parsed = check_body(body, public_url, "body" if request.template is None else "name")
    brand = (await get_franchisor(conn, principal, franchisor)).display_name
    loc = await get_location(conn, principal, location) if location is not None else None
    if loc is None:
        notes.append("no location given: location values are samples")
    result = preview(
        parsed,
        described_context(request.contact, brand, loc),
        preview_link_maker(public_url),
        first_message=request.first_message,
        language=text_language,
    )
    return TemplatePreview(result, revision_name, tuple(notes))
