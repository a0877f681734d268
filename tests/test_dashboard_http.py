"""The dashboard over HTTP (the real Starlette app of the edge, the real database and report
functions; the browser walk-through is tests/test_dashboard_browser.py): signing in by a
one-time link, the session cookie, CSRF and origin checks, who may see which page, the numbers
of each page against the ReportService's answer for the same range, the flagged-text queue, bad
input, and the security headers."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import grpc
import httpx
import pytest
from google.type import date_pb2
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from reengage.v1 import reports_pb2 as rpb
from reengage.v1 import reports_pb2_grpc
from server.http.dashboard import pages, queue
from server.http.dashboard.app import COOKIE, Dashboard
from server.http.edge import build_http_app
from tenants.core.errors import InvalidArgument
from tenants.core.names import ChildName, TenantScope
from tenants.inbound.texts import InboundSms, receive
from tenants.org import dashboard_sessions as sessions
from tenants.org.access import Role
from tenants.org.staff import create_staff_member, delete_staff_member
from tenants.sequences.model import Definition, Step
from tests.enrollment_support import consenting_contact
from tests.inbound_support import DOWNTOWN_NUMBER
from tests.report_support import add_sequence, reason, rollup
from tests.support import A_DOWNTOWN, A_UPTOWN, B_HARBOR, OPERATOR, A, World

Pool = AsyncConnectionPool[Any]
BASE = "http://dash.test"
ZONE = "America/New_York"  # acme's reporting zone (the default) and downtown's


def today() -> date:
    return datetime.now(UTC).astimezone(ZoneInfo(ZONE)).date()


async def staff(pool: Pool, scope: TenantScope, staff_id: str, role: Role) -> ChildName:
    async with pool.connection() as conn:
        member = await create_staff_member(
            conn, OPERATOR, scope, staff_id, staff_id.title(), role, "", ""
        )
    return member.name


async def link(pool: Pool, name: ChildName, **kw: Any) -> str:
    async with pool.connection() as conn:
        minted = await sessions.mint_link(conn, OPERATOR, name, **kw)
    return minted.token


@pytest.fixture
async def site(pool: Pool, world: World) -> AsyncIterator[httpx.AsyncClient]:
    dashboard = Dashboard(pool, None, None, BASE)
    app = build_http_app({}, dashboard.routes())
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url=BASE, follow_redirects=False
    ) as client:
        yield client


async def sign_in(site: httpx.AsyncClient, token: str) -> httpx.Response:
    return await site.post("/dashboard/sign-in", data={"token": token}, headers={"origin": BASE})


async def signed_in_as(pool: Pool, site: httpx.AsyncClient, name: ChildName) -> None:
    answer = await sign_in(site, await link(pool, name))
    assert answer.status_code == 303, answer.text


@pytest.fixture
async def seeded(pool: Pool, world: World) -> dict[str, ChildName]:
    """Rollups over the last days for both acme locations and bravo's, a flagged text, and a
    staff member of every kind."""
    t = today()
    async with pool.connection() as conn:
        seq = await add_sequence(conn, A, "winback", "Win-back", ["t1", "t2"])
        for i in range(10):
            day = t - timedelta(days=i)
            for zone in ("B", "L"):
                await rollup(conn, zone, day, A_DOWNTOWN, seq, 0, sent=20, delivered=19,
                             contacts_delivered=18, unique_clickers=3, repliers=2, converters=1,
                             revenue_minor=1250, enrolled=5)  # fmt: skip
                await rollup(conn, zone, day, A_UPTOWN, seq, 1, sent=5, delivered=5,
                             contacts_delivered=5, unique_clickers=2)  # fmt: skip
                await rollup(conn, zone, day, B_HARBOR, ChildName(B_HARBOR.franchisor, "sequences",
                             "x"), 0, sent=7)  # fmt: skip
        for i in range(30, 35):  # the previous 30 days
            day = t - timedelta(days=i)
            await rollup(conn, "B", day, A_DOWNTOWN, seq, 0, sent=10, delivered=10)
        await reason(conn, "B", t, A_DOWNTOWN, seq, 0, "exit", "replied", 4)
        await reason(conn, "L", t, A_DOWNTOWN, seq, 0, "exit", "replied", 4)
    return {
        "sequence": seq,
        "admin": await staff(pool, A, "ada", Role.FRANCHISOR_ADMIN),
        "viewer": await staff(pool, A, "vic", Role.FRANCHISOR_VIEWER),
        "manager": await staff(pool, A_DOWNTOWN, "mona", Role.LOCATION_MANAGER),
        "clerk": await staff(pool, A_DOWNTOWN, "cleo", Role.LOCATION_STAFF),
        "bravo": await staff(pool, B_HARBOR.franchisor, "bo", Role.FRANCHISOR_ADMIN),
    }


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found, "the page has no CSRF field"
    return found.group(1)


def values(page: str, pattern: str) -> dict[str, str]:
    return dict(re.findall(pattern, page))


# ---------------------------------------------------------------------------------------------
# Signing in
# ---------------------------------------------------------------------------------------------


async def test_a_link_signs_in_once_and_sets_a_strict_cookie(
    pool: Pool, site: httpx.AsyncClient, seeded: dict[str, ChildName]
) -> None:
    token = await link(pool, seeded["admin"])
    shown = await site.get(f"/dashboard/sign-in/{token}")
    assert shown.status_code == 200 and "Sign in" in shown.text and "Ada" in shown.text
    again = await site.get(f"/dashboard/sign-in/{token}")  # a preview consumed nothing
    assert again.status_code == 200

    answer = await sign_in(site, token)
    assert answer.status_code == 303 and answer.headers["location"] == "/dashboard"
    cookie = answer.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}=")
    for part in ("HttpOnly", "SameSite=lax", "Path=/dashboard", "Max-Age=43200"):
        assert part.lower() in cookie.lower(), cookie
    assert "secure" not in cookie.lower()  # the public URL is http

    home = await site.get("/dashboard")
    assert home.status_code == 303 and home.headers["location"] == "/dashboard/brand"
    assert (await site.get("/dashboard/brand")).status_code == 200

    site.cookies.clear()
    reused = await sign_in(site, token)
    assert reused.status_code == 403 and "set-cookie" not in reused.headers
    assert "expired or was already used" in reused.text
    assert (await site.get(f"/dashboard/sign-in/{token}")).status_code == 403


async def test_an_expired_or_unknown_link_is_refused(
    pool: Pool, site: httpx.AsyncClient, seeded: dict[str, ChildName]
) -> None:
    old = await link(pool, seeded["admin"], now=datetime.now(UTC) - timedelta(minutes=11))
    for token in (old, "x" * 43, "nope", "%00", "a" * 5000):
        assert (await site.get(f"/dashboard/sign-in/{token}")).status_code in (403, 404)
        answer = await sign_in(site, token)
        assert answer.status_code == 403 and "set-cookie" not in answer.headers


async def test_the_cookie_is_secure_behind_https(
    pool: Pool, world: World, seeded: dict[str, ChildName]
) -> None:
    app = build_http_app({}, Dashboard(pool, None, None, "https://dash.example").routes())
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="https://dash.example"
    ) as client:
        answer = await client.post(
            "/dashboard/sign-in", data={"token": await link(pool, seeded["admin"])}
        )
    assert answer.status_code == 303
    assert "secure" in answer.headers["set-cookie"].lower()


async def test_pages_need_a_session_and_a_deleted_staff_member_has_none(
    pool: Pool, site: httpx.AsyncClient, seeded: dict[str, ChildName]
) -> None:
    assert (await site.get("/dashboard/brand")).status_code == 401
    site.cookies.set(COOKIE, "forged-" + "x" * 40, path="/dashboard")
    assert (await site.get("/dashboard/brand")).status_code == 401

    site.cookies.clear()
    await signed_in_as(pool, site, seeded["viewer"])
    assert (await site.get("/dashboard/brand")).status_code == 200
    async with pool.connection() as conn:
        await delete_staff_member(conn, OPERATOR, seeded["viewer"])
    gone = await site.get("/dashboard/brand")
    assert gone.status_code == 401 and "Please sign in" in gone.text


async def test_sign_out_ends_the_session_and_needs_the_csrf_token(
    pool: Pool, site: httpx.AsyncClient, seeded: dict[str, ChildName]
) -> None:
    await signed_in_as(pool, site, seeded["admin"])
    page = (await site.get("/dashboard/brand")).text
    forged = await site.post("/dashboard/sign-out", data={"csrf": "wrong"})
    assert forged.status_code == 403
    assert (await site.get("/dashboard/brand")).status_code == 200
    out = await site.post(
        "/dashboard/sign-out", data={"csrf": csrf_of(page)}, headers={"origin": BASE}
    )
    assert out.status_code == 303 and out.headers["location"] == "/dashboard/signed-out"
    assert (await site.get("/dashboard/signed-out")).status_code == 200
    site.cookies.clear()
    await signed_in_as(pool, site, seeded["admin"])  # a new link signs in again


# ---------------------------------------------------------------------------------------------
# Who sees what
# ---------------------------------------------------------------------------------------------

PAGES = {
    "brand": "/dashboard/brand",
    "board": "/dashboard/brand/locations",
    "brand_sequence": "/dashboard/brand/sequences/winback",
    "downtown": "/dashboard/locations/downtown",
    "uptown": "/dashboard/locations/uptown",
    "downtown_sequence": "/dashboard/locations/downtown/sequences/winback",
    "queue": "/dashboard/queue",
}
SEES = {
    "admin": set(PAGES),
    "viewer": set(PAGES),
    "manager": {"downtown", "downtown_sequence", "queue"},
    "clerk": {"downtown", "downtown_sequence", "queue"},
    "bravo": {"brand", "board", "queue"},  # its own brand: acme's locations are not its
}


@pytest.mark.parametrize("who", sorted(SEES))
async def test_each_role_sees_its_pages_and_gets_403_elsewhere(
    pool: Pool, site: httpx.AsyncClient, seeded: dict[str, ChildName], who: str
) -> None:
    await signed_in_as(pool, site, seeded[who])
    for page, url in PAGES.items():
        answer = await site.get(url)
        # bravo's admin asks bravo's tree for acme's names: they do not exist there
        expected = 200 if page in SEES[who] else 404 if who == "bravo" else 403
        assert answer.status_code == expected, (who, url, answer.status_code)
        assert "Content-Security-Policy" in answer.headers
    if who == "bravo":  # acme never shows in bravo's pages
        assert "Acme" not in (await site.get("/dashboard/brand/locations")).text


async def test_a_brand_of_another_franchisor_is_never_reached_by_url(
    pool: Pool, site: httpx.AsyncClient, seeded: dict[str, ChildName]
) -> None:
    await signed_in_as(pool, site, seeded["admin"])
    # harbor is bravo's: acme's admin asks acme's tree, where it does not exist
    assert (await site.get("/dashboard/locations/harbor")).status_code == 404


# ---------------------------------------------------------------------------------------------
# The numbers are the ReportService's
# ---------------------------------------------------------------------------------------------


async def downtown_winback(
    stub: reports_pb2_grpc.ReportServiceStub, world: World, start: date, end: date
) -> rpb.SequenceReport:
    """GetSequenceReport of the brand's winback at downtown, as its manager asks for it."""
    return await stub.GetSequenceReport(
        rpb.GetSequenceReportRequest(
            name="franchisors/acme/sequences/winback",
            location=A_DOWNTOWN.name,
            start_date=_pb_date(start),
            end_date=_pb_date(end),
        ),
        metadata=world.metadata("a_downtown_manager"),
    )


