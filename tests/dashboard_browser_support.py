"""The platform in process for the dashboard's browser tests (tests/test_dashboard_browser.py),
and the browser that walks it.

* `serving_dashboard`: a database of its own (a clone of the migrated template), a Temporal
  worker on the dev server, and the HTTP edge under uvicorn on a free 127.0.0.1 port, its public
  URL the served one, all built by the composition root (`server.platform.build_platform`) as
  a production process is; seeded with a brand of 30 locations and 60 days of rollups, a brand
  admin and a location manager, an enrollment whose first step waits for approval in a real
  workflow, and a flagged inbound text.
* `chromium`: Debian's chromium (/usr/bin/chromium) under Playwright, which never downloads a
  browser; without it the tests skip, saying why, unless REENGAGE_REQUIRE_BROWSER=1 (CI) makes
  them fail.
* `Visitor`: one browser context (its own cookies) and page that records every page it loads
  and every console error, and `audit` for what every page must pass: the security headers,
  axe-core without serious or critical violations, no console error, and its screenshot in
  docs/screenshots/.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest
from axe_playwright_python.async_playwright import Axe
from playwright.async_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Cookie,
    Page,
    Response,
    async_playwright,
)
from psycopg_pool import AsyncConnectionPool
from temporalio.client import Client

from server.app import open_pool
from server.embedded import free_port
from server.http.dashboard.app import COOKIE
from server.http.edge import http_server
from server.platform import Platform, build_platform
from tenants.core.names import ChildName, TenantScope
from tenants.enrollment.records import Enrollment
from tenants.inbound.texts import InboundSms, receive
from tenants.org import dashboard_sessions, locations
from tenants.org.access import Role
from tenants.org.staff import create_staff_member
from tenants.sequences.model import Step
from tests.enrollment_support import (
    DAY,
    brand_template,
    consenting_contact,
    end_leftover_run,
    make_sequence,
)
from tests.inbound_support import DOWNTOWN_NUMBER
from tests.support import A_DOWNTOWN, OPERATOR, A, build_world, platform_settings
from tests.waiting import eventually
from workflows.enrolling import enroll

Pool = AsyncConnectionPool[Any]
ROOT = Path(__file__).resolve().parent.parent
SCREENSHOTS = ROOT / "docs" / "screenshots"

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
)
REQUIRE_BROWSER = "REENGAGE_REQUIRE_BROWSER"
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}

BRAND_ZONE = "America/New_York"  # acme's reporting zone (the default)
ROLLUP_DAYS = 60  # the last 30 days and the 30 before them (the KPI tiles' comparison)
STORES = 28  # beside downtown and uptown: 30 locations, two leaderboard pages of 25
FLAGGED_BODY = "Can you stop by the counter tomorrow?"  # mentions stopping: flagged, a reply
DANA = "+12125550142"  # the contact whose step waits for approval
SAM = "+12125550143"  # the contact whose text is flagged (a reply of Dana's would end her run)


# ---------------------------------------------------------------------------------------------
# What the stack holds
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Seeded:
    admin: ChildName  # franchisors/acme/staffMembers/ann: a brand admin
    manager: ChildName  # franchisors/acme/locations/downtown/staffMembers/manny
    sequence: ChildName  # the brand sequence the rollups and the enrollment are of
    enrollment: Enrollment  # Dana's, its step 0 waiting for approval at downtown
    flagged_inbound_id: int  # Sam's flagged text at downtown
    locations: tuple[str, ...]  # every location id of acme


@dataclass(frozen=True)
class DashboardStack:
    base_url: str  # the served address, and the platform's public URL
    pool: Pool
    platform: Platform
    seeded: Seeded

    async def sign_in_link(self, staff: ChildName, *, now: datetime | None = None) -> str:
        """A new sign-in link of staff, minted by the operator (as `reengage dashboard link`
        does); now: when it is minted (in the past: already expired)."""
        async with self.pool.connection() as conn:
            link = await dashboard_sessions.mint_link(conn, OPERATOR, staff, now=now)
        return link.url(self.base_url)

    async def rows(self, query: str, *params: Any) -> list[tuple[Any, ...]]:
        async with self.pool.connection() as conn:
            cur = await conn.execute(query, params)
            return list(await cur.fetchall())


# ---------------------------------------------------------------------------------------------
# Seeding
# ---------------------------------------------------------------------------------------------


def _today(zone: str) -> date:
    return datetime.now(UTC).astimezone(ZoneInfo(zone)).date()


def _morning_zone() -> str:
    """An Etc/GMT zone where it is 10:00 to 11:00 now, so the step is inside the send window
    (its approval is asked at once, and the approved text goes out at once)."""
    offset = 10 - datetime.now(UTC).hour  # hours east of UTC
    if offset < -12:
        offset += 24
    if offset > 14:
        offset -= 24
    return f"Etc/GMT{-offset:+d}"  # the Etc names count west as positive


OPT_OUT_SPIKE = "store-03"  # opt-outs above the alert level in the last week: a health flag
FEW_CLICKS = "store-11"  # a click-through rate under the alert level: another flag


def _day_counts(index: int, age: int, location_id: str) -> dict[str, int]:
    """The step-0 counts of the index-th location on a day `age` days ago: every location
    sends a different volume (no ties in the leaderboard by sent) and its rates vary around
    what a healthy brand sees, except the two flagged locations'."""
    sent = 30 + 7 * index + age % 5 + (ROLLUP_DAYS - age) // 4  # growing: the tiles show it
    delivered = sent - index % 4 - 1
    contacts = delivered - 1
    wobble = (index * 7 + age) % 8  # 0..7, a location's day-to-day variation
    clickers = delivered * (1 if location_id == FEW_CLICKS else 6 + wobble) // 100
    repliers = contacts * (3 + (index + age) % 6) // 100
    converters = contacts * (1 + wobble % 3) // 100
    opt_outs = delivered // 20 if location_id == OPT_OUT_SPIKE and age < 7 else int(age % 4 == 0)
    return {
        "enrolled": 10 + index % 7,
        "sent": sent,
        "segments": sent + sent // 4,
        "delivered": delivered,
        "failed": sent - delivered,
        "contacts_delivered": contacts,
        "human_clicks": clickers + wobble // 3,
        "unique_clickers": clickers,
        "robot_clicks": age % 3,
        "repliers": repliers,
        "opt_outs": opt_outs,
        "conversions": converters + (1 if wobble == 7 else 0),
        "converters": converters,
        "revenue_minor": 1850 * converters + 475 * wobble,
        "exited": repliers + opt_outs + converters,
    }


