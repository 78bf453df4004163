"""End-to-end tier: whole pipelines through ZenML and ``run.py``; every test here is marked ``slow``."""

import subprocess

import pytest
from zenml.utils import source_utils

from tests.conftest import ROOT

# a pytest-xdist worker's main module has no file, from which ZenML would infer the source root
source_utils.set_custom_source_root(str(ROOT))


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/e2e/" in str(item.path):
            item.add_marker(pytest.mark.slow)


@pytest.fixture
def run_py(capsys, monkeypatch):
    """``run.py``'s ``main`` in this process (what fails before any pipeline runs needs no new interpreter):
    ``(exit code, stdout, stderr)``."""
    import run

    monkeypatch.chdir(ROOT)

    def call(*args: str) -> subprocess.CompletedProcess:
        capsys.readouterr()
        try:
            code = run.main(list(args))
        except SystemExit as exc:  # argparse's errors
            code = exc.code
        out = capsys.readouterr()
        return subprocess.CompletedProcess(["run.py", *args], code, out.out, out.err)

    return call
