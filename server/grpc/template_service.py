"""reengage.v1.TemplateService: a thin translator between protobuf and
`tenants.content.templates`."""

from __future__ import annotations

from typing import Any

import grpc
from psycopg_pool import AsyncConnectionPool

from reengage.v1 import templates_pb2 as pb
from reengage.v1 import templates_pb2_grpc
from server.grpc.auth import principal
from server.grpc.converters import ENCODING_TO_PB, PB_TO_SCOPE, require, timestamp
from tenants.content import approvals as template_approvals
from tenants.content import templates
from tenants.content.bodies import SAMPLE_CONTEXT, preview_link_maker
from tenants.content.placeholders import parse, render
from tenants.content.previews import PreviewRequest, SampleContact, preview_template
from tenants.content.segments import count
from tenants.core.errors import FieldViolation, InvalidArgument
from tenants.core.names import parse_child, parse_location, parse_scope
from tenants.core.pagination import page_request
from tenants.org.listing import ListScope

LOCK_TO_PB = {
    templates.LockMode.LOCKED: pb.LOCK_MODE_LOCKED,
    templates.LockMode.EDITABLE: pb.LOCK_MODE_EDITABLE,
}
PB_TO_LOCK = {v: k for k, v in LOCK_TO_PB.items()}
STATE_TO_PB = {
    templates.RevisionState.DRAFT: pb.APPROVAL_STATE_DRAFT,
    templates.RevisionState.PENDING_APPROVAL: pb.APPROVAL_STATE_PENDING_APPROVAL,
    templates.RevisionState.APPROVED: pb.APPROVAL_STATE_APPROVED,
    templates.RevisionState.REJECTED: pb.APPROVAL_STATE_REJECTED,
}
PB_TO_STATE = {v: k for k, v in STATE_TO_PB.items()}


