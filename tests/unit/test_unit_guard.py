"""The unit tier's guard refuses what a unit test may not touch (see tests/unit/conftest.py)."""

from __future__ import annotations

import multiprocessing
import os
import subprocess

import pytest


@pytest.mark.parametrize("package", ["mlflow", "zenml", "mlflow.pyfunc", "zenml.client"])
def test_importing_mlflow_or_zenml_is_refused(package):
    import importlib

    with pytest.raises(ImportError, match=f"a unit test imported {package.split('.')[0]}"):
        importlib.import_module(package)


@pytest.mark.parametrize("start", [
    lambda: subprocess.run(["true"]), lambda: os.system("true"), lambda: os.popen("true"),
    lambda: multiprocessing.Process(target=print).start(),
    lambda: multiprocessing.get_context("spawn").Process(target=print).start(),
])
def test_starting_a_process_is_refused(start):
    with pytest.raises(AssertionError, match="a unit test started a process"):
        start()
