"""The dashboard's routes on the HTTP edge (docs/dashboard.md): sign-in by a one-time link, the
session cookie, CSRF and origin checks on every state change, the security headers, and the
mapping of domain errors to pages (403 for what the access module refuses, 404, 400, 503).

The pages are server-rendered (Jinja2, autoescaped) with inline SVG charts and no script at all,
so the Content-Security-Policy forbids every script and every inline style. The franchisor is
never in a URL: it is the signed-in staff member's own."""

from __future__ import annotations

import hmac
import logging
import re
from collections.abc import Awaitable, Callable
from importlib.resources import files
from typing import Any
from urllib.parse import urlencode, urlsplit

import psycopg
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from psycopg_pool import AsyncConnectionPool, PoolTimeout
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Match, Route

from server.http.dashboard import pages
from server.http.dashboard.queue import NOTICES, WorkQueues
from server.http.edge import DATABASE_WAIT, RequestRefused, read_form
from tenants.core.errors import (
    DomainError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
)
from tenants.core.names import TenantScope, id_problem
from tenants.core.unexpected_errors import log_unexpected
from tenants.org import dashboard_sessions as sessions
from tenants.org.access import Action, Principal, Role, authorize
from tenants.org.dashboard_sessions import SignedIn
from tenants.org.locations import get_location
from workflows.client import EnrollmentClient
from workflows.relay import FollowupRelay

log = logging.getLogger(__name__)
PREFIX = "/dashboard"
COOKIE = "reengage_session"
FORM_LIMIT = 16 * 1024
CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self';"
    " frame-ancestors 'none'; base-uri 'none'"
)
ROLE_WORDS = {
    Role.FRANCHISOR_ADMIN: "brand admin",
    Role.FRANCHISOR_VIEWER: "brand viewer",
    Role.LOCATION_MANAGER: "location manager",
    Role.LOCATION_STAFF: "location staff",
    Role.OPERATOR: "operator",
}
_ENROLLMENT_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_NUMBER = re.compile(r"[0-9]{1,6}")
ANY_METHOD = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
Page = Callable[[Request, SignedIn], Awaitable[Response]]
Act = Callable[[Request, SignedIn, dict[str, str]], Awaitable[str]]


class NotSignedIn(Exception):
    """No session cookie, or one that no longer signs anybody in."""


