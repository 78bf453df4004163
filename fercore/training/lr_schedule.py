"""The optimizer, and its learning-rate (and momentum) schedule as a function of training progress: epochs, or
minutes of a budget."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import torch
from torch import nn

from fercore.config import TrainingConfig


def make_optimizer(model: nn.Module, cfg: TrainingConfig) -> torch.optim.Optimizer:
    # All parameters, frozen ones too: they have no gradient and are skipped until unfrozen.
    params = list(model.parameters())
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.learning_rate, momentum=0.9, nesterov=True, weight_decay=cfg.weight_decay)
    cls = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    return cls(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)


class ProgressSchedule:
    """Learning rate (and Adam's beta1 / SGD's momentum) as a function of training *progress*.

    Progress is optimizer steps done over ``total_steps``, or, with a time budget, the larger of that
    and wall time used over the budget: a run that would outlast ``max_train_minutes`` then anneals
    to the end of its schedule within the budget instead of being cut while the rate is high.
    ``torch.optim.lr_scheduler``'s schedulers count steps only, hence this class. ``onecycle`` follows
    ``OneCycleLR`` (warm-up over the first 20 %, cosine annealing, max/25 start, start/1e4 end, momentum
    cycled 0.95 -> 0.85 -> 0.95); ``cosine`` anneals max -> 0; ``none`` keeps the rate.
    """

    PCT_START, DIV, FINAL_DIV, MOMENTUM = 0.2, 25.0, 1e4, (0.85, 0.95)

    def __init__(self, opt: torch.optim.Optimizer, kind: str, max_lr: float, total_steps: int,
                 budget_s: float | None = None, share_elapsed: Callable[[float], float] | None = None):
        # share_elapsed: under DDP, every process must follow rank 0's clock (the same rate, the same last step)
        self.opt, self.kind, self.max_lr, self.budget_s = opt, kind, max_lr, budget_s
        self.share_elapsed = share_elapsed
        self.total_steps = max(total_steps, 1)
        self.steps, self.elapsed_before, self._t0 = 0, 0.0, time.perf_counter()
        self._apply()

    def elapsed_s(self) -> float:
        return self.elapsed_before + time.perf_counter() - self._t0

    def progress(self) -> float:
        done = self.steps / self.total_steps
        if self.budget_s:
            elapsed = self.elapsed_s()
            if self.share_elapsed:
                elapsed = self.share_elapsed(elapsed)
            done = max(done, elapsed / self.budget_s)
        return min(done, 1.0)

    def finished(self) -> bool:
        """Whether the optimizer runs at the schedule's end (judged by the last applied values, so a budget
        that runs out between two steps still ends training at the final learning rate)."""
        return self.applied_progress >= 1.0

    def annealed(self) -> bool:
        """Whether the rate has come down to half its peak (always, without a schedule): early stopping counts its
        patience from then on. Before, a validation loss that stalls at a high rate says little about the end, and
        stopping there would keep weights that never annealed (a warm restart's rung stopped at 38 % of its minutes
        so, and counting the stalled epochs stopped one the moment it reached half its peak rate)."""
        return self.kind == "none" or self.values(self.applied_progress)[0] <= self.max_lr / 2
    def step(self) -> None:
        self.steps += 1
        self._apply()

    def _apply(self) -> None:
        self.applied_progress = self.progress()
        lr, momentum = self.values(self.applied_progress)
        for group in self.opt.param_groups:
            group["lr"] = lr
            if momentum is not None and "betas" in group:
                group["betas"] = (momentum, group["betas"][1])
            elif momentum is not None and "momentum" in group:
                group["momentum"] = momentum

    def values(self, p: float) -> tuple[float, float | None]:
        """``(learning rate, momentum or None)`` at progress ``p``."""
        def cos(start: float, end: float, frac: float) -> float:
            return end + (start - end) / 2 * (math.cos(math.pi * frac) + 1)

        if self.kind == "cosine":
            return cos(self.max_lr, 0.0, p), None
        if self.kind != "onecycle":
            return self.max_lr, None
        low, high = self.MOMENTUM
        initial = self.max_lr / self.DIV
        if p < self.PCT_START:
            frac = p / self.PCT_START
            return cos(initial, self.max_lr, frac), cos(high, low, frac)
        frac = (p - self.PCT_START) / (1 - self.PCT_START)
        return cos(self.max_lr, initial / self.FINAL_DIV, frac), cos(low, high, frac)

    def state_dict(self) -> dict[str, float]:
        return {"steps": self.steps, "elapsed_s": self.elapsed_s()}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.steps, self.elapsed_before, self._t0 = int(state["steps"]), float(state["elapsed_s"]), time.perf_counter()
        self._apply()
