"""The layers keep their proportions (issue 9, "one place for each thing").

``api/`` translates HTTP and the command line, so it stays small: at most a fifth of the
production lines; the business lives in ``domain/``, the largest of ``domain/``,
``application/``, ``adapters/`` and ``api/``. Lines are counted as ``wc -l`` counts them, over
every ``*.py`` file of the five production packages (tests, migrations and benchmarks are not
production code).
"""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("domain", "application", "projections", "adapters", "api")
MAX_API_SHARE = 0.20


def lines(package: str, root: Path = ROOT) -> int:
    """What ``cat package/**/*.py | wc -l`` prints: newline characters."""
    return sum(p.read_bytes().count(b"\n") for p in (root / package).rglob("*.py"))


def sizes(root: Path = ROOT) -> dict[str, int]:
    return {package: lines(package, root) for package in PACKAGES}


def test_api_is_at_most_a_fifth_of_the_production_lines() -> None:
    counted = sizes()
    share = counted["api"] / sum(counted.values())
    assert share <= MAX_API_SHARE, f"api/ is {share:.1%} of {counted}"


def test_the_domain_is_the_largest_of_domain_application_adapters_and_api() -> None:
    counted = sizes()
    rivals = {k: v for k, v in counted.items() if k in ("application", "adapters", "api")}
    assert all(counted["domain"] > n for n in rivals.values()), counted


def test_the_count_is_wc_l_over_every_python_file_of_a_package(tmp_path: Path) -> None:
    """The measure is not vacuous: nested modules count, other files do not."""
    (tmp_path / "api" / "routers").mkdir(parents=True)
    (tmp_path / "api" / "app.py").write_text("a = 1\nb = 2\n")
    (tmp_path / "api" / "routers" / "x.py").write_text("c = 3\n")
    (tmp_path / "api" / "notes.md").write_text("not code\n" * 50)
    assert lines("api", tmp_path) == 3


@pytest.mark.parametrize("package", PACKAGES)
def test_every_production_package_has_code(package: str) -> None:
    assert lines(package) > 0
