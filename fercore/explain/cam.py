"""Class activation maps (HiResCAM) for every family the project trains, each face's averaged over its test-time views.

HiResCAM (Draelos & Carin 2020) multiplies a layer's activations by the class score's gradient element-wise and
sums over channels: what each location added to the score. Grad-CAM averages the gradient over the locations
first; the two agree at a layer followed by global average pooling. The method and the layers were chosen by the
sanity tests (tests/unit/test_explain.py, numbers in docs/explain.md): at the CNNs' last 6x6 layer every method
spread a planted cue's map over half the face (31-45 % of the mass on the cue), one resolution up HiResCAM put
81-90 % there.

Which layer a family's map comes from:
- CNNs (V1, V2.1, VGG-7, the residual CNN): the last non-pooling layer whose output is still at half the input's
  resolution (24x24 for 48x48 faces: a ReLU or a residual block), found by a dry run.
- ViTs (the patch ViT-B/16 and scratch ViTs, and the conv-tokenizer ViT): the last encoder layer's first
  LayerNorm, its tokens (the class token dropped) reshaped to their grid. The class token or the pooled tokens
  of the last layer read every patch through that layer's attention, so its input carries the gradient.
- Ensembles: the routed ensemble shows, for each face, the map of the member that routes the target emotion;
  the probability-averaging ensemble shows its members' maps summed with its weights.

A face's map is the map of what the model predicts: drawn on each test-time view the prediction averages (ten-crop
and mirrors, ...), put back where the view's pixels came from and averaged (:func:`view_pixels`).

HiResCAM is computed here (:func:`hirescam`, 20 lines) rather than by the ``grad-cam`` library, which gives the same
maps (a test compares them) but imports torchvision and with it ``torch._dynamo``: 3.2 s of the 6.2 s that a cold
``run.py predict --explain`` took on 2 cores. Docs/explain.md has the measurements.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fercore.constants import CLASS_NAMES
from fercore.errors import FerError
from fercore.models.cnn import ARCHITECTURES
from fercore.models.inference import tta_views

BATCH_SIZE = 64


class ExplainError(FerError):
    """A model whose maps cannot be drawn (no supported target layer)."""


def _family(model: nn.Module) -> tuple[str, str]:
    spec = getattr(model, "fer_spec", None) or {}
    return str(spec.get("family", type(model).__name__)), str(spec.get("architecture", ""))


def _cnn_layer(model: nn.Module, architecture: str) -> nn.Module:
    """The last non-pooling child of a CNN whose output is an image at half the input's resolution or more."""
    if architecture not in ARCHITECTURES or not isinstance(model, nn.Sequential):
        raise ExplainError(f"no class activation map for CNN architecture {architecture!r}: maps are drawn for "
                           f"{', '.join(sorted(ARCHITECTURES))}")
    shapes: dict[int, torch.Size] = {}
    hooks = [child.register_forward_hook(lambda m, i, o, k=k: shapes.__setitem__(k, o.shape))
             for k, child in enumerate(model)]
    try:
        was_training = model.training
        model.eval()
        with torch.no_grad():
            p = next(model.parameters())
            model(torch.zeros(1, 1, 48, 48, device=p.device, dtype=p.dtype))
        model.train(was_training)
    finally:
        for h in hooks:
            h.remove()
    pooling = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)
    for k in reversed(range(len(model))):
        shape = shapes.get(k)
        if shape is not None and len(shape) == 4 and min(shape[-2:]) >= 24 and not isinstance(model[k], pooling):
            return model[k]
    raise ExplainError(f"CNN architecture {architecture!r} has no convolutional layer to draw a map from")


def _tokens_to_grid(drop: int) -> Callable[[torch.Tensor], torch.Tensor]:
    def reshape(tokens: torch.Tensor) -> torch.Tensor:
        patches = tokens[:, drop:]
        side = math.isqrt(patches.shape[1])
        return patches.reshape(patches.shape[0], side, side, patches.shape[2]).permute(0, 3, 1, 2)
    return reshape