def _pb_date(d: date) -> date_pb2.Date:
    return date_pb2.Date(year=d.year, month=d.month, day=d.day)


async def test_brand_and_leaderboard_numbers_equal_get_franchisor_report(
    pool: Pool,
    site: httpx.AsyncClient,
    seeded: dict[str, ChildName],
    channel: grpc.aio.Channel,
    world: World,
) -> None:
    await signed_in_as(pool, site, seeded["viewer"])
    start, end = today() - timedelta(days=29), today()
    stub = reports_pb2_grpc.ReportServiceStub(channel)
    api = await stub.GetFranchisorReport(
        rpb.GetFranchisorReportRequest(
            name="franchisors/acme", start_date=_pb_date(start), end_date=_pb_date(end)
        ),
        metadata=world.metadata("a_viewer"),
    )
    before = await stub.GetFranchisorReport(
        rpb.GetFranchisorReportRequest(
            name="franchisors/acme",
            start_date=_pb_date(start - timedelta(days=30)),
            end_date=_pb_date(start - timedelta(days=1)),
        ),
        metadata=world.metadata("a_viewer"),
    )
    page = (await site.get("/dashboard/brand?days=30")).text
    tiles = dict(re.findall(r'data-measure="(\w+)" data-value="([^"]*)" data-previous', page))
    previous = dict(
        re.findall(r'data-measure="(\w+)" data-value="[^"]*" data-previous="([^"]*)"', page)
    )
    t, p = api.totals, before.totals
    assert int(tiles["sent"]) == t.sent == 250
    assert int(tiles["enrolled"]) == t.enrolled
    assert float(tiles["delivery_rate"]) == pytest.approx(t.rates.delivery_rate)
    assert float(tiles["click_through_rate"]) == pytest.approx(t.rates.click_through_rate)
    assert float(tiles["reply_rate"]) == pytest.approx(t.rates.reply_rate)
    assert float(tiles["conversion_rate"]) == pytest.approx(t.rates.conversion_rate)
    assert int(tiles["revenue"]) == t.revenue.units * 100 + t.revenue.nanos // 10_000_000
    assert int(previous["sent"]) == p.sent == 50
    assert "+400% vs previous 30 days" in page

    board = (await site.get("/dashboard/brand/locations?sort=click_through_rate&dir=desc")).text
    rows = re.findall(r'<tr data-location="(\w+)" data-sort-value="([^"]*)"', board)
    ordered = await stub.GetFranchisorReport(
        rpb.GetFranchisorReportRequest(
            name="franchisors/acme",
            start_date=_pb_date(start),
            end_date=_pb_date(end),
            order_by="click_through_rate desc",
        ),
        metadata=world.metadata("a_viewer"),
    )
    assert [r[0] for r in rows] == [r.location.split("/")[-1] for r in ordered.locations]
    assert [r[0] for r in rows] == ["uptown", "downtown"]  # 40 % against 15.8 %
    sent = {
        loc: int(v)
        for loc, v in re.findall(
            r'<tr data-location="(\w+)".*?data-measure="sent" data-value="(\d+)"', board, re.S
        )
    }
    assert sent == {r.location.split("/")[-1]: r.measures.sent for r in api.locations}
    assert board.count("<svg") >= 2  # a sparkline per row
    assert 'class="median"' in board