async def _seed_rollups(pool: Pool, sequence: ChildName, zones: dict[str, str]) -> None:
    """ROLLUP_DAYS days of report_days rows per location, at steps 0 and 1, in both zones ('B'
    the brand's day, 'L' the location's), and the exits of step 0 by reason, written directly
    (the rollups' own correctness is the rollup suites' business)."""
    columns = list(_day_counts(0, 0, ""))
    days = (
        "INSERT INTO report_days (franchisor_id, zone_kind, day, location_id,"
        " sequence_location_id, sequence_id, step_index, " + ", ".join(columns) + ")"
        " VALUES (%s, %s, %s, %s, '', %s, %s, " + ", ".join(["%s"] * len(columns)) + ")"
    )
    reasons = (
        "INSERT INTO report_day_reasons (franchisor_id, zone_kind, day, location_id,"
        " sequence_location_id, sequence_id, step_index, kind, reason, count)"
        " VALUES (%s, %s, %s, %s, '', %s, 0, 'exit', %s, %s)"
    )
    day_rows, reason_rows = [], []
    for index, (location_id, zone) in enumerate(sorted(zones.items())):
        for zone_kind, today in (("B", _today(BRAND_ZONE)), ("L", _today(zone))):
            for age in range(ROLLUP_DAYS):
                day = today - timedelta(days=age)
                counts = _day_counts(index, age, location_id)
                later = {k: v // 3 for k, v in counts.items()}  # step 1: a third of step 0
                later["enrolled"] = later["exited"] = 0
                for step, values in ((0, counts), (1, later)):
                    day_rows.append(
                        (A.franchisor_id, zone_kind, day, location_id, sequence.id, step,
                         *(values[c] for c in columns))
                    )  # fmt: skip
                exits = (
                    ("replied", counts["repliers"]),
                    ("opted_out", counts["opt_outs"]),
                    ("purchased", counts["converters"]),
                )
                for why, n in exits:
                    if n:
                        reason_rows.append(
                            (A.franchisor_id, zone_kind, day, location_id, sequence.id, why, n)
                        )
    async with pool.connection() as conn, conn.cursor() as cur:
        await cur.executemany(days, day_rows)
        await cur.executemany(reasons, reason_rows)


async def _staff(pool: Pool, scope: TenantScope, staff_id: str, name: str, role: Role) -> ChildName:
    async with pool.connection() as conn:
        member = await create_staff_member(conn, OPERATOR, scope, staff_id, name, role, "", "")
    return member.name


async def _awaiting_approval(pool: Pool, platform: Platform, sequence: ChildName) -> Enrollment:
    """Dana enrolled in the sequence through the Enroll path; once its workflow has asked for
    the approval of step 0 (the read model says awaiting_approval)."""
    assert platform.workflows is not None
    contact = await consenting_contact(pool, DANA, "Dana", time_zone=_morning_zone())
    async with pool.connection() as conn:
        enrollment, created = await enroll(conn, platform.workflows, OPERATOR, contact, sequence)
    assert created
    workflows = platform.workflows

    async def waiting() -> bool:
        state = await workflows.state(enrollment.workflow_id)
        return state.pending_approval_step == 0

    await eventually(waiting, 30, what="the workflow asks for approval of step 0")

    async def recorded() -> bool:
        async with pool.connection() as conn:
            cur = await conn.execute(
                "SELECT status FROM enrollments WHERE id = %s", (enrollment.id,)
            )
            row = await cur.fetchone()
        return row is not None and row[0] == "awaiting_approval"

    await eventually(recorded, 30, what="the read model says awaiting_approval")
    return enrollment


async def _flagged_text(pool: Pool) -> int:
    """A text from Sam that mentions stopping: handled as a reply, flagged for review."""
    await consenting_contact(pool, SAM, "Sam")
    async with pool.connection() as conn:
        outcome = await receive(
            conn,
            InboundSms(
                "twilio",
                "SM" + uuid.uuid4().hex,
                SAM,
                DOWNTOWN_NUMBER,
                FLAGGED_BODY,
                datetime.now(UTC),
                {},
            ),
        )
        cur = await conn.execute(
            "SELECT review_reason FROM inbound_messages WHERE id = %s", (outcome.inbound_id,)
        )
        row = await cur.fetchone()
    assert row is not None and row[0], "the text was not flagged for review"
    return outcome.inbound_id


async def seed(pool: Pool, platform: Platform) -> Seeded:
    await build_world(pool)  # acme (downtown, uptown) and bravo (harbor)
    zones = {"downtown": "America/New_York", "uptown": "America/Los_Angeles"}
    async with pool.connection() as conn:
        for n in range(1, STORES + 1):
            store = TenantScope(A.franchisor_id, f"store-{n:02d}")
            zone = ("America/Chicago", "America/Denver", "America/New_York")[n % 3]
            await locations.create_location(
                conn,
                OPERATOR,
                A,
                store.location_id or "",
                locations.LocationInput(display_name=f"Store {n:02d}", time_zone=zone),
            )
            zones[store.location_id or ""] = zone
    template = await brand_template(pool)
    sequence = await make_sequence(
        pool,
        [Step(template, 0, require_approval=True), Step(template, 30 * DAY)],
        "winback",
    )
    await _seed_rollups(pool, sequence, zones)
    return Seeded(
        admin=await _staff(pool, A, "ann", "Ann Admin", Role.FRANCHISOR_ADMIN),
        manager=await _staff(pool, A_DOWNTOWN, "manny", "Manny Manager", Role.LOCATION_MANAGER),
        sequence=sequence,
        enrollment=await _awaiting_approval(pool, platform, sequence),
        flagged_inbound_id=await _flagged_text(pool),
        locations=tuple(sorted(zones)),
    )


# ---------------------------------------------------------------------------------------------
# The stack
# ---------------------------------------------------------------------------------------------


def _database_url(admin_url: str, database: str) -> str:
    return psycopg.conninfo.make_conninfo(admin_url, dbname=database)


@asynccontextmanager
async def _database(admin_url: str, template: str) -> AsyncIterator[Pool]:
    """A fresh clone of the migrated template, dropped when the block ends."""
    name = f"reengage_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    pool = open_pool(_database_url(admin_url, name))
    try:
        await pool.open(wait=True)
        yield pool
    finally:
        await pool.close()
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@asynccontextmanager
async def serving_dashboard(
    admin_url: str, template: str, client: Client
) -> AsyncIterator[DashboardStack]:
    """The seeded platform: a worker on a task queue of its own and the HTTP edge on a free
    port. Enrollments still running at the end are cancelled through the worker."""
    async with _database(admin_url, template) as pool:
        port = free_port()
        base_url = f"http://127.0.0.1:{port}"
        settings = platform_settings(
            public_url=base_url, task_queue=f"dashboard-{uuid.uuid4().hex[:8]}"
        )
        platform = build_platform(settings, pool, client)
        assert platform.workflows is not None
        async with platform.worker():
            server = http_server(platform.http_app(), "127.0.0.1", port)
            task = asyncio.create_task(server.serve())
            try:
                while not server.started:
                    assert not task.done(), "the HTTP edge did not start"
                    await asyncio.sleep(0.02)
                yield DashboardStack(base_url, pool, platform, await seed(pool, platform))
            finally:
                server.should_exit = True
                await task
                await platform.relay.settle()
                async with pool.connection() as conn:
                    cur = await conn.execute("SELECT workflow_id, run_id FROM enrollments")
                    runs = await cur.fetchall()
                for workflow_id, run_id in runs:
                    await end_leftover_run(client, platform.workflows, workflow_id, run_id or None)


# ---------------------------------------------------------------------------------------------
# The browser
# ---------------------------------------------------------------------------------------------


def chromium_or_skip() -> str:
    """The browser's path; skips the test when it is missing (fails instead when
    REENGAGE_REQUIRE_BROWSER=1, as CI sets: there a missing browser is a broken setup)."""
    if CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK):
        return str(CHROMIUM)
    reason = (
        f"the dashboard's browser tests need Debian's chromium at {CHROMIUM}"
        " (apt-get install -y --no-install-recommends chromium)"
    )
    if os.environ.get(REQUIRE_BROWSER) == "1":
        pytest.fail(f"{reason}; {REQUIRE_BROWSER}=1 requires them")
    pytest.skip(reason)


