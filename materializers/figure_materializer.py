"""A PNG figure as an artifact: ``figure.png`` (shown by the dashboard) and ``figure.json``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from zenml.enums import ArtifactType, VisualizationType

from fercore.evaluation.map_figures import PngFigure
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
