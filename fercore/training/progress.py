"""Where a fit stands (saved with each checkpoint), and what it produced."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from fercore.training.lr_schedule import ProgressSchedule


@dataclass
class TrainResult:
    """What training produced besides the weights (which are restored into the model)."""

    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0
    best_val_loss: float = float("inf")
    stopped_early: bool = False
    resumed_from_epoch: int = 0
    train_images_per_s: float = 0.0
    wall_s: float = 0.0
    device: str = "cpu"
    # which weights were kept: "raw", or "ema" (the moving average, with ema_decay), whichever had the lower
    # validation loss at the best epoch; "start" when a warm restart's start weights stayed the best
    kept_weights: str = "raw"

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass
class Progress:
    """Where a fit is, saved with its checkpoint: epochs done, epochs without improvement, the best weights."""

    epoch: int = 0
    bad_epochs: int = 0
    best_state: dict[str, torch.Tensor] | None = None
    result: TrainResult = field(default_factory=TrainResult)

    def to_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "bad_epochs": self.bad_epochs, "best_state": self.best_state,
                "result": self.result.to_dict()}

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> Progress:
        return cls(state["epoch"], state["bad_epochs"], state["best_state"], TrainResult(**state["result"]))


@dataclass
class Loop:
    """The moving parts of one fit: its optimizer, schedule, loss, progress and bar."""

    opt: torch.optim.Optimizer
    sched: ProgressSchedule
    loss_fn: nn.Module
    progress: Progress
    bar: Any = None
    train_time: float = 0.0
    seen: int = 0
