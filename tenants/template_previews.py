"""PreviewTemplate: render a template's live revision (or a draft body) for a contact and say
what would go out: text, encoding, segments, characters forcing UCS-2, warnings."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from psycopg import AsyncConnection

from tenants.access import Action, Principal, authorize
from tenants.errors import FieldViolation, InvalidArgument
from tenants.franchisors import get_franchisor
from tenants.locations import get_location
from tenants.names import ChildName, TenantScope
from tenants.placeholders import RenderContext
from tenants.template_bodies import (
    SAMPLE_VALUES,
    Preview,
    check_body,
    preview,
    preview_link_maker,
)
from tenants.templates import get_template


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


@dataclass(frozen=True)
class TemplatePreview:
    preview: Preview
    revision_name: str
    notes: tuple[str, ...]


async def preview_template(
    conn: AsyncConnection[Any], principal: Principal, request: PreviewRequest, public_url: str
) -> TemplatePreview:
    if (request.template is None) == (not request.body):
        raise InvalidArgument(
            [FieldViolation("name", "give either a template name or a draft body, not both")]
        )
    notes: list[str] = []
    revision_name = ""
    location = request.location
    if request.template is not None:
        template = await get_template(conn, principal, request.template)
        if template.live_body is not None:
            body, revision_name = template.live_body, template.revision_name(template.live_revision)
        else:
            body, revision_name = (
                template.latest_body,
                template.revision_name(template.latest_revision),
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
    values = dict(SAMPLE_VALUES)
    values["brand.name"] = (await get_franchisor(conn, principal, franchisor)).display_name
    if location is not None:
        loc = await get_location(conn, principal, location)
        values["location.name"] = loc.display_name
        values["location.phone"] = loc.sender_phone_numbers[0] if loc.sender_phone_numbers else ""
    else:
        notes.append("no location given: location values are samples")
    attrs: dict[str, str] = {}
    if request.contact is not None:
        c = request.contact
        values.update(
            {
                "contact.first_name": c.first_name,
                "contact.last_name": c.last_name,
                "last_purchase.item": c.last_purchase_item,
                "last_activity.date": c.last_activity_date,
            }
        )
        attrs = dict(c.attrs)
    result = preview(
        parsed,
        RenderContext(values, attrs),
        preview_link_maker(public_url),
        first_message=request.first_message,
    )
    return TemplatePreview(result, revision_name, tuple(notes))
