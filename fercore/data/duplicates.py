"""Dataset checks: exact duplicates within and across splits (train/test leakage)."""

from __future__ import annotations

import hashlib
import logging

import numpy as np

from fercore.data.dataset import FerDataset

logger = logging.getLogger(__name__)


def image_hashes(images: np.ndarray) -> np.ndarray:
    """Returns a 16-byte digest per image of its decoded pixels."""
    return np.array([hashlib.blake2b(img.tobytes(), digest_size=16).digest() for img in images], dtype="S16")


def split_digest(dataset: FerDataset, split: str = "val") -> str:
    """The digest of a split's images: the data lineage a model is judged on (equal digests, same images)."""
    return hash_set_digest(image_hashes(dataset.split(split).images))


def hash_set_digest(hashes: np.ndarray) -> str:
    """One digest of a set of image hashes (order-free): equal digests, same images."""
    return hashlib.sha256(np.sort(hashes).tobytes()).hexdigest()[:16]


def _within(hashes: np.ndarray, labels: np.ndarray) -> dict[str, int]:
    _, inverse, counts = np.unique(hashes, return_inverse=True, return_counts=True)
    dup = counts > 1
    group_labels = np.unique(np.stack([inverse, labels], axis=1), axis=0)
    labels_per_group = np.bincount(group_labels[:, 0], minlength=len(counts))
    return {
        "groups": int(dup.sum()),
        "images": int(counts[dup].sum()),
        "extra_copies": int((counts[dup] - 1).sum()),
        "groups_with_conflicting_labels": int((labels_per_group > 1).sum()),
    }


def _with_label(hashes: np.ndarray, labels: np.ndarray) -> np.ndarray:
    return np.array([h + bytes([int(y)]) for h, y in zip(hashes, labels)], dtype="S17")


def duplicate_report(ds: FerDataset, hashes: np.ndarray | None = None) -> dict[str, object]:
    """Counts exact duplicates within train (train + val), within test, and across them.

    Args:
        ds: the dataset.
        hashes: precomputed :func:`image_hashes` of ``ds.images``.

    Returns:
        A JSON-serialisable report; ``cross_split`` measures train/test leakage.
    """
    hashes = image_hashes(ds.images) if hashes is None else hashes
    is_test = ds.splits == "test"
    train_h, test_h = hashes[~is_test], hashes[is_test]
    common = np.intersect1d(train_h, test_h)
    train_pairs = _with_label(train_h, ds.labels[~is_test])
    test_pairs = _with_label(test_h, ds.labels[is_test])
    in_common = np.isin(test_h, common)
    return {
        "distinct_images": int(len(np.unique(hashes))),
        "within_train": _within(train_h, ds.labels[~is_test]),
        "within_test": _within(test_h, ds.labels[is_test]),
        "cross_split": {
            "distinct_images": int(len(common)),
            "test_images": int(in_common.sum()),
            "train_images": int(np.isin(train_h, common).sum()),
            "test_images_without_same_label_in_train": int((in_common & ~np.isin(test_pairs, train_pairs)).sum()),
        },
        "all_black_images": int((ds.images.reshape(len(ds), -1).max(axis=1) == 0).sum()) if len(ds) else 0,
    }


def drop_train_copies_of_test(ds: FerDataset) -> tuple[FerDataset, int]:
    """Removes train images whose pixels also occur in the test split (leakage)."""
    hashes = image_hashes(ds.images)
    is_test = ds.splits == "test"
    leaked = ~is_test & np.isin(hashes, hashes[is_test])
    n = int(leaked.sum())
    logger.info("Dropping %d train images that also occur in test", n)
    return ds.select(~leaked), n
