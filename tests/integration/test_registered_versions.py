"""Versions registered before ``fercore`` had packages name their wrapper ``fercore.pyfunc.FerEmotionModel``
in their pickle; promotion loads such versions in-process and ``run.py predict`` from a local copy."""

from __future__ import annotations

import importlib
import tempfile
from pathlib import Path

import mlflow
import numpy as np
import pytest
import torch
from mlflow import MlflowClient

from fercore.models import build_cnn, save_model
from fercore.models.inference import predict_proba
from fercore.serving import pyfunc
from fercore.tracking.loading import load_predictor
from fercore.tracking.model_guard import checked_wrapper
from fercore.tracking.registry import log_and_register, pyfunc_predict
from tests.conftest import connect_store, synthetic


@pytest.fixture
def old_version(tmp_path, monkeypatch):
    """A tiny CNN registered with its wrapper pickled under the old import path."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    connect_store(uri, "old")
    torch.manual_seed(0)
    model = build_cnn("vgg7", width=8).eval()
    # what cloudpickle wrote before the move: the class by reference, as fercore.pyfunc.FerEmotionModel
    importlib.import_module("fercore.pyfunc")  # cloudpickle pickles by value a class whose module is not imported
    monkeypatch.setattr(pyfunc.FerEmotionModel, "__module__", "fercore.pyfunc")
    run_id = MlflowClient().create_run(mlflow.get_experiment_by_name("old").experiment_id).info.run_id
    images = synthetic(per_class=5, test_per_class=1).images[:16]
    with tempfile.TemporaryDirectory() as tmp:
        version = log_and_register(uri, run_id, pyfunc.FerEmotionModel(), {"model": str(save_model(model, Path(tmp) / "m"))},
                                   "fer-old", {"architecture": "cnn"}, "old layout", images[:2], model_config={"tta": "none"})
    monkeypatch.undo()
    return uri, version, model, images


def test_a_version_pickled_under_the_old_path_names_it(old_version):
    uri, version, _, _ = old_version
    folder = Path(mlflow.artifacts.download_artifacts(f"models:/fer-old/{version}"))
    pickled = (folder / "python_model.pkl").read_bytes()
    assert b"fercore.pyfunc" in pickled and b"fercore.serving" not in pickled
    assert checked_wrapper(folder) == "FerEmotionModel"


def test_a_version_pickled_under_the_old_path_loads_in_process_and_from_a_local_copy(old_version, tmp_path):
    uri, version, model, images = old_version
    expected = predict_proba(model, images)
    loaded = mlflow.pyfunc.load_model(f"models:/fer-old/{version}")
    assert np.allclose(pyfunc_predict(loaded)(images), expected, atol=1e-5)
    predict, label = load_predictor(f"models:/fer-old/{version}", uri, tmp_path / "cache")
    assert label.endswith(f"v{version}") and np.allclose(predict(images), expected, atol=1e-5)


def test_conv_vit_registers_and_predicts_through_the_pyfunc(tmp_path):
    """The registry path of every model: save_model folder -> pyfunc version -> load -> predict."""
    from fercore.models.vit import build_vit
    from fercore.tracking.runs import resumed, start_run
    from fercore.tracking.store import RunInfo
    from tests.unit.test_convvit import conv_cfg

    info = RunInfo(f"sqlite:///{tmp_path / 'mlflow.db'}", "convvit", "test")
    model = build_vit(conv_cfg()).eval()
    images = synthetic(per_class=5, test_per_class=1).images[:6]
    with resumed(info.tracking_uri, start_run(info, "convvit", {}, {}), finish=True) as run_id:
        folder = save_model(model, tmp_path / "m")
        version = log_and_register(info.tracking_uri, run_id, pyfunc.FerEmotionModel(), {"model": str(folder)},
                                   "conv-test", {"family": "vit", "checkpoint": "scratch-conv"}, "test", images[:2],
                                   model_config={"tta": "hflip"})
    assert MlflowClient(info.tracking_uri).get_run(run_id).info.status == "FINISHED"
    mlflow.set_tracking_uri(info.tracking_uri)  # MLflow's own loader, in the test
    mlflow.set_registry_uri(info.tracking_uri)  # (an earlier test in this process may have set another)
    out = mlflow.pyfunc.load_model(f"models:/conv-test/{version}").predict(images)
    assert np.allclose(out.iloc[:, 1:].to_numpy(), predict_proba(model, images, tta="hflip"), atol=1e-5)
