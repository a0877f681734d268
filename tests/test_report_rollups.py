"""Report rollups (issue 16): the triggers of migration 0016 keep report_days and
report_day_reasons equal to what the facts say, in both reporting zones, and attribute each
reply, opt-out and purchase to the right text once; `tenants.reports.rollups` recounts them.

Every dataset here is small and hand-computed: the expected numbers are written out. The
facts are written with plain SQL (the triggers must follow whatever path writes them).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg import AsyncConnection

from tenants.reports import rollups
from tests.waiting import eventually

F = "acme"
T0 = datetime(2026, 3, 10, 15, 0, tzinfo=UTC)  # 11:00 in New York, 08:00 in Los Angeles


@dataclass
class Brand:
    """A franchisor written with plain SQL: locations, contacts, enrollments and the facts."""

    conn: AsyncConnection[Any]
    franchisor: str = F
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    async def create(
        self, zone: str = "America/New_York", locations: dict[str, str] | None = None
    ) -> Brand:
        await self.conn.execute(
            "INSERT INTO franchisors (id, display_name, reporting_time_zone) VALUES (%s, %s, %s)",
            (self.franchisor, self.franchisor.title(), zone),
        )
        for location, tz in (locations or {"downtown": "America/New_York"}).items():
            await self.conn.execute(
                "INSERT INTO locations (franchisor_id, id, display_name, time_zone)"
                " VALUES (%s, %s, %s, %s)",
                (self.franchisor, location, location.title(), tz),
            )
        return self

    async def contact(self, location: str = "downtown", contact: str = "") -> str:
        contact = contact or f"c{next(self._ids)}"
        await self.conn.execute(
            "INSERT INTO contacts (franchisor_id, location_id, id, phone_e164, zones, zone_source)"
            " VALUES (%s, %s, %s, %s, '{America/New_York}', 'location_default')",
            (self.franchisor, location, contact, f"+1212555{next(self._ids):04d}"),
        )
        return contact

    async def enroll(
        self,
        contact: str,
        at: datetime,
        location: str = "downtown",
        sequence: str = "winback",
        brand_sequence: bool = False,
    ) -> str:
        enrollment = f"e{self.franchisor}-{next(self._ids)}"
        await self.conn.execute(
            "INSERT INTO enrollments (id, workflow_id, franchisor_id, location_id, contact_id,"
            " sequence_location_id, sequence_id, sequence_version, definition, status,"
            " enrolled_at, enrolled_by) VALUES (%s, %s, %s, %s, %s, %s, %s, 1, '{}', 'active',"
            " %s, 'test')",
            (
                enrollment,
                f"w{enrollment}",
                self.franchisor,
                location,
                contact,
                None if brand_sequence else location,
                sequence,
                at,
            ),
        )
        return enrollment

    async def end(
        self, enrollment: str, at: datetime, step: int, status: str = "exited", reason: str = ""
    ) -> None:
        await self.conn.execute(
            "UPDATE enrollments SET status = %s, exit_reason = %s, current_step = %s,"
            " ended_at = %s WHERE id = %s",
            (status, reason, step, at, enrollment),
        )

    async def send(
        self,
        enrollment: str,
        step: int,
        at: datetime,
        segments: int = 1,
        accepted: bool = True,
        coupon: str = "",
    ) -> int:
        """A sequence text reserved at `at`; the carrier accepts it (a carrier id) unless not."""
        cur = await self.conn.execute(
            "INSERT INTO messages (franchisor_id, location_id, contact_id, direction, body,"
            " segments, enrollment_id, step_index, idempotency_key, carrier, status,"
            " create_time, status_time, coupon_code)"
            " SELECT franchisor_id, location_id, contact_id, 'outbound', 'hi', %s, id, %s,"
            " id || ':' || %s, 'twilio', 'sending', %s, %s, %s FROM enrollments WHERE id = %s"
            " RETURNING id",
            (segments, step, step, at, at, coupon, enrollment),
        )
        row = await cur.fetchone()
        assert row is not None
        message: int = row[0]
        if accepted:
            await self.conn.execute(
                "UPDATE messages SET status = 'sent', carrier_message_id = %s WHERE id = %s",
                (f"SM{message}", message),
            )
        return message

    async def status(self, message: int, status: str, at: datetime, error: str = "") -> None:
        await self.conn.execute(
            "UPDATE messages SET status = %s, error_code = %s, status_time = %s WHERE id = %s",
            (status, error, at, message),
        )

    async def click(
        self, message: int, at: datetime, human: bool = True, fill: bool = False
    ) -> None:
        """A visit of the text's tracked link (`fill`: without its message id)."""
        cur = await self.conn.execute(
            "SELECT location_id, contact_id, enrollment_id, step_index FROM messages WHERE id = %s",
            (message,),
        )
        row = await cur.fetchone()
        assert row is not None
        code = f"k{message}"
        await self.conn.execute(
            "INSERT INTO tracked_links (code, franchisor_id, location_id, contact_id,"
            " enrollment_id, step_index, position, target_url)"
            " VALUES (%s, %s, %s, %s, %s, %s, 0, 'https://example.com')"
            " ON CONFLICT DO NOTHING",
            (code, self.franchisor, *row),
        )
        await self.conn.execute(
            "INSERT INTO link_clicks (code, franchisor_id, location_id, contact_id,"
            " enrollment_id, step_index, message_id, clicked_at, human, agent_class)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (
                code,
                self.franchisor,
                *row,
                None if fill else message,
                at,
                human,
                "person" if human else "robot",
            ),
        )

    async def inbound(
        self,
        contact: str | None,
        at: datetime,
        classification: str = "reply",
        location: str = "downtown",
        routed_later: bool = False,
    ) -> None:
        """An inbound text; `routed_later`: inserted unrouted and routed by an update, as
        `tenants.inbound.texts` does."""
        sid = f"IN{self.franchisor}-{next(self._ids)}"
        if routed_later:
            await self.conn.execute(
                "INSERT INTO inbound_messages (carrier, carrier_message_id, from_number,"
                " to_number, body, classification, received_at)"
                " VALUES ('twilio', %s, '+1', '+2', 'ok', 'unrouted', %s)",
                (sid, at),
            )
            await self.conn.execute(
                "UPDATE inbound_messages SET classification = %s, franchisor_id = %s,"
                " location_id = %s, contact_id = %s WHERE carrier_message_id = %s",
                (classification, self.franchisor, location, contact, sid),
            )
            return
        await self.conn.execute(
            "INSERT INTO inbound_messages (carrier, carrier_message_id, from_number, to_number,"
            " body, franchisor_id, location_id, contact_id, classification, received_at)"
            " VALUES ('twilio', %s, '+1', '+2', 'ok', %s, %s, %s, %s, %s)",
            (sid, self.franchisor, location if contact else None, contact, classification, at),
        )

    async def revoke(
        self, contact: str, at: datetime, location: str = "downtown", source: str = ""
    ) -> None:
        await self.conn.execute(
            "INSERT INTO consent_events (franchisor_id, location_id, contact_id, phone_e164,"
            " kind, scope, occurred_at, channel, source, recorded_by)"
            " SELECT franchisor_id, location_id, id, phone_e164, 'revoke', 'location', %s,"
            " 'sms', %s, 'test' FROM contacts"
            " WHERE franchisor_id = %s AND location_id = %s AND id = %s ON CONFLICT DO NOTHING",
            (at, source or f"stop {next(self._ids)}", self.franchisor, location, contact),
        )

    async def purchase(
        self,
        contact: str,
        at: datetime,
        value: int = 0,
        order: str | None = None,
        coupon: str = "",
        location: str = "downtown",
    ) -> int | None:
        """A purchase activity; None when its order id was recorded before (one order)."""
        cur = await self.conn.execute(
            "INSERT INTO activities (franchisor_id, location_id, contact_id, kind, occurred_at,"
            " order_id, value_minor, currency_code, coupon_code, recorded_by)"
            " VALUES (%s, %s, %s, 'purchase', %s, %s, %s, 'USD', %s, 'test')"
            " ON CONFLICT DO NOTHING RETURNING id",
            (self.franchisor, location, contact, at, order, value, coupon),
        )
        row = await cur.fetchone()
        return int(row[0]) if row else None

    async def conversion(self, activity: int) -> tuple[int | None, str]:
        cur = await self.conn.execute(
            "SELECT message_id, basis FROM report_conversions WHERE activity_id = %s",
            (activity,),
        )
        row = await cur.fetchone()
        assert row is not None
        return row[0], row[1]

    async def rows(self, zone: str = "L") -> dict[tuple[date, str, str, int], dict[str, int]]:
        """The stored rollups of one zone: (day, location, sequence, step) → nonzero counts
        (with 'exit:<reason>' and 'error:<code>' beside them)."""
        found: dict[tuple[date, str, str, int], dict[str, int]] = {}
        for row in await rollups.stored(self.conn, self.franchisor):
            if row.zone_kind != zone:
                continue
            counts = dict(row.counts)
            counts.update({f"exit:{k}": v for k, v in row.exits.items()})
            counts.update({f"error:{k}": v for k, v in row.errors.items()})
            sequence = f"{row.sequence_location_id}/{row.sequence_id}"
            found[(row.day, row.location_id, sequence, row.step_index)] = counts
        return found

    async def totals(self, zone: str = "L") -> dict[str, int]:
        """Every counter summed over the zone's rows."""
        total: dict[str, int] = {}
        for counts in (await self.rows(zone)).values():
            for name, value in counts.items():
                total[name] = total.get(name, 0) + value
        return {k: v for k, v in total.items() if v}

    async def verified(self) -> None:
        assert await rollups.verify(self.conn, self.franchisor) == []


