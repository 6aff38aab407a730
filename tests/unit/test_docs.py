"""The documents a user relies on hold together: links resolve and nothing points outside
the repository (a clone has nothing beside it)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# The folder beside a checkout that holds the team's own notes; a clone has no such folder.
OUTSIDE = "../" + "shared"
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: p.name)
def test_every_relative_link_in_a_document_names_a_file_of_the_repository(
    document: Path,
) -> None:
    broken = []
    for target in LINK.findall(document.read_text()):
        if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
            continue
        resolved = (document.parent / target).resolve()
        if not resolved.is_relative_to(ROOT) or not resolved.exists():
            broken.append(target)
    assert broken == []


def test_nothing_in_the_repository_points_outside_it() -> None:
    """Rules are cited from docs/rules.md ("rules §n"), never from a spec a clone lacks."""
    tracked = [
        p
        for folder in ("domain", "application", "projections", "adapters", "api", "docs")
        for p in (ROOT / folder).rglob("*")
        if p.suffix in {".py", ".md"}
    ]
    offenders = [
        str(p.relative_to(ROOT))
        for p in [*tracked, ROOT / "README.md"]
        if OUTSIDE in p.read_text() or "SPEC §" in p.read_text()
    ]
    assert offenders == []
