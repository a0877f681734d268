"""The table of reengage.v1.ContactService and SequenceService: every RPC of both against a set
of targets, one column per caller of `tests.access_matrix.LABELS`. The rules it encodes are in
tests/test_contact_sequence_access.py."""

from __future__ import annotations

from typing import Any

import grpc

from reengage.v1 import contacts_pb2 as cpb
from reengage.v1 import sequences_pb2 as spb
from tests.access_matrix import (
    A_NOPE,
    B_NOPE,
    IA,
    NF,
    NOPE,
    OK,
    OK_EMPTY_OR_NF,
    PD,
    UA,
    Case,
    Metadata,
    Table,
)
from tests.contact_sequence_fixtures import (
    A_LEVEL_CONTACT,
    A_SEQ,
    A_SEQ_MISSING,
    A_TPL,
    B_SEQ,
    B_SEQ_MISSING,
    B_TPL,
    BNOPE_MISSING,
    DT_ANN,
    DT_MISSING,
    DT_SEQ,
    DT_TPL,
    HB_CY,
    HB_MISSING,
    HB_SEQ,
    HB_SEQ_MISSING,
    HB_TPL,
    NOPE_SEQ_MISSING,
    SCOPE_ALL,
    SCOPE_LOCATION,
    UT_BOB,
    UT_MISSING,
    UT_SEQ,
    UT_SEQ_MISSING,
    UT_TPL,
    XI,
    activate_sequence,
    archive_sequence,
    contact_stub,
    create_contact,
    create_sequence,
    export_evidence,
    export_evidence_by_phone,
    fixed,
    get_contact,
    get_conversation,
    get_sequence,
    import_contacts,
    list_consent_events,
    list_contacts,
    list_flagged,
    list_sequences,
    new_sequence,
    pause_sequence,
    record_activity,
    record_brand_revocation,
    record_consent,
    resolve_flagged,
    sequence_stub,
    simulate,
    simulate_described,
    update_contact,
    update_sequence,
)
from tests.support import (
    A_DOWNTOWN,
    A_UPTOWN,
    B_HARBOR,
    A,
    B,
)