async def test_location_and_sequence_numbers_equal_the_report_service(
    pool: Pool,
    site: httpx.AsyncClient,
    seeded: dict[str, ChildName],
    channel: grpc.aio.Channel,
    world: World,
) -> None:
    await signed_in_as(pool, site, seeded["manager"])
    start, end = today() - timedelta(days=6), today()
    stub = reports_pb2_grpc.ReportServiceStub(channel)
    api = await stub.GetLocationReport(
        rpb.GetLocationReportRequest(
            name=A_DOWNTOWN.name, start_date=_pb_date(start), end_date=_pb_date(end)
        ),
        metadata=world.metadata("a_downtown_manager"),
    )
    page = (await site.get("/dashboard/locations/downtown?days=7")).text
    tiles = values(page, r'class="kpi" data-measure="(\w+)" data-value="([^"]*)"')
    assert int(tiles["sent"]) == api.totals.sent == 140
    assert float(tiles["reply_rate"]) == pytest.approx(api.totals.rates.reply_rate)

    seq = await downtown_winback(stub, world, start, end)
    page = (await site.get("/dashboard/locations/downtown/sequences/winback?days=7")).text
    assert 'At <a href="/dashboard/locations/downtown?days=7">Downtown</a>' in page
    steps = re.findall(
        r'<tr data-step="(\d+)">.*?data-measure="sent" data-value="(\d+)".*?'
        r'data-measure="delivered" data-value="(\d+)"',
        page,
        re.S,
    )
    assert [(int(i), int(s), int(d)) for i, s, d in steps] == [
        (s.step_index, s.measures.sent, s.measures.delivered) for s in seq.steps
    ]
    assert 'data-reason="replied" data-value="4"' in page
    assert seq.totals.exits_by_reason["replied"] == 4


