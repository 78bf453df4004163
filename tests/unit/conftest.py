"""The unit tier touches no MLflow, no ZenML and no subprocess: a test that does fails, naming what it touched.

Importing ``mlflow`` or ``zenml`` during a unit test is refused, and so is starting a subprocess. ``make test``
runs this tier in a process of its own, where neither is loaded; in a session that also collects other tiers
they are loaded already, and ``test_architecture``'s scan of what the unit tests import stands in.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

FORBIDDEN = ("mlflow", "zenml")


class _Refuse:
    """A meta-path finder that refuses the forbidden packages (unless another tier of the session loaded them)."""

    def find_spec(self, name, path=None, target=None):  # noqa: ARG002 (importlib's protocol)
        if name.split(".")[0] in FORBIDDEN and name.split(".")[0] not in sys.modules:
            raise ImportError(f"a unit test imported {name}: tests that touch MLflow or ZenML belong in "
                              "tests/integration")
        return None


@pytest.fixture(autouse=True)
def _touches_no_mlflow_zenml_or_subprocess(monkeypatch):
    finder = _Refuse()
    sys.meta_path.insert(0, finder)

    def refuse(*args, **kwargs):
        raise AssertionError(f"a unit test started a subprocess {args[:1]}: such tests belong in tests/integration")

    monkeypatch.setattr(subprocess.Popen, "__init__", refuse)
    try:
        yield
    finally:
        sys.meta_path.remove(finder)
