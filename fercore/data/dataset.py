"""The in-memory FER-2013 dataset and its compact on-disk form (numpy arrays + JSON, no pickle)."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fercore.constants import CLASS_NAMES, IMAGE_SIZE, NUM_CLASSES, SPLITS
from fercore.errors import DataError

ARRAYS_FILE = "arrays.npz"
METADATA_FILE = "metadata.json"
_ARRAY_FIELDS = ("images", "labels", "splits", "ids", "subsets")


@dataclass
class FerDataset:
    """Faces with labels, split and provenance; row ``i`` of every array describes one image.

    Attributes:
        images: ``uint8`` array of shape ``(N, 48, 48)``.
        labels: ``int64`` class indices into ``CLASS_NAMES``.
        splits: ``"train"``, ``"val"`` or ``"test"`` per image.
        ids: stable id per image: its path relative to the dataset root (file names repeat
            across class folders) or ``csv/<row>`` for the CSV release.
        subsets: original subset: ``Training``, ``PublicTest``, ``PrivateTest`` (or ``unknown``).
        metadata: JSON-serialisable facts about the source (sha256, duplicates, conversions).
    """

    images: np.ndarray
    labels: np.ndarray
    splits: np.ndarray
    ids: np.ndarray
    subsets: np.ndarray
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.images = np.ascontiguousarray(self.images, dtype=np.uint8)
        self.labels = np.asarray(self.labels, dtype=np.int64)
        self.splits, self.ids, self.subsets = (np.asarray(a, dtype=str) for a in (self.splits, self.ids, self.subsets))
        n = len(self.images)
        if self.images.ndim != 3 or self.images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
            raise DataError(f"images must have shape (N, {IMAGE_SIZE}, {IMAGE_SIZE}), got {self.images.shape}")
        for name in ("labels", "splits", "ids", "subsets"):
            if len(getattr(self, name)) != n:
                raise DataError(f"{name} has {len(getattr(self, name))} rows but there are {n} images")
        if n and (self.labels.min() < 0 or self.labels.max() >= NUM_CLASSES):
            raise DataError(f"labels must lie in 0..{NUM_CLASSES - 1}")
        unknown = set(np.unique(self.splits)) - set(SPLITS)
        if unknown:
            raise DataError(f"unknown split names {sorted(unknown)}; expected {SPLITS}")

    def __len__(self) -> int:
        return len(self.images)

    def select(self, index: np.ndarray) -> FerDataset:
        """Returns the rows picked by a boolean mask or an index array (metadata is shared)."""
        return FerDataset(
            self.images[index], self.labels[index], self.splits[index], self.ids[index], self.subsets[index],
            dict(self.metadata),
        )

    def split(self, name: str) -> FerDataset:
        """Returns the rows of one split (``train``, ``val`` or ``test``)."""
        return self.select(self.splits == name)

    def class_counts(self, split: str | None = None) -> dict[str, int]:
        """Images per class, in class order, for one split or all."""
        labels = self.labels if split is None else self.labels[self.splits == split]
        counts = np.bincount(labels, minlength=NUM_CLASSES)
        return {name: int(c) for name, c in zip(CLASS_NAMES, counts)}

    def counts(self) -> dict[str, dict[str, int]]:
        """Images per split and class, for the splits present."""
        return {s: self.class_counts(s) for s in SPLITS if (self.splits == s).any()}

    def save(self, directory: str | Path) -> None:
        """Writes ``arrays.npz`` and ``metadata.json`` into ``directory`` atomically."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        arrays = {name: getattr(self, name) for name in _ARRAY_FIELDS}
        atomic_write(directory / ARRAYS_FILE, lambda f: np.savez(f, **arrays))
        atomic_write(directory / METADATA_FILE, lambda f: f.write(json.dumps(self.metadata, indent=2).encode()))

    @classmethod
    def load(cls, directory: str | Path) -> FerDataset:
        """Reads a dataset written by :meth:`save`."""
        directory = Path(directory)
        try:
            with np.load(directory / ARRAYS_FILE, allow_pickle=False) as npz:
                arrays = {name: npz[name] for name in _ARRAY_FIELDS}
            metadata = json.loads((directory / METADATA_FILE).read_text())
        except (OSError, KeyError, ValueError) as exc:
            raise DataError(f"cannot read the dataset stored in {directory}: {exc}. Delete it and ingest again.") from exc
        return cls(**arrays, metadata=metadata)


def atomic_write(path: Path, write) -> None:
    """Writes through a temporary file in the same folder, then renames: never half-written."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise



def limit_per_class(ds: FerDataset, max_per_class: int, seed: int) -> FerDataset:
    """Keeps at most ``max_per_class`` random images of each class in each split (smoke runs)."""
    rng = np.random.default_rng(seed)
    keep = []
    for split in np.unique(ds.splits):
        for label in range(NUM_CLASSES):
            idx = np.flatnonzero((ds.splits == split) & (ds.labels == label))
            keep.append(rng.permutation(idx)[:max_per_class])
    out = ds.select(np.sort(np.concatenate(keep)))
    out.metadata["counts"] = out.counts()
    out.metadata["max_per_class"] = max_per_class
    return out
