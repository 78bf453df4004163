"""Monitoring new images against the champion's training data: drift of the images, of the
champion's embeddings and of its predictions, and per-class metrics when the images are labelled.

New images come as a folder or archive: 48x48 face crops, or photos (their faces are found
first), unlabelled or in class folders (``angry/ ... surprise/``).
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
from PIL import Image

from fercore.constants import CLASS_INDEX, CLASS_NAMES, IMAGE_SIZE, IMAGE_SUFFIXES
from fercore.data.dataset import FerDataset
from fercore.data.images import PHOTO_MAX_PIXELS, is_hidden, iter_members, open_image, read_photo
from fercore.errors import DataError
from fercore.evaluation.metrics import Evaluation, evaluate_predictions
from fercore.monitoring.drift import DriftResult, data_drift, embeddings, prediction_drift, sample_rows
from fercore.serving.faces import find_faces

logger = logging.getLogger(__name__)
CONTENT_FILE = ".fer-content-sha256"  # in a batch monitoring wrote: the digest of its labelled faces


@dataclass
class NewImages:
    """Faces to monitor: uint8 ``(N, 48, 48)``, labels (-1 where unlabelled), where each came from."""

    images: np.ndarray
    labels: np.ndarray
    names: list[str]
    photos_without_face: list[str] = field(default_factory=list)
    unreadable: int = 0  # files skipped (monitor.on_unreadable: skip)

    @property
    def labelled(self) -> bool:
        return bool(len(self.labels)) and bool((self.labels >= 0).all())


_FIX = "Remove or replace the file, or set monitor.on_unreadable: skip to skip and count such files."
_CLASS_FOLDERS = f"class folders are named {', '.join(CLASS_NAMES)}"


def _faces_of(name: str, data: bytes, labelled: bool) -> list[np.ndarray]:
    gray = read_photo(name, data, fix=_FIX)
    if gray.shape == (IMAGE_SIZE, IMAGE_SIZE):
        return [gray]  # a face crop already
    crops = [f.crop for f in find_faces(gray)]
    return crops[:1] if labelled else crops  # a label belongs to one face: the largest


def list_new_images(path: str | Path) -> list[tuple[str, Callable[[], bytes], int]]:
    """``(name, read, label)`` of every image of a folder or archive of new images; label -1 when
    unlabelled. Either every image sits in a class folder, or none does.

    Raises:
        DataError: the path is missing or holds no images, or it mixes class folders with other images
            (the others are named by folder, with the class folders' names).
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise DataError(f"monitor: {path} does not exist; pass a folder or archive of face images with --data")
    fix = f"Replace {path}, or pass another folder or archive with --data."
    found = []
    for name, read in iter_members(path, fix):
        parts = PurePosixPath(name).parts
        if not is_hidden(parts) and name.lower().endswith(IMAGE_SUFFIXES):
            found.append((name, read, CLASS_INDEX.get(parts[-2].lower(), -1) if len(parts) >= 2 else -1))
    if not found:
        raise DataError(f"monitor: {path} holds no images ({', '.join(IMAGE_SUFFIXES)}); pass a folder or archive "
                        "of faces or photos with --data")
    outside = Counter(str(PurePosixPath(name).parent) for name, _, label in found if label < 0)
    if outside and any(label >= 0 for *_, label in found):
        where = ", ".join(f"{'the top level' if d == '.' else d + '/'} ({n} images)" for d, n in sorted(outside.items()))
        raise DataError(f"monitor: {path} mixes images in class folders with images outside them: {where}. Labelled "
                        f"images go in class folders ({_CLASS_FOLDERS}); rename those folders, or pass unlabelled "
                        "images without class folders")
    return found


def check_new_images(path: str | Path, on_unreadable: str = "error") -> int:
    """Checks new images before any pipeline work: :func:`list_new_images`, and every file opens as an
    image. Returns how many images there are.

    Raises:
        DataError: as :func:`list_new_images`, or naming every file that is not an image (unless
            ``on_unreadable`` is ``skip``).
    """
    found = list_new_images(path)
    bad = []
    for name, read, _ in found:
        try:
            open_image(name, read(), PHOTO_MAX_PIXELS, _FIX).close()
        except DataError as exc:
            bad.append(str(exc))
    _refuse_unreadable(path, bad, on_unreadable)
    return len(found) - len(bad)


def _refuse_unreadable(path: str | Path, errors: list[str], on_unreadable: str) -> None:
    if not errors:
        return
    if on_unreadable != "skip":
        listed = "\n  ".join(errors[:20]) + (f"\n  ... and {len(errors) - 20} more" if len(errors) > 20 else "")
        raise DataError(f"monitor: {len(errors)} unreadable image files in {path}:\n  {listed}")
    logger.warning("monitor: skipped %d unreadable image files (monitor.on_unreadable: skip), e.g. %s", len(errors),
                   errors[0])


def read_new_images(path: str | Path, on_unreadable: str = "error") -> NewImages:
    """The faces of a folder or archive of new images (crops or photos), with labels from class folders.

    Raises:
        DataError: as :func:`list_new_images`; files that are not images (all named, unless
            ``on_unreadable`` is ``skip``); no face in any photo.
    """
    images, labels, names, no_face, unreadable = [], [], [], [], []
    for name, read, label in list_new_images(path):
        try:
            crops = _faces_of(f"{path}: {name}", read(), label >= 0)
        except DataError as exc:
            unreadable.append(str(exc))
            continue
        if not crops:
            no_face.append(name)
        for crop in crops:
            images.append(crop)
            labels.append(label)
            names.append(name)
    _refuse_unreadable(path, unreadable, on_unreadable)
    if not images:
        raise DataError(f"monitor: no faces in {path}: none of its {len(no_face)} photos has a detectable face")
    if no_face:
        logger.warning("monitor: %d photos without a detectable face, e.g. %s", len(no_face), ", ".join(no_face[:5]))
    return NewImages(np.stack(images), np.array(labels), names, no_face, len(unreadable))


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


def _embedded_member(routes: list[str], weights: dict[str, float] | None) -> str:
    """The member that routes the most emotions (ties: the lowest version), else the one with the largest weight."""
    if routes:
        return max(sorted(set(routes), key=int), key=routes.count)
    return max(sorted(weights, key=int), key=weights.get)


def embedding_version(tracking_uri: str, name: str, version: str) -> str:
    """The single version whose network embeddings are measured on for ``version``: itself; for a routed ensemble
    the member that routes the most emotions, for an averaging one the member with the largest weight (read from
    the ensemble's spec alone: that member is loaded, not the whole ensemble)."""
    from fercore.tracking import registry
    from fercore.tracking.copies import ensemble_spec
    from fercore.tracking.tags import family

    if family(registry.get_version(tracking_uri, name, version)) != "ensemble":
        return version
    spec = ensemble_spec(tracking_uri, name, version)
    routes, weights = list((spec.get("routes") or {}).values()), spec.get("weights")
    return embedding_version(tracking_uri, name, _embedded_member(routes, weights)) if routes or weights else version


def monitor(reference: FerDataset, new: NewImages, predict, module, drift_share: float = 0.5,
            max_images: int = 3000, amp=None) -> MonitorResult:
    """Compares ``new`` with ``reference``'s training images and scores them.

    Args:
        reference: the champion's training dataset (its ``train`` split is the reference).
        new: the new faces.
        predict: uint8 images -> probabilities ``(N, 7)`` (the champion).
        module: the torch network for embeddings (that of :func:`embedding_version`), or None.
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


def write_batch(new: NewImages, incoming_dir: Path) -> tuple[Path, bool]:
    """Writes labelled faces as an incoming batch (``<class>/<n>.png``) under ``incoming_dir`` for retraining;
    returns its folder and whether it is new. The same faces written before (found by :data:`CONTENT_FILE`) are
    not written again: that batch is returned, not new. Written under a hidden name and renamed: never
    half-written.

    Raises:
        DataError: the images are not labelled (class folders).
    """
    from fercore.data.incoming import content_digest

    if not new.labelled:
        raise DataError("monitor.on_drift: retrain needs labelled images (in class folders)")
    digest = content_digest(new.images, new.labels)
    for earlier in sorted(incoming_dir.glob("monitor-*/" + CONTENT_FILE)):
        if earlier.read_text().strip() == digest:
            logger.info("These faces were written as the batch %s already: no new batch", earlier.parent)
            return earlier.parent, False
    folder = incoming_dir / f"monitor-{time.strftime('%Y%m%d-%H%M%S')}"
    tmp = incoming_dir / f".{folder.name}.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    for i, (img, label) in enumerate(zip(new.images, new.labels)):
        target = tmp / CLASS_NAMES[label] / f"{i:06d}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(target)
    (tmp / CONTENT_FILE).write_text(digest + "\n")
    os.replace(tmp, folder)
    return folder, True
