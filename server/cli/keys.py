"""`reengage keys create`: issues keys straight into the database (the bootstrap path, since
the first operator key cannot come from an API that needs a key)."""

from __future__ import annotations

from tenants.core.names import parse_scope
from tenants.org import api_keys
from tenants.org.access import Principal, Role
from tenants.org.locations import check_exists

CLI = Principal("cli", "reengage-keys-create", Role.OPERATOR, None)


async def create_key_cli(
    database_url: str, *, operator: bool, parent: str | None, role: str | None, display_name: str
) -> tuple[str, str]:
    """Returns (token, resource name) of the new key."""
    import psycopg

    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        if operator:
            issued = await api_keys.issue_key(
                conn, CLI.label, None, "", display_name, Role.OPERATOR
            )
        else:
            if role is None:
                raise SystemExit("reengage keys create: --role is required with --parent")
            scope = parse_scope(parent or "", "--parent")
            await check_exists(conn, scope)
            issued = await api_keys.create_api_key(conn, CLI, scope, "", display_name, Role(role))
    return issued.token, issued.key.name
