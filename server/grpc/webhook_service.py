"""WebhookService: outbound webhook endpoints, their secrets, test events and deliveries
(rules in tenants.integrations.endpoints)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import grpc
from google.protobuf import empty_pb2
from psycopg_pool import AsyncConnectionPool

from reengage.v1 import integrations_pb2 as pb
from reengage.v1 import integrations_pb2_grpc
from server.grpc.auth import principal
from server.grpc.converters import require, timestamp
from tenants.core.names import ChildName, parse_child, parse_scope
from tenants.core.pagination import page_request
from tenants.integrations import endpoints
from tenants.integrations.endpoints import DeliveryState, EndpointState
from tenants.integrations.events import STRICT, WebhookPolicy

STATE_TO_PB = {
    EndpointState.ENABLED: pb.WEBHOOK_ENDPOINT_STATE_ENABLED,
    EndpointState.DISABLED: pb.WEBHOOK_ENDPOINT_STATE_DISABLED,
}
DELIVERY_STATE_TO_PB = {
    DeliveryState.PENDING: pb.WEBHOOK_DELIVERY_STATE_PENDING,
    DeliveryState.SUCCEEDED: pb.WEBHOOK_DELIVERY_STATE_SUCCEEDED,
    DeliveryState.FAILED: pb.WEBHOOK_DELIVERY_STATE_FAILED,
}
PB_TO_DELIVERY_STATE = {v: k for k, v in DELIVERY_STATE_TO_PB.items()}
# SendTestEvent answers this long before the caller's deadline, so the answer arrives (its last
# read of the delivery and the answer's way back fit in it on a loaded machine)
DEADLINE_MARGIN_SECONDS = 1.0


def endpoint_name(name: str, field: str = "name") -> ChildName:
    """`franchisors/{f}[/locations/{l}]/webhookEndpoints/{e}`."""
    return parse_child(name, endpoints.COLLECTION, field)


def endpoint_pb(e: endpoints.WebhookEndpoint, secret: str = "") -> pb.WebhookEndpoint:
    return pb.WebhookEndpoint(
        name=e.name.name,
        url=e.url,
        description=e.description,
        event_types=list(e.event_types),
        state=STATE_TO_PB[e.state],
        # shown on reads too, so a read-modify-write with the mask `*` keeps the state
        disabled=e.state is EndpointState.DISABLED,
        disabled_reason=e.disabled_reason,
        disabled_time=timestamp(e.disabled_time),
        secret=secret,
        secret_prefix=e.secret_prefix,
        previous_secret_expire_time=timestamp(e.previous_secret_expire_time),
        failing_since=timestamp(e.failing_since),
        create_time=timestamp(e.create_time),
        update_time=timestamp(e.update_time),
        etag=e.etag,
    )


def delivery_pb(d: endpoints.Delivery) -> pb.WebhookDelivery:
    return pb.WebhookDelivery(
        name=d.name,
        webhook_id=d.webhook_id,
        event_type=d.event_type,
        state=DELIVERY_STATE_TO_PB[d.state],
        attempts=d.attempts,
        last_response_code=d.last_response_code,
        last_error=d.last_error,
        last_attempt_time=timestamp(d.last_attempt_time),
        next_attempt_time=timestamp(d.next_attempt_time),
        create_time=timestamp(d.create_time),
    )


def endpoint_input(e: pb.WebhookEndpoint) -> endpoints.EndpointInput:
    return endpoints.EndpointInput(
        url=e.url, description=e.description, event_types=tuple(e.event_types), disabled=e.disabled
    )


class WebhookService(integrations_pb2_grpc.WebhookServiceServicer):
    def __init__(
        self,
        pool: AsyncConnectionPool[Any],
        policy: WebhookPolicy = STRICT,
        test_event_wait: float | None = None,
    ) -> None:
        """test_event_wait: how long SendTestEvent waits for the first attempt (None: the
        domain's default, read at each call)."""
        self._pool = pool
        self._policy = policy
        self._test_event_wait = test_event_wait

    async def CreateWebhookEndpoint(
        self, request: pb.CreateWebhookEndpointRequest, context: grpc.aio.ServicerContext
    ) -> pb.WebhookEndpoint:
        parent = parse_scope(request.parent, "parent")
        require(request, "webhook_endpoint")
        async with self._pool.connection() as conn:
            issued = await endpoints.create_endpoint(
                conn,
                principal(),
                self._policy,
                parent,
                request.webhook_endpoint_id,
                endpoint_input(request.webhook_endpoint),
            )
        return endpoint_pb(issued.endpoint, issued.secret)

    async def GetWebhookEndpoint(
        self, request: pb.GetWebhookEndpointRequest, context: grpc.aio.ServicerContext
    ) -> pb.WebhookEndpoint:
        name = endpoint_name(request.name)
        async with self._pool.connection() as conn:
            return endpoint_pb(await endpoints.get_endpoint(conn, principal(), name))

    async def ListWebhookEndpoints(
        self, request: pb.ListWebhookEndpointsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListWebhookEndpointsResponse:
        parent = parse_scope(request.parent, "parent")
        page = page_request(
            f"{parent.name}/{endpoints.COLLECTION}", request.page_size, request.page_token
        )
        async with self._pool.connection() as conn:
            found, token = await endpoints.list_endpoints(conn, principal(), parent, page)
        return pb.ListWebhookEndpointsResponse(
            webhook_endpoints=[endpoint_pb(e) for e in found], next_page_token=token
        )

    async def UpdateWebhookEndpoint(
        self, request: pb.UpdateWebhookEndpointRequest, context: grpc.aio.ServicerContext
    ) -> pb.WebhookEndpoint:
        require(request, "webhook_endpoint")
        name = endpoint_name(request.webhook_endpoint.name, "webhook_endpoint.name")
        async with self._pool.connection() as conn:
            updated = await endpoints.update_endpoint(
                conn,
                principal(),
                self._policy,
                name,
                endpoint_input(request.webhook_endpoint),
                list(request.update_mask.paths),
                request.etag or request.webhook_endpoint.etag,
            )
        return endpoint_pb(updated)

    async def DeleteWebhookEndpoint(
        self, request: pb.DeleteWebhookEndpointRequest, context: grpc.aio.ServicerContext
    ) -> empty_pb2.Empty:
        name = endpoint_name(request.name)
        async with self._pool.connection() as conn:
            await endpoints.delete_endpoint(conn, principal(), name)
        return empty_pb2.Empty()

    async def RotateWebhookSecret(
        self, request: pb.RotateWebhookSecretRequest, context: grpc.aio.ServicerContext
    ) -> pb.WebhookEndpoint:
        name = endpoint_name(request.name)
        overlap = request.overlap.ToTimedelta() if request.HasField("overlap") else timedelta(0)
        async with self._pool.connection() as conn:
            issued = await endpoints.rotate_secret(conn, principal(), name, overlap)
        return endpoint_pb(issued.endpoint, issued.secret)

    async def SendTestEvent(
        self, request: pb.SendTestEventRequest, context: grpc.aio.ServicerContext
    ) -> pb.WebhookDelivery:
        name = endpoint_name(request.name)
        async with self._pool.connection() as conn:
            delivery = await endpoints.send_test_event(conn, principal(), name)
        wait = (
            endpoints.TEST_EVENT_WAIT_SECONDS
            if self._test_event_wait is None
            else self._test_event_wait
        )
        remaining = context.time_remaining()
        if remaining is not None:  # the caller's deadline: answer before it, as things stand
            wait = min(wait, remaining - DEADLINE_MARGIN_SECONDS)
        settled = await endpoints.await_first_attempt(self._pool.connection, delivery, wait)
        return delivery_pb(settled)

    async def ListWebhookDeliveries(
        self, request: pb.ListWebhookDeliveriesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListWebhookDeliveriesResponse:
        name = endpoint_name(request.parent, "parent")
        state = PB_TO_DELIVERY_STATE.get(request.state)
        page = page_request(
            f"{name.name}/{endpoints.DELIVERIES}?state={state or ''}",
            request.page_size,
            request.page_token,
        )
        async with self._pool.connection() as conn:
            found, token = await endpoints.list_deliveries(conn, principal(), name, page, state)
        return pb.ListWebhookDeliveriesResponse(
            webhook_deliveries=[delivery_pb(d) for d in found], next_page_token=token
        )
