"""Twilio's webhook wire format (compliance §3.14 to §3.16): bounded form bodies, the
`X-Twilio-Signature` check (the `twilio` library's validator, constant-time compare), and the
fields of inbound messages and status callbacks.

The signed URL is rebuilt from `REENGAGE_PUBLIC_URL` plus the request's path and query: behind a
proxy the URL this process sees is not the one Twilio called. Every POST field takes part in the
signature, including the ones this module does not know.
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request
from twilio.request_validator import RequestValidator

from server.http.edge import RequestRefused

MAX_BODY_BYTES = 32 * 1024  # an inbound text with 10 media URLs is about 4 KiB
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'


def signed_url(public_url: str, request: Request) -> str:
    query = request.url.query
    return public_url.rstrip("/") + request.url.path + (f"?{query}" if query else "")


def verify(auth_token: str, url: str, form: dict[str, str], signature: str) -> None:
    """Raises 403 unless signature is Twilio's signature of url and form under auth_token."""
    if not auth_token:
        raise RequestRefused(403, "Twilio webhooks are off: TWILIO_AUTH_TOKEN is not set")
    if not signature or not RequestValidator(auth_token).validate(url, form, signature):
        raise RequestRefused(403, "invalid X-Twilio-Signature")


def required(form: dict[str, str], *names: str) -> None:
    missing = [n for n in names if not form.get(n, "").strip()]
    if missing:
        raise RequestRefused(400, f"missing field(s): {', '.join(missing)}")


@dataclass(frozen=True)
class InboundFields:
    message_sid: str
    from_number: str
    to_number: str
    body: str
    opt_out_type: str  # STOP, START, HELP when Twilio's Advanced Opt-Out answered it


def inbound_fields(form: dict[str, str]) -> InboundFields:
    if not form.get("MessageSid") and form.get("SmsSid"):
        form = {**form, "MessageSid": form["SmsSid"]}
    required(form, "MessageSid", "From", "To")
    if len(form["MessageSid"].strip()) > 64:
        raise RequestRefused(400, "MessageSid is longer than 64 characters")
    return InboundFields(
        form["MessageSid"].strip(),
        form["From"].strip(),
        form["To"].strip(),
        form.get("Body", ""),
        form.get("OptOutType", "").strip().upper(),
    )


@dataclass(frozen=True)
class StatusFields:
    message_sid: str
    status: str
    error_code: str


def status_fields(form: dict[str, str]) -> StatusFields:
    sid = form.get("MessageSid") or form.get("SmsSid") or ""
    status = form.get("MessageStatus") or form.get("SmsStatus") or ""
    if not sid.strip() or not status.strip():
        raise RequestRefused(400, "missing field(s): MessageSid and MessageStatus are required")
    if len(sid.strip()) > 64 or len(status.strip()) > 32:
        raise RequestRefused(400, "MessageSid or MessageStatus is too long")
    return StatusFields(sid.strip(), status.strip().lower(), form.get("ErrorCode", "").strip())
