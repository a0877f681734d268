"""Inbound keyword and phrasing classification (compliance §2.8 to §2.12): what an inbound text
asks for. Exact keywords opt out, ask for HELP or give a new consent; free text that clearly asks
to stop opts out and is flagged; text that only mentions stopping is a flagged reply; everything
else is an ordinary reply."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tenants.compliance.keywords import (
    HELP_KEYWORDS,
    OPT_OUT_KEYWORDS,
    START_KEYWORDS,
    Classification,
    Intent,
    classify,
    normalise,
)

# The keywords exactly as compliance §2.8 lists them.
SPEC_OPT_OUT_KEYWORDS = (
    "STOP",
    "STOPALL",
    "UNSUBSCRIBE",
    "CANCEL",
    "END",
    "QUIT",
    "REVOKE",
    "OPTOUT",
    "OPT OUT",
)

# How one keyword may arrive: (variant id, how to write the keyword that way).
KEYWORD_VARIANTS = (
    ("upper", str.upper),
    ("lower", str.lower),
    ("title", str.title),
    ("whitespace", lambda kw: f"  \n{kw}\t\n "),
    ("full-stop", lambda kw: f"{kw}."),
    ("exclamations", lambda kw: f"{kw.lower()}!!!"),
    ("spanish-exclamation", lambda kw: f"¡{kw.title()}!"),
    ("emoji-after", lambda kw: f"{kw} 🛑"),
    ("emoji-before", lambda kw: f"🙅 {kw.lower()}"),
)


def _keyword_cases() -> list[object]:
    cases: list[object] = []
    for keyword in SPEC_OPT_OUT_KEYWORDS:
        expected = keyword.lower()
        slug = keyword.replace(" ", "_")
        for variant, write in KEYWORD_VARIANTS:
            cases.append(pytest.param(write(keyword), expected, id=f"{slug}-{variant}"))
    return cases


OPT_OUT_SPELLINGS = [
    pytest.param("opt-out", "opt out", id="opt-hyphen-out"),
    pytest.param("Opt_Out", "opt out", id="Opt-underscore-Out"),
    pytest.param("OPT  OUT", "opt out", id="OPT-two-spaces-OUT"),
    pytest.param("Opt-Out!", "opt out", id="Opt-hyphen-Out-exclamation"),
    pytest.param("opt\tout", "opt out", id="opt-tab-out"),
    pytest.param("OPT\u00a0OUT", "opt out", id="OPT-nbsp-OUT"),
    pytest.param("opt.out", "optout", id="opt-dot-out"),
    pytest.param("\uff33\uff34\uff2f\uff30", "stop", id="STOP-fullwidth"),
    pytest.param("STOP\ufe0f", "stop", id="STOP-variation-selector"),
    pytest.param("stop👍🏽", "stop", id="stop-emoji-skin-tone"),
    pytest.param("stop\u200b", "stop", id="stop-zero-width-space"),
    pytest.param("\r\nStop\r\n", "stop", id="Stop-crlf"),
    pytest.param('"STOP"', "stop", id="STOP-quoted"),
]


@pytest.mark.parametrize(("body", "keyword"), [*_keyword_cases(), *OPT_OUT_SPELLINGS])
def test_an_exact_opt_out_keyword_opts_out_unflagged(body: str, keyword: str) -> None:
    result = classify(body)
    assert result == Classification(Intent.OPT_OUT, keyword=keyword)
    assert result.intent is Intent.OPT_OUT
    assert not result.flagged


def test_the_opt_out_keywords_are_exactly_those_of_the_spec() -> None:
    assert {kw.lower() for kw in SPEC_OPT_OUT_KEYWORDS} == OPT_OUT_KEYWORDS


@pytest.mark.parametrize("opted_out", [False, True], ids=["subscribed", "already-opted-out"])
@pytest.mark.parametrize("keyword", sorted(OPT_OUT_KEYWORDS))
def test_an_opt_out_keyword_opts_out_whatever_the_current_state(
    keyword: str, opted_out: bool
) -> None:
    assert classify(keyword.upper(), opted_out=opted_out) == Classification(
        Intent.OPT_OUT, keyword=keyword
    )


CLEAR_OPT_OUT_PHRASES = [
    "please stop texting me",
    "Stop texting me!",
    "unsubscribe me",
    "no more texts",
    "No more messages please",
    "no más",
    "No mas",
    "remove me from your list",
    "take me off this list",
    "don't text me again",
    "Don\u2019t text me again",
    "do not contact me",
    "leave me alone",
    "wrong number",
    "STOP ALL",
    "please stop",
    "stop please",
    "Quit messaging me",
    "ya no me envíen mensajes",
    "alto",
    "basta",
    # more of the same
    "Stop, thanks",
    "STOP NOW",
    "cancel please",
    "stop-all",
    "opt out please",
    "Opt me out",
    "I want to unsubscribe",
    "Please don't contact me anymore",
    "Please remove my number",
    "Basta ya",
    "quiero darme de baja",
    # repeated keywords, a bare "remove me" or "no more", and the FCC's own words
    "STOP STOP",
    "Stop!!! Stop!!!",
    "STOP 🛑 STOP",
    "unsubscribe unsubscribe",
    "remove me",
    "Please remove me",
    "No more!",
    "please no more",
    "I revoke consent",
]


@pytest.mark.parametrize("body", CLEAR_OPT_OUT_PHRASES)
def test_clear_opt_out_phrasing_opts_out_and_is_flagged(body: str) -> None:
    result = classify(body)
    assert result.intent is Intent.OPT_OUT
    assert result.flagged
    assert result.review_reason.startswith("opt-out phrasing:")
    assert result.keyword == ""  # phrasing, not a keyword


MAYBE_OPT_OUT = [
    "can you stop by tomorrow?",
    "I stopped by yesterday but you were closed",
    "Can I cancel my appointment?",
    "I'd like to quit my membership",
    "This is spam",
    # more of the same
    "Stopping by around 5 if that works",
    "Did my order get canceled?",
    "I unsubscribed from the emails last week",
    "Help me stop snoring",
    "Is this TCPA compliant?",
    "My lawyer will be in touch",
    "How do I revoke my old card on file?",
    "stop by stop by",
    "I'll sue",
]


@pytest.mark.parametrize("body", MAYBE_OPT_OUT)
def test_a_mention_of_stopping_is_a_reply_flagged_for_review(body: str) -> None:
    result = classify(body)
    assert result.intent is Intent.REPLY
    assert result.flagged
    assert result.review_reason.startswith("may be an opt-out:")
    assert result.keyword == ""


ORDINARY_REPLIES = [
    pytest.param("Sounds good!", id="sounds-good"),
    pytest.param("yes", id="yes-while-subscribed"),
    pytest.param("Yes please", id="yes-please"),
    pytest.param("What time do you open?", id="opening-time"),
    pytest.param("thanks 😊", id="thanks-emoji"),
    pytest.param("", id="empty"),
    pytest.param("   ", id="blank"),
    pytest.param("🛑", id="emoji-only"),
    pytest.param("start my order", id="start-my-order"),
    pytest.param("helpful, thanks", id="helpful-thanks"),
    pytest.param("The end of the month works", id="end-of-the-month"),
    pytest.param("I'll be there at the end of the day", id="end-of-the-day"),
    pytest.param("Can you help me book?", id="help-in-a-sentence"),
    pytest.param("more info on pricing please", id="info-in-a-sentence"),
    pytest.param("no thanks", id="no-thanks"),
    pytest.param("Is there no more room on Friday?", id="no-more-in-a-question"),
    pytest.param("see you at the bus stops", id="stops-noun"),
    pytest.param("the unstoppable deal!", id="unstoppable"),
    pytest.param("blend it", id="no-keyword-inside-a-word"),
]


@pytest.mark.parametrize("body", ORDINARY_REPLIES)
def test_an_ordinary_reply_is_an_unflagged_reply(body: str) -> None:
    assert classify(body) == Classification(Intent.REPLY)
    assert not classify(body).flagged


@pytest.mark.parametrize(
    ("body", "keyword"),
    [
        pytest.param("HELP", "help", id="HELP"),
        pytest.param("help", "help", id="help"),
        pytest.param("Help.", "help", id="Help-full-stop"),
        pytest.param("help?", "help", id="help-question"),
        pytest.param("¿HELP?", "help", id="HELP-spanish-question"),
        pytest.param(" help!!! \n", "help", id="help-whitespace-exclamations"),
        pytest.param("INFO", "info", id="INFO"),
        pytest.param("Info!", "info", id="Info-exclamation"),
        pytest.param("info 🙏", "info", id="info-emoji"),
    ],
)
@pytest.mark.parametrize("opted_out", [False, True], ids=["subscribed", "opted-out"])
def test_help_and_info_ask_for_help_unflagged(body: str, keyword: str, opted_out: bool) -> None:
    assert classify(body, opted_out=opted_out) == Classification(Intent.HELP, keyword=keyword)


@pytest.mark.parametrize(
    ("body", "keyword"),
    [
        pytest.param("START", "start", id="START"),
        pytest.param("start", "start", id="start"),
        pytest.param("Start!", "start", id="Start-exclamation"),
        pytest.param("UNSTOP", "unstop", id="UNSTOP"),
        pytest.param("Unstop.", "unstop", id="Unstop-full-stop"),
        pytest.param(" unstop 👍 ", "unstop", id="unstop-emoji"),
    ],
)
@pytest.mark.parametrize("opted_out", [False, True], ids=["subscribed", "opted-out"])
def test_start_and_unstop_are_a_new_consent(body: str, keyword: str, opted_out: bool) -> None:
    assert classify(body, opted_out=opted_out) == Classification(Intent.START, keyword=keyword)


@pytest.mark.parametrize("body", ["YES", "yes", "Yes!", " yes. ", "YES 👍"])
def test_yes_after_an_opt_out_is_a_new_consent(body: str) -> None:
    assert classify(body, opted_out=True) == Classification(Intent.START, keyword="yes")


@pytest.mark.parametrize("body", ["YES", "yes", "Yes!", " yes. ", "YES 👍"])
def test_yes_while_subscribed_is_just_a_reply(body: str) -> None:
    assert classify(body, opted_out=False) == Classification(Intent.REPLY)


@pytest.mark.parametrize("body", ["Yes please", "yes, who is this?"])
def test_only_a_bare_yes_is_a_new_consent_after_an_opt_out(body: str) -> None:
    assert classify(body, opted_out=True).intent is Intent.REPLY


@pytest.mark.parametrize("keyword", ["stop", "cancel", "end", "quit", "revoke", "opt out"])
def test_a_keyword_wins_over_the_phrasing_checks(keyword: str) -> None:
    # Each of these alone also matches the "keyword with a courtesy" phrasing; the exact
    # keyword is recognised first: it carries the keyword and needs no review.
    as_keyword = classify(keyword)
    assert as_keyword == Classification(Intent.OPT_OUT, keyword=keyword)
    with_courtesy = classify(f"{keyword} please")
    assert with_courtesy.intent is Intent.OPT_OUT
    assert with_courtesy.keyword == ""
    assert with_courtesy.flagged


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("STOP", "stop", id="upper-case"),
        pytest.param("Straße", "strasse", id="casefold-sharp-s"),
        pytest.param("ΣΤΟΠ", "στοπ", id="casefold-greek"),
        pytest.param("¡Hola!", "hola", id="drops-punctuation"),
        pytest.param("\u201cdon\u2019t\u201d", "dont", id="drops-curly-quotes"),
        pytest.param("STOP 🛑", "stop", id="drops-emoji"),
        pytest.param("👍🏽 ok ❤️", "ok", id="drops-emoji-with-modifiers"),
        pytest.param("🛑🙅", "", id="only-emoji"),
        pytest.param("más", "más", id="keeps-accent"),
        pytest.param("Ma\u0301s", "más", id="composes-decomposed-accent"),
        pytest.param("NIÑO", "niño", id="keeps-tilde"),
        pytest.param("opt-out", "opt out", id="hyphen-is-space"),
        pytest.param("Opt_Out", "opt out", id="underscore-is-space"),
        pytest.param("a--b__c", "a b c", id="hyphen-runs"),
        pytest.param("  a \n\t b  ", "a b", id="collapses-whitespace"),
        pytest.param("OPT  OUT", "opt out", id="collapses-double-space"),
        pytest.param("a\u00a0\u2003b", "a b", id="unicode-spaces"),
        pytest.param("\uff33\uff34\uff2f\uff30", "stop", id="fullwidth-letters"),
        pytest.param("stop\u200b", "stop", id="zero-width-space-dropped"),
        pytest.param("open 24/7", "open 247", id="keeps-digits"),
        pytest.param("", "", id="empty"),
        pytest.param(" \n\t ", "", id="blank"),
    ],
)
def test_normalise(text: str, expected: str) -> None:
    assert normalise(text) == expected


def test_the_keyword_sets_do_not_overlap() -> None:
    assert not OPT_OUT_KEYWORDS & HELP_KEYWORDS
    assert not OPT_OUT_KEYWORDS & START_KEYWORDS
    assert not HELP_KEYWORDS & START_KEYWORDS
    assert all(normalise(kw) == kw for kw in OPT_OUT_KEYWORDS | HELP_KEYWORDS | START_KEYWORDS)


# ---- properties ----

# Characters that normalise drops on their own and that cannot combine with a neighbour:
# punctuation, symbols, emoji, spaces, controls and format characters.
_DECORATION = st.characters(categories=["P", "S", "Z", "Cc", "Cf"]).filter(
    lambda ch: normalise(ch) == "" and not unicodedata.category(ch).startswith("M")
)
_SEPARATOR = st.text(st.sampled_from([" ", "-", "_", "\t", "\n", "\u00a0", "\u3000"]), min_size=1)


@st.composite
def decorated_opt_out_keyword(draw: st.DrawFn) -> tuple[str, str]:
    keyword = draw(st.sampled_from(sorted(OPT_OUT_KEYWORDS)))
    cased = "".join(
        ch.upper() if draw(st.booleans()) else ch.lower() for ch in keyword.replace(" ", "")
    )
    if keyword == "opt out":
        cased = cased[:3] + draw(_SEPARATOR) + cased[3:]
    before = draw(st.text(_DECORATION, max_size=6))
    after = draw(st.text(_DECORATION, max_size=6))
    return f"{before}{cased}{after}", keyword


@settings(max_examples=300)
@given(case=decorated_opt_out_keyword(), opted_out=st.booleans())
def test_a_decorated_opt_out_keyword_always_opts_out(
    case: tuple[str, str], opted_out: bool
) -> None:
    body, keyword = case
    assert normalise(body) == keyword
    assert classify(body, opted_out=opted_out) == Classification(Intent.OPT_OUT, keyword=keyword)


@settings(max_examples=300)
@given(body=st.text(), opted_out=st.booleans())
def test_classify_never_raises_and_is_consistent(body: str, opted_out: bool) -> None:
    result = classify(body, opted_out=opted_out)
    assert isinstance(result, Classification)
    assert isinstance(result.intent, Intent)
    assert result.flagged == bool(result.review_reason)
    if result.keyword:  # a keyword is the whole normalised text, and never needs review
        assert result.keyword == normalise(body)
        assert not result.flagged
    if normalise(body) in OPT_OUT_KEYWORDS:
        assert result == Classification(Intent.OPT_OUT, keyword=normalise(body))


@settings(max_examples=300)
@given(body=st.text())
def test_only_a_bare_yes_depends_on_the_opt_out_state(body: str) -> None:
    subscribed, opted_out = classify(body), classify(body, opted_out=True)
    if normalise(body) == "yes":
        assert (subscribed.intent, opted_out.intent) == (Intent.REPLY, Intent.START)
    else:
        assert subscribed == opted_out


@settings(max_examples=300)
@given(text=st.text())
def test_normalise_yields_single_spaced_words_and_is_idempotent(text: str) -> None:
    words = normalise(text)
    assert words == words.strip()
    assert "  " not in words
    assert all(ch == " " or unicodedata.category(ch)[0] in "LN" for ch in words)
    assert normalise(words) == words
    assert classify(words) == classify(text)


@pytest.mark.parametrize(
    "text",
    [
        "Me puedes ayudar a cancelar mi cita?",
        "el precio es muy alto",
        "no más tacos por hoy",
        "is this the wrong number for the shop?",
    ],
)
def test_keywords_inside_a_sentence_are_a_flagged_reply_not_an_opt_out(text: str) -> None:
    verdict = classify(text)
    assert verdict.intent is Intent.REPLY
    assert verdict.review_reason.startswith("may be an opt-out")


@pytest.mark.parametrize("text", ["Alto", "BASTA!", "No más", "wrong number", "Baja por favor"])
def test_spanish_keywords_and_wrong_number_alone_opt_out_flagged(text: str) -> None:
    verdict = classify(text)
    assert verdict.intent is Intent.OPT_OUT
    assert verdict.flagged
