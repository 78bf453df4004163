"""Inference shared by evaluation, the registry pyfunc and drift: batches, test-time views, precision.

Imports only torch and numpy, so a registered model needs little beside its own code. Not torchvision:
its import pulls in ``torch._dynamo``, 2-3 s of every prediction's start-up on 2 cores.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

# the test-time view modes (fercore.config.TtaMode lists the same names)
TTA_MODES: tuple[str, ...] = ("none", "hflip", "shift", "tencrop", "grid")
# Images per forward pass. Measured on 2 cores (docs/BENCHMARKS.md, "Inference"): 128-image batches
# beat 512 by 1.1-1.6x (a smaller batch's activations stay in cache); 64-256 lie within the noise.
BATCH_SIZE = 128


def pick_device() -> torch.device:
    """CUDA when present, else the CPU with all its cores."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    torch.set_num_threads(os.cpu_count() or 1)
    torch.set_flush_denormal(True)  # tiny gradients must not fall into the CPU's slow denormal path
    return torch.device("cpu")


def cpu_has_native_bf16() -> bool:
    """Whether the CPU computes bf16 natively (x86 AVX512-BF16 or AMX, Arm BF16), from the kernel's
    CPU flags (``/proc/cpuinfo``; where there is none, such as macOS, the answer is no)."""
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        return False
    return bool({"avx512_bf16", "amx_bf16", "bf16"} & flags)


def autocast_dtype(device: torch.device, mode: str = "auto") -> torch.dtype | None:
    """The autocast type for ``device`` under ``mixed_precision`` ``mode``, or ``None`` for full fp32.

    ``auto``: bf16 on CUDA (fp16 where bf16 is unsupported) and on CPUs with native bf16; fp32 on
    other CPUs, where bf16 is emulated and was measured 1.5-2.5x slower than fp32 for these models.
    """
    if mode == "fp32":
        return None
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if mode == "bf16":
        return torch.bfloat16
    return torch.bfloat16 if device.type == "cpu" and cpu_has_native_bf16() else None


def to_batch(images: np.ndarray | torch.Tensor, device: torch.device, channels_last: bool = False) -> torch.Tensor:
    """uint8 ``(B, 48, 48)`` -> float ``(B, 1, 48, 48)`` in [0, 1] on ``device``."""
    t = torch.as_tensor(images).to(device, non_blocking=True)
    x = t.unsqueeze(1).float().div_(255.0)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def centre_crop(images: np.ndarray | torch.Tensor, size: int | None) -> np.ndarray | torch.Tensor:
    """The central ``size`` x ``size`` window of images ``(..., H, W)``; all of them when ``size`` is None."""
    size = size or images.shape[-1]
    edge = (images.shape[-1] - size) // 2
    return images[..., edge:edge + size, edge:edge + size]


def ten_crop(x: torch.Tensor, size: int) -> list[torch.Tensor]:
    """torchvision's ``ten_crop``: the four corner windows and the centre one, then the same of the
    mirrored images (same views, same order; the centre rounds as torchvision does)."""
    h, w = x.shape[-2:]
    top, left = int(round((h - size) / 2.0)), int(round((w - size) / 2.0))
    corners = [(0, 0), (0, w - size), (h - size, 0), (h - size, w - size), (top, left)]
    return [img[..., r:r + size, c:c + size] for img in (x, x.flip(-1)) for r, c in corners]


def tta_views(x: torch.Tensor, mode: str, size: int | None = None, shift: int = 2) -> list[torch.Tensor]:
    """The test-time views of a batch, as ``size`` x ``size`` windows (the model's input size; the
    whole image when ``None``): ``none`` (the centre window), ``hflip`` (and its mirror), ``shift``
    (``hflip``'s two views, each also moved ``shift`` pixels up, down, left and right: 10 views),
    ``tencrop`` (torchvision's ten-crop: the four corners, the centre and their mirrors; for a
    whole-image model, windows ``2 * shift`` pixels smaller than the image), ``grid`` (every window
    ``shift`` pixels apart, corners and centre included, and their mirrors: 18 views of 44 in 48)."""
    if mode not in TTA_MODES:
        raise ValueError(f"unknown test-time augmentation {mode!r}; choose one of {TTA_MODES}")
    h = x.shape[-1]
    size = min(size or h, h)
    window = size if size < h else h - 2 * shift
    if mode == "tencrop":
        return ten_crop(x, window)
    if mode == "grid":
        offsets = sorted({*range(0, h - window, shift), h - window})
        grid = [x[..., r:r + window, c:c + window] for r in offsets for c in offsets]
        return grid + [v.flip(-1) for v in grid]
    pad = shift if mode == "shift" else 0
    if pad:
        x = F.pad(x, (pad,) * 4, mode="replicate")
    top = (h - size) // 2 + pad  # the centre window's corner
    moves = [(0, 0)] + ([(shift, 0), (-shift, 0), (0, shift), (0, -shift)] if mode == "shift" else [])
    windows = [x[..., top + dr:top + dr + size, top + dc:top + dc + size] for dr, dc in moves]
    return windows if mode == "none" else windows + [v.flip(-1) for v in windows]


def uses_channels_last(model: nn.Module) -> bool:
    """Whether the model's convolutions are stored channels-last (then its inputs are converted too)."""
    weight = next((p for p in model.parameters() if p.dim() == 4), None)
    return weight is not None and weight.shape[1] > 1 and weight.is_contiguous(memory_format=torch.channels_last)