@pytest.fixture
async def conn(database_url: str) -> AsyncIterator[AsyncConnection[Any]]:
    async with await AsyncConnection.connect(database_url, autocommit=True) as c:
        yield c


@pytest.fixture
async def brand(conn: AsyncConnection[Any]) -> Brand:
    return await Brand(conn).create()


DOWNTOWN = "downtown/winback"


async def test_a_text_sent_and_delivered_counts_once_in_both_zones(brand: Brand) -> None:
    contact = await brand.contact()
    enrollment = await brand.enroll(contact, T0)
    message = await brand.send(enrollment, 0, T0, segments=2)
    await brand.status(message, "delivered", T0 + timedelta(seconds=5))
    day = date(2026, 3, 10)
    expected = {
        "enrolled": 1,
        "sent": 1,
        "segments": 2,
        "delivered": 1,
        "contacts_delivered": 1,
    }
    assert await brand.rows("L") == {(day, "downtown", DOWNTOWN, 0): expected}
    assert await brand.rows("B") == {(day, "downtown", DOWNTOWN, 0): expected}
    await brand.verified()


async def test_failures_count_by_error_code_and_a_refusal_at_send_is_failed_not_sent(
    brand: Brand,
) -> None:
    contact = await brand.contact()
    enrollment = await brand.enroll(contact, T0)
    refused = await brand.send(enrollment, 0, T0, accepted=False)
    await brand.status(refused, "failed", T0, error="21211")  # the carrier refused: no id
    other = await brand.enroll(await brand.contact(), T0)
    undelivered = await brand.send(other, 0, T0 + timedelta(minutes=1), segments=3)
    await brand.status(undelivered, "undelivered", T0 + timedelta(minutes=2), error="30003")
    await brand.status(undelivered, "undelivered", T0 + timedelta(minutes=3), error="30003")
    retried = await brand.send(await brand.enroll(await brand.contact(), T0), 0, T0, accepted=False)
    await brand.status(retried, "retry", T0)  # refused for now: neither sent nor failed
    assert await brand.rows() == {
        (date(2026, 3, 10), "downtown", DOWNTOWN, 0): {
            "enrolled": 3,
            "sent": 1,
            "segments": 3,
            "failed": 2,
            "error:21211": 1,
            "error:30003": 1,
        }
    }
    await brand.verified()