class TemplateService(templates_pb2_grpc.TemplateServiceServicer):
    def __init__(self, pool: AsyncConnectionPool[Any], public_url: str) -> None:
        self._pool = pool
        self._public_url = public_url

    def _template_pb(self, t: templates.Template) -> pb.Template:
        sample = render(parse(t.latest_body), SAMPLE_CONTEXT, preview_link_maker(self._public_url))
        segments = count(sample.preview)
        kind = (
            pb.TEMPLATE_KIND_BRAND
            if t.is_brand
            else pb.TEMPLATE_KIND_OVERRIDE
            if t.is_override
            else pb.TEMPLATE_KIND_LOCATION
        )
        return pb.Template(
            name=t.name.name,
            display_name=t.display_name,
            body=t.latest_body,
            lock_mode=LOCK_TO_PB[t.lock_mode] if t.is_brand else pb.LOCK_MODE_UNSPECIFIED,
            override_of=t.override_of_name,
            kind=kind,
            state=STATE_TO_PB[t.latest_state],
            latest_revision=t.revision_name(t.latest_revision),
            live_revision=t.revision_name(t.live_revision),
            live_body=t.live_body or "",
            archived=t.archived,
            encoding=ENCODING_TO_PB[segments.encoding],
            segment_count=segments.segments,
            create_time=timestamp(t.create_time),
            update_time=timestamp(t.update_time),
            etag=t.etag,
            default_language=t.default_language,
            variants=[
                pb.TemplateVariant(
                    language=v.language,
                    latest_revision=t.revision_name(v.latest_revision),
                    latest_state=STATE_TO_PB[v.latest_state],
                    latest_body=v.latest_body,
                    live_revision=t.revision_name(v.live_revision),
                    live_body=v.live_body or "",
                )
                for v in t.variants
            ],
        )

    async def CreateTemplate(
        self, request: pb.CreateTemplateRequest, context: grpc.aio.ServicerContext
    ) -> pb.Template:
        parent = parse_scope(request.parent, "parent")
        require(request, "template")
        t = request.template
        data = templates.TemplateInput(
            display_name=t.display_name,
            body=t.body,
            lock_mode=PB_TO_LOCK.get(t.lock_mode),
            override_of=t.override_of,
            default_language=t.default_language,
        )
        async with self._pool.connection() as conn:
            created = await templates.create_template(
                conn, principal(), parent, request.template_id, data, self._public_url
            )
        return self._template_pb(created)

    async def GetTemplate(
        self, request: pb.GetTemplateRequest, context: grpc.aio.ServicerContext
    ) -> pb.Template:
        name = parse_child(request.name, templates.COLLECTION)
        async with self._pool.connection() as conn:
            return self._template_pb(await templates.get_template(conn, principal(), name))

    async def ListTemplates(
        self, request: pb.ListTemplatesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListTemplatesResponse:
        parent = parse_scope(request.parent, "parent")
        if request.scope not in PB_TO_SCOPE:
            raise InvalidArgument([FieldViolation("scope", f"unknown scope {request.scope}")])
        where = templates.TemplateFilter(
            scope=PB_TO_SCOPE.get(request.scope, ListScope.DEFAULT),
            state=PB_TO_STATE.get(request.state),
            text=request.text,
            show_archived=request.show_archived,
        )
        list_name = (
            f"{parent.name}/templates?scope={where.scope}&state={where.state}"
            f"&text={where.text}&archived={where.show_archived}"
        )
        page = page_request(list_name, request.page_size, request.page_token)
        async with self._pool.connection() as conn:
            found, token = await templates.list_templates(conn, principal(), parent, page, where)
        return pb.ListTemplatesResponse(
            templates=[self._template_pb(t) for t in found], next_page_token=token
        )

    async def UpdateTemplate(
        self, request: pb.UpdateTemplateRequest, context: grpc.aio.ServicerContext
    ) -> pb.Template:
        require(request, "template")
        name = parse_child(request.template.name, templates.COLLECTION, "template.name")
        t = request.template
        data = templates.TemplateInput(
            display_name=t.display_name,
            body=t.body,
            lock_mode=PB_TO_LOCK.get(t.lock_mode),
        )
        async with self._pool.connection() as conn:
            updated = await templates.update_template(
                conn,
                principal(),
                name,
                data,
                list(request.update_mask.paths),
                t.etag,
                self._public_url,
                request.language,
            )
        return self._template_pb(updated)

    async def ArchiveTemplate(
        self, request: pb.ArchiveTemplateRequest, context: grpc.aio.ServicerContext
    ) -> pb.Template:
        name = parse_child(request.name, templates.COLLECTION)
        async with self._pool.connection() as conn:
            archived = await templates.archive_template(conn, principal(), name, request.etag)
        return self._template_pb(archived)

    async def ListTemplateRevisions(
        self, request: pb.ListTemplateRevisionsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListTemplateRevisionsResponse:
        name = parse_child(request.name, templates.COLLECTION)
        page = page_request(f"{name.name}/revisions", request.page_size, request.page_token)
        async with self._pool.connection() as conn:
            found, token = await templates.list_revisions(conn, principal(), name, page)
        return pb.ListTemplateRevisionsResponse(
            revisions=[
                pb.TemplateRevision(
                    name=r.name,
                    body=r.body,
                    state=STATE_TO_PB[r.state],
                    author=r.author,
                    reason=r.reason,
                    create_time=timestamp(r.create_time),
                    language=r.language,
                )
                for r in found
            ],
            next_page_token=token,
        )

    async def PreviewTemplate(
        self, request: pb.PreviewTemplateRequest, context: grpc.aio.ServicerContext
    ) -> pb.PreviewTemplateResponse:
        contact = None
        if request.HasField("contact"):
            c = request.contact
            contact = SampleContact(
                c.first_name,
                c.last_name,
                dict(c.attrs),
                c.last_purchase_item,
                c.last_activity_date,
            )
        ask = PreviewRequest(
            template=parse_child(request.name, templates.COLLECTION) if request.name else None,
            body=request.body,
            location=parse_location(request.location, "location") if request.location else None,
            contact=contact,
            first_message=request.first_message,
            language=request.language,
        )
        async with self._pool.connection() as conn:
            result = await preview_template(conn, principal(), ask, self._public_url)
        p = result.preview
        return pb.PreviewTemplateResponse(
            text=p.text,
            encoding=ENCODING_TO_PB[p.segments.encoding],
            segment_count=p.segments.segments,
            unicode_characters=[
                pb.UnicodeCharacter(
                    character=u.character,
                    position=u.position,
                    replacement=u.replacement or "",
                    has_replacement=u.replacement is not None,
                )
                for u in p.segments.unicode_characters
            ],
            gsm7_text=p.gsm7_text,
            gsm7_segment_count=p.gsm7_segments.segments,
            missing_variables=list(p.rendering.missing),
            warnings=[*result.notes, *p.warnings],
            revision=result.revision_name,
        )

    async def SubmitTemplate(
        self, request: pb.SubmitTemplateRequest, context: grpc.aio.ServicerContext
    ) -> pb.Template:
        name = parse_child(request.name, templates.COLLECTION)
        async with self._pool.connection() as conn:
            done = await template_approvals.submit_template(
                conn, principal(), name, request.etag, request.language
            )
        return self._template_pb(done)

    async def ApproveTemplate(
        self, request: pb.ApproveTemplateRequest, context: grpc.aio.ServicerContext
    ) -> pb.Template:
        name = parse_child(request.name, templates.COLLECTION)
        async with self._pool.connection() as conn:
            done = await template_approvals.approve_template(
                conn, principal(), name, request.etag, request.language
            )
        return self._template_pb(done)

    async def RejectTemplate(
        self, request: pb.RejectTemplateRequest, context: grpc.aio.ServicerContext
    ) -> pb.Template:
        name = parse_child(request.name, templates.COLLECTION)
        async with self._pool.connection() as conn:
            done = await template_approvals.reject_template(
                conn, principal(), name, request.etag, request.reason, request.language
            )
        return self._template_pb(done)
