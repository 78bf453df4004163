"""Emotions of the faces in ordinary photos, through a registered model (``run.py predict``).

Photos stream through: each is read and its faces found one at a time, faces are classified in batches,
and each result is handed on as soon as its batch is done, so memory does not grow with the number of photos.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from fercore.constants import CLASS_NAMES
from fercore.errors import DataError
from fercore.explain.overlay import overlay
from fercore.explain.registered import Explain
from fercore.serving.faces import Face, annotate, find_faces, load_photo
from fercore.tracking.loading import Predict

logger = logging.getLogger(__name__)
DEFAULT_MODEL = "models:/fer2013-emotion@champion"
BATCH_FACES = 64  # faces per model call: past ~32 the CNNs' throughput on 2 cores no longer grows


@dataclass
class PhotoResult:
    """What one photo gave: its faces with label and probabilities, or the error that stopped it."""

    path: str
    faces: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    annotated: str | None = None
    explained: str | None = None


@dataclass
class Outputs:
    """Where photos are written beside the results: annotated (boxes and labels), and explained (each face's class
    activation map for its predicted label under the same box and label), with what draws the maps."""

    annotate: AnnotationNames | None = None
    explain: AnnotationNames | None = None
    maps: Explain | None = None


def predict_photos(paths: Iterable[Path], predict: Predict, margin: float = 0.1, annotate_dir: Path | None = None,
                   batch_faces: int = BATCH_FACES, explain_dir: Path | None = None,
                   explain: Explain | None = None) -> Iterator[PhotoResult]:
    """Finds the faces of each photo and classifies them in batches of at least ``batch_faces`` (the last
    smaller); yields each photo's result, in order, once its batch is classified.

    A photo that cannot be read gets its error; the others still get their results.

    Args:
        paths: photo files.
        predict: uint8 faces ``(N, 48, 48)`` -> probabilities ``(N, 7)`` (:func:`load_predictor`).
        margin: how much the square crop grows around a detection, per side.
        annotate_dir: if given, each photo is written there with boxes, labels and probabilities drawn, under
            a name no other photo of this call takes (:class:`AnnotationNames`).
        batch_faces: faces per model call.
        explain_dir: if given (with ``explain``), each photo with faces is written there with each face's map
            (``explain``: faces and their predicted classes -> maps) under its box and label.
    """
    names = Outputs(AnnotationNames(annotate_dir) if annotate_dir is not None else None,
                    AnnotationNames(explain_dir) if explain_dir is not None and explain is not None else None, explain)
    pending: list[tuple[PhotoResult, Path, list[Face]]] = []
    for path in paths:
        result, faces = PhotoResult(str(path)), []
        try:
            faces = find_faces(load_photo(path), margin)
        except DataError as exc:
            result.error = str(exc)
        pending.append((result, path, faces))
        if sum(len(f) for _, _, f in pending) >= batch_faces:
            yield from _classify(pending, predict, names)
            pending = []
    yield from _classify(pending, predict, names)


def classify_faces(crops: np.ndarray, predict: Predict,
                   explain: Explain | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """A batch of face crops ``(N, 48, 48)`` classified in one model call: the probabilities ``(N, 7)``, the labels,
    and with ``explain`` each face's map for the label it got (``run.py predict`` and the demo both use it)."""
    if not len(crops):
        return np.empty((0, len(CLASS_NAMES))), np.empty(0, int), (np.empty((0, *crops.shape[1:])) if explain else None)
    probs = predict(crops)
    labels = probs.argmax(1)
    return probs, labels, explain(crops, labels) if explain else None


def _classify(pending: list[tuple[PhotoResult, Path, list[Face]]], predict: Predict,
              names: Outputs) -> Iterator[PhotoResult]:
    found = [f.crop for _, _, faces in pending for f in faces]
    crops = np.stack(found) if found else np.zeros((0, 48, 48), np.uint8)
    probs, _, maps = classify_faces(crops, predict, names.maps if names.explain else None)
    maps = iter(maps if maps is not None else [])
    rows = iter(probs)
    for result, path, faces in pending:
        for face in faces:
            p = next(rows)
            result.faces.append({"box": list(face.box), "label": CLASS_NAMES[int(p.argmax())],
                                 "probabilities": {c: round(float(v), 4) for c, v in zip(CLASS_NAMES, p)}})
        overlays = [overlay(f.crop, next(maps)) for f in faces] if names.explain else []
        if result.error is None:
            _write_photos(result, path, faces, overlays, names)
        yield result


def _write_photos(result: PhotoResult, path: Path, faces: list[Face], overlays: list[np.ndarray], names: Outputs) -> None:
    """The annotated and the explained photo of one photo, as asked; one that cannot be written is the photo's error."""
    captions = [f"{f['label']} {f['probabilities'][f['label']]:.0%}" for f in result.faces]
    for kind, folder, layers in (("annotated", names.annotate, None), ("explained", names.explain, overlays)):
        if folder is None or (kind == "explained" and not faces):
            continue
        try:
            setattr(result, kind, str(annotate(path, faces, captions, folder.target(path), layers)))
        except OSError as exc:
            result.error = f"the {kind} photo could not be written into {folder.folder}: {exc.strerror or exc}"


class AnnotationNames:
    """Where each annotated photo goes: ``<stem>.png`` in the folder, ``<stem>-2.png``, ``<stem>-3.png`` ... for
    later photos of the same stem (``a/x.jpg``, ``a/x.png`` and ``b/x.jpg`` would otherwise overwrite one file)."""

    def __init__(self, folder: Path):
        self.folder, self._used = folder, set()

    def target(self, path: Path) -> Path:
        name, n = f"{path.stem}.png", 1
        while name in self._used:
            n += 1
            name = f"{path.stem}-{n}.png"
        self._used.add(name)
        return self.folder / name


HEADER = f"{'photo':<32} {'box (x,y,w,h)':<20} {'label':<9}" + "".join(f"{c[:7]:>8}" for c in CLASS_NAMES)


def format_result(r: PhotoResult) -> list[str]:
    """One line per face (box, label, the seven probabilities); one line for a photo without faces."""
    name = Path(r.path).name[:32]
    if r.error and not r.faces:
        return [f"{name:<32} error: {r.error}"]
    if not r.faces:
        return [f"{name:<32} no face found"]
    return [f"{name:<32} {','.join(map(str, f['box'])):<20} {f['label']:<9}"
            + "".join(f"{f['probabilities'][c]:>8.3f}" for c in CLASS_NAMES) for f in r.faces]


def format_results(results: Iterable[PhotoResult]) -> str:
    """:data:`HEADER` and every result's lines."""
    return "\n".join([HEADER] + [line for r in results for line in format_result(r)])


def write_json_line(result: PhotoResult, out: TextIO, model: str = "") -> None:
    """One photo's result as a line of JSON (JSON lines: a run cut short keeps every line written), with the
    model that answered (``fer2013-emotion v3 (models:/fer2013-emotion@champion)``)."""
    out.write(json.dumps({**result.__dict__, "model": model}) + "\n")
    out.flush()
