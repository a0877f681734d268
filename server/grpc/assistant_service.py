"""reengage.v1.AssistantService: a thin translator between protobuf and `tenants.assistant`.

Asking for a draft is ASSISTANT_DRAFT on the parent (tenants.org.access), decided on its name
before any lookup. The parent's brand name is a protected token. A draft is returned, never
stored: nothing here writes to the database.
"""

from __future__ import annotations

from typing import Any

import grpc
from psycopg_pool import AsyncConnectionPool

from reengage.v1 import assistant_pb2 as pb
from reengage.v1 import assistant_pb2_grpc
from server.grpc.auth import principal
from tenants.assistant.drafts import (
    AssistantSettings,
    Draft,
    Goal,
    rewrite_message,
    rewriter_from,
    translate_message,
    translator_from,
)
from tenants.core.errors import Violations
from tenants.core.names import TenantScope, parse_scope
from tenants.org.access import Action, authorize
from tenants.org.franchisors import brand_name
from tenants.org.locations import check_exists

GOALS_FROM_PB = {
    pb.REWRITE_GOAL_FIT_SEGMENTS: Goal.FIT_SEGMENTS,
    pb.REWRITE_GOAL_GSM7_ONLY: Goal.GSM7_ONLY,
    pb.REWRITE_GOAL_FRIENDLIER: Goal.FRIENDLIER,
    pb.REWRITE_GOAL_SHORTER: Goal.SHORTER,
    pb.REWRITE_GOAL_MORE_DIRECT: Goal.MORE_DIRECT,
}


def draft_pb(draft: Draft) -> pb.MessageDraft:
    return pb.MessageDraft(
        text=draft.text,
        segments=draft.segments,
        encoding=draft.encoding,
        protected_tokens=[pb.ProtectedToken(kind=t.kind, text=t.text) for t in draft.protected],
        provider=draft.provider,
        fits=draft.fits,
        notes=list(draft.notes),
    )


def goals_input(request: pb.RewriteMessageRequest) -> tuple[Goal, ...]:
    """The request's goals, in order; INVALID_ARGUMENT naming each one that is no goal
    (UNSPECIFIED). An empty list, the segment budget and the text are the domain's to judge."""
    problems = Violations()
    goals: list[Goal] = []
    for index, number in enumerate(request.goals):
        goal = GOALS_FROM_PB.get(number)
        if goal is None:
            problems.add(f"goals[{index}]", f"{number} is not a goal (UNSPECIFIED is none)")
        else:
            goals.append(goal)
    problems.raise_if_any()
    return tuple(goals)


class AssistantService(assistant_pb2_grpc.AssistantServiceServicer):
    def __init__(self, pool: AsyncConnectionPool[Any], settings: AssistantSettings) -> None:
        self._pool = pool
        self._settings = settings

    async def _brand_of(self, scope: TenantScope) -> str:
        """The parent's brand name, once the caller may ask there and the parent exists."""
        authorize(principal(), Action.ASSISTANT_DRAFT, scope)
        async with self._pool.connection() as conn:
            await check_exists(conn, scope)
            return await brand_name(conn, scope.franchisor_id)

    async def RewriteMessage(
        self, request: pb.RewriteMessageRequest, context: grpc.aio.ServicerContext
    ) -> pb.MessageDraft:
        scope = parse_scope(request.parent, "parent")
        goals = goals_input(request)
        brand = await self._brand_of(scope)
        draft = await rewrite_message(
            rewriter_from(self._settings),
            request.text,
            goals,
            request.max_segments,
            brand_name=brand,
        )
        return draft_pb(draft)

    async def TranslateMessage(
        self, request: pb.TranslateMessageRequest, context: grpc.aio.ServicerContext
    ) -> pb.MessageDraft:
        scope = parse_scope(request.parent, "parent")
        brand = await self._brand_of(scope)
        draft = await translate_message(
            translator_from(self._settings),
            request.text,
            request.target_language,
            request.source_language or "en",
            brand_name=brand,
        )
        return draft_pb(draft)