# ---------------------------------------------------------------------------------------------
# The flagged-text queue
# ---------------------------------------------------------------------------------------------


async def flagged_text(pool: Pool) -> str:
    await consenting_contact(pool)
    async with pool.connection() as conn:
        outcome = await receive(
            conn,
            InboundSms("twilio", "SM" + "7" * 32, "+12125550142", DOWNTOWN_NUMBER,
                       "Can you stop by the counter tomorrow?", datetime.now(UTC), {}),
        )  # fmt: skip
    return str(outcome.inbound_id)


async def test_a_manager_resolves_a_flagged_text_and_staff_may_not(
    pool: Pool, site: httpx.AsyncClient, seeded: dict[str, ChildName]
) -> None:
    inbound_id = await flagged_text(pool)
    await signed_in_as(pool, site, seeded["clerk"])
    page = (await site.get("/dashboard/queue")).text
    assert "stop by the counter" in page and f'data-flagged="{inbound_id}"' not in page
    refused = await site.post(
        f"/dashboard/flagged/downtown/{inbound_id}",
        data={"csrf": csrf_of(page), "resolution": "not_opt_out"},
    )
    assert refused.status_code == 403

    site.cookies.clear()
    await signed_in_as(pool, site, seeded["manager"])
    page = (await site.get("/dashboard/queue")).text
    assert f'data-flagged="{inbound_id}"' in page
    url = f"/dashboard/flagged/downtown/{inbound_id}"
    csrf = csrf_of(page)
    assert (await site.post(url, data={"resolution": "not_opt_out"})).status_code == 403
    evil = await site.post(
        url,
        data={"csrf": csrf, "resolution": "not_opt_out"},
        headers={"origin": "https://evil.example"},
    )
    assert evil.status_code == 403
    bad = await site.post(url, data={"csrf": csrf, "resolution": "maybe"})
    assert bad.status_code == 400 and "resolution" in bad.text
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT resolution FROM inbound_messages WHERE id = %s", (int(inbound_id),)
        )
        assert (await cur.fetchone()) == ("",)  # nothing refused changed anything

    done = await site.post(
        url,
        data={"csrf": csrf, "resolution": "not_opt_out", "note": "asked about pickup"},
        headers={"origin": BASE},
    )
    assert (
        done.status_code == 303
        and done.headers["location"] == "/dashboard/queue?notice=not_opt_out"
    )
    after = (await site.get(done.headers["location"])).text
    assert "Resolved as not an opt-out" in after and f'data-flagged="{inbound_id}"' not in after
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT resolution, resolved_by, review_note FROM inbound_messages WHERE id = %s",
            (int(inbound_id),),
        )
        assert await cur.fetchone() == (
            "not_opt_out",
            f"staff_member:{seeded['manager'].name}",
            "asked about pickup",
        )
        cur = await conn.execute(
            "SELECT details->>'via' FROM audit_log WHERE action = 'flagged_message.resolve'"
        )
        assert await cur.fetchone() == ("dashboard",)


async def test_a_brand_admin_narrows_the_queue_to_a_location(
    pool: Pool, site: httpx.AsyncClient, seeded: dict[str, ChildName]
) -> None:
    inbound_id = await flagged_text(pool)
    await signed_in_as(pool, site, seeded["admin"])
    everywhere = (await site.get("/dashboard/queue")).text
    assert f'data-flagged="{inbound_id}"' in everywhere
    uptown = (await site.get("/dashboard/queue?location=uptown")).text
    assert f'data-flagged="{inbound_id}"' not in uptown
    assert (await site.get("/dashboard/queue?location=..%2F")).status_code == 404


