"""Library output a user did not ask for, off by default (``--verbose`` keeps it): shared by ``run.py`` and
``run.py predict``."""

from __future__ import annotations

import logging
import os
import warnings


def quiet_libraries() -> None:
    """No library warnings, MLflow notices ("Validating input example", CloudPickle) or download and loading bars
    (transformers' "Loading weights", MLflow's downloads). Call it before the libraries are imported: MLflow and
    transformers read these settings then."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "ERROR")  # MLflow sets its own loggers' level when imported
    warnings.simplefilter("ignore")
    for name in ("mlflow", "alembic", "evidently", "httpx", "urllib3"):
        logging.getLogger(name).setLevel(logging.ERROR)
    # a busy SQLite store: MLflow logs the traceback at ERROR, then raises; the project's message says what happened
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)