async def test_a_re_delivered_status_callback_changes_nothing(brand: Brand) -> None:
    message = await brand.send(await brand.enroll(await brand.contact(), T0), 0, T0)
    for status in ("delivered", "delivered", "read", "read", "delivered"):
        await brand.status(message, status, T0 + timedelta(seconds=10))
    assert await brand.totals() == {
        "enrolled": 1,
        "sent": 1,
        "segments": 1,
        "delivered": 1,
        "contacts_delivered": 1,
    }
    cur = await brand.conn.execute("SELECT delivered_at FROM messages WHERE id = %s", (message,))
    assert await cur.fetchone() == (T0 + timedelta(seconds=10),)
    await brand.verified()


async def test_contacts_delivered_counts_an_enrollment_once_at_its_first_delivered_text(
    brand: Brand,
) -> None:
    enrollment = await brand.enroll(await brand.contact(), T0)
    first = await brand.send(enrollment, 0, T0)
    second = await brand.send(enrollment, 1, T0 + timedelta(days=2))
    await brand.status(first, "delivered", T0 + timedelta(minutes=1))
    await brand.status(second, "delivered", T0 + timedelta(days=2, minutes=1))
    rows = await brand.rows()
    assert rows[(date(2026, 3, 10), "downtown", DOWNTOWN, 0)]["contacts_delivered"] == 1
    assert "contacts_delivered" not in rows[(date(2026, 3, 12), "downtown", DOWNTOWN, 1)]
    await brand.verified()


async def test_enrollments_and_exits_by_reason_on_their_days_and_steps(brand: Brand) -> None:
    replied = await brand.enroll(await brand.contact(), T0)
    completed = await brand.enroll(await brand.contact(), T0)
    unknown = await brand.enroll(await brand.contact(), T0 + timedelta(days=1))
    never = await brand.enroll(await brand.contact(), T0)
    await brand.end(replied, T0 + timedelta(days=3), step=1, reason="replied")
    await brand.end(replied, T0 + timedelta(days=3), step=1, reason="replied")  # again
    await brand.end(completed, T0 + timedelta(days=4), step=2, status="completed")
    await brand.end(unknown, T0 + timedelta(days=4), step=0, reason="")
    await brand.end(never, T0, step=0, reason="start_failed")  # no enrollment happened
    assert await brand.rows() == {
        (date(2026, 3, 10), "downtown", DOWNTOWN, 0): {"enrolled": 2},
        (date(2026, 3, 11), "downtown", DOWNTOWN, 0): {"enrolled": 1},
        (date(2026, 3, 13), "downtown", DOWNTOWN, 1): {"exited": 1, "exit:replied": 1},
        (date(2026, 3, 14), "downtown", DOWNTOWN, 2): {"exited": 1, "exit:completed": 1},
        (date(2026, 3, 14), "downtown", DOWNTOWN, 0): {"exited": 1, "exit:unknown": 1},
    }
    await brand.verified()


async def test_days_are_the_reporting_zones_days_across_a_dst_change(
    conn: AsyncConnection[Any],
) -> None:
    """America/New_York falls back on 2026-11-01; the brand reports in UTC."""
    brand = await Brand(conn).create(zone="UTC", locations={"downtown": "America/New_York"})
    contact = await brand.contact()
    # 23:59 EDT on Oct 31 (03:59 UTC Nov 1)
    enrollment = await brand.enroll(contact, datetime(2026, 11, 1, 3, 59, tzinfo=UTC))
    # 01:30 EDT, the first 1:30 of Nov 1 (05:30 UTC)
    await brand.send(enrollment, 0, datetime(2026, 11, 1, 5, 30, tzinfo=UTC))
    # 23:30 EST on Nov 1, the day's 25th hour (04:30 UTC Nov 2)
    late = await brand.send(enrollment, 1, datetime(2026, 11, 2, 4, 30, tzinfo=UTC))
    await brand.status(late, "delivered", datetime(2026, 11, 2, 4, 31, tzinfo=UTC))
    oct31, nov1, nov2 = date(2026, 10, 31), date(2026, 11, 1), date(2026, 11, 2)
    text = {"sent": 1, "segments": 1}
    delivered = {**text, "delivered": 1, "contacts_delivered": 1}
    assert await brand.rows("L") == {
        (oct31, "downtown", DOWNTOWN, 0): {"enrolled": 1},
        (nov1, "downtown", DOWNTOWN, 0): text,
        (nov1, "downtown", DOWNTOWN, 1): delivered,
    }
    assert await brand.rows("B") == {
        (nov1, "downtown", DOWNTOWN, 0): {"enrolled": 1, **text},
        (nov2, "downtown", DOWNTOWN, 1): delivered,
    }
    await brand.verified()


async def test_robot_fetches_are_counted_apart_and_a_clicker_once_per_text(brand: Brand) -> None:
    enrollment = await brand.enroll(await brand.contact(), T0)
    message = await brand.send(enrollment, 0, T0)
    await brand.click(message, T0 + timedelta(seconds=2), human=False)  # a link preview
    await brand.click(message, T0 + timedelta(minutes=5))
    await brand.click(message, T0 + timedelta(minutes=6), fill=True)  # its text found for it
    cur = await brand.conn.execute(
        "SELECT count(*) FROM link_clicks WHERE message_id = %s", (message,)
    )
    assert await cur.fetchone() == (3,)
    totals = await brand.totals()
    assert (totals["human_clicks"], totals["unique_clickers"], totals["robot_clicks"]) == (2, 1, 1)
    await brand.verified()


