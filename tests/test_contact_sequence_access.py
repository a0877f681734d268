"""reengage.v1.ContactService and SequenceService over the real gRPC server: who may do what,
and what each does with good and bad input.

* The authorization matrix: every RPC of both services against a set of targets (a location's
  own contacts and sequences, a sibling location's, the brand's, the other franchisor's, names
  that do not exist, and contact names outside any location), by every principal of the test
  world plus three callers that must not authenticate. `EXPECTED` is the whole table: one row per
  (RPC, target), one column per principal. Each row is one test case that seeds the world once
  and checks every cell (all mismatches are reported together); a mutating cell gets targets of
  its own, so cells never see each other's effects.
* Visibility: a location lists only its own contacts, its own and its brand's sequences; nobody
  sees another franchisor (no answer of an acme principal mentions bravo, and vice versa).
* Which templates a sequence may use.
* Consent events are append-only (no RPC, no SQL path changes one); a revocation suppresses the
  contact until a later grant; re-recording the same evidence is one event.
* Bad input: phones, zones, regions, attributes, names, masks, etags, consent evidence,
  activities, sequence definitions, each refused with field violations.
* Time zone inference, ListContacts filters and page tokens, GetConversation.

Rules (design §4/§5, compliance §2, tenants/org/access.py, contacts.proto, sequences.proto):

* contacts live only at locations (`franchisors/{f}/locations/{l}/contacts/{c}`);
* CONTACT_READ (get, list, consent events, conversation): franchisor admins and viewers, and the
  location's manager and staff;
* CONTACT_WRITE (create, update, import, RecordConsent, RecordActivity): franchisor admins and
  the location's manager; a revocation asking for the whole brand while the franchisor keeps
  opt-outs to their location (CONSENT_REVOKE_BRAND_WIDE): franchisor admins only;
* the review queue: ListFlaggedMessages is CONTACT_READ (at a franchisor: franchisor principals,
  every location); ResolveFlaggedMessage is FLAGGED_MESSAGE_RESOLVE (franchisor admins and the
  location's manager, not viewers or staff);
* SEQUENCE_READ like templates: brand sequences are read by every principal of the franchisor
  (location staff included); a location's sequences by the franchisor's admins and viewers and
  that location's principals;
* SEQUENCE_WRITE: franchisor admins (brand and location sequences), a location's manager for its
  own location only;
* nobody crosses franchisors: PERMISSION_DENIED whether or not the target exists;
* no key / revoked key / malformed key: UNAUTHENTICATED; the operator may do everything.
"""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import field_mask_pb2

from reengage.v1 import contacts_pb2 as cpb
from reengage.v1 import sequences_pb2 as spb
from tenants.core.names import TenantScope
from tests.access_matrix import (
    IA,
    PD,
    Pool,
    Seeded,
    Stack,
    assert_no_existence_oracle,
    check_row,
    fresh,
    matrix_fixtures,
    refused,
)
from tests.contact_sequence_fixtures import (
    A_SEQ,
    A_TPL,
    B_SEQ,
    B_TPL,
    DT_ANN,
    DT_SEQ,
    DT_TPL,
    HB_CY,
    HB_SEQ,
    SCOPE_ALL,
    UT_BOB,
    UT_SEQ,
    UT_TPL,
    list_all_contacts,
    list_all_sequences,
    new_contact,
    seed,
    seed_stack,
    sequence_body,
)
from tests.contact_sequence_table import (
    CONTACT_RPCS,
    ORACLE_PAIRS,
    SEQUENCE_RPCS,
    SIBLING_PAIRS,
    TABLE,
    contact_stub,
    sequence_stub,
)
from tests.support import (
    A_DOWNTOWN,
    A_UPTOWN,
    B_HARBOR,
    A,
    World,
)

seeded, shared_stack = matrix_fixtures(seed_stack)


def test_the_table_covers_every_rpc_case_and_principal() -> None:
    TABLE.check_shape((*CONTACT_RPCS, *SEQUENCE_RPCS))
    contact_service = cpb.DESCRIPTOR.services_by_name["ContactService"]
    assert {m.name for m in contact_service.methods} == set(CONTACT_RPCS)
    sequence_service = spb.DESCRIPTOR.services_by_name["SequenceService"]
    assert {m.name for m in sequence_service.methods} == set(SEQUENCE_RPCS)


def test_the_table_gives_outsiders_no_existence_oracle() -> None:
    assert_no_existence_oracle(TABLE, ORACLE_PAIRS)
    assert_no_existence_oracle(TABLE, SIBLING_PAIRS, ("a_downtown_manager", "a_downtown_staff"))


@pytest.mark.parametrize("case_id", TABLE.rows(writes=False))
async def test_access_matrix(case_id: str, shared_stack: Stack) -> None:
    """One row of the table that changes nothing: every principal in turn, on the shared server."""
    await check_row(TABLE, shared_stack, case_id)


@pytest.mark.parametrize("case_id", TABLE.rows(writes=True))
async def test_access_matrix_writes(case_id: str, seeded: Seeded) -> None:
    """One row of the table that writes: every principal in turn, on a database of its own."""
    async with seeded.isolated() as stack:
        await check_row(TABLE, stack, case_id)


# ---------------------------------------------------------------------------------------------
# Visibility
# ---------------------------------------------------------------------------------------------


