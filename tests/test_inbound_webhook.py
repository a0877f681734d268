"""The Twilio webhooks of the HTTP edge (COMPLIANCE §2 and §3), over ASGI against a real
PostgreSQL: the signature check, bounded form bodies, idempotent inbound texts, routing, the
keywords (STOP, HELP, START, YES), opt-out phrasing, delivery status callbacks and database
outages. Every test checks both what the edge answers and what it recorded."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Sequence
from typing import Any
from urllib.parse import urlencode

import httpx
import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool
from temporalio.testing import WorkflowEnvironment

from server.app import open_pool
from server.carriers.twilio_webhooks import verify
from server.embedded import free_port
from server.http.edge import RequestRefused as WebhookRefused
from server.http.sms import INBOUND_PATH, STATUS_PATH
from tenants.core.names import ChildName
from tests.enrollment_support import consenting_contact
from tests.inbound_support import (
    ACCOUNT,
    DOWNTOWN_NUMBER,
    PUBLIC_URL,
    TOKEN,
    Edge,
    inbound_form,
    new_sid,
    rows,
    signature,
    sms_edge,
)
from tests.support import B_HARBOR, World
from workflows.client import EnrollmentClient

CONTACT_PHONE = "+12125550142"  # consenting_contact's default number
STRANGER = "+12125550199"  # nobody's contact
UNKNOWN_NUMBER = "+14155550100"  # no location sends from it
HARBOR_NUMBER = "+13125550103"  # bravo/harbor
INBOUND_COLUMNS = (
    "classification",
    "keyword",
    "review_reason",
    "franchisor_id",
    "location_id",
    "contact_id",
    "message_id",
    "params",
)
RECORDS = ("inbound_messages", "messages", "consent_events", "followups", "contacts")

# COMPLIANCE §3.15
VECTOR_TOKEN = "12345"
VECTOR_URL = "https://mycompany.com/myapp.php?foo=1&bar=2"
VECTOR_PARAMS = {
    "CallSid": "CA1234567890ABCDE",
    "Caller": "+12349013030",
    "Digits": "1234",
    "From": "+12349013030",
    "To": "+18005551212",
}
VECTOR_SIGNATURE = "0/KCTR6DLpKmkAf8muzZqo1nDgQ="


# --- helpers -------------------------------------------------------------------------------


@pytest.fixture
def workflows(time_skipping_env: WorkflowEnvironment) -> EnrollmentClient:
    """No enrollment runs in these tests, so no signal is ever sent through it."""
    return EnrollmentClient(time_skipping_env.client, "unused-queue")


@pytest.fixture
async def edge(
    pool: AsyncConnectionPool[Any], world: World, workflows: EnrollmentClient
) -> AsyncIterator[Edge]:
    async with sms_edge(pool, workflows) as e:
        yield e


@pytest.fixture
async def contact(pool: AsyncConnectionPool[Any], world: World) -> ChildName:
    """Dana at acme/downtown, with written consent."""
    return await consenting_contact(pool)


async def counts(pool: AsyncConnectionPool[Any]) -> dict[str, int]:
    found = {}
    for table in RECORDS:
        [(n,)] = await rows(pool, f"SELECT count(*) FROM {table}")
        found[table] = n
    return found


async def count(pool: AsyncConnectionPool[Any], sql: str, *params: Any) -> int:
    [(n,)] = await rows(pool, f"SELECT count(*) FROM ({sql}) AS q", *params)
    return int(n)


async def consent(pool: AsyncConnectionPool[Any], name: ChildName) -> tuple[str, bool]:
    """(consent_state, suppressed) of a contact."""
    [(state, suppressed)] = await rows(
        pool,
        "SELECT consent_state, opted_out_at IS NOT NULL FROM contacts"
        " WHERE franchisor_id = %s AND location_id = %s AND id = %s",
        name.scope.franchisor_id,
        name.scope.location_id,
        name.id,
    )
    return state, suppressed


async def consent_events(pool: AsyncConnectionPool[Any]) -> list[tuple[str, str]]:
    """(kind, channel) of every consent event, oldest first."""
    return [
        (kind, channel)
        for kind, channel in await rows(
            pool, "SELECT kind, channel FROM consent_events ORDER BY occurred_at, id"
        )
    ]


async def service_texts(pool: AsyncConnectionPool[Any]) -> list[tuple[str, str, str]]:
    """(event_id, body, outcome) of every owed service text."""
    return [
        (event, body, outcome)
        for event, body, outcome in await rows(
            pool, "SELECT event_id, body, outcome FROM followups WHERE kind = 'service_text'"
        )
    ]


async def inbound_row(pool: AsyncConnectionPool[Any], sid: str) -> dict[str, Any]:
    [row] = await rows(
        pool,
        f"SELECT {', '.join(INBOUND_COLUMNS)} FROM inbound_messages WHERE carrier_message_id = %s",
        sid,
    )
    return dict(zip(INBOUND_COLUMNS, row, strict=True))


async def post_raw(
    edge: Edge,
    content: bytes | AsyncIterator[bytes],
    *,
    sig: str = "",
    content_type: str = "application/x-www-form-urlencoded",
    path: str = INBOUND_PATH,
) -> httpx.Response:
    headers = {"Content-Type": content_type}
    if sig:
        headers["X-Twilio-Signature"] = sig
    return await edge.http.post(path, content=content, headers=headers)


class Repeated(dict[str, str]):
    """Form pairs with repeated names, as the twilio validator reads a MultiDict."""

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        super().__init__(pairs)
        self.pairs = pairs

    def getall(self, name: str) -> list[str]:
        return [v for k, v in self.pairs if k == name]


def signed_for(form: dict[str, Any], path: str = INBOUND_PATH, query: str = "") -> str:
    return signature(PUBLIC_URL + path + (f"?{query}" if query else ""), form)


async def outbound(
    pool: AsyncConnectionPool[Any],
    name: ChildName,
    sid: str | None,
    status: str = "sent",
    phone: str = CONTACT_PHONE,
) -> int:
    """An outbound ledger row, as if a step had been sent through Twilio."""
    [(message_id,)] = await rows(
        pool,
        "INSERT INTO messages (franchisor_id, location_id, contact_id, direction, body, encoding,"
        " segments, carrier, carrier_message_id, status, from_number, to_number)"
        " VALUES (%s, %s, %s, 'outbound', 'Hi Dana, we miss you! Reply STOP to opt out',"
        " 'GSM-7', 1, 'twilio', %s, %s, %s, %s) RETURNING id",
        name.scope.franchisor_id,
        name.scope.location_id,
        name.id,
        sid,
        status,
        DOWNTOWN_NUMBER,
        phone,
    )
    return int(message_id)


async def ledger(pool: AsyncConnectionPool[Any], message_id: int) -> tuple[Any, ...]:
    """(status, error_code, carrier_message_id, status_time) of a ledger row."""
    [row] = await rows(
        pool,
        "SELECT status, error_code, carrier_message_id, status_time FROM messages WHERE id = %s",
        message_id,
    )
    return row


async def at_once(
    pool: AsyncConnectionPool[Any], table: str, requests: Sequence[Awaitable[httpx.Response]]
) -> list[httpx.Response]:
    """Runs requests so that all of them reach their first write to table before any of them
    gets past it (a SHARE lock holds them; it is released once every one waits on it)."""
    async with pool.connection() as conn:
        async with conn.transaction():
            await conn.execute(f"LOCK TABLE {table} IN SHARE MODE")
            tasks = [asyncio.ensure_future(r) for r in requests]
            for _ in range(500):
                waiting = await count(
                    pool,
                    "SELECT 1 FROM pg_locks l JOIN pg_class c ON c.oid = l.relation"
                    " WHERE NOT l.granted AND c.relname = %s",
                    table,
                )
                if waiting == len(tasks):
                    break
                await asyncio.sleep(0.01)
            else:
                raise AssertionError(f"the requests never all waited on {table}")
    answers = await asyncio.gather(*tasks, return_exceptions=True)  # none left running
    for answer in answers:
        if isinstance(answer, BaseException):
            raise answer
    return [a for a in answers if isinstance(a, httpx.Response)]


def callback(sid: str, status: str | None, error_code: str = "") -> dict[str, str]:
    form = {"MessageSid": sid, "AccountSid": ACCOUNT, "To": CONTACT_PHONE}
    if status is not None:
        form["MessageStatus"] = status
    if error_code:
        form["ErrorCode"] = error_code
    return form


# --- 1. the signature (COMPLIANCE §3.15) ---------------------------------------------------


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


# --- 4. a repeated webhook has one effect --------------------------------------------------


async def _one_stop_effect(pool: AsyncConnectionPool[Any], contact: ChildName, sid: str) -> None:
    assert await count(pool, "SELECT 1 FROM inbound_messages") == 1
    assert await count(pool, "SELECT 1 FROM messages WHERE direction = 'inbound'") == 1
    assert await consent_events(pool) == [("grant", "paper_form"), ("revoke", "sms_reply")]
    assert [event for event, _, _ in await service_texts(pool)] == [f"opt_out:{sid}"]
    assert await count(pool, "SELECT 1 FROM outbox_deliveries") == 1
    assert await consent(pool, contact) == ("revoked", True)


async def test_the_same_stop_delivered_twice_has_one_effect(
    edge: Edge, pool: AsyncConnectionPool[Any], contact: ChildName
) -> None:
    form = inbound_form("STOP")
    first = await edge.inbound(form)
    again = await edge.inbound(form)
    assert (first.status_code, again.status_code) == (200, 200)
    assert again.text == first.text
    await edge.relay.drain()
    await _one_stop_effect(pool, contact, form["MessageSid"])


async def test_the_same_stop_delivered_five_times_at_once_has_one_effect(
    edge: Edge, pool: AsyncConnectionPool[Any], contact: ChildName
) -> None:
    form = inbound_form("STOP")
    answers = await at_once(pool, "inbound_messages", [edge.inbound(form) for _ in range(5)])
    assert [a.status_code for a in answers] == [200] * 5
    await edge.relay.drain()
    await _one_stop_effect(pool, contact, form["MessageSid"])


async def test_two_different_stops_at_once_confirm_once(
    edge: Edge, pool: AsyncConnectionPool[Any], contact: ChildName
) -> None:
    texts = [edge.inbound(inbound_form("STOP")), edge.inbound(inbound_form("stop"))]
    answers = await at_once(pool, "inbound_messages", texts)
    assert [a.status_code for a in answers] == [200, 200]
    await edge.relay.drain()
    assert await count(pool, "SELECT 1 FROM inbound_messages") == 2
    assert await count(pool, "SELECT 1 FROM consent_events WHERE kind = 'revoke'") == 2
    assert len(await service_texts(pool)) == 1
    assert await count(pool, "SELECT 1 FROM outbox_deliveries") == 1


# --- 5. routing ----------------------------------------------------------------------------


async def test_a_text_to_an_unknown_number_is_recorded_unrouted(
    edge: Edge, pool: AsyncConnectionPool[Any], contact: ChildName
) -> None:
    form = inbound_form("STOP", to=UNKNOWN_NUMBER)
    answer = await edge.inbound(form)
    assert answer.status_code == 200
    row = await inbound_row(pool, form["MessageSid"])
    assert row["classification"] == "unrouted"
    assert row["review_reason"]
    assert (row["franchisor_id"], row["location_id"], row["contact_id"]) == (None, None, None)
    assert await count(pool, "SELECT 1 FROM messages") == 0
    assert await count(pool, "SELECT 1 FROM followups") == 0
    assert await consent(pool, contact) == ("granted", False)  # not the same location's number


async def test_an_ordinary_text_from_an_unknown_sender_is_recorded_without_a_contact(
    edge: Edge, pool: AsyncConnectionPool[Any], contact: ChildName
) -> None:
    before = await counts(pool)
    form = inbound_form("Is the shop open on Sunday?", sender=STRANGER)
    answer = await edge.inbound(form)
    assert answer.status_code == 200
    row = await inbound_row(pool, form["MessageSid"])
    assert (row["classification"], row["contact_id"], row["message_id"]) == ("reply", None, None)
    assert (row["franchisor_id"], row["location_id"]) == ("acme", "downtown")  # routed
    assert await counts(pool) == {**before, "inbound_messages": 1}


async def test_an_unknown_sender_who_texts_stop_becomes_a_suppressed_contact(
    edge: Edge, pool: AsyncConnectionPool[Any], world: World
) -> None:
    form = inbound_form("Stop", sender=STRANGER)
    answer = await edge.inbound(form)
    assert answer.status_code == 200
    [(f, loc, cid, phone, state, suppressed, first_name)] = await rows(
        pool,
        "SELECT franchisor_id, location_id, id, phone_e164, consent_state,"
        " opted_out_at IS NOT NULL, first_name FROM contacts",
    )
    assert (f, loc, phone, state, suppressed, first_name) == (
        "acme",
        "downtown",
        STRANGER,
        "revoked",
        True,
        "",
    )
    row = await inbound_row(pool, form["MessageSid"])
    assert (row["classification"], row["contact_id"]) == ("opt_out", cid)
    assert await consent_events(pool) == [("revoke", "sms_reply")]


async def test_a_text_to_another_franchisors_number_is_routed_there(
    edge: Edge, pool: AsyncConnectionPool[Any], contact: ChildName
) -> None:
    harbor = await consenting_contact(pool, location=B_HARBOR)  # the same phone, at bravo
    form = inbound_form("STOP", to=HARBOR_NUMBER)
    answer = await edge.inbound(form)
    assert answer.status_code == 200
    row = await inbound_row(pool, form["MessageSid"])
    assert (row["franchisor_id"], row["location_id"], row["contact_id"]) == (
        "bravo",
        "harbor",
        harbor.id,
    )
    assert await consent(pool, harbor) == ("revoked", True)
    assert await consent(pool, contact) == ("granted", False)
    await edge.relay.drain()
    [(_, body, outcome)] = await service_texts(pool)
    assert "Bravo Fitness" in body and "Acme" not in body and outcome == "delivered"
    [(sender,)] = await rows(pool, "SELECT from_number FROM outbox_deliveries")
    assert sender == HARBOR_NUMBER


async def test_a_to_number_in_national_format_is_routed(
    edge: Edge, pool: AsyncConnectionPool[Any], contact: ChildName
) -> None:
    form = inbound_form("STOP", to="(212) 555-0101")
    assert (await edge.inbound(form)).status_code == 200
    assert (await inbound_row(pool, form["MessageSid"]))["contact_id"] == contact.id
    assert await consent(pool, contact) == ("revoked", True)


# --- 6. HELP -------------------------------------------------------------------------------


async def test_help_answers_with_the_program_rates_and_how_to_stop(
    edge: Edge, pool: AsyncConnectionPool[Any], contact: ChildName
) -> None:
    form = inbound_form("help")
    answer = await edge.inbound(form)
    assert answer.status_code == 200
    [(event, body, _)] = await service_texts(pool)
    assert event == f"help:{form['MessageSid']}"
    assert "Downtown" in body and "Acme Coffee" in body
    assert "Msg & data rates may apply" in body and "STOP" in body
    assert await consent(pool, contact) == ("granted", False)
    assert await consent_events(pool) == [("grant", "paper_form")]
    await edge.relay.drain()
    [(_, _, outcome)] = await service_texts(pool)
    assert outcome == "delivered"
    [(delivered, sender, recipient)] = await rows(
        pool, "SELECT body, from_number, to_number FROM outbox_deliveries"
    )
    assert (delivered, sender, recipient) == (body, DOWNTOWN_NUMBER, CONTACT_PHONE)
    [(enrollment, status)] = await rows(
        pool, "SELECT enrollment_id, status FROM messages WHERE direction = 'outbound'"
    )
    assert (enrollment, status) == (None, "sent")
    assert (await inbound_row(pool, form["MessageSid"]))["classification"] == "help"


async def test_help_already_answered_by_the_carrier_is_not_answered_again(
    edge: Edge, pool: AsyncConnectionPool[Any], contact: ChildName
) -> None:
    form = inbound_form("HELP", OptOutType="HELP")
    assert (await edge.inbound(form)).status_code == 200
    await edge.relay.drain()
    assert await service_texts(pool) == []
    assert (await inbound_row(pool, form["MessageSid"]))["classification"] == "help"


# --- 7. STOP, START, YES -------------------------------------------------------------------


async def test_stop_revokes_and_owes_one_confirmation_without_marketing(
    edge: Edge, pool: AsyncConnectionPool[Any], contact: ChildName
) -> None:
    form = inbound_form("  Stop!! ")
    assert (await edge.inbound(form)).status_code == 200
    assert await consent(pool, contact) == ("revoked", True)
    [(_, body, _)] = await service_texts(pool)
    assert "unsubscribed" in body and "http" not in body and "%" not in body
    [(expires_in,)] = await rows(
        pool,
        "SELECT extract(epoch FROM expires_at - create_time) FROM followups"
        " WHERE kind = 'service_text'",
    )
    assert 0 < expires_in <= 300  # within 5 minutes
    row = await inbound_row(pool, form["MessageSid"])
    assert (row["classification"], row["keyword"]) == ("opt_out", "stop")


async def test_a_second_stop_sends_no_second_confirmation(
    edge: Edge, pool: AsyncConnectionPool[Any], contact: ChildName
) -> None:
    assert (await edge.inbound(inbound_form("STOP"))).status_code == 200
    assert (await edge.inbound(inbound_form("UNSUBSCRIBE"))).status_code == 200
    await edge.relay.drain()
    assert len(await service_texts(pool)) == 1
    assert await count(pool, "SELECT 1 FROM outbox_deliveries") == 1
    assert await consent(pool, contact) == ("revoked", True)
    assert await consent_events(pool) == [
        ("grant", "paper_form"),
        ("revoke", "sms_reply"),
        ("revoke", "sms_reply"),
    ]


async def test_stop_the_carrier_answered_revokes_without_a_confirmation(
    edge: Edge, pool: AsyncConnectionPool[Any], contact: ChildName
) -> None:
    assert (await edge.inbound(inbound_form("STOP", OptOutType="STOP"))).status_code == 200
    await edge.relay.drain()
    assert await consent(pool, contact) == ("revoked", True)
    assert await service_texts(pool) == []
    assert await count(pool, "SELECT 1 FROM outbox_deliveries") == 0


async def test_an_opt_out_the_carrier_reports_revokes_even_for_a_custom_keyword(
    edge: Edge, pool: AsyncConnectionPool[Any], contact: ChildName
) -> None:
    form = inbound_form("ARRET", OptOutType="STOP")
    assert (await edge.inbound(form)).status_code == 200
    assert (await inbound_row(pool, form["MessageSid"]))["classification"] == "opt_out"
    assert await consent(pool, contact) == ("revoked", True)


async def test_start_after_stop_is_a_new_keyword_consent(
    edge: Edge, pool: AsyncConnectionPool[Any], contact: ChildName
) -> None:
    assert (await edge.inbound(inbound_form("STOP"))).status_code == 200
    start = inbound_form("Start")
    assert (await edge.inbound(start)).status_code == 200
    assert await consent(pool, contact) == ("granted", False)
    assert await consent_events(pool) == [
        ("grant", "paper_form"),
        ("revoke", "sms_reply"),
        ("grant", "sms_keyword"),
    ]
    [(source, disclosure)] = await rows(
        pool,
        "SELECT source, disclosure_text FROM consent_events WHERE channel = 'sms_keyword'",
    )
    assert start["MessageSid"] in source and "START" in source and disclosure
    assert (await inbound_row(pool, start["MessageSid"]))["classification"] == "start"


async def test_yes_after_stop_resubscribes(
    edge: Edge, pool: AsyncConnectionPool[Any], contact: ChildName
) -> None:
    assert (await edge.inbound(inbound_form("STOP"))).status_code == 200
    yes = inbound_form("Yes")
    assert (await edge.inbound(yes)).status_code == 200
    assert await consent(pool, contact) == ("granted", False)
    assert (await consent_events(pool))[-1] == ("grant", "sms_keyword")
    assert (await inbound_row(pool, yes["MessageSid"]))["classification"] == "start"


async def test_yes_without_an_opt_out_is_a_reply(
    edge: Edge, pool: AsyncConnectionPool[Any], contact: ChildName
) -> None:
    form = inbound_form("YES")
    assert (await edge.inbound(form)).status_code == 200
    assert (await inbound_row(pool, form["MessageSid"]))["classification"] == "reply"
    assert await consent_events(pool) == [("grant", "paper_form")]
    assert await service_texts(pool) == []
    assert await count(pool, "SELECT 1 FROM activities WHERE kind = 'reply'") == 1


async def test_an_expired_confirmation_is_dropped_and_never_sent(
    edge: Edge, pool: AsyncConnectionPool[Any], contact: ChildName, monkeypatch: Any
) -> None:
    async def lost(ids: Any) -> int:  # the process died before its first delivery attempt
        return 0

    monkeypatch.setattr(edge.relay, "deliver", lost)
    assert (await edge.inbound(inbound_form("STOP"))).status_code == 200
    [(_, _, outcome)] = await service_texts(pool)
    assert outcome == ""  # still owed
    await rows(
        pool,
        "UPDATE followups SET expires_at = now() - interval '1 second'"
        " WHERE kind = 'service_text' RETURNING id",
    )
    assert await edge.relay.drain() == 2  # the confirmation and the staff notice
    [(done, outcome)] = await rows(
        pool, "SELECT done_at IS NOT NULL, outcome FROM followups WHERE kind = 'service_text'"
    )
    assert (done, outcome) == (True, "expired")
    assert await count(pool, "SELECT 1 FROM outbox_deliveries") == 0
    assert await count(pool, "SELECT 1 FROM messages WHERE direction = 'outbound'") == 0
    assert await consent(pool, contact) == ("revoked", True)


# --- 8. opt-out phrasing -------------------------------------------------------------------


@pytest.mark.parametrize(
    "text", ["please stop texting me", "Unsubscribe me", "no more texts", "No más, gracias"]
)
async def test_opt_out_phrasing_suppresses_and_is_flagged_for_review(
    edge: Edge, pool: AsyncConnectionPool[Any], contact: ChildName, text: str
) -> None:
    form = inbound_form(text)
    assert (await edge.inbound(form)).status_code == 200
    assert await consent(pool, contact) == ("revoked", True)
    row = await inbound_row(pool, form["MessageSid"])
    assert row["classification"] == "opt_out"
    assert row["review_reason"]


async def test_a_text_that_only_mentions_stop_is_a_flagged_reply(
    edge: Edge, pool: AsyncConnectionPool[Any], contact: ChildName
) -> None:
    form = inbound_form("can you stop by tomorrow?")
    assert (await edge.inbound(form)).status_code == 200
    assert await consent(pool, contact) == ("granted", False)
    row = await inbound_row(pool, form["MessageSid"])
    assert row["classification"] == "reply"
    assert row["review_reason"]
    assert await service_texts(pool) == []


# --- 9. status callbacks (COMPLIANCE §3.16, §3.17) -----------------------------------------


async def test_callbacks_in_order_end_delivered(
    edge: Edge, pool: AsyncConnectionPool[Any], contact: ChildName
) -> None:
    sid = new_sid()
    mid = await outbound(pool, contact, sid)
    seen = []
    for status in ("queued", "sent", "delivered"):
        answer = await edge.status(callback(sid, status))
        assert answer.status_code == 200
        seen.append((await ledger(pool, mid))[0])
    assert seen == ["sent", "sent", "delivered"]  # queued never moves a sent row back


async def test_callbacks_in_order_resolve_a_row_left_unknown(
    edge: Edge, pool: AsyncConnectionPool[Any], contact: ChildName
) -> None:
    mid = await outbound(pool, contact, None, status="unknown")
    sid = new_sid()
    seen = []
    for status in ("queued", "sending", "sent", "delivered"):
        answer = await edge.status(callback(sid, status), query=f"m={mid}")
        assert answer.status_code == 200
        seen.append((await ledger(pool, mid))[0])
    assert seen == ["queued", "sending", "sent", "delivered"]
    assert (await ledger(pool, mid))[2] == sid


async def test_an_early_queued_callback_moves_a_reserved_row_forward(
    edge: Edge, pool: AsyncConnectionPool[Any], contact: ChildName
) -> None:
    mid = await outbound(pool, contact, None, status="sending")  # reserved, carrier not answered
    sid = new_sid()
    assert (await edge.status(callback(sid, "queued"), query=f"m={mid}")).status_code == 200
    assert (await ledger(pool, mid))[:3] == ("queued", "", sid)


async def test_a_late_sent_after_delivered_changes_nothing(
    edge: Edge, pool: AsyncConnectionPool[Any], contact: ChildName
) -> None:
    sid = new_sid()
    mid = await outbound(pool, contact, sid)
    assert (await edge.status(callback(sid, "delivered"))).status_code == 200
    delivered = await ledger(pool, mid)
    assert (await edge.status(callback(sid, "sent"))).status_code == 200
    assert await ledger(pool, mid) == delivered
    assert delivered[0] == "delivered"


async def test_a_repeated_callback_changes_nothing_the_second_time(
    edge: Edge, pool: AsyncConnectionPool[Any], contact: ChildName
) -> None:
    sid = new_sid()
    mid = await outbound(pool, contact, sid)
    form = callback(sid, "undelivered", "30003")
    assert (await edge.status(form)).status_code == 200
    first = await ledger(pool, mid)
    assert first[:2] == ("undelivered", "30003")
    assert (await edge.status(form)).status_code == 200
    assert await ledger(pool, mid) == first


async def test_undelivered_then_delivered_stays_undelivered(
    edge: Edge, pool: AsyncConnectionPool[Any], contact: ChildName
) -> None:
    sid = new_sid()
    mid = await outbound(pool, contact, sid)
    assert (await edge.status(callback(sid, "undelivered", "30005"))).status_code == 200
    assert (await edge.status(callback(sid, "delivered"))).status_code == 200
    assert (await ledger(pool, mid))[:2] == ("undelivered", "30005")


async def test_read_after_delivered_moves_to_read(
    edge: Edge, pool: AsyncConnectionPool[Any], contact: ChildName
) -> None:
    sid = new_sid()
    mid = await outbound(pool, contact, sid)
    assert (await edge.status(callback(sid, "delivered"))).status_code == 200
    assert (await edge.status(callback(sid, "read"))).status_code == 200
    assert (await ledger(pool, mid))[0] == "read"
    assert (await edge.status(callback(sid, "delivered"))).status_code == 200
    assert (await ledger(pool, mid))[0] == "read"


async def test_an_unknown_status_value_changes_nothing(
    edge: Edge, pool: AsyncConnectionPool[Any], contact: ChildName
) -> None:
    sid = new_sid()
    mid = await outbound(pool, contact, sid)
    before = await ledger(pool, mid)
    assert (await edge.status(callback(sid, "teleported"))).status_code == 200
    assert await ledger(pool, mid) == before


async def test_a_callback_for_an_unknown_message_changes_nothing(
    edge: Edge, pool: AsyncConnectionPool[Any], contact: ChildName
) -> None:
    mid = await outbound(pool, contact, new_sid())
    before = await ledger(pool, mid)
    records = await counts(pool)
    answer = await edge.status(callback(new_sid(), "failed", "21610"))
    assert answer.status_code == 200
    assert await ledger(pool, mid) == before
    assert await counts(pool) == records
    assert await consent(pool, contact) == ("granted", False)


async def test_the_ledger_id_in_the_url_resolves_a_row_without_a_carrier_id(
    edge: Edge, pool: AsyncConnectionPool[Any], contact: ChildName
) -> None:
    mid = await outbound(pool, contact, None, status="unknown")  # a crash mid-send
    sid = new_sid()
    assert (await edge.status(callback(sid, "delivered"), query=f"m={mid}")).status_code == 200
    assert (await ledger(pool, mid))[:3] == ("delivered", "", sid)


async def test_the_ledger_id_in_the_url_with_another_sid_leaves_that_row_alone(
    edge: Edge, pool: AsyncConnectionPool[Any], contact: ChildName
) -> None:
    mine = new_sid()
    mid = await outbound(pool, contact, mine)
    before = await ledger(pool, mid)
    other = new_sid()
    answer = await edge.status(callback(other, "failed", "21610"), query=f"m={mid}")
    assert answer.status_code == 200
    assert await ledger(pool, mid) == before
    assert await consent(pool, contact) == ("granted", False)


async def test_a_bogus_ledger_id_in_the_url_falls_back_to_the_sid(
    edge: Edge, pool: AsyncConnectionPool[Any], contact: ChildName
) -> None:
    sid = new_sid()
    mid = await outbound(pool, contact, sid)
    for query in ("m=abc", "m=99999999999999999999999", "m=-1", "m="):
        assert (await edge.status(callback(sid, "sending"), query=query)).status_code == 200
    assert (await edge.status(callback(sid, "delivered"), query="m=abc")).status_code == 200
    assert (await ledger(pool, mid))[0] == "delivered"


async def test_a_unicode_digit_ledger_id_in_the_url_falls_back_to_the_sid(
    edge: Edge, pool: AsyncConnectionPool[Any], contact: ChildName
) -> None:
    sid = new_sid()
    mid = await outbound(pool, contact, sid)
    answer = await edge.status(callback(sid, "delivered"), query="m=%C2%B2")
    assert answer.status_code == 200
    assert (await ledger(pool, mid))[0] == "delivered"


async def test_21610_suppresses_the_contact_through_the_carrier_channel(
    edge: Edge, pool: AsyncConnectionPool[Any], contact: ChildName
) -> None:
    sid = new_sid()
    mid = await outbound(pool, contact, sid)
    assert (await edge.status(callback(sid, "failed", "21610"))).status_code == 200
    assert (await ledger(pool, mid))[:2] == ("failed", "21610")
    assert await consent(pool, contact) == ("revoked", True)
    [(kind, channel, source, phone)] = await rows(
        pool,
        "SELECT kind, channel, source, phone_e164 FROM consent_events WHERE kind = 'revoke'",
    )
    assert (kind, channel, phone) == ("revoke", "carrier", CONTACT_PHONE)
    assert sid in source
    assert await service_texts(pool) == []  # no confirmation: the contact did not text us


async def test_a_repeated_21610_adds_no_second_consent_event(
    edge: Edge, pool: AsyncConnectionPool[Any], contact: ChildName
) -> None:
    sid = new_sid()
    await outbound(pool, contact, sid)
    form = callback(sid, "failed", "21610")
    assert (await edge.status(form)).status_code == 200
    assert (await edge.status(form)).status_code == 200
    assert (await edge.status(callback(sid, "undelivered", "21610"))).status_code == 200
    assert await consent_events(pool) == [("grant", "paper_form"), ("revoke", "carrier")]


@pytest.mark.parametrize("missing", ["MessageStatus", "MessageSid"])
async def test_a_callback_without_sid_or_status_is_a_bad_request(
    edge: Edge, pool: AsyncConnectionPool[Any], contact: ChildName, missing: str
) -> None:
    sid = new_sid()
    mid = await outbound(pool, contact, sid)
    before = await ledger(pool, mid)
    form = callback(sid, "delivered")
    del form[missing]
    assert (await edge.status(form)).status_code == 400
    assert await ledger(pool, mid) == before


async def test_a_callback_with_a_bad_signature_is_refused(
    edge: Edge, pool: AsyncConnectionPool[Any], contact: ChildName
) -> None:
    sid = new_sid()
    mid = await outbound(pool, contact, sid)
    before = await ledger(pool, mid)
    answer = await edge.post(STATUS_PATH, callback(sid, "failed", "21610"), token="wrong")
    assert answer.status_code == 403
    unsigned = await post_raw(
        edge, urlencode(callback(sid, "failed", "21610")).encode(), path=STATUS_PATH
    )
    assert unsigned.status_code == 403
    assert await ledger(pool, mid) == before
    assert await consent(pool, contact) == ("granted", False)


async def test_a_callback_signed_without_its_query_is_refused(
    edge: Edge, pool: AsyncConnectionPool[Any], contact: ChildName
) -> None:
    mid = await outbound(pool, contact, None, status="unknown")
    form = callback(new_sid(), "delivered")
    answer = await edge.http.post(
        f"{STATUS_PATH}?m={mid}",
        data=form,
        headers={"X-Twilio-Signature": signed_for(form, STATUS_PATH)},
    )
    assert answer.status_code == 403
    assert (await ledger(pool, mid))[:3] == ("unknown", "", None)


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
    await _one_stop_effect(pool, contact, form["MessageSid"])


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