async def test_a_reply_is_credited_to_the_last_text_within_the_reply_window(
    brand: Brand,
) -> None:
    """Steps 0 and 1 sent; the reply after the second is step 1's. The window's end is
    inclusive: exactly 7 days counts, 7 days and a second does not."""
    d = date(2026, 3, 10)
    first = await brand.contact()
    enrollment = await brand.enroll(first, T0)
    await brand.send(enrollment, 0, T0)
    await brand.send(enrollment, 1, T0 + timedelta(days=2))
    await brand.inbound(first, T0 + timedelta(days=2, hours=1), routed_later=True)
    await brand.inbound(first, T0 + timedelta(days=2, hours=2))  # the same replier again
    edge = await brand.contact()
    await brand.send(await brand.enroll(edge, T0), 0, T0)
    await brand.inbound(edge, T0 + timedelta(days=7))
    late = await brand.contact()
    await brand.send(await brand.enroll(late, T0), 0, T0)
    await brand.inbound(late, T0 + timedelta(days=7, seconds=1))
    for classification in ("opt_out", "help", "start"):  # not replies
        await brand.inbound(late, T0 + timedelta(hours=1), classification=classification)
    await brand.inbound(None, T0 + timedelta(hours=1))  # a stranger: no contact
    rows = await brand.rows()
    assert rows[(d, "downtown", DOWNTOWN, 0)]["repliers"] == 1  # edge's
    assert rows[(d + timedelta(days=2), "downtown", DOWNTOWN, 1)]["repliers"] == 1  # first's
    assert (await brand.totals())["repliers"] == 2
    await brand.verified()


async def test_an_enrollment_replying_to_every_text_is_one_replier(brand: Brand) -> None:
    """Repliers are contacts (reply rate = repliers / contacts delivered, never above 100 %):
    an enrollment replying after each of its texts counts once, at the text its first counted
    reply goes to. A reply with no text in the window claims nothing."""
    d = date(2026, 3, 10)
    contact = await brand.contact()
    enrollment = await brand.enroll(contact, T0)
    await brand.inbound(contact, T0 - timedelta(hours=1))  # before any text: credited to none
    for step in range(3):
        message = await brand.send(enrollment, step, T0 + timedelta(days=2 * step))
        await brand.status(message, "delivered", T0 + timedelta(days=2 * step))
        await brand.inbound(contact, T0 + timedelta(days=2 * step, hours=1))
    rows = await brand.rows()
    assert rows[(d, "downtown", DOWNTOWN, 0)]["repliers"] == 1
    assert "repliers" not in rows[(d + timedelta(days=2), "downtown", DOWNTOWN, 1)]
    assert "repliers" not in rows[(d + timedelta(days=4), "downtown", DOWNTOWN, 2)]
    for zone in ("L", "B"):
        totals = await brand.totals(zone)
        assert (totals["repliers"], totals["contacts_delivered"]) == (1, 1)
    await brand.verified()


async def test_a_reply_goes_to_the_last_text_the_carrier_accepted(brand: Brand) -> None:
    contact = await brand.contact()
    enrollment = await brand.enroll(contact, T0)
    await brand.send(enrollment, 0, T0)
    await brand.send(enrollment, 1, T0 + timedelta(days=1), accepted=False)  # never went out
    await brand.inbound(contact, T0 + timedelta(days=1, hours=1))
    rows = await brand.rows()
    assert rows[(date(2026, 3, 10), "downtown", DOWNTOWN, 0)]["repliers"] == 1
    await brand.verified()


async def test_an_opt_out_is_credited_to_the_last_text_before_it_once(brand: Brand) -> None:
    contact = await brand.contact()
    enrollment = await brand.enroll(contact, T0)
    await brand.send(enrollment, 0, T0)
    await brand.send(enrollment, 1, T0 + timedelta(days=3))
    await brand.revoke(contact, T0 + timedelta(days=30))  # no window
    await brand.revoke(contact, T0 + timedelta(days=31))  # the carrier's 21610 for the same
    copy = await brand.contact()
    await brand.send(await brand.enroll(copy, T0), 0, T0)
    await brand.revoke(copy, T0 + timedelta(hours=1), source="brand opt-out #7")
    silent = await brand.contact()
    await brand.revoke(silent, T0)  # never texted: nothing to credit
    rows = await brand.rows()
    assert rows[(date(2026, 3, 13), "downtown", DOWNTOWN, 1)]["opt_outs"] == 1
    assert (await brand.totals())["opt_outs"] == 1
    await brand.verified()


async def test_a_purchase_goes_to_a_click_exactly_5_days_before_over_a_later_delivery(
    brand: Brand,
) -> None:
    contact = await brand.contact()
    enrollment = await brand.enroll(contact, T0)
    clicked = await brand.send(enrollment, 0, T0)
    await brand.click(clicked, T0 + timedelta(hours=1))
    await brand.click(clicked, T0 + timedelta(hours=2), human=False)  # robots never earn
    delivered = await brand.send(enrollment, 1, T0 + timedelta(days=5))
    await brand.status(delivered, "delivered", T0 + timedelta(days=5))
    purchase = await brand.purchase(contact, T0 + timedelta(days=5, hours=1), 2500, "o-1")
    assert purchase is not None
    assert await brand.conversion(purchase) == (clicked, "click")
    rows = await brand.rows()
    step0 = rows[(date(2026, 3, 10), "downtown", DOWNTOWN, 0)]
    assert (step0["conversions"], step0["converters"], step0["revenue_minor"]) == (1, 1, 2500)
    await brand.verified()


async def test_a_click_just_over_the_window_gives_way_to_a_delivery_within_24_hours(
    brand: Brand,
) -> None:
    contact = await brand.contact()
    enrollment = await brand.enroll(contact, T0)
    clicked = await brand.send(enrollment, 0, T0)
    at = T0 + timedelta(days=6)
    await brand.click(clicked, at - timedelta(days=5, seconds=1))
    delivered = await brand.send(enrollment, 1, at - timedelta(days=1, minutes=1))
    await brand.status(delivered, "delivered", at - timedelta(days=1))  # exactly 24 h
    purchase = await brand.purchase(contact, at, 1000, "o-2")
    assert purchase is not None
    assert await brand.conversion(purchase) == (delivered, "delivery")
    late = await brand.purchase(contact, at + timedelta(seconds=1), 500, "o-3")  # 24 h + 1 s
    assert late is not None
    assert await brand.conversion(late) == (None, "none")
    totals = await brand.totals()
    assert (totals["conversions"], totals["converters"], totals["revenue_minor"]) == (1, 1, 1000)
    await brand.verified()


