"""The `reengage` command line."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys

from server.cli import contact_lookup, enroll
from server.cli import dashboard as dashboard_cli
from server.cli import enrollments as enrollments_cli
from server.cli import report as report_cli
from server.cli import sequences as sequences_cli
from server.cli import templates as templates_cli
from server.cli import webhooks as webhooks_cli
from server.cli.api import positive_int
from server.cli.discovery import DATABASE_URL_HELP, add_api_flags
from server.cli.discovery import ORDER as DISCOVERY_ORDER
from server.config import Settings
from server.logs import configure_logging

log = logging.getLogger("reengage")
# Roles that serve clients keep Python's SIGPIPE disposition (ignored): a client that closes its
# socket early costs its own request an EPIPE, never the whole process and every role in it.
LONG_RUNNING_ROLES = frozenset({"up", "serve", "worker"})


def database_url_for_cli(args: argparse.Namespace) -> str:
    """The database by the CLI's discovery order: --database-url, REENGAGE_DATABASE_URL, the
    config file, the running `reengage up` (server.cli.discovery)."""
    from server.cli.discovery import database_url_for

    return database_url_for(args)


def cmd_up(args: argparse.Namespace, settings: Settings) -> None:
    from server.supervisor import run_up

    asyncio.run(run_up(settings, embedded=True))


def cmd_serve(args: argparse.Namespace, settings: Settings) -> None:
    from server.supervisor import run_up

    if not settings.database_url or not settings.temporal_address:
        raise SystemExit(
            "reengage serve: set REENGAGE_DATABASE_URL and REENGAGE_TEMPORAL_ADDRESS "
            "(`reengage up` runs embedded services for development)"
        )
    asyncio.run(run_up(settings, embedded=False))


def cmd_worker(args: argparse.Namespace, settings: Settings) -> None:
    from server.app import run_worker

    asyncio.run(run_worker(settings))


def cmd_outbox(args: argparse.Namespace, settings: Settings) -> None:
    from server.cli.outbox import show_outbox

    show_outbox(database_url_for_cli(args), args.limit, args.location)


def cmd_migrate(args: argparse.Namespace, settings: Settings) -> None:
    from tenants.migrations import migrate

    applied = migrate(database_url_for_cli(args))
    for m in applied:
        print(f"applied {m.version:04d}_{m.name}")
    if not applied:
        print("database is up to date")


def cmd_keys_create(args: argparse.Namespace, settings: Settings) -> None:
    from server.cli.keys import create_key_cli

    token, name = asyncio.run(
        create_key_cli(
            database_url_for_cli(args),
            operator=args.operator,
            parent=args.parent,
            role=args.role,
            display_name=args.display_name,
        )
    )
    print(f"created {name}", file=sys.stderr)
    print("the secret is shown once; store it now:", file=sys.stderr)
    print(token)


def cmd_contacts_import(args: argparse.Namespace, settings: Settings) -> None:
    from pathlib import Path

    from server.cli.contacts import run_import
    from server.cli.discovery import api_for

    api = api_for(args, settings)
    raise SystemExit(
        run_import(Path(args.file), args.location, api, args.consent_text, args.external_source)
    )


def cmd_contacts_evidence(args: argparse.Namespace, settings: Settings) -> None:
    from pathlib import Path

    from server.cli.discovery import api_for
    from server.cli.evidence import run_evidence

    output = Path(args.output) if args.output else None
    api = api_for(args, settings)
    raise SystemExit(run_evidence(api, args.contact, args.location, output))


def cmd_approvals_list(args: argparse.Namespace, settings: Settings) -> None:
    from server.cli.approvals import run_list
    from server.cli.discovery import api_for

    raise SystemExit(run_list(api_for(args, settings), args.location))


def cmd_approvals_decide(args: argparse.Namespace, settings: Settings) -> None:
    from server.cli.approvals import run_decide
    from server.cli.discovery import api_for
    from workflows.enrollment_types import ApprovalAction

    action = (
        ApprovalAction.APPROVE
        if args.approve
        else ApprovalAction.SKIP
        if args.skip
        else ApprovalAction.EDIT
    )
    code = run_decide(
        api_for(args, settings),
        args.enrollment,
        args.step,
        action,
        args.edit,
        args.location,
    )
    raise SystemExit(code)


def _step_index(value: str) -> int:
    try:
        step = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a step number") from None
    if step < 0:
        raise argparse.ArgumentTypeError("step numbers start at 0")
    return step


def cmd_sms_receive(args: argparse.Namespace, settings: Settings) -> None:
    from dataclasses import replace

    from server.cli.discovery import Discovery
    from server.cli.sms import run_receive

    text = " ".join(args.text)
    discovery = Discovery(args)
    database_url = discovery.require_database_url().value
    if not settings.temporal_address:  # the running stack's Temporal, when it recorded one
        settings = replace(settings, temporal_address=discovery.temporal_address())
    raise SystemExit(run_receive(settings, database_url, args.to, args.from_, text))


def cmd_sms_review(args: argparse.Namespace, settings: Settings) -> None:
    from server.cli import review as review_cli
    from server.cli.discovery import api_for

    api = api_for(args, settings)
    if args.resolve:
        if not args.as_:
            raise SystemExit("reengage sms review: --resolve needs --as opt_out|not_opt_out")
        raise SystemExit(
            review_cli.run_resolve(api, args.resolve, args.as_, args.note, args.location)
        )
    if args.as_ or args.note:
        raise SystemExit("reengage sms review: --as and --note go with --resolve ID")
    code = review_cli.run_list(api, args.location, args.state, args.limit)
    raise SystemExit(code)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="reengage",
        description="Compliant SMS re-engagement sequences for franchises.",
        epilog=DISCOVERY_ORDER,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser(
        "up", help="run the whole platform on embedded PostgreSQL and Temporal (development)"
    )
    up.set_defaults(func=cmd_up)
    serve = sub.add_parser(
        "serve", help="run worker, gRPC API and HTTP edge against external services"
    )
    serve.set_defaults(func=cmd_serve)
    worker = sub.add_parser(
        "worker", help="run only the Temporal worker (REENGAGE_TASK_QUEUE, default reengage)"
    )
    worker.set_defaults(func=cmd_worker)
    outbox = sub.add_parser("outbox", help="show what the outbox carrier sent (development)")
    outbox.add_argument(
        "--limit", type=positive_int, default=50, help="show at most this many texts (default 50)"
    )
    outbox.add_argument("--location", help="only this location, franchisors/{f}/locations/{l}")
    outbox.add_argument("--database-url", help=DATABASE_URL_HELP)
    outbox.set_defaults(func=cmd_outbox)
    mig = sub.add_parser("migrate", help="apply database migrations")
    mig.add_argument("--database-url", help=DATABASE_URL_HELP)
    mig.set_defaults(func=cmd_migrate)
    keys = sub.add_parser("keys", help="API keys").add_subparsers(dest="keys_cmd", required=True)
    create = keys.add_parser("create", help="create an API key and print its secret once")
    who = create.add_mutually_exclusive_group(required=True)
    who.add_argument("--operator", action="store_true", help="a platform operator key")
    who.add_argument("--parent", help="franchisors/{f} or franchisors/{f}/locations/{l}")
    create.add_argument(
        "--role",
        choices=["franchisor_admin", "franchisor_viewer", "location_manager", "location_staff"],
        help="required with --parent",
    )
    create.add_argument(
        "--display-name",
        default="created with reengage keys create",
        help="a label saying what the key is for, kept with it",
    )
    create.add_argument("--database-url", help=DATABASE_URL_HELP)
    create.set_defaults(func=cmd_keys_create)
    contacts = sub.add_parser("contacts", help="contacts").add_subparsers(
        dest="contacts_cmd", required=True
    )
    imp = contacts.add_parser(
        "import",
        help="import a CSV file over gRPC (exit 3 when rows were rejected)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Upserts contacts by phone, each with its consent, and names the\n"
        "contacts created or updated (line, phone, id).\n\n"
        "Columns (by header): phone (or phone_number, mobile), first_name,\n"
        "last_name, email, time_zone, state, consent_at (or opted_in_at),\n"
        "consent_channel, consent_source, consent_text (or disclosure_text; else\n"
        "--consent-text), consent_ip, consent_user_agent, attr.<key>,\n"
        "external_id with external_source (or --external-source).\n"
        "phone, consent_at and a consent text are required.\n\n"
        "consent_at formats (no others: a row with another is rejected):\n"
        "  2026-11-02T09:30:00-05:00, 2026-11-02T14:30Z   with an offset: as given\n"
        "  2026-11-02 09:30, 2026-11-02T09:30:15           the location's time zone\n"
        "  2026-11-02                     midnight starting that day, the location's zone\n"
        "A time in the future is rejected.\n\n"
        "A rejected row is named by its line in the file (the header is line 1)\n"
        "and its column as the header spells it (or --consent-text).",
    )
    imp.add_argument("file", help="a CSV file with a header row (UTF-8)")
    imp.add_argument(
        "--location",
        required=True,
        help="franchisors/{f}/locations/{l}; times without an offset are read in its zone",
    )
    imp.add_argument(
        "--consent-text",
        default="",
        help="the exact disclosure text the contacts agreed to, for rows without a consent_text",
    )
    imp.add_argument(
        "--external-source",
        default="",
        help="the system the external_id column's ids come from (e.g. hubspot), for rows"
        " without an external_source",
    )
    add_api_flags(imp)
    imp.set_defaults(func=cmd_contacts_import)
    evidence = contacts.add_parser(
        "evidence",
        help="export one contact's consent evidence as JSON (for a TCPA dispute)",
        description="Every consent event (with its disclosure text and hash), enrollment,"
        " text sent (time, sender, text, carrier status) and text received (with its"
        " classification), with the send-rules version, as one JSON document. Franchisor"
        " admins and viewers and the location's managers; every export is audited.",
    )
    evidence.add_argument(
        "contact",
        help="the contact's phone number (with --location), its id (as other commands show it;"
        " --location narrows where it is looked up) or its name",
    )
    evidence.add_argument("--location", help="franchisors/{f}/locations/{l}")
    evidence.add_argument("--output", help="write to this file (default: standard output)")
    add_api_flags(evidence)
    evidence.set_defaults(func=cmd_contacts_evidence)
    contact_lookup.add_parser(contacts)
    approvals = sub.add_parser(
        "approvals", help="steps waiting for a person's approval (without Slack)"
    ).add_subparsers(dest="approvals_cmd", required=True)
    alist = approvals.add_parser(
        "list", help="list pending approvals with their text and deadline (exit 1 on an error)"
    )
    alist.add_argument(
        "--location",
        help="franchisors/{f}/locations/{l}, or franchisors/{f} for every location"
        " (default with the demo key: franchisors/demo)",
    )
    decide = approvals.add_parser(
        "decide", help="approve, edit and approve, or skip a pending step (exit 1 when refused)"
    )
    decide.add_argument(
        "enrollment",
        help="the enrollment's id as listed (or as `reengage outbox` shows it), or its name"
        " franchisors/{f}/locations/{l}/enrollments/{e}",
    )
    decide.add_argument(
        "--location",
        help="where to look for an enrollment id: franchisors/{f}/locations/{l} (default:"
        " every location your key can see)",
    )
    decide.add_argument(
        "--step", type=_step_index, required=True, help="the pending step (as listed)"
    )
    verdict = decide.add_mutually_exclusive_group(required=True)
    verdict.add_argument("--approve", action="store_true", help="send the text as shown")
    verdict.add_argument("--skip", action="store_true", help="send nothing for this step")
    verdict.add_argument("--edit", metavar="TEXT", help="send TEXT instead (checked by the server)")
    for cmd in (alist, decide):
        add_api_flags(cmd)
    alist.set_defaults(func=cmd_approvals_list)
    decide.set_defaults(func=cmd_approvals_decide)
    sms = sub.add_parser("sms", help="inbound texts").add_subparsers(dest="sms_cmd", required=True)
    rec = sms.add_parser(
        "receive",
        help="receive a text as if the carrier delivered it (development; same path as the"
        " webhook)",
    )
    rec.add_argument("--to", required=True, help="the location's sender number")
    rec.add_argument("--from", dest="from_", required=True, help="the contact's number")
    rec.add_argument("text", nargs="+", help="the text")
    rec.add_argument("--database-url", help=DATABASE_URL_HELP)
    rec.set_defaults(func=cmd_sms_receive)
    review = sms.add_parser(
        "review",
        help="inbound texts flagged for review (possible opt-outs): list them, or resolve one"
        " (over gRPC; exit 1 on an error)",
    )
    review.add_argument(
        "--location",
        help="franchisors/{f}/locations/{l}, or franchisors/{f} for every location"
        " (default with the demo key: franchisors/demo)",
    )
    review.add_argument(
        "--state",
        choices=["unresolved", "resolved", "all"],
        default="unresolved",
        help="which flagged texts to list (default: unresolved)",
    )
    review.add_argument("--limit", type=positive_int, default=50, help="list at most this many")
    review.add_argument(
        "--resolve",
        metavar="ID",
        help="resolve this flagged text: its id as listed (looked up under --location, else"
        " wherever your key reaches), or its name"
        " franchisors/{f}/locations/{l}/inboundMessages/{id}",
    )
    review.add_argument(
        "--as",
        dest="as_",
        choices=["opt_out", "not_opt_out"],
        help="with --resolve: opt_out records the revocation, not_opt_out restores the consent"
        " the text revoked",
    )
    review.add_argument("--note", default="", help="with --resolve: why (kept with it)")
    add_api_flags(review)
    review.set_defaults(func=cmd_sms_review)
    enrollments_cli.add_parser(sub)
    enroll.add_parser(sub)
    templates_cli.add_parser(sub)
    sequences_cli.add_parser(sub)
    report_cli.add_parser(sub)
    webhooks_cli.add_parser(sub)
    dashboard_cli.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    long_running = args.command in LONG_RUNNING_ROLES
    # the roles log what they do; a short command prints its answer, and logs only trouble
    settings = Settings.from_env()
    configure_logging(
        os.environ.get("REENGAGE_LOG_LEVEL") or ("INFO" if long_running else "WARNING"),
        settings.log_format,
    )
    if long_running:  # before any pool or client is made: their spans need the provider
        from server import tracing

        tracing.start_tracing(settings, f"reengage-{args.command}")
    # a short command ends quietly when its reader goes away (`reengage outbox | head`)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN if long_running else signal.SIG_DFL)
    import psycopg

    from server.cli.api import CliError
    from tenants.core.errors import DomainError

    try:
        args.func(args, settings)
    except DomainError as exc:
        raise SystemExit(f"reengage: {exc.message}") from None
    except CliError as exc:
        print(f"reengage: {exc.message}", file=sys.stderr)
        raise SystemExit(exc.code) from None
    except psycopg.OperationalError as exc:
        if long_running:
            raise
        print(
            f"reengage: the database does not answer: {' '.join(str(exc).split())}\n  is"
            " `reengage up` running? (`reengage --help` lists where the CLI finds the database)",
            file=sys.stderr,
        )
        raise SystemExit(1) from None
    finally:
        if long_running:
            from server import tracing

            tracing.stop_tracing()  # the spans still buffered, before the process ends
