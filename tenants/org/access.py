"""The one access module: every permission decision of the platform is made here.

Servicers, the HTTP edge and the Slack bot call `authorize` (or `visible_locations`) and never
re-implement a rule. Decisions use only the principal and the *name* of the target, before any
lookup, so a cross-tenant request is refused whether or not the target exists (no existence
oracle).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from tenants.core.errors import PermissionDenied
from tenants.core.names import TenantScope


class Role(StrEnum):
    OPERATOR = "operator"
    FRANCHISOR_ADMIN = "franchisor_admin"
    FRANCHISOR_VIEWER = "franchisor_viewer"
    LOCATION_MANAGER = "location_manager"
    LOCATION_STAFF = "location_staff"

    @property
    def is_franchisor_role(self) -> bool:
        return self in (Role.FRANCHISOR_ADMIN, Role.FRANCHISOR_VIEWER)

    @property
    def is_location_role(self) -> bool:
        return self in (Role.LOCATION_MANAGER, Role.LOCATION_STAFF)


def role_fits_scope(role: Role, scope: TenantScope) -> bool:
    """Franchisor roles live at franchisor scope, location roles at location scope."""
    return role.is_location_role if scope.is_location else role.is_franchisor_role


@dataclass(frozen=True)
class Principal:
    """Who is calling: an API key or a staff member, with one role at one scope.

    `scope` is None only for operators, who run the platform and belong to no tenant.
    """

    kind: str  # "api_key" | "staff_member" | "system" (the platform itself: `system()`)
    id: str
    role: Role
    scope: TenantScope | None

    def __post_init__(self) -> None:
        if (self.role is Role.OPERATOR) != (self.scope is None):
            raise ValueError("operators, and only operators, have no scope")
        if self.scope is not None and not role_fits_scope(self.role, self.scope):
            raise ValueError(f"role {self.role} does not fit scope {self.scope.name}")

    @property
    def label(self) -> str:
        """How the audit log names this principal (no secrets)."""
        return f"{self.kind}:{self.id}"


def system(label: str) -> Principal:
    """The platform acting on its own behalf (an edge, a workflow, a scan, a seeder): an
    operator with no tenant. `label` names the part in the audit log."""
    return Principal("system", label, Role.OPERATOR, None)


class Action(StrEnum):
    FRANCHISOR_CREATE = "franchisor.create"
    FRANCHISOR_READ = "franchisor.read"
    # listing franchisors: an operator lists them all, anyone else only its own franchisor
    FRANCHISOR_LIST = "franchisor.list"
    # the brand's own settings: display name, brand Slack channel
    FRANCHISOR_UPDATE_SETTINGS = "franchisor.update_settings"
    # whether one location's opt-out suppresses the phone at every location of the brand: a
    # compliance decision of the brand, never delegated to a location
    FRANCHISOR_UPDATE_OPT_OUT_SCOPE = "franchisor.update_opt_out_scope"
    LOCATION_CREATE = "location.create"
    LOCATION_READ = "location.read"
    LOCATION_LIST = "location.list"
    # display name, send window, Slack channel: the location's own operating settings
    LOCATION_UPDATE_SETTINGS = "location.update_settings"
    # time zone and sender numbers: provisioning owned by the brand
    LOCATION_UPDATE_PROVISIONING = "location.update_provisioning"
    STAFF_READ = "staff.read"
    STAFF_MANAGE = "staff.manage"
    API_KEY_READ = "api_key.read"
    API_KEY_MANAGE = "api_key.manage"
    # templates of the target scope: brand templates at a franchisor, a location's at a location
    TEMPLATE_READ = "template.read"
    TEMPLATE_WRITE = "template.write"
    # deciding a location's override of a brand template: franchisor principals only
    TEMPLATE_APPROVE = "template.approve"
    # contacts live at locations: their data, consent, activity and conversation
    CONTACT_READ = "contact.read"
    CONTACT_WRITE = "contact.write"
    # one contact's whole record as a portable file (consent evidence export for a dispute):
    # the brand's admins and viewers and the location's manager, not its staff
    CONTACT_EXPORT_EVIDENCE = "contact.export_evidence"
    # sequences of the target scope, like templates
    SEQUENCE_READ = "sequence.read"
    SEQUENCE_WRITE = "sequence.write"
    # pause, resume, cancel a running enrollment and decide its approvals: the people who work
    # the location's conversations
    ENROLLMENT_STEER = "enrollment.steer"
    # resolving an inbound text flagged for review (opt-out or not): it changes the contact's
    # consent, so the people who may record consent, not everyone who reads replies
    FLAGGED_MESSAGE_RESOLVE = "flagged_message.resolve"
    # a revocation that covers every location of the brand (for good) while the franchisor's
    # opt_out_scope keeps opt-outs to their location: the brand's decision, never one
    # location's (under BRAND every revocation covers the brand, whoever records it)
    CONSENT_REVOKE_BRAND_WIDE = "consent.revoke_brand_wide"
    # reports (tenants.reports.measures): the brand's report and every location's for the
    # franchisor's admins and viewers; a location's own report (and a brand sequence's report
    # at that location) for its manager and staff; never the brand's report for a location
    REPORT_READ = "report.read"
    # outbound webhook endpoints of the target scope (tenants.integrations.endpoints): at a
    # franchisor the brand's (every location's events), at a location its own; their secrets,
    # deliveries and test events go with managing them
    WEBHOOK_READ = "webhook.read"
    WEBHOOK_MANAGE = "webhook.manage"
    # which activity kind an intake event name records: the brand's vocabulary, set by its
    # admins, readable by everyone of the brand (an intake key's owner must know it)
    EVENT_MAPPING_READ = "event_mapping.read"
    EVENT_MAPPING_WRITE = "event_mapping.write"
    # drafts from the message assistant (tenants.assistant: rewrite, translate) for a brand's or
    # a location's texts: the people who write templates or edit steps before approving them.
    # A draft is never saved or sent, so it changes nothing; viewers only read
    ASSISTANT_DRAFT = "assistant.draft"


_FRANCHISOR_WIDE = {
    # action -> franchisor roles allowed on any scope inside their franchisor
    Action.FRANCHISOR_READ: {Role.FRANCHISOR_ADMIN, Role.FRANCHISOR_VIEWER},
    Action.FRANCHISOR_LIST: {Role.FRANCHISOR_ADMIN, Role.FRANCHISOR_VIEWER},
    Action.FRANCHISOR_UPDATE_SETTINGS: {Role.FRANCHISOR_ADMIN},
    Action.FRANCHISOR_UPDATE_OPT_OUT_SCOPE: {Role.FRANCHISOR_ADMIN},
    Action.LOCATION_CREATE: {Role.FRANCHISOR_ADMIN},
    Action.LOCATION_READ: {Role.FRANCHISOR_ADMIN, Role.FRANCHISOR_VIEWER},
    Action.LOCATION_LIST: {Role.FRANCHISOR_ADMIN, Role.FRANCHISOR_VIEWER},
    Action.LOCATION_UPDATE_SETTINGS: {Role.FRANCHISOR_ADMIN},
    Action.LOCATION_UPDATE_PROVISIONING: {Role.FRANCHISOR_ADMIN},
    Action.STAFF_READ: {Role.FRANCHISOR_ADMIN, Role.FRANCHISOR_VIEWER},
    Action.STAFF_MANAGE: {Role.FRANCHISOR_ADMIN},
    Action.API_KEY_READ: {Role.FRANCHISOR_ADMIN, Role.FRANCHISOR_VIEWER},
    Action.API_KEY_MANAGE: {Role.FRANCHISOR_ADMIN},
    Action.TEMPLATE_READ: {Role.FRANCHISOR_ADMIN, Role.FRANCHISOR_VIEWER},
    Action.TEMPLATE_WRITE: {Role.FRANCHISOR_ADMIN},
    Action.TEMPLATE_APPROVE: {Role.FRANCHISOR_ADMIN},
    Action.CONTACT_READ: {Role.FRANCHISOR_ADMIN, Role.FRANCHISOR_VIEWER},
    Action.CONTACT_WRITE: {Role.FRANCHISOR_ADMIN},
    Action.CONTACT_EXPORT_EVIDENCE: {Role.FRANCHISOR_ADMIN, Role.FRANCHISOR_VIEWER},
    Action.SEQUENCE_READ: {Role.FRANCHISOR_ADMIN, Role.FRANCHISOR_VIEWER},
    Action.SEQUENCE_WRITE: {Role.FRANCHISOR_ADMIN},
    Action.ENROLLMENT_STEER: {Role.FRANCHISOR_ADMIN},
    Action.FLAGGED_MESSAGE_RESOLVE: {Role.FRANCHISOR_ADMIN},
    Action.CONSENT_REVOKE_BRAND_WIDE: {Role.FRANCHISOR_ADMIN},
    Action.REPORT_READ: {Role.FRANCHISOR_ADMIN, Role.FRANCHISOR_VIEWER},
    Action.WEBHOOK_READ: {Role.FRANCHISOR_ADMIN, Role.FRANCHISOR_VIEWER},
    Action.WEBHOOK_MANAGE: {Role.FRANCHISOR_ADMIN},
    Action.EVENT_MAPPING_READ: {Role.FRANCHISOR_ADMIN, Role.FRANCHISOR_VIEWER},
    Action.EVENT_MAPPING_WRITE: {Role.FRANCHISOR_ADMIN},
    Action.ASSISTANT_DRAFT: {Role.FRANCHISOR_ADMIN},
}

_OWN_LOCATION = {
    # action -> location roles allowed on their own location (and, for the franchisor-level
    # reads listed, on their franchisor's node)
    Action.FRANCHISOR_READ: {Role.LOCATION_MANAGER, Role.LOCATION_STAFF},
    Action.FRANCHISOR_LIST: {Role.LOCATION_MANAGER, Role.LOCATION_STAFF},
    Action.LOCATION_READ: {Role.LOCATION_MANAGER, Role.LOCATION_STAFF},
    Action.LOCATION_LIST: {Role.LOCATION_MANAGER, Role.LOCATION_STAFF},
    Action.LOCATION_UPDATE_SETTINGS: {Role.LOCATION_MANAGER},
    Action.STAFF_READ: {Role.LOCATION_MANAGER},
    Action.STAFF_MANAGE: {Role.LOCATION_MANAGER},
    Action.API_KEY_READ: {Role.LOCATION_MANAGER},
    Action.API_KEY_MANAGE: {Role.LOCATION_MANAGER},
    Action.TEMPLATE_READ: {Role.LOCATION_MANAGER, Role.LOCATION_STAFF},
    Action.TEMPLATE_WRITE: {Role.LOCATION_MANAGER},
    Action.CONTACT_READ: {Role.LOCATION_MANAGER, Role.LOCATION_STAFF},
    Action.CONTACT_WRITE: {Role.LOCATION_MANAGER},
    Action.CONTACT_EXPORT_EVIDENCE: {Role.LOCATION_MANAGER},
    Action.SEQUENCE_READ: {Role.LOCATION_MANAGER, Role.LOCATION_STAFF},
    Action.SEQUENCE_WRITE: {Role.LOCATION_MANAGER},
    Action.ENROLLMENT_STEER: {Role.LOCATION_MANAGER, Role.LOCATION_STAFF},
    Action.FLAGGED_MESSAGE_RESOLVE: {Role.LOCATION_MANAGER},
    Action.REPORT_READ: {Role.LOCATION_MANAGER, Role.LOCATION_STAFF},
    Action.WEBHOOK_READ: {Role.LOCATION_MANAGER},
    Action.WEBHOOK_MANAGE: {Role.LOCATION_MANAGER},
    Action.EVENT_MAPPING_READ: {Role.LOCATION_MANAGER, Role.LOCATION_STAFF},
    Action.ASSISTANT_DRAFT: {Role.LOCATION_MANAGER, Role.LOCATION_STAFF},
}

# Actions whose target is the franchisor node but which location principals may perform (their
# results are then narrowed to their own location by `visible_locations`).
_FRANCHISOR_NODE_OK_FOR_LOCATIONS = {
    Action.FRANCHISOR_READ,
    Action.FRANCHISOR_LIST,
    Action.LOCATION_LIST,
    Action.TEMPLATE_READ,  # a location reads its brand's templates
    Action.SEQUENCE_READ,  # and its brand's sequences
    Action.EVENT_MAPPING_READ,  # and its brand's event mapping
}


def can(principal: Principal, action: Action, target: TenantScope | None) -> bool:
    """True when principal may perform action on target (None: the platform itself)."""
    if principal.role is Role.OPERATOR:
        return True
    if target is None or principal.scope is None:
        return False
    if principal.scope.franchisor_id != target.franchisor_id:
        return False
    if principal.role.is_franchisor_role:
        return principal.role in _FRANCHISOR_WIDE.get(action, set())
    if principal.role not in _OWN_LOCATION.get(action, set()):
        return False
    if target.is_location:
        return target.location_id == principal.scope.location_id
    return action in _FRANCHISOR_NODE_OK_FOR_LOCATIONS


def authorize(principal: Principal, action: Action, target: TenantScope | None) -> None:
    """Raises PermissionDenied unless principal may perform action on target."""
    if not can(principal, action, target):
        where = target.name if target is not None else "the platform"
        raise PermissionDenied(
            f"{principal.role.value} may not {action.value} on {where}",
            action=action.value,
            resource=where,
        )


def authorize_grant(principal: Principal, role: Role, scope: TenantScope) -> None:
    """Refuses to hand out a role above the granter's own (staff members and API keys).

    The caller must already hold STAFF_MANAGE / API_KEY_MANAGE on scope; this adds that a
    location manager may grant only location roles at its own location, and nobody but an
    operator creates operators.
    """
    if role is Role.OPERATOR and principal.role is not Role.OPERATOR:
        raise PermissionDenied("only operators create operator credentials", role=role.value)
    if principal.role is Role.LOCATION_MANAGER and not role.is_location_role:
        raise PermissionDenied(
            f"a location manager may not grant {role.value}", role=role.value, resource=scope.name
        )


def visible_locations(principal: Principal, franchisor: TenantScope) -> str | None:
    """The one location a principal is confined to inside franchisor, or None for all.

    Queries put this in their WHERE clause, so a location principal's list is scoped in SQL.
    """
    authorize(principal, Action.LOCATION_LIST, franchisor)
    if principal.scope is not None and principal.scope.is_location:
        return principal.scope.location_id
    return None


def visible_franchisors(principal: Principal) -> str | None:
    """The one franchisor id a principal's list of franchisors is confined to, or None for all
    (operators). Every principal of a tenant sees its own franchisor, so any key can learn the
    brand it acts for; queries put this in their WHERE clause."""
    own = None if principal.scope is None else TenantScope(principal.scope.franchisor_id)
    authorize(principal, Action.FRANCHISOR_LIST, own)
    return None if own is None else own.franchisor_id
