"""A model's maps summarised per emotion: the mean map of the validation faces it got right, and a gallery
of its most confident correct and wrong test faces. What ``evaluate_<name>`` shows and promotion compares."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from torch import nn

from fercore.constants import CLASS_NAMES, NUM_CLASSES
from fercore.data.dataset import FerDataset
from fercore.evaluation.predictions import Predictions
from fercore.explain.cam import class_activation_maps

logger = logging.getLogger(__name__)
ARRAYS = ("mean_maps", "mean_faces", "map_counts", "gallery_images", "gallery_maps", "gallery_true", "gallery_pred",
          "gallery_confidence", "gallery_row")


def _empty(*shape: int, dtype: type = np.float32) -> np.ndarray:
    return np.zeros(shape, dtype=dtype)


@dataclass
class Explanation:
    """Per emotion (rows in ``CLASS_NAMES`` order): ``mean_maps`` over ``map_counts`` correctly classified
    validation faces and ``mean_faces`` (every validation face of that emotion); the gallery's test faces
    (``gallery_row``: their row in the test split) with their maps, true and predicted class and confidence.
    ``val_f1`` is the model's validation F1 per emotion; ``seconds`` what drawing the maps took."""

    contender: str
    mean_maps: np.ndarray = field(default_factory=lambda: _empty(0, 48, 48))
    mean_faces: np.ndarray = field(default_factory=lambda: _empty(0, 48, 48))
    map_counts: np.ndarray = field(default_factory=lambda: _empty(0, dtype=np.int64))
    gallery_images: np.ndarray = field(default_factory=lambda: _empty(0, 48, 48, dtype=np.uint8))
    gallery_maps: np.ndarray = field(default_factory=lambda: _empty(0, 48, 48))
    gallery_true: np.ndarray = field(default_factory=lambda: _empty(0, dtype=np.int64))
    gallery_pred: np.ndarray = field(default_factory=lambda: _empty(0, dtype=np.int64))
    gallery_confidence: np.ndarray = field(default_factory=lambda: _empty(0))
    gallery_row: np.ndarray = field(default_factory=lambda: _empty(0, dtype=np.int64))
    val_f1: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def enabled(self) -> bool:
        """False for the placeholder of a run with ``explain.enabled: false``."""
        return len(self.mean_maps) == NUM_CLASSES

    def save(self, folder: Path) -> None:
        np.savez_compressed(folder / "maps.npz", **{k: getattr(self, k) for k in ARRAYS})
        (folder / "explanation.json").write_text(json.dumps(
            {"contender": self.contender, "val_f1": self.val_f1, "seconds": self.seconds}))

    @classmethod
    def load(cls, folder: Path) -> Explanation:
        meta = json.loads((folder / "explanation.json").read_text())
        with np.load(folder / "maps.npz", allow_pickle=False) as npz:
            return cls(meta["contender"], **{k: npz[k] for k in ARRAYS}, val_f1=meta["val_f1"], seconds=meta["seconds"])


def _mean_maps(model: nn.Module, val: FerDataset, probs: np.ndarray, per_emotion: int, seed: int, tta: str
               ) -> tuple[np.ndarray, np.ndarray]:
    """Each emotion's mean map over (a seeded sample of) the validation faces the model got right."""
    rng = np.random.default_rng(seed)
    right = probs.argmax(1) == val.labels
    rows = [rng.permutation(np.flatnonzero(right & (val.labels == c)))[:per_emotion] for c in range(NUM_CLASSES)]
    picked = np.concatenate(rows).astype(np.int64)
    maps = class_activation_maps(model, val.images[picked], val.labels[picked], tta=tta)
    counts = np.array([len(r) for r in rows], dtype=np.int64)
    means, start = np.zeros((NUM_CLASSES, *val.images.shape[1:]), np.float32), 0
    for c, n in enumerate(counts):
        if n:
            means[c] = maps[start:start + n].mean(0)
        start += n
    return means, counts


def _gallery_rows(test: FerDataset, probs: np.ndarray, k: int) -> np.ndarray:
    """Per predicted emotion: the ``k`` most confident correct, then the ``k`` most confident wrong test faces."""
    pred, conf = probs.argmax(1), probs.max(1)
    rows = []
    for c in range(NUM_CLASSES):
        for correct in (True, False):
            idx = np.flatnonzero((pred == c) & ((test.labels == c) == correct))
            rows.append(idx[np.argsort(-conf[idx], kind="stable")[:k]])
    return np.concatenate(rows).astype(np.int64)


def explain_model(model: nn.Module, contender: str, dataset: FerDataset, preds: Predictions, val_f1: dict[str, float],
                  faces_per_emotion: int = 3, mean_map_faces: int = 100, seed: int = 0, tta: str = "none") -> Explanation:
    """Draws ``model``'s maps: per emotion the mean map of up to ``mean_map_faces`` correctly classified validation
    faces, and a gallery of ``faces_per_emotion`` confident correct and wrong test faces (by ``preds``, the
    probabilities the evaluation reported). Each face's map is averaged over the test-time views ``tta`` that the
    probabilities averaged."""
    start = time.perf_counter()
    val, test = dataset.split("val"), dataset.split("test")
    means, counts = _mean_maps(model, val, preds.val, mean_map_faces, seed, tta)
    faces = np.stack([val.images[val.labels == c].mean(0) if (val.labels == c).any() else np.zeros(val.images.shape[1:])
                      for c in range(NUM_CLASSES)]).astype(np.float32)
    rows = _gallery_rows(test, preds.test, faces_per_emotion)
    pred = preds.test[rows].argmax(1)
    gallery_maps = class_activation_maps(model, test.images[rows], pred, tta=tta)
    seconds = round(time.perf_counter() - start, 2)
    logger.info("%s: maps of %d validation and %d test faces in %.1f s", contender, int(counts.sum()), len(rows), seconds)
    return Explanation(contender, means, faces, counts, test.images[rows], gallery_maps, test.labels[rows].astype(np.int64),
                       pred.astype(np.int64), preds.test[rows].max(1).astype(np.float32), rows,
                       {e: round(float(val_f1[e]), 4) for e in CLASS_NAMES}, seconds)