def _secure_headers(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers.setdefault("Cache-Control", "no-store")
    return response


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


class Dashboard:
    def __init__(
        self,
        pool: AsyncConnectionPool[Any],
        workflows: EnrollmentClient | None,
        relay: FollowupRelay | None,
        public_url: str,
    ) -> None:
        self._pool = pool
        self._public_url = public_url.rstrip("/")
        self._secure = public_url.lower().startswith("https://")
        self._queues = WorkQueues(pool, workflows, relay)
        self._routes: list[Route] = []  # the dashboard's own routes, once routes() built them
        self._env = Environment(
            loader=PackageLoader("server.http.dashboard", "templates"),
            autoescape=select_autoescape(["html"], default=True),
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self._css = (files("server.http.dashboard") / "static" / "dashboard.css").read_bytes()

    def routes(self) -> list[Route]:
        p = PREFIX
        self._routes = [
            Route(p, self._page(self.home), methods=["GET"]),
            Route(f"{p}/", self._page(self.home), methods=["GET"]),
            Route(f"{p}/static/dashboard.css", self.stylesheet, methods=["GET", "HEAD"]),
            Route(f"{p}/sign-in/{{token}}", self.sign_in_page, methods=["GET"]),
            Route(f"{p}/sign-in", self.sign_in, methods=["POST"]),
            Route(f"{p}/sign-out", self._action(self.sign_out), methods=["POST"]),
            Route(f"{p}/signed-out", self.signed_out, methods=["GET"]),
            Route(f"{p}/brand", self._page(self.brand), methods=["GET"]),
            Route(f"{p}/brand/locations", self._page(self.leaderboard), methods=["GET"]),
            Route(f"{p}/brand/export.csv", self._page(self.brand_export), methods=["GET"]),
            Route(
                f"{p}/locations/{{location_id}}/export.csv",
                self._page(self.location_export),
                methods=["GET"],
            ),
            Route(
                f"{p}/brand/sequences/{{sequence_id}}",
                self._page(self.brand_sequence),
                methods=["GET"],
            ),
            Route(f"{p}/locations/{{location_id}}", self._page(self.location), methods=["GET"]),
            Route(
                f"{p}/locations/{{location_id}}/sequences/{{sequence_id}}",
                self._page(self.location_sequence),
                methods=["GET"],
            ),
            Route(f"{p}/queue", self._page(self.queue), methods=["GET"]),
            Route(
                f"{p}/approvals/{{location_id}}/{{enrollment_id}}",
                self._action(self.decide),
                methods=["POST"],
            ),
            Route(
                f"{p}/flagged/{{location_id}}/{{inbound_id}}",
                self._action(self.resolve),
                methods=["POST"],
            ),
        ]
        # anything else under the prefix (another path, or a method a route does not take)
        # gets the dashboard's own 404 or 405 page, with its headers
        return [*self._routes, Route(f"{p}/{{rest:path}}", self.not_found, methods=ANY_METHOD)]

    # -----------------------------------------------------------------------------------------
    # Rendering and the answers every route shares
    # -----------------------------------------------------------------------------------------

    def _render(
        self, template: str, status: int = 200, who: SignedIn | None = None, **context: Any
    ) -> Response:
        context.setdefault("path", "")
        context.setdefault("notice", "")
        body = self._env.get_template(template).render(
            who=who,
            role_words=ROLE_WORDS,
            is_brand=who is not None and who.staff.role.is_franchisor_role,
            home_location=(who.staff.name.scope.location_id if who is not None else None),
            **context,
        )
        return _secure_headers(HTMLResponse(body, status_code=status))

    def _problem(self, status: int, title: str, message: str, who: SignedIn | None) -> Response:
        return self._render(
            "problem.html", status, who, title=title, message=message, violations=[]
        )

    def _answer_error(self, error: Exception, who: SignedIn | None) -> Response:
        if isinstance(error, NotSignedIn):
            return self._problem(
                401,
                "Please sign in",
                "You are not signed in, or your session has ended. Ask for a sign-in link with"
                " /reengage dashboard in Slack.",
                None,
            )
        if isinstance(error, PermissionDenied):
            return self._problem(
                403, "Not yours to see", "Your role does not give you this page.", who
            )
        if isinstance(error, NotFound):
            return self._problem(404, "Not found", "There is nothing here.", who)
        if isinstance(error, InvalidArgument):
            response = self._render(
                "problem.html",
                400,
                who,
                title="That request is not valid",
                message="Nothing was changed.",
                violations=[(v.field, v.description) for v in error.violations],
            )
            return response
        if isinstance(error, FailedPrecondition | DomainError):
            return self._problem(409, "Nothing was changed", error.message, who)
        if isinstance(error, RequestRefused):
            return self._problem(error.status, "That request was refused", error.message, who)
        if isinstance(error, PoolTimeout | psycopg.OperationalError):
            log.warning("dashboard: the database is not answering (%s)", type(error).__name__)
            return self._problem(
                503, "Try again in a minute", "The database is not answering right now.", who
            )
        log_unexpected(log, error, "dashboard page failed")
        return self._problem(500, "Something went wrong", "It has been logged.", who)

    async def _who(self, request: Request) -> SignedIn:
        token = request.cookies.get(COOKIE, "")
        if not token:
            raise NotSignedIn
        async with self._pool.connection(timeout=DATABASE_WAIT) as conn:
            found = await sessions.signed_in(conn, token)
        if found is None:
            raise NotSignedIn
        return found

    def _failed(self, error: Exception, who: SignedIn | None) -> Response:
        """The answer to a route that failed; a session that no longer signs anybody in has
        its cookie forgotten too."""
        response = self._answer_error(error, who)
        if isinstance(error, NotSignedIn):
            self._forget(response)
        return response

    def _page(self, handler: Page) -> Callable[[Request], Awaitable[Response]]:
        async def route(request: Request) -> Response:
            who: SignedIn | None = None
            try:
                who = await self._who(request)
                return _secure_headers(await handler(request, who))
            except Exception as error:
                return self._failed(error, who)

        return route

    def _action(self, act: Act) -> Callable[[Request], Awaitable[Response]]:
        """A state change: signed in, same origin, the session's CSRF token in the form; then
        303 to the URL `act` answers."""

        async def route(request: Request) -> Response:
            who: SignedIn | None = None
            try:
                who = await self._who(request)
                self._check_origin(request)
                form = await read_form(request, FORM_LIMIT)
                sent = form.get("csrf", "")
                if not sent or not hmac.compare_digest(sent.encode(), who.csrf_token.encode()):
                    raise RequestRefused(403, "the form is out of date: reload the page")
                return self._see_other(await act(request, who, form))
            except Exception as error:
                return self._failed(error, who)

        return route

    def _check_origin(self, request: Request) -> None:
        """A browser names the page a form came from (Origin, else Referer; the pages'
        Referrer-Policy is same-origin, so both are sent to us): it must be this dashboard (its
        public URL, or the address it was reached at). A client that sends neither is no
        browser a forged form could drive; the CSRF token still holds it."""
        sent = request.headers.get("origin") or request.headers.get("referer")
        if sent is None:
            return
        allowed = {_origin(self._public_url), _origin(str(request.base_url))}
        if sent == "null" or _origin(sent) not in allowed:
            raise RequestRefused(403, "the form did not come from this dashboard")

    def _see_other(self, url: str) -> Response:
        return _secure_headers(RedirectResponse(url, status_code=303))

    def _forget(self, response: Response) -> None:
        response.delete_cookie(COOKIE, path=PREFIX, secure=self._secure, httponly=True)

    async def not_found(self, request: Request) -> Response:
        allowed = sorted(
            {
                method
                for route in self._routes
                if route.matches(request.scope)[0] is Match.PARTIAL
                for method in route.methods or ()
            }
        )
        if allowed:
            response = self._problem(
                405, "Not allowed", f"This address takes {', '.join(allowed)} only.", None
            )
            response.headers["Allow"] = ", ".join(allowed)
            return response
        return self._problem(404, "Not found", "There is nothing here.", None)

    async def stylesheet(self, request: Request) -> Response:
        response = Response(self._css, media_type="text/css")
        response.headers["Cache-Control"] = "public, max-age=3600"
        return _secure_headers(response)

    # -----------------------------------------------------------------------------------------
    # Signing in and out
    # -----------------------------------------------------------------------------------------

    def _link_refused(self) -> Response:
        return self._problem(
            403,
            "This sign-in link cannot be used",
            "It has expired or was already used (a link works once, for 10 minutes). Ask for a"
            " new one with /reengage dashboard in Slack.",
            None,
        )

    async def sign_in_page(self, request: Request) -> Response:
        """Shows the Sign in button; consumes nothing (link previews fetch links)."""
        token = request.path_params["token"]
        try:
            async with self._pool.connection(timeout=DATABASE_WAIT) as conn:
                staff = await sessions.check_link(conn, token)
        except Exception as error:
            return self._answer_error(error, None)
        if staff is None:
            return self._link_refused()
        return self._render("sign_in.html", 200, None, token=token, staff=staff)

    async def sign_in(self, request: Request) -> Response:
        try:
            # a page elsewhere must not sign a browser in as someone else (login CSRF)
            self._check_origin(request)
            form = await read_form(request, FORM_LIMIT)
            async with self._pool.connection(timeout=DATABASE_WAIT) as conn:
                redeemed = await sessions.redeem_link(conn, form.get("token", ""))
        except Exception as error:
            return self._answer_error(error, None)
        if redeemed is None:
            return self._link_refused()
        token, _ = redeemed
        response = self._see_other(PREFIX)
        response.set_cookie(
            COOKIE,
            token,
            max_age=int(sessions.SESSION_TTL.total_seconds()),
            path=PREFIX,
            secure=self._secure,
            httponly=True,
            samesite="lax",
        )
        return response

    async def sign_out(self, request: Request, who: SignedIn, form: dict[str, str]) -> str:
        """Ends this session (the cookie is forgotten by the signed-out page's answer too)."""
        async with self._pool.connection(timeout=DATABASE_WAIT) as conn:
            await sessions.sign_out(conn, request.cookies.get(COOKIE, ""))
        return f"{PREFIX}/signed-out"

    async def signed_out(self, request: Request) -> Response:
        response = self._render("signed_out.html", 200, None)
        self._forget(response)
        return response

    # -----------------------------------------------------------------------------------------
    # The pages
    # -----------------------------------------------------------------------------------------

    @staticmethod
    def _brand_of(who: SignedIn) -> TenantScope:
        return TenantScope(who.staff.name.scope.franchisor_id)

    @staticmethod
    def _location_of(who: SignedIn, location_id: str) -> TenantScope:
        if id_problem(location_id):
            raise NotFound("no such location")
        return TenantScope(who.staff.name.scope.franchisor_id, location_id)

    @staticmethod
    def _period(request: Request) -> pages.Period:
        return pages.period_param(request.query_params)

    async def home(self, request: Request, who: SignedIn) -> Response:
        if who.staff.role.is_franchisor_role:
            return self._see_other(f"{PREFIX}/brand")
        return self._see_other(f"{PREFIX}/locations/{who.staff.name.scope.location_id}")

    def _common(self, request: Request, who: SignedIn, period: pages.Period) -> dict[str, Any]:
        notice = request.query_params.get("notice", "")
        return {
            "days": period.days,
            "page_period": period,
            "ranges": pages.RANGES,
            "path": request.url.path,
            "notice": NOTICES.get(notice, ""),
            "csrf": who.csrf_token,
        }

    async def brand(self, request: Request, who: SignedIn) -> Response:
        principal = who.staff.as_principal()
        authorize(principal, Action.REPORT_READ, self._brand_of(who))
        period = self._period(request)
        async with self._pool.connection(timeout=DATABASE_WAIT) as conn:
            page = await pages.brand_page(conn, principal, self._brand_of(who), period)
        return self._render("brand.html", 200, who, **page, **self._common(request, who, period))

    async def leaderboard(self, request: Request, who: SignedIn) -> Response:
        authorize(who.staff.as_principal(), Action.REPORT_READ, self._brand_of(who))
        period = self._period(request)
        q = request.query_params
        page_text = q.get("page", "1")
        page = int(page_text) if _NUMBER.fullmatch(page_text) else 1
        async with self._pool.connection(timeout=DATABASE_WAIT) as conn:
            found = await pages.leaderboard_page(
                conn,
                who.staff.as_principal(),
                self._brand_of(who),
                period,
                q.get("sort", ""),
                q.get("dir", ""),
                q.get("q", "").strip(),
                page,
            )
        board: pages.Leaderboard = found["board"]

        def link(**changes: Any) -> str:
            params = {
                **period.params(),
                "sort": board.sort,
                "dir": "desc" if board.descending else "asc",
                "q": board.search,
                "page": board.page,
                **changes,
            }
            return f"{PREFIX}/brand/locations?" + urlencode({k: v for k, v in params.items() if v})

        return self._render(
            "leaderboard.html", 200, who, **found, link=link, **self._common(request, who, period)
        )

    async def location(self, request: Request, who: SignedIn) -> Response:
        location = self._location_of(who, request.path_params["location_id"])
        principal = who.staff.as_principal()
        authorize(principal, Action.REPORT_READ, location)
        period = self._period(request)
        async with self._pool.connection(timeout=DATABASE_WAIT) as conn:
            page = await pages.location_page(conn, principal, location, period)
        return self._render("location.html", 200, who, **page, **self._common(request, who, period))

    async def _export(self, request: Request, who: SignedIn, parent: TenantScope) -> Response:
        principal = who.staff.as_principal()
        authorize(principal, Action.REPORT_READ, parent)
        period = self._period(request)
        async with self._pool.connection(timeout=DATABASE_WAIT) as conn:
            found = await pages.export_csv(
                conn, principal, parent, period, request.query_params.get("by", "")
            )
        return Response(
            found.body,
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{found.filename}"'},
        )

    async def brand_export(self, request: Request, who: SignedIn) -> Response:
        return await self._export(request, who, self._brand_of(who))

    async def location_export(self, request: Request, who: SignedIn) -> Response:
        location = self._location_of(who, request.path_params["location_id"])
        return await self._export(request, who, location)

    async def _sequence(
        self, request: Request, who: SignedIn, location: TenantScope | None
    ) -> Response:
        sequence_id = request.path_params["sequence_id"]
        if id_problem(sequence_id):
            raise NotFound("no such sequence")
        own = request.query_params.get("scope") == "location" and location is not None
        name = pages.sequence_name(
            who.staff.name.scope.franchisor_id,
            location.location_id if own and location is not None else None,
            sequence_id,
        )
        principal = who.staff.as_principal()
        authorize(principal, Action.REPORT_READ, location or name.scope)
        period = self._period(request)
        async with self._pool.connection(timeout=DATABASE_WAIT) as conn:
            page = await pages.sequence_page(conn, principal, name, location, period)
        return self._render(
            "sequence.html",
            200,
            who,
            **page,
            range_extra="&scope=location" if own else "",
            range_keep=[("scope", "location")] if own else [],
            **self._common(request, who, period),
        )

    async def brand_sequence(self, request: Request, who: SignedIn) -> Response:
        return await self._sequence(request, who, None)

    async def location_sequence(self, request: Request, who: SignedIn) -> Response:
        location = self._location_of(who, request.path_params["location_id"])
        return await self._sequence(request, who, location)

    async def queue(self, request: Request, who: SignedIn) -> Response:
        principal: Principal = who.staff.as_principal()
        narrowed = request.query_params.get("location", "")
        if who.staff.role.is_location_role:
            scope = who.staff.name.scope
        elif narrowed:
            scope = self._location_of(who, narrowed)
            async with self._pool.connection(timeout=DATABASE_WAIT) as conn:
                await get_location(conn, principal, scope)  # 404 for a location not there
        else:
            scope = self._brand_of(who)
        page = await self._queues.page(principal, scope)
        return self._render(
            "queue.html",
            200,
            who,
            **page,
            scope_location=scope.location_id or "",
            **self._common(request, who, pages.Period(pages.DEFAULT_DAYS)),
        )

    # -----------------------------------------------------------------------------------------
    # The actions
    # -----------------------------------------------------------------------------------------

    def _back_to_queue(self, request: Request, who: SignedIn, notice: str) -> str:
        params = {"notice": notice}
        narrowed = request.query_params.get("location", "")
        if narrowed and not id_problem(narrowed) and who.staff.role.is_franchisor_role:
            params["location"] = narrowed
        return f"{PREFIX}/queue?{urlencode(params)}"

    async def decide(self, request: Request, who: SignedIn, form: dict[str, str]) -> str:
        location = self._location_of(who, request.path_params["location_id"])
        enrollment_id = request.path_params["enrollment_id"]
        if not _ENROLLMENT_ID.fullmatch(enrollment_id):
            raise NotFound("no such enrollment")
        notice = await self._queues.decide(
            who.staff.as_principal(), location, enrollment_id, form, who.session_id
        )
        return self._back_to_queue(request, who, notice)

    async def resolve(self, request: Request, who: SignedIn, form: dict[str, str]) -> str:
        location = self._location_of(who, request.path_params["location_id"])
        notice = await self._queues.resolve(
            who.staff.as_principal(), location, request.path_params["inbound_id"], form
        )
        return self._back_to_queue(request, who, notice)
