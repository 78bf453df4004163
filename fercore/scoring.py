"""Scores registered model versions on a labelled image set through their pyfunc interface."""

from __future__ import annotations

import mlflow
import numpy as np

from fercore.constants import CLASS_NAMES
from fercore.dataset import FerDataset
from fercore.metrics import evaluate_predictions
from fercore.promote import Candidate


def load_version(model_name: str, version: str) -> mlflow.pyfunc.PyFuncModel:
    return mlflow.pyfunc.load_model(f"models:/{model_name}/{version}")


def score_version(model_name: str, version: str, architecture: str, test: FerDataset, new: bool) -> Candidate:
    """Loads ``version`` from the registry and evaluates it on ``test``."""
    probs = load_version(model_name, version).predict(test.images)[list(CLASS_NAMES)].to_numpy()
    return score_probs(version, architecture, probs, test, new)


def score_probs(version: str, architecture: str, probs: np.ndarray, test: FerDataset, new: bool) -> Candidate:
    ev = evaluate_predictions(test.labels, probs.argmax(axis=1), test.subsets)
    return Candidate(version, architecture, ev, probs, new)


def underlying_module(pyfunc_model: mlflow.pyfunc.PyFuncModel):
    """The torch model inside a project pyfunc (None for an ensemble)."""
    return getattr(pyfunc_model.unwrap_python_model(), "model", None)