CASES: dict[str, Case] = {
    case.id: case
    for case in (
        # CreateContact
        Case("CreateContact", "acme/downtown", "acme", create_contact(A_DOWNTOWN)),
        Case("CreateContact", "acme/uptown", "acme", create_contact(A_UPTOWN)),
        Case("CreateContact", "acme/nope", "acme", create_contact(A_NOPE)),
        Case("CreateContact", "acme franchisor", "acme", create_contact(A)),
        Case("CreateContact", "bravo/harbor", "bravo", create_contact(B_HARBOR)),
        Case("CreateContact", "bravo/nope", "bravo", create_contact(B_NOPE)),
        # GetContact
        Case("GetContact", "acme/downtown contact", "acme", get_contact(DT_ANN)),
        Case("GetContact", "acme/uptown contact", "acme", get_contact(UT_BOB)),
        Case("GetContact", "acme/downtown missing", "acme", get_contact(DT_MISSING)),
        Case("GetContact", "acme/uptown missing", "acme", get_contact(UT_MISSING)),
        Case("GetContact", "acme franchisor-level", "acme", get_contact(A_LEVEL_CONTACT)),
        Case("GetContact", "bravo/harbor contact", "bravo", get_contact(HB_CY)),
        Case("GetContact", "bravo/harbor missing", "bravo", get_contact(HB_MISSING)),
        Case("GetContact", "bravo/nope missing", "bravo", get_contact(BNOPE_MISSING)),
        # ListContacts
        Case("ListContacts", "acme/downtown", "acme", list_contacts(A_DOWNTOWN)),
        Case("ListContacts", "acme/uptown", "acme", list_contacts(A_UPTOWN)),
        Case("ListContacts", "acme franchisor", "acme", list_contacts(A)),
        Case("ListContacts", "bravo/harbor", "bravo", list_contacts(B_HARBOR)),
        Case("ListContacts", "bravo/nope", "bravo", list_contacts(B_NOPE)),
        # UpdateContact
        Case("UpdateContact", "acme/downtown contact", "acme", update_contact(DT_ANN)),
        Case("UpdateContact", "acme/uptown contact", "acme", update_contact(UT_BOB)),
        Case("UpdateContact", "acme/downtown missing", "acme", update_contact(DT_MISSING)),
        Case("UpdateContact", "acme franchisor-level", "acme", update_contact(A_LEVEL_CONTACT)),
        Case("UpdateContact", "bravo/harbor contact", "bravo", update_contact(HB_CY)),
        Case("UpdateContact", "bravo/harbor missing", "bravo", update_contact(HB_MISSING)),
        # ImportContacts
        Case("ImportContacts", "acme/downtown", "acme", import_contacts(A_DOWNTOWN)),
        Case("ImportContacts", "acme/uptown", "acme", import_contacts(A_UPTOWN)),
        Case("ImportContacts", "acme franchisor", "acme", import_contacts(A)),
        Case("ImportContacts", "bravo/harbor", "bravo", import_contacts(B_HARBOR)),
        Case("ImportContacts", "bravo/nope", "bravo", import_contacts(B_NOPE)),
        # RecordConsent
        Case("RecordConsent", "acme/downtown contact", "acme", record_consent(DT_ANN)),
        Case("RecordConsent", "acme/uptown contact", "acme", record_consent(UT_BOB)),
        Case("RecordConsent", "acme/downtown missing", "acme", record_consent(DT_MISSING)),
        Case("RecordConsent", "acme franchisor-level", "acme", record_consent(A_LEVEL_CONTACT)),
        Case("RecordConsent", "bravo/harbor contact", "bravo", record_consent(HB_CY)),
        Case("RecordConsent", "bravo/harbor missing", "bravo", record_consent(HB_MISSING)),
        Case(
            "RecordConsent",
            "acme/downtown contact brand-wide revoke",
            "acme",
            record_brand_revocation(DT_ANN),
        ),
        Case(
            "RecordConsent",
            "bravo/harbor contact brand-wide revoke",
            "bravo",
            record_brand_revocation(HB_CY),
        ),
        # ListConsentEvents
        Case("ListConsentEvents", "acme/downtown contact", "acme", list_consent_events(DT_ANN)),
        Case("ListConsentEvents", "acme/uptown contact", "acme", list_consent_events(UT_BOB)),
        Case(
            "ListConsentEvents",
            "acme/downtown missing",
            "acme",
            list_consent_events(DT_MISSING),
        ),
        Case(
            "ListConsentEvents",
            "acme franchisor-level",
            "acme",
            list_consent_events(A_LEVEL_CONTACT),
        ),
        Case("ListConsentEvents", "bravo/harbor contact", "bravo", list_consent_events(HB_CY)),
        Case(
            "ListConsentEvents",
            "bravo/harbor missing",
            "bravo",
            list_consent_events(HB_MISSING),
        ),
        # RecordActivity
        Case("RecordActivity", "acme/downtown contact", "acme", record_activity(DT_ANN)),
        Case("RecordActivity", "acme/uptown contact", "acme", record_activity(UT_BOB)),
        Case("RecordActivity", "acme/downtown missing", "acme", record_activity(DT_MISSING)),
        Case("RecordActivity", "acme franchisor-level", "acme", record_activity(A_LEVEL_CONTACT)),
        Case("RecordActivity", "bravo/harbor contact", "bravo", record_activity(HB_CY)),
        Case("RecordActivity", "bravo/harbor missing", "bravo", record_activity(HB_MISSING)),
        # GetConversation
        Case("GetConversation", "acme/downtown contact", "acme", get_conversation(DT_ANN)),
        Case("GetConversation", "acme/uptown contact", "acme", get_conversation(UT_BOB)),
        Case("GetConversation", "acme/downtown missing", "acme", get_conversation(DT_MISSING)),
        Case("GetConversation", "acme franchisor-level", "acme", get_conversation(A_LEVEL_CONTACT)),
        Case("GetConversation", "bravo/harbor contact", "bravo", get_conversation(HB_CY)),
        Case("GetConversation", "bravo/harbor missing", "bravo", get_conversation(HB_MISSING)),
        # ListFlaggedMessages
        Case("ListFlaggedMessages", "acme/downtown", "acme", list_flagged(A_DOWNTOWN)),
        Case("ListFlaggedMessages", "acme/uptown", "acme", list_flagged(A_UPTOWN)),
        Case("ListFlaggedMessages", "acme franchisor", "acme", list_flagged(A)),
        Case("ListFlaggedMessages", "bravo/harbor", "bravo", list_flagged(B_HARBOR)),
        Case("ListFlaggedMessages", "bravo/nope", "bravo", list_flagged(B_NOPE)),
        # ResolveFlaggedMessage
        Case("ResolveFlaggedMessage", "acme/downtown text", "acme", resolve_flagged(A_DOWNTOWN)),
        Case("ResolveFlaggedMessage", "acme/uptown text", "acme", resolve_flagged(A_UPTOWN)),
        Case(
            "ResolveFlaggedMessage",
            "acme/downtown missing",
            "acme",
            resolve_flagged(None, f"{A_DOWNTOWN.name}/inboundMessages/999999"),
        ),
        Case(
            "ResolveFlaggedMessage",
            "acme franchisor-level",
            "acme",
            resolve_flagged(None, f"{A.name}/inboundMessages/1"),
        ),
        Case("ResolveFlaggedMessage", "bravo/harbor text", "bravo", resolve_flagged(B_HARBOR)),
        Case(
            "ResolveFlaggedMessage",
            "bravo/harbor missing",
            "bravo",
            resolve_flagged(None, f"{B_HARBOR.name}/inboundMessages/999999"),
        ),
        # ExportContactEvidence
        Case("ExportContactEvidence", "acme/downtown contact", "acme", export_evidence(DT_ANN)),
        Case("ExportContactEvidence", "acme/uptown contact", "acme", export_evidence(UT_BOB)),
        Case("ExportContactEvidence", "acme/downtown missing", "acme", export_evidence(DT_MISSING)),
        Case(
            "ExportContactEvidence",
            "acme franchisor-level",
            "acme",
            export_evidence(A_LEVEL_CONTACT),
        ),
        Case("ExportContactEvidence", "bravo/harbor contact", "bravo", export_evidence(HB_CY)),
        Case("ExportContactEvidence", "bravo/harbor missing", "bravo", export_evidence(HB_MISSING)),
        Case(
            "ExportContactEvidence",
            "acme/downtown by phone",
            "acme",
            export_evidence_by_phone(A_DOWNTOWN, "(212) 555-0111"),
        ),
        Case(
            "ExportContactEvidence",
            "acme/downtown unknown phone",
            "acme",
            export_evidence_by_phone(A_DOWNTOWN, "+12125550199"),
        ),
        Case(
            "ExportContactEvidence",
            "acme/nope by phone",
            "acme",
            export_evidence_by_phone(A_NOPE, "+12125550111"),
        ),
        Case(
            "ExportContactEvidence",
            "bravo/harbor by phone",
            "bravo",
            export_evidence_by_phone(B_HARBOR, "+13125550113"),
        ),
        # CreateSequence
        Case("CreateSequence", "acme brand", "acme", create_sequence(A, A_TPL)),
        Case(
            "CreateSequence",
            "acme/downtown brand+own templates",
            "acme",
            create_sequence(A_DOWNTOWN, A_TPL, DT_TPL),
        ),
        Case("CreateSequence", "acme/uptown", "acme", create_sequence(A_UPTOWN, UT_TPL)),
        Case("CreateSequence", "acme/nope", "acme", create_sequence(A_NOPE, A_TPL)),
        Case(
            "CreateSequence",
            "acme/downtown with uptown template",
            "acme",
            create_sequence(A_DOWNTOWN, A_TPL, UT_TPL),
        ),
        Case(
            "CreateSequence",
            "acme brand with downtown template",
            "acme",
            create_sequence(A, DT_TPL),
        ),
        Case(
            "CreateSequence",
            "acme/downtown with bravo template",
            "acme",
            create_sequence(A_DOWNTOWN, B_TPL),
        ),
        Case("CreateSequence", "bravo brand", "bravo", create_sequence(B, B_TPL)),
        Case("CreateSequence", "bravo/harbor", "bravo", create_sequence(B_HARBOR, B_TPL, HB_TPL)),
        Case("CreateSequence", "bravo/nope", "bravo", create_sequence(B_NOPE, B_TPL)),
        Case("CreateSequence", "nope brand", "nope", create_sequence(NOPE, A_TPL)),
        # GetSequence
        Case("GetSequence", "acme brand", "acme", get_sequence(A_SEQ)),
        Case("GetSequence", "acme/downtown", "acme", get_sequence(DT_SEQ)),
        Case("GetSequence", "acme/uptown", "acme", get_sequence(UT_SEQ)),
        Case("GetSequence", "acme missing brand", "acme", get_sequence(A_SEQ_MISSING)),
        Case("GetSequence", "acme/uptown missing", "acme", get_sequence(UT_SEQ_MISSING)),
        Case("GetSequence", "bravo brand", "bravo", get_sequence(B_SEQ)),
        Case("GetSequence", "bravo/harbor", "bravo", get_sequence(HB_SEQ)),
        Case("GetSequence", "bravo missing brand", "bravo", get_sequence(B_SEQ_MISSING)),
        Case("GetSequence", "bravo/harbor missing", "bravo", get_sequence(HB_SEQ_MISSING)),
        Case("GetSequence", "nope missing brand", "nope", get_sequence(NOPE_SEQ_MISSING)),
        # ListSequences
        Case("ListSequences", "acme", "acme", list_sequences(A)),
        Case("ListSequences", "acme scope location", "acme", list_sequences(A, SCOPE_LOCATION)),
        Case("ListSequences", "acme scope all", "acme", list_sequences(A, SCOPE_ALL)),
        Case("ListSequences", "acme/downtown", "acme", list_sequences(A_DOWNTOWN)),
        Case("ListSequences", "acme/uptown", "acme", list_sequences(A_UPTOWN)),
        Case("ListSequences", "bravo", "bravo", list_sequences(B)),
        Case("ListSequences", "bravo/harbor", "bravo", list_sequences(B_HARBOR)),
        Case("ListSequences", "bravo/nope", "bravo", list_sequences(B_NOPE)),
        Case("ListSequences", "nope", "nope", list_sequences(NOPE)),
        # UpdateSequence
        Case("UpdateSequence", "acme brand", "acme", update_sequence(new_sequence(A, A_TPL))),
        Case(
            "UpdateSequence",
            "acme/downtown",
            "acme",
            update_sequence(new_sequence(A_DOWNTOWN, A_TPL, DT_TPL)),
        ),
        Case(
            "UpdateSequence",
            "acme/uptown",
            "acme",
            update_sequence(new_sequence(A_UPTOWN, UT_TPL)),
        ),
        Case("UpdateSequence", "acme missing brand", "acme", update_sequence(fixed(A_SEQ_MISSING))),
        Case("UpdateSequence", "bravo brand", "bravo", update_sequence(new_sequence(B, B_TPL))),
        Case(
            "UpdateSequence",
            "bravo/harbor",
            "bravo",
            update_sequence(new_sequence(B_HARBOR, HB_TPL)),
        ),
        Case(
            "UpdateSequence",
            "bravo/harbor missing",
            "bravo",
            update_sequence(fixed(HB_SEQ_MISSING)),
        ),
        # ArchiveSequence
        Case("ArchiveSequence", "acme brand", "acme", archive_sequence(new_sequence(A, A_TPL))),
        Case(
            "ArchiveSequence",
            "acme/downtown",
            "acme",
            archive_sequence(new_sequence(A_DOWNTOWN, DT_TPL)),
        ),
        Case(
            "ArchiveSequence",
            "acme/uptown",
            "acme",
            archive_sequence(new_sequence(A_UPTOWN, UT_TPL)),
        ),
        Case(
            "ArchiveSequence", "acme missing brand", "acme", archive_sequence(fixed(A_SEQ_MISSING))
        ),
        Case("ArchiveSequence", "bravo brand", "bravo", archive_sequence(new_sequence(B, B_TPL))),
        Case(
            "ArchiveSequence",
            "bravo/harbor",
            "bravo",
            archive_sequence(new_sequence(B_HARBOR, HB_TPL)),
        ),
        Case(
            "ArchiveSequence",
            "bravo/harbor missing",
            "bravo",
            archive_sequence(fixed(HB_SEQ_MISSING)),
        ),
        # PauseSequence (the same access as ArchiveSequence)
        Case("PauseSequence", "acme brand", "acme", pause_sequence(new_sequence(A, A_TPL))),
        Case(
            "PauseSequence",
            "acme/downtown",
            "acme",
            pause_sequence(new_sequence(A_DOWNTOWN, DT_TPL)),
        ),
        Case(
            "PauseSequence",
            "acme/uptown",
            "acme",
            pause_sequence(new_sequence(A_UPTOWN, UT_TPL)),
        ),
        Case("PauseSequence", "acme missing brand", "acme", pause_sequence(fixed(A_SEQ_MISSING))),
        Case("PauseSequence", "bravo brand", "bravo", pause_sequence(new_sequence(B, B_TPL))),
        Case(
            "PauseSequence",
            "bravo/harbor",
            "bravo",
            pause_sequence(new_sequence(B_HARBOR, HB_TPL)),
        ),
        Case(
            "PauseSequence",
            "bravo/harbor missing",
            "bravo",
            pause_sequence(fixed(HB_SEQ_MISSING)),
        ),
        # ActivateSequence (the same access as ArchiveSequence)
        Case("ActivateSequence", "acme brand", "acme", activate_sequence(new_sequence(A, A_TPL))),
        Case(
            "ActivateSequence",
            "acme/downtown",
            "acme",
            activate_sequence(new_sequence(A_DOWNTOWN, DT_TPL)),
        ),
        Case(
            "ActivateSequence",
            "acme/uptown",
            "acme",
            activate_sequence(new_sequence(A_UPTOWN, UT_TPL)),
        ),
        Case(
            "ActivateSequence",
            "acme missing brand",
            "acme",
            activate_sequence(fixed(A_SEQ_MISSING)),
        ),
        Case("ActivateSequence", "bravo brand", "bravo", activate_sequence(new_sequence(B, B_TPL))),
        Case(
            "ActivateSequence",
            "bravo/harbor",
            "bravo",
            activate_sequence(new_sequence(B_HARBOR, HB_TPL)),
        ),
        Case(
            "ActivateSequence",
            "bravo/harbor missing",
            "bravo",
            activate_sequence(fixed(HB_SEQ_MISSING)),
        ),
        # SimulateSequence
        Case(
            "SimulateSequence",
            "acme brand for downtown contact",
            "acme",
            simulate(A_SEQ, DT_ANN),
        ),
        Case("SimulateSequence", "acme brand for uptown contact", "acme", simulate(A_SEQ, UT_BOB)),
        Case(
            "SimulateSequence",
            "acme/downtown for downtown contact",
            "acme",
            simulate(DT_SEQ, DT_ANN),
        ),
        Case(
            "SimulateSequence",
            "acme/uptown for uptown contact",
            "acme",
            simulate(UT_SEQ, UT_BOB),
        ),
        Case(
            "SimulateSequence",
            "acme/downtown for uptown contact",
            "acme",
            simulate(DT_SEQ, UT_BOB),
        ),
        Case(
            "SimulateSequence",
            "acme brand described at downtown",
            "acme",
            simulate_described(A_SEQ, A_DOWNTOWN),
        ),
        Case(
            "SimulateSequence",
            "acme brand described at uptown",
            "acme",
            simulate_described(A_SEQ, A_UPTOWN),
        ),
        Case(
            "SimulateSequence",
            "acme brand for bravo contact",
            "acme",
            simulate(A_SEQ, HB_CY),
        ),
        Case(
            "SimulateSequence",
            "acme missing brand for downtown contact",
            "acme",
            simulate(A_SEQ_MISSING, DT_ANN),
        ),
        Case(
            "SimulateSequence",
            "bravo brand for harbor contact",
            "bravo",
            simulate(B_SEQ, HB_CY),
        ),
        Case(
            "SimulateSequence",
            "bravo missing brand for harbor contact",
            "bravo",
            simulate(B_SEQ_MISSING, HB_CY),
        ),
    )
}

