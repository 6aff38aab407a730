"""The dependency rule, checked on the source (house style: imports point inward).

A router translates HTTP to one application call: what it needs of the adapters comes
through the composition root (``api/bootstrap.py``) and ``api/deps.py``, never by importing
an adapter, and it shares nothing with a sibling router. The domain is pure: the standard
library, ``eventsourcing.domain`` and itself. The application declares the ports the adapters
implement, so it imports no adapter, and neither it nor an adapter imports the API.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ROUTERS = sorted(p for p in (ROOT / "api" / "routers").glob("*.py") if p.name != "__init__.py")
DOMAIN = sorted((ROOT / "domain").glob("*.py"))
APPLICATION = sorted((ROOT / "application").rglob("*.py"))
ADAPTERS = sorted((ROOT / "adapters").rglob("*.py"))

KNOWN_EXCEPTIONS: dict[str, set[str]] = {}


def imported_modules(path: Path, package: str | None = None) -> set[str]:
    """Every module ``path`` imports, absolute (a relative import is resolved against its
    package), and every name imported from one as if it were a submodule."""
    if package is None:
        package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            found.add(module)
            # ``from api.routers import wallet`` imports the module ``api.routers.wallet``.
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def is_within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def test_there_are_routers_and_domain_modules_to_check() -> None:
    assert len(ROUTERS) >= 8
    assert ROOT / "domain" / "wallet.py" in DOMAIN
    assert ROOT / "application" / "ledger.py" in APPLICATION
    assert ROOT / "adapters" / "users.py" in ADAPTERS


@pytest.mark.parametrize("path", ROUTERS, ids=lambda p: p.name)
def test_a_router_imports_no_adapter_and_no_sibling_router(path: Path) -> None:
    siblings = {f"api.routers.{p.stem}" for p in ROUTERS} - {f"api.routers.{path.stem}"}
    forbidden = {m for m in imported_modules(path) if is_within(m, "adapters") or m in siblings}
    known = KNOWN_EXCEPTIONS.get(path.name, set())
    unexpected = {m for m in forbidden if not any(is_within(m, k) for k in known)}
    assert not unexpected, sorted(unexpected)


@pytest.mark.parametrize("path", DOMAIN, ids=lambda p: p.name)
def test_the_domain_imports_only_the_standard_library_and_eventsourcing_domain(
    path: Path,
) -> None:
    def allowed(module: str) -> bool:
        top = module.split(".")[0]
        return (
            top in sys.stdlib_module_names
            or top == "__future__"
            or is_within(module, "domain")
            or is_within(module, "eventsourcing.domain")
        )

    outside = {m for m in imported_modules(path) if not allowed(m)}
    assert not outside, sorted(outside)


@pytest.mark.parametrize("path", APPLICATION, ids=lambda p: p.name)
def test_the_application_imports_no_adapter_and_no_api(path: Path) -> None:
    inward = {m for m in imported_modules(path) if is_within(m, "adapters") or is_within(m, "api")}
    assert not inward, sorted(inward)


@pytest.mark.parametrize("path", ADAPTERS, ids=lambda p: p.name)
def test_an_adapter_imports_no_api(path: Path) -> None:
    outward = {m for m in imported_modules(path) if is_within(m, "api")}
    assert not outward, sorted(outward)


def test_the_check_catches_an_adapter_or_sibling_import_however_written(
    tmp_path: Path,
) -> None:
    """The rule is not vacuous."""
    probe = tmp_path / "probe.py"
    probe.write_text(
        "import adapters\n"
        "from adapters.users import AuthUser\n"
        "from api.routers import wallet\n"
        "from .challenges import visible_challenge\n"
        "from .. import deps\n"
    )
    found = imported_modules(probe, package="api.routers")
    assert {
        "adapters",
        "adapters.users",
        "api.routers.wallet",
        "api.routers.challenges",
        "api.deps",
    } <= found
