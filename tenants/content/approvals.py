"""The approval workflow of overrides: DRAFT → PENDING_APPROVAL → APPROVED | REJECTED.

A location submits its override; only franchisor principals approve or reject it (the access
module's TEMPLATE_APPROVE). Each step appends a revision with the same body and the new state, so
the history says who moved it and when; the latest approved revision is the live one.

An override covers one language at a time: each language's text (the default language's or a
variant's, `language`) moves through the states on its own, so rejecting the Spanish text leaves
the English one as it was.
"""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection

from tenants.content.templates import (
    NewRevision,
    RevisionState,
    Template,
    check_not_archived,
    check_template_etag,
    checked_language,
    load_template,
    write_template,
)
from tenants.core.errors import FailedPrecondition, FieldViolation, InvalidArgument, NotFound
from tenants.core.names import ChildName
from tenants.followups.notices import NoticeKind, owe_notice
from tenants.org import audit
from tenants.org.access import Action, Principal, authorize

MAX_REASON = 500


async def _move(
    conn: AsyncConnection[Any],
    principal: Principal,
    name: ChildName,
    etag: str,
    allowed_from: set[RevisionState],
    to: RevisionState,
    action: str,
    reason: str = "",
    language: str = "",
) -> Template:
    """Moves the text in `language` (a normalized tag, "" for the default language's)."""
    async with conn.transaction():
        template = await load_template(conn, name, lock=True)
        check_template_etag(template, etag)
        check_not_archived(template)
        if not template.is_override:
            raise FailedPrecondition(
                f"{name.name} is not an override: only overrides go through approval",
                reason="NOT_AN_OVERRIDE",
            )
        variant = template.variant(language)
        if variant is None:
            raise NotFound(
                f"{name.name} has no {language} text: write one with UpdateTemplate first",
                resource=name.name,
            )
        which = "" if template.is_default_language(language) else f" ({language})"
        if variant.latest_state not in allowed_from:
            raise FailedPrecondition(
                f"{name.name}{which} is {variant.latest_state.value.upper()}; {action} needs "
                + " or ".join(s.value.upper() for s in sorted(allowed_from)),
                reason="WRONG_APPROVAL_STATE",
                state=variant.latest_state.value,
            )
        number = await write_template(
            conn,
            principal,
            template,
            revision=NewRevision(variant.latest_body, to, reason),
            language=language,
        )
        await audit.record(
            conn,
            principal,
            f"template.{action}",
            name.name,
            name.scope.franchisor_id,
            revision=number,
            reason=reason or None,
            language=variant.language,
        )
    return await load_template(conn, name)


async def submit_template(
    conn: AsyncConnection[Any],
    principal: Principal,
    name: ChildName,
    etag: str,
    language: str = "",
) -> Template:
    """Submits an override's DRAFT or REJECTED text in `language` ("" or the default language:
    its own text; another BCP-47 tag: that variant) to the brand."""
    authorize(principal, Action.TEMPLATE_WRITE, name.scope)
    language = checked_language(language)
    async with conn.transaction():
        submitted = await _move(
            conn,
            principal,
            name,
            etag,
            {RevisionState.DRAFT, RevisionState.REJECTED},
            RevisionState.PENDING_APPROVAL,
            "submit",
            language=language,
        )
        variant = submitted.variant(language)
        assert variant is not None
        # the brand's admins decide it: in the brand channel when Slack is set up
        await owe_notice(
            conn,
            NoticeKind.OVERRIDE_SUBMITTED,
            name.scope,
            "",
            f"{name.name}@{variant.latest_revision}",
            template=name.name,
            display_name=submitted.display_name,
            brand_template=submitted.override_of_name,
            body=variant.latest_body,
            etag=submitted.etag,
            revision=variant.latest_revision,  # what the decision is about (Slack's buttons)
            submitted_by=principal.label,
            # a variant's decision must name it too (ApproveTemplate/RejectTemplate `language`)
            **({} if submitted.is_default_language(language) else {"language": language}),
        )
    return submitted


async def approve_template(
    conn: AsyncConnection[Any],
    principal: Principal,
    name: ChildName,
    etag: str,
    language: str = "",
) -> Template:
    """Approves an override's PENDING_APPROVAL text in `language`: it becomes that language's
    live text at the location."""
    authorize(principal, Action.TEMPLATE_APPROVE, name.scope)
    return await _move(
        conn,
        principal,
        name,
        etag,
        {RevisionState.PENDING_APPROVAL},
        RevisionState.APPROVED,
        "approve",
        language=checked_language(language),
    )


async def reject_template(
    conn: AsyncConnection[Any],
    principal: Principal,
    name: ChildName,
    etag: str,
    reason: str,
    language: str = "",
) -> Template:
    """Rejects an override's PENDING_APPROVAL text in `language` with a reason; the other
    languages' texts are untouched."""
    authorize(principal, Action.TEMPLATE_APPROVE, name.scope)
    if not reason.strip():
        raise InvalidArgument([FieldViolation("reason", "is required: say what to change")])
    if len(reason) > MAX_REASON:
        raise InvalidArgument([FieldViolation("reason", f"is longer than {MAX_REASON}")])
    return await _move(
        conn,
        principal,
        name,
        etag,
        {RevisionState.PENDING_APPROVAL},
        RevisionState.REJECTED,
        "reject",
        reason.strip(),
        language=checked_language(language),
    )
