"""A model's probabilities on the validation and test splits: scored once per model, reused by every later step.

Decisions (promotion) read the validation figures; the test figures are only reported.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from fercore.data.dataset import FerDataset
from fercore.evaluation.metrics import Evaluation, evaluate_predictions
from fercore.models.inference import predict_proba


@dataclass
class Predictions:
    """A model's class probabilities ``(N, 7)`` on the ``val`` and ``test`` splits of one dataset, in
    each split's row order; ``dataset_sha256`` names the dataset they belong to."""

    val: np.ndarray
    test: np.ndarray
    dataset_sha256: str = ""

    def evaluations(self, dataset: FerDataset, contender: str = "") -> tuple[Evaluation, Evaluation]:
        """``(validation, test)`` evaluations against ``dataset``'s labels (of ``contender``'s model)."""
        val, test = dataset.split("val"), dataset.split("test")
        if (len(self.val), len(self.test)) != (len(val), len(test)):
            raise ValueError(f"predictions for {len(self.val)} val / {len(self.test)} test images do not fit a "
                             f"dataset with {len(val)} / {len(test)}")
        val_ev = evaluate_predictions(val.labels, self.val.argmax(1))
        test_ev = evaluate_predictions(test.labels, self.test.argmax(1), test.subsets)
        val_ev.contender, val_ev.split, test_ev.contender, test_ev.split = contender, "val", contender, "test"
        return val_ev, test_ev



def predict_splits(predict, dataset: FerDataset, desc: str | None = None, chunk: int = 1024) -> Predictions:
    """One prediction pass over the val and test images (``predict``: uint8 images -> probabilities); with
    ``desc``, in chunks of ``chunk`` images under a progress bar of that name."""
    val, test = dataset.split("val"), dataset.split("test")
    images = np.concatenate([val.images, test.images])
    if desc is None:
        probs = np.asarray(predict(images), np.float32)
    else:
        from tqdm import tqdm

        parts = []
        with tqdm(total=len(images), desc=desc, unit="img") as bar:
            for start in range(0, len(images), chunk):
                parts.append(np.asarray(predict(images[start:start + chunk]), np.float32))
                bar.update(len(parts[-1]))
        probs = np.concatenate(parts) if parts else np.empty((0, 7), np.float32)
    return Predictions(probs[:len(val)], probs[len(val):], str(dataset.metadata.get("sha256", "")))



def model_predictions(model: torch.nn.Module, dataset: FerDataset, tta: str, amp: torch.dtype | None) -> Predictions:
    """A model in memory scored on val and test with its test-time views and precision."""
    return predict_splits(lambda images: predict_proba(model, images, tta=tta, amp=amp), dataset)
