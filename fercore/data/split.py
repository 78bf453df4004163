"""Stratified, seeded validation split carved out of train; test stays untouched."""

from __future__ import annotations

import numpy as np
from sklearn.model_selection import train_test_split

from fercore.data.dataset import FerDataset
from fercore.errors import ConfigError


def split_validation(ds: FerDataset, fraction: float, seed: int) -> FerDataset:
    """Marks a stratified ``fraction`` of the train images as ``val`` (incoming batches stay in train).

    Args:
        ds: a dataset with ``train`` and ``test`` splits.
        fraction: share of train moved to validation, in (0, 1).
        seed: random seed; the same seed gives the same split.

    Returns:
        A copy of ``ds`` with ``splits`` updated.
    """
    if not 0.0 < fraction < 1.0:
        raise ConfigError(f"data.val_fraction must lie strictly between 0 and 1, got {fraction}")
    from fercore.data.incoming import INCOMING_SUBSET

    # newly arrived batches train only: validation stays the same images as before they came
    train_idx = np.flatnonzero((ds.splits != "test") & (ds.subsets != INCOMING_SUBSET))
    try:
        _, val_idx = train_test_split(train_idx, test_size=fraction, stratify=ds.labels[train_idx], random_state=seed)
    except ValueError as exc:  # too few images for a stratified split
        raise ConfigError(f"cannot carve a stratified validation split of {fraction} from {len(train_idx)} train "
                          f"images: {exc}. Raise data.val_fraction or use more data.") from None
    splits = ds.splits.copy()
    splits[train_idx] = "train"
    splits[val_idx] = "val"
    out = FerDataset(ds.images, ds.labels, splits, ds.ids, ds.subsets, dict(ds.metadata))
    out.metadata.update(counts=out.counts(), val_fraction=fraction, split_seed=seed)
    return out
