"""reengage.v1.ContactService: a thin translator between protobuf and the contact modules."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
from google.type import money_pb2
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from reengage.v1 import contacts_pb2 as pb
from reengage.v1 import contacts_pb2_grpc
from server.grpc import request_checks
from server.grpc.auth import principal
from server.grpc.contact_converters import (
    PB_TO_CONSENT,
    PB_TO_RESOLUTION,
    PB_TO_REVIEW_STATE,
    consent_event_pb,
    contact_input,
    contact_pb,
    evidence_input,
    flagged_pb,
    record_pb,
    when,
)
from server.grpc.converters import ENCODING_TO_PB, require, timestamp
from tenants.contacts import consent, contacts, external_ids
from tenants.contacts import importing as contact_import
from tenants.contacts.activity import Money, Purchase
from tenants.contacts.model import COLLECTION as CONTACTS
from tenants.core.errors import FieldViolation, InvalidArgument
from tenants.core.names import ChildName, parse_child, parse_scope
from tenants.core.pagination import page_request
from tenants.enrollment import triggers
from tenants.inbound import review_queue
from tenants.messages import conversation
from tenants.org.access import Principal
from tenants.reports import evidence
from workflows.relay import FollowupRelay

IMPORT_OUTCOMES = {
    contact_import.ImportOutcome.CREATED: pb.IMPORT_OUTCOME_CREATED,
    contact_import.ImportOutcome.UPDATED: pb.IMPORT_OUTCOME_UPDATED,
}


async def subject(
    conn: AsyncConnection[Any], who: Principal, request: pb.ExportContactEvidenceRequest
) -> ChildName:
    """The contact named by `contact`, or found by `location` and `phone_number`."""
    if request.contact:
        if request.location or request.phone_number:
            raise InvalidArgument(
                [FieldViolation("contact", "give either contact, or location and phone_number")]
            )
        return parse_child(request.contact, CONTACTS, "contact")
    if not request.location:
        raise InvalidArgument(
            [FieldViolation("contact", "is required, or location and phone_number")]
        )
    location = parse_scope(request.location, "location")
    return await evidence.find_contact(conn, who, location, request.phone_number)


def consent_events_of(request: pb.ListConsentEventsRequest) -> ChildName:
    """The contact whose consent events are listed: `parent`, as every list names what it lists
    under, or `contact`, its first spelling (kept for existing clients). Both set must agree."""
    if request.parent and request.contact and request.parent != request.contact:
        raise InvalidArgument(
            [FieldViolation("parent", "names another contact than contact: set one of them")]
        )
    if request.contact and not request.parent:
        return parse_child(request.contact, CONTACTS, "contact")
    return parse_child(request.parent, CONTACTS, "parent")


class ContactService(contacts_pb2_grpc.ContactServiceServicer):
    def __init__(self, pool: AsyncConnectionPool[Any], relay: FollowupRelay | None = None) -> None:
        self._pool = pool
        self._relay = relay  # delivers what an activity owes at once (else the relay's loop)

    def _deliver_soon(self, ids: tuple[int, ...]) -> None:
        """The relay delivers what a call owes in the background; without a relay, the
        platform's relay loop delivers it."""
        if self._relay is not None:
            self._relay.deliver_owed_soon(ids)

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
        name = parse_child(request.name, CONTACTS)
        async with self._pool.connection() as conn:
            return contact_pb(await contacts.get_contact(conn, principal(), name))

    async def ListContacts(
        self, request: pb.ListContactsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListContactsResponse:
        parent = parse_scope(request.parent, "parent")
        opted_out = {
            pb.OPT_OUT_FILTER_OPTED_OUT: True,
            pb.OPT_OUT_FILTER_NOT_OPTED_OUT: False,
        }.get(request.opt_out)
        inactive_since = when(request.inactive_since, request.HasField("inactive_since"))
        async with self._pool.connection() as conn:
            where = contacts.ContactFilter(
                opted_out=opted_out,
                consent_state=PB_TO_CONSENT.get(request.consent_state),
                inactive_since=inactive_since,
                phone_e164=await contacts.phone_filter(
                    conn, principal(), parent, request.phone_number
                ),
                external_id=external_ids.filter_value(
                    request.external_id, request.external_id_source
                ),
            )
            list_name = f"{parent.name}/contacts?{where.page_binding()}"
            page = page_request(list_name, request.page_size, request.page_token)
            found, token = await contacts.list_contacts(conn, principal(), parent, page, where)
        return pb.ListContactsResponse(
            contacts=[contact_pb(c) for c in found], next_page_token=token
        )

    async def UpdateContact(
        self, request: pb.UpdateContactRequest, context: grpc.aio.ServicerContext
    ) -> pb.Contact:
        require(request, "contact")
        name = parse_child(request.contact.name, CONTACTS, "contact.name")
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
            contacts=[
                pb.ImportedContact(
                    row_number=c.row_number,
                    name=c.name.name,
                    phone_number=c.phone_e164,
                    outcome=IMPORT_OUTCOMES[c.outcome],
                )
                for c in run.listed
            ],
            contacts_not_listed=run.not_listed,
        )

    async def RecordConsent(
        self, request: pb.RecordConsentRequest, context: grpc.aio.ServicerContext
    ) -> pb.ConsentEvent:
        name = parse_child(request.contact, CONTACTS, "contact")
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
        name = consent_events_of(request)
        page = page_request(f"{name.name}/consentEvents", request.page_size, request.page_token)
        async with self._pool.connection() as conn:
            found, token = await consent.list_consent_events(conn, principal(), name, page)
        return pb.ListConsentEventsResponse(
            consent_events=[consent_event_pb(e) for e in found], next_page_token=token
        )

    async def RecordActivity(
        self, request: pb.RecordActivityRequest, context: grpc.aio.ServicerContext
    ) -> pb.Activity:
        name = parse_child(request.contact, CONTACTS, "contact")
        require(request, "activity")
        a = request.activity
        value = None
        if a.HasField("value"):
            value = Money(a.value.currency_code, a.value.units, a.value.nanos)
        async with self._pool.connection() as conn:
            recorded, _, owed = await triggers.record_activity_with_triggers(
                conn,
                principal(),
                name,
                a.kind,
                when(a.occurred_at, a.HasField("occurred_at")),
                a.reference,
                a.item,
                Purchase(value, a.order_id, a.coupon_code),
            )
        if owed:  # signal the running enrollment, enroll in sequences
            self._deliver_soon(owed)
        # an order recorded before may be another contact's: the activity names its own
        money = recorded.value
        return pb.Activity(
            name=f"{recorded.contact.name}/activities/{recorded.id}",
            kind=recorded.kind,
            occurred_at=timestamp(recorded.occurred_at),
            reference=recorded.reference,
            item=recorded.item,
            record_time=timestamp(recorded.recorded_at),
            value=None
            if money is None
            else money_pb2.Money(
                currency_code=money.currency_code, units=money.units, nanos=money.nanos
            ),
            order_id=recorded.order_id,
            coupon_code=recorded.coupon_code,
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
        resolution = PB_TO_RESOLUTION.get(request.resolution)
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
        name = parse_child(request.contact, CONTACTS, "contact")
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
                    encoding=m.encoding,  # deprecated: encoding_type
                    encoding_type=ENCODING_TO_PB[m.text_encoding],
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
