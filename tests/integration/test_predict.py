"""`run.py predict` on ordinary photos: scikit-image's sample photos (one face, none) and broken files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pytest
from PIL import Image

from fercore.constants import CLASS_NAMES
from fercore.explain.cam import class_activation_maps
from fercore.explain.registered import load_explainer
from fercore.models import load_model
from fercore.serving.faces import ANNOTATION_COLOUR, crop_face, find_faces, load_photo
from fercore.serving.predict import format_results, predict_photos
from fercore.tracking.copies import local_copy, network_folder
from fercore.tracking.loading import load_predictor
from tests.conftest import ROOT

skimage_data = pytest.importorskip("skimage.data")


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


def _bomb_png(path: Path, side: int = 30000) -> Path:
    """A PNG of a few bytes whose header declares ``side`` x ``side`` pixels."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))
    return path


def test_faces_are_classified_in_one_batch_and_a_broken_file_does_not_stop_the_others(photos, registered, tmp_path):
    predict, label = load_predictor("models:/fer-photo@champion", registered, tmp_path / "cache")
    assert label == "fer-photo v1"
    calls = []
    paths = [photos["astronaut"], photos["broken"], photos["coffee"], photos["astronaut"]]
    results = list(predict_photos(paths, lambda x: calls.append(len(x)) or predict(x)))
    assert calls == [2]  # both astronauts' faces in one batch
    assert [len(r.faces) for r in results] == [1, 0, 0, 1]
    assert "not a readable image" in results[1].error and results[2].error is None
    face = results[0].faces[0]
    assert face["label"] in CLASS_NAMES and abs(sum(face["probabilities"].values()) - 1) < 1e-3
    text = format_results(results)
    assert "no face found" in text and "broken.jpg" in text and face["label"] in text


def test_the_local_copy_predicts_as_mlflow_loads_it_and_is_resolved_again_only_when_the_store_changes(
        photos, registered, tmp_path, monkeypatch):
    from mlflow import MlflowClient

    from fercore.tracking import copies as local_models

    faces = np.stack([f.crop for f in find_faces(load_photo(photos["astronaut"]))] * 3)
    mlflow.set_registry_uri(registered)
    expected = mlflow.pyfunc.load_model("models:/fer-photo@champion").predict(faces)[list(CLASS_NAMES)].to_numpy()
    resolved = []
    real = local_models._resolve_and_copy
    monkeypatch.setattr(local_models, "_resolve_and_copy", lambda *a: resolved.append(a[0]) or real(*a))
    cache = tmp_path / "cache"
    predict, _ = load_predictor("models:/fer-photo@champion", registered, cache)
    np.testing.assert_allclose(predict(faces), expected, rtol=1e-5, atol=1e-6)
    load_predictor("models:/fer-photo@champion", registered, cache)
    assert resolved == ["models:/fer-photo@champion"]  # the second load read the copy, not the registry
    # any write to the store
    MlflowClient(registered, registry_uri=registered).set_registered_model_alias("fer-photo", "happy", "1")
    load_predictor("models:/fer-photo@champion", registered, cache)
    assert len(resolved) == 2 and len([p for p in (cache / "models").iterdir() if p.is_dir()]) == 1


