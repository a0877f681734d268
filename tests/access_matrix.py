"""The one harness of the authorization and input matrices.

A matrix is a `Table`: one row per (RPC, target), one column per caller (`LABELS`: every
principal of `tests.support.PRINCIPALS`, then three callers that must not authenticate), and
each cell the status codes it may answer. `check_cell` calls one cell over the real gRPC server
and checks it: the code; on a refusal the google.rpc details (ErrorInfo in our domain with the
reason of the code, field violations on INVALID_ARGUMENT); on success that the answer names
nothing of another franchisor nor, for a location principal, of a sibling location; and an
empty answer where a parent does not exist. `assert_no_existence_oracle` checks a table: a
caller outside a tenant is refused alike whether the target exists or not.

Speed without giving up soundness: a module seeds its tenant tree once (`Seeded`: a database
with the world's keys and the module's resources, used as a template), and

* cells that change nothing (reads, and every refusal) share one database, one gRPC server
  and one set of keys for the whole module (`shared_stack`);
* a cell that writes gets a database of its own, cloned from the seeded one in milliseconds
  (`Seeded.isolated()`), so no cell sees another's effects.

A module declares its fixtures with `seeded, shared_stack = matrix_fixtures(seed)`.
"""

from __future__ import annotations

import itertools
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import grpc
import psycopg
import pytest
from google.protobuf import text_format
from psycopg_pool import AsyncConnectionPool

from server.app import open_pool
from server.platform import build_platform
from tenants.core.names import TenantScope
from tests.support import PRINCIPALS, RpcFailure, World, build_world, failure, platform_settings

Pool = AsyncConnectionPool[Any]
Metadata = tuple[tuple[str, str], ...]

OK = grpc.StatusCode.OK
PD = grpc.StatusCode.PERMISSION_DENIED
NF = grpc.StatusCode.NOT_FOUND
UA = grpc.StatusCode.UNAUTHENTICATED
IA = grpc.StatusCode.INVALID_ARGUMENT
FP = grpc.StatusCode.FAILED_PRECONDITION
AB = grpc.StatusCode.ABORTED
AE = grpc.StatusCode.ALREADY_EXISTS
# Listing the children of a parent that does not exist, by someone who would be allowed to list
# it if it existed: the contract does not say whether that is an empty page or NOT_FOUND, so
# either is accepted (an OK answer must then be empty). Cross-tenant cells stay exact.
OK_EMPTY_OR_NF = (OK, NF)

DOMAIN = "reengage.dev"
REASONS = {PD: "PERMISSION_DENIED", NF: "RESOURCE_NOT_FOUND", AB: "ETAG_MISMATCH"}

# The columns of every table, in order.
LABELS = (
    "operator",
    "a_admin",
    "a_viewer",
    "a_downtown_manager",
    "a_downtown_staff",
    "b_admin",
    "b_harbor_manager",
    "none",
    "revoked",
    "malformed",
)
UNAUTHENTICATED_LABELS = ("none", "revoked", "malformed")

A_NOPE = TenantScope("acme", "nope")
B_NOPE = TenantScope("bravo", "nope")
NOPE = TenantScope("nope")

_counter = itertools.count(1000)


def fresh(prefix: str = "x") -> str:
    """An id no other call of the session uses (mutating cells name their own targets)."""
    return f"{prefix}-{next(_counter)}"


def fresh_phone() -> str:
    return f"+1212555{next(_counter) % 9000 + 1000:04d}"


def scope_of(label: str) -> TenantScope | None:
    """The scope of a principal label (None: the operator, or a caller without a key)."""
    return PRINCIPALS[label][1] if label in PRINCIPALS else None


# ---------------------------------------------------------------------------------------------
# A running platform: database, gRPC server, keys
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Stack:
    """One database behind one real gRPC server, and the world's keys."""

    pool: Pool
    channel: grpc.aio.Channel
    world: World


def _url(admin_url: str, database: str) -> str:
    return psycopg.conninfo.make_conninfo(admin_url, dbname=database)


