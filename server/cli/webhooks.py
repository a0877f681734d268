"""`reengage webhooks …` (outbound webhook endpoints) and `reengage intake mapping` (which
activity kind an intake event records), over gRPC (WebhookService, IntegrationService).

* `webhooks create --url URL --events TYPES` at `--location` or `--franchisor` (default: the
  key's franchisor); prints the endpoint and its signing secret, which is shown only then.
* `webhooks list`, `show ID`, `update ID`, `delete ID`, `rotate ID [--overlap 24h]`,
  `test ID` (sends a `webhook.test` event and prints the first attempt's outcome),
  `deliveries ID [--state S]`.
* `intake mapping` prints the franchisor's event mapping; `--set "Event Name=kind"` (repeatable)
  replaces it, `--reset` goes back to the defaults.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from datetime import UTC
from typing import TypeVar

import grpc
from google.protobuf.duration_pb2 import Duration
from google.protobuf.field_mask_pb2 import FieldMask
from google.protobuf.timestamp_pb2 import Timestamp
from rich.console import Console
from rich.table import Table
from rich.text import Text

from reengage.v1 import integrations_pb2 as pb
from reengage.v1 import integrations_pb2_grpc
from server.cli.api import PAGE_SIZE, TIMEOUT, Api, CliError, every, positive_int
from server.cli.discovery import add_api_flags, api_for
from server.cli.display import last_segment
from server.cli.names import WEBHOOK_ENDPOINTS, caller_locations, resolve
from server.cli.sequence_file import parse_duration
from server.cli.tenant_flags import add_scope_flags, franchisor_name, parent_for
from server.config import Settings
from tenants.integrations.events import EVENT_TYPES

T = TypeVar("T")
STATES = {
    "pending": pb.WEBHOOK_DELIVERY_STATE_PENDING,
    "succeeded": pb.WEBHOOK_DELIVERY_STATE_SUCCEEDED,
    "failed": pb.WEBHOOK_DELIVERY_STATE_FAILED,
}


def event_types(value: str) -> list[str]:
    """`all`, or a comma-separated list of event types."""
    if value.strip() == "all":
        return list(EVENT_TYPES)
    types = [t.strip() for t in value.split(",") if t.strip()]
    unknown = [t for t in types if t not in EVENT_TYPES]
    if unknown or not types:
        raise argparse.ArgumentTypeError(
            f"{', '.join(unknown) or 'nothing'}: use `all` or a list of {', '.join(EVENT_TYPES)}"
        )
    return types


def _time(stamp: Timestamp) -> str:
    if not stamp.seconds and not stamp.nanos:
        return "-"
    return stamp.ToDatetime(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _types(endpoint: pb.WebhookEndpoint) -> str:
    if set(endpoint.event_types) == set(EVENT_TYPES):
        return f"all {len(EVENT_TYPES)} types"
    return ", ".join(endpoint.event_types)


def _state(endpoint: pb.WebhookEndpoint) -> str:
    if endpoint.state == pb.WEBHOOK_ENDPOINT_STATE_DISABLED:
        return f"disabled ({endpoint.disabled_reason})" if endpoint.disabled_reason else "disabled"
    if endpoint.HasField("failing_since"):
        return f"enabled, failing since {_time(endpoint.failing_since)}"
    return "enabled"


def print_endpoint(endpoint: pb.WebhookEndpoint, console: Console) -> None:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(no_wrap=True)
    grid.add_column(overflow="fold")
    rows = [
        ("endpoint", endpoint.name),
        ("url", endpoint.url),
        ("events", _types(endpoint)),
        ("state", _state(endpoint)),
        ("description", endpoint.description or "-"),
        ("secret", endpoint.secret or f"{endpoint.secret_prefix}… (shown only when made)"),
    ]
    if endpoint.HasField("previous_secret_expire_time"):
        rows.append(
            ("previous secret", f"signs too until {_time(endpoint.previous_secret_expire_time)}")
        )
    for label, value in rows:
        grid.add_row(Text(label), Text(value))
    console.print(grid)
    if endpoint.secret:
        console.print(Text("the secret is shown once: store it with the receiver now"))


def _stub(channel: grpc.Channel) -> integrations_pb2_grpc.WebhookServiceStub:
    return integrations_pb2_grpc.WebhookServiceStub(channel)


def _scoped(
    args: argparse.Namespace,
    api: Api,
    channel: grpc.Channel,
    call: Callable[[str], T],
) -> tuple[str, T]:
    """(parent, call(parent)) at --location or --franchisor; without either at the key's
    franchisor, and for a location's key (refused there) at its one location."""
    parent = parent_for(args, api, channel)
    try:
        return parent, call(parent)
    except grpc.RpcError as err:
        denied = isinstance(err, grpc.Call) and err.code() == grpc.StatusCode.PERMISSION_DENIED
        if not denied or args.location or args.franchisor:
            raise
        own = caller_locations(api, channel)
        if len(own) != 1:
            raise
        return own[0], call(own[0])