# ---------------------------------------------------------------------------------------------
# The expected table. Columns (see LABELS):
#   operator, a_admin, a_viewer, a_downtown_manager, a_downtown_staff, b_admin, b_harbor_manager,
#   none, revoked, malformed
# ---------------------------------------------------------------------------------------------

E = OK_EMPTY_OR_NF
# fmt: off
EXPECTED: dict[str, tuple[Any, ...]] = {
    # case                                                (op  aA  aV  aM  aS  bA  bM  no  rv  mf)
    "CreateContact[acme/downtown]":                       (OK, OK, PD, OK, PD, PD, PD, UA, UA, UA),
    "CreateContact[acme/uptown]":                         (OK, OK, PD, PD, PD, PD, PD, UA, UA, UA),
    "CreateContact[acme/nope]":                           (NF, NF, PD, PD, PD, PD, PD, UA, UA, UA),
    "CreateContact[acme franchisor]":                     (IA, IA, XI, XI, XI, XI, XI, UA, UA, UA),
    "CreateContact[bravo/harbor]":                        (OK, PD, PD, PD, PD, OK, OK, UA, UA, UA),
    "CreateContact[bravo/nope]":                          (NF, PD, PD, PD, PD, NF, PD, UA, UA, UA),
    "GetContact[acme/downtown contact]":                  (OK, OK, OK, OK, OK, PD, PD, UA, UA, UA),
    "GetContact[acme/uptown contact]":                    (OK, OK, OK, PD, PD, PD, PD, UA, UA, UA),
    "GetContact[acme/downtown missing]":                  (NF, NF, NF, NF, NF, PD, PD, UA, UA, UA),
    "GetContact[acme/uptown missing]":                    (NF, NF, NF, PD, PD, PD, PD, UA, UA, UA),
    "GetContact[acme franchisor-level]":                  (IA, IA, IA, XI, XI, XI, XI, UA, UA, UA),
    "GetContact[bravo/harbor contact]":                   (OK, PD, PD, PD, PD, OK, OK, UA, UA, UA),
    "GetContact[bravo/harbor missing]":                   (NF, PD, PD, PD, PD, NF, NF, UA, UA, UA),
    "GetContact[bravo/nope missing]":                     (NF, PD, PD, PD, PD, NF, PD, UA, UA, UA),
    "ListContacts[acme/downtown]":                        (OK, OK, OK, OK, OK, PD, PD, UA, UA, UA),
    "ListContacts[acme/uptown]":                          (OK, OK, OK, PD, PD, PD, PD, UA, UA, UA),
    "ListContacts[acme franchisor]":                      (IA, IA, IA, XI, XI, XI, XI, UA, UA, UA),
    "ListContacts[bravo/harbor]":                         (OK, PD, PD, PD, PD, OK, OK, UA, UA, UA),
    "ListContacts[bravo/nope]":                           (E,  PD, PD, PD, PD, E,  PD, UA, UA, UA),
    "UpdateContact[acme/downtown contact]":               (OK, OK, PD, OK, PD, PD, PD, UA, UA, UA),
    "UpdateContact[acme/uptown contact]":                 (OK, OK, PD, PD, PD, PD, PD, UA, UA, UA),
    "UpdateContact[acme/downtown missing]":               (NF, NF, PD, NF, PD, PD, PD, UA, UA, UA),
    "UpdateContact[acme franchisor-level]":               (IA, IA, XI, XI, XI, XI, XI, UA, UA, UA),
    "UpdateContact[bravo/harbor contact]":                (OK, PD, PD, PD, PD, OK, OK, UA, UA, UA),
    "UpdateContact[bravo/harbor missing]":                (NF, PD, PD, PD, PD, NF, NF, UA, UA, UA),
    "ImportContacts[acme/downtown]":                      (OK, OK, PD, OK, PD, PD, PD, UA, UA, UA),
    "ImportContacts[acme/uptown]":                        (OK, OK, PD, PD, PD, PD, PD, UA, UA, UA),
    "ImportContacts[acme franchisor]":                    (IA, IA, XI, XI, XI, XI, XI, UA, UA, UA),
    "ImportContacts[bravo/harbor]":                       (OK, PD, PD, PD, PD, OK, OK, UA, UA, UA),
    "ImportContacts[bravo/nope]":                         (NF, PD, PD, PD, PD, NF, PD, UA, UA, UA),
    "RecordConsent[acme/downtown contact]":               (OK, OK, PD, OK, PD, PD, PD, UA, UA, UA),
    "RecordConsent[acme/uptown contact]":                 (OK, OK, PD, PD, PD, PD, PD, UA, UA, UA),
    "RecordConsent[acme/downtown missing]":               (NF, NF, PD, NF, PD, PD, PD, UA, UA, UA),
    "RecordConsent[acme franchisor-level]":               (IA, IA, XI, XI, XI, XI, XI, UA, UA, UA),
    "RecordConsent[bravo/harbor contact]":                (OK, PD, PD, PD, PD, OK, OK, UA, UA, UA),
    "RecordConsent[bravo/harbor missing]":                (NF, PD, PD, PD, PD, NF, NF, UA, UA, UA),
    "RecordConsent[acme/downtown contact brand-wide revoke]": (OK, OK, PD, PD, PD, PD, PD, UA, UA, UA),  # noqa: E501
    "RecordConsent[bravo/harbor contact brand-wide revoke]": (OK, PD, PD, PD, PD, OK, PD, UA, UA, UA),  # noqa: E501
    "ListConsentEvents[acme/downtown contact]":           (OK, OK, OK, OK, OK, PD, PD, UA, UA, UA),
    "ListConsentEvents[acme/uptown contact]":             (OK, OK, OK, PD, PD, PD, PD, UA, UA, UA),
    "ListConsentEvents[acme/downtown missing]":           (NF, NF, NF, NF, NF, PD, PD, UA, UA, UA),
    "ListConsentEvents[acme franchisor-level]":           (IA, IA, IA, XI, XI, XI, XI, UA, UA, UA),
    "ListConsentEvents[bravo/harbor contact]":            (OK, PD, PD, PD, PD, OK, OK, UA, UA, UA),
    "ListConsentEvents[bravo/harbor missing]":            (NF, PD, PD, PD, PD, NF, NF, UA, UA, UA),
    "RecordActivity[acme/downtown contact]":              (OK, OK, PD, OK, PD, PD, PD, UA, UA, UA),
    "RecordActivity[acme/uptown contact]":                (OK, OK, PD, PD, PD, PD, PD, UA, UA, UA),
    "RecordActivity[acme/downtown missing]":              (NF, NF, PD, NF, PD, PD, PD, UA, UA, UA),
    "RecordActivity[acme franchisor-level]":              (IA, IA, XI, XI, XI, XI, XI, UA, UA, UA),
    "RecordActivity[bravo/harbor contact]":               (OK, PD, PD, PD, PD, OK, OK, UA, UA, UA),
    "RecordActivity[bravo/harbor missing]":               (NF, PD, PD, PD, PD, NF, NF, UA, UA, UA),
    "GetConversation[acme/downtown contact]":             (OK, OK, OK, OK, OK, PD, PD, UA, UA, UA),
    "GetConversation[acme/uptown contact]":               (OK, OK, OK, PD, PD, PD, PD, UA, UA, UA),
    "GetConversation[acme/downtown missing]":             (NF, NF, NF, NF, NF, PD, PD, UA, UA, UA),
    "GetConversation[acme franchisor-level]":             (IA, IA, IA, XI, XI, XI, XI, UA, UA, UA),
    "GetConversation[bravo/harbor contact]":              (OK, PD, PD, PD, PD, OK, OK, UA, UA, UA),
    "GetConversation[bravo/harbor missing]":              (NF, PD, PD, PD, PD, NF, NF, UA, UA, UA),
    "ListFlaggedMessages[acme/downtown]":                 (OK, OK, OK, OK, OK, PD, PD, UA, UA, UA),
    "ListFlaggedMessages[acme/uptown]":                   (OK, OK, OK, PD, PD, PD, PD, UA, UA, UA),
    "ListFlaggedMessages[acme franchisor]":               (OK, OK, OK, PD, PD, PD, PD, UA, UA, UA),
    "ListFlaggedMessages[bravo/harbor]":                  (OK, PD, PD, PD, PD, OK, OK, UA, UA, UA),
    "ListFlaggedMessages[bravo/nope]":                    (E,  PD, PD, PD, PD, E,  PD, UA, UA, UA),
    "ResolveFlaggedMessage[acme/downtown text]":          (OK, OK, PD, OK, PD, PD, PD, UA, UA, UA),
    "ResolveFlaggedMessage[acme/uptown text]":            (OK, OK, PD, PD, PD, PD, PD, UA, UA, UA),
    "ResolveFlaggedMessage[acme/downtown missing]":       (NF, NF, PD, NF, PD, PD, PD, UA, UA, UA),
    "ResolveFlaggedMessage[acme franchisor-level]":       (IA, IA, XI, XI, XI, XI, XI, UA, UA, UA),
    "ResolveFlaggedMessage[bravo/harbor text]":           (OK, PD, PD, PD, PD, OK, OK, UA, UA, UA),
    "ResolveFlaggedMessage[bravo/harbor missing]":        (NF, PD, PD, PD, PD, NF, NF, UA, UA, UA),
    "ExportContactEvidence[acme/downtown contact]":       (OK, OK, OK, OK, PD, PD, PD, UA, UA, UA),
    "ExportContactEvidence[acme/uptown contact]":         (OK, OK, OK, PD, PD, PD, PD, UA, UA, UA),
    "ExportContactEvidence[acme/downtown missing]":       (NF, NF, NF, NF, PD, PD, PD, UA, UA, UA),
    "ExportContactEvidence[acme franchisor-level]":       (IA, IA, IA, XI, XI, XI, XI, UA, UA, UA),
    "ExportContactEvidence[bravo/harbor contact]":        (OK, PD, PD, PD, PD, OK, OK, UA, UA, UA),
    "ExportContactEvidence[bravo/harbor missing]":        (NF, PD, PD, PD, PD, NF, NF, UA, UA, UA),
    "ExportContactEvidence[acme/downtown by phone]":      (OK, OK, OK, OK, PD, PD, PD, UA, UA, UA),
    "ExportContactEvidence[acme/downtown unknown phone]": (NF, NF, NF, NF, PD, PD, PD, UA, UA, UA),
    "ExportContactEvidence[acme/nope by phone]":          (NF, NF, NF, PD, PD, PD, PD, UA, UA, UA),
    "ExportContactEvidence[bravo/harbor by phone]":       (OK, PD, PD, PD, PD, OK, OK, UA, UA, UA),
    "CreateSequence[acme brand]":                         (OK, OK, PD, PD, PD, PD, PD, UA, UA, UA),
    "CreateSequence[acme/downtown brand+own templates]":  (OK, OK, PD, OK, PD, PD, PD, UA, UA, UA),
    "CreateSequence[acme/uptown]":                        (OK, OK, PD, PD, PD, PD, PD, UA, UA, UA),
    "CreateSequence[acme/nope]":                          (NF, NF, PD, PD, PD, PD, PD, UA, UA, UA),
    "CreateSequence[acme/downtown with uptown template]": (IA, IA, PD, IA, PD, PD, PD, UA, UA, UA),
    "CreateSequence[acme brand with downtown template]":  (IA, IA, PD, PD, PD, PD, PD, UA, UA, UA),
    "CreateSequence[acme/downtown with bravo template]":  (IA, IA, PD, IA, PD, PD, PD, UA, UA, UA),
    "CreateSequence[bravo brand]":                        (OK, PD, PD, PD, PD, OK, PD, UA, UA, UA),
    "CreateSequence[bravo/harbor]":                       (OK, PD, PD, PD, PD, OK, OK, UA, UA, UA),
    "CreateSequence[bravo/nope]":                         (NF, PD, PD, PD, PD, NF, PD, UA, UA, UA),
    "CreateSequence[nope brand]":                         (NF, PD, PD, PD, PD, PD, PD, UA, UA, UA),
    "GetSequence[acme brand]":                            (OK, OK, OK, OK, OK, PD, PD, UA, UA, UA),
    "GetSequence[acme/downtown]":                         (OK, OK, OK, OK, OK, PD, PD, UA, UA, UA),
    "GetSequence[acme/uptown]":                           (OK, OK, OK, PD, PD, PD, PD, UA, UA, UA),
    "GetSequence[acme missing brand]":                    (NF, NF, NF, NF, NF, PD, PD, UA, UA, UA),
    "GetSequence[acme/uptown missing]":                   (NF, NF, NF, PD, PD, PD, PD, UA, UA, UA),
    "GetSequence[bravo brand]":                           (OK, PD, PD, PD, PD, OK, OK, UA, UA, UA),
    "GetSequence[bravo/harbor]":                          (OK, PD, PD, PD, PD, OK, OK, UA, UA, UA),
    "GetSequence[bravo missing brand]":                   (NF, PD, PD, PD, PD, NF, NF, UA, UA, UA),
    "GetSequence[bravo/harbor missing]":                  (NF, PD, PD, PD, PD, NF, NF, UA, UA, UA),
    "GetSequence[nope missing brand]":                    (NF, PD, PD, PD, PD, PD, PD, UA, UA, UA),
    "ListSequences[acme]":                                (OK, OK, OK, OK, OK, PD, PD, UA, UA, UA),
    "ListSequences[acme scope location]":                 (OK, OK, OK, PD, PD, PD, PD, UA, UA, UA),
    "ListSequences[acme scope all]":                      (OK, OK, OK, PD, PD, PD, PD, UA, UA, UA),
    "ListSequences[acme/downtown]":                       (OK, OK, OK, OK, OK, PD, PD, UA, UA, UA),
    "ListSequences[acme/uptown]":                         (OK, OK, OK, PD, PD, PD, PD, UA, UA, UA),
    "ListSequences[bravo]":                               (OK, PD, PD, PD, PD, OK, OK, UA, UA, UA),
    "ListSequences[bravo/harbor]":                        (OK, PD, PD, PD, PD, OK, OK, UA, UA, UA),
    "ListSequences[bravo/nope]":                          (E,  PD, PD, PD, PD, E,  PD, UA, UA, UA),
    "ListSequences[nope]":                                (E,  PD, PD, PD, PD, PD, PD, UA, UA, UA),
    "UpdateSequence[acme brand]":                         (OK, OK, PD, PD, PD, PD, PD, UA, UA, UA),
    "UpdateSequence[acme/downtown]":                      (OK, OK, PD, OK, PD, PD, PD, UA, UA, UA),
    "UpdateSequence[acme/uptown]":                        (OK, OK, PD, PD, PD, PD, PD, UA, UA, UA),
    "UpdateSequence[acme missing brand]":                 (NF, NF, PD, PD, PD, PD, PD, UA, UA, UA),
    "UpdateSequence[bravo brand]":                        (OK, PD, PD, PD, PD, OK, PD, UA, UA, UA),
    "UpdateSequence[bravo/harbor]":                       (OK, PD, PD, PD, PD, OK, OK, UA, UA, UA),
    "UpdateSequence[bravo/harbor missing]":               (NF, PD, PD, PD, PD, NF, NF, UA, UA, UA),
    "ArchiveSequence[acme brand]":                        (OK, OK, PD, PD, PD, PD, PD, UA, UA, UA),
    "ArchiveSequence[acme/downtown]":                     (OK, OK, PD, OK, PD, PD, PD, UA, UA, UA),
    "ArchiveSequence[acme/uptown]":                       (OK, OK, PD, PD, PD, PD, PD, UA, UA, UA),
    "ArchiveSequence[acme missing brand]":                (NF, NF, PD, PD, PD, PD, PD, UA, UA, UA),
    "ArchiveSequence[bravo brand]":                       (OK, PD, PD, PD, PD, OK, PD, UA, UA, UA),
    "ArchiveSequence[bravo/harbor]":                      (OK, PD, PD, PD, PD, OK, OK, UA, UA, UA),
    "ArchiveSequence[bravo/harbor missing]":              (NF, PD, PD, PD, PD, NF, NF, UA, UA, UA),
    "PauseSequence[acme brand]":                        (OK, OK, PD, PD, PD, PD, PD, UA, UA, UA),
    "PauseSequence[acme/downtown]":                     (OK, OK, PD, OK, PD, PD, PD, UA, UA, UA),
    "PauseSequence[acme/uptown]":                       (OK, OK, PD, PD, PD, PD, PD, UA, UA, UA),
    "PauseSequence[acme missing brand]":                (NF, NF, PD, PD, PD, PD, PD, UA, UA, UA),
    "PauseSequence[bravo brand]":                       (OK, PD, PD, PD, PD, OK, PD, UA, UA, UA),
    "PauseSequence[bravo/harbor]":                      (OK, PD, PD, PD, PD, OK, OK, UA, UA, UA),
    "PauseSequence[bravo/harbor missing]":              (NF, PD, PD, PD, PD, NF, NF, UA, UA, UA),
    "ActivateSequence[acme brand]":                        (OK, OK, PD, PD, PD, PD, PD, UA, UA, UA),
    "ActivateSequence[acme/downtown]":                     (OK, OK, PD, OK, PD, PD, PD, UA, UA, UA),
    "ActivateSequence[acme/uptown]":                       (OK, OK, PD, PD, PD, PD, PD, UA, UA, UA),
    "ActivateSequence[acme missing brand]":                (NF, NF, PD, PD, PD, PD, PD, UA, UA, UA),
    "ActivateSequence[bravo brand]":                       (OK, PD, PD, PD, PD, OK, PD, UA, UA, UA),
    "ActivateSequence[bravo/harbor]":                      (OK, PD, PD, PD, PD, OK, OK, UA, UA, UA),
    "ActivateSequence[bravo/harbor missing]":              (NF, PD, PD, PD, PD, NF, NF, UA, UA, UA),
    "SimulateSequence[acme brand for downtown contact]":  (OK, OK, OK, OK, OK, PD, PD, UA, UA, UA),
    "SimulateSequence[acme brand for uptown contact]":    (OK, OK, OK, PD, PD, PD, PD, UA, UA, UA),
    "SimulateSequence[acme/downtown for downtown contact]": (OK, OK, OK, OK, OK, PD, PD, UA, UA, UA),  # noqa: E501
    "SimulateSequence[acme/uptown for uptown contact]":   (OK, OK, OK, PD, PD, PD, PD, UA, UA, UA),
    "SimulateSequence[acme/downtown for uptown contact]": (IA, IA, IA, PD, PD, PD, PD, UA, UA, UA),
    "SimulateSequence[acme brand described at downtown]": (OK, OK, OK, OK, OK, PD, PD, UA, UA, UA),
    "SimulateSequence[acme brand described at uptown]":   (OK, OK, OK, PD, PD, PD, PD, UA, UA, UA),
    "SimulateSequence[acme brand for bravo contact]":     (IA, PD, PD, PD, PD, PD, PD, UA, UA, UA),
    "SimulateSequence[acme missing brand for downtown contact]": (NF, NF, NF, NF, NF, PD, PD, UA, UA, UA),  # noqa: E501
    "SimulateSequence[bravo brand for harbor contact]":   (OK, PD, PD, PD, PD, OK, OK, UA, UA, UA),
    "SimulateSequence[bravo missing brand for harbor contact]": (NF, PD, PD, PD, PD, NF, NF, UA, UA, UA),  # noqa: E501
}
# fmt: on

