"""The `rules` rewriter: offline and deterministic. On a corpus of real-looking marketing texts
(tests/data/assistant_corpus.yaml) every draft keeps its protected tokens intact and either fits
its segment budget or says it cannot; and each rule does what it says, only when needed."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

from tenants.assistant.drafts import Draft, Goal, rewrite_message
from tenants.assistant.rules import RulesProvider
from tenants.assistant.tokens import find
from tenants.content.segments import count

CORPUS: list[dict[str, Any]] = yaml.safe_load(
    (Path(__file__).parent / "data" / "assistant_corpus.yaml").read_text(encoding="utf-8")
)


async def rewrite(text: str, goals: list[Goal], max_segments: int = 0, brand: str = "") -> Draft:
    return await rewrite_message(RulesProvider(), text, goals, max_segments, brand_name=brand)


def test_the_corpus_is_big_and_varied() -> None:
    assert len(CORPUS) >= 25
    texts = " ".join(entry["text"] for entry in CORPUS)
    for needle in ("{{contact.first_name|there}}", "{{link:", "{{coupon:", "“", "ñ", "🎃"):
        assert needle in texts
    assert {e["fits"] for e in CORPUS} == {True, False}


@pytest.mark.parametrize("entry", CORPUS, ids=[e["name"] for e in CORPUS])
async def test_every_corpus_text_fits_or_says_it_cannot_with_its_tokens_intact(
    entry: dict[str, Any],
) -> None:
    text, brand, budget = entry["text"], entry["brand"], entry["max_segments"]
    goals = [Goal(g) for g in entry["goals"]]
    draft = await rewrite(text, goals, budget, brand)

    # the protected tokens, counted independently of the check the draft already passed
    before = Counter(h.token for h in find(text, brand))
    after = Counter(h.token for h in find(draft.text, brand))
    assert after == before, draft.text
    for token in draft.protected:
        assert draft.text.count(token.text) == text.count(token.text), token

    measured = count(draft.text)
    assert (draft.segments, draft.encoding) == (measured.segments, measured.encoding.value)
    if budget:
        cannot = [n for n in draft.notes if n.startswith(f"cannot fit {budget} segment")]
        if draft.fits:
            assert draft.segments <= budget and not cannot
        else:
            assert draft.segments > budget and len(cannot) == 1, draft.notes
    else:
        assert draft.fits
    assert draft.fits is entry["fits"], (draft.text, draft.notes)
    if "note" in entry:
        assert any(n.startswith(entry["note"]) for n in draft.notes), draft.notes
    for wording in entry.get("contains", []):
        assert wording in draft.text, draft.text
    for wording in entry.get("absent", []):
        assert wording not in draft.text, draft.text
    if Goal.GSM7_ONLY in goals and draft.encoding == "UCS-2":
        assert any("GSM-7" in note for note in draft.notes), draft.notes
    # deterministic, and a second pass over its own draft finds nothing more to fit
    assert await rewrite(text, goals, budget, brand) == draft
    if draft.fits:
        assert (await rewrite(draft.text, goals, budget, brand)).text == draft.text


async def test_a_budget_that_the_protected_tokens_alone_exceed_says_so() -> None:
    entry = next(e for e in CORPUS if e["name"].startswith("gym, protected link"))
    draft = await rewrite(entry["text"], [Goal.FIT_SEGMENTS], 1, entry["brand"])
    assert not draft.fits
    assert draft.notes[-1].startswith(
        "cannot fit 1 segment without changing a protected token: the placeholders, links, "
        "brand name and opt-out wording alone take 2 segments"
    )


async def test_a_budget_the_rules_cannot_reach_says_so_and_keeps_what_they_did() -> None:
    entry = next(e for e in CORPUS if e["name"].startswith("pizza, long story that rules"))
    draft = await rewrite(entry["text"], [Goal.FIT_SEGMENTS], 1, entry["brand"])
    assert not draft.fits and draft.segments == 2
    assert draft.notes[-1].startswith("cannot fit 1 segment with the rules provider's shortenings")
    assert "&" in draft.text  # it went as far as abbreviating "and"


async def test_abbreviations_only_when_the_budget_needs_them() -> None:
    text = "Glow Salon: your appointment is tomorrow at 10am. Reply STOP to opt out."
    assert (await rewrite(text, [Goal.FIT_SEGMENTS], 1)).text == text
    long = f"{text} We are so excited to see you and all of your friends at our new location"
    long += " on Maple Avenue!"
    assert count(long).segments == 2
    draft = await rewrite(long, [Goal.FIT_SEGMENTS], 1)
    assert draft.fits
    # the mildest steps first, and no more than needed
    assert "We're so excited" in draft.text and "appt" in draft.text
    assert "tomorrow" in draft.text and "&" not in draft.text
    assert "abbreviated: 'appointment -> appt'" in draft.notes


async def test_shorter_removes_filler_and_capitalises_the_sentence_it_starts() -> None:
    text = "We wanted to let you know that our patio is open. It is really very sunny!"
    draft = await rewrite(text, [Goal.SHORTER])
    assert draft.text == "Our patio is open. It's sunny!"
    assert "filler removed: 'we wanted to let you know that'" in draft.notes
    assert "filler words removed: 'really', 'very'" in draft.notes


async def test_gsm7_only_replaces_look_alikes_and_drops_emoji() -> None:
    text = "It\u2019s our “Fall Sale”\u00a0— 20% off… 🍂 Reply STOP to opt out."
    draft = await rewrite(text, [Goal.GSM7_ONLY])
    assert draft.text == 'It\'s our "Fall Sale" - 20% off... Reply STOP to opt out.'
    assert draft.encoding == "GSM-7"
    assert "emoji removed (GSM-7 has none)" in draft.notes


async def test_gsm7_only_cannot_change_a_brand_written_with_unicode() -> None:
    draft = await rewrite("Açaí Bowls: free granola today!", [Goal.GSM7_ONLY], brand="Açaí Bowls")
    assert draft.text.startswith("Açaí Bowls:")
    assert draft.encoding == "UCS-2"
    assert "cannot make it GSM-7 without changing a protected token: 'Açaí Bowls'" in draft.notes


async def test_a_placeholder_default_that_looks_like_a_rule_is_untouched() -> None:
    text = (
        "Hi {{contact.first_name|really good friend}}, see you {{last_activity.date|tomorrow}}"
        " and the day after tomorrow at our appointment desk. " * 3
    ).strip()
    draft = await rewrite(text, [Goal.SHORTER, Goal.FIT_SEGMENTS], 2)
    assert draft.text.count("{{contact.first_name|really good friend}}") == 3
    assert draft.text.count("{{last_activity.date|tomorrow}}") == 3
    assert "tmrw" in draft.text


async def test_friendlier_and_more_direct_tables() -> None:
    friendlier = await rewrite("Visit us today. You must bring this text.", [Goal.FRIENDLIER])
    assert friendlier.text == "Hi! Come see us today. Please bring this text."
    direct = await rewrite(
        "If you have a moment, feel free to book your table. We hope you can join us.",
        [Goal.MORE_DIRECT],
    )
    assert direct.text == "Book your table. Join us."


async def test_the_opt_out_sentence_is_never_shortened() -> None:
    text = "Please note that we will really miss you. Reply STOP to opt out, thank you."
    draft = await rewrite(text, [Goal.SHORTER])
    assert "Reply STOP to opt out" in draft.text
    assert draft.text == "We'll miss you. Reply STOP to opt out, thx."
