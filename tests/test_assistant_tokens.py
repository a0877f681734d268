"""Protected tokens and the drafts' contract: what is protected in a text, which drafts are
refused (a changed, dropped, duplicated or added token), and what a request must be."""

from __future__ import annotations

import pytest

from tenants.assistant.drafts import (
    AssistantSettings,
    AssistantUnavailable,
    Draft,
    DraftRefused,
    Goal,
    ProtectedToken,
    rewrite_message,
    rewriter_from,
    translate_message,
    translator_from,
)
from tenants.assistant.providers import worksheet
from tenants.assistant.rules import RulesProvider
from tenants.assistant.tokens import find, mask, protected, verify
from tenants.content.first_message import opt_out_line
from tenants.core.errors import InvalidArgument

TEXT = (
    "Hi {{ contact.first_name | there }}! Joe\u2019s Pizza has a deal: {{coupon:PIZZA-2}} at "
    "{{link:https://joes.example/deal}} or joes.example/menu. Reply STOP to opt out."
)


class Scripted:
    """A provider that answers what the test says (a function of the input) and remembers
    what it was told."""

    name = "scripted"

    def __init__(self, answer: str | None = None) -> None:
        self.answer = answer
        self.protected_seen: list[ProtectedToken] = []

    async def rewrite(self, text: str, goals: tuple[Goal, ...], max_segments: int) -> str:
        self.protected_seen = [h.token for h in worksheet().protected_hits(text)]
        return text if self.answer is None else self.answer

    async def translate(self, text: str, source: str, target: str) -> str:
        self.protected_seen = [h.token for h in worksheet().protected_hits(text)]
        return text if self.answer is None else self.answer


def test_a_text_protects_placeholders_links_brand_and_opt_out_as_written() -> None:
    assert protected(TEXT, "Joe's Pizza") == (
        ProtectedToken("placeholder", "{{ contact.first_name | there }}"),
        ProtectedToken("brand_name", "Joe\u2019s Pizza"),
        ProtectedToken("placeholder", "{{coupon:PIZZA-2}}"),
        ProtectedToken("link", "{{link:https://joes.example/deal}}"),
        ProtectedToken("link", "joes.example/menu"),
        ProtectedToken("opt_out", "Reply STOP to opt out"),
        ProtectedToken("opt_out", "STOP"),
    )


def test_a_translation_protects_the_keyword_not_the_opt_out_sentence() -> None:
    tokens = protected(TEXT, "Joe's Pizza", translation=True)
    assert ProtectedToken("opt_out", "STOP") in tokens
    assert ProtectedToken("opt_out", "Reply STOP to opt out") not in tokens


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("NON-STOP savings all weekend!", ()),
        ("STOP by today for a free donut.", ()),
        ("Text END to unsubscribe", ("Text END to unsubscribe", "END")),
        ("Reply HELP for help, STOP to cancel.", ("HELP", "STOP to cancel", "STOP")),
        ("HUGE SALE: END OF SEASON DEALS, HELP YOURSELF!", ()),
        ("Text START to get deals again", ("START",)),
        ("Opt out: reply STOP", ("Opt out: reply STOP", "STOP")),
        ("Click the link to opt out", ("to opt out",)),
        ("Responde STOP para darte de baja.", ("Responde STOP para darte de baja", "STOP")),
    ],
)
def test_what_counts_as_opt_out_wording(text: str, expected: tuple[str, ...]) -> None:
    assert tuple(t.text for t in protected(text) if t.kind == "opt_out") == expected


def test_a_link_ends_before_sentence_punctuation() -> None:
    links = [
        t.text for t in protected("Order at https://pizza.example/o?a=1. Or www.pizza.example!")
    ]
    assert links == ["https://pizza.example/o?a=1", "www.pizza.example"]


def test_the_brand_is_not_found_inside_a_link_or_a_placeholder() -> None:
    text = "Visit https://acme.example/acme or {{location.name|Acme}} - love, ACME"
    assert [t for t in protected(text, "Acme") if t.kind == "brand_name"] == [
        ProtectedToken("brand_name", "ACME")
    ]