async def test_deciding_without_the_workflow_service_changes_nothing(
    pool: Pool, site: httpx.AsyncClient, seeded: dict[str, ChildName]
) -> None:
    await signed_in_as(pool, site, seeded["clerk"])
    csrf = csrf_of((await site.get("/dashboard/queue")).text)
    url = "/dashboard/approvals/downtown/e-1"
    form = {"csrf": csrf, "step": "0", "action": "approve", "request_id": "dashboard-1"}
    answer = await site.post(url, data=form)
    assert answer.status_code == 303 and answer.headers["location"].endswith("NO_TEMPORAL")
    for bad in ({"action": "launch"}, {"step": "-1"}, {"request_id": "x"},
                {"action": "edit", "text": ""}):  # fmt: skip
        refused = await site.post(url, data={**form, **bad})
        assert refused.status_code == 400, bad
    other = await site.post("/dashboard/approvals/uptown/e-1", data=form)
    assert other.status_code == 403


# ---------------------------------------------------------------------------------------------
# Bad input and the headers
# ---------------------------------------------------------------------------------------------


async def test_bad_parameters_get_clear_errors(
    pool: Pool, site: httpx.AsyncClient, seeded: dict[str, ChildName]
) -> None:
    await signed_in_as(pool, site, seeded["admin"])
    for url, status, words in (
        ("/dashboard/brand?days=8", 400, "days"),
        ("/dashboard/brand/locations?sort=drop+table", 400, "sort"),
        ("/dashboard/brand/locations?dir=sideways", 400, "dir"),
        ("/dashboard/brand/locations?q=" + "x" * 200, 400, "longer than 100"),
        ("/dashboard/locations/" + "x" * 300, 404, "Not found"),
        ("/dashboard/locations/nowhere", 404, "Not found"),
        ("/dashboard/brand/sequences/nosuch", 404, "Not found"),
    ):
        answer = await site.get(url)
        assert answer.status_code == status and words in answer.text, (url, answer.status_code)
    page = await site.get("/dashboard/brand/locations?q=<script>alert(1)</script>&page=999")
    assert page.status_code == 200 and "<script>" not in page.text
    assert "&lt;script&gt;" in page.text
    csrf = csrf_of(page.text)
    huge = await site.post("/dashboard/sign-out", data={"csrf": csrf, "pad": "x" * 20_000})
    assert huge.status_code == 413
    not_a_form = await site.post(
        "/dashboard/sign-out", content=b"{}", headers={"content-type": "application/json"}
    )
    assert not_a_form.status_code == 415


async def test_every_answer_carries_the_security_headers(
    pool: Pool, site: httpx.AsyncClient, seeded: dict[str, ChildName]
) -> None:
    await signed_in_as(pool, site, seeded["admin"])
    for url in ("/dashboard/brand", "/dashboard/brand/locations", "/dashboard/queue",
                "/dashboard/locations/nowhere", "/dashboard/static/dashboard.css"):  # fmt: skip
        answer = await site.get(url)
        csp = answer.headers["content-security-policy"]
        assert "unsafe-inline" not in csp and "default-src 'none'" in csp, url
        assert "script-src" not in csp  # no script at all
        assert answer.headers["x-content-type-options"] == "nosniff"
        if url.endswith(".css"):
            assert answer.headers["content-type"].startswith("text/css")
        else:
            assert answer.headers["cache-control"] == "no-store"
            assert "<script" not in answer.text and 'style="' not in answer.text


# ---------------------------------------------------------------------------------------------
# What the review found
# ---------------------------------------------------------------------------------------------


async def test_a_page_elsewhere_cannot_sign_a_browser_in(
    pool: Pool, site: httpx.AsyncClient, seeded: dict[str, ChildName]
) -> None:
    token = await link(pool, seeded["admin"])
    forged = await site.post(
        "/dashboard/sign-in", data={"token": token}, headers={"origin": "https://evil.example"}
    )
    assert forged.status_code == 403 and "set-cookie" not in forged.headers
    assert (await sign_in(site, token)).status_code == 303  # the link was not spent


async def test_a_post_without_a_live_session_forgets_the_cookie(
    site: httpx.AsyncClient, seeded: dict[str, ChildName]
) -> None:
    site.cookies.set(COOKIE, "gone-" + "x" * 38, path="/dashboard")
    answer = await site.post("/dashboard/sign-out", data={"csrf": "x"})
    assert answer.status_code == 401
    assert answer.headers["set-cookie"].startswith(f'{COOKIE}=""')


async def test_unknown_paths_and_methods_get_the_dashboards_own_answer(
    site: httpx.AsyncClient, seeded: dict[str, ChildName]
) -> None:
    for method, url, status in (("GET", "/dashboard/nope", 404), ("GET", "/dashboard/a/b/c", 404),
                                ("POST", "/dashboard/nope", 404),
                                ("GET", "/dashboard/sign-in", 405),
                                ("DELETE", "/dashboard/brand", 405)):  # fmt: skip
        answer = await site.request(method, url)
        assert answer.status_code == status, (method, url)
        assert "default-src 'none'" in answer.headers["content-security-policy"]
        if status == 405:
            assert answer.headers["allow"] in ("GET, HEAD", "POST")


