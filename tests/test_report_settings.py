"""A brand's reporting settings (Franchisor.report_settings) and a location's weekly digest
(Location.weekly_digest), over the real gRPC server.

A franchisor admin reads and sets the reporting zone, the currency, the attribution windows and
the health-flag thresholds with UpdateFranchisor (the whole message or one field by its
sub-path); a bad value answers INVALID_ARGUMENT naming the field and changes nothing; the
change is audited; nobody else may make it. A location's manager or a franchisor admin turns
the weekly digest on; location staff may not.
"""

from __future__ import annotations

import json
import math
from datetime import timedelta
from typing import Any

import grpc
import pytest
from google.protobuf import duration_pb2, field_mask_pb2
from psycopg_pool import AsyncConnectionPool

from reengage.v1 import tenants_pb2 as pb
from reengage.v1 import tenants_pb2_grpc
from tenants.org.report_settings import ReportSettings, report_settings
from tests.support import A_DOWNTOWN, A_UPTOWN, A, RpcFailure, World, failure

Pool = AsyncConnectionPool[Any]


def duration(value: timedelta) -> duration_pb2.Duration:
    d = duration_pb2.Duration()
    d.FromTimedelta(value)
    return d


SPRING = pb.ReportSettings(
    reporting_time_zone="America/Chicago",
    currency_code="CAD",
    reply_window=duration(timedelta(days=3)),
    click_window=duration(timedelta(days=2)),
    delivery_window=duration(timedelta(hours=12)),
    alert_opt_out_rate=0.02,
    alert_delivery_rate=0.95,
    alert_click_through_rate=0.04,
)


class Tenants:
    def __init__(self, channel: grpc.aio.Channel, world: World) -> None:
        self.stub = tenants_pb2_grpc.TenantServiceStub(channel)
        self.world = world

    async def brand(self, who: str = "a_admin") -> pb.Franchisor:
        return await self.stub.GetFranchisor(
            pb.GetFranchisorRequest(name=A.name), metadata=self.world.metadata(who)
        )

    async def set_brand(
        self, *paths: str, who: str = "a_admin", settings: pb.ReportSettings | None = None
    ) -> pb.Franchisor:
        return await self.stub.UpdateFranchisor(
            pb.UpdateFranchisorRequest(
                franchisor=pb.Franchisor(name=A.name, report_settings=settings),
                update_mask=field_mask_pb2.FieldMask(paths=list(paths)),
            ),
            metadata=self.world.metadata(who),
        )

    async def set_brand_fails(
        self, *paths: str, who: str = "a_admin", settings: pb.ReportSettings | None = None
    ) -> RpcFailure:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await self.set_brand(*paths, who=who, settings=settings)
        return failure(raised.value)

    async def set_digest(self, location: str, on: bool, who: str) -> pb.Location:
        return await self.stub.UpdateLocation(
            pb.UpdateLocationRequest(
                location=pb.Location(name=location, weekly_digest=on),
                update_mask=field_mask_pb2.FieldMask(paths=["weekly_digest"]),
            ),
            metadata=self.world.metadata(who),
        )

    async def location(self, name: str) -> pb.Location:
        return await self.stub.GetLocation(
            pb.GetLocationRequest(name=name), metadata=self.world.metadata("a_admin")
        )


@pytest.fixture
async def tenants(channel: grpc.aio.Channel, world: World) -> Tenants:
    return Tenants(channel, world)


async def franchisor_rows(pool: Pool) -> list[tuple[Any, ...]]:
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT * FROM franchisors ORDER BY id")
        return await cur.fetchall()


async def audited(pool: Pool) -> list[dict[str, Any]]:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT details FROM audit_log WHERE action = 'franchisor.update' ORDER BY id"
        )
        return [r[0] if isinstance(r[0], dict) else json.loads(r[0]) for r in await cur.fetchall()]


def settings_of(message: pb.Franchisor) -> tuple[Any, ...]:
    s = message.report_settings
    return (
        s.reporting_time_zone,
        s.currency_code,
        s.reply_window.ToTimedelta(),
        s.click_window.ToTimedelta(),
        s.delivery_window.ToTimedelta(),
        s.alert_opt_out_rate,
        s.alert_delivery_rate,
        s.alert_click_through_rate,
    )