@pytest.mark.parametrize(
    ("draft", "token", "problem"),
    [
        (TEXT.replace("| there }}", "| friend }}"), "{{ contact.first_name | there }}", "changed"),
        (
            TEXT.replace("{{ contact.first_name | there }}", "{{contact.first_name|there}}"),
            "{{ contact.first_name | there }}",
            "changed",
        ),
        (TEXT.replace(" or joes.example/menu", ""), "joes.example/menu", "dropped"),
        (TEXT.replace("Joe\u2019s Pizza", "Joe's Pizza"), "Joe\u2019s Pizza", "changed"),
        (TEXT + " {{coupon:PIZZA-2}}", "{{coupon:PIZZA-2}}", "duplicated"),
        (
            TEXT.replace("Reply STOP to opt out", "Reply STOP to opt out of texts"),
            "Reply STOP to opt out",
            "changed",
        ),
        (TEXT + " {{contact.last_name}}", "{{contact.last_name}}", "added"),
    ],
)
def test_a_draft_that_touches_a_token_is_refused(draft: str, token: str, problem: str) -> None:
    with pytest.raises(DraftRefused) as refused:
        verify(TEXT, draft, "Joe's Pizza")
    assert refused.value.reason == "PROTECTED_TOKEN_CHANGED"
    assert refused.value.metadata["token"] == token
    assert problem in refused.value.message and repr(token) in refused.value.message


def test_a_translation_may_translate_the_opt_out_sentence_but_not_stop() -> None:
    translated = TEXT.replace("Reply STOP to opt out", "Responde STOP para darte de baja")
    verify(TEXT, translated, "Joe's Pizza", translation=True)
    for word in ("PARAR", "ALTO", "Stop", "stop"):
        with pytest.raises(DraftRefused) as refused:
            verify(TEXT, translated.replace("STOP", word), "Joe's Pizza", translation=True)
        assert refused.value.metadata == {"token": "STOP", "kind": "opt_out"}


def test_masking_round_trips_and_a_lost_sentinel_is_a_lost_token() -> None:
    masked = mask(TEXT, find(TEXT, "Joe's Pizza"), lambda i: f"<{i}>")
    assert "STOP" not in masked.text and "{{" not in masked.text
    assert masked.unmask(masked.text) == TEXT
    with pytest.raises(DraftRefused):
        verify(TEXT, masked.unmask(masked.text.replace("<1>", "")), "Joe's Pizza")


async def test_a_draft_is_checked_and_returned_with_its_count() -> None:
    provider = Scripted()
    draft = await rewrite_message(provider, TEXT, [Goal.FRIENDLIER], brand_name="Joe's Pizza")
    assert draft == Draft(
        text=TEXT,
        segments=3,
        encoding="UCS-2",
        protected=protected(TEXT, "Joe's Pizza"),
        provider="scripted",
        fits=True,
        notes=(),
    )
    # the provider saw the same tokens the check uses (the brand name included)
    assert ProtectedToken("brand_name", "Joe\u2019s Pizza") in provider.protected_seen


async def test_drafts_refuse_a_provider_that_changes_a_token() -> None:
    with pytest.raises(DraftRefused) as refused:
        await rewrite_message(
            Scripted(TEXT.replace("Joe\u2019s Pizza", "Joe\u2019s")),
            TEXT,
            [Goal.SHORTER],
            brand_name="Joe's Pizza",
        )
    assert refused.value.metadata == {"token": "Joe\u2019s Pizza", "kind": "brand_name"}
    assert "brand name" in refused.value.message


async def test_an_empty_answer_is_unavailable() -> None:
    with pytest.raises(AssistantUnavailable):
        await translate_message(Scripted(" "), TEXT, "es")


@pytest.mark.parametrize(
    ("text", "goals", "max_segments", "fields"),
    [
        ("", [Goal.SHORTER], 0, ["text"]),
        ("   \n", [Goal.SHORTER], 0, ["text"]),
        ("x" * 1601, [Goal.SHORTER], 0, ["text"]),
        ("bell\x07", [Goal.SHORTER], 0, ["text"]),
        ("Hi", [], 0, ["goals"]),
        ("Hi", ["louder"], 0, ["goals"]),
        ("Hi", [Goal.SHORTER], 11, ["max_segments"]),
        ("Hi", [Goal.SHORTER], -1, ["max_segments"]),
        ("Hi", [Goal.FIT_SEGMENTS], 0, ["max_segments"]),
        ("", [], 12, ["text", "goals", "max_segments"]),
    ],
)
async def test_a_bad_rewrite_request_names_every_bad_field(
    text: str, goals: list[Goal], max_segments: int, fields: list[str]
) -> None:
    with pytest.raises(InvalidArgument) as bad:
        await rewrite_message(Scripted(), text, goals, max_segments)
    assert [v.field for v in bad.value.violations] == fields


async def test_a_text_of_1600_characters_is_accepted() -> None:
    draft = await rewrite_message(Scripted(), "a" * 1600, [Goal.SHORTER])
    assert draft.segments == 11 and draft.fits


@pytest.mark.parametrize(
    ("target", "source", "fields"),
    [
        ("spanish", "en", ["target_language"]),
        ("es_MX", "en", ["target_language"]),
        ("xx", "en", ["target_language"]),
        ("", "en", ["target_language"]),
        ("es", "en-", ["source_language"]),
        ("es", "es-MX", ["target_language"]),
        ("qq", "zz-ZZ", ["target_language", "source_language"]),
    ],
)
async def test_a_bad_translation_request_names_the_language_field(
    target: str, source: str, fields: list[str]
) -> None:
    with pytest.raises(InvalidArgument) as bad:
        await translate_message(Scripted(), TEXT, target, source)
    assert [v.field for v in bad.value.violations] == fields


