"""The webhook vocabulary: the event types an endpoint subscribes to, and the delivery policy
settings decide (which URLs and addresses an endpoint may have)."""

from __future__ import annotations

from dataclasses import dataclass

# Every event type an endpoint may subscribe to, in the order the docs list them. The database
# writes them (migration 0018: triggers on the tables whose rows are the events).
EVENT_TYPES = (
    "message.sent",
    "message.delivered",
    "message.failed",
    "message.clicked",
    "reply.received",
    "contact.opted_out",
    "contact.opted_in",
    "enrollment.started",
    "enrollment.exited",
    "enrollment.completed",
    "approval.requested",
    "approval.decided",
    "conversion.attributed",
)
# What SendTestEvent delivers, to one endpoint, whatever it subscribes to.
TEST_EVENT = "webhook.test"
# A payload is never larger than this (bytes of the JSON body).
MAX_PAYLOAD_BYTES = 20 * 1024


@dataclass(frozen=True)
class WebhookPolicy:
    """What settings allow endpoints: http:// URLs (REENGAGE_WEBHOOKS_ALLOW_HTTP) and
    loopback, private, link-local and metadata addresses (REENGAGE_WEBHOOKS_ALLOW_PRIVATE):
    both off in production, on in development and tests."""

    allow_http: bool = False
    allow_private: bool = False


STRICT = WebhookPolicy()
