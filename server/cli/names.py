"""Short names on the command line: wherever a command takes a resource name it also takes the
resource's id alone (`e3f9…`, `win-back`), resolved within what the caller's key may see.

A full name (`franchisors/…`) is used as given. An id is looked up with the collection's Get
RPC under each scope the caller can reach, nearest first: the `--location` given, else every
location and franchisor of the caller's franchisors (ListFranchisors, then ListLocations). The
one match is the name; none is an error naming where it looked; two are an error listing both
(pass the full name).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import grpc

from reengage.v1 import (
    contacts_pb2,
    contacts_pb2_grpc,
    enrollments_pb2,
    enrollments_pb2_grpc,
    integrations_pb2,
    integrations_pb2_grpc,
    sequences_pb2,
    sequences_pb2_grpc,
    templates_pb2,
    templates_pb2_grpc,
    tenants_pb2,
    tenants_pb2_grpc,
)
from server.cli.api import TIMEOUT, Api, CliError, every
from server.cli.display import last_segment


@dataclass(frozen=True)
class Collection:
    """A collection the CLI resolves ids in: its name segment, what lives where, its Get."""

    segment: str  # e.g. "enrollments"
    noun: str  # e.g. "enrollment", for messages
    at_franchisor: bool  # may live directly under a franchisor
    at_location: bool  # may live under a location
    get: Callable[[grpc.Channel], Callable[..., Future[Any]]]
    request: Callable[[str], Any]


ENROLLMENTS = Collection(
    "enrollments",
    "enrollment",
    False,
    True,
    lambda ch: enrollments_pb2_grpc.EnrollmentServiceStub(ch).GetEnrollment.future,
    lambda name: enrollments_pb2.GetEnrollmentRequest(name=name),
)
CONTACTS = Collection(
    "contacts",
    "contact",
    False,
    True,
    lambda ch: contacts_pb2_grpc.ContactServiceStub(ch).GetContact.future,
    lambda name: contacts_pb2.GetContactRequest(name=name),
)
SEQUENCES = Collection(
    "sequences",
    "sequence",
    True,
    True,
    lambda ch: sequences_pb2_grpc.SequenceServiceStub(ch).GetSequence.future,
    lambda name: sequences_pb2.GetSequenceRequest(name=name),
)
TEMPLATES = Collection(
    "templates",
    "template",
    True,
    True,
    lambda ch: templates_pb2_grpc.TemplateServiceStub(ch).GetTemplate.future,
    lambda name: templates_pb2.GetTemplateRequest(name=name),
)

WEBHOOK_ENDPOINTS = Collection(
    "webhookEndpoints",
    "webhook endpoint",
    True,
    True,
    lambda ch: integrations_pb2_grpc.WebhookServiceStub(ch).GetWebhookEndpoint.future,
    lambda name: integrations_pb2.GetWebhookEndpointRequest(name=name),
)


def is_full_name(value: str) -> bool:
    return value.startswith("franchisors/")


def caller_franchisors(api: Api, channel: grpc.Channel) -> list[str]:
    """The franchisors the key may see: ListFranchisors (an operator's key sees them all, any
    other key its own)."""
    stub = tenants_pb2_grpc.TenantServiceStub(channel)
    request = tenants_pb2.ListFranchisorsRequest()
    return [f.name for f in every(api, stub.ListFranchisors, request, "franchisors")]


def locations_of(api: Api, channel: grpc.Channel, franchisor: str) -> Iterator[str]:
    """Every location of the franchisor the key may see (a location key: its own)."""
    stub = tenants_pb2_grpc.TenantServiceStub(channel)
    request = tenants_pb2.ListLocationsRequest(parent=franchisor)
    return (location.name for location in every(api, stub.ListLocations, request, "locations"))


def scopes(api: Api, channel: grpc.Channel, location: str | None) -> list[str]:
    """Where to look for an id, nearest first."""
    if location:
        franchisor = "/".join(location.split("/")[:2])
        return [location, franchisor] if location != franchisor else [location]
    found: list[str] = []
    for franchisor in caller_franchisors(api, channel):
        found.append(franchisor)
        found += locations_of(api, channel, franchisor)
    return found


def resolve(
    api: Api,
    channel: grpc.Channel,
    value: str,
    collection: Collection,
    *,
    location: str | None = None,
    flag: str = "",
) -> str:
    """The full name of `value` (a full name, or an id the caller's key can reach)."""
    value = value.strip()
    if is_full_name(value):
        return value
    if not value or "/" in value:
        raise CliError(
            f"{flag or collection.noun}: {value!r} is neither a {collection.noun} name"
            f" (franchisors/…/{collection.segment}/ID) nor an id"
        )
    candidates = [
        f"{scope}/{collection.segment}/{value}"
        for scope in scopes(api, channel, location)
        if (collection.at_location if "/locations/" in scope else collection.at_franchisor)
    ]
    get = collection.get(channel)
    reads = [
        (name, get(collection.request(name), metadata=api.metadata, timeout=TIMEOUT))
        for name in candidates
    ]
    found: list[str] = []
    for name, read in reads:
        try:
            read.result()
        except grpc.RpcError as err:
            code = err.code() if isinstance(err, grpc.Call) else None
            if code in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.PERMISSION_DENIED):
                continue
            raise
        found.append(name)
    if not found:
        where = location or "the franchisors and locations your key can see"
        raise CliError(f"{flag or collection.noun}: no {collection.noun} {value!r} in {where}")
    if len(found) > 1 and not location:
        listed = ", ".join(found)
        raise CliError(
            f"{flag or collection.noun}: {value!r} names more than one {collection.noun}"
            f" ({listed}): pass the full name or --location"
        )
    return found[0]


def caller_locations(api: Api, channel: grpc.Channel) -> list[str]:
    """Every location the key can see, franchisor by franchisor."""
    return [
        location
        for franchisor in caller_franchisors(api, channel)
        for location in locations_of(api, channel, franchisor)
    ]


def location_named(api: Api, channel: grpc.Channel, value: str, flag: str = "--location") -> str:
    """The full name of a location given as its full name or its id alone."""
    value = value.strip()
    parts = value.split("/")
    if is_full_name(value):
        if len(parts) != 4 or parts[2] != "locations" or not all(parts):
            raise CliError(
                f"{flag}: {value!r} is not a location (franchisors/{{f}}/locations/{{l}})"
            )
        return value
    if not value or "/" in value:
        raise CliError(f"{flag}: {value!r} is neither a location name nor a location id")
    found = [name for name in caller_locations(api, channel) if last_segment(name) == value]
    if not found:
        raise CliError(f"{flag}: no location {value!r} among the locations your key can see")
    if len(found) > 1:
        raise CliError(
            f"{flag}: {value!r} names more than one location ({', '.join(found)}):"
            " pass the full name"
        )
    return found[0]
