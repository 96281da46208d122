"""The declared dependencies: every import is declared, and CI's pins are the declared floors."""

from __future__ import annotations

import ast
import sys
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "oauth2_token_manager"
CONSTRAINTS = ROOT / "constraints" / "lowest.txt"
DEV_EXTRAS = {"dev"}
"""Extras that hold test tools, not packages the library imports."""

IMPORT_NAMES: dict[str, str] = {}
"""Distribution name of each top-level import named otherwise (none today)."""
STDLIB = sys.stdlib_module_names | {"tomllib"}
"""The standard library of the running Python, and the modules newer Pythons add to it."""


def _project() -> dict[str, Any]:
    with (ROOT / "pyproject.toml").open("rb") as file:
        project: dict[str, Any] = tomllib.load(file)["project"]
    return project


def _declared() -> list[Requirement]:
    """The runtime requirements and those of the extras the library imports."""
    project = _project()
    requirements = list(project["dependencies"])
    for extra, extra_requirements in project["optional-dependencies"].items():
        if extra not in DEV_EXTRAS:
            requirements += extra_requirements
    return [Requirement(text) for text in requirements]


def _floors() -> dict[str, tuple[Version, str]]:
    """Name -> (floor, marker) of each declared requirement; each must be exactly ``>=X``."""
    floors: dict[str, tuple[Version, str]] = {}
    for requirement in _declared():
        specifiers = list(requirement.specifier)
        assert len(specifiers) == 1 and specifiers[0].operator == ">=", (
            f"{requirement}: declare a floor, and only a floor (>=)"
        )
        name = canonicalize_name(requirement.name)
        assert name not in floors, f"{name} is declared twice"
        floors[name] = (Version(specifiers[0].version), str(requirement.marker or ""))
    return floors


def _pins() -> dict[str, tuple[Version, str]]:
    """Name -> (pinned version, marker) of each line of the constraints file."""
    pins: dict[str, tuple[Version, str]] = {}
    for line in CONSTRAINTS.read_text(encoding="utf-8").splitlines():
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        requirement = Requirement(text)
        specifiers = list(requirement.specifier)
        assert len(specifiers) == 1 and specifiers[0].operator == "==", f"{text}: pin with =="
        name = canonicalize_name(requirement.name)
        assert name not in pins, f"{name} is pinned twice"
        pins[name] = (Version(specifiers[0].version), str(requirement.marker or ""))
    return pins


def _third_party_imports() -> set[str]:
    """Top-level names of every absolute import of a non-stdlib module in the package."""
    names: set[str] = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return {name for name in names if name not in STDLIB and name != PACKAGE.name}


def test_constraints_pin_exactly_the_declared_floors() -> None:
    """constraints/lowest.txt pins each declared requirement (and extra) to its pyproject floor."""
    assert _pins() == _floors()


def test_every_imported_package_is_declared_and_every_declared_one_imported() -> None:
    """The package's third-party imports and its declared (non-dev) requirements are one set."""
    imported = {canonicalize_name(IMPORT_NAMES.get(name, name)) for name in _third_party_imports()}
    assert imported == set(_floors())
