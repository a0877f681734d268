"""A purchase's value, order id and coupon code (RecordActivity of kind `purchase`), over the
real gRPC server and PostgreSQL: the value is kept in the brand currency's minor units, another
currency is refused naming the brand's, an order id is one purchase at its location (recording
it again there, for any contact, answers the first and changes nothing; the same id at another
location is another order), the coupon code is kept upper-case, and other kinds carry none of
the three.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import grpc
import pytest
from google.protobuf import field_mask_pb2
from google.type import money_pb2

from reengage.v1 import contacts_pb2 as cpb
from reengage.v1 import tenants_pb2 as tpb
from reengage.v1 import tenants_pb2_grpc
from tests.access_matrix import IA, Pool, refused
from tests.contact_sequence_fixtures import new_contact, now, ts
from tests.contact_sequence_table import contact_stub
from tests.support import A_DOWNTOWN, A_UPTOWN, B_HARBOR, World

MANAGER = "a_downtown_manager"


def usd(units: int, nanos: int = 0, currency: str = "USD") -> money_pb2.Money:
    return money_pb2.Money(currency_code=currency, units=units, nanos=nanos)


def purchase(**fields: Any) -> cpb.Activity:
    fields.setdefault("kind", "purchase")
    return cpb.Activity(occurred_at=ts(now() - timedelta(hours=1)), **fields)


async def record(
    channel: grpc.aio.Channel,
    world: World,
    contact: str,
    activity: cpb.Activity,
    who: str = MANAGER,
) -> cpb.Activity:
    return await contact_stub(channel).RecordActivity(  # type: ignore[no-any-return]
        cpb.RecordActivityRequest(contact=contact, activity=activity),
        metadata=world.metadata(who),
    )


async def purchases(pool: Pool) -> list[tuple[Any, ...]]:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT location_id, order_id, value_minor, currency_code, coupon_code, item"
            " FROM activities WHERE kind = 'purchase' ORDER BY id"
        )
        return await cur.fetchall()


async def test_a_purchase_keeps_its_value_in_cents_its_order_and_its_coupon(
    channel: grpc.aio.Channel, world: World, pool: Pool
) -> None:
    contact = await new_contact(channel, world)

    got = await record(
        channel,
        world,
        contact.name,
        purchase(
            item="Latte",
            value=usd(12, 340_000_000),
            order_id="  SO-1001 ",
            coupon_code=" spring-25 ",
        ),
    )

    assert (got.value.currency_code, got.value.units, got.value.nanos) == ("USD", 12, 340_000_000)
    assert (got.order_id, got.coupon_code) == ("SO-1001", "SPRING-25")
    assert await purchases(pool) == [("downtown", "SO-1001", 1234, "USD", "SPRING-25", "Latte")]


async def test_a_purchase_without_value_order_or_coupon_is_recorded_as_before(
    channel: grpc.aio.Channel, world: World, pool: Pool
) -> None:
    contact = await new_contact(channel, world)
    got = await record(channel, world, contact.name, purchase(item="Mocha"))
    assert not got.HasField("value")
    assert (got.order_id, got.coupon_code) == ("", "")
    assert await purchases(pool) == [("downtown", None, None, None, "", "Mocha")]


async def test_a_zero_yen_currency_keeps_whole_yen(
    channel: grpc.aio.Channel, world: World, pool: Pool
) -> None:
    tenants = tenants_pb2_grpc.TenantServiceStub(channel)
    await tenants.UpdateFranchisor(
        tpb.UpdateFranchisorRequest(
            franchisor=tpb.Franchisor(
                name="franchisors/acme", report_settings=tpb.ReportSettings(currency_code="JPY")
            ),
            update_mask=field_mask_pb2.FieldMask(paths=["report_settings.currency_code"]),
        ),
        metadata=world.metadata("a_admin"),
    )
    contact = await new_contact(channel, world)
    got = await record(channel, world, contact.name, purchase(value=usd(1500, 0, "JPY")))
    assert (got.value.currency_code, got.value.units, got.value.nanos) == ("JPY", 1500, 0)
    assert [(r[2], r[3]) for r in await purchases(pool)] == [(1500, "JPY")]
    # a fraction of a yen does not exist
    await refused(
        record(channel, world, contact.name, purchase(value=usd(1, 500_000_000, "JPY"))),
        IA,
        field="activity.value.nanos",
    )


@pytest.mark.parametrize(
    ("activity", "field", "words"),
    [
        (purchase(value=usd(10, 0, "EUR")), "activity.value.currency_code", "USD"),
        (purchase(value=usd(10, 0, "")), "activity.value.currency_code", "USD"),
        (purchase(value=usd(-5)), "activity.value", "negative"),
        (purchase(value=usd(0, -10_000_000)), "activity.value", "negative"),
        (purchase(value=usd(1, 1)), "activity.value.nanos", "decimals"),
        (purchase(value=usd(10**13)), "activity.value.units", ""),
        (purchase(order_id="x" * 201), "activity.order_id", "200"),
        (purchase(coupon_code="SPRING 25"), "activity.coupon_code", ""),
        (purchase(coupon_code="C" * 33), "activity.coupon_code", ""),
        (purchase(kind="visit", value=usd(3)), "activity.value", "purchase"),
        (purchase(kind="visit", order_id="SO-1"), "activity.order_id", "purchase"),
        (purchase(kind="cart_abandoned", coupon_code="SAVE"), "activity.coupon_code", "purchase"),
    ],
    ids=[
        "other-currency",
        "no-currency",
        "negative",
        "negative-nanos",
        "sub-cent",
        "absurd",
        "long-order-id",
        "coupon-space",
        "coupon-too-long",
        "visit-value",
        "visit-order",
        "cart-coupon",
    ],
)
async def test_a_bad_purchase_is_refused_naming_the_field_and_records_nothing(
    channel: grpc.aio.Channel,
    world: World,
    pool: Pool,
    activity: cpb.Activity,
    field: str,
    words: str,
) -> None:
    contact = await new_contact(channel, world)
    got = await refused(record(channel, world, contact.name, activity), IA, field=field)
    assert words in got.violations[field], got.violations
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT count(*) FROM activities")
        assert await cur.fetchone() == (0,)


async def test_an_order_recorded_again_answers_the_first_and_changes_nothing(
    channel: grpc.aio.Channel, world: World, pool: Pool
) -> None:
    dana = await new_contact(channel, world)
    lee = await new_contact(channel, world)  # another contact of the same location
    first = await record(
        channel, world, dana.name, purchase(item="Latte", value=usd(4, 500_000_000), order_id="A1")
    )
    before = await contact_stub(channel).GetContact(
        cpb.GetContactRequest(name=lee.name), metadata=world.metadata(MANAGER)
    )

    again = await record(
        channel, world, dana.name, purchase(item="Mocha", value=usd(9), order_id="A1")
    )
    other = await record(
        channel, world, lee.name, purchase(item="Cake", value=usd(7), order_id="A1", reference="r")
    )

    assert again == first
    assert other == first  # the purchase recorded first, its contact named
    assert other.name.startswith(f"{dana.name}/activities/")
    assert await purchases(pool) == [("downtown", "A1", 450, "USD", "", "Latte")]
    after = await contact_stub(channel).GetContact(
        cpb.GetContactRequest(name=lee.name), metadata=world.metadata(MANAGER)
    )
    assert after.last_purchase_time == before.last_purchase_time  # lee's record is untouched
    assert not after.HasField("last_purchase_time")


async def test_the_same_order_id_at_another_location_is_another_purchase(
    channel: grpc.aio.Channel, world: World, pool: Pool
) -> None:
    """Each store runs its own till: uptown's order #1001 and downtown's are two orders."""
    uptown = await new_contact(channel, world, parent=A_UPTOWN)
    downtown = await new_contact(channel, world, parent=A_DOWNTOWN)
    first = await record(
        channel, world, uptown.name, purchase(value=usd(20), order_id="1001"), who="a_admin"
    )

    # the downtown manager records downtown's own order #1001: a new purchase, its contact's
    second = await record(channel, world, downtown.name, purchase(value=usd(8), order_id="1001"))
    assert second != first
    assert second.name.startswith(f"{downtown.name}/activities/")
    # each again at its own location: one purchase each still (the brand's admin too)
    assert (
        await record(channel, world, downtown.name, purchase(value=usd(8), order_id="1001"))
        == second
    )
    assert (
        await record(
            channel, world, uptown.name, purchase(value=usd(20), order_id="1001"), who="a_admin"
        )
        == first
    )
    assert [r[:3] for r in await purchases(pool)] == [
        ("uptown", "1001", 2000),
        ("downtown", "1001", 800),
    ]
    got = await contact_stub(channel).GetContact(
        cpb.GetContactRequest(name=downtown.name), metadata=world.metadata(MANAGER)
    )
    assert got.HasField("last_purchase_time")


async def test_order_ids_are_per_franchisor(
    channel: grpc.aio.Channel, world: World, pool: Pool
) -> None:
    acme = await new_contact(channel, world)
    bravo = await new_contact(channel, world, who="b_admin", parent=B_HARBOR)
    await record(channel, world, acme.name, purchase(order_id="1001"), who="a_admin")
    await record(channel, world, bravo.name, purchase(order_id="1001"), who="b_admin")
    assert [r[:2] for r in await purchases(pool)] == [("downtown", "1001"), ("harbor", "1001")]


async def test_the_currency_cannot_change_once_a_purchase_has_a_value(
    channel: grpc.aio.Channel, world: World, pool: Pool
) -> None:
    tenants = tenants_pb2_grpc.TenantServiceStub(channel)

    def currency(code: str) -> Any:
        return tenants.UpdateFranchisor(
            tpb.UpdateFranchisorRequest(
                franchisor=tpb.Franchisor(
                    name="franchisors/acme",
                    report_settings=tpb.ReportSettings(currency_code=code),
                ),
                update_mask=field_mask_pb2.FieldMask(paths=["report_settings.currency_code"]),
            ),
            metadata=world.metadata("a_admin"),
        )

    contact = await new_contact(channel, world)
    await record(channel, world, contact.name, purchase(order_id="no-value"))
    assert (await currency("EUR")).report_settings.currency_code == "EUR"  # no value yet
    await record(channel, world, contact.name, purchase(value=usd(3, 0, "EUR")))

    await refused(currency("USD"), grpc.StatusCode.FAILED_PRECONDITION, reason="CURRENCY_IN_USE")
    assert (await currency("EUR")).report_settings.currency_code == "EUR"  # no change: fine
