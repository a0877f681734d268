"""What a sequence's author is told on write about its first text (compliance §2.13).

The first step's template is rendered as the write-time template check renders it (the
documented sample values, the brand's real name, tracked links of real length) and judged by
`first_message.outgoing_text`: when the brand name or the opt-out line would be added, the
author is told so; when the additions take it past MAX_SEGMENTS, that too. Nothing is refused:
the template passed its own check, a location's override may differ, and the send path adds
them whatever the length (the law wins over the 10-segment house limit).
"""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection

from tenants.content.bodies import MAX_SEGMENTS, SAMPLE_VALUES, preview_link_maker
from tenants.content.first_message import first_message_warnings, line_language, outgoing_text
from tenants.content.placeholders import RenderContext, TemplateSyntaxError, parse, render
from tenants.content.templates import COLLECTION as TEMPLATES
from tenants.content.templates import load_template
from tenants.core.errors import InvalidArgument, NotFound
from tenants.core.names import parse_child
from tenants.org.franchisors import brand_name

# the default REENGAGE_PUBLIC_URL: link length for the estimate (as the template check's)
SAMPLE_PUBLIC_URL = "http://localhost:8080"


async def first_text_warnings(
    conn: AsyncConnection[Any], franchisor_id: str, first_template: str
) -> tuple[str, ...]:
    """Warnings about the texts of a sequence's first step: its template as named, in its
    default language and in each language variant (each text: its live revision, else its
    latest; the opt-out line judged in that text's language); () when there is nothing to say
    or no such template."""
    try:
        template = await load_template(conn, parse_child(first_template, TEMPLATES, "template"))
    except (InvalidArgument, NotFound):
        return ()
    brand = await brand_name(conn, franchisor_id)
    texts = [(template.default_language, "", _shown(template.live_body, template.latest_body))]
    texts += [
        (v.language, v.language, _shown(v.live_body, v.latest_body)) for v in template.variants
    ]
    warnings: list[str] = []
    for language, label, body in texts:
        warnings += _warnings(body, brand, "step 0" if not label else f"step 0 ({label})", language)
    return tuple(warnings)


def _shown(live: str | None, latest: str) -> str:
    return live if live is not None else latest


def _warnings(body: str, brand: str, where: str, known_language: str) -> list[str]:
    try:
        parsed = parse(body)
    except TemplateSyntaxError:
        return []
    context = RenderContext({**SAMPLE_VALUES, "brand.name": brand})
    text = render(parsed, context, preview_link_maker(SAMPLE_PUBLIC_URL)).preview
    language = line_language(text, known_language)  # as the send path adds the line
    warnings = first_message_warnings(text, brand, where, language)
    segments = outgoing_text(text, brand, first_message=True, language=language).segments.segments
    if warnings and segments > MAX_SEGMENTS:
        warnings.append(
            f"with them, {where}'s text is {segments} segments with sample values (more than "
            f"{MAX_SEGMENTS}); it is still sent: shorten the template"
        )
    return warnings