def target_layer(model: nn.Module) -> tuple[nn.Module, Callable[[torch.Tensor], torch.Tensor] | None]:
    """The layer a model's maps come from, and how its output becomes an image (ViT tokens to their grid).

    Raises:
        ExplainError: naming the family (or CNN architecture) that has no supported target layer.
    """
    family, architecture = _family(model)
    if family == "cnn":
        return _cnn_layer(model, architecture), None
    if family == "vit":
        from fercore.models.convvit import FerConvViTForImageClassification
        from fercore.models.vit import encoder_blocks

        inner = model.vit
        if isinstance(inner, FerConvViTForImageClassification):
            return inner.vit.layers[-1].norm1, _tokens_to_grid(0)
        return encoder_blocks(inner)[-1].layernorm_before, _tokens_to_grid(1)  # token 0 is the class token
    raise ExplainError(f"no class activation map for model family {family!r}: maps are drawn for the cnn and vit "
                       "families and for ensembles of them")


def view_pixels(side: int, tta: str, size: int | None) -> list[torch.Tensor]:
    """For each test-time view of a ``side`` x ``side`` face (:func:`fercore.models.inference.tta_views`, the views
    the prediction averages), the face's pixel (a flat index) under each of the view's pixels: what aligns a view's
    map back onto the face, mirrors and shifts included. Built by passing the pixels' own indices through the same
    views, so the maps follow the prediction's geometry by construction."""
    positions = torch.arange(side * side, dtype=torch.float32).reshape(1, 1, side, side)
    return [view.reshape(-1).round().long() for view in tta_views(positions, tta, size)]


def _scaled(maps: np.ndarray) -> np.ndarray:
    """Each map scaled to [0, 1] by its maximum (all zeros stay zeros)."""
    peak = maps.reshape(len(maps), -1).max(1).reshape(-1, 1, 1)
    return np.divide(maps, peak, out=np.zeros_like(maps), where=peak > 0)


