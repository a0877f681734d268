"""The dashboard in a real browser (headless chromium under Playwright) against the whole
platform in process (tests/dashboard_browser_support.py): a brand admin signs in through a
one-time link and walks the brand overview, the leaderboard (sorted, searched, paged), a
location, a sequence and the work queue, approving a step a real workflow waits on; a location
manager resolves a flagged text and is refused the brand's pages and another location's; expired,
used and unknown links sign nobody in, and signing out ends the session.

Every page shown is audited (`Visitor.audit`): the security headers (a Content-Security-Policy
without inline script), axe-core without serious or critical violations, no console error (a CSP
violation is one), and a full-page screenshot in docs/screenshots/ (the README shows them).
One browser and one seeded stack serve the whole module; each test has its own browser context
(its own cookies)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from playwright.async_api import Browser
from temporalio.testing import WorkflowEnvironment

from tenants.core.names import ChildName
from tenants.reports.measures import LeaderboardPage, franchisor_report, location_report
from tests import dashboard_browser_support as support
from tests.dashboard_browser_support import (
    PHONE,
    DashboardStack,
    Visitor,
    chromium,
    chromium_or_skip,
    csp_problems,
    serving_dashboard,
)
from tests.support import A_DOWNTOWN, OPERATOR, A
from tests.waiting import eventually

BOARD_PAGE = 25  # rows of a leaderboard page (docs/dashboard.md)


@pytest.fixture(scope="module")
def executable() -> str:
    return chromium_or_skip()


@pytest.fixture(scope="module")
async def browser(executable: str) -> AsyncIterator[Browser]:
    async with chromium(executable) as launched:
        yield launched


@pytest.fixture(scope="module")
async def stack(
    executable: str, postgres_admin_url: str, template_database: str, dev_env: WorkflowEnvironment
) -> AsyncIterator[DashboardStack]:
    # (executable first: without a browser nothing is started)
    async with serving_dashboard(postgres_admin_url, template_database, dev_env.client) as s:
        yield s


@pytest.fixture
async def visitor(browser: Browser, stack: DashboardStack) -> AsyncIterator[Visitor]:
    opened = await Visitor.open(browser, stack.base_url)
    yield opened
    await opened.close()


async def sign_in(visitor: Visitor, stack: DashboardStack, staff: ChildName) -> None:
    await visitor.goto(await stack.sign_in_link(staff))
    landed = await visitor.press("Sign in")
    assert landed.status == 200, await visitor.page.content()


async def attribute_values(visitor: Visitor, selector: str, attribute: str) -> list[str]:
    found = await visitor.page.locator(selector).evaluate_all(
        f"(nodes) => nodes.map((n) => n.getAttribute({attribute!r}))"
    )
    return [str(v) for v in found]


async def board_ids(visitor: Visitor) -> list[str]:
    return await attribute_values(visitor, "#leaderboard tbody tr[data-location]", "data-location")


async def board_values(visitor: Visitor, measure: str) -> list[float]:
    raw = await attribute_values(
        visitor, f'#leaderboard tbody tr[data-location] td[data-measure="{measure}"]', "data-value"
    )
    return [float(v) for v in raw]


async def tile(visitor: Visitor, measure: str) -> tuple[float, float]:
    """A KPI tile's raw value and previous value."""
    node = visitor.page.locator(f'.kpi[data-measure="{measure}"]')
    assert await node.count() == 1, f"no KPI tile of {measure}"
    value, previous = (
        await node.get_attribute("data-value"),
        await node.get_attribute("data-previous"),
    )
    return float(value or "nan"), float(previous or "nan")


async def leaderboard_order(stack: DashboardStack, order_by: str) -> list[str]:
    """The first page of the ReportService's leaderboard in this order: what the page shows."""
    async with stack.pool.connection() as conn:
        report = await franchisor_report(
            conn, OPERATOR, A, None, None, order_by, LeaderboardPage(BOARD_PAGE)
        )
    return [r.location.location_id or "" for r in report.locations]


# ---------------------------------------------------------------------------------------------
# Signing in, the brand overview
# ---------------------------------------------------------------------------------------------


