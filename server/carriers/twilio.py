"""The Twilio carrier: sends one text through Twilio's Programmable Messaging REST API.

Contract (see `workflows.carrier.Carrier`): `send` makes exactly one
`POST {api_base}/2010-04-01/Accounts/{sid}/Messages.json` (form-encoded `To`, `From`, `Body`
and, when configured, `StatusCallback`; HTTP basic auth with the account SID and auth token)
and classifies the answer into a `SendResult`. It never retries and never raises for anything
Twilio or the network does; retries, their limit and the ledger belong to the send activity.

Classification (compliance §3 item 17):

| Twilio answer                                      | SendStatus    | notes                      |
|----------------------------------------------------|---------------|----------------------------|
| HTTP 200/201                                       | ACCEPTED      | carrier_message_id = `sid` |
| 21610 recipient opted out                          | OPTED_OUT     | never retry                |
| 30006 landline, 21211 invalid To, 21614 not mobile | UNDELIVERABLE | marks the contact          |
| 21612 To not reachable, 30005 unknown handset      | UNDELIVERABLE |
(tenants.contacts.undeliverable)    |
| 30003 unreachable handset                          | RETRY         | retry_after 0: caller's    |
| 30022 throughput exceeded, HTTP 429 (any code)     | RETRY         | Retry-After, else 1 s      |
| HTTP 5xx (any code but the above)                  | RETRY         | Retry-After, else 0        |
| timeout, connection error                          | RETRY         | retry_after 0              |
| 20003 / HTTP 401 wrong credentials                 | FAILED        | also logged at ERROR       |
| 21617 body too long, any other 4xx                 | FAILED        |                            |

`error_code` holds Twilio's numeric code as text ("21610"), or for answers without one
`http_<status>`, or for transport failures one of `connect_error`, `connect_timeout`,
`pool_timeout` (the request never left this process), `read_timeout`, `write_timeout`,
`transport_error` (it may have reached Twilio). The 30xxx codes are delivery errors that Twilio
normally reports later, as `ErrorCode` in a status callback; `classify_error_code` is public so
the status-callback handler can classify them the same way.

Wrong credentials are FAILED rather than an exception: the protocol promises not to raise for
a provider answer, and a 401 proves Twilio created nothing, so the activity may requeue the
message once the configuration is fixed. Each occurrence is logged at ERROR with the SID.

Double-send window. Twilio's Messages API accepts no idempotency key, so a repeated POST is a
second text. The window runs from Twilio committing the message to the send activity recording
the returned SID in the ledger, and two things can happen inside it:
* the process (or the activity's worker) dies after Twilio accepted the POST and before the SID
  is written: a retried activity cannot tell whether the text went out;
* the answer is lost: this adapter returns RETRY with `error_code` `read_timeout`,
  `write_timeout` or `transport_error` (and an HTTP 5xx from a gateway in front of Twilio is
  as ambiguous), yet Twilio may have created the message.
Hence `TwilioCarrier.idempotent` is False: the send activity marks the ledger row 'sending'
before calling `send` and must not resend a row that is already 'sending' (a status callback
or an operator resolves it), so a text goes out at most once in that window; acting on one of
the ambiguous RETRYs above by resending is the same risk. Only `connect_error`,
`connect_timeout`, `pool_timeout`, HTTP 429 and other 4xx answers prove Twilio created nothing.

Secrets: the auth token is only handed to httpx as basic-auth credentials. It is not part of
`repr()`, results, log lines or exception text, and every detail string is scrubbed of it (and
of its basic-auth encoding) as a second line of defence. Phone numbers and bodies are not
logged either (personal data); log lines name the ledger `message_id`.
"""

from __future__ import annotations

import base64
import logging
import math
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import httpx

from tenants.contacts.undeliverable import PERMANENT_CODES
from workflows.carrier import OutboundText, SendResult, SendStatus

if TYPE_CHECKING:
    from server.config import Settings

log = logging.getLogger(__name__)

# Pause suggested when Twilio throttles (429 / 30022) without saying for how long: long enough
# not to hammer it, short enough that the activity's own pacing stays in charge.
DEFAULT_THROTTLE_BACKOFF_SECONDS = 1.0
# Ceiling on a Retry-After we pass on, so a bogus header cannot park a send for days.
MAX_RETRY_AFTER_SECONDS = 3600.0
DEFAULT_TIMEOUT_SECONDS = 10.0
STATUS_CALLBACK_PATH = "/sms/twilio/status"
_DETAIL_LIMIT = 300

