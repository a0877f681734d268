"""What the bot posts: Block Kit messages built from notices and decisions (pure functions).

Texts to contacts are shown as `plain_text`, never as mrkdwn, so what staff read is exactly
what the contact gets; names are escaped before they go into mrkdwn.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from tenants.core.vocabulary import ExitReason
from tenants.followups.notices import Notice, NoticeFacts, NoticeKind
from tenants.reports.digest import ReportSummary

Block = dict[str, Any]

APPROVE = "approval_approve"
EDIT = "approval_edit"
SKIP = "approval_skip"
PAUSE = "approval_pause"
APPROVAL_ACTIONS = (APPROVE, EDIT, SKIP, PAUSE)
EDIT_MODAL = "approval_edit_modal"
OVERRIDE_APPROVE = "override_approve"
OVERRIDE_REJECT = "override_reject"
REJECT_MODAL = "override_reject_modal"
REVIEW_OPT_OUT = "review_opt_out"
REVIEW_NOT_OPT_OUT = "review_not_opt_out"
REVIEW_ACTIONS = (REVIEW_OPT_OUT, REVIEW_NOT_OPT_OUT)
TEXT_BLOCK = "text"  # the edit modal's text field: its action id (and its first block id)
SHORTEN = "approval_edit_shorten"  # the edit modal's draft buttons (tenants.assistant)
TRANSLATE = "approval_edit_translate"
DRAFT_ACTIONS = (SHORTEN, TRANSLATE)
REASON_BLOCK = "reason"

EXIT_WORDS: dict[str, str] = {
    ExitReason.REPLIED: "they replied",
    ExitReason.OPTED_OUT: "they opted out",
    ExitReason.CLICKED: "they clicked a link",
    ExitReason.PURCHASED: "they made a purchase",
    ExitReason.APPOINTMENT_COMPLETED: "they completed an appointment",
    ExitReason.PREEMPTED: "a higher-priority sequence took over",
    ExitReason.CANCELLED: "it was cancelled",
    ExitReason.UNDELIVERABLE: "the number cannot receive texts",
    ExitReason.NO_CONSENT: "there is no consent to text them",
}


def esc(text: str) -> str:
    """Escapes text for mrkdwn (Slack's three control characters)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _section(text: str, block_id: str = "") -> Block:
    block: Block = {"type": "section", "text": {"type": "mrkdwn", "text": text}}
    if block_id:
        block["block_id"] = block_id
    return block


def _plain(text: str, block_id: str = "") -> Block:
    """A contact's or a template's words, shown as they are (no mrkdwn)."""
    # Slack refuses an empty text object: a picture-only reply has no words
    shown = text[:3000] if text.strip() else "(no text)"
    block: Block = {"type": "section", "text": {"type": "plain_text", "text": shown}}
    if block_id:
        block["block_id"] = block_id
    return block


def _context(text: str) -> Block:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": text}]}


def _button(action_id: str, label: str, value: dict[str, Any], style: str = "") -> Block:
    button: Block = {
        "type": "button",
        "action_id": action_id,
        "text": {"type": "plain_text", "text": label},
        "value": json.dumps(value, separators=(",", ":")),
    }
    if style:
        button["style"] = style
    return button


def _when(iso: str) -> str:
    """A time Slack shows in each reader's own zone."""
    try:
        at = datetime.fromisoformat(iso)
    except ValueError:
        return iso
    return f"<!date^{int(at.timestamp())}^{{date_short_pretty}} {{time}}|{at.isoformat()}>"


def _where(facts: NoticeFacts, step: int) -> str:
    if not facts.sequence_display:
        return "not in a sequence"
    if step < 0:
        return f"{esc(facts.sequence_display)}, before its first text"
    total = f" of {facts.step_count}" if facts.step_count else ""
    return f"{esc(facts.sequence_display)}, step {step + 1}{total}"


def thread_root(facts: NoticeFacts) -> tuple[str, list[Block]]:
    """The first message of a contact's thread: who it is about."""
    who = f"{esc(facts.contact_display)} · {facts.contact_phone}".rstrip(" ·")
    return f"{esc(facts.contact_display)} {facts.contact_phone}", [
        _section(f"*{who}*"),
        _context(f"Replies, approvals and exits for this contact at {esc(facts.location_name)}."),
    ]


def notice_message(notice: Notice, facts: NoticeFacts) -> tuple[str, list[Block]]:
    """(fallback text, blocks) of a notice."""
    p = notice.payload
    who = esc(facts.contact_display)
    step = int(p.get("step", -1))
    if notice.kind is NoticeKind.REPLY_RECEIVED:
        phone = f" ({facts.contact_phone})" if facts.contact_phone else ""
        return f"Reply from {esc(facts.contact_display)}", [
            _section(f":speech_balloon: *{who}*{phone} replied ({_where(facts, step)})"),
            _plain(str(p.get("text", ""))),
            *review_blocks(p),
        ]
    if notice.kind is NoticeKind.OPTED_OUT:
        said = str(p.get("keyword") or p.get("text", ""))
        return f"{esc(facts.contact_display)} opted out", [
            _section(
                f":no_entry: *{who}* opted out ({_where(facts, step)}). Nothing more is sent to"
                " this number."
            ),
            _plain(said),
            *review_blocks(p),
        ]
    if notice.kind is NoticeKind.ENROLLMENT_EXITED:
        reason = str(p.get("reason", ""))
        words = EXIT_WORDS.get(reason, reason.replace("_", " ") or "it ended")
        return f"{esc(facts.contact_display)} left the sequence: {reason}", [
            _section(f":checkered_flag: *{who}* left {_where(facts, step)}: {esc(words)}."),
        ]
    if notice.kind is NoticeKind.APPROVAL_REQUESTED:
        return approval_message(notice, facts)
    if notice.kind is NoticeKind.WEEKLY_DIGEST:
        return digest_message(notice, facts)
    if notice.kind is NoticeKind.WEBHOOK_DISABLED:
        return webhook_disabled_message(notice)
    return override_message(notice, facts)


def review_blocks(payload: dict[str, Any]) -> list[Block]:
    """A flagged text's review: why it was flagged, and its resolution buttons (anyone sees
    them; only those the access module lets resolve may use them)."""
    flagged = str(payload.get("flagged", ""))
    if not flagged:
        return []
    value = {"m": flagged}
    return [
        _context(
            f":mag: *Flagged for review* — {esc(str(payload.get('review_reason', '')))}."
            " A manager decides whether it is an opt-out."
        ),
        {
            "type": "actions",
            "block_id": "review",
            "elements": [
                _button(REVIEW_OPT_OUT, "Opt out", value, "danger"),
                _button(REVIEW_NOT_OPT_OUT, "Not an opt-out", value),
            ],
        },
    ]


def review_outcome(resolution: str, who: str, effect: str) -> str:
    """What a flagged text's notice says once it is resolved."""
    if resolution == "opt_out":
        return f":no_entry: Resolved as an opt-out by {who} — {esc(effect)}."
    return f":white_check_mark: Resolved as not an opt-out by {who} — {esc(effect)}."


def approval_message(notice: Notice, facts: NoticeFacts) -> tuple[str, list[Block]]:
    p = notice.payload
    step = int(p["step"])
    value = {"e": p["enrollment_id"], "s": step}
    segments = int(p.get("segments", 0))
    return f"Approval needed for {esc(facts.contact_display)}", [
        _section(
            f":raised_hand: *Approval needed* — {_where(facts, step)} for"
            f" *{esc(facts.contact_display)}*"
        ),
        _plain(str(p.get("text", "")), block_id="approval_text"),
        _context(
            f"{segments} segment{'s' if segments != 1 else ''} · skipped unless decided by"
            f" {_when(str(p.get('deadline', '')))}"
        ),
        {
            "type": "actions",
            "block_id": "approval",
            "elements": [
                _button(APPROVE, "Approve", value, "primary"),
                _button(EDIT, "Edit", value),
                _button(SKIP, "Skip", value),
                _button(PAUSE, "Pause contact", value, "danger"),
            ],
        },
    ]


def override_message(notice: Notice, facts: NoticeFacts) -> tuple[str, list[Block]]:
    p = notice.payload
    value = {"t": p["template"], "etag": p["etag"]}
    if "revision" in p:  # the text shown: decided while it is still the one pending
        value["rev"] = p["revision"]
    language = str(p.get("language", ""))
    if language:  # a variant's submission: the buttons decide that language's text
        value["lang"] = language
    in_language = f", in `{esc(language)}`" if language else ""
    return f"{esc(facts.location_name)} submitted a template override", [
        _section(
            f":memo: *{esc(facts.location_name)}* submitted an override of"
            f" `{esc(str(p.get('brand_template', '')))}` for approval"
            f" ({esc(str(p.get('display_name', '')))}{in_language})"
        ),
        _plain(str(p.get("body", "")), block_id="override_body"),
        _context(f"Submitted by {esc(str(p.get('submitted_by', '')))}"),
        {
            "type": "actions",
            "block_id": "override",
            "elements": [
                _button(OVERRIDE_APPROVE, "Approve", value, "primary"),
                _button(OVERRIDE_REJECT, "Reject", value, "danger"),
            ],
        },
    ]


def no_longer_waiting(ended: bool) -> str:
    """What an approval message says when the step stopped waiting without a Slack decision."""
    if ended:
        return ":heavy_multiplication_x: No longer waiting: the sequence ended before a decision."
    return (
        ":hourglass: No longer waiting: decided outside Slack (the API or the CLI), or it timed"
        " out and was skipped. `/reengage status` shows where the contact is."
    )


def decided(blocks: list[Block], outcome: str, *, keep_actions: bool = False) -> list[Block]:
    """The posted message after a decision: its buttons gone (unless kept), who did what."""
    kept = [
        b
        for b in blocks
        if b.get("block_id") != "outcome" and (keep_actions or b.get("type") != "actions")
    ]
    return [*kept, {**_context(outcome), "block_id": "outcome"}]


def shown_again(texts: list[str]) -> list[Block]:
    """A message rebuilt from what a modal carried: its heading (mrkdwn), then the words."""
    return [_section(texts[0]), *(_plain(t) for t in texts[1:2])] if texts else []


def _text_modal(
    callback_id: str,
    metadata: dict[str, Any],
    title: str,
    submit: str,
    field: str,
    label: str,
    max_length: int,
    initial: str = "",
    footer: list[Block] | None = None,
    block_id: str = "",
) -> Block:
    """A modal with one multi-line text field (its action id: field; its block id: block_id,
    default field) whose private_metadata carries metadata (Slack keeps 3,000 characters:
    non-ASCII stays one each)."""
    element: Block = {
        "type": "plain_text_input",
        "action_id": field,
        "multiline": True,
        "max_length": max_length,
    }
    if initial:
        element["initial_value"] = initial
    return {
        "type": "modal",
        "callback_id": callback_id,
        "private_metadata": json.dumps(metadata, separators=(",", ":"), ensure_ascii=False),
        "title": {"type": "plain_text", "text": title},
        "submit": {"type": "plain_text", "text": submit},
        "close": {"type": "plain_text", "text": "Cancel"},
        "blocks": [
            {
                "type": "input",
                "block_id": block_id or field,
                "label": {"type": "plain_text", "text": label},
                "element": element,
            },
            *(footer or []),
        ],
    }


EDIT_MAX_LENGTH = 1600


def edit_modal(text: str, metadata: dict[str, Any], *, drafts: int = 0, notice: str = "") -> Block:
    """The Edit modal of an approval: the text box, the Shorten and Translate buttons, and a
    line saying what the last draft did (notice, mrkdwn) when there is one. Slack refreshes a
    text box's value only when its block id changes, so the box of the modal showing the
    drafts-th draft has a block id of its own (`text`, `text-1`, `text-2`, ...); its action id
    stays TEXT_BLOCK, which is how `edited_text` finds it."""
    footer: list[Block] = [
        {
            "type": "actions",
            "block_id": "drafts",
            "elements": [
                _button(SHORTEN, "Shorten", {}),
                _button(TRANSLATE, "Translate", {}),
            ],
        }
    ]
    if notice:  # Slack refuses a text object over 3,000 characters
        shown = notice if len(notice) <= 2000 else notice[:1999] + "…"
        footer.append({**_context(shown), "block_id": "draft_notice"})
    footer.append(
        _context(
            "Sent only when you press *Approve & send*; the send window still applies."
            " Shorten and Translate only fill the box."
        )
    )
    return _text_modal(
        EDIT_MODAL,
        {**metadata, "d": drafts},
        "Edit the text",
        "Approve & send",
        TEXT_BLOCK,
        "Text to send (exactly as written)",
        EDIT_MAX_LENGTH,
        initial=text,
        footer=footer,
        block_id=TEXT_BLOCK if drafts == 0 else f"{TEXT_BLOCK}-{drafts}",
    )


def edited_text(view: dict[str, Any]) -> tuple[str, str]:
    """(block id, value) of the edit modal's text box in a view's state: whichever block holds
    the TEXT_BLOCK field (its block id changes with each draft). ("", "") when none does."""
    values = view.get("state", {}).get("values", {}) or {}
    for block_id, fields in values.items():
        if isinstance(fields, dict) and isinstance(fields.get(TEXT_BLOCK), dict):
            return str(block_id), str(fields[TEXT_BLOCK].get("value") or "")
    return "", ""


def reject_modal(metadata: dict[str, Any]) -> Block:
    return _text_modal(
        REJECT_MODAL,
        metadata,
        "Reject the override",
        "Reject",
        REASON_BLOCK,
        "What should the location change?",
        500,
    )


def report_summary(place: str, period: str, summary: ReportSummary) -> str:
    """A location's numbers as mrkdwn: `*Downtown*, last 30 days: 3 enrolled · …`, then a line
    per health flag."""
    lines = [f"*{esc(place)}*, {period}: " + " · ".join(esc(p) for p in summary.parts())]
    lines += [f":warning: {esc(flag)}" for flag in summary.flags]
    return "\n".join(lines)


def digest_message(notice: Notice, facts: NoticeFacts) -> tuple[str, list[Block]]:
    """The weekly digest (tenants.reports.digest): the location's last week in numbers."""
    summary = ReportSummary.from_payload(notice.payload)
    period = (
        f"the week of {summary.start:%b} {summary.start.day} to {summary.end:%b} {summary.end.day}"
    )
    place = facts.location_name
    location_id = notice.location.location_id or ""
    return f"Weekly digest for {esc(place)}: {summary.sent:,} texts sent", [
        _section(f":bar_chart: {report_summary(place, period, summary)}"),
        _context(
            "The full report: `reengage report --location"
            f" {esc(location_id)} --from {summary.start} --to {summary.end}`"
        ),
    ]


def webhook_disabled_message(notice: Notice) -> tuple[str, list[Block]]:
    """A webhook endpoint was disabled (tenants.integrations.deliveries): which, why, and how
    to turn it back on."""
    p = notice.payload
    endpoint = str(p.get("endpoint", ""))
    why = (
        "its server answered 410 Gone (it asked for no more deliveries)"
        if p.get("reason") == "gone"
        else "every delivery to it has failed for 3 days"
    )
    failed = int(p.get("failed_deliveries", 0))
    return f"Webhook endpoint disabled: {esc(endpoint)}", [
        _section(
            f":warning: *Webhook endpoint disabled* — `{esc(endpoint)}`"
            f" ({esc(str(p.get('host', '')))}): {why}."
        ),
        _context(
            f"{failed} pending deliver{'y' if failed == 1 else 'ies'} failed with it. Fix the"
            f" receiver, then: `reengage webhooks update {esc(endpoint)} --enable`"
        ),
    ]
