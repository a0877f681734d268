"""The custom search attributes that list enrollments per tenant (design §6).

One list, used by `reengage up` (dev server flags), the worker and the test fixtures (the
time-skipping server learns them through the operator service). Values are ids, never personal
data: workflow ids and search attributes are stored unencrypted and shown in the UI.
"""

from __future__ import annotations

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)
from temporalio.client import Client
from temporalio.common import SearchAttributeKey
from temporalio.service import RPCError, RPCStatusCode

FRANCHISOR_ID = SearchAttributeKey.for_keyword("ReengageFranchisorId")
LOCATION_ID = SearchAttributeKey.for_keyword("ReengageLocationId")
SEQUENCE_ID = SearchAttributeKey.for_keyword("ReengageSequenceId")
ENROLLMENT_STATUS = SearchAttributeKey.for_keyword("ReengageEnrollmentStatus")
# the enrollment's id (the last segment of its name): workflow ids are hashes, so the Temporal
# UI finds an enrollment with `ReengageEnrollmentId="e…"`
ENROLLMENT_ID = SearchAttributeKey.for_keyword("ReengageEnrollmentId")

SEARCH_ATTRIBUTES = (FRANCHISOR_ID, LOCATION_ID, SEQUENCE_ID, ENROLLMENT_STATUS, ENROLLMENT_ID)


async def register(client: Client) -> None:
    """Registers the search attributes on a server that lacks them (idempotent). The
    time-skipping test server cannot list them, so there every one is added."""
    try:
        existing = set(
            (
                await client.operator_service.list_search_attributes(
                    ListSearchAttributesRequest(namespace=client.namespace)
                )
            ).custom_attributes
        )
    except RPCError as err:
        if err.status != RPCStatusCode.UNIMPLEMENTED:
            raise
        existing = set()
    missing = {
        key.name: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD
        for key in SEARCH_ATTRIBUTES
        if key.name not in existing
    }
    if missing:
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(namespace=client.namespace, search_attributes=missing)
        )
