"""Materializers of the dataset and the rebalancing plan (numpy arrays + JSON)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from zenml.enums import ArtifactType, VisualizationType

from fercore.data.dataset import FerDataset, atomic_write
from fercore.data.rebalance import Rebalanced
from fercore.evaluation.plots import class_frequency_png, sample_grid_png
from materializers.base import LocalDirMaterializer


class FerDatasetMaterializer(LocalDirMaterializer):
    """Stores a :class:`FerDataset` as ``arrays.npz`` + ``metadata.json``."""

    ASSOCIATED_TYPES = (FerDataset,)
    ASSOCIATED_ARTIFACT_TYPE = ArtifactType.DATA

    def load(self, data_type: type[Any]) -> FerDataset:
        return self.read_dir(FerDataset.load)

    def save(self, data: FerDataset) -> None:
        self.write_dir(data.save)

    def save_visualizations(self, data: FerDataset) -> dict[str, VisualizationType]:
        visuals = self.write_visual("class_frequency.png", class_frequency_png(data.counts()), VisualizationType.IMAGE)
        train = data.splits != "test"
        visuals.update(self.write_visual(
            "sample_faces.png", sample_grid_png(data.images[train], data.labels[train]), VisualizationType.IMAGE
        ))
        return visuals

    def extract_metadata(self, data: FerDataset) -> dict[str, Any]:
        meta: dict[str, Any] = {"images": len(data), "counts": data.counts()}
        for key in ("sha256", "source", "duplicates", "converted_images", "dropped_test_overlap", "val_fraction"):
            if key in data.metadata:
                meta[key] = data.metadata[key]
        return meta


class RebalancedMaterializer(LocalDirMaterializer):
    """Stores a :class:`Rebalanced` plan as ``plan.npz`` + ``plan.json``."""

    ASSOCIATED_TYPES = (Rebalanced,)
    ASSOCIATED_ARTIFACT_TYPE = ArtifactType.DATA

    def load(self, data_type: type[Any]) -> Rebalanced:
        def read(folder: Path) -> Rebalanced:
            with np.load(folder / "plan.npz", allow_pickle=False) as npz:
                arrays = {k: npz[k] for k in ("indices", "class_weights", "sample_weights") if k in npz}
            return Rebalanced(**arrays, **json.loads((folder / "plan.json").read_text()))

        return self.read_dir(read)

    def save(self, data: Rebalanced) -> None:
        def write(folder: Path) -> None:
            arrays = {"indices": data.indices, "class_weights": data.class_weights}
            if data.sample_weights is not None:
                arrays["sample_weights"] = data.sample_weights
            atomic_write(folder / "plan.npz", lambda f: np.savez(f, **arrays))
            meta = {"method": data.method, "counts_before": data.counts_before, "counts_after": data.counts_after,
                    "epoch_size": data.epoch_size, "seed": data.seed}
            (folder / "plan.json").write_text(json.dumps(meta, indent=2))

        self.write_dir(write)

    def save_visualizations(self, data: Rebalanced) -> dict[str, VisualizationType]:
        png = class_frequency_png(
            {"before": data.counts_before, "after": data.counts_after}, title=f"Train split, rebalanced ({data.method})"
        )
        return self.write_visual("rebalance.png", png, VisualizationType.IMAGE)

    def extract_metadata(self, data: Rebalanced) -> dict[str, Any]:
        return {
            "method": data.method,
            "rows": int(len(data.indices)),
            "rows_per_epoch": int(data.epoch_size),
            "counts_before": data.counts_before,
            "counts_after": data.counts_after,
            "class_weights": [round(float(w), 4) for w in data.class_weights],
        }
