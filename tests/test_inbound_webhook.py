# ruff: noqa: F811
"""The Twilio webhooks of the HTTP edge (compliance §2 and §3), over ASGI against a real
PostgreSQL: the signature check, signed requests only, bounded form bodies, database outages,
and the races the unique indexes absorb. Every test checks both what the edge answers and what
it recorded. (Inbound texts are in `test_inbound_webhook_texts`, status callbacks in
`test_inbound_webhook_status`.)
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlencode

import httpx
import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from server.app import open_pool
from server.carriers.twilio_webhooks import verify
from server.embedded import free_port
from server.http.edge import RequestRefused as WebhookRefused
from server.http.sms import INBOUND_PATH
from tenants.core.names import ChildName
from tests.inbound_support import (
    PUBLIC_URL,
    TOKEN,
    Edge,
    inbound_form,
    new_sid,
    rows,
    signature,
    sms_edge,
)
from tests.support import World
from tests.webhook_support import (
    STRANGER,
    VECTOR_PARAMS,
    VECTOR_SIGNATURE,
    VECTOR_TOKEN,
    VECTOR_URL,
    Repeated,
    at_once,
    callback,
    consent,
    contact,  # noqa: F401  (the fixture, requested by name)
    count,
    counts,
    edge,  # noqa: F401  (the fixture, requested by name)
    inbound_row,
    one_stop_effect,
    post_raw,
    signed_for,
    workflows,  # noqa: F401  (the fixture, requested by name)
)
from workflows.client import EnrollmentClient

# --- 1. the signature (compliance §3.15) ---------------------------------------------------


def test_the_compliance_test_vector_is_accepted() -> None:
    verify(VECTOR_TOKEN, VECTOR_URL, VECTOR_PARAMS, VECTOR_SIGNATURE)  # raises when refused
    assert signature(VECTOR_URL, VECTOR_PARAMS, VECTOR_TOKEN) == VECTOR_SIGNATURE


@pytest.mark.parametrize(
    ("token", "url", "params", "sig"),
    [
        pytest.param(VECTOR_TOKEN, VECTOR_URL, VECTOR_PARAMS, "1" + VECTOR_SIGNATURE[1:], id="sig"),
        pytest.param("12346", VECTOR_URL, VECTOR_PARAMS, VECTOR_SIGNATURE, id="token"),
        pytest.param(
            VECTOR_TOKEN,
            VECTOR_URL,
            {**VECTOR_PARAMS, "Digits": "1235"},
            VECTOR_SIGNATURE,
            id="param-value",
        ),
        pytest.param(
            VECTOR_TOKEN,
            VECTOR_URL,
            {**VECTOR_PARAMS, "Extra": ""},
            VECTOR_SIGNATURE,
            id="param-added",
        ),
        pytest.param(
            VECTOR_TOKEN,
            VECTOR_URL,
            {k: v for k, v in VECTOR_PARAMS.items() if k != "Caller"},
            VECTOR_SIGNATURE,
            id="param-removed",
        ),
        pytest.param(
            VECTOR_TOKEN,
            VECTOR_URL.replace("foo=1", "foo=2"),
            VECTOR_PARAMS,
            VECTOR_SIGNATURE,
            id="url-query",
        ),
        pytest.param(
            VECTOR_TOKEN,
            VECTOR_URL.replace("https", "http"),
            VECTOR_PARAMS,
            VECTOR_SIGNATURE,
            id="url-scheme",
        ),
        pytest.param(
            VECTOR_TOKEN,
            VECTOR_URL.split("?")[0],
            VECTOR_PARAMS,
            VECTOR_SIGNATURE,
            id="url-no-query",
        ),
        pytest.param(VECTOR_TOKEN, VECTOR_URL, VECTOR_PARAMS, "", id="no-signature"),
        pytest.param("", VECTOR_URL, VECTOR_PARAMS, VECTOR_SIGNATURE, id="no-token"),
    ],
)
def test_one_changed_character_param_or_url_is_refused(
    token: str, url: str, params: dict[str, str], sig: str
) -> None:
    with pytest.raises(WebhookRefused) as refused:
        verify(token, url, params, sig)
    assert refused.value.status == 403


# --- 2. signed requests only ---------------------------------------------------------------


async def test_a_bad_signature_is_refused_and_nothing_is_recorded(
    edge: Edge, pool: AsyncConnectionPool[Any], contact: ChildName
) -> None:
    before = await counts(pool)
    form = inbound_form("STOP")
    sig = signed_for(form)
    answer = await post_raw(edge, urlencode(form).encode(), sig=sig[:-2] + "x=")
    assert answer.status_code == 403
    assert await counts(pool) == before
    assert await consent(pool, contact) == ("granted", False)


@pytest.mark.parametrize(
    "sig",
    [
        pytest.param(None, id="missing"),
        pytest.param(signature(PUBLIC_URL + INBOUND_PATH, {}, TOKEN), id="over-no-fields"),
        pytest.param("not base64 at all", id="garbage"),
    ],
)
async def test_a_missing_or_meaningless_signature_is_refused(
    edge: Edge, pool: AsyncConnectionPool[Any], contact: ChildName, sig: str | None
) -> None:
    before = await counts(pool)
    answer = await post_raw(edge, urlencode(inbound_form("STOP")).encode(), sig=sig or "")
    assert answer.status_code == 403
    assert await counts(pool) == before


async def test_a_signature_made_with_another_token_is_refused(
    edge: Edge, pool: AsyncConnectionPool[Any], contact: ChildName
) -> None:
    before = await counts(pool)
    answer = await edge.post(INBOUND_PATH, inbound_form("STOP"), token="someone-elses-token")
    assert answer.status_code == 403
    assert await counts(pool) == before


@pytest.mark.parametrize(
    ("signed_url", "query"),
    [
        pytest.param(PUBLIC_URL.replace("https", "http") + INBOUND_PATH, "", id="http"),
        pytest.param("https://other.example" + INBOUND_PATH, "", id="other-host"),
        pytest.param(PUBLIC_URL + "/sms/twilio/status", "", id="other-path"),
        pytest.param(PUBLIC_URL + INBOUND_PATH, "tenant=acme", id="query-missing"),
        pytest.param(PUBLIC_URL + INBOUND_PATH + "?tenant=bravo", "tenant=acme", id="query-diff"),
        pytest.param("http://edge.internal" + INBOUND_PATH, "", id="internal-url"),
    ],
)
async def test_a_signature_over_another_url_is_refused(
    edge: Edge, pool: AsyncConnectionPool[Any], contact: ChildName, signed_url: str, query: str
) -> None:
    before = await counts(pool)
    form = inbound_form("STOP")
    answer = await edge.http.post(
        INBOUND_PATH + (f"?{query}" if query else ""),
        data=form,
        headers={"X-Twilio-Signature": signature(signed_url, form)},
    )
    assert answer.status_code == 403
    assert await counts(pool) == before


async def test_a_query_string_that_was_signed_is_accepted(
    edge: Edge, pool: AsyncConnectionPool[Any], contact: ChildName
) -> None:
    form = inbound_form("Thanks!")
    answer = await edge.post(INBOUND_PATH, form, query="tenant=acme&v=2")
    assert answer.status_code == 200
    assert (await inbound_row(pool, form["MessageSid"]))["classification"] == "reply"


async def test_an_unknown_field_in_the_signature_is_accepted_and_stored(
    edge: Edge, pool: AsyncConnectionPool[Any], contact: ChildName
) -> None:
    form = inbound_form("See you soon", FutureField="surprise", ApiVersion="2010-04-01")
    answer = await edge.inbound(form)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/xml")
    params = (await inbound_row(pool, form["MessageSid"]))["params"]
    assert params == form


async def test_an_unknown_field_left_out_of_the_signature_is_refused(
    edge: Edge, pool: AsyncConnectionPool[Any], contact: ChildName
) -> None:
    before = await counts(pool)
    form = inbound_form("See you soon")
    sig = signed_for(form)
    answer = await post_raw(edge, urlencode({**form, "FutureField": "x"}).encode(), sig=sig)
    assert answer.status_code == 403
    assert await counts(pool) == before


# --- 3. malformed requests -----------------------------------------------------------------


@pytest.mark.parametrize("field", ["MessageSid", "From", "To"])
@pytest.mark.parametrize("how", ["absent", "blank"])
async def test_a_signed_text_without_a_required_field_is_a_bad_request(
    edge: Edge, pool: AsyncConnectionPool[Any], contact: ChildName, field: str, how: str
) -> None:
    before = await counts(pool)
    form = inbound_form("STOP")
    if how == "absent":
        del form[field]
    else:
        form[field] = "  "
    answer = await edge.inbound(form)
    assert answer.status_code == 400
    assert field in answer.text
    assert await counts(pool) == before


async def test_a_body_over_32_kib_with_a_declared_length_is_too_large(
    edge: Edge, pool: AsyncConnectionPool[Any], contact: ChildName
) -> None:
    before = await counts(pool)
    form = inbound_form("x" * (33 * 1024))
    answer = await edge.inbound(form)  # httpx declares Content-Length
    assert answer.status_code == 413
    assert await counts(pool) == before


async def test_a_streamed_body_over_32_kib_without_a_length_is_too_large(
    edge: Edge, pool: AsyncConnectionPool[Any], contact: ChildName
) -> None:
    before = await counts(pool)
    form = inbound_form("y" * (40 * 1024))
    sig = signed_for(form)
    payload = urlencode(form).encode()

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: chunked
        for start in range(0, len(payload), 4096):
            yield payload[start : start + 4096]

    answer = await post_raw(edge, chunks(), sig=sig)
    assert answer.status_code == 413
    assert await counts(pool) == before


async def test_a_body_just_under_the_limit_is_accepted(
    edge: Edge, pool: AsyncConnectionPool[Any], contact: ChildName
) -> None:
    form = inbound_form("z" * (30 * 1024))
    answer = await edge.inbound(form)
    assert answer.status_code == 200
    [(body_length,)] = await rows(
        pool,
        "SELECT length(body) FROM inbound_messages WHERE carrier_message_id = %s",
        form["MessageSid"],
    )
    assert body_length == 1600  # one message at most; the full text stays in params


@pytest.mark.parametrize(
    "content_type", ["application/json", "text/plain", "multipart/form-data; boundary=x", ""]
)
async def test_a_body_that_is_not_a_form_is_unsupported(
    edge: Edge, pool: AsyncConnectionPool[Any], contact: ChildName, content_type: str
) -> None:
    before = await counts(pool)
    form = inbound_form("STOP")
    answer = await edge.http.post(
        INBOUND_PATH,
        content=httpx.Request("POST", "http://x", json=form).content,
        headers={"Content-Type": content_type, "X-Twilio-Signature": signed_for(form)},
    )
    assert answer.status_code == 415
    assert await counts(pool) == before


async def test_a_form_with_a_charset_parameter_is_accepted(
    edge: Edge, pool: AsyncConnectionPool[Any], contact: ChildName
) -> None:
    form = inbound_form("Thanks")
    answer = await post_raw(
        edge,
        urlencode(form).encode(),
        sig=signed_for(form),
        content_type="application/x-www-form-urlencoded; charset=UTF-8",
    )
    assert answer.status_code == 200
    assert await count(pool, "SELECT 1 FROM inbound_messages") == 1


async def test_a_field_repeated_twice_is_a_bad_request_even_when_signed(
    edge: Edge, pool: AsyncConnectionPool[Any], contact: ChildName
) -> None:
    before = await counts(pool)
    form = inbound_form("Thanks")
    pairs = [*form.items(), ("Body", "STOP")]
    sig = signed_for(Repeated(pairs))  # Twilio signs every value of a repeated field
    answer = await post_raw(edge, urlencode(pairs).encode(), sig=sig)
    assert answer.status_code == 400
    assert "Body" in answer.text
    assert await counts(pool) == before


async def test_a_body_that_is_not_utf8_is_a_bad_request(
    edge: Edge, pool: AsyncConnectionPool[Any], contact: ChildName
) -> None:
    before = await counts(pool)
    answer = await post_raw(edge, b"MessageSid=SM1&Body=\xff\xfe", sig="x")
    assert answer.status_code == 400
    assert await counts(pool) == before


async def test_a_get_is_not_allowed(edge: Edge, pool: AsyncConnectionPool[Any]) -> None:
    assert (await edge.http.get(INBOUND_PATH)).status_code == 405
    assert await count(pool, "SELECT 1 FROM inbound_messages") == 0


# --- 10. a database outage answers 503 -----------------------------------------------------


async def test_a_closed_pool_answers_503_and_the_retry_is_recorded_once(
    edge: Edge,
    pool: AsyncConnectionPool[Any],
    contact: ChildName,
    database_url: str,
    workflows: EnrollmentClient,
) -> None:
    broken_pool = open_pool(database_url)
    await broken_pool.open(wait=True)
    await broken_pool.close()
    form = inbound_form("STOP")
    before = await counts(pool)
    async with sms_edge(broken_pool, workflows) as broken:
        answer = await broken.inbound(form)
        status = await broken.status(callback(new_sid(), "delivered"))
    assert answer.status_code == 503
    assert status.status_code == 503
    assert await counts(pool) == before
    assert (await edge.inbound(form)).status_code == 200  # Twilio retries
    await edge.relay.drain()
    await one_stop_effect(pool, contact, form["MessageSid"])


async def test_a_database_on_a_wrong_port_answers_503(
    pool: AsyncConnectionPool[Any],
    contact: ChildName,
    database_url: str,
    workflows: EnrollmentClient,
) -> None:
    nowhere = psycopg.conninfo.make_conninfo(database_url, port=str(free_port()))
    unreachable: AsyncConnectionPool[Any] = AsyncConnectionPool(
        nowhere, min_size=1, open=False, timeout=1.0, kwargs={"autocommit": True}
    )
    await unreachable.open(wait=False)
    try:
        async with sms_edge(unreachable, workflows) as broken:
            answer = await broken.inbound(inbound_form("STOP"))
    finally:
        await unreachable.close()
    assert answer.status_code == 503
    assert await count(pool, "SELECT 1 FROM inbound_messages") == 0
    assert await consent(pool, contact) == ("granted", False)


async def test_a_connection_killed_by_the_server_answers_503(
    pool: AsyncConnectionPool[Any],
    contact: ChildName,
    database_url: str,
    workflows: EnrollmentClient,
) -> None:
    name = "edge-under-test"
    edge_pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
        database_url,
        min_size=1,
        max_size=1,
        open=False,
        kwargs={"autocommit": True, "application_name": name},
    )
    await edge_pool.open(wait=True)
    try:
        killed = await rows(
            pool,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
            name,
        )
        assert killed == [(True,)]
        async with sms_edge(edge_pool, workflows) as broken:
            answer = await broken.inbound(inbound_form("STOP"))
    finally:
        await edge_pool.close()
    assert answer.status_code == 503
    assert await count(pool, "SELECT 1 FROM inbound_messages") == 0
    assert await consent(pool, contact) == ("granted", False)


# --- races the unique indexes must absorb --------------------------------------------------


async def test_two_stops_from_one_stranger_at_once_are_both_recorded(
    edge: Edge, pool: AsyncConnectionPool[Any], world: World
) -> None:
    forms = [inbound_form("STOP", sender=STRANGER), inbound_form("Stop.", sender=STRANGER)]
    answers = await at_once(pool, "contacts", [edge.inbound(f) for f in forms])
    assert [a.status_code for a in answers] == [200, 200]
    assert await count(pool, "SELECT 1 FROM inbound_messages") == 2
    assert await count(pool, "SELECT 1 FROM contacts") == 1


async def test_a_nul_character_in_a_field_is_refused_and_nothing_is_recorded(
    edge: Edge, pool: AsyncConnectionPool[Any], contact: ChildName
) -> None:
    before = await counts(pool)
    answer = await edge.inbound(inbound_form("hello\x00there"))
    assert answer.status_code == 400
    assert "NUL" in answer.text
    assert await counts(pool) == before
