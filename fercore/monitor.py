"""Monitoring new images against the champion's training data: drift of the images, of the
champion's embeddings and of its predictions, and per-class metrics when the images are labelled.

New images come as a folder or archive: 48x48 face crops, or photos (their faces are found
first), unlabelled or in class folders (``angry/ ... surprise/``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
from PIL import Image

from fercore.constants import CLASS_INDEX, CLASS_NAMES, IMAGE_SIZE, IMAGE_SUFFIXES
from fercore.dataset import FerDataset
from fercore.drift import DriftResult, data_drift, embeddings, prediction_drift, sample_rows
from fercore.errors import DataError
from fercore.faces import find_faces, load_photo
from fercore.ingest import _iter_members, _skipped
from fercore.metrics import Evaluation, evaluate_predictions

logger = logging.getLogger(__name__)


@dataclass
class NewImages:
    """Faces to monitor: uint8 ``(N, 48, 48)``, labels (-1 where unlabelled), where each came from."""

    images: np.ndarray
    labels: np.ndarray
    names: list[str]
    photos_without_face: list[str] = field(default_factory=list)

    @property
    def labelled(self) -> bool:
        return bool(len(self.labels)) and bool((self.labels >= 0).all())


def _faces_of(name: str, data: bytes, labelled: bool) -> list[np.ndarray]:
    gray = load_photo(name, data)
    if gray.shape == (IMAGE_SIZE, IMAGE_SIZE):
        return [gray]  # a face crop already
    crops = [f.crop for f in find_faces(gray)]
    return crops[:1] if labelled else crops  # a label belongs to one face: the largest


def read_new_images(path: str | Path) -> NewImages:
    """The faces of a folder or archive of new images (crops or photos), with labels from class folders.

    Raises:
        DataError: the path is missing, holds no faces, or mixes labelled and unlabelled images.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise DataError(f"monitor: {path} does not exist; pass a folder or archive of face images with --data")
    images, labels, names, no_face = [], [], [], []
    for name, read in _iter_members(path):
        parts = PurePosixPath(name).parts
        if _skipped(parts) or not name.lower().endswith(IMAGE_SUFFIXES):
            continue
        label = CLASS_INDEX.get(parts[-2].lower(), -1) if len(parts) >= 2 else -1
        crops = _faces_of(f"{path}: {name}", read(), label >= 0)
        if not crops:
            no_face.append(name)
        for crop in crops:
            images.append(crop)
            labels.append(label)
            names.append(name)
    if not images:
        raise DataError(f"monitor: no faces in {path} ({len(no_face)} photos without a detectable face)")
    labels_arr = np.array(labels)
    if (labels_arr >= 0).any() and (labels_arr < 0).any():
        raise DataError(f"monitor: {path} mixes images in class folders with unlabelled ones; use one or the other")
    if no_face:
        logger.warning("monitor: %d photos without a detectable face, e.g. %s", len(no_face), ", ".join(no_face[:5]))
    return NewImages(np.stack(images), labels_arr, names, no_face)


@dataclass
class MonitorResult:
    data_drift: DriftResult
    prediction_drift: DriftResult
    predicted: dict[str, int]
    evaluation: Evaluation | None = None

    @property
    def drifted(self) -> bool:
        return self.data_drift.drifted or self.prediction_drift.dataset_drift

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"drifted": self.drifted, "data_drift": self.data_drift.summary(),
                               "prediction_drift": self.prediction_drift.summary(), "predicted_counts": self.predicted}
        if self.evaluation is not None:
            out["accuracy"] = self.evaluation.overall["accuracy"]
            out["macro_f1"] = self.evaluation.overall["macro_f1"]
            out["per_class_f1"] = {k: round(float(v), 4) for k, v in self.evaluation.per_class["f1"].items()}
        return out


def embedding_module(pyfunc_model):
    """The torch network whose embeddings drift is measured on: the model's own, or for a routed
    ensemble the member that routes the most emotions."""
    wrapper = pyfunc_model.unwrap_python_model()
    if hasattr(wrapper, "model"):
        return wrapper.model
    routes = list(getattr(wrapper, "routes", {}).values())
    if not routes:
        return None
    member = max(set(routes), key=routes.count)
    return embedding_module(wrapper.members[member])


def monitor(reference: FerDataset, new: NewImages, predict, module, drift_share: float = 0.5,
            max_images: int = 3000, amp=None) -> MonitorResult:
    """Compares ``new`` with ``reference``'s training images and scores them.

    Args:
        reference: the champion's training dataset (its ``train`` split is the reference).
        new: the new faces.
        predict: uint8 images -> probabilities ``(N, 7)`` (the champion).
        module: the torch network for embeddings (``embedding_module``), or None.
        drift_share: share of drifted image statistics that flags dataset drift.
        max_images: images per side in the reports.
        amp: autocast type for the embeddings.
    """
    train = reference.split("train")
    ref = train.images[sample_rows(len(train), max_images, 0)]
    cur_idx = sample_rows(len(new.images), max_images, 1)
    cur = new.images[cur_idx]
    ref_emb = cur_emb = None
    if module is not None:
        ref_emb, cur_emb = embeddings(module, ref, amp), embeddings(module, cur, amp)
    data = data_drift(ref, cur, ref_emb, cur_emb, drift_share, max_images)
    ref_pred, new_pred = predict(ref).argmax(1), predict(new.images).argmax(1)
    names = lambda idx: [CLASS_NAMES[i] for i in idx]  # noqa: E731
    predictions = prediction_drift(names(ref_pred), names(new_pred[cur_idx]))
    counts = {c: int((new_pred == i).sum()) for i, c in enumerate(CLASS_NAMES)}
    evaluation = evaluate_predictions(new.labels, new_pred) if new.labelled else None
    return MonitorResult(data, predictions, counts, evaluation)


def write_batch(new: NewImages, folder: Path) -> Path:
    """Writes labelled faces as an incoming batch (``<class>/<n>.png``) for retraining; returns the folder."""
    if not new.labelled:
        raise DataError("monitor.on_drift: retrain needs labelled images (in class folders)")
    for i, (img, label) in enumerate(zip(new.images, new.labels)):
        target = folder / CLASS_NAMES[label] / f"{i:06d}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(target)
    return folder
