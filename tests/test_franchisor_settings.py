"""A franchisor admin sets the brand's own settings with UpdateFranchisor, over the real gRPC
server: the display name and the brand Slack channel, where location overrides of brand
templates wait for approval.

Only the masked fields change; a bad value or a bad mask answers INVALID_ARGUMENT with a
BadRequest naming the field and changes nothing; a stale etag answers ABORTED and changes
nothing. Who may call it is in the access matrix (tests/test_tenant_access.py).
"""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from google.protobuf import field_mask_pb2
from psycopg_pool import AsyncConnectionPool

from reengage.v1 import tenants_pb2 as pb
from reengage.v1 import tenants_pb2_grpc
from tenants.org.franchisors import brand_slack_channel
from tests.support import A, B, RpcFailure, World, failure

Pool = AsyncConnectionPool[Any]


class Brand:
    """Calls TenantService about franchisor acme, as acme's franchisor admin."""

    def __init__(self, channel: grpc.aio.Channel, world: World) -> None:
        self.stub = tenants_pb2_grpc.TenantServiceStub(channel)
        self.metadata = world.metadata("a_admin")

    async def get(self) -> pb.Franchisor:
        return await self.stub.GetFranchisor(
            pb.GetFranchisorRequest(name=A.name), metadata=self.metadata
        )

    async def update(self, *paths: str, etag: str = "", **fields: Any) -> pb.Franchisor:
        request = pb.UpdateFranchisorRequest(
            franchisor=pb.Franchisor(name=A.name, etag=etag, **fields),
            update_mask=field_mask_pb2.FieldMask(paths=list(paths)),
        )
        return await self.stub.UpdateFranchisor(request, metadata=self.metadata)

    async def update_fails(self, *paths: str, etag: str = "", **fields: Any) -> RpcFailure:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await self.update(*paths, etag=etag, **fields)
        return failure(raised.value)


@pytest.fixture
async def brand(channel: grpc.aio.Channel, world: World) -> Brand:
    return Brand(channel, world)


async def snapshot(pool: Pool) -> dict[str, list[tuple[Any, ...]]]:
    """The franchisors and the audit trail: everything an UpdateFranchisor may write."""
    async with pool.connection() as conn:
        return {
            "franchisors": await (
                await conn.execute("SELECT * FROM franchisors ORDER BY id")
            ).fetchall(),
            "audit": await (await conn.execute("SELECT id FROM audit_log ORDER BY id")).fetchall(),
        }


def assert_invalid(got: RpcFailure, field: str) -> None:
    assert got.code == grpc.StatusCode.INVALID_ARGUMENT, got
    assert got.error_info is not None
    assert (got.error_info.reason, got.error_info.domain) == ("INVALID_ARGUMENT", "reengage.dev")
    assert set(got.violations) == {field}, got.violations
    assert got.violations[field], "the violation says why"


async def test_an_admin_sets_the_brand_channel_and_reads_it_back(brand: Brand) -> None:
    before = await brand.get()
    assert before.slack_channel_id == ""

    updated = await brand.update("slack_channel_id", slack_channel_id="C0BRAND01")

    assert updated.slack_channel_id == "C0BRAND01"
    assert updated.display_name == "Acme Coffee"  # not in the mask: untouched
    assert updated.etag and updated.etag != before.etag
    assert updated.update_time.ToDatetime() >= before.update_time.ToDatetime()
    again = await brand.get()
    assert (again.slack_channel_id, again.etag) == ("C0BRAND01", updated.etag)


async def test_an_empty_channel_id_clears_the_brand_channel(brand: Brand) -> None:
    await brand.update("slack_channel_id", slack_channel_id="C0BRAND01")

    cleared = await brand.update("slack_channel_id", slack_channel_id="")

    assert cleared.slack_channel_id == ""
    assert (await brand.get()).slack_channel_id == ""


async def test_the_display_name_changes_alone(brand: Brand) -> None:
    await brand.update("slack_channel_id", slack_channel_id="C0BRAND01")

    renamed = await brand.update(
        "display_name", display_name="Acme Coffee Co.", slack_channel_id="GIGNORED1"
    )

    assert (renamed.display_name, renamed.slack_channel_id) == ("Acme Coffee Co.", "C0BRAND01")
    assert (await brand.get()).display_name == "Acme Coffee Co."


