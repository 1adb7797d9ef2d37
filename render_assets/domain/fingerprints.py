"""Short, stable digests of what decides an output: values, and the code of modules.

Code is read as Python's syntax tree without docstrings, so a comment, a docstring or a
reformatting changes no digest, while any change to what the code does does. `logic_digest`
reads only the functions and classes of a module: its module-level assignments (tables of words,
thresholds) are data, which callers version per use instead (see `prompt.prompt_rules`).
"""

from __future__ import annotations

import ast
import hashlib
import inspect
import json
from types import ModuleType
from typing import Any

DIGEST_CHARS = 12


def digest(value: Any) -> str:
    """A digest of JSON-able data (dataclasses and tuples as their JSON), key order ignored."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=_jsonable)
    return hashlib.sha256(text.encode()).hexdigest()[:DIGEST_CHARS]


def _jsonable(value: Any) -> Any:
    if hasattr(value, "__dataclass_fields__"):
        return {name: getattr(value, name) for name in value.__dataclass_fields__}
    if isinstance(value, set | frozenset):
        return sorted(value)
    raise TypeError(f"cannot digest a {type(value).__name__}")


def _without_docstrings(node: ast.AST) -> ast.AST:
    for child in ast.walk(node):
        body = getattr(child, "body", None)
        if (
            isinstance(child, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
            and body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)
        ):
            child.body = body[1:] or [ast.Pass()]
    return node


def _tree(module: ModuleType) -> ast.Module:
    return ast.parse(inspect.getsource(module))


def source_digest(*modules: ModuleType) -> str:
    """The whole code of the modules: functions, classes and module-level values."""
    return digest([ast.dump(_without_docstrings(_tree(module))) for module in modules])


def logic_digest(*modules: ModuleType) -> str:
    """Only the functions and classes of the modules, not their module-level data."""
    logic = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
    return digest(
        [
            ast.dump(_without_docstrings(node))
            for module in modules
            for node in _tree(module).body
            if isinstance(node, logic)
        ]
    )