async def test_an_order_outside_both_windows_is_credited_only_by_its_coupon(
    brand: Brand,
) -> None:
    contact = await brand.contact()
    enrollment = await brand.enroll(contact, T0)
    coupon_text = await brand.send(enrollment, 0, T0, coupon="SPRING10")
    await brand.status(coupon_text, "delivered", T0)
    plain = await brand.purchase(contact, T0 + timedelta(days=20), 700, "o-plain")
    coupon = await brand.purchase(contact, T0 + timedelta(days=20), 900, "o-c", coupon="spring10")
    # another contact of the location brings the code: the location's text earns it
    friend = await brand.contact()
    shared = await brand.purchase(friend, T0 + timedelta(days=21), 300, "o-f", coupon="Spring10")
    unknown = await brand.purchase(contact, T0 + timedelta(days=21), 100, "o-u", coupon="NOPE")
    assert plain and coupon and shared and unknown
    assert await brand.conversion(plain) == (None, "none")
    assert await brand.conversion(coupon) == (coupon_text, "coupon")
    assert await brand.conversion(shared) == (coupon_text, "coupon")
    assert await brand.conversion(unknown) == (None, "none")
    step0 = (await brand.rows())[(date(2026, 3, 10), "downtown", DOWNTOWN, 0)]
    assert (step0["conversions"], step0["converters"], step0["revenue_minor"]) == (2, 1, 1200)
    await brand.verified()


async def test_one_order_is_credited_once(brand: Brand) -> None:
    contact = await brand.contact()
    enrollment = await brand.enroll(contact, T0)
    message = await brand.send(enrollment, 0, T0)
    await brand.click(message, T0 + timedelta(minutes=1))
    assert await brand.purchase(contact, T0 + timedelta(hours=1), 4200, "o-9") is not None
    assert await brand.purchase(contact, T0 + timedelta(hours=2), 4200, "o-9") is None  # again
    other = await brand.contact()  # the same order reported for another contact
    assert await brand.purchase(other, T0 + timedelta(hours=2), 4200, "o-9") is None
    again = await brand.purchase(contact, T0 + timedelta(hours=3), 100, "o-10")
    assert again is not None
    totals = await brand.totals()
    assert (totals["conversions"], totals["converters"], totals["revenue_minor"]) == (2, 1, 4300)
    await brand.verified()


async def test_the_same_order_id_at_two_locations_is_two_conversions(
    conn: AsyncConnection[Any],
) -> None:
    """Each store runs its own till: order #1001 at downtown and at uptown are two orders."""
    brand = await Brand(conn).create(
        locations={"downtown": "America/New_York", "uptown": "America/New_York"}
    )
    for location, value in (("downtown", 4200), ("uptown", 900)):
        contact = await brand.contact(location)
        message = await brand.send(await brand.enroll(contact, T0, location), 0, T0)
        await brand.click(message, T0 + timedelta(minutes=1))
        at = T0 + timedelta(hours=1)
        assert await brand.purchase(contact, at, value, "1001", location=location) is not None
        # the same order again at its own location: one order
        assert await brand.purchase(contact, at, value, "1001", location=location) is None
    by_location: dict[str, tuple[int, int]] = {}
    for (_, location, _, _), counts in (await brand.rows("L")).items():
        by_location[location] = (counts.get("conversions", 0), counts.get("revenue_minor", 0))
    assert by_location == {"downtown": (1, 4200), "uptown": (1, 900)}
    await brand.verified()


async def test_rows_the_rollups_do_not_concern_are_written_as_before(brand: Brand) -> None:
    """Service texts, inbound ledger rows, texts of unknown enrollments, consent grants, other
    activities: nothing counted, nothing refused."""
    contact = await brand.contact()
    await brand.conn.execute(
        "INSERT INTO messages (franchisor_id, location_id, contact_id, direction, body, status,"
        " carrier_message_id) VALUES"
        " (%(f)s, 'downtown', %(c)s, 'outbound', 'HELP answer', 'delivered', 'SMa'),"
        " (%(f)s, 'downtown', %(c)s, 'inbound', 'hello', 'received', 'SMb'),"
        " (%(f)s, 'downtown', %(c)s, 'outbound', 'x', 'delivered', 'SMc')",
        {"f": F, "c": contact},
    )
    await brand.conn.execute(
        "INSERT INTO messages (franchisor_id, location_id, contact_id, direction, body, status,"
        " carrier_message_id, enrollment_id, step_index) VALUES"
        " (%s, 'downtown', %s, 'outbound', 'x', 'failed', 'SMd', 'e-gone', 0)",
        (F, contact),
    )
    await brand.conn.execute(
        "UPDATE messages SET status = 'undelivered', error_code = '30005' WHERE contact_id = %s",
        (contact,),
    )
    await brand.conn.execute(
        "INSERT INTO consent_events (franchisor_id, location_id, contact_id, phone_e164, kind,"
        " scope, occurred_at, channel, recorded_by)"
        " SELECT franchisor_id, location_id, id, phone_e164, 'grant', 'location', %s, 'web',"
        " 'test' FROM contacts WHERE id = %s",
        (T0, contact),
    )
    await brand.conn.execute(
        "INSERT INTO activities (franchisor_id, location_id, contact_id, kind, occurred_at,"
        " recorded_by) VALUES (%s, 'downtown', %s, 'visit', %s, 'test')",
        (F, contact, T0),
    )
    purchase = await brand.purchase(contact, T0, 100, "o-1")  # nothing to credit it to
    assert purchase is not None
    assert await brand.conversion(purchase) == (None, "none")
    await brand.inbound(contact, T0)
    await brand.revoke(contact, T0 + timedelta(hours=1))
    assert await brand.rows() == {}
    await brand.verified()


