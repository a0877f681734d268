"""Report rollups (issue 16) and the lock order: brand lock → contact rows → facts, whose
triggers lock rollup rows last (docs/decisions.md). A path that wrote a fact before locking the
contact's row deadlocked with a send holding that row and crediting the same rollup row.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from psycopg import AsyncConnection

from tenants.contacts.consent import ConsentChannel, ConsentEvidence, ConsentKind, append_events
from tenants.core.names import TenantScope
from tenants.org.access import system
from tests.test_report_rollups import T0, Brand

WAITING = 30.0  # seconds: far above deadlock_timeout (1 s), where PostgreSQL picks a victim


@pytest.fixture
async def conns(database_url: str) -> AsyncIterator[list[AsyncConnection[Any]]]:
    opened = [await AsyncConnection.connect(database_url, autocommit=True) for _ in range(3)]
    try:
        yield opened
    finally:
        for c in opened:
            await c.close()


async def _until_waiting_for_a_lock(watcher: AsyncConnection[Any], pid: int) -> None:
    for _ in range(int(WAITING / 0.02)):
        cur = await watcher.execute(
            "SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", (pid,)
        )
        row = await cur.fetchone()
        if row is not None and row[0] == "Lock":
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the revocation never waited for the contact's row")


async def test_a_revocation_waits_for_the_contact_a_status_update_holds_instead_of_deadlocking(
    conns: list[AsyncConnection[Any]],
) -> None:
    send, revocation, watcher = conns
    brand = await Brand(watcher).create()
    contact = await brand.contact()
    enrollment = await brand.enroll(contact, T0)
    message = await brand.send(enrollment, 0, T0)  # its day's rollup row exists now

    async with send.transaction():
        # a send's transaction holding the contact's row (an UPDATE: NO KEY UPDATE, which the
        # revocation's foreign-key check does not wait for)
        await send.execute(
            "UPDATE contacts SET update_time = now() WHERE franchisor_id = %s"
            " AND location_id = %s AND id = %s",
            (brand.franchisor, "downtown", contact),
        )

        async def revoke() -> None:
            async with revocation.transaction():
                await append_events(
                    revocation,
                    system("test"),
                    TenantScope(brand.franchisor, "downtown"),
                    [
                        (
                            contact,
                            "+12125550000",
                            ConsentEvidence(
                                ConsentKind.REVOKE,
                                ConsentChannel.STAFF,
                                T0 + timedelta(hours=1),
                                source="call",
                            ),
                        )
                    ],
                )

        revoking = asyncio.create_task(revoke())
        await _until_waiting_for_a_lock(watcher, revocation.info.backend_pid)
        # the text's status credits the same rollup row the revocation's opt-out credits: with
        # that row held by the waiting revocation, this deadlocked
        await asyncio.wait_for(
            send.execute(
                "UPDATE messages SET status = 'delivered', status_time = %s WHERE id = %s",
                (T0 + timedelta(minutes=1), message),
            ),
            WAITING,
        )
    await asyncio.wait_for(revoking, WAITING)

    totals = await brand.totals()
    assert (totals["delivered"], totals["opt_outs"]) == (1, 1)
    cur = await watcher.execute(
        "SELECT consent_state FROM contacts WHERE franchisor_id = %s AND id = %s",
        (brand.franchisor, contact),
    )
    assert await cur.fetchone() == ("revoked",)
    await brand.verified()
