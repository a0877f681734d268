"""ExportContactEvidence at the edge: which contact a request names, and each exported item as
an `EvidenceRecord`."""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection

from reengage.v1 import contacts_pb2 as pb
from reengage.v1 import enrollments_pb2
from server.contact_service import consent_event_pb, contact_pb
from server.tenant_service import timestamp
from tenants import contacts, evidence
from tenants.access import Principal
from tenants.consent import ConsentEvent
from tenants.enrollments import EnrollmentStatus
from tenants.errors import FieldViolation, InvalidArgument
from tenants.names import ChildName, parse_child, parse_scope

STATUS_TO_PB = {
    s: enrollments_pb2.EnrollmentStatus.Value(f"ENROLLMENT_STATUS_{s.name}")
    for s in EnrollmentStatus
}


async def subject(
    conn: AsyncConnection[Any], principal: Principal, request: pb.ExportContactEvidenceRequest
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
    return await evidence.find_contact(conn, principal, location, request.phone_number)


def record_pb(item: evidence.EvidenceItem) -> pb.EvidenceRecord:
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
    if isinstance(item, ConsentEvent):
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
