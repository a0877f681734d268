"""The approval workflow of overrides: DRAFT → PENDING_APPROVAL → APPROVED | REJECTED.

A location submits its override; only franchisor principals approve or reject it (the access
module's TEMPLATE_APPROVE). Each step appends a revision with the same body and the new state, so
the history says who moved it and when; the latest approved revision is the live one.
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
    load_template,
    write_template,
)
from tenants.core.errors import FailedPrecondition, FieldViolation, InvalidArgument
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
) -> Template:
    async with conn.transaction():
        template = await load_template(conn, name, lock=True)
        check_template_etag(template, etag)
        check_not_archived(template)
        if not template.is_override:
            raise FailedPrecondition(
                f"{name.name} is not an override: only overrides go through approval",
                reason="NOT_AN_OVERRIDE",
            )
        if template.latest_state not in allowed_from:
            raise FailedPrecondition(
                f"{name.name} is {template.latest_state.value.upper()}; {action} needs "
                + " or ".join(s.value.upper() for s in sorted(allowed_from)),
                reason="WRONG_APPROVAL_STATE",
                state=template.latest_state.value,
            )
        await write_template(
            conn, principal, template, revision=NewRevision(template.latest_body, to, reason)
        )
        await audit.record(
            conn,
            principal,
            f"template.{action}",
            name.name,
            name.scope.franchisor_id,
            revision=template.latest_revision + 1,
            reason=reason or None,
        )
    return await load_template(conn, name)


async def submit_template(
    conn: AsyncConnection[Any], principal: Principal, name: ChildName, etag: str
) -> Template:
    authorize(principal, Action.TEMPLATE_WRITE, name.scope)
    async with conn.transaction():
        submitted = await _move(
            conn,
            principal,
            name,
            etag,
            {RevisionState.DRAFT, RevisionState.REJECTED},
            RevisionState.PENDING_APPROVAL,
            "submit",
        )
        # the brand's admins decide it: in the brand channel when Slack is set up
        await owe_notice(
            conn,
            NoticeKind.OVERRIDE_SUBMITTED,
            name.scope,
            "",
            f"{name.name}@{submitted.latest_revision}",
            template=name.name,
            display_name=submitted.display_name,
            brand_template=submitted.override_of_name,
            body=submitted.latest_body,
            etag=submitted.etag,
            submitted_by=principal.label,
        )
    return submitted


async def approve_template(
    conn: AsyncConnection[Any], principal: Principal, name: ChildName, etag: str
) -> Template:
    authorize(principal, Action.TEMPLATE_APPROVE, name.scope)
    return await _move(
        conn,
        principal,
        name,
        etag,
        {RevisionState.PENDING_APPROVAL},
        RevisionState.APPROVED,
        "approve",
    )


async def reject_template(
    conn: AsyncConnection[Any], principal: Principal, name: ChildName, etag: str, reason: str
) -> Template:
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
    )