async def test_a_brand_admin_signs_in_through_a_link_and_lands_on_the_brand_overview(
    stack: DashboardStack, visitor: Visitor
) -> None:
    shown = await visitor.goto(await stack.sign_in_link(stack.seeded.admin))
    assert shown.status == 200
    assert "Ann Admin" in await visitor.page.locator("main").inner_text()
    assert await visitor.session_cookie() is None  # opening the link signs nobody in
    await visitor.audit("sign-in")

    landed = await visitor.press("Sign in")
    assert landed.status == 200 and visitor.path() == "/dashboard/brand"
    cookie = await visitor.session_cookie()
    assert cookie is not None
    assert cookie["httpOnly"] is True and cookie["sameSite"] == "Lax"
    assert cookie["path"] == "/dashboard" and cookie["secure"] is False  # the public URL is http

    async with stack.pool.connection() as conn:
        report = await franchisor_report(conn, OPERATOR, A, None, None)
    sent, previous = await tile(visitor, "sent")
    assert sent == report.totals.sent > 0
    assert previous > 0  # 60 days were seeded: the 30 before count too
    delivery, _ = await tile(visitor, "delivery_rate")
    assert delivery == pytest.approx(report.totals.value("delivery_rate"))
    assert await visitor.page.locator("svg").count() >= 1  # the daily trend, drawn on the server
    await visitor.audit("brand")


# ---------------------------------------------------------------------------------------------
# The leaderboard
# ---------------------------------------------------------------------------------------------


async def test_the_leaderboard_sorts_by_a_measure_searches_and_pages(
    stack: DashboardStack, visitor: Visitor, browser: Browser
) -> None:
    await sign_in(visitor, stack, stack.seeded.admin)
    async with visitor.page.expect_navigation():
        await visitor.page.get_by_role("link", name="Locations", exact=True).click()
    assert visitor.path().startswith("/dashboard/brand/locations")
    assert await board_ids(visitor) == await leaderboard_order(stack, "sent desc")
    assert await visitor.page.locator("#leaderboard tr.median").count() == 1
    await visitor.audit("leaderboard")

    header = visitor.page.locator('#leaderboard thead th:has(a[href*="sort=delivery_rate"])')
    async with visitor.page.expect_navigation():
        await header.get_by_role("link").click()
    assert await header.get_attribute("aria-sort") == "descending"
    rates = await board_values(visitor, "delivery_rate")
    assert len(rates) == BOARD_PAGE and rates == sorted(rates, reverse=True)
    assert await board_ids(visitor) == await leaderboard_order(stack, "delivery_rate desc")

    async with visitor.page.expect_navigation():  # the sorted header again: the other way
        await header.get_by_role("link").click()
    assert await header.get_attribute("aria-sort") == "ascending"
    rates = await board_values(visitor, "delivery_rate")
    assert rates == sorted(rates)
    assert await board_ids(visitor) == await leaderboard_order(stack, "delivery_rate asc")
    assert await visitor.page.locator("#leaderboard th[aria-sort]").count() == 1
    await visitor.audit()

    await visitor.page.get_by_label("Search locations").fill("DOWNTOWN")
    async with visitor.page.expect_navigation():
        await visitor.page.get_by_label("Search locations").press("Enter")
    assert await board_ids(visitor) == ["downtown"]
    await visitor.audit()

    first = await visitor.goto("/dashboard/brand/locations?sort=sent&dir=desc")
    assert first.status == 200
    page_one = await board_ids(visitor)
    async with visitor.page.expect_navigation():
        await visitor.page.locator('a[rel="next"]').click()
    page_two = await board_ids(visitor)
    assert len(page_one) == BOARD_PAGE and len(page_two) == len(stack.seeded.locations) - BOARD_PAGE
    assert sorted(page_one + page_two) == sorted(stack.seeded.locations)
    await visitor.audit()

    phone = await Visitor.open(browser, stack.base_url, PHONE)
    try:
        await sign_in(phone, stack, stack.seeded.admin)
        await phone.goto("/dashboard/brand/locations")
        await phone.audit("leaderboard-phone")
    finally:
        await phone.close()


async def test_bad_leaderboard_parameters_answer_400_and_change_nothing(
    stack: DashboardStack, visitor: Visitor
) -> None:
    await sign_in(visitor, stack, stack.seeded.admin)
    for query in ("sort=nope", "dir=sideways", "days=31", "q=" + "x" * 101):
        answer = await visitor.goto(f"/dashboard/brand/locations?{query}")
        assert answer.status == 400, query
        await visitor.audit(refused=400)


# ---------------------------------------------------------------------------------------------
# A location and its sequences
# ---------------------------------------------------------------------------------------------


