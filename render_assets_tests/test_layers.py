"""The layer rule of docs/architecture.md, executable: imports point downwards only.

The import graph is read from the source (`import_graph.py`), function-level imports and those
under `if TYPE_CHECKING` included, so a lazy import cannot hide a dependency.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from enum import Enum
from pathlib import Path

import render_assets
from render_assets_tests.import_graph import Import, module_imports, package_imports, package_modules

PACKAGE = "render_assets"
PACKAGE_DIR = Path(render_assets.__file__).parent


class Layer:
    def __init__(self, rank: int | None, also: Collection[str] = ()) -> None:
        self.rank = rank  # None: off the ladder, so it imports only what `also` names
        self.also = frozenset(also)  # layers it may import besides those of a lower rank


# A layer is a folder (or module) directly under render_assets/. It may import its own modules,
# every layer of a lower rank, and the layers its last column names; nothing else of the project.
# fmt: off
LAYERS: dict[str, Layer] = {
    # layer              rank  also may import
    "config":           Layer(0),
    "observability":    Layer(0, {"config"}),  # its setup reads the log format and the Sentry DSN
    "domain":           Layer(1),
    "persistence":      Layer(2),
    # Same rank: clients of outside systems and image providers; neither needs the other.
    "adapters":         Layer(3),
    "providers":        Layer(3),
    "services":         Layer(4),
    # Entry points: each starts on its own, so none imports another; the CLI starts them all.
    "web":              Layer(5),
    "orchestration":    Layer(5),
    "bench":            Layer(5, {"migrations"}),
    "cli":              Layer(5, {"migrations", "web", "orchestration", "bench"}),
    # Off the ladder: only the entry points that name them import them.
    "migrations":       Layer(None, {"persistence", "config"}),
    "container_health": Layer(None),  # the image's health check: the standard library only
}
# fmt: on


class When(Enum):
    ANYWHERE = "anywhere"
    LAZILY = "lazily"  # inside a function or under TYPE_CHECKING: the layer starts without it


# Third-party packages only some layers may import; no other layer imports them at all.
# fmt: off
CONFINED: dict[str, dict[str, When]] = {
    # dagster and dagster_*: everything below the entry points is plain Python, tested without
    # Dagster, and the progress server starts without it; the CLI's and the benchmark's own
    # modules import it only in the commands that use it.
    "dagster": {
        "orchestration": When.ANYWHERE,
        "cli":           When.LAZILY,
        "bench":         When.LAZILY,
    },
    # SQL lives in persistence (and the migrations); entry points may also reach the database.
    "sqlalchemy": {
        "persistence":   When.ANYWHERE,
        "migrations":    When.ANYWHERE,
        "web":           When.ANYWHERE,
        "orchestration": When.ANYWHERE,
        "bench":         When.ANYWHERE,
        "cli":           When.ANYWHERE,
    },
    # The wheel ships the product only.
    "render_assets_tests": {},
}
# fmt: on


def layer_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == PACKAGE and parts[1] in LAYERS else None


def may_import(importer: str, imported: str) -> bool:
    if importer == imported:
        return True
    low, high = LAYERS[imported], LAYERS[importer]
    return imported in high.also or (low.rank is not None and high.rank is not None and low.rank < high.rank)


def confined_package(module: str) -> str | None:
    top = module.split(".")[0]
    family = "dagster" if top.startswith("dagster_") else top
    return family if family in CONFINED else None


def violation(found: Import) -> str | None:
    """Why this import breaks the rule, as `importer -> imported (reason)`; None when it does not."""
    arrow = f"{found.importer} -> {found.imported}"
    project = found.imported.split(".")[0] == PACKAGE
    package = None if project else confined_package(found.imported)
    if found.imported == PACKAGE or not (project or package):
        return None  # the package's __init__ (a docstring, run by every import anyway), or free to use
    importer = layer_of(found.importer)
    imported = layer_of(found.imported) if project else package
    if importer is None or imported is None:
        stray = found.importer if importer is None else found.imported
        return f"{arrow} ({stray} is in no layer: add its folder to LAYERS)"
    if project:
        return None if may_import(importer, imported) else f"{arrow} (layer {importer} may not import layer {imported})"
    when = CONFINED[imported].get(importer)
    if when is None:
        return f"{arrow} (layer {importer} may not import {imported})"
    if when is When.LAZILY and not found.lazy:
        return f"{arrow} (layer {importer} may import {imported} only lazily)"
    return None


def violations(imports: Iterable[Import], allowed: Collection[tuple[str, str]] = ()) -> list[str]:
    found = {
        reason
        for each in imports
        if (each.importer, each.imported) not in allowed and (reason := violation(each)) is not None
    }
    return sorted(found)


def test_imports_follow_the_layers() -> None:
    found = violations(package_imports(PACKAGE_DIR))
    assert not found, "imports against the layer rule (docs/architecture.md):\n" + "\n".join(found)


def test_every_module_is_in_a_layer() -> None:
    assert [module for module in package_modules(PACKAGE_DIR) if module != PACKAGE and layer_of(module) is None] == []


def test_the_checker_catches_violations() -> None:
    # A synthetic domain module breaking each rule once, plus imports the rule allows.
    source = """
from typing import TYPE_CHECKING

import numpy
import sqlalchemy.orm

from render_assets import config
from render_assets.domain import payload
from ..providers.base import SceneElement
from render_assets_tests.fakes import providers

if TYPE_CHECKING:
    from render_assets.orchestration import definitions


def later() -> None:
    import dagster_postgres
"""
    known = {
        "render_assets.config",
        "render_assets.domain.payload",
        "render_assets.providers.base",
        "render_assets.orchestration.definitions",
    }
    imports = module_imports("render_assets.domain.synthetic", source, is_package=False, known=known)

    assert violations(imports) == [
        "render_assets.domain.synthetic -> dagster_postgres (layer domain may not import dagster)",
        "render_assets.domain.synthetic -> render_assets.orchestration.definitions"
        " (layer domain may not import layer orchestration)",
        "render_assets.domain.synthetic -> render_assets.providers.base (layer domain may not import layer providers)",
        "render_assets.domain.synthetic -> render_assets_tests.fakes (layer domain may not import render_assets_tests)",
        "render_assets.domain.synthetic -> sqlalchemy.orm (layer domain may not import sqlalchemy)",
    ]
    allowed = {("render_assets.domain.synthetic", "sqlalchemy.orm")}
    assert len(violations(imports, allowed)) == 4


def test_the_checker_tells_lazy_imports_apart() -> None:
    source = """
import dagster


def run() -> None:
    from dagster import DagsterInstance
"""
    imports = module_imports("render_assets.cli.synthetic", source, is_package=False, known=set())

    assert [(each.imported, each.lazy) for each in imports] == [("dagster", False), ("dagster", True)]
    assert violations(imports) == ["render_assets.cli.synthetic -> dagster (layer cli may import dagster only lazily)"]