async def test_a_location_sees_only_its_own_contacts_and_its_own_and_brand_sequences(
    channel: grpc.aio.Channel, world: World, pool: Pool
) -> None:
    await seed(channel, world, pool)
    extra = await new_contact(channel, world, parent=A_DOWNTOWN, contact_id="dan")
    await new_contact(channel, world, parent=A_UPTOWN, contact_id="uma")
    stub, seqs = contact_stub(channel), sequence_stub(channel)

    for label in ("a_downtown_manager", "a_downtown_staff"):
        md = world.metadata(label)
        found = await list_all_contacts(channel, md, page_size=1, parent=A_DOWNTOWN.name)
        assert [c.name for c in found] == [DT_ANN, extra.name]
        assert await list_all_sequences(channel, md, parent=A_DOWNTOWN.name) == [A_SEQ, DT_SEQ]
        assert await list_all_sequences(channel, md, parent=A.name) == [A_SEQ]
        for pending in (
            stub.ListContacts(cpb.ListContactsRequest(parent=A_UPTOWN.name), metadata=md),
            stub.GetContact(cpb.GetContactRequest(name=UT_BOB), metadata=md),
            stub.UpdateContact(
                cpb.UpdateContactRequest(
                    contact=cpb.Contact(name=UT_BOB, first_name="Mallory"),
                    update_mask=field_mask_pb2.FieldMask(paths=["first_name"]),
                ),
                metadata=md,
            ),
            seqs.GetSequence(spb.GetSequenceRequest(name=UT_SEQ), metadata=md),
            seqs.ListSequences(spb.ListSequencesRequest(parent=A_UPTOWN.name), metadata=md),
            seqs.ListSequences(
                spb.ListSequencesRequest(parent=A.name, scope=SCOPE_ALL), metadata=md
            ),
            seqs.UpdateSequence(
                spb.UpdateSequenceRequest(
                    sequence=spb.Sequence(name=UT_SEQ, display_name="Mine now"),
                    update_mask=field_mask_pb2.FieldMask(paths=["display_name"]),
                ),
                metadata=md,
            ),
            seqs.ArchiveSequence(spb.ArchiveSequenceRequest(name=UT_SEQ), metadata=md),
        ):
            await refused(pending, PD)
    # nothing of uptown changed
    bob = await stub.GetContact(
        cpb.GetContactRequest(name=UT_BOB), metadata=world.metadata("a_admin")
    )
    assert bob.first_name == "Bob"
    ut = await seqs.GetSequence(
        spb.GetSequenceRequest(name=UT_SEQ), metadata=world.metadata("a_admin")
    )
    assert (ut.display_name, ut.state) == ("Welcome back", spb.SEQUENCE_STATE_ACTIVE)

    # a franchisor principal sees every location's, on request
    everything = [A_SEQ, DT_SEQ, UT_SEQ]
    for label in ("a_admin", "a_viewer", "operator"):
        md = world.metadata(label)
        assert await list_all_sequences(channel, md, parent=A.name, scope=SCOPE_ALL) == everything
        assert await list_all_sequences(channel, md, parent=A.name) == [A_SEQ]
    md = world.metadata("b_harbor_manager")
    assert await list_all_sequences(channel, md, parent=B_HARBOR.name) == [B_SEQ, HB_SEQ]
    found = await list_all_contacts(channel, md, parent=B_HARBOR.name)
    assert [c.name for c in found] == [HB_CY]


async def test_a_sequence_uses_brand_and_own_location_templates_only(
    channel: grpc.aio.Channel, world: World, pool: Pool
) -> None:
    await seed(channel, world, pool)
    seqs = sequence_stub(channel)
    manager, admin = world.metadata("a_downtown_manager"), world.metadata("a_admin")

    def create(parent: TenantScope, *templates: str) -> spb.CreateSequenceRequest:
        return spb.CreateSequenceRequest(
            parent=parent.name, sequence_id=fresh("seq"), sequence=sequence_body(*templates)
        )

    made = await seqs.CreateSequence(create(A_DOWNTOWN, A_TPL, DT_TPL, A_TPL), metadata=manager)
    assert made.name.startswith(f"{A_DOWNTOWN.name}/sequences/")
    assert [s.template for s in made.steps] == [A_TPL, DT_TPL, A_TPL]
    assert made.state == spb.SEQUENCE_STATE_ACTIVE
    # reply and opt-out always end an enrollment
    assert {spb.EXIT_EVENT_REPLY, spb.EXIT_EVENT_OPT_OUT} <= set(made.exit_events)

    for who in (manager, admin):
        await refused(
            seqs.CreateSequence(create(A_DOWNTOWN, A_TPL, UT_TPL), metadata=who),
            IA,
            fields=("sequence.steps[1].template",),
        )
        await refused(
            seqs.CreateSequence(create(A_DOWNTOWN, B_TPL), metadata=who),
            IA,
            fields=("sequence.steps[0].template",),
        )
    got = await refused(
        seqs.CreateSequence(create(A, A_TPL, A_TPL, DT_TPL), metadata=admin),
        IA,
        fields=("sequence.steps[2].template",),
    )
    assert "sequence.steps[0].template" not in got.violations
    # a location manager creates no brand sequence, whatever its templates
    await refused(seqs.CreateSequence(create(A, A_TPL), metadata=manager), PD)
    # nor may an update point a location sequence at a sibling's template
    await refused(
        seqs.UpdateSequence(
            spb.UpdateSequenceRequest(
                sequence=spb.Sequence(
                    name=made.name, steps=[spb.Step(template=A_TPL), spb.Step(template=UT_TPL)]
                ),
                update_mask=field_mask_pb2.FieldMask(paths=["steps"]),
            ),
            metadata=manager,
        ),
        IA,
        fields=("sequence.steps[1].template",),
    )
    again = await seqs.GetSequence(spb.GetSequenceRequest(name=made.name), metadata=manager)
    assert [s.template for s in again.steps] == [A_TPL, DT_TPL, A_TPL]
    listed = await list_all_sequences(channel, admin, parent=A.name, scope=SCOPE_ALL)
    assert listed == [A_SEQ, DT_SEQ, made.name, UT_SEQ]
