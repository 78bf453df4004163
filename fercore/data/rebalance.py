"""Rebalancing of the training split: the paper's inverse-frequency resampling, or loss weights."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from sklearn.utils.class_weight import compute_class_weight

from fercore.constants import CLASS_NAMES, NUM_CLASSES
from fercore.data.dataset import FerDataset

Method = Literal["resample", "class_weights", "none"]


@dataclass
class Rebalanced:
    """Which dataset rows the training epochs visit, and the loss weight of each class.

    Attributes:
        indices: the train split's row indices into the dataset (each once).
        class_weights: ``float32`` loss weight per class (ones unless ``class_weights``).
        method: how it was built.
        counts_before: train images per class before rebalancing.
        counts_after: rows per class in one epoch (expected counts for ``resample``).
        sample_weights: ``resample`` only: the probability of drawing each row of ``indices``.
        epoch_size: rows per epoch.
        seed: seeds the per-epoch draws.
    """

    indices: np.ndarray
    class_weights: np.ndarray
    method: str
    counts_before: dict[str, int]
    counts_after: dict[str, int]
    sample_weights: np.ndarray | None = None
    epoch_size: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        self.epoch_size = self.epoch_size or len(self.indices)

    def rows_per_epoch(self, limit: int | None = None) -> int:
        return min(self.epoch_size, limit or self.epoch_size)

    def epoch_rows(self, epoch: int, limit: int | None = None) -> np.ndarray:
        """The rows of epoch ``epoch`` (0-based), at most ``limit``; the same for the same epoch.

        ``resample`` draws afresh each epoch, with replacement, like ``torch``'s
        ``WeightedRandomSampler``: one draw fixed for all epochs would leave ~40 % of FER-2013's
        train images (mostly of the large classes) never seen.
        """
        n = self.rows_per_epoch(limit)
        rng = np.random.default_rng([self.seed, epoch])
        if self.sample_weights is not None:
            return rng.choice(self.indices, size=n, replace=True, p=self.sample_weights)
        return self.indices if n >= len(self.indices) else rng.choice(self.indices, size=n, replace=False)


def rebalance(ds: FerDataset, method: Method, seed: int, size: int | None = None, power: float = 1.0) -> Rebalanced:
    """Builds the training plan of ``ds``'s ``train`` split.

    Args:
        ds: dataset with a ``train`` split (the validation split already carved out).
        method: ``resample`` draws ``size`` rows per epoch with replacement, each with probability
            inversely proportional to its class frequency, so classes come out balanced;
            ``class_weights`` keeps the rows and weights the loss by inverse frequency;
            ``none`` keeps both as they are.
        seed: random seed of the resampling.
        size: rows per epoch for ``resample``; default the train split's size.
        power: ``resample`` only: a row's draw probability is ``count(class) ** -power``; 1 balances
            the classes fully (the paper), 0.5 meets halfway, 0 keeps the natural frequencies.

    Returns:
        The :class:`Rebalanced` plan.
    """
    train_idx = np.flatnonzero(ds.splits == "train").astype(np.int64)
    labels = ds.labels[train_idx]
    counts = np.bincount(labels, minlength=NUM_CLASSES)
    weights = np.ones(NUM_CLASSES, dtype=np.float32)
    sample_weights, epoch_size, after = None, len(train_idx), counts.astype(float)
    if method == "resample":
        p = counts[labels].astype(np.float64) ** -power
        sample_weights = p / p.sum()
        epoch_size = size or len(train_idx)
        after = np.bincount(labels, weights=sample_weights, minlength=NUM_CLASSES) * epoch_size
    elif method == "class_weights":
        present = np.flatnonzero(counts)
        weights[present] = compute_class_weight("balanced", classes=present, y=labels)
    elif method != "none":
        raise ValueError(f"unknown rebalance method {method!r}")
    return Rebalanced(
        indices=train_idx,
        class_weights=weights,
        method=method,
        counts_before=dict(zip(CLASS_NAMES, map(int, counts))),
        counts_after=dict(zip(CLASS_NAMES, map(int, np.rint(after)))),
        sample_weights=sample_weights,
        epoch_size=epoch_size,
        seed=seed,
    )