async def test_digits_that_are_not_ascii_are_bad_input_not_a_crash(
    pool: Pool, site: httpx.AsyncClient, seeded: dict[str, ChildName]
) -> None:
    await signed_in_as(pool, site, seeded["manager"])
    assert (await site.get("/dashboard/brand/locations?page=²")).status_code == 403  # manager
    csrf = csrf_of((await site.get("/dashboard/queue")).text)
    decided = await site.post(
        "/dashboard/approvals/downtown/e-1",
        data={"csrf": csrf, "step": "²", "action": "approve", "request_id": "dashboard-1"},
    )
    assert decided.status_code == 400 and "step" in decided.text
    resolved = await site.post(
        "/dashboard/flagged/downtown/%C2%B2", data={"csrf": csrf, "resolution": "opt_out"}
    )
    assert resolved.status_code == 400
    site.cookies.clear()
    await signed_in_as(pool, site, seeded["admin"])
    assert (await site.get("/dashboard/brand/locations?page=²")).status_code == 200


async def test_approving_a_text_someone_changed_is_refused(
    pool: Pool, site: httpx.AsyncClient, seeded: dict[str, ChildName]
) -> None:
    await signed_in_as(pool, site, seeded["clerk"])
    csrf = csrf_of((await site.get("/dashboard/queue")).text)
    form = {"csrf": csrf, "step": "0", "action": "approve", "request_id": "dashboard-2",
            "shown": "Hi Dana,\nsee you soon", "text": "Hi Dana,\r\nsee you Saturday"}  # fmt: skip
    refused = await site.post("/dashboard/approvals/downtown/e-1", data=form)
    assert refused.status_code == 400 and "Send my edit" in refused.text
    same = {**form, "text": "Hi Dana,\r\nsee you soon"}  # the browser's line ends
    answer = await site.post("/dashboard/approvals/downtown/e-1", data=same)
    assert answer.status_code == 303  # (no workflow service here: NO_TEMPORAL)


async def test_a_brand_user_narrowing_to_a_location_not_there_gets_404(
    pool: Pool, site: httpx.AsyncClient, seeded: dict[str, ChildName]
) -> None:
    await signed_in_as(pool, site, seeded["admin"])
    assert (await site.get("/dashboard/queue?location=nowhere")).status_code == 404


async def test_a_locations_own_sequence_keeps_its_scope_across_periods(
    pool: Pool, site: httpx.AsyncClient, seeded: dict[str, ChildName]
) -> None:
    async with pool.connection() as conn:
        await add_sequence(conn, A_DOWNTOWN, "winback", "Downtown's own", ["t9"])
    await signed_in_as(pool, site, seeded["manager"])
    own = await site.get("/dashboard/locations/downtown/sequences/winback?scope=location")
    assert own.status_code == 200 and "Downtown&#39;s own" in own.text
    assert "?days=7&amp;scope=location" in own.text
    brand = await site.get("/dashboard/locations/downtown/sequences/winback")
    assert "Win-back" in brand.text and "scope=location" not in brand.text


