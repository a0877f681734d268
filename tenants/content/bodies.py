"""What a template body must satisfy on write, and how it previews.

A body is checked by parsing it (syntax, variables, links, shorteners) and by rendering it with
the sample values below and a tracked link of real length: more than MAX_SEGMENTS segments is
refused. The same rendering-then-counting path serves PreviewTemplate, so the numbers a user
sees are the numbers the check used.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from tenants.content.first_message import first_message_warnings, line_language, outgoing_text
from tenants.content.placeholders import (
    LinkMaker,
    ParsedTemplate,
    RenderContext,
    Rendering,
    TemplateSyntaxError,
    Text,
    parse,
    render,
)
from tenants.content.segments import SegmentCount, count, to_gsm7
from tenants.core.errors import FieldViolation, InvalidArgument

MAX_SEGMENTS = 10
LINK_CODE_LENGTH = 8

SAMPLE_VALUES = {
    "contact.first_name": "Alexandra",
    "contact.last_name": "Rivera",
    "location.name": "Downtown",
    "location.phone": "+12125550123",
    "brand.name": "Brand",
    "last_purchase.item": "cold brew",
    "last_activity.date": "Oct 3",
}
SAMPLE_CONTEXT = RenderContext(SAMPLE_VALUES)


def preview_link_maker(public_url: str) -> LinkMaker:
    """Tracked links as they will look (same length), with a code derived from the URL."""
    base = public_url.rstrip("/")

    def link_for(url: str) -> str:
        code = hashlib.sha256(url.encode()).hexdigest()[:LINK_CODE_LENGTH]
        return f"{base}/l/{code}"

    return link_for


def check_body(body: str, public_url: str, field: str = "template.body") -> ParsedTemplate:
    """Parses body and checks its sample rendering's size; raises InvalidArgument."""
    if not body.strip():
        raise InvalidArgument([FieldViolation(field, "is required")])
    try:
        parsed = parse(body)
    except TemplateSyntaxError as exc:
        raise InvalidArgument([FieldViolation(field, str(exc))]) from None
    sample = render(parsed, SAMPLE_CONTEXT, preview_link_maker(public_url))
    segments = count(sample.preview)
    if segments.segments > MAX_SEGMENTS:
        raise InvalidArgument(
            [
                FieldViolation(
                    field,
                    f"renders to {segments.segments} segments ({segments.encoding}) with sample "
                    f"values; at most {MAX_SEGMENTS} are allowed",
                )
            ]
        )
    return parsed


def check_edited_text(text: str, field: str = "text") -> None:
    """An approver's edit is sent exactly as written: it must be a sendable text (the template
    checks) with no placeholders left to fill; raises InvalidArgument."""
    parsed = check_body(text, "https://localhost", field)
    if len(parsed.parts) != 1 or not isinstance(parsed.parts[0], Text):
        raise InvalidArgument(
            [
                FieldViolation(
                    field,
                    "an edited text is sent exactly as written: replace the {{placeholders}} "
                    "with their words (links too)",
                )
            ]
        )


@dataclass(frozen=True)
class Preview:
    rendering: Rendering
    text: str  # what would be sent: a first message with the brand and opt-out line added
    segments: SegmentCount
    gsm7_text: str
    gsm7_segments: SegmentCount
    warnings: tuple[str, ...]


def preview(
    parsed: ParsedTemplate,
    context: RenderContext,
    link_for: LinkMaker,
    *,
    first_message: bool,
    language: str = "",
) -> Preview:
    """The rendering as it would be sent; as a sequence's first message (first_message), with
    what `first_message.outgoing_text` adds (the opt-out line in `language`, else in the
    language the text reads in), counted in its segments."""
    rendering = render(parsed, context, link_for)
    brand = context.lookup("brand.name")
    language = line_language(rendering.preview, language)
    outgoing = outgoing_text(
        rendering.preview, brand, first_message=first_message, language=language
    )
    text, segments = outgoing.text, outgoing.segments
    gsm7_text = to_gsm7(text)
    warnings = [
        f"{{{{{name}}}}} has no value for this contact and no fallback: the step would be skipped"
        for name in rendering.missing
    ]
    if segments.unicode_characters:
        shown = "".join(dict.fromkeys(c.character for c in segments.unicode_characters))
        warnings.append(
            f"{shown!r} force UCS-2 ({segments.segments} segments); "
            f"with GSM-7 replacements: {count(gsm7_text).segments} segments"
        )
    if first_message:
        warnings.extend(first_message_warnings(rendering.preview, brand, "this template", language))
        if segments.segments > MAX_SEGMENTS:
            warnings.append(
                f"as a first message it is {segments.segments} segments (more than "
                f"{MAX_SEGMENTS}): it would still be sent, the additions are required"
            )
    return Preview(rendering, text, segments, gsm7_text, count(gsm7_text), tuple(warnings))