def hirescam(model: nn.Module, layer: nn.Module, reshape: Callable[[torch.Tensor], torch.Tensor] | None,
             inputs: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """HiResCAM of one batch: the layer's activations times the gradient of each input's class logit with respect
    to them, summed over channels, ReLU, upsampled (bilinear) to the input's size and scaled to [0, 1] per input.

    The backward pass starts at the logits and stops at the layer: its output is made a leaf that requires a
    gradient, so no gradient flows below it or into the weights (what ``grad-cam``'s ``HiResCAM`` computes, without
    its backward pass to the input).
    """
    captured: list[torch.Tensor] = []

    def start_graph(module: nn.Module, args: Any, output: torch.Tensor) -> torch.Tensor:
        captured.append(output.detach().requires_grad_(True))
        return captured[-1]

    handle = layer.register_forward_hook(start_graph)
    try:
        with torch.enable_grad():
            logits = model(inputs)
            (gradient,) = torch.autograd.grad(logits.gather(1, classes[:, None]).sum(), captured[-1])
    finally:
        handle.remove()
    activation = captured[-1].detach()
    if reshape is not None:  # ViT tokens to their grid
        activation, gradient = reshape(activation), reshape(gradient)
    cam = (activation * gradient).sum(1, keepdim=True).clamp_min(0)
    cam = F.interpolate(cam.float(), size=inputs.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    cam = cam - cam.amin((1, 2), keepdim=True)
    return cam / (cam.amax((1, 2), keepdim=True) + 1e-7)


def _aligned_mean(model: nn.Module, target: tuple, batch: torch.Tensor, classes: np.ndarray, tta: str,
                  size: int | None) -> np.ndarray:
    """One batch's maps of every test-time view (one pass over all the views: the views of a mode share a size),
    each put back where its pixels came from and averaged per pixel over the views that saw it (a pixel no view saw
    stays zero)."""
    side, n = batch.shape[-1], len(batch)
    views, pixels = tta_views(batch, tta, size), view_pixels(side, tta, size)
    targets = torch.from_numpy(np.tile(classes, len(views))).to(batch.device)
    maps = hirescam(model, *target, torch.cat(views).contiguous(), targets).reshape(len(views), n, -1).cpu().numpy()
    total, seen = np.zeros((n, side * side), np.float32), np.zeros(side * side, np.float32)
    for view_maps, where in zip(maps, pixels):
        np.add.at(total, (slice(None), where.numpy()), view_maps)
        np.add.at(seen, where.numpy(), 1.0)
    return _scaled(np.divide(total, seen, out=np.zeros_like(total), where=seen > 0).reshape(n, side, side))


def class_activation_maps(model: nn.Module, images: np.ndarray, classes: np.ndarray | list[int],
                          batch_size: int = BATCH_SIZE, tta: str = "none") -> np.ndarray:
    """HiResCAM of ``model`` for each face and its target class, as the model predicts: on each of its test-time
    views (``tta``, cut to the window it trained on, ``fer_spec["input_size"]``), aligned back onto the face and
    averaged, as the prediction averages the views' probabilities.

    Args:
        model: a project model (``fer_spec`` says its family), on the device it should run on.
        images: uint8 faces ``(N, 48, 48)``.
        classes: the class index to explain for each face (the true or the predicted class).
        batch_size: views per forward and backward pass (all views of a face go in the same pass).
        tta: the test-time views (:data:`fercore.models.inference.TTA_MODES`): those the model predicts with.

    Returns:
        float32 maps ``(N, 48, 48)``, each scaled to [0, 1] (all zeros where nothing raised the class score).
    """
    target = target_layer(model)
    classes = np.asarray(classes, dtype=np.int64)
    if len(images) != len(classes):
        raise ValueError(f"{len(images)} images but {len(classes)} target classes")
    out = np.zeros((len(images), *images.shape[1:]), dtype=np.float32)
    if not len(images):
        return out
    size = (getattr(model, "fer_spec", None) or {}).get("input_size")
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    faces = max(1, batch_size // len(view_pixels(images.shape[-1], tta, size)))  # all of a face's views in a pass
    try:
        for start in range(0, len(images), faces):
            batch = torch.from_numpy(images[start:start + faces]).to(device, torch.float32).div(255).unsqueeze(1)
            out[start:start + len(batch)] = _aligned_mean(model, target, batch, classes[start:start + faces], tta, size)
    finally:
        model.train(was_training)
    return out


def ensemble_maps(spec: dict[str, Any], members: dict[str, nn.Module], images: np.ndarray,
                  classes: np.ndarray | list[int], batch_size: int = BATCH_SIZE,
                  member_tta: dict[str, str] | None = None) -> np.ndarray:
    """An ensemble's maps from its members' (``spec`` as in ``ensemble.json``; ``members``: version -> model;
    ``member_tta``: version -> the test-time views it predicts with, ``none`` where not given).

    Routed: each face's map is that of the member routing its target emotion. Averaging: the members' maps
    summed with the ensemble's weights.
    """
    classes = np.asarray(classes, dtype=np.int64)
    tta = member_tta or {}

    def maps(version: str, rows: np.ndarray | slice = slice(None)) -> np.ndarray:
        return class_activation_maps(members[version], images[rows], classes[rows], batch_size, tta.get(version, "none"))

    if "weights" in spec:
        total = sum(float(w) for w in spec["weights"].values()) or 1.0
        return sum(float(w) / total * maps(v) for v, w in spec["weights"].items()).astype(np.float32)
    out = np.zeros((len(images), *images.shape[1:]), dtype=np.float32)
    for c, emotion in enumerate(CLASS_NAMES):
        rows = np.flatnonzero(classes == c)
        if len(rows):
            out[rows] = maps(spec["routes"][emotion], rows)
    return out
