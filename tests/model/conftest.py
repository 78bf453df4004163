"""The model under test: ``MODEL_URI`` (a registered version, e.g. ``models:/fer2013-emotion@champion``,
in ``MODEL_TRACKING_URI``, default the project's ``./mlflow.db``) judged on the validation split of ``MODEL_DATA`` (an
archive or folder, split as ``configs`` do: 10 %, seed 42); by default a small CNN this fixture trains
on synthetic faces, judged on their validation split."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest

from fercore.data.dataset import FerDataset

Predict = Callable[[np.ndarray], np.ndarray]


@dataclass
class ModelUnderTest:
    name: str
    predict: Predict  # uint8 images (N, 48, 48) -> probabilities (N, 7), as the model is served
    validation: FerDataset
    min_recall: float  # the floor every emotion's validation recall must reach
    one_view: Predict | None = None  # the network on the image alone (no test-time views: a mirror would be one)


def _registered(uri: str) -> ModelUnderTest:
    from fercore.data.sources import ingest
    from fercore.data.split import split_validation
    from fercore.tracking.loading import load_predictor
    from tests.conftest import ROOT

    data = os.environ.get("MODEL_DATA")
    if not data:
        pytest.fail("MODEL_URI needs MODEL_DATA: the dataset (archive or folder) to take the validation split from")
    # the tests run against private stores (tests/conftest.py): the user's is named here
    tracking = os.environ.get("MODEL_TRACKING_URI", f"sqlite:///{ROOT / 'mlflow.db'}")
    predict, label = load_predictor(uri, tracking)
    dataset = split_validation(ingest(data), 0.1, 42)
    return ModelUnderTest(label, predict, dataset.split("val"), float(os.environ.get("MODEL_MIN_RECALL", "0.3")),
                          _one_view(uri, tracking))


def _one_view(uri: str, tracking: str) -> Predict | None:
    """A registered single model's network without its test-time views (an ensemble: None, its members' views)."""
    from fercore.models.inference import load_for_inference
    from fercore.tracking.copies import local_copy, network_folder

    folder, _ = local_copy(uri, tracking)
    try:
        return load_for_inference(network_folder(folder), {"tta": "none"}).predict_proba
    except FileNotFoundError:
        return None


def _trained_on_synthetic_faces() -> ModelUnderTest:
    from fercore.models.inference import predict_proba
    from tests.conftest import synthetic

    dataset = synthetic(per_class=40, test_per_class=4)
    model = train_on(dataset, hflip=True)
    return ModelUnderTest("vgg7 w8 trained on synthetic faces", lambda x: predict_proba(model, x),
                          dataset.split("val"), float(os.environ.get("MODEL_MIN_RECALL", "0.8")),
                          lambda x: predict_proba(model, x, tta="none"))


def train_on(dataset: FerDataset, hflip: bool, epochs: int = 4):
    """A small CNN trained on ``dataset`` (with or without mirrored training images), in eval mode."""
    import torch

    from fercore.data.rebalance import rebalance
    from fercore.models import build_cnn
    from fercore.training.trainer import Trainer
    from tests.conftest import small_cfg

    torch.manual_seed(0)
    model = build_cnn("vgg7", width=8)
    cfg = small_cfg(epochs=epochs, augment={"hflip": hflip, "rotation_degrees": 5, "crop_padding": 2})
    Trainer(model, cfg).fit(dataset, rebalance(dataset, "none", 0))
    return model.eval()


@pytest.fixture(scope="session")
def model_under_test() -> ModelUnderTest:
    uri = os.environ.get("MODEL_URI")
    return _registered(uri) if uri else _trained_on_synthetic_faces()
