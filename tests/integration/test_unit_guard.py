"""The unit tier's guard holds whatever else the session imported: a plain ``pytest`` from the project root collects
every tier (the e2e and integration modules import MLflow and ZenML) before the unit tests run."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import ROOT


def test_the_unit_guard_holds_after_the_other_tiers_imported_mlflow_and_zenml():
    probe = ("import sys, pytest; sys.exit(pytest.main(['-q', '-p', 'no:cacheprovider', '-k', 'refused', "
             "'tests/e2e/test_kubeflow_compile.py', 'tests/integration/test_aliases.py', 'tests/unit/test_unit_guard.py']))")
    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=os.environ.copy(), capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0 and "9 passed" in result.stdout, result.stdout[-3000:] + result.stderr[-2000:]