def prepare_for_inference(model: nn.Module, device: torch.device | None = None,
                          channels_last: bool | None = None) -> nn.Module:
    """The model on ``device`` in eval mode; a CNN's convolutions channels-last (faster on CPUs with
    oneDNN and on CUDA), unless ``channels_last`` is False. Returns the same module."""
    device = device or next(model.parameters()).device
    model = model.to(device).eval()
    if channels_last is None:
        channels_last = getattr(model, "fer_spec", {}).get("family") == "cnn"
    return model.to(memory_format=torch.channels_last) if channels_last else model


@torch.inference_mode()
def predict_proba(model: nn.Module, images: np.ndarray, batch_size: int = BATCH_SIZE, tta: str = "none",
                  device: torch.device | None = None, amp: torch.dtype | None = None) -> np.ndarray:
    """Class probabilities ``(N, 7)`` for uint8 images ``(N, 48, 48)``, in eval mode, averaged over
    the test-time views of :func:`tta_views`, cut to the window size the model trained on
    (``fer_spec["input_size"]``, recorded by :class:`Trainer`); under ``amp`` autocast if given.
    Inputs follow the model's memory format (see :func:`prepare_for_inference`)."""
    device = device or next(model.parameters()).device
    size = getattr(model, "fer_spec", {}).get("input_size")
    fmt = torch.channels_last if uses_channels_last(model) else torch.contiguous_format
    was_training = model.training
    model.eval()
    out = np.empty((len(images), 7), np.float32)
    with torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
        for start in range(0, len(images), batch_size):
            views = tta_views(to_batch(images[start:start + batch_size], device), tta, size)
            # the views go through together, batch_size rows at a time: one face's ten views are one forward pass,
            # not ten (one face, vgg7, ten-crop on 2 cores: 5.5 ms instead of 13.6), and a full batch's are ten
            stacked = torch.cat(views).contiguous(memory_format=fmt)
            scores = torch.cat([model(stacked[i:i + batch_size]).float().softmax(-1)
                                for i in range(0, len(stacked), batch_size)])
            probs = scores.view(len(views), -1, scores.shape[-1]).mean(0)
            out[start:start + len(probs)] = probs.cpu().numpy()
    model.train(was_training)
    return out


@dataclass
class LoadedModel:
    """A registered single model ready to predict: the network, its test-time views and precision."""

    module: nn.Module
    tta: str
    amp: torch.dtype | None

    def predict_proba(self, images: np.ndarray) -> np.ndarray:
        return predict_proba(self.module, images, tta=self.tta, amp=self.amp)


def load_for_inference(model_dir: str | Path, model_config: dict[str, Any] | None) -> LoadedModel:
    """The model folder of a registered version (its ``model`` artifact) with its pyfunc model config,
    on the best device, in the precision it was evaluated in ("auto": bf16 on CUDA and on CPUs with
    native bf16)."""
    from fercore.models import load_model

    config = model_config or {}
    device = pick_device()
    module = prepare_for_inference(load_model(model_dir), device)
    return LoadedModel(module, registered_tta(config), autocast_dtype(device, config.get("precision", "fp32")))


def registered_tta(model_config: dict[str, Any] | None) -> str:
    """The test-time views a registered version predicts with, from its pyfunc model config."""
    config = model_config or {}
    # versions registered before ``tta`` existed carry a boolean ``hflip_tta``
    return config.get("tta") or ("hflip" if config.get("hflip_tta") else "none")


def route_probabilities(member_probs: dict[str, np.ndarray], routes: dict[str, str]) -> np.ndarray:
    """Each class's score from that class's champion, renormalised to sum to one.

    Args:
        member_probs: member version -> probabilities ``(N, 7)``.
        routes: emotion -> member version.
    """
    from fercore.constants import CLASS_NAMES

    first = next(iter(member_probs.values()))
    scores = np.zeros_like(first, dtype=np.float64)
    for c, emotion in enumerate(CLASS_NAMES):
        scores[:, c] = member_probs[routes[emotion]][:, c]
    return scores / np.clip(scores.sum(axis=1, keepdims=True), 1e-12, None)


def temperature_scaled(probs: np.ndarray, temperature: float) -> np.ndarray:
    """``probs ** (1 / temperature)``, renormalised: the softmax of the log-probabilities divided by the
    temperature (above 1 softens over-confident probabilities)."""
    logits = np.log(np.clip(probs, 1e-12, None)) / temperature
    logits -= logits.max(axis=1, keepdims=True)
    scaled = np.exp(logits)
    return scaled / scaled.sum(axis=1, keepdims=True)


def average_probabilities(member_probs: dict[str, np.ndarray], weights: dict[str, float],
                          temperatures: dict[str, float] | None = None) -> np.ndarray:
    """The weighted average of the members' temperature-scaled probabilities (member version -> value)."""
    temperatures = temperatures or {}
    return sum(w * temperature_scaled(member_probs[v], temperatures.get(v, 1.0)) for v, w in weights.items())


ENSEMBLE_FILE = "ensemble.json"  # an ensemble version's spec; versions registered before call it routes.json


def ensemble_spec_file(artifacts: dict[str, str]) -> str:
    """The path of an ensemble version's spec among its pyfunc artifacts (key ``ensemble``, before: ``routes``)."""
    return artifacts["ensemble"] if "ensemble" in artifacts else artifacts["routes"]


def ensemble_members(spec: dict[str, Any]) -> set[str]:
    """The member versions of an ensemble spec (``ensemble.json``): routed, or averaged with ``weights``."""
    return set(spec["weights"]) if "weights" in spec else set(spec["routes"].values())


def ensemble_probabilities(spec: dict[str, Any], member_probs: dict[str, np.ndarray]) -> np.ndarray:
    """An ensemble's probabilities from its members' (see :func:`ensemble_members`)."""
    if "weights" in spec:
        return average_probabilities(member_probs, spec["weights"], spec.get("temperatures"))
    return route_probabilities(member_probs, spec["routes"])
