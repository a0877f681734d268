"""reengage.v1.ContactService: a thin translator between protobuf and the contact modules."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import grpc
from google.protobuf import timestamp_pb2
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from reengage.v1 import contacts_pb2 as pb
from reengage.v1 import contacts_pb2_grpc
from server.grpc import request_checks
from server.grpc.auth import principal
from server.grpc.converters import STATUS_TO_PB, require, timestamp
from tenants.compliance.zones import ZoneSource
from tenants.contacts import consent, contacts
from tenants.contacts import importing as contact_import
from tenants.core.errors import FieldViolation, InvalidArgument
from tenants.core.names import ChildName, parse_child, parse_scope
from tenants.core.pagination import page_request
from tenants.enrollment import triggers
from tenants.inbound import review_queue
from tenants.messages import conversation
from tenants.org.access import Principal
from tenants.reports import evidence
from workflows.relay import FollowupRelay

SOURCE_TO_PB = {
    ZoneSource.EXPLICIT: pb.TIME_ZONE_SOURCE_EXPLICIT,
    ZoneSource.ADDRESS: pb.TIME_ZONE_SOURCE_ADDRESS,
    ZoneSource.AREA_CODE: pb.TIME_ZONE_SOURCE_AREA_CODE,
    ZoneSource.LOCATION_DEFAULT: pb.TIME_ZONE_SOURCE_LOCATION_DEFAULT,
}
CONSENT_TO_PB = {
    contacts.ConsentState.NONE: pb.CONSENT_STATE_NONE,
    contacts.ConsentState.GRANTED: pb.CONSENT_STATE_GRANTED,
    contacts.ConsentState.REVOKED: pb.CONSENT_STATE_REVOKED,
}
PB_TO_CONSENT = {v: k for k, v in CONSENT_TO_PB.items()}
CHANNEL_TO_PB = {
    c: pb.ConsentChannel.Value(f"CONSENT_CHANNEL_{c.name}") for c in consent.ConsentChannel
}
PB_TO_CHANNEL = {v: k for k, v in CHANNEL_TO_PB.items()}
KIND_TO_PB = {
    consent.ConsentKind.GRANT: pb.CONSENT_KIND_GRANT,
    consent.ConsentKind.REVOKE: pb.CONSENT_KIND_REVOKE,
}
PB_TO_KIND = {v: k for k, v in KIND_TO_PB.items()}


def when(ts: timestamp_pb2.Timestamp, present: bool) -> datetime | None:
    return ts.ToDatetime(tzinfo=UTC) if present else None


def contact_pb(c: contacts.Contact) -> pb.Contact:
    return pb.Contact(
        name=c.name.name,
        phone_number=c.phone_e164,
        first_name=c.first_name,
        last_name=c.last_name,
        email=c.email,
        attributes=c.attrs,
        time_zone=c.explicit_zone,
        address_region=c.address_state,
        effective_time_zones=list(c.zones),
        time_zone_source=SOURCE_TO_PB[c.zone_source],
        rule_regions=list(c.states),
        consent_state=CONSENT_TO_PB[c.consent_state],
        opted_out=c.opted_out,
        opt_out_time=timestamp(c.opted_out_at),
        last_reply_time=timestamp(c.last_reply_at),
        last_click_time=timestamp(c.last_click_at),
        last_purchase_time=timestamp(c.last_purchase_at),
        last_activity_time=timestamp(c.last_activity_at),
        create_time=timestamp(c.create_time),
        update_time=timestamp(c.update_time),
        etag=c.etag,
        undeliverable=c.undeliverable,
        undeliverable_time=timestamp(c.undeliverable_at),
        undeliverable_error_code=c.undeliverable_code,
    )


def contact_input(m: pb.Contact) -> contacts.ContactInput:
    return contacts.ContactInput(
        phone_number=m.phone_number,
        first_name=m.first_name,
        last_name=m.last_name,
        email=m.email,
        attrs=dict(m.attributes),
        time_zone=m.time_zone,
        address_region=m.address_region,
    )


def evidence_input(m: pb.ConsentEvidence, field: str) -> consent.ConsentEvidence:
    kind = PB_TO_KIND.get(m.kind)  # type: ignore[call-overload]
    if kind is None:
        raise InvalidArgument([FieldViolation(f"{field}.kind", "is required: GRANT or REVOKE")])
    return consent.ConsentEvidence(
        kind=kind,
        channel=PB_TO_CHANNEL.get(m.channel),  # type: ignore[call-overload]
        occurred_at=when(m.occurred_at, m.HasField("occurred_at")),
        scope=consent.ConsentScope.BRAND
        if m.scope == pb.CONSENT_SCOPE_BRAND
        else consent.ConsentScope.LOCATION,
        source=m.source,
        disclosure_text=m.disclosure_text,
        ip_address=m.ip_address,
        user_agent=m.user_agent,
        raw_text=m.raw_text,
    )


def consent_event_pb(e: consent.ConsentEvent) -> pb.ConsentEvent:
    ev = e.evidence
    return pb.ConsentEvent(
        name=f"{e.contact.name}/consentEvents/{e.id}",
        evidence=pb.ConsentEvidence(
            kind=KIND_TO_PB[ev.kind],
            channel=CHANNEL_TO_PB[ev.channel] if ev.channel else pb.CONSENT_CHANNEL_UNSPECIFIED,
            occurred_at=timestamp(ev.occurred_at),
            scope=pb.CONSENT_SCOPE_BRAND
            if ev.scope is consent.ConsentScope.BRAND
            else pb.CONSENT_SCOPE_LOCATION,
            source=ev.source,
            disclosure_text=ev.disclosure_text,
            ip_address=ev.ip_address,
            user_agent=ev.user_agent,
            raw_text=ev.raw_text,
        ),
        disclosure_sha256=e.disclosure_sha256,
        record_time=timestamp(e.recorded_at),
        recorded_by=e.recorded_by,
    )


HANDLING_TO_PB = {"opt_out": pb.FLAGGED_HANDLING_OPT_OUT, "reply": pb.FLAGGED_HANDLING_REPLY}
RESOLUTION_TO_PB = {
    review_queue.Resolution.OPT_OUT: pb.FLAGGED_RESOLUTION_OPT_OUT,
    review_queue.Resolution.NOT_OPT_OUT: pb.FLAGGED_RESOLUTION_NOT_OPT_OUT,
}
PB_TO_RESOLUTION = {v: k for k, v in RESOLUTION_TO_PB.items()}
PB_TO_REVIEW_STATE = {
    pb.FLAGGED_REVIEW_STATE_UNSPECIFIED: review_queue.ReviewState.UNRESOLVED,
    pb.FLAGGED_REVIEW_STATE_UNRESOLVED: review_queue.ReviewState.UNRESOLVED,
    pb.FLAGGED_REVIEW_STATE_RESOLVED: review_queue.ReviewState.RESOLVED,
    pb.FLAGGED_REVIEW_STATE_ALL: review_queue.ReviewState.ALL,
}


def flagged_pb(m: review_queue.FlaggedMessage) -> pb.FlaggedMessage:
    return pb.FlaggedMessage(
        name=m.name.name,
        contact=m.contact.name if m.contact else "",
        body=m.body,
        receive_time=timestamp(m.received_at),
        handled_as=HANDLING_TO_PB.get(m.handled_as, pb.FLAGGED_HANDLING_UNSPECIFIED),
        review_reason=m.review_reason,
        resolution=RESOLUTION_TO_PB[m.resolution]
        if m.resolution
        else pb.FLAGGED_RESOLUTION_UNSPECIFIED,
        resolve_time=timestamp(m.resolved_at),
        resolved_by=m.resolved_by,
        note=m.note,
        resolution_effect=m.effect,
    )


async def subject(
    conn: AsyncConnection[Any], who: Principal, request: pb.ExportContactEvidenceRequest
) -> ChildName:
    """The contact named by `contact`, or found by `location` and `phone_number`."""
    if request.contact:
        if request.location or request.phone_number:
            raise InvalidArgument(
                [FieldViolation("contact", "give either contact, or location and phone_number")]
            )
        return parse_child(request.contact, contacts.COLLECTION, "contact")
    if not request.location:
        raise InvalidArgument(
            [FieldViolation("contact", "is required, or location and phone_number")]
        )
    location = parse_scope(request.location, "location")
    return await evidence.find_contact(conn, who, location, request.phone_number)


def record_pb(item: evidence.EvidenceItem) -> pb.EvidenceRecord:
    """One exported item as an `EvidenceRecord` (ExportContactEvidence)."""
    if isinstance(item, evidence.EvidenceHeader):
        scope = item.contact.location
        return pb.EvidenceRecord(
            header=pb.EvidenceHeader(
                contact=contact_pb(item.contact),
                franchisor=scope.franchisor.name,
                franchisor_display_name=item.franchisor_display_name,
                location=scope.name,
                location_display_name=item.location_display_name,
                rules_version=item.rules_version,
                generate_time=timestamp(item.generated_at),
                generated_by=item.generated_by,
            )
        )
    if isinstance(item, consent.ConsentEvent):
        return pb.EvidenceRecord(consent_event=consent_event_pb(item))
    if isinstance(item, evidence.EnrollmentHistory):
        return pb.EvidenceRecord(
            enrollment=pb.EvidenceEnrollment(
                name=item.name.name,
                sequence=item.sequence.name,
                sequence_display_name=item.sequence_display_name,
                sequence_version=item.sequence_version,
                status=STATUS_TO_PB[item.status],
                exit_reason=item.exit_reason,
                current_step=item.current_step,
                enroll_time=timestamp(item.enrolled_at),
                end_time=timestamp(item.ended_at),
                enrolled_by=item.enrolled_by,
            )
        )
    if isinstance(item, evidence.SentText):
        return pb.EvidenceRecord(
            outbound_message=pb.EvidenceOutboundMessage(
                name=item.name,
                create_time=timestamp(item.created_at),
                from_number=item.from_number,
                to_number=item.to_number,
                body=item.body,
                encoding=item.encoding,
                segments=item.segments,
                purpose=item.purpose,
                enrollment=item.enrollment,
                step_index=item.step_index,
                template_revision=item.template_revision,
                carrier=item.carrier,
                carrier_message_id=item.carrier_message_id,
                status=item.status,
                error_code=item.error_code,
                status_time=timestamp(item.status_at),
                rules_version=item.rules_version,
            )
        )
    if isinstance(item, evidence.ReceivedText):
        return pb.EvidenceRecord(
            inbound_message=pb.EvidenceInboundMessage(
                name=item.name,
                inbound_id=item.inbound_id,
                receive_time=timestamp(item.received_at),
                from_number=item.from_number,
                to_number=item.to_number,
                body=item.body,
                carrier=item.carrier,
                carrier_message_id=item.carrier_message_id,
                classification=item.classification,
                keyword=item.keyword,
                review_reason=item.review_reason,
                review_time=timestamp(item.reviewed_at),
                resolution=item.resolution,
                resolved_by=item.resolved_by,
                review_note=item.review_note,
            )
        )
    return pb.EvidenceRecord(
        summary=pb.EvidenceSummary(
            consent_events=item.consent_events,
            enrollments=item.enrollments,
            outbound_messages=item.outbound_messages,
            inbound_messages=item.inbound_messages,
        )
    )


class ContactService(contacts_pb2_grpc.ContactServiceServicer):
    def __init__(self, pool: AsyncConnectionPool[Any], relay: FollowupRelay | None = None) -> None:
        self._pool = pool
        self._relay = relay  # delivers what an activity owes at once (else the relay's loop)
        self._deliveries: set[asyncio.Task[Any]] = set()

    def _deliver_soon(self, ids: tuple[int, ...]) -> None:
        """Deliver what a call owes in the background (held until done); without a relay, the
        relay's loop delivers it."""
        if self._relay is None:
            return
        task = asyncio.create_task(self._relay.deliver(ids))
        self._deliveries.add(task)
        task.add_done_callback(self._deliveries.discard)

    async def CreateContact(
        self, request: pb.CreateContactRequest, context: grpc.aio.ServicerContext
    ) -> pb.Contact:
        parent = parse_scope(request.parent, "parent")
        require(request, "contact")
        async with self._pool.connection() as conn:
            created = await contacts.create_contact(
                conn, principal(), parent, request.contact_id, contact_input(request.contact)
            )
        return contact_pb(created)

    async def GetContact(
        self, request: pb.GetContactRequest, context: grpc.aio.ServicerContext
    ) -> pb.Contact:
        name = parse_child(request.name, contacts.COLLECTION)
        async with self._pool.connection() as conn:
            return contact_pb(await contacts.get_contact(conn, principal(), name))

    async def ListContacts(
        self, request: pb.ListContactsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListContactsResponse:
        parent = parse_scope(request.parent, "parent")
        where = contacts.ContactFilter(
            opted_out={
                pb.OPT_OUT_FILTER_OPTED_OUT: True,
                pb.OPT_OUT_FILTER_NOT_OPTED_OUT: False,
            }.get(request.opt_out),
            consent_state=PB_TO_CONSENT.get(request.consent_state),  # type: ignore[call-overload]
            inactive_since=when(request.inactive_since, request.HasField("inactive_since")),
        )
        list_name = f"{parent.name}/contacts?{where}"
        page = page_request(list_name, request.page_size, request.page_token)
        async with self._pool.connection() as conn:
            found, token = await contacts.list_contacts(conn, principal(), parent, page, where)
        return pb.ListContactsResponse(
            contacts=[contact_pb(c) for c in found], next_page_token=token
        )

    async def UpdateContact(
        self, request: pb.UpdateContactRequest, context: grpc.aio.ServicerContext
    ) -> pb.Contact:
        require(request, "contact")
        name = parse_child(request.contact.name, contacts.COLLECTION, "contact.name")
        async with self._pool.connection() as conn:
            updated = await contacts.update_contact(
                conn,
                principal(),
                name,
                contact_input(request.contact),
                list(request.update_mask.paths),
                request.contact.etag,
            )
        return contact_pb(updated)

    async def ImportContacts(
        self,
        request_iterator: AsyncIterator[pb.ImportContactsRequest],
        context: grpc.aio.ServicerContext,
    ) -> pb.ImportContactsResponse:
        run: contact_import.ImportRun | None = None
        async for message in request_iterator:
            async with self._pool.connection() as conn:
                if run is None:
                    parent = parse_scope(message.parent, "parent")
                    run = await contact_import.start_import(
                        conn, principal(), parent, message.source
                    )
                elif message.parent and message.parent != run.location.scope.name:
                    raise InvalidArgument(
                        [FieldViolation("parent", "changed within one import stream")]
                    )
                rows = []
                for row in message.rows:
                    # the platform-wide checks the interceptor leaves to us: a bad row is
                    # rejected with its reason like any other bad row
                    unfit = request_checks.violations(row)
                    if unfit:
                        run.rejected.append(
                            contact_import.RejectedRow(
                                row.row_number,
                                unfit[0].field.removeprefix("contact."),
                                unfit[0].description,
                            )
                        )
                        continue
                    try:
                        evidence = (
                            evidence_input(row.consent, "consent")
                            if row.HasField("consent")
                            else None
                        )
                    except InvalidArgument as exc:
                        v = exc.violations[0]
                        run.rejected.append(
                            contact_import.RejectedRow(row.row_number, v.field, v.description)
                        )
                        continue
                    rows.append(
                        contact_import.ImportRow(
                            row.row_number, contact_input(row.contact), evidence
                        )
                    )
                await contact_import.import_batch(conn, principal(), run, rows)
        if run is None:
            raise InvalidArgument([FieldViolation("parent", "the stream carried no message")])
        return pb.ImportContactsResponse(
            rows=run.rows,
            created=run.created,
            updated=run.updated,
            unchanged=run.unchanged,
            rejected=[
                pb.RejectedRow(row_number=r.row_number, field=r.field, reason=r.reason)
                for r in run.rejected
            ],
        )

    async def RecordConsent(
        self, request: pb.RecordConsentRequest, context: grpc.aio.ServicerContext
    ) -> pb.ConsentEvent:
        name = parse_child(request.contact, contacts.COLLECTION, "contact")
        require(request, "evidence")
        evidence = evidence_input(request.evidence, "evidence")
        async with self._pool.connection() as conn:
            event, owed = await consent.record_consent_owing(conn, principal(), name, evidence)
        if owed:  # a revocation ends the running enrollments
            self._deliver_soon(owed)
        return consent_event_pb(event)

    async def ListConsentEvents(
        self, request: pb.ListConsentEventsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListConsentEventsResponse:
        name = parse_child(request.contact, contacts.COLLECTION, "contact")
        page = page_request(f"{name.name}/consentEvents", request.page_size, request.page_token)
        async with self._pool.connection() as conn:
            found, token = await consent.list_consent_events(conn, principal(), name, page)
        return pb.ListConsentEventsResponse(
            consent_events=[consent_event_pb(e) for e in found], next_page_token=token
        )

    async def RecordActivity(
        self, request: pb.RecordActivityRequest, context: grpc.aio.ServicerContext
    ) -> pb.Activity:
        name = parse_child(request.contact, contacts.COLLECTION, "contact")
        require(request, "activity")
        a = request.activity
        async with self._pool.connection() as conn:
            recorded, _, owed = await triggers.record_activity_with_triggers(
                conn,
                principal(),
                name,
                a.kind,
                when(a.occurred_at, a.HasField("occurred_at")),
                a.reference,
                a.item,
            )
        if owed:  # signal the running enrollment, enroll in sequences
            self._deliver_soon(owed)
        return pb.Activity(
            name=f"{name.name}/activities/{recorded.id}",
            kind=recorded.kind,
            occurred_at=timestamp(recorded.occurred_at),
            reference=recorded.reference,
            item=recorded.item,
            record_time=timestamp(recorded.recorded_at),
        )

    async def ListFlaggedMessages(
        self, request: pb.ListFlaggedMessagesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListFlaggedMessagesResponse:
        parent = parse_scope(request.parent, "parent")
        state = PB_TO_REVIEW_STATE[request.state]  # the interceptor refuses undefined numbers
        list_name = f"{parent.name}/{review_queue.COLLECTION}?{state.value}"
        page = page_request(list_name, request.page_size, request.page_token)
        async with self._pool.connection() as conn:
            found, token = await review_queue.list_flagged(conn, principal(), parent, state, page)
        return pb.ListFlaggedMessagesResponse(
            flagged_messages=[flagged_pb(m) for m in found], next_page_token=token
        )

    async def ResolveFlaggedMessage(
        self, request: pb.ResolveFlaggedMessageRequest, context: grpc.aio.ServicerContext
    ) -> pb.FlaggedMessage:
        name = review_queue.parse_flagged_name(request.name, "name")
        resolution = PB_TO_RESOLUTION.get(request.resolution)  # type: ignore[call-overload]
        if resolution is None:
            raise InvalidArgument(
                [FieldViolation("resolution", "is required: OPT_OUT or NOT_OPT_OUT")]
            )
        async with self._pool.connection() as conn:
            resolved = await review_queue.resolve_flagged(
                conn, principal(), name, resolution, request.note
            )
        if resolved.followups:  # end the running enrollment now
            self._deliver_soon(resolved.followups)
        return flagged_pb(resolved.message)

    async def GetConversation(
        self, request: pb.GetConversationRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetConversationResponse:
        name = parse_child(request.contact, contacts.COLLECTION, "contact")
        page = page_request(f"{name.name}/messages", request.page_size, request.page_token)
        async with self._pool.connection() as conn:
            found, token = await conversation.get_conversation(conn, principal(), name, page)
        return pb.GetConversationResponse(
            messages=[
                pb.ConversationMessage(
                    name=f"{name.name}/messages/{m.id}",
                    direction=pb.MESSAGE_DIRECTION_OUTBOUND
                    if m.direction == "outbound"
                    else pb.MESSAGE_DIRECTION_INBOUND,
                    body=m.body,
                    encoding=m.encoding,
                    segments=m.segments,
                    status=m.status,
                    template_revision=m.template_revision,
                    create_time=timestamp(m.create_time),
                )
                for m in found
            ],
            next_page_token=token,
        )

    async def ExportContactEvidence(
        self, request: pb.ExportContactEvidenceRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.EvidenceRecord]:
        # read whole, then sent: a client that stops reading must not hold a pooled connection
        async with self._pool.connection() as conn:
            name = await subject(conn, principal(), request)
            items = await evidence.read_evidence(conn, principal(), name)
        for item in items:
            yield record_pb(item)
