"""The Twilio carrier against a local fake of Twilio's Messages API (tests/fake_twilio.py):
every answer's classification, the exact request on the wire, and no auth token anywhere."""

# The imported `fake_twilio` fixture is used as a parameter name, which pyflakes reads as a
# redefinition of the import; that is how pytest fixtures work, so F811 is off for this file.
# ruff: noqa: F811

from __future__ import annotations

import base64
import logging
import re
import socket
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime

import httpx
import pytest

from server.carriers.twilio import (
    DEFAULT_THROTTLE_BACKOFF_SECONDS,
    TwilioCarrier,
    classify_error_code,
    parse_retry_after,
)
from server.config import Settings
from tests.fake_twilio import FakeTwilio, fake_twilio  # noqa: F401
from workflows.carrier import Carrier, OutboundText, SendResult, SendStatus

CALLBACK = "https://reengage.example.com/sms/twilio/status"
TEXT = OutboundText(
    message_id=42,
    idempotency_key="enr-1:step-0",
    from_number="+12125550101",
    to_number="+13055550123",
    body="Acme Coffee: we miss you! Reply STOP to opt out",
)


def make_carrier(fake: FakeTwilio, *, token: str | None = None, **kw: object) -> TwilioCarrier:
    return TwilioCarrier(
        fake.account_sid,
        fake.auth_token if token is None else token,
        api_base=fake.base_url,
        status_callback_url=CALLBACK,
        **kw,  # type: ignore[arg-type]
    )


@pytest.fixture
async def carrier(fake_twilio: FakeTwilio) -> AsyncIterator[TwilioCarrier]:
    c = make_carrier(fake_twilio, timeout=2.0)
    yield c
    await c.aclose()


