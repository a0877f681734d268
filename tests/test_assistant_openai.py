"""The `openai` provider against a local server that speaks the chat-completions wire format
(tests/fake_openai.py): a good draft passes; a model that drops a link, alters a placeholder's
default or translates STOP is refused, naming the token; a failing endpoint is
ASSISTANT_UNAVAILABLE and never shows the key."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest

from tenants.assistant.drafts import (
    AssistantSettings,
    AssistantUnavailable,
    DraftRefused,
    Goal,
    ProtectedToken,
    rewrite_message,
    rewriter_from,
    translate_message,
    translator_from,
)
from tenants.assistant.openai_chat import OpenAIChatProvider
from tests.fake_openai import FakeOpenAI, Reply, user_text

KEY = "sk-test-0123456789abcdef"
MODEL = "gpt-test-mini"
LINK = "{{link:https://sunrise.example/menu}}"
TEXT = (
    "Hi {{contact.first_name|there}}! Sunrise Coffee misses you: your free latte is waiting "
    f"until Sunday. See the new menu: {LINK}\nReply STOP to opt out."
)
SPANISH = (
    "¡Hola {{contact.first_name|there}}! Sunrise Coffee te extraña: tu latte gratis te espera "
    f"hasta el domingo. Mira el nuevo menú: {LINK}\nResponde STOP para darte de baja."
)


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(api_key=KEY) as server:
        yield server


def provider(fake: FakeOpenAI, *, timeout: float = 5.0, key: str = KEY) -> OpenAIChatProvider:
    settings = AssistantSettings(
        rewriter="openai",
        translator="openai",
        openai_base_url=fake.base_url,
        openai_model=MODEL,
        openai_api_key=key,
        timeout_seconds=timeout,
    )
    chosen = translator_from(settings)
    assert isinstance(chosen, OpenAIChatProvider)
    return chosen


async def test_a_good_translation_is_a_draft_and_the_request_carried_key_model_and_tokens(
    fake: FakeOpenAI,
) -> None:
    fake.answer(Reply(content=SPANISH))
    draft = await translate_message(provider(fake), TEXT, "es", brand_name="Sunrise Coffee")
    assert draft.text == SPANISH
    assert draft.provider == "openai"
    assert draft.encoding == "UCS-2" and draft.segments == 3
    assert ProtectedToken("opt_out", "STOP") in draft.protected
    assert ProtectedToken("link", LINK) in draft.protected
    assert ProtectedToken("brand_name", "Sunrise Coffee") in draft.protected
    [request] = fake.requests
    assert request.path == "/v1/chat/completions"
    assert request.headers["Authorization"] == f"Bearer {KEY}"
    assert request.json["model"] == MODEL
    assert request.user_text == TEXT
    prompt = request.system_prompt
    assert "Spanish (es)" in prompt and "STOP stays STOP" in prompt
    for token in ("{{contact.first_name|there}}", LINK, "Sunrise Coffee", "STOP"):
        assert f"- {token}\n" in prompt


async def test_a_good_rewrite_passes_with_its_segments(fake: FakeOpenAI) -> None:
    shorter = (
        "Hi {{contact.first_name|there}}! Sunrise Coffee misses you: free latte till Sun. "
        f"Menu: {LINK}\nReply STOP to opt out."
    )
    fake.answer(Reply(content=shorter))
    chosen = rewriter_from(
        AssistantSettings(
            rewriter="openai",
            openai_base_url=fake.base_url,
            openai_model=MODEL,
            openai_api_key=KEY,
        )
    )
    draft = await rewrite_message(
        chosen, TEXT, [Goal.SHORTER, Goal.FIT_SEGMENTS], 1, brand_name="Sunrise Coffee"
    )
    assert draft.text == shorter and draft.fits and draft.segments == 1
    assert "fit within 1 SMS segment" in fake.requests[0].system_prompt


def _without_link(request: dict[str, Any]) -> str:
    return user_text(request).replace(f" See the new menu: {LINK}", "")


@pytest.mark.parametrize(
    ("answer", "token", "kind"),
    [
        pytest.param(_without_link, LINK, "link", id="drops the link"),
        pytest.param(
            lambda r: user_text(r).replace("|there}}", "|friend}}"),
            "{{contact.first_name|there}}",
            "placeholder",
            id="alters the placeholder's default",
        ),
        pytest.param(
            lambda r: user_text(r).replace("Reply STOP", "Responde PARAR"),
            "STOP",
            "opt_out",
            id="translates STOP",
        ),
        pytest.param(lambda r: user_text(r) + f" {LINK}", LINK, "link", id="duplicates the link"),
    ],
)
async def test_a_model_that_changes_a_protected_token_is_refused(
    fake: FakeOpenAI, answer: Any, token: str, kind: str
) -> None:
    fake.answer(Reply(content=answer))
    with pytest.raises(DraftRefused) as refused:
        await rewrite_message(provider(fake), TEXT, [Goal.FRIENDLIER], brand_name="Sunrise Coffee")
    assert refused.value.reason == "PROTECTED_TOKEN_CHANGED"
    assert refused.value.metadata == {"token": token, "kind": kind}
    assert repr(token) in refused.value.message


async def test_a_translation_that_translates_stop_is_refused(fake: FakeOpenAI) -> None:
    fake.answer(Reply(content=SPANISH.replace("Responde STOP", "Responde ALTO")))
    with pytest.raises(DraftRefused) as refused:
        await translate_message(provider(fake), TEXT, "es-MX", brand_name="Sunrise Coffee")
    assert refused.value.metadata == {"token": "STOP", "kind": "opt_out"}
    assert "changed or dropped the opt-out wording 'STOP'" in refused.value.message


async def test_a_model_that_adds_a_link_is_refused(fake: FakeOpenAI) -> None:
    fake.answer(Reply(content=SPANISH + " https://evil.example/win"))
    with pytest.raises(DraftRefused) as refused:
        await translate_message(provider(fake), TEXT, "es")
    assert refused.value.metadata == {"token": "https://evil.example/win", "kind": "link"}
    assert "added" in refused.value.message


async def test_quotes_a_model_puts_around_the_draft_are_dropped(fake: FakeOpenAI) -> None:
    fake.answer(Reply(content=f'"{SPANISH}"'))
    draft = await translate_message(provider(fake), TEXT, "es")
    assert draft.text == SPANISH


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (Reply(status=500), "answered HTTP 500: The server had an error"),
        (Reply(status=429), "answered HTTP 429"),
        (Reply(body="{not json"), "not a chat completion"),
        (Reply(body='{"choices": []}'), "not a chat completion"),
        (Reply(body='{"choices": [{"message": {"content": null}}]}'), "not a chat completion"),
        (Reply(content="   "), "answered an empty draft"),
    ],
)
async def test_a_failing_endpoint_is_unavailable(
    fake: FakeOpenAI, reply: Reply, expected: str
) -> None:
    fake.answer(reply)
    with pytest.raises(AssistantUnavailable) as unavailable:
        await translate_message(provider(fake), TEXT, "es")
    assert unavailable.value.reason == "ASSISTANT_UNAVAILABLE"
    assert expected in unavailable.value.message


async def test_a_slow_endpoint_times_out(fake: FakeOpenAI) -> None:
    fake.answer(Reply(delay=2.0))
    with pytest.raises(AssistantUnavailable) as unavailable:
        await translate_message(provider(fake, timeout=0.3), TEXT, "es")
    assert "did not answer within 0.3 s" in unavailable.value.message


async def test_a_wrong_key_is_unavailable_and_the_key_is_never_shown_or_logged(
    fake: FakeOpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "sk-wrong-secret-9999"
    with pytest.raises(AssistantUnavailable) as unavailable:
        await translate_message(provider(fake, key=wrong), TEXT, "es")
    assert "answered HTTP 401" in unavailable.value.message
    assert wrong not in unavailable.value.message
    assert wrong not in str(unavailable.value.metadata)
    assert wrong not in caplog.text
    assert wrong not in repr(provider(fake, key=wrong))
    assert wrong not in repr(AssistantSettings(openai_api_key=wrong))


async def test_an_unreachable_endpoint_is_unavailable() -> None:
    with FakeOpenAI() as closed:
        base_url = closed.base_url
    chosen = OpenAIChatProvider(base_url, MODEL, KEY, 2.0)
    with pytest.raises(AssistantUnavailable) as unavailable:
        await translate_message(chosen, TEXT, "es")
    assert "could not be reached" in unavailable.value.message


@pytest.mark.parametrize(
    ("base_url", "model", "missing"),
    [("", MODEL, "base URL"), ("http://127.0.0.1:9/v1", "", "model"), ("", "", "base URL")],
)
async def test_openai_not_configured_is_unavailable(
    base_url: str, model: str, missing: str
) -> None:
    chosen = rewriter_from(
        AssistantSettings(rewriter="openai", openai_base_url=base_url, openai_model=model)
    )
    with pytest.raises(AssistantUnavailable) as unavailable:
        await rewrite_message(chosen, TEXT, [Goal.SHORTER])
    assert "not configured" in unavailable.value.message and missing in unavailable.value.message