def _endpoint_name(api: Api, channel: grpc.Channel, args: argparse.Namespace) -> str:
    return resolve(
        api, channel, args.endpoint, WEBHOOK_ENDPOINTS, location=getattr(args, "location", None)
    )


def cmd_create(args: argparse.Namespace, settings: Settings) -> None:
    api = api_for(args, settings)
    endpoint = pb.WebhookEndpoint(
        url=args.url, event_types=args.events, description=args.description or ""
    )
    with api.channel() as channel:

        def create(parent: str) -> pb.WebhookEndpoint:
            request = pb.CreateWebhookEndpointRequest(
                parent=parent, webhook_endpoint_id=args.id or "", webhook_endpoint=endpoint
            )
            return _stub(channel).CreateWebhookEndpoint(
                request, metadata=api.metadata, timeout=TIMEOUT
            )

        _, made = _scoped(args, api, channel, create)
    print_endpoint(made, Console())


def cmd_list(args: argparse.Namespace, settings: Settings) -> None:
    api = api_for(args, settings)
    with api.channel() as channel:

        def listed(parent: str) -> list[pb.WebhookEndpoint]:
            request = pb.ListWebhookEndpointsRequest(parent=parent, page_size=PAGE_SIZE)
            return list(
                every(api, _stub(channel).ListWebhookEndpoints, request, "webhook_endpoints")
            )

        parent, found = _scoped(args, api, channel, listed)
    table = Table(title=f"webhook endpoints of {parent}", show_lines=True)
    table.add_column("endpoint", no_wrap=True)
    table.add_column("url", overflow="fold")
    table.add_column("events", overflow="fold")
    table.add_column("state", overflow="fold")
    for e in found:
        where = "brand" if "/locations/" not in e.name else e.name.split("/")[3]
        table.add_row(
            Text(f"{last_segment(e.name)}\n({where})"),
            Text(e.url),
            Text(_types(e)),
            Text(_state(e)),
        )
    console = Console()
    console.print(table if found else Text(f"{parent} has no webhook endpoint"))


def cmd_show(args: argparse.Namespace, settings: Settings) -> None:
    api = api_for(args, settings)
    with api.channel() as channel:
        name = _endpoint_name(api, channel, args)
        found = _stub(channel).GetWebhookEndpoint(
            pb.GetWebhookEndpointRequest(name=name), metadata=api.metadata, timeout=TIMEOUT
        )
    print_endpoint(found, Console())


def cmd_update(args: argparse.Namespace, settings: Settings) -> None:
    endpoint = pb.WebhookEndpoint()
    paths: list[str] = []
    if args.url is not None:
        endpoint.url = args.url
        paths.append("url")
    if args.events is not None:
        endpoint.event_types[:] = args.events
        paths.append("event_types")
    if args.description is not None:
        endpoint.description = args.description
        paths.append("description")
    if args.disable or args.enable:
        endpoint.disabled = bool(args.disable)
        paths.append("disabled")
    if not paths:
        raise CliError(
            "nothing to update: pass --url, --events, --description, --disable or --enable"
        )
    api = api_for(args, settings)
    with api.channel() as channel:
        endpoint.name = _endpoint_name(api, channel, args)
        request = pb.UpdateWebhookEndpointRequest(
            webhook_endpoint=endpoint, update_mask=FieldMask(paths=paths)
        )
        found = _stub(channel).UpdateWebhookEndpoint(
            request, metadata=api.metadata, timeout=TIMEOUT
        )
    print_endpoint(found, Console())


