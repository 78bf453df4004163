"""Integration tier: real MLflow and ZenML stores (the session's, from tests/conftest.py), subprocesses."""

# a pytest-xdist worker's main module has no file, from which ZenML would infer the source root
from zenml.utils import source_utils  # noqa: E402

from tests.conftest import ROOT

source_utils.set_custom_source_root(str(ROOT))