@pytest.mark.parametrize("tag", ["es", "es-MX", "es-419", "en-US", "zh-Hant-TW", "pt-BR"])
async def test_good_language_tags_are_accepted(tag: str) -> None:
    source = "fr" if tag.startswith(("es", "en")) else "en"
    draft = await translate_message(Scripted(), TEXT, tag, source)
    assert draft.text == TEXT.replace("Reply STOP to opt out", opt_out_line(tag))


@pytest.mark.parametrize(
    ("draft", "link"),
    [
        ("Book at acme.com/b or EVIL.COM/win", "EVIL.COM/win"),
        ("Book at acme.com/b or Evil.Com", "Evil.Com"),
        ("Book at acme.com/b, see WWW.EVIL.COM", "WWW.EVIL.COM"),
    ],
)
def test_a_draft_may_not_add_a_bare_domain_in_capitals(draft: str, link: str) -> None:
    with pytest.raises(DraftRefused) as refused:
        verify("Book at acme.com/b", draft)
    assert refused.value.metadata == {"token": link, "kind": "link"}
    assert "added" in refused.value.message


def test_a_sentence_missing_its_space_is_no_added_link_when_the_text_had_it() -> None:
    verify("See you.Bye for now", "See you.Bye!")
    assert protected("See you.Bye") == ()


async def test_a_translation_masks_the_opt_out_wording_and_puts_the_standard_line_back() -> None:
    provider = Scripted()
    draft = await translate_message(provider, TEXT, "es", brand_name="Joe's Pizza")
    assert draft.text.endswith("joes.example/menu. Responde STOP para cancelar.")
    # the provider saw one placeholder for the whole wording, STOP included
    assert ProtectedToken("placeholder", "{{opt_out}}") in provider.protected_seen
    assert all("STOP" not in t.text for t in provider.protected_seen)
    assert ProtectedToken("opt_out", "Responde STOP para cancelar") in draft.protected
    assert any("Responde STOP para cancelar" in note for note in draft.notes)


async def test_a_text_already_using_the_placeholder_name_gets_another() -> None:
    text = "Hi {{opt_out}}, Reply STOP to opt out"
    draft = await translate_message(Scripted(), text, "es")
    assert draft.text == "Hi {{opt_out}}, Responde STOP para cancelar"


async def test_each_opt_out_sentence_becomes_the_standard_line() -> None:
    text = "Reply STOP to opt out. Deals today! Text STOP to quit"
    draft = await translate_message(Scripted(), text, "es")
    assert draft.text == "Responde STOP para cancelar. Deals today! Responde STOP para cancelar"


async def test_a_translation_without_opt_out_may_not_gain_one() -> None:
    answer = "Hola, ofertas hoy. Responde STOP para seguir recibiendo ofertas"
    with pytest.raises(DraftRefused) as refused:
        await translate_message(Scripted(answer), "Hi, deals today.", "es")
    assert refused.value.metadata["kind"] == "opt_out"
    assert "added" in refused.value.message


async def test_a_link_inside_the_opt_out_sentence_is_refused_before_translating() -> None:
    provider = Scripted()
    text = "Deals today! Text STOP to {{link:https://joes.example/p}} to opt out"
    with pytest.raises(DraftRefused) as refused:
        await translate_message(provider, text, "es")
    assert refused.value.metadata == {"token": "{{link:https://joes.example/p}}", "kind": "link"}
    assert "move it out of the opt-out sentence" in refused.value.message
    assert provider.protected_seen == []  # the provider was never asked


def test_settings_choose_the_providers() -> None:
    assert rewriter_from(AssistantSettings()).name == "rules"
    assert translator_from(AssistantSettings()).name == "apertium"
    assert rewriter_from(AssistantSettings(rewriter="openai")).name == "openai"
    assert translator_from(AssistantSettings(translator="openai")).name == "openai"
    for bad in (
        lambda: rewriter_from(AssistantSettings(rewriter="apertium")),
        lambda: translator_from(AssistantSettings(translator="rules")),
        lambda: rewriter_from(AssistantSettings(rewriter="gpt")),
    ):
        with pytest.raises(AssistantUnavailable):
            bad()


async def test_the_rules_provider_does_not_translate() -> None:
    with pytest.raises(AssistantUnavailable) as unavailable:
        await translate_message(RulesProvider(), TEXT, "es")
    assert "apertium" in unavailable.value.message and "openai" in unavailable.value.message
