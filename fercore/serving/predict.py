"""Emotions of the faces in ordinary photos, through a registered model (``run.py predict``)."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fercore.constants import CLASS_NAMES
from fercore.errors import DataError
from fercore.serving.faces import annotate, find_faces, load_photo
from fercore.serving.local_models import Predict

logger = logging.getLogger(__name__)
DEFAULT_MODEL = "models:/fer2013-emotion@champion"


@dataclass
class PhotoResult:
    """What one photo gave: its faces with label and probabilities, or the error that stopped it."""

    path: str
    faces: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    annotated: str | None = None


def predict_photos(paths: list[Path], predict: Predict, margin: float = 0.1,
                   annotate_dir: Path | None = None) -> list[PhotoResult]:
    """Finds the faces of every photo and classifies all of them in one batch.

    A photo that cannot be read gets its error; the others still get their results.

    Args:
        paths: photo files.
        predict: uint8 faces ``(N, 48, 48)`` -> probabilities ``(N, 7)`` (:func:`load_predictor`).
        margin: how much the square crop grows around a detection, per side.
        annotate_dir: if given, each photo is written there with boxes, labels and probabilities drawn.
    """
    results, found = [], []
    for path in paths:
        result = PhotoResult(str(path))
        try:
            faces = find_faces(load_photo(path), margin)
        except DataError as exc:
            result.error = str(exc)
            faces = []
        results.append(result)
        found.append(faces)
    crops = [f.crop for faces in found for f in faces]
    probs = predict(np.stack(crops)) if crops else np.empty((0, len(CLASS_NAMES)))
    rows = iter(probs)
    for result, faces, path in zip(results, found, paths):
        for face in faces:
            p = next(rows)
            result.faces.append({"box": list(face.box), "label": CLASS_NAMES[int(p.argmax())],
                                 "probabilities": {c: round(float(v), 4) for c, v in zip(CLASS_NAMES, p)}})
        if annotate_dir is not None and result.error is None:
            captions = [f"{f['label']} {f['probabilities'][f['label']]:.0%}" for f in result.faces]
            result.annotated = str(annotate(path, faces, captions, annotate_dir))
    return results


def format_results(results: list[PhotoResult]) -> str:
    """One line per face (box, label, the seven probabilities); a line for a photo without faces."""
    head = f"{'photo':<32} {'box (x,y,w,h)':<20} {'label':<9}" + "".join(f"{c[:7]:>8}" for c in CLASS_NAMES)
    lines = [head]
    for r in results:
        name = Path(r.path).name[:32]
        if r.error:
            lines.append(f"{name:<32} error: {r.error}")
        elif not r.faces:
            lines.append(f"{name:<32} no face found")
        for f in r.faces:
            box = ",".join(map(str, f["box"]))
            lines.append(f"{name:<32} {box:<20} {f['label']:<9}" + "".join(f"{f['probabilities'][c]:>8.3f}"
                                                                           for c in CLASS_NAMES))
    return "\n".join(lines)


def write_json(results: list[PhotoResult], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps([r.__dict__ for r in results], indent=2) + "\n")