@asynccontextmanager
async def chromium(executable: str) -> AsyncIterator[Browser]:
    """Headless chromium from executable_path: Playwright downloads nothing."""
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=executable, headless=True, args=list(CHROMIUM_ARGS)
        )
        try:
            yield browser
        finally:
            await browser.close()


# The headers docs/dashboard.md promises on every dashboard answer (beside the CSP)
SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    # a browser's form posts name their origin; no address of ours leaves for another site
    "referrer-policy": "same-origin",
}
SERIOUS = {"serious", "critical"}


def csp_problems(policy: str | None) -> list[str]:
    """What is wrong with a page's Content-Security-Policy: missing, or allowing inline
    script (in script-src, or in default-src when there is no script-src)."""
    if not policy:
        return ["no Content-Security-Policy"]
    directives = {}
    for part in policy.split(";"):
        words = part.split()
        if words:
            directives[words[0].lower()] = [w.lower() for w in words[1:]]
    problems = []
    scripts = directives.get("script-src", directives.get("default-src"))
    if scripts is None:
        problems.append("neither script-src nor default-src: scripts are not restricted")
    for name in ("script-src", "default-src"):
        for unsafe in ("'unsafe-inline'", "'unsafe-eval'"):
            if unsafe in directives.get(name, []):
                problems.append(f"{name} allows {unsafe}")
    return problems


