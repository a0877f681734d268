"""The gRPC server: authenticated services, plus open health checking and reflection."""

from __future__ import annotations

from typing import Any

import grpc
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from psycopg_pool import AsyncConnectionPool

from reengage.v1 import (
    assistant_pb2,
    assistant_pb2_grpc,
    contacts_pb2,
    contacts_pb2_grpc,
    enrollments_pb2,
    enrollments_pb2_grpc,
    integrations_pb2,
    integrations_pb2_grpc,
    reports_pb2,
    reports_pb2_grpc,
    sequences_pb2,
    sequences_pb2_grpc,
    templates_pb2,
    templates_pb2_grpc,
    tenants_pb2,
    tenants_pb2_grpc,
)
from server import metrics, tracing
from server.grpc.assistant_service import AssistantService
from server.grpc.auth import AuthInterceptor
from server.grpc.contact_service import ContactService
from server.grpc.enrollment_service import EnrollmentService
from server.grpc.integration_service import IntegrationService
from server.grpc.report_service import ReportService
from server.grpc.sequence_service import SequenceService
from server.grpc.template_service import TemplateService
from server.grpc.tenant_service import TenantService
from server.grpc.webhook_service import WebhookService
from tenants.assistant.drafts import AssistantSettings
from tenants.integrations.events import STRICT, WebhookPolicy
from tenants.org import api_keys
from workflows.client import EnrollmentClient
from workflows.relay import FollowupRelay

SERVICE_NAMES = (
    tenants_pb2.DESCRIPTOR.services_by_name["TenantService"].full_name,
    templates_pb2.DESCRIPTOR.services_by_name["TemplateService"].full_name,
    contacts_pb2.DESCRIPTOR.services_by_name["ContactService"].full_name,
    sequences_pb2.DESCRIPTOR.services_by_name["SequenceService"].full_name,
    enrollments_pb2.DESCRIPTOR.services_by_name["EnrollmentService"].full_name,
    reports_pb2.DESCRIPTOR.services_by_name["ReportService"].full_name,
    integrations_pb2.DESCRIPTOR.services_by_name["WebhookService"].full_name,
    integrations_pb2.DESCRIPTOR.services_by_name["IntegrationService"].full_name,
    assistant_pb2.DESCRIPTOR.services_by_name["AssistantService"].full_name,
)
# The files of the types an error's google.rpc.Status details hold (ErrorInfo, BadRequest):
# reflection answers from the process's descriptor pool, and importing them here (not only
# where errors are built) keeps them published, so a reflection client (grpcurl, Postman, a
# dynamic client) resolves a detail's type URL with `file_containing_symbol`.
ERROR_DETAIL_FILES = (error_details_pb2.DESCRIPTOR.name, status_pb2.DESCRIPTOR.name)


def build_grpc_server(
    pool: AsyncConnectionPool[Any],
    address: str,
    public_url: str = "http://localhost:8080",
    workflows: EnrollmentClient | None = None,
    relay: FollowupRelay | None = None,
    webhook_policy: WebhookPolicy = STRICT,
    auth_cache_seconds: float = 5.0,
    assistant: AssistantSettings | None = None,
) -> tuple[grpc.aio.Server, health.aio.HealthServicer, int]:
    """A server bound to address (port 0 picks a free one); returns it, its health servicer
    and the bound port. Call `await server.start()` to serve. `webhook_policy`: which webhook
    URLs settings allow (http, private addresses). `auth_cache_seconds`: how long a key
    authenticated is remembered (a key revoked on another server stops working within it).
    `assistant`: the message assistant's providers (default: rules and apertium)."""
    keys = api_keys.AuthCache(auth_cache_seconds)
    server = grpc.aio.server(
        # tracing's span first; metrics outside authentication, so refused keys count too
        interceptors=[
            *tracing.grpc_server_interceptors(),
            metrics.GrpcMetricsInterceptor(),
            AuthInterceptor(pool, keys),
        ],
        options=[("grpc.max_receive_message_length", 8 * 1024 * 1024)],
    )
    tenants_pb2_grpc.add_TenantServiceServicer_to_server(TenantService(pool, keys), server)
    templates_pb2_grpc.add_TemplateServiceServicer_to_server(
        TemplateService(pool, public_url), server
    )
    contacts_pb2_grpc.add_ContactServiceServicer_to_server(ContactService(pool, relay), server)
    sequences_pb2_grpc.add_SequenceServiceServicer_to_server(
        SequenceService(pool, public_url, workflows), server
    )
    reports_pb2_grpc.add_ReportServiceServicer_to_server(ReportService(pool), server)
    integrations_pb2_grpc.add_WebhookServiceServicer_to_server(
        WebhookService(pool, webhook_policy), server
    )
    integrations_pb2_grpc.add_IntegrationServiceServicer_to_server(IntegrationService(pool), server)
    assistant_pb2_grpc.add_AssistantServiceServicer_to_server(
        AssistantService(pool, assistant or AssistantSettings()), server
    )
    if workflows is not None:  # without Temporal (unit-level tests) the service is absent
        enrollments_pb2_grpc.add_EnrollmentServiceServicer_to_server(
            EnrollmentService(pool, workflows), server
        )
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    port = server.add_insecure_port(address)
    if port == 0:
        raise SystemExit(f"reengage: cannot listen on {address} (gRPC): port in use")
    return server, health_servicer, port


async def mark_serving(health_servicer: health.aio.HealthServicer, serving: bool) -> None:
    status = (
        health_pb2.HealthCheckResponse.SERVING
        if serving
        else health_pb2.HealthCheckResponse.NOT_SERVING
    )
    for name in ("", *SERVICE_NAMES):
        await health_servicer.set(name, status)