async def test_the_queue_says_how_much_waits_beyond_the_rows_it_shows_and_names_locations(
    pool: Pool,
    site: httpx.AsyncClient,
    seeded: dict[str, ChildName],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(queue, "QUEUE_SIZE", 2)
    contact_ = await consenting_contact(pool)
    async with pool.connection() as conn:
        for i in range(3):
            await receive(
                conn,
                InboundSms("twilio", f"SM{i:032d}", "+12125550142", DOWNTOWN_NUMBER,
                           f"Can you stop by the counter at {i + 1}?", datetime.now(UTC), {}),
            )  # fmt: skip
        for i in range(3):  # three waiting: one of this contact, two of others
            other = (
                contact_.id
                if i == 0
                else (await consenting_contact(pool, phone=f"+1212555017{i}")).id
            )
            await queued_enrollment(conn, f"e-q{i}", other, timedelta(hours=i + 1))
    await signed_in_as(pool, site, seeded["manager"])
    page = (await site.get("/dashboard/queue")).text
    assert "Waiting for approval (3)" in page and "Flagged texts (3)" in page
    assert page.count('data-flagged="') == 2 and 'data-queue-more="flagged"' in page
    assert "Showing the oldest 2 of 3" in page
    assert "Showing the 2 with the soonest deadlines of 3" in page
    assert 'data-queue-more="approvals"' in page
    assert re.search(r"Received [^<]* at Downtown</h3>", page), page  # the name, not the id

    monkeypatch.setattr(queue, "QUEUE_SIZE", 3)  # all of it fits: no line about more
    page = (await site.get("/dashboard/queue")).text
    assert "Flagged texts (3)" in page and "data-queue-more" not in page
    assert page.count('data-flagged="') == 3


WAITING = Definition(steps=(Step("franchisors/acme/templates/t1", require_approval=True),))


async def queued_enrollment(conn: Any, enrollment_id: str, contact_id: str, due: timedelta) -> None:
    """An enrollment the read model shows awaiting approval at downtown (no workflow runs it:
    the dashboard here has no workflow service, so it is listed without a form)."""
    await conn.execute(
        "INSERT INTO enrollments (id, workflow_id, franchisor_id, location_id, contact_id,"
        " sequence_location_id, sequence_id, sequence_version, definition, status, current_step,"
        " next_wake_at, enrolled_at, enrolled_by)"
        " VALUES (%s, %s, 'acme', 'downtown', %s, NULL, 'winback', 1, %s,"
        " 'awaiting_approval', 0, now() + %s, now(), 'test')",
        (enrollment_id, f"w-{enrollment_id}", contact_id, Jsonb(WAITING.to_json()), due),
    )


# ---------------------------------------------------------------------------------------------
# CSV downloads: ExportReport's rows for the range the page shows
# ---------------------------------------------------------------------------------------------


async def exported(
    stub: reports_pb2_grpc.ReportServiceStub,
    metadata: Any,
    parent: str,
    days: int,
    grouping: int,
) -> list[list[str]]:
    start, end = today() - timedelta(days=days - 1), today()
    return await exported_between(stub, metadata, parent, start, end, grouping)


def csv_rows(response: httpx.Response) -> list[list[str]]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert response.text.endswith("\r\n")
    return list(csv.reader(io.StringIO(response.text)))


async def test_a_page_downloads_as_csv_the_rows_export_report_gives_for_its_range(
    pool: Pool,
    site: httpx.AsyncClient,
    seeded: dict[str, ChildName],
    channel: grpc.aio.Channel,
    world: World,
) -> None:
    stub = reports_pb2_grpc.ReportServiceStub(channel)
    await signed_in_as(pool, site, seeded["viewer"])
    page = (await site.get("/dashboard/brand?days=30")).text
    assert 'href="/dashboard/brand/export.csv?days=30&amp;by=location"' in page
    for by, grouping in (
        ("location", rpb.EXPORT_GROUPING_BY_LOCATION),
        ("day", rpb.EXPORT_GROUPING_BY_DAY),
        ("step", rpb.EXPORT_GROUPING_BY_STEP),
    ):
        answer = await site.get(f"/dashboard/brand/export.csv?days=30&by={by}")
        disposition = answer.headers["content-disposition"]
        start = today() - timedelta(days=29)
        assert disposition == f'attachment; filename="acme-by-{by}-{start}-{today()}.csv"'
        assert answer.headers["content-security-policy"].startswith("default-src 'none'")
        rows = csv_rows(answer)
        api = await exported(stub, world.metadata("a_viewer"), "franchisors/acme", 30, grouping)
        assert rows == api and len(rows) > 1
    by_location = csv_rows(await site.get("/dashboard/brand/export.csv?days=7&by=location"))
    assert [r[0] for r in by_location[1:]] == ["franchisors/acme/locations/downtown",
                                               "franchisors/acme/locations/uptown"]  # fmt: skip
    default = csv_rows(await site.get("/dashboard/brand/export.csv?days=7"))  # by day
    assert len(default) == 1 + 7

    site.cookies.clear()
    await signed_in_as(pool, site, seeded["manager"])
    page = (await site.get("/dashboard/locations/downtown?days=7")).text
    assert 'href="/dashboard/locations/downtown/export.csv?days=7&amp;by=step"' in page
    rows = csv_rows(await site.get("/dashboard/locations/downtown/export.csv?days=7&by=step"))
    api = await exported(
        stub, world.metadata("a_downtown_manager"), A_DOWNTOWN.name, 7, rpb.EXPORT_GROUPING_BY_STEP
    )
    assert rows == api
    refused = {
        "/dashboard/brand/export.csv": 403,  # the brand's numbers are not a manager's
        "/dashboard/locations/uptown/export.csv": 403,  # nor another location's
        "/dashboard/locations/downtown/export.csv?by=location": 400,  # a location has no others
        "/dashboard/locations/downtown/export.csv?by=month": 400,
        "/dashboard/locations/downtown/export.csv?days=8": 400,
        "/dashboard/locations/..%2F/export.csv": 404,
    }
    refused["/dashboard/brand/export.csv?start=x"] = 403  # access is decided first
    for url, status in refused.items():
        answer = await site.get(url)
        assert answer.status_code == status, (url, answer.status_code)
        assert answer.headers["content-type"].startswith("text/html")
    bad = await site.get("/dashboard/locations/downtown/export.csv?by=month")
    assert "is day or step" in bad.text
    site.cookies.clear()
    assert (await site.get("/dashboard/brand/export.csv")).status_code == 401


# ---------------------------------------------------------------------------------------------
# Dates a person chooses
# ---------------------------------------------------------------------------------------------


def test_a_chosen_period_is_two_dates_of_at_most_366_days_and_wins_over_days() -> None:
    now = datetime(2026, 12, 3, 12, tzinfo=UTC)
    chosen = pages.period_param({"start": "2026-11-01", "end": "2026-11-10", "days": "7"}, now)
    assert (chosen.days, chosen.start, chosen.end) == (10, date(2026, 11, 1), date(2026, 11, 10))
    assert chosen.query == "start=2026-11-01&end=2026-11-10"
    assert chosen.dates("Pacific/Kiritimati") == (date(2026, 11, 1), date(2026, 11, 10))
    assert pages.period_param({"days": "7"}, now).query == "days=7"
    assert pages.period_param({}, now).days == pages.DEFAULT_DAYS
    year = pages.period_param({"start": "2025-12-05", "end": "2026-12-04"}, now)
    assert year.days == 365  # tomorrow (in UTC) is still today somewhere
    refused = {
        ("2026-11-01", ""): "end",
        ("", "2026-11-01"): "start",
        ("2026-11-1", "2026-11-10"): "start",
        ("2026-11-01", "20261110"): "end",
        ("2026-11-31", "2026-12-01"): "start",
        ("2026-11-10", "2026-11-01"): "start",
        ("2025-12-01", "2026-12-02"): "end",  # 367 days
        ("2026-12-01", "2026-12-05"): "end",  # after tomorrow
        ("0001-01-01", "0001-01-01"): "start",  # no period of its length before it
        ("\uff12\uff10\uff12\uff16-11-01", "2026-11-10"): "start",  # full-width digits
    }
    for (start, end), field in refused.items():
        with pytest.raises(InvalidArgument) as err:
            pages.period_param({"start": start, "end": end}, now)
        assert [v.field for v in err.value.violations] == [field], (start, end)


async def test_pages_and_downloads_show_the_dates_a_person_chose(
    pool: Pool,
    site: httpx.AsyncClient,
    seeded: dict[str, ChildName],
    channel: grpc.aio.Channel,
    world: World,
) -> None:
    stub = reports_pb2_grpc.ReportServiceStub(channel)
    start, end = today() - timedelta(days=33), today() - timedelta(days=3)  # 31 days
    chosen = f"start={start.isoformat()}&end={end.isoformat()}"
    await signed_in_as(pool, site, seeded["viewer"])
    api = await stub.GetFranchisorReport(
        rpb.GetFranchisorReportRequest(
            name="franchisors/acme", start_date=_pb_date(start), end_date=_pb_date(end)
        ),
        metadata=world.metadata("a_viewer"),
    )
    page = (await site.get(f"/dashboard/brand?{chosen}")).text
    tiles = dict(re.findall(r'data-measure="(\w+)" data-value="([^"]*)" data-previous', page))
    assert int(tiles["sent"]) == api.totals.sent
    assert "vs previous 31 days" in page
    assert f'value="{start.isoformat()}"' in page and f'value="{end.isoformat()}"' in page
    escaped = chosen.replace("&", "&amp;")
    assert f'href="/dashboard/brand/locations?{escaped}"' in page  # links keep the dates
    assert f'href="/dashboard/brand/export.csv?{escaped}&amp;by=location"' in page

    board = (await site.get(f"/dashboard/brand/locations?{chosen}&sort=sent")).text
    sent = dict(re.findall(r'<tr data-location="(\w+)".*?data-measure="sent" data-value="(\d+)"',
                           board, re.S))  # fmt: skip
    assert sent == {r.location.split("/")[-1]: str(r.measures.sent) for r in api.locations}
    # the search form keeps them, and the header's links too
    assert f'name="start" type="date" value="{start.isoformat()}"' in board
    assert f'href="/dashboard/brand?{escaped}"' in board
    assert "Show the last 30 days" in board

    rows = csv_rows(await site.get(f"/dashboard/brand/export.csv?{chosen}&by=day"))
    assert rows == await exported_between(
        stub, world.metadata("a_viewer"), "franchisors/acme", start, end
    )
    assert len(rows) == 1 + 31

    bad = await site.get(f"/dashboard/brand?start={end.isoformat()}&end={start.isoformat()}")
    assert bad.status_code == 400 and "start" in bad.text
    one_day = f"start={end.isoformat()}&end={end.isoformat()}"
    page = (await site.get(f"/dashboard/brand?{one_day}")).text
    assert re.search(r"vs previous 1 day\b(?!s)", page)
    assert "Download CSV (1 day)" in page and "Showing the dates you chose" in page

    site.cookies.clear()
    await signed_in_as(pool, site, seeded["manager"])
    own = f"/dashboard/locations/downtown/sequences/winback?{chosen}&scope=location"
    assert (await site.get(own)).status_code == 404  # downtown has no sequence of its own
    page = (await site.get(f"/dashboard/locations/downtown/sequences/winback?{chosen}")).text
    seq = await downtown_winback(stub, world, start, end)
    (total_row,) = re.findall(r'<tr class="total">.*?</tr>', page, re.S)
    totals = dict(re.findall(r'data-measure="(\w+)" data-value="(\d+)"', total_row))
    assert int(totals["sent"]) == seq.totals.sent and seq.totals.sent > 0


async def exported_between(
    stub: reports_pb2_grpc.ReportServiceStub,
    metadata: Any,
    parent: str,
    start: date,
    end: date,
    grouping: int = rpb.EXPORT_GROUPING_BY_DAY,
) -> list[list[str]]:
    """ExportReport's rows (cells) for parent over start to end."""
    rows = stub.ExportReport(
        rpb.ExportReportRequest(
            parent=parent, start_date=_pb_date(start), end_date=_pb_date(end), grouping=grouping
        ),
        metadata=metadata,
    )
    return [list(r.cells) async for r in rows]