async def test_two_writers_bumping_the_same_row_lose_nothing(
    brand: Brand, database_url: str
) -> None:
    enrollment = await brand.enroll(await brand.contact(), T0)
    other = await brand.enroll(await brand.contact(), T0)
    messages = [await brand.send(enrollment, 0, T0), await brand.send(other, 0, T0)]
    await brand.conn.execute(
        "INSERT INTO tracked_links (code, franchisor_id, location_id, contact_id, enrollment_id,"
        " step_index, position, target_url) SELECT 'k', franchisor_id, location_id, contact_id,"
        " enrollment_id, step_index, 0, 'https://example.com' FROM messages WHERE id = %s",
        (messages[0],),
    )
    first = await AsyncConnection.connect(database_url, autocommit=True)
    second = await AsyncConnection.connect(database_url, autocommit=True)
    try:
        await first.execute("BEGIN")
        await first.execute(
            "UPDATE messages SET status = 'delivered' WHERE id = %s", (messages[0],)
        )
        await first.execute(
            "INSERT INTO link_clicks (code, franchisor_id, location_id, contact_id, enrollment_id,"
            " step_index, clicked_at, human) SELECT 'k', franchisor_id, location_id, contact_id,"
            " enrollment_id, step_index, %s, true FROM messages WHERE id = %s",
            (T0, messages[0]),
        )
        await second.execute("BEGIN")
        # the same day's row, and the same text's first click: both wait for the first writer
        waiting = asyncio.gather(
            second.execute(
                "UPDATE messages SET status = 'delivered' WHERE id = %s", (messages[1],)
            ),
        )

        async def blocked() -> bool:  # the second writer waits for a lock (or, wrongly, is done)
            if waiting.done():
                return True
            cur = await brand.conn.execute(
                "SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s",
                (second.info.backend_pid,),
            )
            row = await cur.fetchone()
            return row is not None and row[0] == "Lock"

        await eventually(blocked, 30, what="the second writer waiting for the first")
        assert not waiting.done()
        await first.execute("COMMIT")
        await waiting
        await second.execute(
            "INSERT INTO link_clicks (code, franchisor_id, location_id, contact_id, enrollment_id,"
            " step_index, clicked_at, human) SELECT 'k', franchisor_id, location_id, contact_id,"
            " enrollment_id, step_index, %s, true FROM messages WHERE id = %s",
            (T0, messages[0]),
        )
        await second.execute("COMMIT")
    finally:
        await first.close()
        await second.close()
    totals = await brand.totals()
    assert (totals["delivered"], totals["contacts_delivered"]) == (2, 2)
    assert (totals["human_clicks"], totals["unique_clickers"]) == (2, 1)
    await brand.verified()


async def test_verify_names_a_difference_and_rebuild_repairs_it(brand: Brand) -> None:
    message = await brand.send(await brand.enroll(await brand.contact(), T0), 0, T0)
    await brand.status(message, "failed", T0, error="30007")
    await brand.conn.execute("UPDATE report_days SET sent = sent + 5 WHERE zone_kind = 'L'")
    await brand.conn.execute("DELETE FROM report_day_reasons WHERE zone_kind = 'B'")
    assert await rollups.verify(brand.conn, F) == [
        "B 2026-03-10 location downtown sequence downtown/winback step 0: errors 30007 is 0 in"
        " the rollups, 1 recounted from the facts",
        "L 2026-03-10 location downtown sequence downtown/winback step 0: sent is 6 in the"
        " rollups, 1 recounted from the facts",
    ]
    await rollups.rebuild(brand.conn, F)
    await brand.verified()
    assert (await brand.totals("B"))["sent"] == 1


async def test_a_changed_reporting_zone_moves_every_row_to_its_new_day(brand: Brand) -> None:
    late = datetime(2026, 3, 11, 2, 0, tzinfo=UTC)  # 22:00 on the 10th in New York
    await brand.send(await brand.enroll(await brand.contact(), late), 0, late)
    assert set(k[0] for k in (await brand.rows("B"))) == {date(2026, 3, 10)}
    await brand.conn.execute(
        "UPDATE franchisors SET reporting_time_zone = 'UTC' WHERE id = %s", (F,)
    )
    assert set(k[0] for k in (await brand.rows("B"))) == {date(2026, 3, 11)}
    await brand.conn.execute(
        "UPDATE locations SET time_zone = 'Asia/Tokyo' WHERE franchisor_id = %s", (F,)
    )
    assert set(k[0] for k in (await brand.rows("L"))) == {date(2026, 3, 11)}
    await brand.verified()


async def test_a_zone_change_rebuilds_only_the_rows_it_moves(conn: AsyncConnection[Any]) -> None:
    """A location's time zone moves only its own 'L' rows, the brand's reporting zone only the
    'B' rows: every other row is left as it was (a planted difference survives), so the brand's
    writers wait only for those rows to be recounted."""
    brand = await Brand(conn).create(
        locations={"downtown": "America/New_York", "uptown": "America/Los_Angeles"}
    )
    late = datetime(2026, 3, 11, 2, 0, tzinfo=UTC)  # the 10th in New York and Los Angeles
    for location in ("downtown", "uptown"):
        enrollment = await brand.enroll(await brand.contact(location), late, location)
        await brand.status(await brand.send(enrollment, 0, late), "failed", late, "30007")
    await conn.execute(
        "UPDATE report_days SET sent = sent + 5 WHERE location_id = 'uptown' AND zone_kind = 'L'"
    )
    await conn.execute(
        "UPDATE report_days SET sent = sent + 7 WHERE location_id = 'downtown' AND zone_kind = 'B'"
    )
    tail = "in the rollups, 1 recounted from the facts"
    uptown = f"L 2026-03-10 location uptown sequence uptown/winback step 0: sent is 6 {tail}"
    downtown = f"B 2026-03-10 location downtown sequence downtown/winback step 0: sent is 8 {tail}"
    await conn.execute(
        "UPDATE locations SET time_zone = 'Asia/Tokyo' WHERE franchisor_id = %s AND id = %s",
        (F, "downtown"),
    )
    rows = await brand.rows("L")
    assert {(k[0], k[1]) for k in rows} == {
        (date(2026, 3, 11), "downtown"),
        (date(2026, 3, 10), "uptown"),
    }
    assert rows[(date(2026, 3, 11), "downtown", DOWNTOWN, 0)]["error:30007"] == 1
    assert await rollups.verify(conn, F) == [downtown, uptown]
    await conn.execute("UPDATE franchisors SET reporting_time_zone = 'UTC' WHERE id = %s", (F,))
    assert {k[0] for k in await brand.rows("B")} == {date(2026, 3, 11)}
    assert await rollups.verify(conn, F) == [uptown]  # the 'L' rows untouched
    await conn.execute(
        "UPDATE report_days SET sent = sent - 5 WHERE location_id = 'uptown' AND zone_kind = 'L'"
    )
    await conn.execute(
        "UPDATE locations SET time_zone = 'Pacific/Auckland' WHERE franchisor_id = %s", (F,)
    )
    await brand.verified()
    assert (await brand.totals("L"))["error:30007"] == 2


