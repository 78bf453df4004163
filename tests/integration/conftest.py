"""Integration tier: real MLflow and ZenML stores (the session's, from tests/conftest.py), subprocesses."""

# a pytest-xdist worker's main module has no file, from which ZenML would infer the source root
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from zenml.utils import source_utils  # noqa: E402

from tests.conftest import ROOT

source_utils.set_custom_source_root(str(ROOT))


@pytest.fixture(scope="session")
def photos(tmp_path_factory) -> dict[str, Path]:
    skimage_data = pytest.importorskip("skimage.data")
    folder = tmp_path_factory.mktemp("photos")
    paths = {"astronaut": folder / "astronaut.jpg", "coffee": folder / "coffee.jpg", "broken": folder / "broken.jpg"}
    Image.fromarray(skimage_data.astronaut()).save(paths["astronaut"])
    Image.fromarray(skimage_data.coffee()).save(paths["coffee"])
    paths["broken"].write_text("not an image")
    return paths


@pytest.fixture(scope="session")
def registered(tmp_path_factory) -> str:
    """A tiny CNN registered as ``fer-photo@champion`` in a temporary store; returns the store URI."""
    import torch
    from mlflow import MlflowClient

    from fercore.models import build_cnn, save_model
    from fercore.serving.pyfunc import FerEmotionModel
    from fercore.tracking.registry import log_and_register
    from tests.conftest import connect_store

    tmp = tmp_path_factory.mktemp("photo-registry")
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    experiment = connect_store(uri, "photos")
    torch.manual_seed(0)
    run_id = MlflowClient().create_run(experiment).info.run_id
    with tempfile.TemporaryDirectory() as model_tmp:
        folder = save_model(build_cnn("vgg7", width=8).eval(), Path(model_tmp) / "model")
        version = log_and_register(uri, run_id, FerEmotionModel(), {"model": str(folder)}, "fer-photo", {"family": "cnn"}, "",
                                   np.zeros((2, 48, 48), np.uint8), model_config={"tta": "none"})
    MlflowClient().set_registered_model_alias("fer-photo", "champion", version)
    return uri
