"""Rebalancing of the training split: the paper's inverse-frequency resampling, or loss weights."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from sklearn.utils.class_weight import compute_class_weight

from fercore.constants import CLASS_NAMES, NUM_CLASSES
from fercore.dataset import FerDataset

Method = Literal["resample", "class_weights", "none"]


@dataclass
class Rebalanced:
    """Which dataset rows one training epoch visits, and the loss weight of each class.

    Attributes:
        indices: row indices into the dataset (repeats allowed), train split only.
        class_weights: ``float32`` loss weight per class (ones unless ``class_weights``).
        method: how it was built.
        counts_before: train images per class before rebalancing.
        counts_after: rows per class in ``indices``.
    """

    indices: np.ndarray
    class_weights: np.ndarray
    method: str
    counts_before: dict[str, int]
    counts_after: dict[str, int]


def rebalance(ds: FerDataset, method: Method, seed: int, size: int | None = None) -> Rebalanced:
    """Builds the training index list of ``ds``'s ``train`` split.

    Args:
        ds: dataset with a ``train`` split (the validation split already carved out).
        method: ``resample`` draws ``size`` rows with replacement, each with probability
            inversely proportional to its class frequency, so classes come out balanced;
            ``class_weights`` keeps the rows and weights the loss by inverse frequency;
            ``none`` keeps both as they are.
        seed: random seed of the resampling.
        size: rows to draw for ``resample``; default the train split's size.

    Returns:
        The :class:`Rebalanced` plan.
    """
    train_idx = np.flatnonzero(ds.splits == "train")
    labels = ds.labels[train_idx]
    counts = np.bincount(labels, minlength=NUM_CLASSES)
    weights = np.ones(NUM_CLASSES, dtype=np.float32)
    if method == "resample":
        p = 1.0 / counts[labels]
        rng = np.random.default_rng(seed)
        indices = np.sort(rng.choice(train_idx, size=size or len(train_idx), replace=True, p=p / p.sum()))
    elif method == "class_weights":
        present = np.flatnonzero(counts)
        weights[present] = compute_class_weight("balanced", classes=present, y=labels)
        indices = train_idx
    elif method == "none":
        indices = train_idx
    else:
        raise ValueError(f"unknown rebalance method {method!r}")
    after = np.bincount(ds.labels[indices], minlength=NUM_CLASSES)
    return Rebalanced(
        indices=indices.astype(np.int64),
        class_weights=weights,
        method=method,
        counts_before=dict(zip(CLASS_NAMES, map(int, counts))),
        counts_after=dict(zip(CLASS_NAMES, map(int, after))),
    )
