"""`reengage dashboard link|revoke --staff NAME`: the operator's path to the dashboard's sign-in
links and sessions (tenants.org.dashboard_sessions), straight to the database like
`reengage keys create`.

* `link` prints a sign-in link for the staff member (REENGAGE_PUBLIC_URL/dashboard/sign-in/…)
  on standard output, alone, and on standard error for whom it is and that it expires in 10
  minutes and works once;
* `revoke` ends every session of the staff member (and their unused links) and says how many.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from server.cli.discovery import DATABASE_URL_HELP, Discovery, database_url_for
from server.config import Settings
from tenants.core.errors import InvalidArgument
from tenants.core.names import ChildName, parse_child
from tenants.org import dashboard_sessions
from tenants.org.access import Principal, Role
from tenants.org.staff import COLLECTION

CLI = Principal("cli", "reengage-dashboard", Role.OPERATOR, None)
STAFF_HELP = "the staff member: franchisors/{f}[/locations/{l}]/staffMembers/{s}"


def staff_name(value: str) -> ChildName:
    """argparse's type for --staff: a staff member's full name."""
    try:
        return parse_child(value, COLLECTION, "--staff")
    except InvalidArgument as bad:
        raise argparse.ArgumentTypeError(bad.message.removeprefix("--staff: ")) from None


async def _mint(database_url: str, staff: ChildName) -> dashboard_sessions.SignInLink:
    import psycopg

    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        return await dashboard_sessions.mint_link(conn, CLI, staff)


async def _revoke(database_url: str, staff: ChildName) -> int:
    import psycopg

    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        return await dashboard_sessions.revoke_sessions(conn, CLI, staff)


def cmd_link(args: argparse.Namespace, settings: Settings) -> None:
    link = asyncio.run(_mint(database_url_for(args), args.staff))
    minutes = int(dashboard_sessions.LINK_TTL.total_seconds() // 60)
    print(link.url(Discovery(args).public_url(settings)))
    role = link.staff.role.value.replace("_", " ")
    print(
        f"for {link.staff.display_name} ({role}, {link.staff.name.name}): expires in"
        f" {minutes} minutes and works once; don't share it",
        file=sys.stderr,
    )


def cmd_revoke(args: argparse.Namespace, settings: Settings) -> None:
    ended = asyncio.run(_revoke(database_url_for(args), args.staff))
    sessions = "session" if ended == 1 else "sessions"
    print(f"ended {ended} {sessions} of {args.staff.name}; their unused sign-in links are void")


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Registers `reengage dashboard link` and `reengage dashboard revoke`."""
    dashboard = sub.add_parser(
        "dashboard",
        help="the web dashboard: sign-in links and sessions of staff members (the database)",
        description="Sign-in links for the web dashboard (docs/dashboard.md), straight to the"
        " database. The link's address starts with REENGAGE_PUBLIC_URL.",
    )
    commands = dashboard.add_subparsers(dest="dashboard_command", required=True)
    link = commands.add_parser(
        "link",
        help="print a sign-in link for a staff member (10 minutes, once)",
        description="Prints a sign-in link for the staff member: it works once, within 10"
        " minutes. Only its hash is stored; send it to that person alone.",
    )
    revoke = commands.add_parser(
        "revoke",
        help="end every dashboard session of a staff member",
        description="Signs the staff member out everywhere and voids their unused links.",
    )
    for command, func in ((link, cmd_link), (revoke, cmd_revoke)):
        command.add_argument(
            "--staff", required=True, type=staff_name, metavar="NAME", help=STAFF_HELP
        )
        command.add_argument("--database-url", help=DATABASE_URL_HELP)
        command.set_defaults(func=func)