async def test_a_moved_text_takes_everything_it_counted_along(brand: Brand) -> None:
    contact = await brand.contact()
    message = await brand.send(await brand.enroll(contact, T0), 0, T0)
    await brand.status(message, "delivered", T0)
    await brand.click(message, T0 + timedelta(minutes=1))
    await brand.inbound(contact, T0 + timedelta(minutes=2))
    await brand.conn.execute(
        "UPDATE messages SET create_time = create_time + interval '3 days' WHERE id = %s",
        (message,),
    )
    rows = await brand.rows()
    assert rows[(date(2026, 3, 13), "downtown", DOWNTOWN, 0)] == {
        "sent": 1,
        "segments": 1,
        "delivered": 1,
        "contacts_delivered": 1,
        "human_clicks": 1,
        "unique_clickers": 1,
        "repliers": 1,
    }
    await brand.verified()


# -- the property: after any stream of events, the rollups equal their recount, and summing them
# over steps, sequences and locations gives what the facts count directly ----------------------

_OFFSETS = [
    timedelta(0),
    timedelta(seconds=1),
    timedelta(hours=5),
    timedelta(hours=24),
    timedelta(hours=24, seconds=1),
    timedelta(days=5),
    timedelta(days=5, seconds=1),
    timedelta(days=7),
    timedelta(days=7, seconds=1),
    timedelta(days=9, hours=7),
]
_pick = st.integers(min_value=0, max_value=40)
_offset = st.sampled_from(_OFFSETS)
_ENROLL = st.tuples(
    st.just("enroll"),
    st.integers(0, 1),
    st.integers(0, 1),
    st.booleans(),
    st.integers(0, 4 * 24 * 3),
)
_SEND = st.tuples(
    st.just("send"),
    _pick,
    st.integers(0, 2),
    st.integers(0, 24 * 4),
    st.booleans(),
    st.sampled_from(["", "", "SAVE", "save"]),
    st.integers(1, 3),
)
_EVENTS = st.one_of(
    _ENROLL,
    _SEND,
    _SEND,
    st.tuples(
        st.just("status"),
        _pick,
        st.sampled_from(["queued", "sent", "delivered", "read", "undelivered", "failed"]),
        st.sampled_from(["", "30003", "30005"]),
        _offset,
    ),
    st.tuples(st.just("click"), _pick, st.booleans(), st.booleans(), _offset),
    st.tuples(
        st.just("reply"),
        _pick,
        _offset,
        st.sampled_from(["reply", "reply", "help", "opt_out"]),
        st.booleans(),
    ),
    st.tuples(st.just("revoke"), _pick, _offset, st.booleans()),
    st.tuples(
        st.just("purchase"),
        _pick,
        _offset,
        st.integers(0, 5000),
        st.sampled_from(["o1", "o2", "o3", None]),
        st.sampled_from(["", "save", "OTHER"]),
    ),
    st.tuples(
        st.just("end"),
        _pick,
        st.sampled_from(["completed", "exited"]),
        st.sampled_from(["replied", "", "start_failed", "opted_out"]),
        st.integers(0, 2),
        _offset,
    ),
    st.tuples(st.just("zone"), st.sampled_from(["UTC", "America/New_York", "Pacific/Auckland"])),
    st.tuples(
        st.just("location_zone"),
        st.sampled_from(["downtown", "uptown"]),
        st.sampled_from(["UTC", "America/Los_Angeles", "Asia/Tokyo"]),
    ),
)


async def _play(brand: Brand, events: list[tuple[Any, ...]]) -> None:
    enrollments: list[tuple[str, str, str, datetime]] = []  # id, location, contact, at
    texts: list[tuple[int, str, str, datetime]] = []  # id, location, contact, created
    for event in events:
        kind = event[0]
        if kind == "enroll":
            _, loc, seq, brand_seq, quarter_hours = event
            location = ("downtown", "uptown")[loc]
            at = T0 + timedelta(minutes=15 * quarter_hours)
            contact = await brand.contact(location)
            enrollment = await brand.enroll(
                contact, at, location, ("winback", "birthday")[seq], brand_seq
            )
            enrollments.append((enrollment, location, contact, at))
        elif kind == "zone":
            await brand.conn.execute(
                "UPDATE franchisors SET reporting_time_zone = %s WHERE id = %s",
                (event[1], brand.franchisor),
            )
        elif kind == "location_zone":
            await brand.conn.execute(
                "UPDATE locations SET time_zone = %s WHERE franchisor_id = %s AND id = %s",
                (event[2], brand.franchisor, event[1]),
            )
        elif kind in ("send", "end"):
            if not enrollments:
                continue
            enrollment, location, contact, at = enrollments[event[1] % len(enrollments)]
            if kind == "end":
                _, _, status, reason, step, offset = event
                await brand.end(enrollment, at + offset, step, status, reason)
                continue
            _, _, step, hours, accepted, coupon, segments = event
            cur = await brand.conn.execute(
                "SELECT 1 FROM messages WHERE enrollment_id = %s AND step_index = %s",
                (enrollment, step),
            )
            if await cur.fetchone() is None:
                created = at + timedelta(hours=hours)
                message = await brand.send(enrollment, step, created, segments, accepted, coupon)
                texts.append((message, location, contact, created))
        else:
            if not texts:
                continue
            message, location, contact, created = texts[event[1] % len(texts)]
            if kind == "status":
                _, _, status, error, offset = event
                await brand.status(message, status, created + offset, error)
            elif kind == "click":
                _, _, human, fill, offset = event
                await brand.click(message, created + offset, human, fill)
            elif kind == "reply":
                _, _, offset, classification, later = event
                await brand.inbound(contact, created + offset, classification, location, later)
            elif kind == "revoke":
                _, _, offset, copy = event
                source = "brand opt-out #1" if copy else ""
                await brand.revoke(contact, created + offset, location, source)
            elif kind == "purchase":
                _, _, offset, value, order, coupon = event
                await brand.purchase(contact, created + offset, value, order, coupon, location)


