"""Which scopes a list of brand-or-location resources (templates, sequences) covers.

At a location: its own resources and its brand's. At a franchisor: the brand's, and on request
every location's (franchisor principals only). The answer goes into the SQL WHERE clause.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from tenants.core.errors import PermissionDenied
from tenants.core.names import TenantScope
from tenants.org.access import Action, Principal, authorize, visible_locations


class ListScope(StrEnum):
    DEFAULT = "default"  # at a location: its own + brand; at a franchisor: brand only
    BRAND = "brand"
    LOCATION = "location"  # at a franchisor: every location's
    ALL = "all"


@dataclass(frozen=True)
class ScopeFilter:
    brand: bool  # include brand-level rows
    local: bool  # include location-level rows
    only_location: str | None  # ... of this location only (None: every location)


def scope_filter(
    principal: Principal, read: Action, parent: TenantScope, scope: ListScope
) -> ScopeFilter:
    authorize(principal, read, parent)
    brand = scope in (ListScope.DEFAULT, ListScope.BRAND, ListScope.ALL)
    if parent.is_location:
        local = scope in (ListScope.DEFAULT, ListScope.LOCATION, ListScope.ALL)
        return ScopeFilter(brand, local, parent.location_id)
    local = scope in (ListScope.LOCATION, ListScope.ALL)
    only = visible_locations(principal, parent)
    if local and only is not None:
        raise PermissionDenied(
            "only franchisor principals list every location's resources", resource=parent.name
        )
    return ScopeFilter(brand, local, only)


SQL = (
    "((%(brand)s AND t.location_id IS NULL) OR (%(local)s AND t.location_id IS NOT NULL"
    " AND (%(only)s::text IS NULL OR t.location_id = %(only)s)))"
)


def sql_params(f: ScopeFilter) -> dict[str, object]:
    return {"brand": f.brand, "local": f.local, "only": f.only_location}
