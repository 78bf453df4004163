"""Faces in ordinary photos: found with OpenCV's bundled Haar cascade, cut the way FER-2013 was made.

FER-2013's faces are grayscale, square, roughly centred, with a little forehead and chin, scaled to
48x48. A detection box is made square around its centre, grown by ``margin`` on each side
(edge pixels repeat where that leaves the photo) and resized with area averaging.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from fercore.constants import IMAGE_SIZE, IMAGE_SUFFIXES
from fercore.errors import DataError

CASCADE = "haarcascade_frontalface_default.xml"  # ships inside opencv-python(-headless) 4.x
_detector = None


@dataclass
class Face:
    """One detected face: its box in the photo's pixels and its 48x48 crop."""

    box: tuple[int, int, int, int]  # x, y, width, height
    crop: np.ndarray


def photo_paths(inputs: list[str | Path]) -> list[Path]:
    """The photos named, and those inside named folders (recursively, by image suffix, sorted)."""
    out: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            out += sorted(p for p in item.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        else:
            out.append(item)
    return out


def load_photo(path: str | Path, data: bytes | None = None) -> np.ndarray:
    """The photo as uint8 grayscale, upright (EXIF orientation applied); from ``data`` when given
    (an archive member), ``path`` then only names it.

    Raises:
        DataError: the file is missing or is not an image.
    """
    path = Path(path)
    if data is None and not path.is_file():
        raise DataError(f"{path}: no such file")
    try:
        with Image.open(path if data is None else io.BytesIO(data)) as img:
            return np.asarray(ImageOps.exif_transpose(img).convert("L"))
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise DataError(f"{path}: not a readable image ({exc})") from None


def detector():
    """OpenCV's frontal-face Haar cascade (loaded once)."""
    global _detector
    if _detector is None:
        import cv2

        if not hasattr(cv2, "CascadeClassifier"):
            raise DataError("this OpenCV has no CascadeClassifier (OpenCV 5 dropped it): "
                            "pip install 'opencv-python-headless<5'")
        _detector = cv2.CascadeClassifier(str(Path(cv2.data.haarcascades) / CASCADE))
    return _detector


def detect_faces(gray: np.ndarray, min_size: int = 24) -> list[tuple[int, int, int, int]]:
    """Face boxes ``(x, y, w, h)``, largest first."""
    boxes = detector().detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5, minSize=(min_size, min_size))
    return sorted((tuple(int(v) for v in b) for b in boxes), key=lambda b: -b[2] * b[3])


def crop_face(gray: np.ndarray, box: tuple[int, int, int, int], margin: float = 0.1) -> np.ndarray:
    """The square ``IMAGE_SIZE`` crop around ``box``, grown by ``margin`` of its side on each side."""
    x, y, w, h = box
    side = int(round(max(w, h) * (1 + 2 * margin)))
    left, top = x + w // 2 - side // 2, y + h // 2 - side // 2
    pad = max(0, -left, -top, left + side - gray.shape[1], top + side - gray.shape[0])
    padded = np.pad(gray, pad, mode="edge") if pad else gray
    window = padded[top + pad:top + pad + side, left + pad:left + pad + side]
    return np.asarray(Image.fromarray(window).resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BOX), np.uint8)


def find_faces(gray: np.ndarray, margin: float = 0.1) -> list[Face]:
    """Every face of a grayscale photo with its crop."""
    return [Face(box, crop_face(gray, box, margin)) for box in detect_faces(gray)]


def annotate(path: Path, faces: list[Face], labels: list[str], out_dir: Path) -> Path:
    """Writes the photo with each face's box and label drawn into ``out_dir`` (same name, PNG)."""
    from PIL import ImageDraw

    with Image.open(path) as img:
        canvas = ImageOps.exif_transpose(img).convert("RGB")
    draw = ImageDraw.Draw(canvas)
    width = max(2, canvas.width // 300)
    for face, label in zip(faces, labels):
        x, y, w, h = face.box
        draw.rectangle([x, y, x + w, y + h], outline=(255, 64, 64), width=width)
        draw.text((x + width, max(0, y - 12 - width)), label, fill=(255, 64, 64))
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{path.stem}.png"
    canvas.save(target)
    return target
