"""The project documents itself: no file of it points outside the repository (a user's clone has
nothing beside it), and every relative link in its Markdown leads to a file that is there."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SKIP_DIRS = {".git", ".venv", ".reengage", "node_modules", "__pycache__", ".mypy_cache"}
SKIP_DIRS |= {".ruff_cache", ".pytest_cache", ".hypothesis", "build", "dist"}
TEXT_SUFFIXES = {".md", ".py", ".proto", ".pyi", ".sql", ".json", ".toml", ".yaml", ".yml", ".cfg"}
TEXT_NAMES = {"Makefile", "run"}
# what a reference to a document outside the repository looks like
OUTSIDE = re.compile(r"\.\./shared/|\b(?:DESIGN|COMPLIANCE|STYLE)\.md\b|/work/")
LINK = re.compile(r"\]\(([^)\s]+)\)")


def project_files() -> list[Path]:
    found = []
    for path in ROOT.rglob("*"):
        if any(part in SKIP_DIRS or part.endswith(".egg-info") for part in path.parts):
            continue
        if path.is_file() and (path.suffix in TEXT_SUFFIXES or path.name in TEXT_NAMES):
            found.append(path)
    return sorted(found)


def test_no_file_points_outside_the_repository() -> None:
    me = Path(__file__).resolve()
    hits = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()[:100]}"
        for path in project_files()
        if path != me
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if OUTSIDE.search(line)
    ]
    assert not hits, "references outside the repository:\n" + "\n".join(hits)


@pytest.mark.parametrize(
    "document",
    sorted(str(p.relative_to(ROOT)) for p in project_files() if p.suffix == ".md"),
)
def test_every_relative_link_leads_to_a_file_of_the_project(document: str) -> None:
    path = ROOT / document
    broken = []
    for target in LINK.findall(path.read_text(encoding="utf-8")):
        if re.match(r"^[a-z]+:", target) or target.startswith("#"):
            continue  # a URL (http://localhost…) or an anchor in the same page
        resolved = (path.parent / target.split("#", 1)[0]).resolve()
        if not resolved.is_relative_to(ROOT) or not resolved.exists():
            broken.append(target)
    assert not broken, f"{document}: links to nothing in the project: {broken}"


def test_the_readme_names_the_documents_the_project_keeps() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for document in ("docs/design.md", "docs/architecture.md", "docs/compliance.md"):
        assert f"]({document})" in readme
        assert (ROOT / document).exists()
