"""The unit tier touches no MLflow, no ZenML and no subprocess: a test that does fails, naming what it touched.

Importing ``mlflow`` or ``zenml`` during a unit test is refused (an import made at collection time is caught
by ``test_architecture``'s scan of the unit tests' imports), and so is starting a subprocess.
"""

from __future__ import annotations

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


@pytest.fixture(autouse=True)
def _touches_no_mlflow_zenml_or_subprocess(monkeypatch):
    loaded = [m for m in FORBIDDEN if m in sys.modules]
    finder = _Refuse()
    sys.meta_path.insert(0, finder)

    def refuse(*args, **kwargs):
        raise AssertionError(f"a unit test started a subprocess {args[:1]}: such tests belong in tests/integration")

    monkeypatch.setattr(subprocess.Popen, "__init__", refuse)
    for name in loaded:  # imported by another tier of this session: calls into it are refused instead
        monkeypatch.setitem(sys.modules, name, None)
    try:
        yield
    finally:
        sys.meta_path.remove(finder)
