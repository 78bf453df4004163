"""A class activation map drawn over a face, as the figures and ``run.py predict --explain`` show it."""

from __future__ import annotations

import numpy as np


def overlay(face: np.ndarray, cam: np.ndarray, image_weight: float = 0.55) -> np.ndarray:
    """A map (``[0, 1]``, the face's shape) over a grayscale face (0-255), as RGB uint8 (grad-cam's JET overlay)."""
    from pytorch_grad_cam.utils.image import show_cam_on_image

    rgb = np.repeat((np.asarray(face, np.float32) / 255.0)[..., None], 3, axis=2)
    return show_cam_on_image(np.clip(rgb, 0, 1), np.clip(cam, 0, 1).astype(np.float32), use_rgb=True,
                             image_weight=image_weight)


def with_colour_scale(rgb: np.ndarray, size: int = 144) -> np.ndarray:
    """``rgb`` (an overlay) enlarged to ``size`` pixels with the map's colour scale beside it: a JET bar from
    "high" (top) to "low" (bottom), so that a map is read the same way on every face."""
    import cv2
    from PIL import Image, ImageDraw, ImageFont

    face = Image.fromarray(rgb).resize((size, size), Image.Resampling.BILINEAR)
    ramp = np.linspace(255, 0, size).astype(np.uint8)[:, None].repeat(10, axis=1)  # high at the top
    bar = cv2.cvtColor(cv2.applyColorMap(ramp, cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)  # grad-cam's colours
    canvas = Image.new("RGB", (size + 44, size), (255, 255, 255))
    canvas.paste(face, (0, 0))
    canvas.paste(Image.fromarray(bar), (size + 4, 0))
    draw, font = ImageDraw.Draw(canvas), ImageFont.load_default(size=10)
    draw.text((size + 16, 0), "high", fill=(0, 0, 0), font=font)
    draw.text((size + 16, size - 12), "low", fill=(0, 0, 0), font=font)
    return np.asarray(canvas)
