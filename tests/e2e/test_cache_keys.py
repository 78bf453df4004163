"""ZenML's cache key of a step covers the project code it runs, however indirectly it imports it: a
change to the class order (``fercore.constants``, which ``split_data`` reaches only through
``fercore.data``) gives ``split_data`` a new key, so no stale split is reused."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

from steps.cache import project_imports
from tests.conftest import ROOT

# In a copy of the project: ZenML's own cache-key function on the step as the pipeline configures it (a
# fixed store and project), twice, then again after the class order changed on disk (ZenML reads a
# source dependency's file when it computes the key, as a new process would)
KEYS_OF_SPLIT_DATA = """
import linecache
import os
import uuid
from pathlib import Path
from types import SimpleNamespace
from zenml.orchestrators.cache_utils import generate_cache_key
from zenml.utils import source_utils

source_utils.set_custom_source_root(os.getcwd())
from steps.split_data import split_data

config = SimpleNamespace(cache_policy=split_data.configuration.cache_policy, parameters={}, outputs={},
                         caching_parameters={}, environment={}, secrets=[])
step = SimpleNamespace(config=config, spec=SimpleNamespace(source=SimpleNamespace(import_path="steps.split_data.split_data")))
store = SimpleNamespace(id=uuid.UUID(int=1), path="/store", custom_cache_key=None)
key = lambda: generate_cache_key(step, {}, store, uuid.UUID(int=2))
print(key(), key())
constants = Path("fercore/constants.py")
constants.write_text(constants.read_text().replace('("angry", "disgust",', '("disgust", "angry",'))
linecache.checkcache()
print(key())
"""


def test_split_data_depends_on_the_class_order_only_indirectly():
    imported = project_imports("steps.split_data")
    assert "fercore.constants" in imported and "fercore.data.split" in imported
    assert "fercore.constants" not in (ROOT / "steps" / "split_data.py").read_text()


def test_changing_the_class_order_changes_the_cache_key_of_split_data(tmp_path):
    for package in ("fercore", "steps", "materializers"):
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    out = subprocess.run([sys.executable, "-c", KEYS_OF_SPLIT_DATA], cwd=tmp_path,
                         env={**os.environ, "PYTHONPATH": str(tmp_path)}, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    first, again, after = out.stdout.split()[-3:]
    assert first == again  # the same code, the same key
    assert after != first
