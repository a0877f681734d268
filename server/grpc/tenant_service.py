"""reengage.v1.TenantService: a thin translator between protobuf and `tenants`."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import grpc
from google.protobuf import duration_pb2, empty_pb2
from psycopg_pool import AsyncConnectionPool

from reengage.v1 import tenants_pb2 as pb
from reengage.v1 import tenants_pb2_grpc
from server.grpc.auth import principal
from server.grpc.converters import require, set_timestamp, timestamp
from tenants.compliance.send_window import format_minute
from tenants.core.errors import FieldViolation, InvalidArgument
from tenants.core.masks import masked_fields
from tenants.core.names import (
    parse_child,
    parse_franchisor,
    parse_location,
    parse_scope,
)
from tenants.core.pagination import page_request
from tenants.org import api_keys, franchisors, locations, staff
from tenants.org.access import Role
from tenants.org.report_settings import FIELDS as REPORT_SETTINGS_FIELDS
from tenants.org.report_settings import ReportSettings, ReportSettingsChange

ROLE_TO_PB = {
    Role.FRANCHISOR_ADMIN: pb.ROLE_FRANCHISOR_ADMIN,
    Role.FRANCHISOR_VIEWER: pb.ROLE_FRANCHISOR_VIEWER,
    Role.LOCATION_MANAGER: pb.ROLE_LOCATION_MANAGER,
    Role.LOCATION_STAFF: pb.ROLE_LOCATION_STAFF,
}
PB_TO_ROLE = {v: k for k, v in ROLE_TO_PB.items()}


def franchisor_pb(f: franchisors.Franchisor) -> pb.Franchisor:
    return pb.Franchisor(
        name=f.scope.name,
        display_name=f.display_name,
        slack_channel_id=f.slack_channel_id,
        opt_out_scope=OPT_OUT_SCOPE_TO_PB[f.opt_out_scope],
        infer_contact_language=f.infer_contact_language,
        report_settings=report_settings_pb(f.report_settings),
        create_time=timestamp(f.create_time),
        update_time=timestamp(f.update_time),
        etag=f.etag,
    )


def report_settings_pb(settings: ReportSettings) -> pb.ReportSettings:
    def duration(value: timedelta) -> duration_pb2.Duration:
        d = duration_pb2.Duration()
        d.FromTimedelta(value)
        return d

    return pb.ReportSettings(
        reporting_time_zone=settings.reporting_time_zone,
        currency_code=settings.currency_code,
        reply_window=duration(settings.reply_window),
        click_window=duration(settings.click_window),
        delivery_window=duration(settings.delivery_window),
        alert_opt_out_rate=settings.alert_opt_out_rate,
        alert_delivery_rate=settings.alert_delivery_rate,
        alert_click_through_rate=settings.alert_click_through_rate,
    )


REPORT_SETTINGS_PATHS = tuple(f"report_settings.{name}" for name in REPORT_SETTINGS_FIELDS)
FRANCHISOR_MASK_PATHS = (
    "display_name",
    "slack_channel_id",
    "opt_out_scope",
    "infer_contact_language",
    "report_settings",
    *REPORT_SETTINGS_PATHS,
)


def report_settings_input(
    message: pb.Franchisor, fields: set[str], star: bool
) -> ReportSettingsChange | None:
    """The report settings to set (None: leave them): every one when the mask names
    report_settings, else the ones it names as report_settings.<field>. Unset under "*" leaves
    them, so a client that knows nothing of them changes nothing."""
    if star and not message.HasField("report_settings"):
        return None
    if "report_settings" in fields:
        names = frozenset(REPORT_SETTINGS_FIELDS)
    else:
        names = frozenset(p.split(".", 1)[1] for p in fields if p in REPORT_SETTINGS_PATHS)
    if not names:
        return None
    s = message.report_settings
    values = ReportSettings(
        reporting_time_zone=s.reporting_time_zone,
        currency_code=s.currency_code,
        reply_window=s.reply_window.ToTimedelta(),
        click_window=s.click_window.ToTimedelta(),
        delivery_window=s.delivery_window.ToTimedelta(),
        alert_opt_out_rate=s.alert_opt_out_rate,
        alert_delivery_rate=s.alert_delivery_rate,
        alert_click_through_rate=s.alert_click_through_rate,
    )
    return ReportSettingsChange(values, names)


OPT_OUT_SCOPE_TO_PB = {
    franchisors.OptOutScope.LOCATION: pb.OPT_OUT_SCOPE_LOCATION,
    franchisors.OptOutScope.BRAND: pb.OPT_OUT_SCOPE_BRAND,
}
PB_TO_OPT_OUT_SCOPE = {v: k for k, v in OPT_OUT_SCOPE_TO_PB.items()}


def opt_out_scope_input(value: int, fields: set[str], star: bool) -> franchisors.OptOutScope | None:
    """The opt_out_scope to set (None: leave it). Unspecified under "*" leaves it, so a client
    that knows nothing of the field changes nothing; named in the mask, it must be set."""
    if "opt_out_scope" not in fields or (star and value == pb.OPT_OUT_SCOPE_UNSPECIFIED):
        return None
    scope = PB_TO_OPT_OUT_SCOPE.get(value)
    if scope is None:
        raise InvalidArgument(
            [FieldViolation("franchisor.opt_out_scope", "must be LOCATION or BRAND")]
        )
    return scope


# "HH:MM" of every minute of the day (a send window's ends), made once
_HHMM = tuple(format_minute(minute) for minute in range(24 * 60 + 1))


def location_pb(loc: locations.Location) -> pb.Location:
    return fill_location(pb.Location(), loc)


def fill_location(message: pb.Location, loc: locations.Location) -> pb.Location:
    """Sets the fields of message (empty: new, or just added to a response's list) from loc,
    in place: a page of 50 costs no message per field and no copy into the response."""
    message.name = loc.scope.name
    message.display_name = loc.display_name
    message.time_zone = loc.time_zone
    if loc.sender_phone_numbers:
        message.sender_phone_numbers.extend(loc.sender_phone_numbers)
    window = message.send_window
    window.start_time = _HHMM[loc.send_window.start_minute]
    window.end_time = _HHMM[loc.send_window.end_minute]
    window.days.extend(loc.send_window.days)  # ISO weekday numbers are the enum numbers
    message.slack_channel_id = loc.slack_channel_id
    message.region_code = loc.region_code
    message.daily_enrollment_cap = loc.daily_enrollment_cap
    message.weekly_digest = loc.weekly_digest
    set_timestamp(message.create_time, loc.create_time)
    set_timestamp(message.update_time, loc.update_time)
    message.etag = loc.etag
    return message


def location_input(message: pb.Location) -> locations.LocationInput:
    window = None
    if message.HasField("send_window"):
        window = locations.SendWindowInput(
            message.send_window.start_time,
            message.send_window.end_time,
            tuple(int(d) for d in message.send_window.days),
        )
    return locations.LocationInput(
        display_name=message.display_name,
        time_zone=message.time_zone,
        sender_phone_numbers=tuple(message.sender_phone_numbers),
        send_window=window,
        slack_channel_id=message.slack_channel_id,
        region_code=message.region_code,
        daily_enrollment_cap=message.daily_enrollment_cap,
        weekly_digest=message.weekly_digest,
    )


def staff_member_pb(member: staff.StaffMember) -> pb.StaffMember:
    return pb.StaffMember(
        name=member.name.name,
        display_name=member.display_name,
        role=ROLE_TO_PB[member.role],
        slack_user_id=member.slack_user_id,
        email=member.email,
        create_time=timestamp(member.create_time),
    )


def api_key_pb(key: api_keys.ApiKey) -> pb.ApiKey:
    return pb.ApiKey(
        name=key.name,
        display_name=key.display_name,
        role=ROLE_TO_PB.get(key.role, pb.ROLE_UNSPECIFIED),
        key_prefix=key.key_prefix,
        state=pb.API_KEY_STATE_REVOKED if key.revoke_time else pb.API_KEY_STATE_ACTIVE,
        create_time=timestamp(key.create_time),
        revoke_time=timestamp(key.revoke_time),
    )


def role_input(value: int) -> Role | None:
    return PB_TO_ROLE.get(value)


class TenantService(tenants_pb2_grpc.TenantServiceServicer):
    def __init__(
        self, pool: AsyncConnectionPool[Any], keys: api_keys.AuthCache = api_keys.NO_CACHE
    ) -> None:
        self._pool = pool
        self._keys = keys  # the auth interceptor's: a key revoked here is forgotten at once

    async def CreateFranchisor(
        self, request: pb.CreateFranchisorRequest, context: grpc.aio.ServicerContext
    ) -> pb.Franchisor:
        require(request, "franchisor")
        async with self._pool.connection() as conn:
            created = await franchisors.create_franchisor(
                conn, principal(), request.franchisor_id, request.franchisor.display_name
            )
        return franchisor_pb(created)

    async def GetFranchisor(
        self, request: pb.GetFranchisorRequest, context: grpc.aio.ServicerContext
    ) -> pb.Franchisor:
        scope = parse_franchisor(request.name)
        async with self._pool.connection() as conn:
            return franchisor_pb(await franchisors.get_franchisor(conn, principal(), scope))

    async def ListFranchisors(
        self, request: pb.ListFranchisorsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListFranchisorsResponse:
        page = page_request(franchisors.COLLECTION, request.page_size, request.page_token)
        async with self._pool.connection() as conn:
            found, token = await franchisors.list_franchisors(conn, principal(), page)
        return pb.ListFranchisorsResponse(
            franchisors=[franchisor_pb(f) for f in found], next_page_token=token
        )

    async def UpdateFranchisor(
        self, request: pb.UpdateFranchisorRequest, context: grpc.aio.ServicerContext
    ) -> pb.Franchisor:
        require(request, "franchisor")
        scope = parse_franchisor(request.franchisor.name, "franchisor.name")
        fields = masked_fields(request.update_mask.paths, FRANCHISOR_MASK_PATHS)
        wanted = request.franchisor
        star = "*" in request.update_mask.paths
        opt_out_scope = opt_out_scope_input(wanted.opt_out_scope, fields, star)
        report_settings = report_settings_input(wanted, fields, star)
        # unset under "*" leaves it: a client that knows nothing of the field changes nothing
        infer_language = (
            wanted.infer_contact_language
            if "infer_contact_language" in fields
            and (not star or wanted.HasField("infer_contact_language"))
            else None
        )
        async with self._pool.connection() as conn:
            updated = await franchisors.update_franchisor(
                conn,
                principal(),
                scope,
                display_name=wanted.display_name if "display_name" in fields else None,
                slack_channel_id=wanted.slack_channel_id if "slack_channel_id" in fields else None,
                etag=wanted.etag,
                opt_out_scope=opt_out_scope,
                report_settings=report_settings,
                infer_contact_language=infer_language,
            )
        return franchisor_pb(updated)

    async def CreateLocation(
        self, request: pb.CreateLocationRequest, context: grpc.aio.ServicerContext
    ) -> pb.Location:
        parent = parse_franchisor(request.parent, "parent")
        require(request, "location")
        async with self._pool.connection() as conn:
            created = await locations.create_location(
                conn, principal(), parent, request.location_id, location_input(request.location)
            )
        return location_pb(created)

    async def GetLocation(
        self, request: pb.GetLocationRequest, context: grpc.aio.ServicerContext
    ) -> pb.Location:
        scope = parse_location(request.name)
        async with self._pool.connection() as conn:
            return location_pb(await locations.get_location(conn, principal(), scope))

    async def ListLocations(
        self, request: pb.ListLocationsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListLocationsResponse:
        parent = parse_franchisor(request.parent, "parent")
        page = page_request(f"{parent.name}/locations", request.page_size, request.page_token)
        async with self._pool.connection() as conn:
            found, token = await locations.list_locations(conn, principal(), parent, page)
        response = pb.ListLocationsResponse(next_page_token=token)
        add = response.locations.add
        for loc in found:
            fill_location(add(), loc)
        return response

    async def UpdateLocation(
        self, request: pb.UpdateLocationRequest, context: grpc.aio.ServicerContext
    ) -> pb.Location:
        require(request, "location")
        scope = parse_location(request.location.name, "location.name")
        async with self._pool.connection() as conn:
            updated = await locations.update_location(
                conn,
                principal(),
                scope,
                location_input(request.location),
                list(request.update_mask.paths),
                request.location.etag,
            )
        return location_pb(updated)

    async def CreateStaffMember(
        self, request: pb.CreateStaffMemberRequest, context: grpc.aio.ServicerContext
    ) -> pb.StaffMember:
        parent = parse_scope(request.parent, "parent")
        require(request, "staff_member")
        member = request.staff_member
        async with self._pool.connection() as conn:
            created = await staff.create_staff_member(
                conn,
                principal(),
                parent,
                request.staff_member_id,
                member.display_name,
                role_input(member.role),
                member.slack_user_id,
                member.email,
            )
        return staff_member_pb(created)

    async def ListStaffMembers(
        self, request: pb.ListStaffMembersRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListStaffMembersResponse:
        parent = parse_scope(request.parent, "parent")
        page = page_request(
            f"{parent.name}/{staff.COLLECTION}", request.page_size, request.page_token
        )
        async with self._pool.connection() as conn:
            found, token = await staff.list_staff_members(conn, principal(), parent, page)
        return pb.ListStaffMembersResponse(
            staff_members=[staff_member_pb(m) for m in found], next_page_token=token
        )

    async def DeleteStaffMember(
        self, request: pb.DeleteStaffMemberRequest, context: grpc.aio.ServicerContext
    ) -> empty_pb2.Empty:
        name = parse_child(request.name, staff.COLLECTION)
        async with self._pool.connection() as conn:
            await staff.delete_staff_member(conn, principal(), name)
        return empty_pb2.Empty()

    async def CreateApiKey(
        self, request: pb.CreateApiKeyRequest, context: grpc.aio.ServicerContext
    ) -> pb.CreateApiKeyResponse:
        parent = parse_scope(request.parent, "parent")
        require(request, "api_key")
        async with self._pool.connection() as conn:
            issued = await api_keys.create_api_key(
                conn,
                principal(),
                parent,
                request.api_key_id,
                request.api_key.display_name,
                role_input(request.api_key.role),
            )
        return pb.CreateApiKeyResponse(api_key=api_key_pb(issued.key), secret=issued.token)

    async def ListApiKeys(
        self, request: pb.ListApiKeysRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListApiKeysResponse:
        parent = parse_scope(request.parent, "parent")
        page = page_request(
            f"{parent.name}/{api_keys.COLLECTION}", request.page_size, request.page_token
        )
        async with self._pool.connection() as conn:
            found, token = await api_keys.list_api_keys(conn, principal(), parent, page)
        return pb.ListApiKeysResponse(
            api_keys=[api_key_pb(k) for k in found], next_page_token=token
        )

    async def RevokeApiKey(
        self, request: pb.RevokeApiKeyRequest, context: grpc.aio.ServicerContext
    ) -> pb.ApiKey:
        name = parse_child(request.name, api_keys.COLLECTION)
        async with self._pool.connection() as conn:
            revoked = await api_keys.revoke_api_key(conn, principal(), name)
        self._keys.forget(revoked.name)
        return api_key_pb(revoked)
