"""Saving and loading models as folders: safetensors weights + a JSON spec, or save_pretrained."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from fercore.errors import FerError

SPEC_FILE = "fer_model.json"
WEIGHTS_FILE = "model.safetensors"


def save_model(model: nn.Module, directory: str | Path) -> Path:
    """Writes ``model`` into ``directory`` so that :func:`load_model` rebuilds it."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    spec = getattr(model, "fer_spec", None)
    if spec is None:
        raise FerError("model has no fer_spec; build it with fercore.models.build_cnn or build_vit")
    if spec["family"] == "vit":
        model.save_pretrained(directory)
    else:
        state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        save_file(state, str(directory / WEIGHTS_FILE))
    (directory / SPEC_FILE).write_text(json.dumps(spec, indent=2))
    return directory


def load_model(directory: str | Path, device: str | torch.device = "cpu") -> nn.Module:
    """Loads a model written by :func:`save_model`, in eval mode."""
    directory = Path(directory)
    spec_path = directory / SPEC_FILE
    if not spec_path.exists():
        raise FerError(f"{directory} holds no saved model ({SPEC_FILE} missing)")
    spec = json.loads(spec_path.read_text())
    if spec["family"] == "vit":
        from fercore.models.vit import load_vit

        model = load_vit(directory)
    else:
        from fercore.models.cnn import build_cnn

        model = build_cnn(spec["architecture"], **spec["kwargs"])
        model.load_state_dict(load_file(str(directory / WEIGHTS_FILE)))
    if spec.get("input_size"):  # the window size it trained on (either family): predictions cut views to it
        model.fer_spec["input_size"] = spec["input_size"]
    return model.to(device).eval()


def network_digest(model: nn.Module) -> str:
    """Identifies a network's shape: its family, architecture, checkpoint, input size and every weight's name and
    shape. Equal digests: one model's weights load into the other (continuing training from a version needs it)."""
    spec = getattr(model, "fer_spec", {})
    shapes = [(k, list(v.shape)) for k, v in model.state_dict().items()]
    what = [spec.get("family"), spec.get("architecture"), spec.get("checkpoint"), spec.get("input_size"), shapes]
    return hashlib.sha256(json.dumps(what, default=str).encode()).hexdigest()[:12]
