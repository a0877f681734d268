"""Where a template or sequence command acts: `--location` or `--franchisor`, else the caller's
franchisor.

`--location` takes a full name (`franchisors/demo/locations/downtown`) or a location id
(`downtown`, looked up among the locations the key sees: `server.cli.contact_lookup`);
`--franchisor` takes `franchisors/demo` or `demo`. Without either, a command acts at the one
franchisor the key sees (ListFranchisors); an operator's key, which sees many, names one.
"""

from __future__ import annotations

import argparse

import grpc

from server.cli.api import Api, CliError
from server.cli.names import caller_franchisors, location_named


def add_scope_flags(parser: argparse.ArgumentParser, what: str) -> None:
    """--location | --franchisor, one at most; `what` starts the help ("create it")."""
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--location",
        metavar="LOCATION",
        help=f"{what} at this location: franchisors/{{f}}/locations/{{l}} or its id (downtown)",
    )
    where.add_argument(
        "--franchisor",
        metavar="FRANCHISOR",
        help=f"{what} at this franchisor (the brand): franchisors/{{f}} or its id"
        " (default: your key's franchisor)",
    )


def franchisor_name(value: str) -> str:
    """`franchisors/{f}` of `franchisors/{f}` or `{f}`."""
    value = value.strip().strip("/")
    name = value if value.startswith("franchisors/") else f"franchisors/{value}"
    if name.count("/") != 1 or not name.split("/")[1]:
        raise CliError(f"--franchisor: {value!r} is neither franchisors/ID nor an id")
    return name


def default_franchisor(api: Api, channel: grpc.Channel) -> str:
    """The caller's franchisor: the only one the key sees."""
    found = caller_franchisors(api, channel)
    if len(found) == 1:
        return found[0]
    if not found:
        raise CliError("your key sees no franchisor: pass --franchisor or --location")
    more = ", …" if len(found) > 3 else ""
    raise CliError(
        f"your key sees {len(found)} franchisors ({', '.join(found[:3])}{more}):"
        " pass --franchisor or --location"
    )


def location_flag(args: argparse.Namespace, api: Api, channel: grpc.Channel) -> str | None:
    """--location as a full name, or None."""
    location: str | None = getattr(args, "location", None)
    return location_named(api, channel, location) if location else None


def parent_for(args: argparse.Namespace, api: Api, channel: grpc.Channel) -> str:
    """Where the command acts: --location, else --franchisor, else the caller's franchisor."""
    franchisor = getattr(args, "franchisor", None)
    if franchisor:
        return franchisor_name(franchisor)
    return location_flag(args, api, channel) or default_franchisor(api, channel)