async def test_a_brand_starts_with_the_default_settings(tenants: Tenants) -> None:
    brand = await tenants.brand("a_downtown_staff")  # whoever reads the brand sees them
    assert brand.HasField("report_settings")
    assert settings_of(brand) == (
        "America/New_York",
        "USD",
        timedelta(days=7),
        timedelta(days=5),
        timedelta(hours=24),
        0.013,
        0.90,
        0.06,
    )


async def test_an_admin_sets_every_report_setting_and_it_is_audited(
    tenants: Tenants, pool: Pool
) -> None:
    before = await tenants.brand()
    updated = await tenants.set_brand("report_settings", settings=SPRING)

    expected = (
        "America/Chicago",
        "CAD",
        timedelta(days=3),
        timedelta(days=2),
        timedelta(hours=12),
        0.02,
        0.95,
        0.04,
    )
    assert settings_of(updated) == expected
    assert settings_of(await tenants.brand()) == expected
    assert updated.etag != before.etag
    async with pool.connection() as conn:  # what the platform's own work reads
        assert await report_settings(conn, A.franchisor_id) == ReportSettings(
            "America/Chicago",
            "CAD",
            timedelta(days=3),
            timedelta(days=2),
            timedelta(hours=12),
            0.02,
            0.95,
            0.04,
        )
    [details] = await audited(pool)
    assert "report_settings.currency_code" in details["fields"]
    assert details["report_settings"]["currency_code"] == {"from": "USD", "to": "CAD"}
    assert details["report_settings"]["reply_window"] == {
        "from": "7 days, 0:00:00",
        "to": "3 days, 0:00:00",
    }


async def test_a_sub_path_sets_one_setting_and_leaves_the_others(tenants: Tenants) -> None:
    updated = await tenants.set_brand(
        "report_settings.click_window",
        settings=pb.ReportSettings(click_window=duration(timedelta(days=1))),
    )
    assert settings_of(updated) == (
        "America/New_York",
        "USD",
        timedelta(days=7),
        timedelta(days=1),
        timedelta(hours=24),
        0.013,
        0.90,
        0.06,
    )


async def test_a_star_mask_without_report_settings_leaves_them(tenants: Tenants) -> None:
    await tenants.set_brand(
        "report_settings.currency_code", settings=pb.ReportSettings(currency_code="EUR")
    )
    request = pb.UpdateFranchisorRequest(
        franchisor=pb.Franchisor(name=A.name, display_name="Acme Coffee Co."),
        update_mask=field_mask_pb2.FieldMask(paths=["*"]),
    )
    updated = await tenants.stub.UpdateFranchisor(
        request, metadata=tenants.world.metadata("a_admin")
    )
    assert updated.display_name == "Acme Coffee Co."
    assert updated.report_settings.currency_code == "EUR"


def bad(**fields: Any) -> pb.ReportSettings:
    settings = pb.ReportSettings()
    settings.CopyFrom(SPRING)
    for name, value in fields.items():
        if isinstance(value, timedelta):
            getattr(settings, name).CopyFrom(duration(value))
        else:
            setattr(settings, name, value)
    return settings