async def test_a_location_opens_from_the_leaderboard_and_shows_its_sequences(
    stack: DashboardStack, visitor: Visitor
) -> None:
    await sign_in(visitor, stack, stack.seeded.admin)
    await visitor.goto("/dashboard/brand/locations?q=downtown")
    async with visitor.page.expect_navigation():
        await visitor.page.locator('tr[data-location="downtown"] a').first.click()
    assert visitor.path().split("?")[0] == "/dashboard/locations/downtown"
    async with stack.pool.connection() as conn:
        report = await location_report(conn, OPERATOR, A_DOWNTOWN, None, None)
    sent, previous = await tile(visitor, "sent")
    assert sent == report.totals.sent > 0 and previous > 0
    await visitor.audit("location")

    sequence = stack.seeded.sequence.id
    async with visitor.page.expect_navigation():
        await visitor.page.locator(f'#sequences tr[data-sequence="{sequence}"] a').click()
    assert visitor.path().startswith(f"/dashboard/locations/downtown/sequences/{sequence}")
    assert await attribute_values(visitor, "#funnel tr[data-step]", "data-step") == ["0", "1"]
    await visitor.audit("location-sequence")

    answer = await visitor.goto(f"/dashboard/brand/sequences/{sequence}")
    assert answer.status == 200
    assert await attribute_values(visitor, "#funnel tr[data-step]", "data-step") == ["0", "1"]
    await visitor.audit("brand-sequence")

    for path in ("/dashboard/locations/nowhere", "/dashboard/brand/sequences/nothing"):
        missing = await visitor.goto(path)  # what the brand does not have
        assert missing.status == 404, path
        await visitor.audit(refused=404)


# ---------------------------------------------------------------------------------------------
# The work queue
# ---------------------------------------------------------------------------------------------


async def test_approving_the_pending_step_in_the_queue_decides_it_in_the_workflow(
    stack: DashboardStack, visitor: Visitor
) -> None:
    enrollment = stack.seeded.enrollment
    assert stack.platform.workflows is not None
    workflows = stack.platform.workflows
    await sign_in(visitor, stack, stack.seeded.admin)
    async with visitor.page.expect_navigation():
        await visitor.page.get_by_role("link", name="Work queue").click()
    selector = f'form.decide[data-enrollment="{enrollment.id}"]'
    form = visitor.page.locator(selector)
    assert await form.count() == 1
    assert await visitor.page.locator("form.resolve").count() >= 1  # the flagged text too
    await visitor.audit("queue")

    # a forged form (no session's token) and one posted from another site are refused
    action = stack.base_url + (await form.get_attribute("action") or "")
    fields = {
        "step": "0",
        "action": "approve",
        "request_id": await form.locator('input[name="request_id"]').get_attribute("value") or "",
    }
    csrf = await form.locator('input[name="csrf"]').get_attribute("value") or ""
    forged = await visitor.context.request.post(
        action, form={**fields, "csrf": "forged"}, max_redirects=0
    )
    assert forged.status == 403
    elsewhere = await visitor.context.request.post(
        action,
        form={**fields, "csrf": csrf},
        headers={"Origin": "https://evil.example"},
        max_redirects=0,
    )
    assert elsewhere.status == 403
    assert (await workflows.state(enrollment.workflow_id)).pending_approval_step == 0

    decided = await visitor.press(
        "Approve", within=f'form.decide[data-enrollment="{enrollment.id}"]'
    )
    assert decided.status == 200 and visitor.path().startswith("/dashboard/queue")
    assert await form.count() == 0
    notice = visitor.page.get_by_role("status").filter(has_text="pprove")
    assert await notice.count() >= 1, await visitor.page.locator("main").inner_text()
    await visitor.audit()

    async def decided_in_the_workflow() -> bool:
        state = await workflows.state(enrollment.workflow_id)
        return state.pending_approval_step == -1 and state.step_index >= 0

    await eventually(decided_in_the_workflow, what="the workflow took the decision")
    history = (await workflows.state(enrollment.workflow_id)).history
    assert any("step 0 approve" in line for line in history), history


async def test_a_location_manager_resolves_the_flagged_text(
    stack: DashboardStack, visitor: Visitor
) -> None:
    inbound_id = stack.seeded.flagged_inbound_id
    await sign_in(visitor, stack, stack.seeded.manager)
    assert visitor.path() == "/dashboard/locations/downtown"  # a location role's home
    await visitor.audit()
    await visitor.goto("/dashboard/queue")
    form = f'form.resolve[data-flagged="{inbound_id}"]'
    assert await visitor.page.locator(form).count() == 1
    await visitor.page.locator(form).get_by_label("Note (optional)").fill("asked at the counter")
    resolved = await visitor.press("Not an opt-out", within=form)
    assert resolved.status == 200 and visitor.path().startswith("/dashboard/queue")
    assert await visitor.page.locator(form).count() == 0  # off the unresolved list
    await visitor.audit()

    [(resolution, resolved_by, note)] = await stack.rows(
        "SELECT resolution, resolved_by, review_note FROM inbound_messages WHERE id = %s",
        inbound_id,
    )
    assert resolution == "not_opt_out" and note == "asked at the counter"
    assert stack.seeded.manager.name in resolved_by


