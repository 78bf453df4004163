"""A class activation map drawn over a face, as the figures and ``run.py predict --explain`` show it."""

from __future__ import annotations

import numpy as np


def jet(values: np.ndarray) -> np.ndarray:
    """Values in [0, 1] as OpenCV's JET colours (blue low, red high), RGB uint8."""
    import cv2

    return cv2.cvtColor(cv2.applyColorMap(np.uint8(255 * np.clip(values, 0, 1)), cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)


def overlay(face: np.ndarray, cam: np.ndarray, image_weight: float = 0.55) -> np.ndarray:
    """A map (``[0, 1]``, the face's shape) over a grayscale face (0-255), as RGB uint8: the JET colours blended
    with the face, then brightened so the brightest pixel is white's level (the overlay ``grad-cam`` draws)."""
    gray = np.clip(np.asarray(face, np.float32) / 255.0, 0, 1)[..., None]
    blended = (1 - image_weight) * jet(cam).astype(np.float32) / 255 + image_weight * gray
    return np.uint8(255 * blended / blended.max())


def with_colour_scale(rgb: np.ndarray, size: int = 144) -> np.ndarray:
    """``rgb`` (an overlay) enlarged to ``size`` pixels with the map's colour scale beside it: a JET bar from
    "high" (top) to "low" (bottom), so that a map is read the same way on every face."""
    from PIL import Image, ImageDraw, ImageFont

    face = Image.fromarray(rgb).resize((size, size), Image.Resampling.BILINEAR)
    bar = jet(np.linspace(1, 0, size)[:, None].repeat(10, axis=1))  # high at the top
    canvas = Image.new("RGB", (size + 44, size), (255, 255, 255))
    canvas.paste(face, (0, 0))
    canvas.paste(Image.fromarray(bar), (size + 4, 0))
    draw, font = ImageDraw.Draw(canvas), ImageFont.load_default(size=10)
    draw.text((size + 16, 0), "high", fill=(0, 0, 0), font=font)
    draw.text((size + 16, size - 12), "low", fill=(0, 0, 0), font=font)
    return np.asarray(canvas)
