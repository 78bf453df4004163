"""Registered models for prediction on this machine, loaded from their local copies (:mod:`fercore.tracking.copies`)
without ever unpickling them: ``run.py predict``, the demo, monitoring, promotion and distillation.

``mlflow.pyfunc.load_model("models:/NAME@ALIAS")`` spends about 8 s of a one-photo prediction on 2 cores before the
first image: it downloads the artifacts again, checks the model's pinned requirements against this environment,
puts the model's copy of the code on ``sys.path`` and unpickles its wrapper. None of it matters for a local
prediction: the environment is this one and the project's code is installed. For the project's own wrappers
(:class:`fercore.serving.pyfunc.FerEmotionModel` and ``FerEnsembleModel``, checked without running the pickle:
:func:`fercore.tracking.model_guard.checked_wrapper`) the network is built as the pyfunc's ``load_context`` does
(:func:`fercore.models.inference.load_for_inference`: the same test-time views and precision). Any other model is
refused, or loaded through ``mlflow.pyfunc.load_model`` with ``trust`` (``--trust-model``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from fercore.errors import RegistryError
from fercore.models.inference import ensemble_spec_file
from fercore.tracking.copies import (
    MEMBERS_FILE,
    cache_folder,
    copy_version,
    local_copy,
    member_folders,
    pyfunc_spec,
)
from fercore.tracking.model_guard import checked_wrapper

Predict = Callable[[np.ndarray], np.ndarray]  # uint8 (N, 48, 48) -> probabilities (N, 7)


def load_predictor(uri: str, tracking_uri: str, cache_dir: str | Path | None = None,
                   trust: bool = False) -> tuple[Predict, str]:
    """The registered model at ``uri`` as ``images -> probabilities``, and its name and version.

    Args:
        uri: ``models:/NAME@ALIAS`` or ``models:/NAME/VERSION``.
        tracking_uri: the MLflow store.
        cache_dir: where local copies go (default :func:`fercore.tracking.locations.default_cache_dir`).
        trust: load a model that is not one of this project's wrappers through ``mlflow.pyfunc``, which
            unpickles it (and so runs whatever code its pickle holds).

    Raises:
        RegistryError: the URI names no model, version or alias in the store (the message lists the
            aliases that exist), the store cannot be read or its server does not answer, the version's
            files are missing, or the model is of another class and ``trust`` is off.
    """
    folder, label = local_copy(uri, tracking_uri, cache_dir)
    return load_copy(folder, trust, label), label


def load_copy(folder: Path, trust: bool = False, what: str = "") -> Predict:
    """``images -> probabilities`` of a copied version (see the module docstring for what is skipped); a model
    of another class only when ``trust`` is set (``mlflow.pyfunc`` unpickles it: its pickle can run any code).

    Raises:
        UntrustedModelError: the model (or a member of an ensemble) is not one of the project's wrappers and
            ``trust`` is off (:func:`fercore.tracking.model_guard.checked_wrapper`).
    """
    from fercore.models.inference import ensemble_probabilities, load_for_inference

    spec, artifacts = pyfunc_spec(folder)
    wrapper = checked_wrapper(folder, what, trust)
    if wrapper == "FerEmotionModel":
        return load_for_inference(artifacts["model"], spec.get("config")).predict_proba
    if wrapper == "FerEnsembleModel":
        spec = json.loads(Path(ensemble_spec_file(artifacts)).read_text())
        members = {v: load_copy(folder.parent / sub, trust, f"member v{v} of {what or folder}")
                   for v, sub in member_folders(folder).items()}
        return lambda images: ensemble_probabilities(spec, {v: m(images) for v, m in members.items()})
    from fercore.tracking.registry import load_pyfunc, pyfunc_predict

    return pyfunc_predict(load_pyfunc(folder))


def load_network(folder: Path, what: str = ""):
    """The torch network of a copied single-model version, ready for inference (its embeddings: monitoring and
    promotion's drift reports).

    Raises:
        UntrustedModelError: the model is not one of the project's wrappers.
        RegistryError: it is an ensemble.
    """
    from fercore.models.inference import load_for_inference

    spec, artifacts = pyfunc_spec(folder)
    if checked_wrapper(folder, what) != "FerEmotionModel":
        raise RegistryError(f"{what or folder} is an ensemble: embed one of its members")
    return load_for_inference(artifacts["model"], spec.get("config")).module


def version_predictor(name: str, version: str, tracking_uri: str, cache_dir: str | Path | None = None) -> Predict:
    """``images -> probabilities`` of ``name`` version ``version``, from its local copy (never unpickled)."""
    return load_copy(copy_version(name, version, tracking_uri, cache_folder(cache_dir)), what=f"{name} v{version}")


def version_network(name: str, version: str, tracking_uri: str, cache_dir: str | Path | None = None):
    """:func:`load_network` of ``name`` version ``version``'s local copy."""
    return load_network(copy_version(name, version, tracking_uri, cache_folder(cache_dir)), f"{name} v{version}")


def check_registered(uri: str, tracking_uri: str, cache_dir: str | Path | None = None) -> str:
    """``run.py check-model`` (``make serve`` runs it first): the registered model at ``uri``, and every member of an
    ensemble, are the project's wrappers; returns its name and version.

    Raises:
        UntrustedModelError: one of them is not (its name and what was found).
        RegistryError: the URI, the store or the files cannot be read.
    """
    folder, label = local_copy(uri, tracking_uri, cache_dir)
    _check_with_members(folder, label)
    return label


def _check_with_members(folder: Path, label: str) -> None:
    checked_wrapper(folder, label)
    members = member_folders(folder) if (folder / MEMBERS_FILE).exists() else {}
    for version, sub in members.items():
        _check_with_members(folder.parent / sub, f"member v{version} of {label}")