def test_a_registered_model_runs_on_its_model_thread_whichever_thread_asks(registered):
    """A server calls predict from worker threads (mlflow models serve: asyncio.to_thread); the network runs on one
    thread all the same, the one it was loaded on (fercore.serving.model_thread)."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from fercore.serving.model_thread import THREAD_PREFIX

    mlflow.set_registry_uri(registered)
    model = mlflow.pyfunc.load_model("models:/fer-photo@champion")
    ran_on = []
    model.unwrap_python_model().model.register_forward_pre_hook(lambda *_: ran_on.append(threading.current_thread().name))
    with ThreadPoolExecutor(3, thread_name_prefix="server-worker") as workers:
        frames = list(workers.map(lambda n: model.predict(np.full((n, 48, 48), 100, np.uint8)), [1, 2, 3, 1, 2, 3]))
    assert [len(f) for f in frames] == [1, 2, 3, 1, 2, 3]
    assert len(ran_on) == 6 and len(set(ran_on)) == 1 and ran_on[0].startswith(THREAD_PREFIX)


def test_run_py_predict_writes_json_and_annotated_photos_without_warnings(photos, registered, tmp_path):
    folder = photos["astronaut"].parent
    result = subprocess.run([sys.executable, "run.py", "predict", str(folder), "--model", "models:/fer-photo@champion",
                             "--tracking-uri", registered, "--json", str(tmp_path / "out.json"),
                             "--annotate", str(tmp_path / "annotated")],
                            cwd=ROOT, env=os.environ.copy(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr  # the broken file is named, the other photos still answered
    assert result.stderr.strip().splitlines() == [f"error: {folder / 'broken.jpg'}: not a readable image (cannot "
                                                  f"identify image file '{folder / 'broken.jpg'}'). Pass a photo file "
                                                  "(JPEG, PNG, ...), resized below 50 megapixels."]
    out = {Path(r["path"]).name: r for r in map(json.loads, (tmp_path / "out.json").read_text().splitlines())}
    assert len(out["astronaut.jpg"]["faces"]) == 1 and out["coffee.jpg"]["faces"] == []
    assert out["astronaut.jpg"]["model"] == "fer-photo v1 (models:/fer-photo@champion)"
    annotated = np.asarray(Image.open(tmp_path / "annotated" / "astronaut.png"))
    assert annotated.shape == (512, 512, 3)
    x, y, w, h = out["astronaut.jpg"]["faces"][0]["box"]
    red = (annotated == ANNOTATION_COLOUR).all(axis=-1)
    assert red[y - 2:y, x:x + w].all()  # a filled caption band sits on the box ...
    band_rows = np.argmin(red[:y, x + w - 3][::-1])  # ... as tall as the text, which is sized to the face
    assert band_rows >= w // 7, band_rows
    assert "no face found" in result.stdout
    assert result.stdout.splitlines()[-2:] == ["3 photos, 1 faces: fer-photo v1 (models:/fer-photo@champion)",
                                               f"annotated photos written to {tmp_path / 'annotated'}"]


def test_run_py_predict_names_a_missing_alias_with_those_that_exist(photos, registered):
    result = subprocess.run([sys.executable, "run.py", "predict", str(photos["astronaut"]), "--model",
                             "models:/fer-photo@nobody", "--tracking-uri", registered], cwd=ROOT,
                            env=os.environ.copy(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "models:/fer-photo@nobody does not exist" in result.stderr and "@champion (v1)" in result.stderr
    assert "make train" not in result.stderr  # the model exists: training is not the fix
    result = subprocess.run([sys.executable, "run.py", "predict", str(photos["astronaut"]), "--model",
                             "models:/no-such-model@champion", "--tracking-uri", registered], cwd=ROOT,
                            env=os.environ.copy(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "has no model named no-such-model" in result.stderr


def test_a_decompression_bomb_is_refused_by_name_and_the_good_photo_still_answered(photos, registered, tmp_path):
    bomb = _bomb_png(tmp_path / "bomb.png")
    result = subprocess.run([sys.executable, "run.py", "predict", str(bomb), str(photos["astronaut"]), "--model",
                             "models:/fer-photo@champion", "--tracking-uri", registered], cwd=ROOT,
                            env=os.environ.copy(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"{bomb}: too large to decode" in result.stderr and "50 megapixels" in result.stderr
    assert "astronaut.jpg" in result.stdout and "error" not in result.stdout.split("astronaut.jpg")[1].split("\n")[0]


def test_a_16_bit_photo_is_scaled_not_clipped(photos, tmp_path):
    gray = load_photo(photos["astronaut"])
    wide = tmp_path / "astronaut16.png"
    Image.fromarray(gray.astype(np.uint16) * 257).save(wide)
    assert Image.open(wide).mode.startswith("I")
    np.testing.assert_array_equal(load_photo(wide), gray)
    assert len(find_faces(load_photo(wide))) == 1


def test_a_routed_ensemble_copy_predicts_as_mlflow_loads_it(registered, tmp_path):
    """Two members (v1 and a second CNN) and the ensemble routing four emotions to one, three to the other."""
    import json as json_mod

    import torch
    from mlflow import MlflowClient

    from fercore.models import build_cnn, save_model
    from fercore.serving.pyfunc import FerEmotionModel, FerEnsembleModel
    from fercore.tracking.registry import log_and_register
    from tests.conftest import connect_store

    experiment = connect_store(registered, "photos")
    torch.manual_seed(1)
    run_id = MlflowClient().create_run(experiment).info.run_id
    folder = save_model(build_cnn("vgg7", width=8).eval(), tmp_path / "second")
    second = log_and_register(registered, run_id, FerEmotionModel(), {"model": str(folder)}, "fer-photo", {"family": "cnn"}, "",
                              np.zeros((2, 48, 48), np.uint8), model_config={"tta": "hflip"})
    routes = {e: ("1" if i % 2 else second) for i, e in enumerate(CLASS_NAMES)}
    spec = tmp_path / "routes.json"
    spec.write_text(json_mod.dumps({"model_name": "fer-photo", "routes": routes}))
    run_id = MlflowClient().create_run(experiment).info.run_id
    # the layout of versions registered before the spec was renamed ensemble.json: still loads
    ensemble = log_and_register(registered, run_id, FerEnsembleModel(), {"routes": str(spec)}, "fer-photo",
                                {"architecture": "ensemble"}, "", np.zeros((2, 48, 48), np.uint8))
    faces = np.random.default_rng(0).integers(0, 256, (5, 48, 48), dtype=np.uint8)
    expected = mlflow.pyfunc.load_model(f"models:/fer-photo/{ensemble}").predict(faces)[list(CLASS_NAMES)].to_numpy()
    predict, label = load_predictor(f"models:/fer-photo/{ensemble}", registered, tmp_path / "cache")
    assert label == f"fer-photo v{ensemble}"
    np.testing.assert_allclose(predict(faces), expected, rtol=1e-5, atol=1e-6)
    # its maps: for each face, the map of the member that routes the emotion asked about, over that member's views
    classes = np.arange(5) % 7
    maps = load_explainer(local_copy(f"models:/fer-photo/{ensemble}", registered, tmp_path / "cache")[0])(faces, classes)
    for version, tta in (("1", "none"), (second, "hflip")):
        member = load_model(network_folder(local_copy(f"models:/fer-photo/{version}", registered, tmp_path / "cache")[0]))
        rows = [i for i, c in enumerate(classes) if routes[CLASS_NAMES[c]] == version]
        np.testing.assert_allclose(maps[rows], class_activation_maps(member, faces[rows], classes[rows], tta=tta),
                                   atol=1e-6)
        if tta != "none":  # the member's one-view map differs: the views were averaged
            assert np.abs(maps[rows] - class_activation_maps(member, faces[rows], classes[rows])).max() > 1e-3


def _run_predict(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "run.py", "predict", *args], cwd=ROOT, env=os.environ.copy(),
                          capture_output=True, text=True, timeout=timeout)


def test_photos_stream_through_batches_and_a_result_comes_before_later_photos_are_read(photos, registered, tmp_path):
    predict, _ = load_predictor("models:/fer-photo@champion", registered, tmp_path / "cache")
    read, calls = [], []

    def paths():
        for p in [photos["astronaut"], photos["coffee"], photos["astronaut"], photos["astronaut"]]:
            read.append(p.name)
            yield p

    results = predict_photos(paths(), lambda x: calls.append(len(x)) or predict(x), batch_faces=1)
    first = next(results)
    assert first.path.endswith("astronaut.jpg") and read == ["astronaut.jpg"]  # nothing read ahead of its batch
    rest = list(results)
    assert [len(r.faces) for r in rest] == [0, 1, 1] and calls == [1, 1, 1]  # the coffee waits for the next face


def test_outputs_that_cannot_be_written_are_named_and_the_results_still_print(photos, registered, tmp_path):
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    result = _run_predict(str(photos["astronaut"]), "--model", "models:/fer-photo@champion", "--tracking-uri",
                          registered, "--json", str(tmp_path), "--annotate", str(a_file / "annotated"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.splitlines() == [
        f"error: --json {tmp_path}: cannot be written (Is a directory); pass a file path in a folder you can write",
        f"error: --annotate {a_file / 'annotated'}: cannot write there (Not a directory); pass a folder you can write"]
    assert "astronaut.jpg" in result.stdout and result.stdout.splitlines()[-1].startswith("1 photos, 1 faces")


def test_annotated_photos_of_the_same_name_get_names_of_their_own(photos, registered, tmp_path):
    for sub, suffix in (("a", ".jpg"), ("a", ".png"), ("b", ".jpg")):
        (tmp_path / sub).mkdir(exist_ok=True)
        Image.open(photos["astronaut"]).save(tmp_path / sub / f"x{suffix}")
    result = _run_predict(str(tmp_path / "a"), str(tmp_path / "b"), "--model", "models:/fer-photo@champion",
                          "--tracking-uri", registered, "--annotate", str(tmp_path / "out"), "--json",
                          str(tmp_path / "out.jsonl"))
    assert result.returncode == 0, result.stderr
    written = {Path(r["path"]).relative_to(tmp_path).as_posix(): Path(r["annotated"]).name
               for r in map(json.loads, (tmp_path / "out.jsonl").read_text().splitlines())}
    assert written == {"a/x.jpg": "x.png", "a/x.png": "x-2.png", "b/x.jpg": "x-3.png"}
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["x-2.png", "x-3.png", "x.png"]


def test_a_missing_local_store_is_named_and_no_stray_mlflow_db_is_made(photos, tmp_path):
    result = subprocess.run([sys.executable, str(ROOT / "run.py"), "predict", str(photos["astronaut"])], cwd=tmp_path,
                            env={k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"},
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"no MLflow store at sqlite:///{tmp_path.resolve()}/mlflow.db" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_tracking_server_that_is_down_is_named_within_seconds_without_its_password(tmp_path):
    import socket
    import time

    from fercore.errors import RegistryError

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    start = time.monotonic()
    with pytest.raises(RegistryError) as err:
        load_predictor("models:/fer-photo@champion", f"http://user:s3cret@127.0.0.1:{port}", tmp_path / "cache")
    assert time.monotonic() - start < 10
    assert f"MLflow tracking server http://user:***@127.0.0.1:{port} is unreachable" in str(err.value)
    assert "s3cret" not in str(err.value)


class _Unpickled(mlflow.pyfunc.PythonModel):
    """A wrapper of another class: unpickling it writes a file (as a hostile pickle could run any code)."""

    def __init__(self, marker: str):
        self.marker = marker

    def __setstate__(self, state):
        Path(state["marker"]).write_text("ran")
        self.__dict__.update(state)

    def predict(self, context, model_input, params=None):  # noqa: ARG002
        import pandas as pd

        return pd.DataFrame(np.full((len(model_input), len(CLASS_NAMES)), 1 / len(CLASS_NAMES)), columns=CLASS_NAMES)


def test_a_model_of_another_class_is_not_unpickled_unless_trusted(registered, tmp_path):
    from mlflow import MlflowClient

    from fercore.errors import RegistryError
    from fercore.tracking.registry import log_and_register
    from tests.conftest import connect_store

    marker = tmp_path / "ran"
    experiment = connect_store(registered, "photos")
    run_id = MlflowClient().create_run(experiment).info.run_id
    version = log_and_register(registered, run_id, _Unpickled(str(marker)), {}, "fer-other", {"family": "cnn"}, "",
                               np.zeros((2, 48, 48), np.uint8))
    marker.unlink(missing_ok=True)
    with pytest.raises(RegistryError, match="not one of this project's wrappers.*--trust-model"):
        load_predictor(f"models:/fer-other/{version}", registered, tmp_path / "cache")
    assert not marker.exists()
    predict, _ = load_predictor(f"models:/fer-other/{version}", registered, tmp_path / "cache", trust=True)
    assert marker.exists() and predict(np.zeros((3, 48, 48), np.uint8)).shape == (3, len(CLASS_NAMES))


def test_a_version_whose_files_are_gone_is_named(tmp_path):
    import shutil

    import torch
    from mlflow import MlflowClient

    from fercore.errors import RegistryError
    from fercore.models import build_cnn, save_model
    from fercore.serving.pyfunc import FerEmotionModel
    from fercore.tracking.registry import log_and_register
    from tests.conftest import connect_store

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    experiment = connect_store(uri, "gone")
    run_id = MlflowClient().create_run(experiment).info.run_id
    torch.manual_seed(0)
    folder = save_model(build_cnn("vgg7", width=8).eval(), tmp_path / "model")
    version = log_and_register(uri, run_id, FerEmotionModel(), {"model": str(folder)}, "fer-gone", {"family": "cnn"}, "",
                               np.zeros((2, 48, 48), np.uint8))
    shutil.rmtree(tmp_path / "mlartifacts")
    with pytest.raises(RegistryError, match=rf"fer-gone v{version}'s files are missing or unreadable in its store "
                                            r"\(FileNotFoundError: no MLmodel"):
        load_predictor(f"models:/fer-gone/{version}", uri, tmp_path / "cache")
    assert [p for p in (tmp_path / "cache" / "models").iterdir() if p.is_dir()] == []  # no half-made copy


def test_a_vit_answers_without_a_loading_bar_on_stderr(photos, registered, tiny_vit_dir, tmp_path):
    from mlflow import MlflowClient

    from fercore.config import VitConfig
    from fercore.models import save_model
    from fercore.models.vit import build_vit
    from fercore.serving.pyfunc import FerEmotionModel
    from fercore.tracking.registry import log_and_register
    from tests.conftest import connect_store

    experiment = connect_store(registered, "photos")
    run_id = MlflowClient().create_run(experiment).info.run_id
    folder = save_model(build_vit(VitConfig(checkpoint=str(tiny_vit_dir), head_hidden=[16])).eval(), tmp_path / "vit")
    version = log_and_register(registered, run_id, FerEmotionModel(), {"model": str(folder)}, "fer-vit", {"family": "vit"}, "",
                               np.zeros((2, 48, 48), np.uint8), model_config={"tta": "none"})
    result = _run_predict(str(photos["astronaut"]), "--model", f"models:/fer-vit/{version}", "--tracking-uri",
                          registered)
    assert result.returncode == 0 and result.stderr == ""
    assert result.stdout.splitlines()[-1] == f"1 photos, 1 faces: fer-vit v{version} (models:/fer-vit/{version})"


def test_explain_writes_each_face_with_its_map_under_its_box_and_a_photo_without_faces_is_listed(photos, registered,
                                                                                                  tmp_path):
    result = _run_predict(str(photos["astronaut"]), str(photos["coffee"]), "--model", "models:/fer-photo@champion",
                          "--tracking-uri", registered, "--json", str(tmp_path / "out.json"),
                          "--annotate", str(tmp_path / "annotated"), "--explain", str(tmp_path / "explained"))
    assert result.returncode == 0, result.stderr
    assert "coffee.jpg" in result.stdout and "no face found" in result.stdout
    assert result.stdout.splitlines()[-1] == f"photos with their maps written to {tmp_path / 'explained'}"
    assert sorted(p.name for p in (tmp_path / "explained").iterdir()) == ["astronaut.png"]  # no face, no photo
    out = {Path(r["path"]).name: r for r in map(json.loads, (tmp_path / "out.json").read_text().splitlines())}
    assert out["astronaut.jpg"]["explained"] == str(tmp_path / "explained" / "astronaut.png")
    assert out["coffee.jpg"]["explained"] is None
    explained = np.asarray(Image.open(tmp_path / "explained" / "astronaut.png")).astype(int)
    annotated = np.asarray(Image.open(tmp_path / "annotated" / "astronaut.png")).astype(int)
    assert explained.shape == annotated.shape == (512, 512, 3)
    x, y, w, h = out["astronaut.jpg"]["faces"][0]["box"]
    inside = (slice(y + 5, y + h - 5), slice(x + 5, x + w - 5))
    assert np.abs(explained[inside] - annotated[inside]).mean() > 10  # the map lies over the face ...
    np.testing.assert_array_equal(explained[y + h + 40:], annotated[y + h + 40:])  # ... and nowhere else:
    np.testing.assert_array_equal(explained[y:y + h, :x - 1], annotated[y:y + h, :x - 1])  # not in the crop's margin
    assert (explained[y - 2:y, x:x + w] == ANNOTATION_COLOUR).all()  # under the same box and caption
