"""Small artifacts: a PNG figure (``figure.png``, shown by the dashboard) and a probabilities array (``.npy``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from zenml.enums import ArtifactType, VisualizationType

from fercore.explain.figures import PngFigure
from materializers.base import LocalDirMaterializer


class PngFigureMaterializer(LocalDirMaterializer):
    """Stores a :class:`PngFigure` as its PNG bytes and title; the PNG is its visualization."""

    ASSOCIATED_TYPES = (PngFigure,)
    ASSOCIATED_ARTIFACT_TYPE = ArtifactType.DATA_ANALYSIS

    def load(self, data_type: type[Any]) -> PngFigure:
        def read(folder: Path) -> PngFigure:
            png = folder / "figure.png"
            return PngFigure(png.read_bytes() if png.exists() else b"",
                             json.loads((folder / "figure.json").read_text())["title"])
        return self.read_dir(read)

    def save(self, data: PngFigure) -> None:
        def write(folder: Path) -> None:
            (folder / "figure.json").write_text(json.dumps({"title": data.title}))
        self.write_dir(write)

    def save_visualizations(self, data: PngFigure) -> dict[str, VisualizationType]:
        return self.write_visual("figure.png", data.png, VisualizationType.IMAGE) if data.png else {}

    def extract_metadata(self, data: PngFigure) -> dict[str, Any]:
        return {"title": data.title}


class ProbabilitiesMaterializer(LocalDirMaterializer):
    """Stores a probabilities array as ``probabilities.npy`` (no pickle); its metadata is its shape, also when it is
    empty (a contender that stopped before the rung: ZenML's numpy materializer fails on empty arrays' statistics)."""

    ASSOCIATED_TYPES = (np.ndarray,)
    ASSOCIATED_ARTIFACT_TYPE = ArtifactType.DATA
    SKIP_REGISTRATION = True  # only where a step names it: other arrays keep ZenML's own

    def load(self, data_type: type[Any]) -> np.ndarray:
        return self.read_dir(lambda folder: np.load(folder / "probabilities.npy", allow_pickle=False))

    def save(self, data: np.ndarray) -> None:
        self.write_dir(lambda folder: np.save(folder / "probabilities.npy", np.asarray(data), allow_pickle=False))

    def extract_metadata(self, data: np.ndarray) -> dict[str, Any]:
        return {"shape": list(np.shape(data)), "images": int(np.shape(data)[0]) if np.ndim(data) else 0}