@pytest.fixture
def dead_port() -> Iterator[int]:
    """A port bound but not listening: connecting is refused at once, and nobody else can take
    the port while the test runs."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


def test_satisfies_the_carrier_protocol(fake_twilio: FakeTwilio) -> None:
    c: Carrier = make_carrier(fake_twilio)
    assert c.name == "twilio"
    assert c.idempotent is False  # no idempotency key: a crashed 'sending' row is not resent


async def test_accepted_returns_the_sid_and_sends_exactly_the_twilio_form(
    carrier: TwilioCarrier,
    fake_twilio: FakeTwilio,
) -> None:
    result = await carrier.send(TEXT)

    assert result.status is SendStatus.ACCEPTED
    assert re.fullmatch(r"SM[0-9a-f]{32}", result.carrier_message_id)
    assert result.error_code == "" and result.retry_after_seconds == 0.0
    [posted] = fake_twilio.messages
    assert posted.sid == result.carrier_message_id
    assert posted.http_status == 201
    assert posted.account_sid == fake_twilio.account_sid
    assert posted.form == {
        "To": TEXT.to_number,
        "From": TEXT.from_number,
        "Body": TEXT.body,
        "StatusCallback": CALLBACK + "?m=42",
    }
    assert (posted.to, posted.from_, posted.body, posted.status_callback) == (
        TEXT.to_number,
        TEXT.from_number,
        TEXT.body,
        CALLBACK + "?m=42",
    )
    assert posted.auth == (fake_twilio.account_sid, fake_twilio.auth_token)
    assert posted.content_type.startswith("application/x-www-form-urlencoded")


async def test_200_is_accepted_too(carrier: TwilioCarrier, fake_twilio: FakeTwilio) -> None:
    fake_twilio.respond_next(200, '{"sid": "SM' + "0" * 32 + '", "status": "queued"}')
    result = await carrier.send(TEXT)
    assert result == SendResult(SendStatus.ACCEPTED, "SM" + "0" * 32, detail="queued")


async def test_accepted_without_a_sid_is_still_accepted_never_resent(
    carrier: TwilioCarrier,
    fake_twilio: FakeTwilio,
) -> None:
    fake_twilio.respond_next(201, "not json")
    result = await carrier.send(TEXT)
    assert result.status is SendStatus.ACCEPTED
    assert result.carrier_message_id == ""


async def test_non_ascii_body_and_plus_signs_survive_form_encoding(
    carrier: TwilioCarrier,
    fake_twilio: FakeTwilio,
) -> None:
    body = "Café & más: 50% off + free ☕ — reply STOP to opt out"
    result = await carrier.send(OutboundText(1, "k", "+12125550101", "+13055550123", body))
    assert result.status is SendStatus.ACCEPTED
    assert fake_twilio.messages[0].body == body
    assert fake_twilio.messages[0].to == "+13055550123"


async def test_no_status_callback_field_when_none_is_configured(
    fake_twilio: FakeTwilio,
) -> None:
    c = TwilioCarrier(fake_twilio.account_sid, fake_twilio.auth_token, fake_twilio.base_url)
    try:
        assert (await c.send(TEXT)).status is SendStatus.ACCEPTED
    finally:
        await c.aclose()
    assert "StatusCallback" not in fake_twilio.messages[0].form


async def test_from_settings_points_status_callbacks_at_the_public_url(
    fake_twilio: FakeTwilio,
) -> None:
    settings = Settings(
        public_url="https://reengage.example.com/",
        twilio_account_sid=fake_twilio.account_sid,
        twilio_auth_token=fake_twilio.auth_token,
        twilio_api_base=fake_twilio.base_url + "/",
    )
    c = TwilioCarrier.from_settings(settings)
    try:
        assert (await c.send(TEXT)).status is SendStatus.ACCEPTED
    finally:
        await c.aclose()
    assert fake_twilio.messages[0].status_callback == CALLBACK + "?m=42"


async def test_opted_out_recipient_21610(carrier: TwilioCarrier, fake_twilio: FakeTwilio) -> None:
    fake_twilio.fail_next(code=21610, http_status=400)
    result = await carrier.send(TEXT)
    assert result.status is SendStatus.OPTED_OUT
    assert result.error_code == "21610"
    assert result.detail == "HTTP 400: Attempt to send to unsubscribed recipient"
    assert len(fake_twilio.messages) == 1  # one POST: the adapter itself never retries
    assert fake_twilio.created == []


@pytest.mark.parametrize("code", [30006, 21211, 21614])
async def test_landline_and_invalid_numbers_are_undeliverable(
    carrier: TwilioCarrier,
    fake_twilio: FakeTwilio,
    code: int,
) -> None:
    fake_twilio.fail_next(code=code, http_status=400)
    result = await carrier.send(TEXT)
    assert (result.status, result.error_code) == (SendStatus.UNDELIVERABLE, str(code))
    assert result.retry_after_seconds == 0.0


async def test_unreachable_30003_is_retried_by_the_caller(
    carrier: TwilioCarrier,
    fake_twilio: FakeTwilio,
) -> None:
    fake_twilio.fail_next(code=30003, http_status=400)
    result = await carrier.send(TEXT)
    assert (result.status, result.error_code) == (SendStatus.RETRY, "30003")
    assert result.retry_after_seconds == 0.0  # no throttling: the caller's backoff decides


async def test_throughput_exceeded_30022_backs_off(
    carrier: TwilioCarrier,
    fake_twilio: FakeTwilio,
) -> None:
    fake_twilio.fail_next(code=30022, http_status=400)
    result = await carrier.send(TEXT)
    assert (result.status, result.error_code) == (SendStatus.RETRY, "30022")
    assert result.retry_after_seconds == DEFAULT_THROTTLE_BACKOFF_SECONDS == 1.0

    fake_twilio.fail_next(code=30022, http_status=400, retry_after=7)
    result = await carrier.send(TEXT)
    assert (result.status, result.retry_after_seconds) == (SendStatus.RETRY, 7.0)


async def test_429_with_retry_after_uses_that_delay(
    carrier: TwilioCarrier,
    fake_twilio: FakeTwilio,
) -> None:
    fake_twilio.fail_next(http_status=429, retry_after=2)
    result = await carrier.send(TEXT)
    assert result.status is SendStatus.RETRY
    assert result.error_code == "20429"
    assert result.retry_after_seconds == 2.0


async def test_429_without_retry_after_gets_the_default_backoff(
    carrier: TwilioCarrier,
    fake_twilio: FakeTwilio,
) -> None:
    fake_twilio.respond_next(429, "slow down")  # no JSON, no header
    result = await carrier.send(TEXT)
    assert (result.status, result.error_code) == (SendStatus.RETRY, "http_429")
    assert result.retry_after_seconds == DEFAULT_THROTTLE_BACKOFF_SECONDS


@pytest.mark.parametrize("http_status", [500, 502, 503, 504])
async def test_server_errors_are_retried(
    carrier: TwilioCarrier,
    fake_twilio: FakeTwilio,
    http_status: int,
) -> None:
    fake_twilio.fail_next(http_status=http_status)
    result = await carrier.send(TEXT)
    assert result.status is SendStatus.RETRY
    assert result.detail.startswith(f"HTTP {http_status}")
    assert result.retry_after_seconds == 0.0


async def test_503_with_retry_after_passes_the_hint_on(
    carrier: TwilioCarrier,
    fake_twilio: FakeTwilio,
) -> None:
    fake_twilio.fail_next(http_status=503, retry_after=30)
    result = await carrier.send(TEXT)
    assert (result.status, result.error_code, result.retry_after_seconds) == (
        SendStatus.RETRY,
        "20503",
        30.0,
    )


async def test_proxy_html_error_page_is_retried(
    carrier: TwilioCarrier,
    fake_twilio: FakeTwilio,
) -> None:
    fake_twilio.respond_next(502, "<html>Bad Gateway</html>", {"Content-Type": "text/html"})
    result = await carrier.send(TEXT)
    assert (result.status, result.error_code, result.detail) == (
        SendStatus.RETRY,
        "http_502",
        "HTTP 502",
    )


async def test_connection_refused_is_retried(dead_port: int) -> None:
    c = TwilioCarrier("AC" + "1" * 32, "secret-token", f"http://127.0.0.1:{dead_port}")
    try:
        result = await c.send(TEXT)
    finally:
        await c.aclose()
    assert (result.status, result.error_code) == (SendStatus.RETRY, "connect_error")
    assert result.detail.startswith("ConnectError")


async def test_timeout_is_retried_but_twilio_may_have_created_the_message(
    fake_twilio: FakeTwilio,
) -> None:
    fake_twilio.delay_next(1.5)
    c = make_carrier(fake_twilio, timeout=0.3)
    try:
        result = await c.send(TEXT)
    finally:
        await c.aclose()
    assert (result.status, result.error_code) == (SendStatus.RETRY, "read_timeout")
    # The double-send window of the module docstring: the message exists, its SID is unknown
    # to the caller, and a resend would be a second text.
    [posted] = fake_twilio.wait_for_messages(1)
    assert posted.sid.startswith("SM")


async def test_body_too_long_21617_fails(carrier: TwilioCarrier, fake_twilio: FakeTwilio) -> None:
    # The fake enforces Twilio's 1600-character limit itself.
    long = OutboundText(1, "k", TEXT.from_number, TEXT.to_number, "a" * 1601)
    result = await carrier.send(long)
    assert (result.status, result.error_code) == (SendStatus.FAILED, "21617")
    assert "1600" in result.detail
    assert fake_twilio.created == []


@pytest.mark.parametrize(
    ("http_status", "code", "error_code"),
    [(400, 21606, "21606"), (400, None, "http_400"), (403, 20003, "20003"), (404, None, "20404")],
)
async def test_other_client_errors_fail(
    carrier: TwilioCarrier,
    fake_twilio: FakeTwilio,
    http_status: int,
    code: int | None,
    error_code: str,
) -> None:
    fake_twilio.fail_next(http_status=http_status, code=code)
    result = await carrier.send(TEXT)
    assert (result.status, result.error_code) == (SendStatus.FAILED, error_code)


async def test_wrong_credentials_fail_and_are_logged(
    fake_twilio: FakeTwilio,
    caplog: pytest.LogCaptureFixture,
) -> None:
    c = make_carrier(fake_twilio, token="wrong-token-" + "9" * 20)
    with caplog.at_level(logging.ERROR, logger="server.carriers.twilio"):
        try:
            result = await c.send(TEXT)
        finally:
            await c.aclose()
    assert (result.status, result.error_code) == (SendStatus.FAILED, "20003")
    assert result.detail == "HTTP 401: Authenticate"
    assert fake_twilio.messages[0].http_status == 401
    assert fake_twilio.created == []
    assert any(
        fake_twilio.account_sid in r.getMessage() and "credentials" in r.getMessage()
        for r in caplog.records
    )


async def test_unknown_account_fails(fake_twilio: FakeTwilio) -> None:
    c = TwilioCarrier("AC" + "f" * 32, fake_twilio.auth_token, fake_twilio.base_url)
    try:
        result = await c.send(TEXT)
    finally:
        await c.aclose()
    assert (result.status, result.error_code) == (SendStatus.FAILED, "20003")


async def test_the_auth_token_never_leaks(
    fake_twilio: FakeTwilio,
    dead_port: int,
    caplog: pytest.LogCaptureFixture,
) -> None:
    token = fake_twilio.auth_token
    sid = fake_twilio.account_sid
    secrets_on_the_wire = {token, base64.b64encode(f"{sid}:{token}".encode()).decode()}
    results: list[SendResult] = []
    texts: list[str] = []
    with caplog.at_level(logging.DEBUG):  # every logger, httpx and httpcore included
        # 1 s: the answers expected in time come in time on a loaded machine too
        carrier = make_carrier(fake_twilio, timeout=1.0)
        texts.append(repr(carrier))
        results.append(await carrier.send(TEXT))
        fake_twilio.fail_next(code=21610)
        results.append(await carrier.send(TEXT))
        fake_twilio.fail_next(http_status=503, message=f"upstream said {token}")
        results.append(await carrier.send(TEXT))
        fake_twilio.respond_next(500, f"<html>debug: Authorization: Basic {secrets_on_the_wire}")
        results.append(await carrier.send(TEXT))
        fake_twilio.delay_next(3.0)  # past the timeout: a RETRY
        results.append(await carrier.send(TEXT))
        await carrier.aclose()

        refused = TwilioCarrier(sid, token, f"http://127.0.0.1:{dead_port}")
        results.append(await refused.send(TEXT))
        await refused.aclose()

        wrong = make_carrier(fake_twilio, token=token + "x")
        results.append(await wrong.send(TEXT))
        texts.append(repr(wrong))
        await wrong.aclose()

        with pytest.raises(ValueError) as no_sid:
            TwilioCarrier("", token)
        texts.append(str(no_sid.value))

    assert [r.status for r in results] == [
        SendStatus.ACCEPTED,
        SendStatus.OPTED_OUT,
        SendStatus.RETRY,
        SendStatus.RETRY,
        SendStatus.RETRY,
        SendStatus.RETRY,
        SendStatus.FAILED,
    ]
    assert "***" in results[2].detail  # the echoed token was scrubbed, not just absent
    texts += [repr(r) for r in results] + [str(r) for r in results]
    for record in caplog.records:
        texts.append(record.getMessage())
        texts.append(repr(record.args))
        texts.append(record.exc_text or "")
    texts.append(caplog.text)
    assert caplog.records  # the check below saw real log lines
    for text in texts:
        for secret in secrets_on_the_wire:
            assert secret not in text


async def test_one_shared_client_reused_and_closed_only_when_owned(
    fake_twilio: FakeTwilio,
) -> None:
    connections: set[int] = set()

    async def on_response(response: httpx.Response) -> None:
        stream = response.extensions.get("network_stream")
        connections.add(id(stream.get_extra_info("socket")) if stream else 0)

    injected = httpx.AsyncClient(event_hooks={"response": [on_response]})
    c = make_carrier(fake_twilio, http_client=injected)
    for _ in range(3):
        assert (await c.send(TEXT)).status is SendStatus.ACCEPTED
    assert len(connections) == 1  # keep-alive: one connection for three sends
    await c.aclose()
    assert not injected.is_closed  # not ours to close
    await injected.aclose()

    owned = make_carrier(fake_twilio)
    await owned.aclose()
    await owned.aclose()  # idempotent
    assert owned._client.is_closed


def test_error_code_table() -> None:
    assert classify_error_code(21610) is SendStatus.OPTED_OUT
    assert classify_error_code(30006) is SendStatus.UNDELIVERABLE
    assert classify_error_code(30003) is SendStatus.RETRY
    assert classify_error_code(21617) is SendStatus.FAILED
    assert classify_error_code(99999) is None


def test_retry_after_parsing() -> None:
    now = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("2", now) == 2.0
    assert parse_retry_after(" 1.5 ", now) == 1.5
    assert parse_retry_after("Sun, 01 Mar 2026 12:00:30 GMT", now) == 30.0
    assert parse_retry_after("Sun, 01 Mar 2026 11:00:00 GMT", now) == 0.0  # past: now
    assert parse_retry_after("-5", now) == 0.0
    assert parse_retry_after("999999", now) == 3600.0
    for junk in (None, "", "soon", "nan", "inf", "Sun, 99 Foo"):
        assert parse_retry_after(junk, now) is None


def test_missing_credentials_are_a_configuration_error() -> None:
    with pytest.raises(ValueError, match="account SID and an auth token"):
        TwilioCarrier("AC" + "1" * 32, "")
