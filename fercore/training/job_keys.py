"""What identifies a training job: a checkpoint is resumed, and an MLflow run continued, only by the same job."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np
import torch
from torch import nn

from fercore.config import TrainingConfig
from fercore.data.dataset import FerDataset
from fercore.data.rebalance import Rebalanced


def checkpoint_key(spec: dict[str, Any], cfg: TrainingConfig, dataset: FerDataset, plan: Rebalanced) -> str:
    """Identifies a training job: a checkpoint is resumed only by the same job."""
    h = hashlib.sha256(json.dumps([spec, cfg.model_dump(mode="json"), dataset.metadata.get("sha256")], sort_keys=True,
                                  default=str).encode())
    h.update(b"checkpoint-format-4")  # format 4: the result names the kept weights
    h.update(plan.indices.tobytes())
    h.update(json.dumps([plan.method, plan.epoch_size, plan.seed]).encode())
    if plan.sample_weights is not None:
        h.update(plan.sample_weights.tobytes())
    h.update(dataset.splits.tobytes())
    return h.hexdigest()[:16]


def trained_spec(model: nn.Module, cfg: TrainingConfig) -> dict[str, Any]:
    """The model's ``fer_spec`` as training leaves it (a crop-trained model records its window size)."""
    spec = dict(getattr(model, "fer_spec", {}))
    if cfg.augment.crop_size and hasattr(model, "fer_spec"):
        spec["input_size"] = cfg.augment.crop_size  # saved with it: predictions cut views to it
    return spec


def teacher_log_probs(teacher_probs: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.asarray(teacher_probs, np.float32)).clamp_min(1e-8).log()


def weights_digest(model: nn.Module) -> str:
    """A digest of the model's weights (and buffers): which weights a warm-started job starts from."""
    h = hashlib.sha256()
    for name, value in model.state_dict().items():
        h.update(name.encode())
        h.update(value.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def job_key(model: nn.Module, cfg: TrainingConfig, dataset: FerDataset, plan: Rebalanced,
            teacher_probs: np.ndarray | None = None, start_digest: str = "") -> str:
    """Identifies a training job (:func:`checkpoint_key`, the teacher when distilling, the start weights when
    warm-started)."""
    key = checkpoint_key(trained_spec(model, cfg), cfg, dataset, plan)
    if teacher_probs is not None:  # another teacher is another job
        key = hashlib.sha256(key.encode() + teacher_log_probs(teacher_probs).numpy().tobytes()).hexdigest()[:16]
    if start_digest:  # other start weights: another job
        key = hashlib.sha256(f"{key} {start_digest}".encode()).hexdigest()[:16]
    return key