def cmd_delete(args: argparse.Namespace, settings: Settings) -> None:
    api = api_for(args, settings)
    with api.channel() as channel:
        name = _endpoint_name(api, channel, args)
        _stub(channel).DeleteWebhookEndpoint(
            pb.DeleteWebhookEndpointRequest(name=name), metadata=api.metadata, timeout=TIMEOUT
        )
    print(f"deleted {name}")


def _overlap(value: str) -> Duration:
    try:
        seconds = parse_duration(value)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return Duration(seconds=seconds)


def cmd_rotate(args: argparse.Namespace, settings: Settings) -> None:
    api = api_for(args, settings)
    with api.channel() as channel:
        name = _endpoint_name(api, channel, args)
        request = pb.RotateWebhookSecretRequest(name=name, overlap=args.overlap)
        found = _stub(channel).RotateWebhookSecret(request, metadata=api.metadata, timeout=TIMEOUT)
    print_endpoint(found, Console())


def _delivery_state(value: int) -> str:
    name: str = pb.WebhookDeliveryState.Name(value)
    return name.removeprefix("WEBHOOK_DELIVERY_STATE_").lower()


def _outcome(d: pb.WebhookDelivery) -> str:
    if d.last_response_code:
        return f"HTTP {d.last_response_code}"
    return d.last_error or "-"


def cmd_test(args: argparse.Namespace, settings: Settings) -> None:
    api = api_for(args, settings)
    with api.channel() as channel:
        name = _endpoint_name(api, channel, args)
        found = _stub(channel).SendTestEvent(
            pb.SendTestEventRequest(name=name), metadata=api.metadata, timeout=TIMEOUT + 30
        )
    state = _delivery_state(found.state)
    print(f"{found.webhook_id}: {state} after {found.attempts} attempt(s): {_outcome(found)}")
    if found.state != pb.WEBHOOK_DELIVERY_STATE_SUCCEEDED:
        raise SystemExit(3)


def cmd_deliveries(args: argparse.Namespace, settings: Settings) -> None:
    api = api_for(args, settings)
    with api.channel() as channel:
        name = _endpoint_name(api, channel, args)
        request = pb.ListWebhookDeliveriesRequest(
            parent=name, page_size=min(args.limit, PAGE_SIZE), state=STATES.get(args.state or "", 0)
        )
        found: list[pb.WebhookDelivery] = []
        while len(found) < args.limit:
            page = _stub(channel).ListWebhookDeliveries(
                request, metadata=api.metadata, timeout=TIMEOUT
            )
            found += page.webhook_deliveries
            if not page.next_page_token:
                break
            request.page_token = page.next_page_token
    table = Table(title=f"deliveries of {last_segment(name)}, newest first", show_lines=True)
    table.add_column("webhook id\nevent", no_wrap=True)
    table.add_column("state\nattempts", no_wrap=True)
    table.add_column("last answer", overflow="fold")
    table.add_column("last attempt\nnext attempt", no_wrap=True)
    for d in found[: args.limit]:
        when = _time(d.last_attempt_time)
        if d.state == pb.WEBHOOK_DELIVERY_STATE_PENDING:
            when += f"\n{_time(d.next_attempt_time)}"
        table.add_row(
            Text(f"{d.webhook_id}\n{d.event_type}"),
            Text(f"{_delivery_state(d.state)}\n{d.attempts}"),
            Text(_outcome(d)),
            Text(when),
        )
    Console().print(table if found else Text(f"{name} has no delivery yet"))


def _rule(value: str) -> pb.EventMappingRule:
    event, sep, kind = value.rpartition("=")
    if not sep or not event.strip() or not kind.strip():
        raise argparse.ArgumentTypeError(f'{value!r}: write it as "Event Name=activity_kind"')
    return pb.EventMappingRule(event=event.strip(), activity_kind=kind.strip())


