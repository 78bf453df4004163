"""ZenML cache policies: the default key plus the source of every project module a step imports."""

from __future__ import annotations

import ast
import functools
import importlib
import importlib.util
from pathlib import Path

from zenml.config.cache_policy import CachePolicy

PROJECT_PACKAGES = ("fercore", "steps", "materializers")


def _imported_names(source: str) -> set[str]:
    """Every dotted name an import statement in ``source`` names (a module, or a name in one)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _project_module(name: str) -> str | None:
    """``name`` if it is a project module (a package's parents are imported with it), else None."""
    if name.split(".")[0] not in PROJECT_PACKAGES:
        return None
    try:
        return name if importlib.util.find_spec(name) is not None else None
    except ModuleNotFoundError:  # "fercore.constants.CLASS_NAMES": a name in a module, not a module
        return None


@functools.cache
def _direct_imports(module: str) -> tuple[str, ...]:
    """The project modules ``module``'s source imports (read once per process: every step asks)."""
    source = Path(importlib.util.find_spec(module).origin).read_text()
    return tuple(m for m in map(_project_module, _imported_names(source)) if m)


def project_imports(module: str) -> list[str]:
    """``module`` and every project module it imports, directly or through others, read from the source
    (an import inside a function counts), with the packages they belong to."""
    seen: set[str] = set()
    todo = [module]
    while todo:
        name = todo.pop()
        parts = name.split(".")
        for parent in (".".join(parts[:i]) for i in range(1, len(parts) + 1)):
            if parent in seen:
                continue
            seen.add(parent)
            todo.extend(_direct_imports(parent))
    return sorted(seen)


def cache_policy(step_module: str) -> CachePolicy:
    """ZenML's default cache key (step code, parameters, inputs) plus the source of every project module
    ``step_module`` imports, transitively.

    ZenML hashes a step's own code, not the plain Python it calls: a change in ``fercore.constants`` (the
    class order) must rerun ingestion although ``steps/ingest_data.py`` is unchanged.
    """
    modules = project_imports(step_module)
    for name in modules:  # ZenML loads a source as an attribute of its parent: every one must be imported
        importlib.import_module(name)
    # by import path: a package passed as an object resolves to "<package>.__init__", which ZenML cannot load
    return CachePolicy(source_dependencies=modules)