async def test_a_star_mask_sets_both_fields(brand: Brand) -> None:
    updated = await brand.update("*", display_name="Acme Roasters", slack_channel_id="G0BRAND02")
    assert (updated.display_name, updated.slack_channel_id) == ("Acme Roasters", "G0BRAND02")


@pytest.mark.parametrize(
    "channel_id",
    [
        pytest.param("general", id="word"),
        pytest.param("#general", id="hash"),
        pytest.param("c0123abcd", id="lowercase"),
        pytest.param("U0123ABCD", id="user-id"),
        pytest.param("C01", id="too-short"),
        pytest.param("C0123ABCD ", id="trailing-space"),
    ],
)
async def test_a_bad_channel_id_is_invalid_argument_and_changes_nothing(
    brand: Brand, pool: Pool, channel_id: str
) -> None:
    await brand.update("slack_channel_id", slack_channel_id="C0BRAND01")
    before = await snapshot(pool)

    got = await brand.update_fails(
        "display_name", "slack_channel_id", display_name="Renamed", slack_channel_id=channel_id
    )

    assert_invalid(got, "franchisor.slack_channel_id")
    assert await snapshot(pool) == before
    now = await brand.get()
    assert (now.display_name, now.slack_channel_id) == ("Acme Coffee", "C0BRAND01")


async def test_a_bad_display_name_is_invalid_argument_and_changes_nothing(
    brand: Brand, pool: Pool
) -> None:
    before = await snapshot(pool)
    got = await brand.update_fails("display_name", display_name="   ")
    assert_invalid(got, "franchisor.display_name")
    assert await snapshot(pool) == before


async def test_a_stale_etag_is_aborted_and_changes_nothing(brand: Brand, pool: Pool) -> None:
    first = await brand.get()
    await brand.update("slack_channel_id", slack_channel_id="C0SECOND1")
    before = await snapshot(pool)

    got = await brand.update_fails(
        "slack_channel_id", etag=first.etag, slack_channel_id="C0STALE01"
    )

    assert got.code == grpc.StatusCode.ABORTED, got
    assert got.error_info is not None
    assert (got.error_info.reason, got.error_info.domain) == ("ETAG_MISMATCH", "reengage.dev")
    assert await snapshot(pool) == before
    assert (await brand.get()).slack_channel_id == "C0SECOND1"


async def test_the_current_etag_updates(brand: Brand) -> None:
    current = await brand.get()
    updated = await brand.update(
        "slack_channel_id", etag=current.etag, slack_channel_id="C0BRAND01"
    )
    assert updated.slack_channel_id == "C0BRAND01"
    # the old etag no longer does
    got = await brand.update_fails(
        "slack_channel_id", etag=current.etag, slack_channel_id="C0BRAND02"
    )
    assert got.code == grpc.StatusCode.ABORTED


@pytest.mark.parametrize(
    "paths",
    [
        pytest.param((), id="empty"),
        pytest.param(("name",), id="name"),
        pytest.param(("etag",), id="etag"),
        pytest.param(("update_time",), id="update-time"),
        pytest.param(("display_name", "bogus"), id="known-and-unknown"),
        pytest.param(("franchisor.slack_channel_id",), id="prefixed"),
    ],
)
async def test_an_empty_or_unknown_update_mask_is_invalid_argument(
    brand: Brand, pool: Pool, paths: tuple[str, ...]
) -> None:
    before = await snapshot(pool)
    got = await brand.update_fails(*paths, display_name="Renamed", slack_channel_id="C0BRAND01")
    assert_invalid(got, "update_mask")
    assert await snapshot(pool) == before


async def test_the_platform_reads_the_brand_channel(brand: Brand, pool: Pool) -> None:
    async with pool.connection() as conn:
        assert await brand_slack_channel(conn, A.franchisor_id) == ""
    await brand.update("slack_channel_id", slack_channel_id="C0BRAND01")
    async with pool.connection() as conn:
        assert await brand_slack_channel(conn, A.franchisor_id) == "C0BRAND01"
        assert await brand_slack_channel(conn, B.franchisor_id) == ""  # each brand its own
        assert await brand_slack_channel(conn, "nope") == ""