@dataclass
class Visitor:
    """One person's browser: a context of its own (cookies) and one page. It records every
    document the page loads (redirects included) and every console error, for `audit`."""

    context: BrowserContext
    page: Page
    base_url: str
    documents: list[Response] = field(default_factory=list)
    console_errors: list[tuple[str, str]] = field(default_factory=list)  # (text, url)

    @classmethod
    async def open(
        cls, browser: Browser, base_url: str, viewport: dict[str, int] = DESKTOP
    ) -> Visitor:
        context = await browser.new_context(viewport=viewport)  # type: ignore[arg-type]
        page = await context.new_page()
        visitor = cls(context, page, base_url)
        page.on("response", visitor._on_response)
        page.on("console", visitor._on_console)
        page.on("pageerror", lambda error: visitor.console_errors.append((str(error), "")))
        return visitor

    def _on_response(self, response: Response) -> None:
        if response.request.resource_type == "document":
            self.documents.append(response)

    def _on_console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.console_errors.append((message.text, message.location.get("url", "")))

    async def close(self) -> None:
        await self.context.close()

    async def goto(self, path: str) -> Response:
        """Opens path (or a whole URL) and answers the last response of its navigation."""
        url = path if path.startswith("http") else self.base_url + path
        response = await self.page.goto(url)
        assert response is not None, f"no response for {url}"
        return response

    async def press(self, button: str, within: str = "") -> Response:
        """Presses the button named `button` (within the element `within`) and waits for the
        page it leads to; that page's response."""
        scope = self.page.locator(within) if within else self.page
        async with self.page.expect_navigation() as navigation:
            await scope.get_by_role("button", name=button, exact=True).click()
        response = await navigation.value
        assert response is not None
        return response

    async def session_cookie(self) -> Cookie | None:
        found = [c for c in await self.context.cookies() if c.get("name") == COOKIE]
        return found[0] if found else None

    def path(self) -> str:
        return self.page.url.removeprefix(self.base_url)

    async def audit(self, shot: str | None = None, *, refused: int | None = None) -> None:
        """What every page must pass: each document loaded since the last audit (redirects
        aside) carried the security headers; axe-core finds nothing serious or critical on the
        page shown (the rest is printed); no console error (a refused page's own status aside:
        `refused`); then the page's full-page screenshot docs/screenshots/dashboard-{shot}.png."""
        documents, self.documents = self.documents, []
        assert documents, "no page was loaded since the last audit"
        for response in documents:
            if 300 <= response.status < 400:
                continue
            headers = await response.all_headers()
            problems = csp_problems(headers.get("content-security-policy"))
            for name, value in SECURITY_HEADERS.items():
                if headers.get(name, "").lower() != value.lower():
                    problems.append(f"{name}: {headers.get(name)!r}, not {value!r}")
            if "no-store" not in headers.get("cache-control", ""):
                problems.append(f"cache-control: {headers.get('cache-control')!r}, not no-store")
            assert not problems, f"{response.url} ({response.status}): {problems}"

        results = await Axe().run(self.page)
        violations = results.response["violations"]
        serious = [v for v in violations if v.get("impact") in SERIOUS]
        for v in violations:
            if v not in serious:
                print(f"axe ({self.path()}): {v['id']} ({v.get('impact')}): {v['help']}")
        assert not serious, f"axe on {self.path()}:\n{results.generate_report()}"

        errors, self.console_errors = self.console_errors, []
        # the browser asks the site's root for /favicon.ico by itself (the pages name no icon):
        # its 404 is the edge's, not the page's
        errors = [(text, url) for text, url in errors if not url.endswith("/favicon.ico")]
        if refused is not None:
            own = f"the server responded with a status of {refused}"
            errors = [(text, url) for text, url in errors if own not in text]
        assert not errors, f"console errors on {self.path()}: {errors}"

        if shot is not None:
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            await self.page.screenshot(path=SCREENSHOTS / f"dashboard-{shot}.png", full_page=True)
