"""The demo tenant that `reengage up` seeds: franchisors/demo with two locations, a brand admin
staff member (DEMO_OWNER, who signs in to the dashboard with `reengage dashboard link`), and a
franchisor-admin API key written to <data dir>/demo-api-key (mode 0600)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from psycopg_pool import AsyncConnectionPool

from tenants.core.errors import AlreadyExists, Unauthenticated
from tenants.core.names import TenantScope
from tenants.org import api_keys, franchisors, locations, staff
from tenants.org.access import Role, system

SEEDER = system("demo-seed")
DEMO = TenantScope("demo")
DEMO_OWNER = "owner"  # franchisors/demo/staffMembers/owner: the demo's brand admin
# Sender numbers from the 555-01xx range, which is reserved for fiction: inbound texts to
# them (`reengage sms receive --to`) route to the location.
DEMO_LOCATIONS = {
    "downtown": ("Downtown", "America/New_York", "+12125550100"),
    "uptown": ("Uptown", "America/Los_Angeles", "+13105550100"),
}


async def seed_demo(pool: AsyncConnectionPool[Any], data_dir: Path) -> str:
    """Creates what is missing of the demo tenant; returns a working franchisor-admin key."""
    async with pool.connection() as conn:
        try:
            await franchisors.create_franchisor(conn, SEEDER, DEMO.franchisor_id, "Demo Brand")
        except AlreadyExists:
            pass
        for location_id, (display, zone, number) in DEMO_LOCATIONS.items():
            try:
                await locations.create_location(
                    conn,
                    SEEDER,
                    DEMO,
                    location_id,
                    locations.LocationInput(
                        display_name=display, time_zone=zone, sender_phone_numbers=(number,)
                    ),
                )
            except AlreadyExists:
                pass
        try:
            await staff.create_staff_member(
                conn, SEEDER, DEMO, DEMO_OWNER, "Demo Owner", Role.FRANCHISOR_ADMIN, "", ""
            )
        except AlreadyExists:
            pass
        key_file = data_dir / "demo-api-key"
        if key_file.exists():
            token = key_file.read_text().strip()
            try:
                await api_keys.authenticate(conn, token)
                return token
            except Unauthenticated:
                pass  # revoked or from an older database: issue a new one
        issued = await api_keys.issue_key(
            conn, SEEDER.label, DEMO, "", "Demo franchisor admin", Role.FRANCHISOR_ADMIN
        )
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(issued.token + "\n")
    key_file.chmod(0o600)
    return issued.token
