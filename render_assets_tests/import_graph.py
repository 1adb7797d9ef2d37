"""A package's import graph, read from its source with `ast` (nothing is imported).

Every import statement counts wherever it stands: at module level, in a class body, inside a
function, under `if TYPE_CHECKING:`. A function's import is a dependency all the same, only a later
one, so each import also says whether it runs when its module is imported (`lazy`).
"""

from __future__ import annotations

import ast
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Import:
    importer: str  # the importing module, dotted
    imported: str  # a module or package of the project, or a third-party module, dotted
    line: int
    lazy: bool  # inside a function or under TYPE_CHECKING: not run when the importer is imported


def package_modules(package_dir: Path) -> dict[str, Path]:
    """Every module of the package under `package_dir`, by dotted name (a package by its own)."""
    modules = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = path.relative_to(package_dir.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def package_imports(package_dir: Path) -> list[Import]:
    modules = package_modules(package_dir)
    return [
        found
        for name, path in modules.items()
        for found in module_imports(name, path.read_text(), is_package=path.name == "__init__.py", known=modules)
    ]


def module_imports(module: str, source: str, *, is_package: bool, known: Collection[str]) -> list[Import]:
    """The imports of one module's source. `known`: the project's modules, so that `from a import b`
    resolves to module `a.b` when there is one and to `a` otherwise."""
    # A relative import counts from the module's package: the module itself when it is one.
    package = module if is_package else module.rpartition(".")[0]

    def walk(node: ast.AST, lazy: bool) -> Iterator[Import]:
        if isinstance(node, ast.Import):
            yield from (Import(module, alias.name, node.lineno, lazy) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            source = _absolute(node, package)
            for alias in node.names:
                submodule = f"{source}.{alias.name}"
                yield Import(module, submodule if submodule in known else source, node.lineno, lazy)
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            for statement in node.body:
                yield from walk(statement, lazy=True)
            for statement in node.orelse:
                yield from walk(statement, lazy)
        else:
            lazy = lazy or isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
            for child in ast.iter_child_nodes(node):
                yield from walk(child, lazy)

    return list(walk(ast.parse(source), lazy=False))


def _absolute(statement: ast.ImportFrom, package: str) -> str:
    if not statement.level:
        return statement.module or ""
    parts = package.split(".")
    base = parts[: len(parts) - (statement.level - 1)]
    return ".".join([*base, statement.module] if statement.module else base)


def _is_type_checking(test: ast.expr) -> bool:
    """`if TYPE_CHECKING:` or `if typing.TYPE_CHECKING:`."""
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )
