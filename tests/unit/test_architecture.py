"""The code's shape: fercore has no ZenML, its packages depend in one direction, no module imports
another's private names, and no module imports itself through others."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROJECT = ("fercore", "steps", "pipelines", "materializers")
# fercore's packages, lowest first: each may import only from itself and the ones before it
LAYERS = [("fercore", "fercore.constants", "fercore.errors", "fercore.tracking.locations"),
          ("fercore.data", "fercore.config"), ("fercore.models",), ("fercore.explain",), ("fercore.tracking",),
          # the maps of a registered version read its local copy; the maps per emotion read the evaluation's predictions
          ("fercore.serving", "fercore.pyfunc", "fercore.explain.registered"),
          ("fercore.evaluation", "fercore.explain.summary", "fercore.explain.figures"), ("fercore.training",),
          ("fercore.monitoring",), ("fercore.promotion",), ("fercore.crontab",)]


def _modules() -> dict[str, Path]:
    found = {}
    for package in PROJECT:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


MODULES = _modules()


def _imports(path: Path) -> list[tuple[str, str | None]]:
    """``(module, name)`` for every import in ``path``, in functions too (``name`` None for ``import m``)."""
    out: list[tuple[str, str | None]] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [(alias.name, None) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            out += [(node.module, alias.name) for alias in node.names]
    return out


def _project_deps(module: str) -> set[str]:
    """The project modules ``module`` imports (``from pkg import submodule`` counts as the submodule)."""
    deps = set()
    for mod, name in _imports(MODULES[module]):
        if name and f"{mod}.{name}" in MODULES:
            deps.add(f"{mod}.{name}")
        elif mod in MODULES:
            deps.add(mod)
    return deps - {module}


def _layer(module: str) -> int:
    best = max((p for layer in LAYERS for p in layer if module == p or module.startswith(p + ".")), key=len)
    return next(i for i, layer in enumerate(LAYERS) if best in layer)


def test_every_fercore_module_has_a_layer():
    for module in MODULES:
        if module.startswith("fercore"):
            _layer(module)


def test_fercore_never_imports_zenml():
    offenders = [m for m in MODULES if m.startswith("fercore")
                 for mod, _ in _imports(MODULES[m]) if mod.split(".")[0] == "zenml"]
    assert offenders == []


def test_no_module_imports_private_names_of_another():
    offenders = [f"{m}: from {mod} import {name}" for m in MODULES for mod, name in _imports(MODULES[m])
                 if mod in MODULES and name and name.startswith("_") and not name.startswith("__")]
    assert offenders == []


def test_fercore_packages_depend_downwards():
    offenders = [f"{m} -> {d}" for m in MODULES if m.startswith("fercore") for d in _project_deps(m)
                 if d.startswith("fercore") and _layer(d) > _layer(m)]
    assert offenders == []


def test_no_import_cycles():
    graph = {m: _project_deps(m) for m in MODULES}
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for dep in sorted(graph[module]):
            if state.get(dep) == 1:
                pytest.fail("import cycle: " + " -> ".join(path[path.index(dep):] + [module, dep]))
            if dep not in state:
                visit(dep, path + [module])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [])


def test_only_the_tracking_adapter_talks_to_mlflow():
    """fercore.tracking is the one place for MLflow's tracking and registry APIs; the pyfunc wrappers, which a
    registered model imports, may use mlflow.pyfunc (and its exceptions, to refuse a bad request)."""
    scripts = {f"scripts.{p.stem}": p for p in (ROOT / "scripts").glob("*.py")}
    everything = {**MODULES, **scripts, "run": ROOT / "run.py"}
    offenders = sorted(f"{m}: {mod}" for m, path in everything.items() for mod, _ in _imports(path)
                       if mod.split(".")[0] == "mlflow" and not m.startswith("fercore.tracking")
                       and m != "fercore.serving.pyfunc")
    assert offenders == []


def test_no_two_modules_share_a_name_but_the_pickle_shim():
    """A file name says what it holds; ``fercore/pyfunc.py`` only keeps the import path of old pickles."""
    names: dict[str, list[str]] = {}
    for module in MODULES:
        if not module.endswith("__init__") and module.count(".") and module not in PROJECT:
            names.setdefault(module.rsplit(".", 1)[1], []).append(module)
    shared = {n: ms for n, ms in names.items() if len(ms) > 1 and n != "pyfunc"}
    assert shared == {}
    assert "keeps the older import path working" in (ROOT / "fercore" / "pyfunc.py").read_text()


def _top_level_imports(path: Path) -> set[str]:
    """The modules ``path`` imports when it is imported (module-level statements; not in functions)."""
    found = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found |= {f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in MODULES else node.module
                      for a in node.names}
    return found


def test_unit_tests_import_no_mlflow_or_zenml():
    """What a unit test module loads, directly or through the project's modules, holds no MLflow or ZenML (the unit
    conftest refuses them, and starting any process, at run time; importing ``subprocess`` starts nothing)."""
    tests = {f"tests.unit.{p.stem}": p for p in (ROOT / "tests" / "unit").glob("test_*.py")}
    offenders = []
    for name, path in tests.items():
        seen, todo = set(), list(_top_level_imports(path))
        while todo:
            module = todo.pop()
            if module in seen:
                continue
            seen.add(module)
            if module in MODULES:
                todo += _top_level_imports(MODULES[module])
        offenders += [f"{name}: {m}" for m in sorted(seen) if m.split(".")[0] in ("mlflow", "zenml")]
    assert offenders == []


def _calls_by_function(path: Path) -> dict[str, set[str]]:
    """Each function of ``path`` -> the names it calls (``a.b.c(...)`` as ``a.b.c``), nested functions in their own."""
    def dotted(node: ast.AST) -> str:
        if isinstance(node, ast.Attribute):
            return f"{dotted(node.value)}.{node.attr}"
        return node.id if isinstance(node, ast.Name) else "?"

    out: dict[str, set[str]] = {}
    for fn in ast.walk(ast.parse(path.read_text())):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            out[fn.name] = {dotted(c.func) for c in ast.walk(fn) if isinstance(c, ast.Call)}
    return out


def test_every_path_that_unpickles_a_model_asks_the_guard_first():
    """Issue 42, rule 1: MLflow's pyfunc loader (which unpickles) is called in one adapter function, which only
    load_copy (``--trust-model``) and a served ensemble's load_member call, both after ``checked_wrapper``."""
    loaders = {"mlflow.pyfunc.load_model", "pyfunc.load_model", "load_pyfunc"}
    callers = {(m, fn) for m, path in {**MODULES, "run": ROOT / "run.py"}.items()
               for fn, calls in _calls_by_function(path).items() if calls & loaders}
    assert callers == {("fercore.tracking.registry", "load_pyfunc"), ("fercore.tracking.loading", "load_copy"),
                       ("fercore.serving.pyfunc", "load_member")}
    for module, fn in callers - {("fercore.tracking.registry", "load_pyfunc")}:
        assert "checked_wrapper" in _calls_by_function(MODULES[module])[fn], (module, fn)