CONTACT_RPCS = (
    "CreateContact",
    "GetContact",
    "ListContacts",
    "UpdateContact",
    "ImportContacts",
    "RecordConsent",
    "ListConsentEvents",
    "RecordActivity",
    "GetConversation",
    "ListFlaggedMessages",
    "ResolveFlaggedMessage",
    "ExportContactEvidence",
)
SERVER_STREAMS = ("ExportContactEvidence",)
SEQUENCE_RPCS = (
    "CreateSequence",
    "GetSequence",
    "ListSequences",
    "UpdateSequence",
    "ArchiveSequence",
    "PauseSequence",
    "ActivateSequence",
    "SimulateSequence",
)


async def call(channel: grpc.aio.Channel, rpc: str, request: Any, metadata: Metadata) -> Any:
    if rpc in CONTACT_RPCS:
        method = getattr(contact_stub(channel), rpc)
    else:
        method = getattr(sequence_stub(channel), rpc)
    if rpc in SERVER_STREAMS:  # every record of a server stream, as a list
        return [record async for record in method(request, metadata=metadata, timeout=30)]
    if isinstance(request, list):  # a client stream
        return await method(iter(request), metadata=metadata, timeout=30)
    return await method(request, metadata=metadata, timeout=30)


def listed_names(response: Any) -> list[str]:
    if isinstance(response, cpb.ListContactsResponse):
        return [c.name for c in response.contacts]
    if isinstance(response, spb.ListSequencesResponse):
        return [s.name for s in response.sequences]
    if isinstance(response, cpb.ListFlaggedMessagesResponse):
        return [m.name for m in response.flagged_messages]
    return []


