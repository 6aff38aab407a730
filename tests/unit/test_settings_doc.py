"""docs/settings.md lists every setting the code reads, and nothing that no longer exists.

Settings models are discovered, not listed: every module of ``adapters`` and ``application`` is
imported and every `BaseSettings` subclass defined in them is a model; each of its fields is
set by one environment variable (``application.settings.variables``), and perhaps by an old
name (``old_names``). The page lists each
variable in the first column of a table row: ``| `NAME` | default | meaning |``.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from pathlib import Path

from pydantic_settings import BaseSettings

import adapters
import application
from application.settings import old_names, variables

PAGE = Path(__file__).resolve().parents[2] / "docs" / "settings.md"
PACKAGES = (adapters, application)


def settings_models() -> list[type[BaseSettings]]:
    for package in PACKAGES:
        for module in pkgutil.walk_packages(package.__path__, f"{package.__name__}."):
            importlib.import_module(module.name)
    found: list[type[BaseSettings]] = []
    pending = list(BaseSettings.__subclasses__())
    while pending:
        model = pending.pop()
        pending.extend(model.__subclasses__())
        if model.__module__.partition(".")[0] in {p.__name__ for p in PACKAGES}:
            found.append(model)
    return found


def variables_in_code() -> dict[str, str]:
    """Variable → the model field that reads it (old names included)."""
    found = {}
    for model in settings_models():
        found.update({v: f"{model.__name__}.{f}" for f, v in variables(model).items()})
        found.update({v: f"{model.__name__}.{f}" for v, f in old_names(model).items()})
    return found


def documented_variables() -> set[str]:
    found = set()
    for line in PAGE.read_text().splitlines():
        if line.startswith("| `"):
            first_cell = line.split("|")[1]
            found.update(re.findall(r"`([^`]+)`", first_cell))
    return found


def test_the_settings_models_are_found() -> None:
    names = {model.__name__ for model in settings_models()}
    assert {"LedgerSettings", "StoreSettings", "ProcessSettings", "ServiceSettings"} <= names


def test_every_setting_the_code_reads_is_documented() -> None:
    missing = {
        variable: field
        for variable, field in variables_in_code().items()
        if variable not in documented_variables()
    }
    assert not missing, f"add these to docs/settings.md: {missing}"


def test_every_documented_setting_is_read_by_the_code() -> None:
    unknown = documented_variables() - set(variables_in_code())
    assert not unknown, f"docs/settings.md lists settings no model reads: {sorted(unknown)}"
