"""A first text's opt-out line in the text's own language (no server)."""

from __future__ import annotations

import pytest

from tenants.content.bodies import check_body, preview, preview_link_maker
from tenants.content.first_message import (
    OPT_OUT_LINE,
    line_language,
    outgoing_text,
    says_how_to_opt_out,
)
from tenants.content.placeholders import RenderContext

SPANISH = "Responde STOP para cancelar"
URL = "https://go.acme.example"


@pytest.mark.parametrize(
    ("language", "line"),
    [("es", SPANISH), ("es-MX", SPANISH), ("ES", SPANISH), ("", OPT_OUT_LINE),
     ("en", OPT_OUT_LINE), ("fr", OPT_OUT_LINE)],
)  # fmt: skip
def test_the_added_line_is_in_the_texts_language(language: str, line: str) -> None:
    out = outgoing_text("Acme Coffee: te extrañamos", "Acme Coffee", first_message=True,
                        language=language)  # fmt: skip
    assert out.text == f"Acme Coffee: te extrañamos\n{line}"
    assert out.added_opt_out and out.additions == (f"'{line}'",)
    assert says_how_to_opt_out(out.text)
    again = outgoing_text(out.text, "Acme Coffee", first_message=True, language=language)
    assert again.text == out.text and not again.added_opt_out  # applying it twice: no change


def test_a_text_that_already_says_it_in_either_language_gets_nothing() -> None:
    for body in (f"Acme Coffee: hola. {SPANISH}", f"Acme Coffee: hello. {OPT_OUT_LINE}"):
        for language in ("es", "en"):
            out = outgoing_text(body, "Acme Coffee", first_message=True, language=language)
            assert out.text == body and not out.added_opt_out


def test_a_later_text_gets_no_line_in_any_language() -> None:
    out = outgoing_text("Hola otra vez", "Acme Coffee", first_message=False, language="es")
    assert out.text == "Hola otra vez" and out.additions == ()


def test_an_edited_or_draft_text_gets_the_line_in_the_language_it_reads_in() -> None:
    assert line_language("Hola Ana, te esperamos mañana en Acme Coffee") == "es"
    assert line_language("Hi Ana, see you tomorrow at Acme Coffee") == ""
    assert line_language("Hi Ana", "es") == "es"  # a variant's known language wins
    parsed = check_body("Hola {{contact.first_name|amigo}}, te esperamos mañana", URL)
    context = RenderContext({"brand.name": "Acme Coffee", "contact.first_name": "Ana"})
    shown = preview(parsed, context, preview_link_maker(URL), first_message=True)
    assert shown.text.endswith("\nResponde STOP para cancelar")
    assert any("'Responde STOP para cancelar'" in w for w in shown.warnings)
    english = preview(parsed, context, preview_link_maker(URL), first_message=True, language="en")
    assert english.text.endswith("\nReply STOP to opt out")  # an English variant's own line
