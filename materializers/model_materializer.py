"""Materializers of trained models (safetensors or save_pretrained folders) and evaluations."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn
from zenml.enums import ArtifactType, VisualizationType

from fercore.constants import CLASS_NAMES
from fercore.evaluation.metrics import Evaluation
from fercore.evaluation.plots import evaluation_figures
from fercore.evaluation.predictions import Predictions
from fercore.explain.figures import gallery_png, mean_maps_png
from fercore.explain.summary import Explanation
from fercore.models import count_parameters, load_model, save_model
from materializers.base import LocalDirMaterializer


class FerModelMaterializer(LocalDirMaterializer):
    """Stores a model built by :mod:`fercore.models` as safetensors weights + JSON spec."""

    ASSOCIATED_TYPES = (nn.Module,)
    ASSOCIATED_ARTIFACT_TYPE = ArtifactType.MODEL

    def load(self, data_type: type[Any]) -> nn.Module:
        return self.read_dir(load_model)

    def save(self, data: nn.Module) -> None:
        self.write_dir(lambda folder: save_model(data, folder))

    def extract_metadata(self, data: nn.Module) -> dict[str, Any]:
        spec = getattr(data, "fer_spec", {})
        return {"family": spec.get("family", "?"), "architecture": spec.get("architecture", "?"),
                "parameters": count_parameters(data)}


class EvaluationMaterializer(LocalDirMaterializer):
    """Stores an :class:`Evaluation` as JSON + per-class CSV, with its figures as visualizations."""

    ASSOCIATED_TYPES = (Evaluation,)
    ASSOCIATED_ARTIFACT_TYPE = ArtifactType.DATA_ANALYSIS

    def load(self, data_type: type[Any]) -> Evaluation:
        return self.read_dir(lambda folder: Evaluation.from_dict(json.loads((folder / "evaluation.json").read_text())))

    def save(self, data: Evaluation) -> None:
        def write(folder: Path) -> None:
            (folder / "evaluation.json").write_text(data.to_json())
            data.per_class.to_csv(folder / "per_class.csv")

        self.write_dir(write)

    def save_visualizations(self, data: Evaluation) -> dict[str, VisualizationType]:
        visuals = self.write_visual("per_class.md", data.markdown(), VisualizationType.MARKDOWN)
        for name, png in evaluation_figures(data).items():
            visuals.update(self.write_visual(name, png, VisualizationType.IMAGE))
        return visuals

    def extract_metadata(self, data: Evaluation) -> dict[str, Any]:
        meta: dict[str, Any] = {k: round(v, 4) for k, v in data.overall.items()}
        meta["per_class_f1"] = {k: round(float(v), 4) for k, v in data.per_class["f1"].items()}
        meta["per_class_accuracy"] = {k: round(float(v), 4) for k, v in data.per_class["accuracy"].items()}
        for subset, m in data.subsets.items():
            meta[f"{subset}_accuracy"] = round(m["accuracy"], 4)
        return meta


class PredictionsMaterializer(LocalDirMaterializer):
    """Stores :class:`Predictions` as ``predictions.npz`` (float32 probabilities, no pickle)."""

    ASSOCIATED_TYPES = (Predictions,)
    ASSOCIATED_ARTIFACT_TYPE = ArtifactType.DATA

    def load(self, data_type: type[Any]) -> Predictions:
        def read(folder: Path) -> Predictions:
            with np.load(folder / "predictions.npz", allow_pickle=False) as npz:
                return Predictions(npz["val"], npz["test"], str(npz["dataset_sha256"]))

        return self.read_dir(read)

    def save(self, data: Predictions) -> None:
        self.write_dir(lambda folder: np.savez(folder / "predictions.npz", val=data.val.astype(np.float32),
                                               test=data.test.astype(np.float32),
                                               dataset_sha256=np.array(data.dataset_sha256)))

    def extract_metadata(self, data: Predictions) -> dict[str, Any]:
        return {"val_images": len(data.val), "test_images": len(data.test)}


class ExplanationMaterializer(LocalDirMaterializer):
    """Stores an :class:`Explanation` as ``maps.npz`` + ``explanation.json``; its mean maps and gallery are
    visualizations."""

    ASSOCIATED_TYPES = (Explanation,)
    ASSOCIATED_ARTIFACT_TYPE = ArtifactType.DATA_ANALYSIS

    def load(self, data_type: type[Any]) -> Explanation:
        return self.read_dir(Explanation.load)

    def save(self, data: Explanation) -> None:
        self.write_dir(data.save)

    def save_visualizations(self, data: Explanation) -> dict[str, VisualizationType]:
        if not data.enabled:
            return {}
        visuals = self.write_visual("mean_maps.png", mean_maps_png(data), VisualizationType.IMAGE)
        visuals.update(self.write_visual("gallery.png", gallery_png(data), VisualizationType.IMAGE))
        return visuals

    def extract_metadata(self, data: Explanation) -> dict[str, Any]:
        return {"maps_drawn": data.enabled, "explain_seconds": data.seconds,
                "mean_map_faces": {e: int(n) for e, n in zip(CLASS_NAMES, data.map_counts)}}
