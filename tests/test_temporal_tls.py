"""Connecting to a Temporal cluster beyond the dev server (issue 19, deploy/README.md): TLS with
the cluster's CA, mTLS with a client certificate, an API key (Temporal Cloud).

The dev server speaks plain gRPC only, so the cluster's front is played by a TLS-terminating gRPC
proxy: a real gRPC server with a certificate from a test CA (trustme), requiring a client
certificate when asked, that records each call's metadata and forwards the call's bytes to the
dev server. Settings come from the environment exactly as `reengage serve|worker` read them."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
import trustme
from temporalio import workflow
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from server.config import Settings
from server.temporal_connection import client_options, connect, tls_config

SERVER_NAME = "temporal.reengage.test"


@dataclass
class Certificates:
    ca: Path
    client_cert: Path
    client_key: Path
    other_ca: Path  # a CA that signed nothing here
    server: trustme.LeafCert
    authority: trustme.CA


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Certificates]:
    folder = tmp_path_factory.mktemp("pki")
    authority = trustme.CA()
    server = authority.issue_cert(SERVER_NAME)
    client = authority.issue_cert("reengage-worker@reengage.test")
    authority.cert_pem.write_to_path(str(folder / "ca.pem"))
    client.cert_chain_pems[0].write_to_path(str(folder / "client.pem"))
    client.private_key_pem.write_to_path(str(folder / "client-key.pem"))
    trustme.CA().cert_pem.write_to_path(str(folder / "other-ca.pem"))
    yield Certificates(
        folder / "ca.pem",
        folder / "client.pem",
        folder / "client-key.pem",
        folder / "other-ca.pem",
        server,
        authority,
    )


@dataclass
class ClusterFront:
    """The TLS front: its address and the metadata of every call it forwarded."""

    address: str
    calls: list[tuple[str, dict[str, str]]] = field(default_factory=list)


class Forwarder(grpc.GenericRpcHandler):  # type: ignore[misc]
    def __init__(self, upstream: grpc.aio.Channel, front: ClusterFront) -> None:
        self.upstream = upstream
        self.front = front

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        method = details.method
        if isinstance(method, bytes):
            method = method.decode()
        call = self.upstream.unary_unary(method)  # raw bytes both ways

        async def forward(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            metadata = {k: v for k, v in context.invocation_metadata() or () if isinstance(v, str)}
            self.front.calls.append((method, metadata))
            passed = [(k, v) for k, v in metadata.items() if not k.startswith(":")]
            try:
                return await call(request, metadata=passed, timeout=context.time_remaining())
            except grpc.aio.AioRpcError as err:
                await context.abort(err.code(), err.details() or "")

        return grpc.unary_unary_rpc_method_handler(forward)


@asynccontextmanager
async def cluster_front(
    dev_env: WorkflowEnvironment, certificates: Certificates, *, require_client_cert: bool
) -> AsyncIterator[ClusterFront]:
    upstream = grpc.aio.insecure_channel(dev_env.client.service_client.config.target_host)
    server_cert = certificates.server
    credentials = grpc.ssl_server_credentials(
        [(server_cert.private_key_pem.bytes(), server_cert.cert_chain_pems[0].bytes())],
        root_certificates=certificates.authority.cert_pem.bytes() if require_client_cert else None,
        require_client_auth=require_client_cert,
    )
    server = grpc.aio.server()
    front = ClusterFront("")
    server.add_generic_rpc_handlers([Forwarder(upstream, front)])
    port = server.add_secure_port("127.0.0.1:0", credentials)
    front.address = f"127.0.0.1:{port}"
    await server.start()
    try:
        yield front
    finally:
        await server.stop(None)
        await upstream.close()


@workflow.defn(name="TlsEcho", sandboxed=False)
class TlsEcho:
    @workflow.run
    async def run(self, word: str) -> str:
        return f"{word} over TLS"


def settings_of(env: dict[str, str]) -> Settings:
    return Settings.from_env({"REENGAGE_TEMPORAL_TLS_SERVER_NAME": SERVER_NAME, **env})


async def round_trip(client: Client) -> str:
    """A worker long-polling through the front and a workflow run to its end."""
    queue = f"tls-{uuid.uuid4().hex[:8]}"
    async with Worker(client, task_queue=queue, workflows=[TlsEcho]):
        return await client.execute_workflow(
            TlsEcho.run,
            "hello",
            id=f"tls-echo-{uuid.uuid4().hex[:8]}",
            task_queue=queue,
            execution_timeout=timedelta(seconds=30),
        )


def test_tls_settings_from_the_environment(certificates: Certificates) -> None:
    settings = settings_of(
        {
            "REENGAGE_TEMPORAL_TLS_CA": str(certificates.ca),
            "REENGAGE_TEMPORAL_TLS_CERT": str(certificates.client_cert),
            "REENGAGE_TEMPORAL_TLS_KEY": str(certificates.client_key),
            "REENGAGE_TEMPORAL_NAMESPACE": "brand-prod.a1b2c",
        }
    )
    config = tls_config(settings)
    assert not isinstance(config, bool)
    assert config.server_root_ca_cert == certificates.ca.read_bytes()
    assert config.client_cert == certificates.client_cert.read_bytes()
    assert config.client_private_key == certificates.client_key.read_bytes()
    assert config.domain == SERVER_NAME
    options = client_options(settings)
    assert options["namespace"] == "brand-prod.a1b2c" and "api_key" not in options

    # an API key alone: TLS with the system's CAs (Temporal Cloud), the key kept out of repr()
    cloud = Settings.from_env({"REENGAGE_TEMPORAL_API_KEY": "tcld-secret-key"})
    assert cloud.temporal_tls and tls_config(cloud) is True
    assert client_options(cloud)["api_key"] == "tcld-secret-key"
    assert "tcld-secret-key" not in repr(cloud)
    # nothing set: the dev server's plain gRPC
    assert tls_config(Settings.from_env({})) is False
    # REENGAGE_TEMPORAL_TLS=1 alone: TLS trusting the system's CAs
    assert tls_config(Settings.from_env({"REENGAGE_TEMPORAL_TLS": "1"})) is True


@pytest.mark.parametrize(
    ("env", "complaint"),
    [
        ({"REENGAGE_TEMPORAL_TLS_CERT": "client.pem"}, "set both"),
        ({"REENGAGE_TEMPORAL_TLS_KEY": "client-key.pem"}, "set both"),
        ({"REENGAGE_TEMPORAL_TLS_CA": "missing.pem"}, "no such file"),
        ({"REENGAGE_TEMPORAL_TLS": "maybe"}, r"1 \(on\) or 0 \(off\)"),
    ],
)
def test_bad_tls_settings_are_refused_at_start(
    certificates: Certificates, env: dict[str, str], complaint: str
) -> None:
    folder = certificates.ca.parent
    env = {k: str(folder / v) if v.endswith(".pem") else v for k, v in env.items()}
    with pytest.raises(SystemExit, match=complaint):
        Settings.from_env(env)


async def test_tls_with_the_clusters_ca(
    dev_env: WorkflowEnvironment, certificates: Certificates
) -> None:
    async with cluster_front(dev_env, certificates, require_client_cert=False) as front:
        settings = settings_of({"REENGAGE_TEMPORAL_TLS_CA": str(certificates.ca)})
        client = await connect(front.address, settings, within=10)
        assert await round_trip(client) == "hello over TLS"
        methods = {m.rsplit("/", 1)[-1] for m, _ in front.calls}
        assert {"StartWorkflowExecution", "PollWorkflowTaskQueue"} <= methods

        # a CA that did not sign the cluster's certificate: no connection
        stranger = settings_of({"REENGAGE_TEMPORAL_TLS_CA": str(certificates.other_ca)})
        with pytest.raises(RuntimeError):
            await connect(front.address, stranger, within=1)


async def test_mtls_needs_the_client_certificate(
    dev_env: WorkflowEnvironment, certificates: Certificates
) -> None:
    async with cluster_front(dev_env, certificates, require_client_cert=True) as front:
        without = settings_of({"REENGAGE_TEMPORAL_TLS_CA": str(certificates.ca)})
        with pytest.raises(RuntimeError):
            await connect(front.address, without, within=1)
        assert front.calls == []  # the handshake failed: nothing reached the cluster

        settings = settings_of(
            {
                "REENGAGE_TEMPORAL_TLS_CA": str(certificates.ca),
                "REENGAGE_TEMPORAL_TLS_CERT": str(certificates.client_cert),
                "REENGAGE_TEMPORAL_TLS_KEY": str(certificates.client_key),
            }
        )
        client = await connect(front.address, settings, within=10)
        assert await round_trip(client) == "hello over TLS"


async def test_the_api_key_goes_with_every_call(
    dev_env: WorkflowEnvironment, certificates: Certificates
) -> None:
    async with cluster_front(dev_env, certificates, require_client_cert=False) as front:
        settings = settings_of(
            {
                "REENGAGE_TEMPORAL_TLS_CA": str(certificates.ca),
                "REENGAGE_TEMPORAL_API_KEY": "tcld-test-key-7f3a",
            }
        )
        client = await connect(front.address, settings, within=10)
        assert await round_trip(client) == "hello over TLS"
        assert front.calls
        assert {md.get("authorization") for _, md in front.calls} == {"Bearer tcld-test-key-7f3a"}
