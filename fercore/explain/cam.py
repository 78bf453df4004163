"""Class activation maps (HiResCAM, through the ``grad-cam`` library) for every family the project trains.

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

Docs/explain.md says why ``grad-cam`` rather than ``captum`` (measured side by side).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from pytorch_grad_cam import HiResCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn

from fercore.constants import CLASS_NAMES
from fercore.errors import FerError
from fercore.models.cnn import ARCHITECTURES

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


def class_activation_maps(model: nn.Module, images: np.ndarray, classes: np.ndarray | list[int],
                          batch_size: int = BATCH_SIZE) -> np.ndarray:
    """HiResCAM of ``model`` for each face and its target class.

    Args:
        model: a project model (``fer_spec`` says its family), on the device it should run on.
        images: uint8 faces ``(N, 48, 48)``.
        classes: the class index to explain for each face (the true or the predicted class).
        batch_size: faces per forward and backward pass.

    Returns:
        float32 maps ``(N, 48, 48)``, each scaled to [0, 1] (all zeros where nothing raised the class score).
    """
    layer, reshape = target_layer(model)
    classes = np.asarray(classes, dtype=np.int64)
    if len(images) != len(classes):
        raise ValueError(f"{len(images)} images but {len(classes)} target classes")
    out = np.zeros((len(images), *images.shape[1:]), dtype=np.float32)
    if not len(images):
        return out
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    # gradients flow to the input, not into the weights: no weight gradients to compute (30 % less time)
    trainable = [p for p in model.parameters() if p.requires_grad]
    for p in trainable:
        p.requires_grad_(False)
    try:
        with HiResCAM(model=model, target_layers=[layer], reshape_transform=reshape) as cam:
            for start in range(0, len(images), batch_size):
                batch = torch.from_numpy(images[start:start + batch_size]).to(device, torch.float32).div(255).unsqueeze(1)
                batch.requires_grad_(True)
                targets = [ClassifierOutputTarget(int(c)) for c in classes[start:start + batch_size]]
                out[start:start + len(batch)] = cam(input_tensor=batch, targets=targets)
    finally:
        model.train(was_training)
        for p in trainable:
            p.requires_grad_(True)
    return out


def ensemble_maps(spec: dict[str, Any], members: dict[str, nn.Module], images: np.ndarray,
                  classes: np.ndarray | list[int], batch_size: int = BATCH_SIZE) -> np.ndarray:
    """An ensemble's maps from its members' (``spec`` as in ``ensemble.json``; ``members``: version -> model).

    Routed: each face's map is that of the member routing its target emotion. Averaging: the members' maps
    summed with the ensemble's weights.
    """
    classes = np.asarray(classes, dtype=np.int64)
    if "weights" in spec:
        total = sum(float(w) for w in spec["weights"].values()) or 1.0
        return sum(float(w) / total * class_activation_maps(members[v], images, classes, batch_size)
                   for v, w in spec["weights"].items()).astype(np.float32)
    out = np.zeros((len(images), *images.shape[1:]), dtype=np.float32)
    for c, emotion in enumerate(CLASS_NAMES):
        rows = np.flatnonzero(classes == c)
        if len(rows):
            out[rows] = class_activation_maps(members[spec["routes"][emotion]], images[rows], classes[rows], batch_size)
    return out
