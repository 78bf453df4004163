"""The validation split: FER-2013's own PublicTest (the literature's protocol: train on all of Training, choose on
PublicTest, report on PrivateTest), or a stratified, seeded share carved out of train. Decisions read validation
only; test is only reported."""

from __future__ import annotations

import numpy as np
from sklearn.model_selection import train_test_split

from fercore.data.dataset import FerDataset
from fercore.errors import ConfigError

PUBLIC_TEST, CARVE = "public_test", "carve"


def split_validation(ds: FerDataset, fraction: float, seed: int, validation: str = CARVE) -> FerDataset:
    """Marks the validation images: FER-2013's PublicTest subset (``validation="public_test"``) or a stratified
    ``fraction`` of the train images (``"carve"``). Incoming batches always stay in train.

    Args:
        ds: a dataset with ``train`` and ``test`` splits.
        fraction: share of train moved to validation when carving, in (0, 1).
        seed: random seed of the carve-out; the same seed gives the same split.
        validation: ``public_test`` or ``carve``.

    Returns:
        A copy of ``ds`` with ``splits`` updated; its metadata says which validation split it holds.

    Raises:
        ConfigError: a carve-out that cannot be stratified, or ``public_test`` on a source without PublicTest images.
    """
    if validation == PUBLIC_TEST:
        out = _public_test(ds)
        out.metadata.update(validation="PublicTest", test_subset="PrivateTest")
    elif validation == CARVE:
        out = _carved(ds, fraction, seed)
        out.metadata.update(validation=f"{fraction:.0%} carved out of Training (seed {seed})", val_fraction=fraction)
    else:
        raise ConfigError(f"data.validation must be '{PUBLIC_TEST}' or '{CARVE}', got {validation!r}")
    out.metadata.update(counts=out.counts(), split_seed=seed)
    return out


def validation_label(ds: FerDataset) -> str:
    """Which validation split ``ds`` holds, in words, for every report (datasets split before it was recorded: the
    carve-out, the only split then)."""
    return str(ds.metadata.get("validation", "carved out of Training"))


def test_label(ds: FerDataset) -> str:
    """Which images the test split holds, in words."""
    return str(ds.metadata.get("test_subset", "PublicTest and PrivateTest"))


def _public_test(ds: FerDataset) -> FerDataset:
    """Validation = the test split's PublicTest images; test keeps the rest (PrivateTest); train keeps all of
    Training and the incoming batches."""
    public = (ds.splits == "test") & (ds.subsets == "PublicTest")
    if not public.any():
        raise ConfigError("data.validation: public_test needs FER-2013's PublicTest images (test/<class>/"
                          "PublicTest_*.jpg in the image folders, or Usage PublicTest in fer2013.csv), and this source "
                          "has none. Set data.validation: carve to carve data.val_fraction of train out instead.")
    if public.sum() == (ds.splits == "test").sum():
        raise ConfigError("data.validation: public_test leaves no test images (every test image is PublicTest): set "
                          "data.validation: carve")
    splits = np.where(ds.splits == "test", "test", "train").astype(ds.splits.dtype)
    splits[public] = "val"
    return FerDataset(ds.images, ds.labels, splits, ds.ids, ds.subsets, dict(ds.metadata))


def _carved(ds: FerDataset, fraction: float, seed: int) -> FerDataset:
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
    return FerDataset(ds.images, ds.labels, splits, ds.ids, ds.subsets, dict(ds.metadata))
