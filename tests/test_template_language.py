"""The placeholder language and the segment math, without a server."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tenants.content.bodies import check_body, preview, preview_link_maker
from tenants.content.placeholders import (
    MissingValues,
    RenderContext,
    TemplateSyntaxError,
    parse,
    render,
)
from tenants.content.segments import Encoding, count, to_gsm7
from tenants.core.errors import InvalidArgument

LINK = preview_link_maker("https://go.acme.example")


@pytest.mark.parametrize(
    ("text", "encoding", "segments"),
    [
        ("a" * 160, Encoding.GSM7, 1),
        ("a" * 161, Encoding.GSM7, 2),
        ("a" * 306, Encoding.GSM7, 2),
        ("a" * 307, Encoding.GSM7, 3),
        ("a" * 159 + "€", Encoding.GSM7, 2),
        ("a" * 152 + "€" + "a" * 152, Encoding.GSM7, 3),
        ("a" * 69 + "\u2019", Encoding.UCS2, 1),
        ("a" * 70 + "\u2019", Encoding.UCS2, 2),
        ("a" * 68 + "😀", Encoding.UCS2, 1),
        ("a" * 69 + "😀", Encoding.UCS2, 2),
    ],
    ids=lambda v: v if isinstance(v, (int, Encoding)) else f"{len(v)}chars",
)
def test_compliance_segment_table(text: str, encoding: Encoding, segments: int) -> None:
    counted = count(text)
    assert (counted.encoding, counted.segments) == (encoding, segments)


def test_an_emoji_is_never_split_across_segments() -> None:
    # 66 units + a surrogate pair: the pair does not fit the first 67-unit segment's last unit
    assert count("a" * 66 + "😀" + "a" * 67).segments == 3
    assert count("a" * 65 + "😀" + "a" * 67).segments == 2


def test_curly_quotes_are_reported_with_their_gsm7_replacement() -> None:
    counted = count("It\u2019s here \u2014 come by\u2026")
    assert counted.encoding is Encoding.UCS2
    assert [(u.character, u.position, u.replacement) for u in counted.unicode_characters] == [
        ("\u2019", 2, "'"),
        ("\u2014", 10, "-"),
        ("\u2026", 19, "..."),
    ]
    assert to_gsm7("It\u2019s here \u2014 come by\u2026") == "It's here - come by..."
    assert count(to_gsm7("It\u2019s here \u2014 come by\u2026")).encoding is Encoding.GSM7


def test_rendering_fills_values_fallbacks_and_tracked_links() -> None:
    parsed = parse(
        "Hi {{ contact.first_name | there }}, your {{last_purchase.item|last order}} at "
        "{{location.name}} misses you. {{link:https://acme.example/menu?x=1}}"
    )
    ctx = RenderContext({"location.name": "Downtown", "last_purchase.item": "cold brew"})
    rendering = render(parsed, ctx, LINK)
    assert rendering.message.startswith("Hi there, your cold brew at Downtown misses you.")
    assert rendering.message.endswith(LINK("https://acme.example/menu?x=1"))
    assert rendering.links == ("https://acme.example/menu?x=1",)


def test_a_missing_value_without_fallback_never_renders_as_an_empty_string() -> None:
    rendering = render(parse("Hi {{contact.first_name}},"), RenderContext(), LINK)
    assert not rendering.complete and rendering.missing == ("contact.first_name",)
    with pytest.raises(MissingValues, match=r"contact\.first_name"):
        rendering.message  # noqa: B018 - the property refuses
    assert "Hi ," not in rendering.preview
    blank = render(
        parse("Hi {{contact.first_name}},"), RenderContext({"contact.first_name": " "}), LINK
    )
    assert blank.missing == ("contact.first_name",)


def test_custom_attributes_render_from_the_contacts_attrs() -> None:
    ctx = RenderContext(attrs={"favorite_drink": "flat white"})
    assert (
        render(parse("A {{contact.attrs.favorite_drink|coffee}}?"), ctx, LINK).message
        == "A flat white?"
    )
    assert render(parse("A {{contact.attrs.size|large}}"), ctx, LINK).message == "A large"


@pytest.mark.parametrize(
    ("body", "position", "says"),
    [
        ("Hi {{contact.age}}", 3, "unknown variable"),
        ("Hi {{contact.first_name", 3, "never closed"),
        ("Hi {{contact.first_name|}}!", 3, "empty fallback"),
        ("Hi {{}}", 3, "empty placeholder"),
        ("Hi }} there", 3, "without an opening"),
        ("Go {{link:https://bit.ly/abc}}", 3, "shortener"),
        ("Go to tinyurl.com/abc now", 6, "shortener"),
        ("Go to https://www.bit.ly/abc", 6, "shortener"),
        ("{{link:ftp://acme.example}}", 0, "http(s) URL"),
        ("{{link:}}", 0, "http(s) URL"),
        ("{{contact.attrs.Bad-Key}}", 0, "lower_snake_case"),
        ("{{contact.first_name|a{b}}", 0, "may not contain"),
        ("x" * 2001, 2000, "longer than 2000"),
    ],
)
def test_syntax_errors_give_the_position(body: str, position: int, says: str) -> None:
    with pytest.raises(TemplateSyntaxError) as raised:
        parse(body)
    assert raised.value.position == position
    assert says in str(raised.value)


def test_a_body_over_ten_segments_is_refused_and_ten_is_accepted() -> None:
    check_body("a" * 1530, "https://go.acme.example")  # 10 segments of 153
    with pytest.raises(InvalidArgument) as raised:
        check_body("a" * 1531, "https://go.acme.example")
    assert "11 segments" in raised.value.violations[0].description


def test_preview_warns_about_missing_values_unicode_and_opt_out_language() -> None:
    result = preview(
        parse("Hi {{contact.first_name}} \u2014 we miss you"),
        RenderContext(),
        LINK,
        first_message=True,
    )
    text = " ".join(result.warnings)
    assert "{{contact.first_name}} has no value" in text
    assert "force UCS-2" in text
    assert "opt out" in text
    # as a first message the preview is the text sent: the opt-out line is added (no brand
    # name is known in this context, so none is added)
    assert result.text == "Hi {{contact.first_name}} \u2014 we miss you\nReply STOP to opt out"
    assert result.gsm7_text == "Hi {{contact.first_name}} - we miss you\nReply STOP to opt out"
    ok = preview(parse("Hi! Reply STOP to opt out"), RenderContext(), LINK, first_message=True)
    assert ok.warnings == ()


placeholders = st.sampled_from(
    [
        "{{contact.first_name|there}}",
        "{{contact.first_name}}",
        "{{contact.last_name}}",
        "{{contact.attrs.tier|gold}}",
        "{{location.name}}",
        "{{brand.name}}",
        "{{last_purchase.item|order}}",
        "{{link:https://acme.example/p}}",
        "{{",
        "}}",
        "|",
        "{{contact.nope}}",
    ]
)
body_parts = st.lists(st.one_of(st.text(max_size=30), placeholders), max_size=12)
values = st.dictionaries(
    st.sampled_from(["contact.first_name", "contact.last_name", "location.name", "brand.name"]),
    st.text(max_size=20),
)


@settings(max_examples=400, deadline=None)
@given(body_parts, values)
def test_the_parser_renders_or_names_a_position_and_counting_agrees(
    parts: list[str], given_values: dict[str, str]
) -> None:
    body = "".join(parts)
    try:
        parsed = parse(body)
    except TemplateSyntaxError as exc:
        assert 0 <= exc.position <= len(body)
        return
    rendering = render(parsed, RenderContext(given_values), LINK)
    result = preview(parsed, RenderContext(given_values), LINK, first_message=False)
    assert result.rendering.preview == rendering.preview
    assert result.segments == count(rendering.preview)
    for name in rendering.missing:
        assert "{{" + name + "}}" in rendering.preview


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=400))
def test_counting_never_crashes_and_splitting_bounds_hold(text: str) -> None:
    counted = count(text)
    if counted.encoding is Encoding.GSM7:
        assert counted.segments == 0 if counted.units == 0 else counted.segments >= 1
        assert counted.units <= (160 if counted.segments <= 1 else 153 * counted.segments)
    else:
        assert counted.units <= (70 if counted.segments <= 1 else 67 * counted.segments)
