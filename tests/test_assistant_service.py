"""reengage.v1.AssistantService over the real gRPC server: drafts from the rules rewriter, the
openai translator (against a local fake that speaks the chat-completions wire format) and a
missing apertium; refused drafts; bad input; who may ask for a draft and who may not."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import grpc
import pytest
from psycopg_pool import AsyncConnectionPool

from reengage.v1 import assistant_pb2 as pb
from reengage.v1 import assistant_pb2_grpc
from server.config import Settings
from server.platform import build_platform
from tenants.assistant.drafts import AssistantSettings
from tests.fake_openai import FakeOpenAI, Reply
from tests.support import World, failure, platform_settings

DOWNTOWN = "franchisors/acme/locations/downtown"
UPTOWN = "franchisors/acme/locations/uptown"
ACME = "franchisors/acme"
BRAVO = "franchisors/bravo"
HARBOR = "franchisors/bravo/locations/harbor"
KEY = "sk-test-assistant"
OFFER = (
    "Hi {{contact.first_name|there}}! We really miss you at Acme Coffee \u2014 come back this week"
    " and just grab 20% off your next latte: {{link:https://acme.example/menu}}. Reply STOP to"
    " opt out"
)
# the model's answer: the opt-out wording reached it as one placeholder, kept where it was
OFFER_ES_ANSWER = (
    "\u00a1Hola {{contact.first_name|there}}! Te extra\u00f1amos en Acme Coffee: vuelve esta"
    " semana y llevate un 20% de descuento en tu pr\u00f3ximo latte:"
    " {{link:https://acme.example/menu}}. {{opt_out}}"
)
# the draft: the standard Spanish opt-out line in the placeholder's place
OFFER_ES = OFFER_ES_ANSWER.replace("{{opt_out}}", "Responde STOP para cancelar")


def stub(channel: grpc.aio.Channel) -> assistant_pb2_grpc.AssistantServiceStub:
    return assistant_pb2_grpc.AssistantServiceStub(channel)


@asynccontextmanager
async def assistant_with(
    pool: AsyncConnectionPool[Any], **settings: Any
) -> AsyncIterator[assistant_pb2_grpc.AssistantServiceStub]:
    """The real gRPC server built by the composition root with these settings."""
    platform = build_platform(platform_settings(**settings), pool, None)
    async with (
        platform.serving_grpc() as target,
        grpc.aio.insecure_channel(target) as channel,
    ):
        yield stub(channel)


@pytest.fixture
def fake_openai() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(api_key=KEY) as fake:
        yield fake


def openai_settings(fake: FakeOpenAI) -> dict[str, Any]:
    return {
        "assistant_rewriter": "openai",
        "assistant_translator": "openai",
        "openai_base_url": fake.base_url,
        "openai_model": "test-model",
        "openai_api_key": KEY,
    }


async def count_templates(pool: AsyncConnectionPool[Any]) -> int:
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT count(*) FROM templates")
        row = await cur.fetchone()
    assert row is not None
    return int(row[0])


# -- drafts ---------------------------------------------------------------------------------


async def test_a_rules_rewrite_is_a_draft_with_its_segments_encoding_and_protected_tokens(
    channel: grpc.aio.Channel, world: World, pool: AsyncConnectionPool[Any]
) -> None:
    templates_before = await count_templates(pool)
    draft = await stub(channel).RewriteMessage(
        pb.RewriteMessageRequest(
            parent=DOWNTOWN,
            text=OFFER,
            goals=[pb.REWRITE_GOAL_GSM7_ONLY, pb.REWRITE_GOAL_FIT_SEGMENTS],
            max_segments=2,
        ),
        metadata=world.metadata("a_downtown_staff"),
    )
    assert draft.provider == "rules"
    assert draft.encoding == "GSM-7" and "\u2014" not in draft.text  # the dash went GSM-7
    assert 1 <= draft.segments <= 2 and draft.fits
    kept = {(t.kind, t.text) for t in draft.protected_tokens}
    assert {
        ("placeholder", "{{contact.first_name|there}}"),
        ("link", "{{link:https://acme.example/menu}}"),
        ("brand_name", "Acme Coffee"),
    } <= kept
    assert any(kind == "opt_out" and "STOP" in text for kind, text in kept)
    assert all(t.text in draft.text for t in draft.protected_tokens)
    # a draft is only an answer: nothing written
    assert await count_templates(pool) == templates_before


async def test_a_budget_the_protected_tokens_alone_exceed_is_answered_as_not_fitting(
    channel: grpc.aio.Channel, world: World
) -> None:
    long_link = "{{link:https://acme.example/" + "x" * 170 + "}}"
    draft = await stub(channel).RewriteMessage(
        pb.RewriteMessageRequest(
            parent=ACME,
            text=f"Acme Coffee misses you: {long_link} Reply STOP to opt out",
            goals=[pb.REWRITE_GOAL_FIT_SEGMENTS],
            max_segments=1,
        ),
        metadata=world.metadata("a_admin"),
    )
    assert not draft.fits and draft.segments > 1
    assert any("protected token" in note for note in draft.notes)
    assert long_link in draft.text


async def test_an_openai_translation_is_a_draft_with_the_tokens_kept(
    pool: AsyncConnectionPool[Any], world: World, fake_openai: FakeOpenAI
) -> None:
    fake_openai.answer(Reply(content=OFFER_ES_ANSWER))
    async with assistant_with(pool, **openai_settings(fake_openai)) as assistant:
        draft = await assistant.TranslateMessage(
            pb.TranslateMessageRequest(parent=DOWNTOWN, text=OFFER, target_language="es"),
            metadata=world.metadata("a_downtown_manager"),
        )
    assert draft.text == OFFER_ES and draft.provider == "openai"
    assert draft.encoding == "UCS-2"  # ¡ is not GSM-7
    kinds = {t.kind for t in draft.protected_tokens}
    assert kinds == {"placeholder", "link", "brand_name", "opt_out"}
    (request,) = fake_openai.requests
    assert request.json["model"] == "test-model"
    assert request.headers["Authorization"] == f"Bearer {KEY}"
    assert request.user_text == OFFER.replace("Reply STOP to opt out", "{{opt_out}}")


@pytest.mark.parametrize(
    ("answer", "token"),
    [
        pytest.param(
            OFFER_ES_ANSWER.replace(" {{link:https://acme.example/menu}}", ""), "link", id="link"
        ),
        pytest.param(
            OFFER_ES_ANSWER.replace("{{contact.first_name|there}}", "{{contact.first_name|amigo}}"),
            "placeholder",
            id="placeholder",
        ),
        pytest.param(OFFER_ES, "opt_out", id="its own opt-out wording"),
        pytest.param(
            OFFER_ES_ANSWER.replace("{{opt_out}}", "Responde ALTO para cancelar"),
            "opt_out",
            id="stop",
        ),
        pytest.param(OFFER_ES_ANSWER.replace("Acme Coffee", "Café Acme"), "brand_name", id="brand"),
    ],
)
async def test_a_translation_that_changed_a_protected_token_is_refused_with_the_reason(
    pool: AsyncConnectionPool[Any],
    world: World,
    fake_openai: FakeOpenAI,
    answer: str,
    token: str,
) -> None:
    fake_openai.answer(Reply(content=answer))
    async with assistant_with(pool, **openai_settings(fake_openai)) as assistant:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await assistant.TranslateMessage(
                pb.TranslateMessageRequest(parent=DOWNTOWN, text=OFFER, target_language="es"),
                metadata=world.metadata("a_admin"),
            )
    refused = failure(raised.value)
    assert refused.code == grpc.StatusCode.FAILED_PRECONDITION
    assert refused.error_info is not None
    assert refused.error_info.reason == "PROTECTED_TOKEN_CHANGED"
    assert refused.error_info.metadata["kind"] == token
    assert refused.error_info.metadata["token"]


async def test_a_missing_apertium_is_failed_precondition_naming_the_package(
    pool: AsyncConnectionPool[Any], world: World
) -> None:
    async with assistant_with(pool, apertium_command="/nonexistent/bin/apertium") as assistant:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await assistant.TranslateMessage(
                pb.TranslateMessageRequest(parent=ACME, text=OFFER, target_language="es"),
                metadata=world.metadata("a_admin"),
            )
    missing = failure(raised.value)
    assert missing.code == grpc.StatusCode.FAILED_PRECONDITION
    assert missing.error_info is not None and missing.error_info.reason == "ASSISTANT_UNAVAILABLE"
    assert "apertium-eng-spa" in missing.message


def test_the_settings_choose_the_providers_and_keep_the_key_out_of_repr() -> None:
    settings = Settings.from_env(
        {
            "REENGAGE_ASSISTANT_REWRITER": "openai",
            "REENGAGE_ASSISTANT_TRANSLATOR": "apertium",
            "REENGAGE_OPENAI_BASE_URL": "https://llm.internal/v1",
            "REENGAGE_OPENAI_MODEL": "small",
            "REENGAGE_OPENAI_API_KEY": KEY,
            "REENGAGE_APERTIUM_COMMAND": "/usr/bin/apertium",
            "REENGAGE_ASSISTANT_TIMEOUT_SECONDS": "4.5",
        }
    )
    assert settings.assistant == AssistantSettings(
        rewriter="openai",
        translator="apertium",
        openai_base_url="https://llm.internal/v1",
        openai_model="small",
        openai_api_key=KEY,
        apertium_command="/usr/bin/apertium",
        timeout_seconds=4.5,
    )
    assert KEY not in repr(settings) and KEY not in repr(settings.assistant)
    assert Settings.from_env({}).assistant == AssistantSettings()  # rules and apertium


@pytest.mark.parametrize(
    "env",
    [
        {"REENGAGE_ASSISTANT_REWRITER": "gpt"},
        {"REENGAGE_ASSISTANT_TRANSLATOR": "rules"},
        {"REENGAGE_ASSISTANT_TRANSLATOR": "openai", "REENGAGE_OPENAI_MODEL": "small"},
        {"REENGAGE_ASSISTANT_TIMEOUT_SECONDS": "0"},
        {"REENGAGE_ASSISTANT_TIMEOUT_SECONDS": "soon"},
    ],
)
def test_settings_the_assistant_cannot_work_with_stop_the_process(env: dict[str, str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        Settings.from_env(env)
    assert next(iter(env)) in str(stopped.value) or "REENGAGE_OPENAI_BASE_URL" in str(stopped.value)


# -- bad input --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("request_", "fields"),
    [
        pytest.param(
            pb.RewriteMessageRequest(parent="acme", text=OFFER, goals=[pb.REWRITE_GOAL_SHORTER]),
            {"parent"},
            id="parent-not-a-name",
        ),
        pytest.param(
            pb.RewriteMessageRequest(parent=DOWNTOWN, text=OFFER),
            {"goals"},
            id="no-goal",
        ),
        pytest.param(
            pb.RewriteMessageRequest(
                parent=DOWNTOWN, text=OFFER, goals=[pb.REWRITE_GOAL_UNSPECIFIED]
            ),
            {"goals[0]"},
            id="unspecified-goal",
        ),
        pytest.param(
            pb.RewriteMessageRequest(
                parent=DOWNTOWN, text="  ", goals=[pb.REWRITE_GOAL_SHORTER], max_segments=-1
            ),
            {"text", "max_segments"},
            id="empty-text-negative-budget",
        ),
        pytest.param(
            pb.RewriteMessageRequest(
                parent=DOWNTOWN, text=OFFER, goals=[pb.REWRITE_GOAL_FIT_SEGMENTS], max_segments=0
            ),
            {"max_segments"},
            id="fit-without-budget",
        ),
        pytest.param(
            pb.RewriteMessageRequest(
                parent=DOWNTOWN, text="x" * 1601, goals=[pb.REWRITE_GOAL_SHORTER], max_segments=11
            ),
            {"text", "max_segments"},
            id="too-long-too-many",
        ),
        pytest.param(
            pb.TranslateMessageRequest(parent=DOWNTOWN, text=OFFER, target_language="spanish"),
            {"target_language"},
            id="not-a-language",
        ),
        pytest.param(
            pb.TranslateMessageRequest(parent=DOWNTOWN, text=OFFER),
            {"target_language"},
            id="no-language",
        ),
        pytest.param(
            pb.TranslateMessageRequest(parent=DOWNTOWN, text="", target_language="es_MX"),
            {"text", "target_language"},
            id="empty-text-bad-language",
        ),
        pytest.param(
            pb.TranslateMessageRequest(parent=DOWNTOWN, text=OFFER, target_language="en-US"),
            {"target_language"},
            id="same-language",
        ),
    ],
)
async def test_bad_input_is_invalid_argument_naming_each_field(
    channel: grpc.aio.Channel, world: World, request_: Any, fields: set[str]
) -> None:
    assistant = stub(channel)
    call = (
        assistant.RewriteMessage
        if isinstance(request_, pb.RewriteMessageRequest)
        else assistant.TranslateMessage
    )
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call(request_, metadata=world.metadata("a_admin"))
    bad = failure(raised.value)
    assert bad.code == grpc.StatusCode.INVALID_ARGUMENT, bad.message
    assert set(bad.violations) == fields, bad.violations


# -- who may ask ------------------------------------------------------------------------------

OK = grpc.StatusCode.OK
PD = grpc.StatusCode.PERMISSION_DENIED
NF = grpc.StatusCode.NOT_FOUND
UA = grpc.StatusCode.UNAUTHENTICATED
NOPE = "franchisors/acme/locations/nope"
BRAVO_NOPE = "franchisors/bravo/locations/nope"
PARENTS = (ACME, DOWNTOWN, UPTOWN, NOPE, BRAVO, HARBOR, BRAVO_NOPE)
# who -> the code for each parent, in PARENTS order
MAY_ASK: dict[str, tuple[grpc.StatusCode, ...]] = {
    "operator": (OK, OK, OK, NF, OK, OK, NF),
    "a_admin": (OK, OK, OK, NF, PD, PD, PD),
    "a_viewer": (PD, PD, PD, PD, PD, PD, PD),
    "a_downtown_manager": (PD, OK, PD, PD, PD, PD, PD),
    "a_downtown_staff": (PD, OK, PD, PD, PD, PD, PD),
    "b_admin": (PD, PD, PD, PD, OK, OK, NF),
    "b_harbor_manager": (PD, PD, PD, PD, PD, OK, PD),
    "none": (UA,) * len(PARENTS),
    "revoked": (UA,) * len(PARENTS),
    "malformed": (UA,) * len(PARENTS),
}


@pytest.mark.parametrize("who", list(MAY_ASK))
async def test_who_may_ask_for_a_draft_where(
    channel: grpc.aio.Channel, world: World, who: str
) -> None:
    """Franchisor admins at their brand, location managers and staff at their own location;
    never a viewer, another brand, or a sibling location; a parent that does not exist is
    NOT_FOUND only to those who could ask there (no existence oracle)."""
    assistant = stub(channel)
    answers = []
    for parent in PARENTS:
        try:
            await assistant.RewriteMessage(
                pb.RewriteMessageRequest(
                    parent=parent, text=OFFER, goals=[pb.REWRITE_GOAL_GSM7_ONLY]
                ),
                metadata=world.metadata(who),
            )
            answers.append(OK)
        except grpc.aio.AioRpcError as error:
            refused = failure(error)
            assert refused.error_info is not None and refused.error_info.domain == "reengage.dev"
            answers.append(refused.code)
    assert dict(zip(PARENTS, answers, strict=True)) == dict(zip(PARENTS, MAY_ASK[who], strict=True))


@pytest.mark.parametrize(("who", "parent"), [("a_viewer", ACME), ("b_admin", DOWNTOWN)])
async def test_a_viewer_or_another_brand_may_not_ask_for_a_translation(
    pool: AsyncConnectionPool[Any], world: World, fake_openai: FakeOpenAI, who: str, parent: str
) -> None:
    fake_openai.answer(Reply(content=OFFER_ES))
    async with assistant_with(pool, **openai_settings(fake_openai)) as assistant:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await assistant.TranslateMessage(
                pb.TranslateMessageRequest(parent=parent, text=OFFER, target_language="es"),
                metadata=world.metadata(who),
            )
    refused = failure(raised.value)
    assert refused.code == grpc.StatusCode.PERMISSION_DENIED
    assert refused.error_info is not None
    assert refused.error_info.metadata["action"] == "assistant.draft"
    assert fake_openai.requests == []  # refused before any provider was asked
