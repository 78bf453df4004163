"""End-to-end tier: whole pipelines through ZenML and ``run.py``; every test here is marked ``slow``."""

import pytest
from zenml.utils import source_utils

from tests.conftest import ROOT

# a pytest-xdist worker's main module has no file, from which ZenML would infer the source root
source_utils.set_custom_source_root(str(ROOT))


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/e2e/" in str(item.path):
            item.add_marker(pytest.mark.slow)
