"""Whether a step's text is its enrollment's first to reach the contact (the ledger says), and
that text as it will go out (`tenants.content.first_message` adds the brand and the opt-out)."""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection

from tenants.content.first_message import OutgoingText, line_language, outgoing_text
from tenants.core.vocabulary import MessageStatus
from tenants.messages.ledger import ACCEPTED_STATUSES
from tenants.org.franchisors import brand_name

# a text the carrier reported it could not deliver never reached the phone: it does not count
_REACHED_STATUSES = sorted(
    (ACCEPTED_STATUSES - {MessageStatus.UNDELIVERED}) | {MessageStatus.SENDING}
)


async def is_first_text(conn: AsyncConnection[Any], enrollment_id: str, step_index: int) -> bool:
    """Whether step_index's text would be the enrollment's first to reach the contact: no other
    step of the enrollment has a text that went (or may have gone) out. Steps run one after
    another, so prepare_step, the approval and send_step of one step agree."""
    cur = await conn.execute(
        "SELECT EXISTS (SELECT 1 FROM messages WHERE enrollment_id = %s"
        " AND direction = 'outbound' AND step_index IS DISTINCT FROM %s AND status = ANY(%s))",
        (enrollment_id, step_index, _REACHED_STATUSES),
    )
    row = await cur.fetchone()
    return not (row and row[0])


async def step_text_as_sent(
    conn: AsyncConnection[Any], franchisor_id: str, enrollment_id: str, step_index: int, text: str
) -> OutgoingText:
    """A step's text (an approver's edit) as send_step will send it: with the first message's
    additions when it is the enrollment's first text. For showing staff what goes out."""
    first = await is_first_text(conn, enrollment_id, step_index)
    language = line_language(text)  # as send_step adds it: in the language of the text
    return outgoing_text(
        text, await brand_name(conn, franchisor_id), first_message=first, language=language
    )
