"""Protobuf ↔ domain conversions of the contact service: contacts, consent events and evidence,
activity kinds, flagged inbound texts and evidence records."""

from __future__ import annotations

from datetime import UTC, datetime

from google.protobuf import timestamp_pb2

from reengage.v1 import contacts_pb2 as pb
from server.grpc.converters import STATUS_TO_PB, timestamp
from tenants.compliance.zones import ZoneSource
from tenants.contacts import consent
from tenants.contacts.external_ids import ExternalId
from tenants.contacts.model import ConsentState, Contact, ContactInput
from tenants.core.errors import FieldViolation, InvalidArgument
from tenants.inbound import review_queue
from tenants.reports import evidence

SOURCE_TO_PB = {
    ZoneSource.EXPLICIT: pb.TIME_ZONE_SOURCE_EXPLICIT,
    ZoneSource.ADDRESS: pb.TIME_ZONE_SOURCE_ADDRESS,
    ZoneSource.AREA_CODE: pb.TIME_ZONE_SOURCE_AREA_CODE,
    ZoneSource.LOCATION_DEFAULT: pb.TIME_ZONE_SOURCE_LOCATION_DEFAULT,
}


CONSENT_TO_PB = {
    ConsentState.NONE: pb.CONSENT_STATE_NONE,
    ConsentState.GRANTED: pb.CONSENT_STATE_GRANTED,
    ConsentState.REVOKED: pb.CONSENT_STATE_REVOKED,
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


def contact_pb(c: Contact) -> pb.Contact:
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
        external_ids=[pb.ExternalId(source=x.source, id=x.id) for x in c.external_ids],
        preferred_language=c.preferred_language,
    )


def contact_input(m: pb.Contact) -> ContactInput:
    return ContactInput(
        phone_number=m.phone_number,
        first_name=m.first_name,
        last_name=m.last_name,
        email=m.email,
        attrs=dict(m.attributes),
        time_zone=m.time_zone,
        address_region=m.address_region,
        external_ids=tuple(ExternalId(x.source, x.id) for x in m.external_ids),
        preferred_language=m.preferred_language,
    )


def evidence_input(m: pb.ConsentEvidence, field: str) -> consent.ConsentEvidence:
    kind = PB_TO_KIND.get(m.kind)
    if kind is None:
        raise InvalidArgument([FieldViolation(f"{field}.kind", "is required: GRANT or REVOKE")])
    return consent.ConsentEvidence(
        kind=kind,
        channel=PB_TO_CHANNEL.get(m.channel),
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