def test_mlflows_types_stay_inside_the_tracking_adapter():
    """Issue 43: no ``MlflowClient``, ``MlflowException``, ``ModelVersion`` or ``Run`` entity is named outside
    ``fercore.tracking`` (the adapter returns ``VersionInfo``, ``RunSummary`` and raises ``TrackingError``); nor
    does anything outside it set MLflow's global tracking URI."""
    names = {"MlflowClient", "MlflowException", "ModelVersion", "set_tracking_uri", "set_registry_uri"}
    offenders = []
    for module, path in {**MODULES, "run": ROOT / "run.py"}.items():
        if module.startswith("fercore.tracking"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            named = node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else None
            if named in names:
                offenders.append(f"{module}:{node.lineno}: {named}")
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("mlflow.entities"):
                offenders.append(f"{module}:{node.lineno}: imports {node.module}")
    assert offenders == []


def test_mlflows_process_wide_uri_is_set_only_for_the_one_fluent_call():
    """Issue 43: every call of the adapter names its store: ``client(tracking_uri)`` always gets one, and MLflow's
    process-wide tracking URI is set in one place only, ``fluent_store``, which puts it back (used by registration
    alone)."""
    setters, bare_clients = [], []
    for module, path in MODULES.items():
        if not module.startswith("fercore"):
            continue
        tree = ast.parse(path.read_text())
        for fn in (n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)):
            for call in (c for c in ast.walk(fn) if isinstance(c, ast.Call)):
                name = call.func.attr if isinstance(call.func, ast.Attribute) else getattr(call.func, "id", "")
                if name in ("set_tracking_uri", "set_registry_uri"):
                    setters.append(f"{module}.{fn.name}")
                if name == "client" and not call.args and not call.keywords:
                    bare_clients.append(f"{module}.{fn.name}:{call.lineno}")
    assert sorted(set(setters)) == ["fercore.tracking.store.fluent_store"] and bare_clients == []


def test_training_evaluation_and_promotion_do_not_import_serving():
    """Issue 43: the registry's local copies and their guarded loading are the tracking adapter's
    (``fercore.tracking.copies``, ``loading``, ``model_guard``); serving (predict, the demo, the pyfunc wrappers)
    only uses them. The wrapper classes (``fercore.serving.pyfunc``) are what registration logs."""
    offenders = sorted(f"{m}: {mod}" for m, path in MODULES.items()
                       if m.startswith(("fercore.training", "fercore.evaluation", "fercore.promotion", "fercore.tracking"))
                       for mod, _ in _imports(path) if mod.startswith("fercore.serving") and mod != "fercore.serving.pyfunc")
    assert offenders == []
