"""The unit tier touches no MLflow, no ZenML, no subprocess and no other process: a test that does fails, naming
what it touched.

During each unit test, importing ``mlflow`` or ``zenml`` is refused even when another tier of the same session
loaded them already (their modules are set aside for the test, so an import reaches the refusing finder), and so
is starting a process: ``subprocess``, ``os.system``, ``os.popen``, ``os.posix_spawn``, ``os.fork`` and
``multiprocessing``. ``tests/integration/test_unit_guard.py`` checks this in a session that collected the e2e tier
first.
"""

from __future__ import annotations

import multiprocessing.process
import os
import subprocess
import sys

import pytest

FORBIDDEN = ("mlflow", "zenml")


class _Refuse:
    """A meta-path finder that refuses the forbidden packages."""

    def find_spec(self, name, path=None, target=None):  # noqa: ARG002 (importlib's protocol)
        if name.split(".")[0] in FORBIDDEN:
            raise ImportError(f"a unit test imported {name}: tests that touch MLflow or ZenML belong in "
                              "tests/integration")
        return None


def _refuse(what: str):
    def refuse(*args, **kwargs):
        raise AssertionError(f"a unit test started a process ({what} {args[:1]}): such tests belong in "
                             "tests/integration")
    return refuse


@pytest.fixture(autouse=True)
def _touches_no_mlflow_zenml_or_process(monkeypatch):
    loaded = {name: module for name, module in sys.modules.items() if name.split(".")[0] in FORBIDDEN}
    for name in loaded:  # set aside: an import in the test must reach the finder
        del sys.modules[name]
    finder = _Refuse()
    sys.meta_path.insert(0, finder)
    def refuse_popen(self, *args, **kwargs):
        self.returncode = None  # what Popen.__del__ reads of an object whose __init__ failed
        _refuse("subprocess")(*args)

    monkeypatch.setattr(subprocess.Popen, "__init__", refuse_popen)
    for name in ("system", "popen", "posix_spawn", "posix_spawnp", "fork", "forkpty"):
        if hasattr(os, name):
            monkeypatch.setattr(os, name, _refuse(f"os.{name}"))
    monkeypatch.setattr(multiprocessing.process.BaseProcess, "start", _refuse("multiprocessing"))
    try:
        yield
    finally:
        sys.meta_path.remove(finder)
        for name in [n for n in sys.modules if n.split(".")[0] in FORBIDDEN]:
            del sys.modules[name]  # a half-import the refusal left
        sys.modules.update(loaded)