def check_success(case: Case, label: str, response: Any) -> None:
    """What an OK answer must hold beyond visibility."""
    where = f"{case.id} as {label}"
    if isinstance(response, cpb.ImportContactsResponse):
        assert (response.rows, response.created, list(response.rejected)) == (1, 1, []), (
            f"{where}: {response}"
        )
    if isinstance(response, spb.SimulateSequenceResponse):
        assert response.steps, f"{where}: a simulation without steps"
    if case.rpc == "ExportContactEvidence":  # the seeded grant and text, header to summary
        header, summary = response[0].header, response[-1].summary
        assert header.contact.name and header.rules_version, f"{where}: {response[0]}"
        assert (summary.consent_events, summary.outbound_messages) == (1, 1), f"{where}: {summary}"
    if isinstance(response, cpb.FlaggedMessage):
        assert response.resolution == cpb.FLAGGED_RESOLUTION_NOT_OPT_OUT, f"{where}: {response}"
    if (
        case.rpc in ("ListContacts", "ListSequences", "ListFlaggedMessages")
        and "nope" not in case.target
    ):
        assert listed_names(response), f"{where}: an empty list"


TABLE = Table(
    services=(
        cpb.DESCRIPTOR.services_by_name["ContactService"].full_name,
        spb.DESCRIPTOR.services_by_name["SequenceService"].full_name,
    ),
    cases=CASES,
    expected=EXPECTED,
    call=call,
    # RPCs that change nothing (ExportContactEvidence writes its audit row: not here)
    reads=frozenset(
        {
            "GetContact",
            "ListContacts",
            "ListConsentEvents",
            "GetConversation",
            "ListFlaggedMessages",
            "GetSequence",
            "ListSequences",
            "SimulateSequence",
        }
    ),
    listed=listed_names,
    check_success=check_success,
)