_ERROR_STATUS: dict[int, SendStatus] = {
    21610: SendStatus.OPTED_OUT,  # "Attempt to send to unsubscribed recipient": never retry
    # the number cannot take texts (tenants.contacts.undeliverable: 30006 landline or unreachable
    # carrier, 21211 invalid 'To', 21614 not a mobile number, 21612 'To' not reachable by SMS,
    # 30005 unknown handset): the enrollment exits and the contact is marked
    **{int(code): SendStatus.UNDELIVERABLE for code in PERMANENT_CODES},
    30003: SendStatus.RETRY,  # unreachable handset (off, out of coverage): limited retries
    30022: SendStatus.RETRY,  # 10DLC throughput exceeded: back off
    20429: SendStatus.RETRY,  # "Too Many Requests" (comes with HTTP 429)
    21617: SendStatus.FAILED,  # concatenated body exceeds 1600 characters
}
_THROTTLE_CODES = frozenset({30022, 20429})


def classify_error_code(code: int) -> SendStatus | None:
    """The status a Twilio error code always means, or None when the HTTP status decides
    (an unlisted code in a 4xx answer is FAILED, in a 5xx answer RETRY)."""
    return _ERROR_STATUS.get(code)


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` header (delta-seconds or an HTTP date), clamped to
    [0, MAX_RETRY_AFTER_SECONDS]; None when absent or unparseable."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:  # RFC 9110 dates are GMT
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if not math.isfinite(seconds):
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_SECONDS)


class TwilioCarrier:
    """A `workflows.carrier.Carrier` for Twilio. One instance holds one `httpx.AsyncClient`,
    shared by every send (connection reuse); call `aclose()` when done. A client passed in is
    used as is and left open by `aclose()` (its owner closes it); the timeout and credentials
    are applied per request either way."""

    name = "twilio"
    # Twilio's Messages API has no idempotency key: a repeated POST is a second text.
    idempotent = False

    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        api_base: str = "https://api.twilio.com",
        status_callback_url: str = "",
        http_client: httpx.AsyncClient | None = None,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
    ) -> None:
        if not account_sid or not auth_token:
            # A configuration error, found at start rather than on the first send.
            raise ValueError("Twilio needs an account SID and an auth token")
        self._account_sid = account_sid
        self._auth_token = auth_token
        self._auth = httpx.BasicAuth(account_sid, auth_token)
        # What the token looks like on the wire; scrubbed from details along with the token.
        self._auth_b64 = base64.b64encode(f"{account_sid}:{auth_token}".encode()).decode()
        self._url = (
            f"{api_base.rstrip('/')}/2010-04-01/Accounts/{quote(account_sid, safe='')}"
            "/Messages.json"
        )
        self._status_callback_url = status_callback_url
        self._timeout = httpx.Timeout(timeout)
        self._owns_client = http_client is None
        self._client = http_client or httpx.AsyncClient(timeout=self._timeout)

    @classmethod
    def from_settings(
        cls, settings: Settings, http_client: httpx.AsyncClient | None = None
    ) -> TwilioCarrier:
        """Builds the carrier from `server.config.Settings`; status callbacks go to
        `{public_url}/sms/twilio/status?m=<ledger id>`."""
        return cls(
            account_sid=settings.twilio_account_sid,
            auth_token=settings.twilio_auth_token,
            api_base=settings.twilio_api_base,
            status_callback_url=settings.public_url.rstrip("/") + STATUS_CALLBACK_PATH,
            http_client=http_client,
        )

    def __repr__(self) -> str:
        return f"TwilioCarrier(account_sid={self._account_sid!r}, url={self._url!r})"

    async def aclose(self) -> None:
        """Closes the HTTP client if this carrier created it. Idempotent."""
        if self._owns_client:
            await self._client.aclose()

    async def send(self, text: OutboundText) -> SendResult:
        """POSTs `text` to Twilio once and classifies the outcome (module docstring table).
        Raises only for programming errors, never for an answer or a network failure."""
        form = {"To": text.to_number, "From": text.from_number, "Body": text.body}
        if self._status_callback_url:
            # the ledger row rides along, so a callback finds its row even when the answer
            # carrying Twilio's sid was lost (the crash window of the module doc)
            form["StatusCallback"] = f"{self._status_callback_url}?m={text.message_id}"
        try:
            response = await self._client.post(
                self._url, data=form, auth=self._auth, timeout=self._timeout
            )
        except httpx.TransportError as exc:
            return self._transport_failure(text, exc)
        return self._classify(text, response)

    def _transport_failure(self, text: OutboundText, exc: httpx.TransportError) -> SendResult:
        # Most specific first: the timeout classes are subclasses of TransportError.
        kinds: tuple[tuple[type[httpx.TransportError], str], ...] = (
            (httpx.ConnectTimeout, "connect_timeout"),
            (httpx.ReadTimeout, "read_timeout"),
            (httpx.WriteTimeout, "write_timeout"),
            (httpx.PoolTimeout, "pool_timeout"),
            (httpx.ConnectError, "connect_error"),
        )
        code = next((name for kind, name in kinds if isinstance(exc, kind)), "transport_error")
        # The exception text names the URL (SID, not token) at most; scrub it all the same.
        detail = self._scrub(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
        log.warning("twilio send of message %s: %s, will retry", text.message_id, code)
        return SendResult(SendStatus.RETRY, error_code=code, detail=detail)

    def _classify(self, text: OutboundText, response: httpx.Response) -> SendResult:
        payload = _json_object(response)
        status_code = response.status_code
        if status_code in (200, 201):
            sid = payload.get("sid")
            if not isinstance(sid, str) or not sid:
                # Twilio created it, so resending would double-send; without a SID the status
                # callback cannot be matched, which the ledger shows as a missing carrier id.
                log.error("twilio accepted message %s without a sid in the answer", text.message_id)
                return SendResult(SendStatus.ACCEPTED, detail="accepted; answer had no sid")
            log.debug("twilio accepted message %s as %s", text.message_id, sid)
            return SendResult(
                SendStatus.ACCEPTED,
                carrier_message_id=sid,
                detail=self._scrub(str(payload.get("status") or "")),
            )

        code = payload.get("code")
        twilio_code = code if isinstance(code, int) and not isinstance(code, bool) else None
        if isinstance(code, str) and code.isdigit():
            twilio_code = int(code)
        error_code = str(twilio_code) if twilio_code is not None else f"http_{status_code}"
        message = payload.get("message")
        detail = f"HTTP {status_code}"
        if isinstance(message, str) and message:
            detail += f": {message}"
        detail = self._scrub(detail)

        status = classify_error_code(twilio_code) if twilio_code is not None else None
        if status is None:
            if status_code == 429:
                status = SendStatus.RETRY
            elif status_code >= 500:
                status = SendStatus.RETRY
            else:
                # 401/403/404 and other 4xx: repeating the same request gets the same answer.
                status = SendStatus.FAILED
        if status_code == 401 or twilio_code == 20003:
            log.error(
                "twilio rejected the credentials of account %s (message %s)",
                self._account_sid,
                text.message_id,
            )

        retry_after = 0.0
        if status is SendStatus.RETRY:
            hinted = parse_retry_after(response.headers.get("Retry-After"))
            if hinted is not None:
                retry_after = hinted
            elif status_code == 429 or twilio_code in _THROTTLE_CODES:
                retry_after = DEFAULT_THROTTLE_BACKOFF_SECONDS
            log.warning("twilio send of message %s: %s, will retry", text.message_id, error_code)
        else:
            log.info("twilio send of message %s: %s -> %s", text.message_id, error_code, status)
        return SendResult(
            status, error_code=error_code, detail=detail, retry_after_seconds=retry_after
        )

    def _scrub(self, detail: str) -> str:
        for secret in (self._auth_token, self._auth_b64):
            detail = detail.replace(secret, "***")
        return detail[:_DETAIL_LIMIT]


def _json_object(response: httpx.Response) -> dict[str, Any]:
    """The answer's JSON object, or {} when it is not one (a proxy's HTML error page)."""
    try:
        payload = response.json()
    except ValueError:  # json.JSONDecodeError and undecodable bytes
        return {}
    return payload if isinstance(payload, dict) else {}
