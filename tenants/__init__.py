"""The domain and its storage, as packages by bounded context; each imports only those below
it (enforced by import-linter, see pyproject.toml and docs/architecture.md):

    reports · inbound · enrollment · sequences · messages · content · contacts · followups ·
    org · compliance · core

`migrations/` holds the SQL schema."""