# What the facts say directly, per (location, sequence): no recount function involved.
_DIRECT = """
WITH texts AS (
    SELECT m.*, e.location_id AS loc,
           coalesce(e.sequence_location_id, '') || '/' || e.sequence_id AS seq
      FROM messages m JOIN enrollments e ON e.id = m.enrollment_id
     WHERE m.franchisor_id = %(f)s AND m.direction = 'outbound'
)
SELECT loc, seq, 'sent', count(*) FROM texts WHERE carrier_message_id IS NOT NULL GROUP BY 1, 2
UNION ALL
SELECT loc, seq, 'segments', sum(segments) FROM texts WHERE carrier_message_id IS NOT NULL
 GROUP BY 1, 2
UNION ALL
SELECT loc, seq, 'delivered', count(*) FROM texts WHERE status IN ('delivered', 'read')
 GROUP BY 1, 2
UNION ALL
SELECT loc, seq, 'failed', count(*) FROM texts WHERE status IN ('failed', 'undelivered')
 GROUP BY 1, 2
UNION ALL
SELECT location_id, coalesce(sequence_location_id, '') || '/' || sequence_id, 'enrolled',
       count(*) FROM enrollments
 WHERE franchisor_id = %(f)s
   AND NOT (status = 'exited' AND exit_reason IN ('start_failed', 'start_conflict'))
 GROUP BY 1, 2
UNION ALL
SELECT t.loc, t.seq, CASE WHEN c.human THEN 'human_clicks' ELSE 'robot_clicks' END, count(*)
  FROM texts t JOIN link_clicks c ON c.message_id = t.id GROUP BY 1, 2, 3
UNION ALL
SELECT t.loc, t.seq, 'unique_clickers', count(DISTINCT t.id)
  FROM texts t JOIN link_clicks c ON c.message_id = t.id AND c.human GROUP BY 1, 2
UNION ALL
SELECT t.loc, t.seq, 'conversions', count(*) FROM texts t JOIN report_conversions r
    ON r.message_id = t.id GROUP BY 1, 2
UNION ALL
SELECT t.loc, t.seq, 'revenue_minor', sum(r.value_minor) FROM texts t JOIN report_conversions r
    ON r.message_id = t.id GROUP BY 1, 2
UNION ALL
SELECT t.loc, t.seq, 'converters', count(DISTINCT t.enrollment_id) FROM texts t
  JOIN report_conversions r ON r.message_id = t.id GROUP BY 1, 2
UNION ALL
SELECT t.loc, t.seq, 'contacts_delivered', count(DISTINCT t.enrollment_id) FROM texts t
 WHERE t.delivered_at IS NOT NULL GROUP BY 1, 2
"""


async def _check(brand: Brand) -> None:
    assert await rollups.verify(brand.conn, brand.franchisor) == []
    cur = await brand.conn.execute(_DIRECT, {"f": brand.franchisor})
    direct: dict[tuple[str, str], dict[str, int]] = {}
    for location, sequence, measure, amount in await cur.fetchall():
        if amount:
            direct.setdefault((location, sequence), {})[measure] = int(amount)
    checked = set().union(*direct.values()) if direct else set()
    checked |= {"enrolled", "sent", "delivered", "failed", "human_clicks", "conversions"}
    rows = await rollups.stored(brand.conn, brand.franchisor)
    for zone in ("L", "B"):
        # over steps (and days): each sequence at each location
        by_sequence: dict[tuple[str, str], dict[str, int]] = {}
        for row in rows:
            if row.zone_kind != zone:
                continue
            key = (row.location_id, f"{row.sequence_location_id}/{row.sequence_id}")
            total = by_sequence.setdefault(key, {})
            for name, value in row.counts.items():
                if name in checked:
                    total[name] = total.get(name, 0) + value
        assert {k: v for k, v in by_sequence.items() if v} == direct
        # over sequences: each location; over locations: the brand
        for location in ("downtown", "uptown"):
            summed = _sum(v for (loc, _), v in by_sequence.items() if loc == location)
            assert summed == _sum(v for (loc, _), v in direct.items() if loc == location)
        assert _sum(by_sequence.values()) == _sum(direct.values())


def _sum(counts: Any) -> dict[str, int]:
    total: dict[str, int] = {}
    for one in counts:
        for name, value in one.items():
            total[name] = total.get(name, 0) + value
    return {k: v for k, v in total.items() if v}


async def _scenario(database_url: str, events: list[tuple[Any, ...]], number: int) -> None:
    async with await AsyncConnection.connect(database_url, autocommit=True) as conn:
        brand = Brand(conn, f"brand{number}")
        await brand.create(
            locations={"downtown": "America/New_York", "uptown": "America/Los_Angeles"}
        )
        await _play(brand, events)
        await _check(brand)


_examples = itertools.count()


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    start=st.lists(_ENROLL, min_size=1, max_size=5),
    sends=st.lists(_SEND, min_size=1, max_size=8),
    events=st.lists(_EVENTS, min_size=5, max_size=60),
)
def test_after_any_stream_of_events_the_rollups_equal_the_facts(
    database_url: str,
    start: list[tuple[Any, ...]],
    sends: list[tuple[Any, ...]],
    events: list[tuple[Any, ...]],
) -> None:
    """Enrollments, sends, statuses in any order (repeated, backwards), clicks (filled or not,
    robots), replies, revocations (brand copies), purchases (repeated orders, coupons), exits
    and zone changes (the brand's, a location's): `verify()` is empty, and the rows summed over
    steps are each sequence, over sequences each location, over locations the brand, as the
    facts count them."""
    asyncio.run(_scenario(database_url, start + sends + events, next(_examples)))
