"""`run.py predict` on ordinary photos: scikit-image's sample photos (one face, none) and broken files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import mlflow
import numpy as np
import pytest
from PIL import Image

from fercore.constants import CLASS_NAMES
from fercore.faces import crop_face, find_faces, load_photo
from fercore.predict import format_results, predict_photos
from tests.conftest import ROOT

skimage_data = pytest.importorskip("skimage.data")


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("photos")
    paths = {"astronaut": folder / "astronaut.jpg", "coffee": folder / "coffee.jpg", "broken": folder / "broken.jpg"}
    Image.fromarray(skimage_data.astronaut()).save(paths["astronaut"])
    Image.fromarray(skimage_data.coffee()).save(paths["coffee"])
    paths["broken"].write_text("not an image")
    return paths


@pytest.fixture(scope="module")
def registered(tmp_path_factory) -> str:
    """A tiny CNN registered as ``fer-photo@champion`` in a temporary store; returns the store URI."""
    import torch
    from mlflow import MlflowClient

    from fercore.models import build_cnn, save_model
    from fercore.registry import connect, log_and_register

    tmp = tmp_path_factory.mktemp("photo-registry")
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    experiment = connect(uri, "photos")
    torch.manual_seed(0)
    run_id = MlflowClient().create_run(experiment).info.run_id
    with tempfile.TemporaryDirectory() as model_tmp:
        folder = save_model(build_cnn("vgg7", width=8).eval(), Path(model_tmp) / "model")
        version = log_and_register(run_id, {"model": str(folder)}, "fer-photo", {"architecture": "cnn"}, "",
                                   np.zeros((2, 48, 48), np.uint8), model_config={"tta": "none"})
    MlflowClient().set_registered_model_alias("fer-photo", "champion", version)
    return uri


def test_the_astronaut_has_one_face_cropped_to_48_grayscale(photos):
    gray = load_photo(photos["astronaut"])
    faces = find_faces(gray)
    assert len(faces) == 1
    x, y, w, h = faces[0].box
    assert 150 < x < 220 and 40 < y < 110 and 70 < w < 130  # her face, upper middle of the photo
    assert faces[0].crop.shape == (48, 48) and faces[0].crop.dtype == np.uint8
    assert find_faces(load_photo(photos["coffee"])) == []


def test_a_crop_near_the_border_repeats_the_edge_and_keeps_the_box_square():
    gray = np.tile(np.arange(100, dtype=np.uint8), (80, 1))  # brightness grows to the right
    crop = crop_face(gray, (90, 0, 20, 20), margin=0.0)  # half outside on the right and top
    assert crop.shape == (48, 48)
    assert crop[:, -1].min() == 99  # the last column, repeated
    np.testing.assert_array_equal(crop[0], crop[-1])  # rows repeat the same ramp


def test_faces_are_classified_in_one_batch_and_a_broken_file_does_not_stop_the_others(photos, registered):
    mlflow.set_registry_uri(registered)
    model = mlflow.pyfunc.load_model("models:/fer-photo@champion")
    calls = []
    real = model.predict
    model.predict = lambda x: calls.append(len(x)) or real(x)  # noqa: E731
    paths = [photos["astronaut"], photos["broken"], photos["coffee"], photos["astronaut"]]
    results = predict_photos(paths, model)
    assert calls == [2]  # both astronauts' faces in one batch
    assert [len(r.faces) for r in results] == [1, 0, 0, 1]
    assert "not a readable image" in results[1].error and results[2].error is None
    face = results[0].faces[0]
    assert face["label"] in CLASS_NAMES and abs(sum(face["probabilities"].values()) - 1) < 1e-3
    text = format_results(results)
    assert "no face found" in text and "broken.jpg" in text and face["label"] in text


def test_run_py_predict_writes_json_and_annotated_photos(photos, registered, tmp_path):
    folder = photos["astronaut"].parent
    result = subprocess.run([sys.executable, "run.py", "predict", str(folder), "--model", "models:/fer-photo@champion",
                             "--tracking-uri", registered, "--json", str(tmp_path / "out.json"),
                             "--annotate", str(tmp_path / "annotated")],
                            cwd=ROOT, env=os.environ.copy(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr  # the broken file is named, the other photos still answered
    assert "broken.jpg: not a readable image" in result.stderr
    out = {Path(r["path"]).name: r for r in json.loads((tmp_path / "out.json").read_text())}
    assert len(out["astronaut.jpg"]["faces"]) == 1 and out["coffee.jpg"]["faces"] == []
    assert Image.open(tmp_path / "annotated" / "astronaut.png").size == (512, 512)
    assert "no face found" in result.stdout


def test_run_py_predict_names_a_missing_model(photos, registered):
    result = subprocess.run([sys.executable, "run.py", "predict", str(photos["astronaut"]), "--model",
                             "models:/fer-photo@nobody", "--tracking-uri", registered], cwd=ROOT,
                            env=os.environ.copy(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "cannot load models:/fer-photo@nobody" in result.stderr