# ---------------------------------------------------------------------------------------------
# Refusals
# ---------------------------------------------------------------------------------------------


async def test_a_location_manager_is_refused_the_brand_and_other_locations(
    stack: DashboardStack, visitor: Visitor
) -> None:
    await sign_in(visitor, stack, stack.seeded.manager)
    for path in (
        "/dashboard/brand",
        "/dashboard/brand/locations",
        "/dashboard/locations/uptown",
        f"/dashboard/brand/sequences/{stack.seeded.sequence.id}",
        f"/dashboard/locations/uptown/sequences/{stack.seeded.sequence.id}",
    ):
        answer = await visitor.goto(path)
        assert answer.status == 403, path
        assert await visitor.page.locator(".kpi, #leaderboard, #funnel").count() == 0, path
        await visitor.audit("refused" if path == "/dashboard/brand" else None, refused=403)
    own = await visitor.goto("/dashboard/locations/downtown")
    assert own.status == 200
    await visitor.audit()


async def test_an_expired_a_used_or_an_unknown_link_signs_nobody_in(
    stack: DashboardStack, visitor: Visitor, browser: Browser
) -> None:
    expired = await stack.sign_in_link(
        stack.seeded.admin, now=datetime.now(UTC) - timedelta(minutes=11)
    )
    answer = await visitor.goto(expired)
    assert answer.status == 403
    assert await visitor.page.get_by_role("button", name="Sign in").count() == 0
    token = expired.rsplit("/", 1)[-1]
    replayed = await visitor.context.request.post(
        stack.base_url + "/dashboard/sign-in", form={"token": token}, max_redirects=0
    )
    assert replayed.status == 403
    assert await visitor.session_cookie() is None
    await visitor.audit("link-refused", refused=403)

    unknown = await visitor.goto("/dashboard/sign-in/" + "A" * 43)
    assert unknown.status == 403
    await visitor.audit(refused=403)

    link = await stack.sign_in_link(stack.seeded.admin)
    first = await Visitor.open(browser, stack.base_url)
    try:
        await sign_in(first, stack, stack.seeded.admin)  # another link: this one stays fresh
        await first.goto(link)
        await first.press("Sign in")
    finally:
        await first.close()
    again = await visitor.goto(link)
    assert again.status == 403
    used = await visitor.context.request.post(
        stack.base_url + "/dashboard/sign-in",
        form={"token": link.rsplit("/", 1)[-1]},
        max_redirects=0,
    )
    assert used.status == 403
    assert await visitor.session_cookie() is None
    await visitor.audit(refused=403)


async def test_signing_out_ends_the_session(stack: DashboardStack, visitor: Visitor) -> None:
    await sign_in(visitor, stack, stack.seeded.admin)
    cookie = await visitor.session_cookie()
    assert cookie is not None
    out = await visitor.press("Sign out")
    assert out.status == 200 and visitor.path() == "/dashboard/signed-out"
    assert await visitor.session_cookie() is None
    await visitor.audit("signed-out")

    await visitor.context.add_cookies(  # the old cookie, kept by someone
        [{"name": cookie["name"], "value": cookie["value"], "url": stack.base_url + "/dashboard"}]
    )
    answer = await visitor.goto("/dashboard/brand")
    assert answer.status == 401
    assert await visitor.page.locator(".kpi").count() == 0
    await visitor.audit(refused=401)


def test_without_chromium_the_browser_tests_skip_unless_ci_requires_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(support, "CHROMIUM", Path("/nonexistent/chromium"))
    monkeypatch.delenv(support.REQUIRE_BROWSER, raising=False)
    with pytest.raises(pytest.skip.Exception) as skipped:
        chromium_or_skip()
    assert "/nonexistent/chromium" in str(skipped.value)
    assert "apt-get install" in str(skipped.value)
    monkeypatch.setenv(support.REQUIRE_BROWSER, "1")
    with pytest.raises(pytest.fail.Exception) as failed:
        chromium_or_skip()
    assert "REENGAGE_REQUIRE_BROWSER=1" in str(failed.value)


def test_a_policy_with_inline_script_is_caught() -> None:
    """The audit's CSP reading: what the pages must not answer."""
    assert csp_problems(None) == ["no Content-Security-Policy"]
    assert csp_problems("default-src 'none'; style-src 'self'") == []
    assert csp_problems("default-src 'self' 'unsafe-inline'") == [
        "default-src allows 'unsafe-inline'"
    ]
    assert csp_problems("default-src 'none'; script-src 'unsafe-inline'") == [
        "script-src allows 'unsafe-inline'"
    ]
    assert csp_problems("style-src 'self'") == [
        "neither script-src nor default-src: scripts are not restricted"
    ]
