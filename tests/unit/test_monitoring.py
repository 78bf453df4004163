"""Monitoring new images: no drift on more of the same faces, drift on darkened and blurred ones,
labelled batches scored per class, and what is refused before any image is read."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from scipy.ndimage import uniform_filter

from fercore.constants import CLASS_NAMES
from fercore.errors import DataError
from fercore.models import build_cnn
from fercore.models.inference import predict_proba
from fercore.monitoring.new_images import NewImages, monitor, read_new_images
from tests.conftest import synthetic


@pytest.fixture(scope="module")
def model():
    import torch

    torch.manual_seed(0)
    return build_cnn("vgg7", width=8).eval()


def _new(seed: int, per_class: int = 20) -> NewImages:
    ds = synthetic(per_class=per_class, test_per_class=1, seed=seed).split("train")
    return NewImages(ds.images, ds.labels, [f"n{i}" for i in range(len(ds))])


def _shifted(new: NewImages) -> NewImages:
    dark = uniform_filter(new.images.astype(np.float32), size=(1, 5, 5)) * 0.3  # blurred and darkened
    return NewImages(dark.astype(np.uint8), new.labels, new.names)


@pytest.mark.slow  # Evidently reports
def test_more_of_the_same_faces_do_not_drift_and_shifted_ones_do(model):
    reference = synthetic(per_class=60, test_per_class=1, seed=0)
    predict = lambda x: predict_proba(model, x)  # noqa: E731
    new = _new(seed=1)
    same = monitor(reference, new, predict, model)
    assert not same.data_drift.drifted, same.data_drift.summary()
    expected = float((predict(new.images).argmax(1) == new.labels).mean())  # labelled faces are scored
    assert same.evaluation.overall["accuracy"] == pytest.approx(expected)
    assert sum(same.predicted.values()) == len(_new(seed=1).images)
    shifted = monitor(reference, _shifted(_new(seed=1)), predict, model)
    assert shifted.data_drift.drifted and shifted.drifted
    assert shifted.summary()["data_drift"]["drift_share"] >= 0.5


def test_new_images_come_as_crops_in_class_folders_or_as_photos(tmp_path):
    skimage_data = pytest.importorskip("skimage.data")
    crops = tmp_path / "crops"
    for label, name in enumerate(CLASS_NAMES[:2]):
        (crops / name).mkdir(parents=True)
        Image.fromarray(np.full((48, 48), 40 * label, np.uint8)).save(crops / name / "a.png")
    new = read_new_images(crops)
    assert new.labelled and sorted(new.labels.tolist()) == [0, 1]
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(skimage_data.astronaut()).save(photos / "astronaut.jpg")
    Image.fromarray(skimage_data.coffee()).save(photos / "coffee.jpg")
    new = read_new_images(photos)
    assert new.images.shape == (1, 48, 48) and not new.labelled and new.photos_without_face == ["coffee.jpg"]
    Image.fromarray(np.zeros((48, 48), np.uint8)).save(crops / "loose.png")
    with pytest.raises(DataError, match="mixes images in class folders"):
        read_new_images(crops)


def _crops(folder, names: dict[str, int]):
    for sub, n in names.items():
        (folder / sub).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.fromarray(np.full((48, 48), 10 * i, np.uint8)).save(folder / sub / f"{i}.png")
    return folder


def test_a_folder_that_is_not_a_class_is_named_with_the_class_names(tmp_path):
    from fercore.monitoring.new_images import check_new_images

    new = _crops(tmp_path / "new", {"happy": 2, "joy": 3})
    for read in (read_new_images, check_new_images):
        with pytest.raises(DataError) as err:
            read(new)
        assert "joy/ (3 images)" in str(err.value) and ", ".join(CLASS_NAMES) in str(err.value)


def test_a_missing_or_empty_path_is_refused_before_any_image_is_read(tmp_path):
    from fercore.monitoring.new_images import check_new_images

    with pytest.raises(DataError, match="nowhere does not exist"):
        check_new_images(tmp_path / "nowhere")
    (tmp_path / "empty" / "happy").mkdir(parents=True)
    (tmp_path / "empty" / "notes.txt").write_text("x")
    with pytest.raises(DataError, match=r"empty holds no images \(.jpg"):
        check_new_images(tmp_path / "empty")


def test_every_unreadable_file_is_named_or_skipped_and_counted(tmp_path):
    from fercore.monitoring.new_images import check_new_images

    new = _crops(tmp_path / "new", {"happy": 2, "sad": 1})
    for name in ("happy/bad1.png", "sad/bad2.jpg", "sad/bad3.png"):
        (new / name).write_bytes(b"\x89PNG not really")
    for read in (read_new_images, check_new_images):
        with pytest.raises(DataError) as err:
            read(new)
        message = str(err.value)
        assert "3 unreadable image files" in message
        assert all(n in message for n in ("happy/bad1.png", "sad/bad2.jpg", "sad/bad3.png"))
    assert check_new_images(new, "skip") == 3
    kept = read_new_images(new, "skip")
    assert len(kept.images) == 3 and kept.unreadable == 3
