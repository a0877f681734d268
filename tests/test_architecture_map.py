"""docs/architecture.md is the map of the tree: every module of tenants/, workflows/, bots/ and
server/ is named there, each tenants/ module in its own package's row."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MAP = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
CONTEXTS = sorted(
    p.name
    for p in (ROOT / "tenants").iterdir()
    if (p / "__init__.py").exists() and p.name != "migrations"
)


def _modules(folder: Path) -> list[str]:
    return sorted(p.stem for p in folder.glob("*.py") if p.stem != "__init__")


@pytest.mark.parametrize("context", CONTEXTS)
def test_every_domain_module_is_in_its_contexts_row(context: str) -> None:
    row = next((line for line in MAP.splitlines() if line.startswith(f"| `{context}` |")), None)
    assert row is not None, f"docs/architecture.md has no row for tenants/{context}"
    missing = [m for m in _modules(ROOT / "tenants" / context) if f"`{m}`" not in row]
    assert not missing, f"tenants/{context}: {missing} not in its row of docs/architecture.md"


@pytest.mark.parametrize(
    "folder",
    [
        "workflows",
        "bots",
        "server",
        "server/grpc",
        "server/http",
        "server/http/dashboard",
        "server/cli",
        "server/carriers",
    ],
)
def test_every_edge_and_workflow_module_is_on_the_map(folder: str) -> None:
    missing = [m for m in _modules(ROOT / folder) if not re.search(rf"\b{re.escape(m)}\b", MAP)]
    assert not missing, f"{folder}: {missing} not named in docs/architecture.md"


def test_the_map_names_the_layers_the_import_contracts_enforce() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    block = pyproject[pyproject.index('containers = ["tenants"]') :]
    layers = re.findall(
        r'^\s+"([a-z_]+)",$', block[: block.index("]", block.index("layers"))], re.M
    )
    assert sorted(layers) == CONTEXTS
    for context in layers:
        assert f"| `{context}` |" in MAP
