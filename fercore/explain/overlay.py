"""A class activation map drawn over a face, as the figures and ``run.py predict --explain`` show it."""

from __future__ import annotations

import numpy as np


def overlay(face: np.ndarray, cam: np.ndarray, image_weight: float = 0.55) -> np.ndarray:
    """A map (``[0, 1]``, the face's shape) over a grayscale face (0-255), as RGB uint8 (grad-cam's JET overlay)."""
    from pytorch_grad_cam.utils.image import show_cam_on_image

    rgb = np.repeat((np.asarray(face, np.float32) / 255.0)[..., None], 3, axis=2)
    return show_cam_on_image(np.clip(rgb, 0, 1), np.clip(cam, 0, 1).astype(np.float32), use_rgb=True,
                             image_weight=image_weight)