def _clone(admin_url: str, template: str) -> str:
    name = f"reengage_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    return name


def _drop(admin_url: str, database: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


@asynccontextmanager
async def _serve(url: str, world: World | None) -> AsyncIterator[Stack]:
    """The real gRPC server (auth interceptor, services, without Temporal) on a free port, over
    database url, built by the composition root as conftest's `grpc_target` is."""
    pool = open_pool(url)
    await pool.open(wait=True)
    platform = build_platform(platform_settings(task_queue=f"matrix-{uuid.uuid4().hex[:8]}"), pool)
    try:
        async with (
            platform.serving_grpc() as target,
            grpc.aio.insecure_channel(target) as channel,
        ):
            yield Stack(pool, channel, world if world is not None else await build_world(pool))
    finally:
        await pool.close()


Seed = Callable[[Stack], Awaitable[None]]


@dataclass
class Seeded:
    """A database holding the world (tenants a and b, a key per principal) and a module's
    resources, kept as a template: every stack of the module is a clone of it."""

    admin_url: str
    template: str
    world: World
    _databases: list[str] = field(default_factory=list)

    @asynccontextmanager
    async def isolated(self) -> AsyncIterator[Stack]:
        """A fresh clone of the seeded database behind a server of its own."""
        database = _clone(self.admin_url, self.template)
        try:
            async with _serve(_url(self.admin_url, database), self.world) as stack:
                yield stack
        finally:
            _drop(self.admin_url, database)


async def seed_template(admin_url: str, migrated: str, seed: Seed | None) -> Seeded:
    """Builds the world and runs seed once, in a clone of the migrated template."""
    database = _clone(admin_url, migrated)
    async with _serve(_url(admin_url, database), None) as stack:
        if seed is not None:
            await seed(stack)
        world = stack.world
    return Seeded(admin_url, database, world)


def matrix_fixtures(seed: Seed | None = None) -> tuple[Any, Any]:
    """The module-scoped fixtures `seeded` and `shared_stack` of a matrix module."""

    @pytest.fixture(scope="module")
    async def seeded(postgres_admin_url: str, template_database: str) -> AsyncIterator[Seeded]:
        made = await seed_template(postgres_admin_url, template_database, seed)
        yield made
        _drop(postgres_admin_url, made.template)

    @pytest.fixture(scope="module")
    async def shared_stack(seeded: Seeded) -> AsyncIterator[Stack]:
        async with seeded.isolated() as stack:
            yield stack

    return seeded, shared_stack


# ---------------------------------------------------------------------------------------------
# Tables
# ---------------------------------------------------------------------------------------------

Build = Callable[[Pool], Awaitable[Any]]
Call = Callable[[grpc.aio.Channel, str, Any, Metadata], Awaitable[Any]]


@dataclass(frozen=True)
class Case:
    """One RPC against one target; `build` makes the request (and any target it needs)."""

    rpc: str
    target: str
    # The franchisor the target belongs to (None: a new one); an operator's answer must hold no
    # other tenant's data.
    franchisor: str | None
    build: Build

    @property
    def id(self) -> str:
        return f"{self.rpc}[{self.target}]"


def simple(make: Callable[[], Any]) -> Build:
    """A build that needs nothing from the database."""

    async def build(pool: Pool) -> Any:
        return make()

    return build


def _no_names(response: Any) -> list[str]:
    return []


def _as_is(response: Any) -> Any:
    return response


@dataclass(frozen=True)
class Table:
    """The expected answers of one service (or two) to every caller."""

    services: tuple[str, ...]  # full names of the services the table covers, RPC for RPC
    cases: dict[str, Case]
    expected: dict[str, tuple[Any, ...]]
    call: Call
    # RPCs that change nothing: their cells share the module's stack
    reads: frozenset[str]
    # the resource names an answer lists (empty where a parent does not exist)
    listed: Callable[[Any], list[str]] = _no_names
    # the answer as checked for other tenants' data (a one-time secret removed, say)
    public: Callable[[Any], Any] = _as_is
    # what an OK answer must hold beyond visibility
    check_success: Callable[[Case, str, Any], None] | None = None

    def codes(self, case_id: str, label: str) -> tuple[grpc.StatusCode, ...]:
        cell = self.expected[case_id][LABELS.index(label)]
        return cell if isinstance(cell, tuple) else (cell,)

    def writes(self, case_id: str, label: str | None = None) -> bool:
        """Whether the cell (or, without label, any cell of the row) may change data."""
        if self.cases[case_id].rpc in self.reads:
            return False
        labels = LABELS if label is None else (label,)
        return any(OK in self.codes(case_id, who) for who in labels)

    def cells(self, *, writes: bool) -> list[Any]:
        """pytest params (case_id, label) of the cells that do (not) write."""
        return [
            pytest.param(case_id, label, id=f"{case_id}-{label}")
            for case_id in self.expected
            for label in LABELS
            if self.writes(case_id, label) == writes
        ]

    def rows(self, *, writes: bool) -> list[Any]:
        """pytest params case_id of the rows that do (not) write."""
        return [
            pytest.param(case_id, id=case_id)
            for case_id in self.expected
            if self.writes(case_id) == writes
        ]

    def check_shape(self, methods: Iterable[str]) -> None:
        """Every RPC has rows, every row every column, and no key means UNAUTHENTICATED."""
        assert set(self.expected) == set(self.cases)
        assert all(len(row) == len(LABELS) for row in self.expected.values())
        assert {case.rpc for case in self.cases.values()} == set(methods)
        assert set(LABELS) == set(PRINCIPALS) | set(UNAUTHENTICATED_LABELS)
        for row in self.expected.values():
            assert all(row[LABELS.index(who)] == UA for who in UNAUTHENTICATED_LABELS)
            assert row[LABELS.index("operator")] != PD


def assert_no_existence_oracle(
    table: Table, pairs: Iterable[tuple[str, str]], outsiders: Iterable[str] | None = None
) -> None:
    """For each (existing target, missing target) pair of rows, every outsider (by default:
    each principal of another franchisor) gets the same refusal either way: PERMISSION_DENIED,
    never a NOT_FOUND that would tell the target exists."""
    for existing, missing in pairs:
        home = table.cases[existing].franchisor
        assert table.cases[missing].franchisor == home, (existing, missing)
        labels = (
            list(outsiders)
            if outsiders is not None
            else [
                label
                for label, (_role, scope) in PRINCIPALS.items()
                if scope is not None and scope.franchisor_id != home
            ]
        )
        assert labels, f"{existing}: no outsider to check"
        for label in labels:
            codes = (table.codes(existing, label), table.codes(missing, label))
            assert codes == ((PD,), (PD,)), f"{existing} / {missing} as {label}: {codes}"


# ---------------------------------------------------------------------------------------------
# Checking one cell
# ---------------------------------------------------------------------------------------------

_RESOURCE = re.compile(r"franchisors/([a-z0-9-]+)(?:/locations/([a-z0-9-]+))?")


def assert_only_own_data(text: str, scope: TenantScope | None, where: str, home: str) -> None:
    """A successful answer holds nothing of another franchisor (not even its name), nor, for a
    location principal, of a sibling location: every resource it names lies in the caller's
    reach (its franchisor's own resources and, for a location principal, its own location)."""
    for other in {"acme", "bravo"} - {home}:
        assert other not in text.lower(), f"{where}: answer mentions {other!r}:\n{text}"
    for franchisor_id, location_id in _RESOURCE.findall(text):
        assert franchisor_id == home, f"{where}: names franchisors/{franchisor_id}:\n{text}"
        if scope is not None and scope.is_location and location_id:
            assert location_id == scope.location_id, (
                f"{where}: a {scope.name} principal sees location {location_id}:\n{text}"
            )


def assert_error_details(got: RpcFailure) -> None:
    """A refusal carries an ErrorInfo of our domain with the reason of its code, a message,
    and field violations when the input was invalid."""
    assert got.error_info is not None, f"{got.code} without an ErrorInfo detail: {got.message}"
    assert got.error_info.domain == DOMAIN
    assert got.error_info.reason, "ErrorInfo.reason is empty"
    if got.code in REASONS:
        assert got.error_info.reason == REASONS[got.code], got.error_info.reason
    if got.code == UA:
        assert got.error_info.reason.startswith("API_KEY_"), got.error_info.reason
    if got.code == IA:
        assert got.violations, f"INVALID_ARGUMENT without field violations: {got.message}"
    assert got.message, "an error without a message"


def answer_text(response: Any) -> str:
    answers = response if isinstance(response, list) else [response]  # a stream: every record
    return "".join(text_format.MessageToString(answer) for answer in answers)


async def check_cell(
    table: Table,
    stack: Stack,
    case_id: str,
    label: str,
    *,
    metadata: Metadata | None = None,
    scope: TenantScope | None = None,
    who: str | None = None,
) -> None:
    """Calls one cell (as label, or with another key that must answer like label) and checks
    the answer; raises AssertionError naming the cell on any mismatch."""
    case = table.cases[case_id]
    expected = table.codes(case_id, label)
    if metadata is None:
        metadata, scope = stack.world.metadata(label), scope_of(label)
    where = f"{case.id} as {who or label}"
    request = await case.build(stack.pool)
    try:
        response = await table.call(stack.channel, case.rpc, request, metadata)
    except grpc.aio.AioRpcError as error:
        got = failure(error)
        assert got.code in expected, (
            f"{where}: expected {[c.name for c in expected]}, got {got.code.name}: {got.message}"
        )
        assert_error_details(got)
        return
    assert OK in expected, f"{where}: expected {[c.name for c in expected]}, got OK"
    home = scope.franchisor_id if scope is not None else case.franchisor
    if home is not None:
        assert_only_own_data(answer_text(table.public(response)), scope, where, home)
    if expected != (OK,):  # a list under a parent that does not exist: nothing in it
        listed = table.listed(response)
        assert not listed, f"{where}: expected an empty answer or NOT_FOUND, got {listed}"
        return
    if table.check_success is not None:
        table.check_success(case, label, response)


async def check_row(table: Table, stack: Stack, case_id: str) -> None:
    """Every caller in turn against one row, every mismatch reported together."""
    mismatches: list[str] = []
    for label in LABELS:
        try:
            await check_cell(table, stack, case_id, label)
        except AssertionError as mismatch:
            mismatches.append(str(mismatch).splitlines()[0])
    assert not mismatches, "\n".join(mismatches)


@asynccontextmanager
async def stack_for(
    table: Table, case_id: str, label: str | None, seeded: Seeded, shared: Stack
) -> AsyncIterator[Stack]:
    """The module's shared stack for a cell (or row) that changes nothing, else a clone."""
    if table.writes(case_id, label):
        async with seeded.isolated() as stack:
            yield stack
    else:
        yield shared


async def refused(
    pending: Awaitable[Any],
    code: grpc.StatusCode,
    *,
    reason: str | None = None,
    field: str | None = None,
    fields: tuple[str, ...] = (),
) -> RpcFailure:
    """Awaits a call that must fail with code (and ErrorInfo reason / violations on field and
    on each of fields)."""
    try:
        response = await pending
    except grpc.aio.AioRpcError as error:
        got = failure(error)
        assert got.code == code, f"expected {code.name}, got {got.code.name}: {got.message}"
        assert_error_details(got)
        if reason is not None:
            assert got.error_info is not None and got.error_info.reason == reason, got
        missing = [
            f for f in (*fields, *([field] if field is not None else [])) if f not in got.violations
        ]
        assert not missing, f"no violation on {missing}; violations: {got.violations}"
        return got
    pytest.fail(f"expected {code.name}, got OK: {response}")