@pytest.mark.parametrize(
    ("settings", "field"),
    [
        pytest.param(bad(reporting_time_zone="Mars/Olympus"), "reporting_time_zone", id="zone"),
        pytest.param(bad(reporting_time_zone=""), "reporting_time_zone", id="no-zone"),
        pytest.param(bad(currency_code="usd"), "currency_code", id="lower-case-currency"),
        pytest.param(bad(currency_code="XYZ"), "currency_code", id="unknown-currency"),
        pytest.param(bad(currency_code=""), "currency_code", id="no-currency"),
        pytest.param(bad(reply_window=timedelta(0)), "reply_window", id="zero-window"),
        pytest.param(bad(click_window=timedelta(seconds=-5)), "click_window", id="negative"),
        pytest.param(bad(delivery_window=timedelta(days=91)), "delivery_window", id="91-days"),
        pytest.param(bad(alert_opt_out_rate=1.5), "alert_opt_out_rate", id="rate-above-1"),
        pytest.param(bad(alert_delivery_rate=-0.1), "alert_delivery_rate", id="negative-rate"),
        pytest.param(bad(alert_click_through_rate=math.nan), "alert_click_through_rate", id="nan"),
    ],
)
async def test_a_bad_setting_is_invalid_argument_and_changes_nothing(
    tenants: Tenants, pool: Pool, settings: pb.ReportSettings, field: str
) -> None:
    before = await franchisor_rows(pool)
    got = await tenants.set_brand_fails("report_settings", settings=settings)
    assert got.code == grpc.StatusCode.INVALID_ARGUMENT, got
    assert set(got.violations) == {f"franchisor.report_settings.{field}"}, got.violations
    assert await franchisor_rows(pool) == before
    # the same value by its sub-path is refused the same way
    got = await tenants.set_brand_fails(f"report_settings.{field}", settings=settings)
    assert set(got.violations) == {f"franchisor.report_settings.{field}"}, got.violations
    assert await franchisor_rows(pool) == before


async def test_ninety_days_is_the_longest_window(tenants: Tenants) -> None:
    updated = await tenants.set_brand(
        "report_settings.reply_window",
        settings=pb.ReportSettings(reply_window=duration(timedelta(days=90))),
    )
    assert updated.report_settings.reply_window.ToTimedelta() == timedelta(days=90)


async def test_an_unknown_sub_path_is_invalid_argument(tenants: Tenants) -> None:
    got = await tenants.set_brand_fails("report_settings.colour", settings=SPRING)
    assert got.code == grpc.StatusCode.INVALID_ARGUMENT
    assert set(got.violations) == {"update_mask"}


@pytest.mark.parametrize("who", ["a_viewer", "a_downtown_manager", "a_downtown_staff", "b_admin"])
async def test_only_the_brand_s_admins_change_report_settings(
    tenants: Tenants, pool: Pool, who: str
) -> None:
    before = await franchisor_rows(pool)
    got = await tenants.set_brand_fails("report_settings", who=who, settings=SPRING)
    assert got.code == grpc.StatusCode.PERMISSION_DENIED, got
    assert await franchisor_rows(pool) == before


# -- the weekly digest ------------------------------------------------------------------------


async def test_the_weekly_digest_is_off_until_a_manager_turns_it_on(tenants: Tenants) -> None:
    assert (await tenants.location(A_DOWNTOWN.name)).weekly_digest is False

    on = await tenants.set_digest(A_DOWNTOWN.name, True, "a_downtown_manager")

    assert on.weekly_digest is True
    assert (await tenants.location(A_DOWNTOWN.name)).weekly_digest is True
    assert (await tenants.location(A_UPTOWN.name)).weekly_digest is False
    off = await tenants.set_digest(A_DOWNTOWN.name, False, "a_admin")
    assert off.weekly_digest is False


async def test_a_location_update_without_weekly_digest_in_the_mask_leaves_it(
    tenants: Tenants,
) -> None:
    await tenants.set_digest(A_UPTOWN.name, True, "a_admin")
    renamed = await tenants.stub.UpdateLocation(
        pb.UpdateLocationRequest(
            location=pb.Location(name=A_UPTOWN.name, display_name="Uptown West"),
            update_mask=field_mask_pb2.FieldMask(paths=["display_name"]),
        ),
        metadata=tenants.world.metadata("a_admin"),
    )
    assert (renamed.display_name, renamed.weekly_digest) == ("Uptown West", True)


@pytest.mark.parametrize(
    ("who", "location"),
    [
        ("a_downtown_staff", A_DOWNTOWN),
        ("a_viewer", A_DOWNTOWN),
        ("a_downtown_manager", A_UPTOWN),
        ("b_admin", A_DOWNTOWN),
    ],
)
async def test_others_may_not_turn_on_a_location_s_digest(
    tenants: Tenants, who: str, location: Any
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await tenants.set_digest(location.name, True, who)
    assert raised.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert (await tenants.location(location.name)).weekly_digest is False