# (an existing target, one that does not exist) of another franchisor
ORACLE_PAIRS = (
    ("GetContact[bravo/harbor contact]", "GetContact[bravo/harbor missing]"),
    ("GetContact[bravo/harbor contact]", "GetContact[bravo/nope missing]"),
    ("UpdateContact[bravo/harbor contact]", "UpdateContact[bravo/harbor missing]"),
    ("CreateContact[bravo/harbor]", "CreateContact[bravo/nope]"),
    ("ListContacts[bravo/harbor]", "ListContacts[bravo/nope]"),
    ("RecordConsent[bravo/harbor contact]", "RecordConsent[bravo/harbor missing]"),
    ("ListConsentEvents[bravo/harbor contact]", "ListConsentEvents[bravo/harbor missing]"),
    ("RecordActivity[bravo/harbor contact]", "RecordActivity[bravo/harbor missing]"),
    ("GetConversation[bravo/harbor contact]", "GetConversation[bravo/harbor missing]"),
    ("ResolveFlaggedMessage[bravo/harbor text]", "ResolveFlaggedMessage[bravo/harbor missing]"),
    ("ExportContactEvidence[bravo/harbor contact]", "ExportContactEvidence[bravo/harbor missing]"),
    ("GetSequence[bravo brand]", "GetSequence[bravo missing brand]"),
    ("GetSequence[bravo/harbor]", "GetSequence[bravo/harbor missing]"),
    ("CreateSequence[bravo/harbor]", "CreateSequence[bravo/nope]"),
)
# the same, of a sibling location (for the downtown principals)
SIBLING_PAIRS = (
    ("GetContact[acme/uptown contact]", "GetContact[acme/uptown missing]"),
    ("GetSequence[acme/uptown]", "GetSequence[acme/uptown missing]"),
)
