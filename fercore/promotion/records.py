"""What each registered single model records for later promotions, in its MLflow run and tags: the images it was
trained on (:data:`TRAIN_HASHES`), its val/test probabilities by image (:data:`PREDICTIONS`) and its predict time
for one face (:data:`PREDICT_MS`). A later run scores it from them, without running it, when they cover its images
(:func:`fercore.promotion.candidates.recorded_predictions`)."""

from __future__ import annotations

import io
import statistics
import time
from pathlib import Path

import numpy as np

from fercore.data.dataset import FerDataset
from fercore.data.duplicates import image_hashes
from fercore.evaluation.predictions import Predictions

TRAIN_HASHES = "data/train_image_hashes.npy"  # which images it was trained on
PREDICTIONS = "data/predictions.npz"  # its val/test probabilities, keyed by the images' hashes
PREDICT_MS = "predict_ms"  # version tag: milliseconds to predict one face, warm, on the machine that registered it


def predict_ms(tags: dict[str, str]) -> float | None:
    """A version's measured predict time for one face, if it was measured."""
    return float(tags[PREDICT_MS]) if tags.get(PREDICT_MS) else None


def predictions_record(preds: Predictions, dataset: FerDataset) -> bytes:
    """``preds`` with the hashes of the images they are for: what a later run lines up with its own images."""
    buf = io.BytesIO()
    np.savez(buf, val_hashes=image_hashes(dataset.split("val").images), val=preds.val.astype(np.float32),
             test_hashes=image_hashes(dataset.split("test").images), test=preds.test.astype(np.float32))
    return buf.getvalue()


def lined_up(path: Path, dataset: FerDataset) -> Predictions | None:
    """The recorded probabilities in ``path`` for ``dataset``'s val and test images, in their row order; None when
    the record lacks one of them (it was made on other images). Equal images (FER-2013's duplicates) have equal
    probabilities, so any of their rows serves."""
    with np.load(path, allow_pickle=False) as record:
        parts = []
        for split in ("val", "test"):
            rows = {h: i for i, h in enumerate(record[f"{split}_hashes"].tolist())}
            wanted = image_hashes(dataset.split(split).images).tolist()
            if any(h not in rows for h in wanted):
                return None
            parts.append(record[split][[rows[h] for h in wanted]])
    return Predictions(parts[0], parts[1], str(dataset.metadata.get("sha256", "")))


def measure_predict_ms(predict, face: np.ndarray, repeats: int = 7) -> float:
    """Median milliseconds of ``predict`` on one face (``(1, 48, 48)``), after two warm-up calls."""
    for _ in range(2):
        predict(face)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        predict(face)
        times.append((time.perf_counter() - start) * 1000)
    return round(statistics.median(times), 1)