def cmd_mapping(args: argparse.Namespace, settings: Settings) -> None:
    api = api_for(args, settings)
    with api.channel() as channel:
        franchisor = (
            franchisor_name(args.franchisor) if args.franchisor else parent_for(args, api, channel)
        )
        name = "/".join(franchisor.split("/")[:2]) + "/eventMapping"
        stub = integrations_pb2_grpc.IntegrationServiceStub(channel)
        if args.set or args.reset:
            if args.set and args.reset:
                raise CliError("--set and --reset do not go together")
            request = pb.UpdateEventMappingRequest(
                event_mapping=pb.EventMapping(name=name, rules=args.set or []),
                reset_to_defaults=args.reset,
            )
            found = stub.UpdateEventMapping(request, metadata=api.metadata, timeout=TIMEOUT)
        else:
            found = stub.GetEventMapping(
                pb.GetEventMappingRequest(name=name), metadata=api.metadata, timeout=TIMEOUT
            )
    title = f"{found.name}{' (the defaults)' if found.defaults else ''}"
    table = Table(title=title)
    table.add_column("intake event")
    table.add_column("activity kind")
    for rule in found.rules:
        table.add_row(Text(rule.event), Text(rule.activity_kind))
    Console().print(table if found.rules else Text(f"{title}: no event is mapped"))


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Registers `reengage webhooks …` and `reengage intake mapping`."""
    webhooks = sub.add_parser(
        "webhooks", help="outbound webhooks: endpoints, secrets, test events, deliveries"
    )
    commands = webhooks.add_subparsers(dest="webhooks_command", required=True)
    types_help = f"comma-separated event types, or all: {', '.join(EVENT_TYPES)}"

    create = commands.add_parser("create", help="add an endpoint (prints its secret once)")
    create.add_argument("--url", required=True, help="where events are POSTed (https)")
    create.add_argument("--events", required=True, type=event_types, help=types_help)
    create.add_argument("--description", help="what the endpoint is for")
    create.add_argument("--id", help="the endpoint's id (default: generated)")
    add_scope_flags(create, "create it")
    add_api_flags(create)
    create.set_defaults(func=cmd_create)

    listing = commands.add_parser("list", help="the endpoints of a franchisor or location")
    add_scope_flags(listing, "list those")
    add_api_flags(listing)
    listing.set_defaults(func=cmd_list)

    def with_endpoint(name: str, help_text: str) -> argparse.ArgumentParser:
        parser = commands.add_parser(name, help=help_text)
        parser.add_argument("endpoint", help="the endpoint's id or full name")
        parser.add_argument("--location", help="where to look the id up (its location)")
        add_api_flags(parser)
        return parser

    show = with_endpoint("show", "one endpoint")
    show.set_defaults(func=cmd_show)
    update = with_endpoint("update", "change the URL, events or description; disable/enable")
    update.add_argument("--url", help="the new URL (a new receiver: its failure record clears)")
    update.add_argument("--events", type=event_types, help=types_help)
    update.add_argument("--description", help="the new description")
    toggle = update.add_mutually_exclusive_group()
    toggle.add_argument("--disable", action="store_true", help="stop deliveries")
    toggle.add_argument("--enable", action="store_true", help="deliver again")
    update.set_defaults(func=cmd_update)
    delete = with_endpoint("delete", "delete an endpoint and its deliveries")
    delete.set_defaults(func=cmd_delete)
    rotate = with_endpoint("rotate", "a new signing secret (the old one signs during --overlap)")
    rotate.add_argument(
        "--overlap", type=_overlap, default=Duration(), help="e.g. 24h (default), 90m, 3d"
    )
    rotate.set_defaults(func=cmd_rotate)
    test = with_endpoint("test", "send a webhook.test event and show the first attempt")
    test.set_defaults(func=cmd_test)
    deliveries = with_endpoint("deliveries", "an endpoint's deliveries, newest first")
    deliveries.add_argument("--state", choices=sorted(STATES), help="only deliveries in this state")
    deliveries.add_argument("--limit", type=positive_int, default=50, help="at most this many")
    deliveries.set_defaults(func=cmd_deliveries)

    intake = sub.add_parser("intake", help="the event intake: which activity an event records")
    intake_commands = intake.add_subparsers(dest="intake_command", required=True)
    mapping = intake_commands.add_parser(
        "mapping", help="show the franchisor's event mapping; --set or --reset it"
    )
    mapping.add_argument(
        "--set",
        action="append",
        type=_rule,
        metavar='"EVENT=KIND"',
        help='a rule, e.g. "Order Completed=purchase" (repeat it; replaces the whole mapping)',
    )
    mapping.add_argument("--reset", action="store_true", help="go back to the defaults")
    mapping.add_argument("--franchisor", help="franchisors/{f} or its id (default: your key's)")
    add_api_flags(mapping)
    mapping.set_defaults(func=cmd_mapping)
