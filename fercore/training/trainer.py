"""The training loop shared by every model: plain PyTorch, seeded, resumable, early-stopped.

Batches are built from in-memory uint8 arrays and augmented on the device in one batched call;
for 48x48 images a DataLoader with per-image PIL transforms costs more than the model.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm.auto import tqdm

from fercore.config import AugmentConfig, TrainingConfig
from fercore.data.dataset import FerDataset
from fercore.data.rebalance import Rebalanced
from fercore.models.inference import (  # noqa: F401  (re-exported: the training API's inference helpers)
    TTA_MODES,
    autocast_dtype,
    centre_crop,
    cpu_has_native_bf16,
    pick_device,
    predict_proba,
    to_batch,
    tta_views,
)
from fercore.training.checkpoints import CheckpointStore
from fercore.training.collectives import broadcast_floats, rank_and_world, sum_floats

logger = logging.getLogger(__name__)
EpochCallback = Callable[[int, dict[str, float]], None]


class BatchAugmenter:
    """Random flips, rotations and shifts (one affine resample), and erasing, per image of a batch."""

    def __init__(self, cfg: AugmentConfig, generator: torch.Generator):
        self.cfg, self.gen = cfg, generator

    def _rand(self, n: int, device: torch.device) -> torch.Tensor:
        return torch.rand(n, generator=self.gen).to(device)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        cfg, dev = self.cfg, x.device
        if cfg.hflip:
            flip = self._rand(n, dev) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(-1), x)
        size = min(cfg.crop_size or w, h, w)
        if cfg.rotation_degrees or cfg.crop_padding or size < w:
            angle = (self._rand(n, dev) * 2 - 1) * math.radians(cfg.rotation_degrees)
            shift = (torch.rand(n, 2, generator=self.gen).to(dev) * 2 - 1) * (2 * cfg.crop_padding / w)
            # scaling the rotation by size/w samples a size x size window at the input's own pixel scale
            cos, sin = torch.cos(angle) * size / w, torch.sin(angle) * size / w
            theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
            grid = F.affine_grid(theta, [n, x.shape[1], size, size], align_corners=False)
            x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
        if cfg.erasing:
            x = self._erase(x)
        return x

    def _erase(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        size = (torch.rand(n, 2, generator=self.gen) * 0.3 + 0.1) * torch.tensor([h, w])
        corner = torch.rand(n, 2, generator=self.gen) * (torch.tensor([h, w]) - size)
        rows, cols = torch.arange(h)[None, :], torch.arange(w)[None, :]
        inside_r = (rows >= corner[:, :1]) & (rows < corner[:, :1] + size[:, :1])
        inside_c = (cols >= corner[:, 1:]) & (cols < corner[:, 1:] + size[:, 1:])
        active = torch.rand(n, generator=self.gen) < self.cfg.erasing
        mask = (inside_r[:, :, None] & inside_c[:, None, :] & active[:, None, None]).to(x.device)
        return x.masked_fill(mask[:, None], 0.5)


def distillation_loss(student_logits: torch.Tensor, teacher_log_probs: torch.Tensor, temperature: float) -> torch.Tensor:
    """Hinton et al.'s soft-target loss: ``T^2 * KL(teacher_T || student_T)``, averaged over the batch.

    The teacher's log-probabilities divided by ``T`` are its logits at temperature ``T`` (up to a
    constant that the softmax removes).
    """
    t = temperature
    return F.kl_div(F.log_softmax(student_logits / t, -1), F.log_softmax(teacher_log_probs / t, -1),
                    log_target=True, reduction="batchmean") * t * t


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


def _optimizer(model: nn.Module, cfg: TrainingConfig) -> torch.optim.Optimizer:
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


def _teacher_log_probs(teacher_probs: np.ndarray) -> torch.Tensor:
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
        key = hashlib.sha256(key.encode() + _teacher_log_probs(teacher_probs).numpy().tobytes()).hexdigest()[:16]
    if start_digest:  # other start weights: another job
        key = hashlib.sha256(f"{key} {start_digest}".encode()).hexdigest()[:16]
    return key


@dataclass
class TrainJob:
    """One training job: the model, its settings, its data, and where it reports; all a (DDP worker)
    process needs to train it. Its callbacks and checkpoint store must be picklable to reach workers.

    Attributes:
        model: maps ``(B, 1, 48, 48)`` floats in [0, 1] to logits; trained in place.
        cfg: training settings.
        dataset: the split dataset (train rows picked by ``plan``, validation on ``val``).
        plan: the rebalanced training rows and class weights.
        checkpoints: written after each epoch and resumed from (see :class:`Trainer`).
        on_epoch_end: called with ``(epoch, metrics)`` after each epoch (e.g. MLflow logging).
        on_epoch_start: called with ``(epoch, model)`` before each epoch (e.g. unfreezing layers).
        teacher_probs: a teacher's probabilities per dataset row, with ``cfg.distill.enabled``.
        start_digest: set when the model starts from trained weights (an earlier rung, a registered version):
            their :func:`weights_digest`. They are validated first and kept unless an epoch beats them.
    """

    model: nn.Module
    cfg: TrainingConfig
    dataset: FerDataset
    plan: Rebalanced
    checkpoints: CheckpointStore | None = None
    on_epoch_end: EpochCallback | None = None
    on_epoch_start: Callable[[int, nn.Module], None] | None = None
    teacher_probs: np.ndarray | None = None
    start_digest: str = ""

    def key(self) -> str:
        """Identifies the job (:func:`job_key`): a checkpoint is resumed only by the same job."""
        return job_key(self.model, self.cfg, self.dataset, self.plan, self.teacher_probs, self.start_digest)

    def trainer(self) -> Trainer:
        return Trainer(self.model, self.cfg, self.checkpoints, self.on_epoch_end, self.on_epoch_start, self.teacher_probs,
                       self.start_digest)

    def run(self) -> TrainResult:
        """Trains the model in place, in this process."""
        return self.trainer().fit(self.dataset, self.plan)


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
class _Loop:
    """The moving parts of one fit."""

    opt: torch.optim.Optimizer
    sched: ProgressSchedule
    loss_fn: nn.Module
    progress: Progress
    bar: Any = None
    train_time: float = 0.0
    seen: int = 0


class Trainer:
    """Trains ``model`` on ``dataset``'s rows picked by ``plan``; validates on the ``val`` split.

    Args:
        model: maps ``(B, 1, 48, 48)`` floats in [0, 1] to logits.
        cfg: training settings.
        checkpoints: a checkpoint is written here after each epoch and resumed from if present (a
            :class:`~fercore.training.checkpoints.CheckpointStore`, or a local folder).
        on_epoch_end: called with ``(epoch, metrics)`` after each epoch (e.g. MLflow logging).
        on_epoch_start: called with ``(epoch, model)`` before each epoch (e.g. unfreezing layers).
        teacher_probs: a teacher's class probabilities per dataset row ``(N, 7)``, with
            ``cfg.distill.enabled``: the loss mixes in its soft targets (:func:`distillation_loss`).
        start_digest: the :func:`weights_digest` of trained start weights (a warm restart): they are validated
            before the first epoch and kept (``kept_weights`` "start") unless an epoch validates better.

    Inside a ``torch.distributed`` process group (:mod:`fercore.training.distributed`) each process trains on its
    share of every batch through DistributedDataParallel; only rank 0 validates, checkpoints and calls
    ``on_epoch_end``.
    """

    def __init__(self, model: nn.Module, cfg: TrainingConfig, checkpoints: CheckpointStore | str | Path | None = None,
                 on_epoch_end: EpochCallback | None = None,
                 on_epoch_start: Callable[[int, nn.Module], None] | None = None,
                 teacher_probs: np.ndarray | None = None, start_digest: str = ""):
        self.cfg, self.on_epoch_end, self.on_epoch_start = cfg, on_epoch_end, on_epoch_start
        self.start_digest = start_digest
        distill = getattr(cfg, "distill", None)
        if (teacher_probs is None) != (distill is None or not distill.enabled):
            raise ValueError("teacher_probs are needed exactly when distill.enabled is set")
        # log-probabilities of a teacher per dataset row (see teacher_probabilities), the soft targets
        self.teacher_probs = teacher_probs
        self.teacher_log_probs = None if teacher_probs is None else _teacher_log_probs(teacher_probs)
        self.rank, self.world = rank_and_world()
        self.device = pick_device()
        if self.world > 1 and self.device.type == "cuda":
            self.device = torch.device("cuda", torch.cuda.current_device())
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)  # batch statistics over the global batch
        self.model = model.to(self.device)
        if cfg.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        if hasattr(self.model, "fer_spec"):
            self.model.fer_spec.update(trained_spec(self.model, cfg))
        self._trainable: tuple[bool, ...] | None = None
        self._wrap()
        # use_buffers: batch-norm statistics are averaged too, so the average is usable as it is
        self.ema = (AveragedModel(self.model, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema_decay), use_buffers=True)
                    if cfg.ema_decay else None)
        self.amp = autocast_dtype(self.device, cfg.mixed_precision)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp == torch.float16)
        self.checkpoints = (checkpoints if isinstance(checkpoints, CheckpointStore) or checkpoints is None
                            else CheckpointStore(checkpoints))

    def _wrap(self) -> None:
        """``self.train_forward``: the model, under DDP in a process group, compiled with ``cfg.compile``.

        DDP reduces the gradients of the parameters that were trainable when it was built, so it is
        built again when a callback (a ViT's gradual unfreezing) changed which ones are."""
        trainable = tuple(p.requires_grad for p in self.model.parameters())
        if trainable == self._trainable:
            return
        self._trainable, forward = trainable, self.model
        if self.world > 1:
            from torch.nn.parallel import DistributedDataParallel

            forward = DistributedDataParallel(self.model, device_ids=[self.device.index]
                                              if self.device.type == "cuda" else None)
        self.train_forward = self._compiled(forward) if self.cfg.compile else forward

    def _compiled(self, forward: nn.Module) -> nn.Module:
        """``forward`` under ``torch.compile`` for training steps; ``self.model`` stays eager (state, evaluation)."""
        compiler = os.environ.get("CXX", "g++")
        if self.device.type == "cpu" and shutil.which(compiler) is None:
            logger.warning("compile: true needs a C++ compiler (%s) on CPUs; none found, so training runs eager. "
                           "Install one (e.g. `apt install g++`) or set compile: false.", compiler)
            return forward
        return torch.compile(forward)

    def _validate_candidates(self, val: FerDataset) -> tuple[str, tuple[float, float], dict[str, float]]:
        """Validates the raw weights and, with ``ema_decay``, their moving average: a short budget leaves the
        average far behind the weights, a long one ahead of them. Returns the better one's name ("raw" or
        "ema", by validation loss), its ``(loss, accuracy)`` and both candidates' figures as metrics."""
        raw = self._validate_shared(val, self.model)
        if not self.ema:
            return "raw", raw, {}
        ema = self._validate_shared(val, self.ema.module)
        scores = {"raw_val_loss": raw[0], "raw_val_accuracy": raw[1], "ema_val_loss": ema[0], "ema_val_accuracy": ema[1]}
        return ("ema", ema, scores) if ema[0] <= raw[0] else ("raw", raw, scores)

    # -- data parallelism: no-ops in a single process ---------------------------------------

    def _shard(self, order: torch.Tensor) -> torch.Tensor:
        """This process's rows of an epoch: every ``world``-th row, so that the union of the processes'
        i-th batches is the single-process i-th batch (the last ``len % world`` rows are dropped, so
        that every process runs the same number of steps)."""
        if self.world == 1:
            return order
        return order[:len(order) - len(order) % self.world][self.rank::self.world]

    def _validate_shared(self, val: FerDataset, model: nn.Module | None = None) -> tuple[float, float]:
        """Rank 0 validates; every process gets its figures (so early stopping agrees everywhere)."""
        if self.world == 1:
            return self._validate(val, model)
        values = list(self._validate(val, model)) if self.rank == 0 else [0.0, 0.0]
        loss, acc = broadcast_floats(values)
        return loss, acc

    # -- the loop --------------------------------------------------------------------------

    def fit(self, dataset: FerDataset, plan: Rebalanced) -> TrainResult:
        """Trains until ``epochs``, early stopping or the time limit; restores the best weights."""
        cfg = self.cfg
        torch.manual_seed(cfg.seed)
        key, val = job_key(self.model, cfg, dataset, plan, self.teacher_probs, self.start_digest), dataset.split("val")
        data = (torch.from_numpy(dataset.images), torch.from_numpy(dataset.labels))
        loop = self._start(plan, key)
        if self.start_digest and loop.progress.epoch == 0:
            self._keep_start_weights(loop.progress, val)
        start, t0 = loop.progress.epoch, time.perf_counter()
        for epoch in range(start, cfg.epochs):
            if epoch > start and self.on_epoch_start:
                self.on_epoch_start(epoch, self.model)
            metrics, rows, trained = self._epoch(loop, data, plan, val, epoch)
            self._save(key, loop)
            if self.on_epoch_end:
                self.on_epoch_end(epoch + 1, metrics)
            if not loop.sched.annealed():  # patience counts from the annealing phase on (ProgressSchedule.annealed)
                loop.progress.bad_epochs = 0
            if loop.progress.bad_epochs >= cfg.patience:
                loop.progress.result.stopped_early = True
                logger.info("Early stopping after epoch %d (best epoch %d)", epoch + 1, loop.progress.result.best_epoch)
                break
            if loop.sched.budget_s and loop.sched.finished() and epoch + 1 < cfg.epochs:
                logger.info("max_train_minutes reached in epoch %d of %d (%d of %d rows); the schedule annealed "
                            "within the budget", epoch + 1, cfg.epochs, trained, rows)
                break
        loop.bar.close()
        return self._finish(loop, key, time.perf_counter() - t0)

    def _start(self, plan: Rebalanced, key: str) -> _Loop:
        """The optimizer, schedule, loss and progress bar of a fit, resumed from ``key``'s checkpoint if any."""
        cfg = self.cfg
        steps_per_epoch = math.ceil(plan.rows_per_epoch(cfg.max_train_images) / cfg.batch_size)
        if self.on_epoch_start:
            self.on_epoch_start(0, self.model)
        opt = _optimizer(self.model, cfg)
        budget = cfg.max_train_minutes * 60 if cfg.max_train_minutes else None
        share = (lambda s: broadcast_floats([s])[0]) if self.world > 1 and budget else None
        sched = ProgressSchedule(opt, cfg.scheduler, cfg.learning_rate,
                                 math.ceil(steps_per_epoch / cfg.grad_accumulation) * cfg.epochs, budget, share)
        loss_fn = nn.CrossEntropyLoss(weight=torch.as_tensor(plan.class_weights, device=self.device),
                                      label_smoothing=cfg.label_smoothing)
        loop = _Loop(opt, sched, loss_fn, Progress(result=TrainResult(device=str(self.device))))
        self._restore(key, loop)
        loop.bar = tqdm(total=steps_per_epoch * cfg.epochs, initial=steps_per_epoch * loop.progress.epoch,
                        desc="training", unit="batch", dynamic_ncols=True, disable=self.rank > 0)
        return loop

    def _keep_start_weights(self, progress: Progress, val: FerDataset) -> None:
        """A warm restart's baseline: the start weights, kept unless an epoch validates better."""
        loss, acc = self._validate_shared(val, self.model)
        logger.info("Warm restart from trained weights: val_loss %.4f, val_accuracy %.4f", loss, acc)
        progress.result.best_val_loss, progress.result.kept_weights = loss, "start"
        progress.best_state = {k: v.detach().to("cpu", copy=True) for k, v in self.model.state_dict().items()}

    def _epoch(self, loop: _Loop, data: tuple[torch.Tensor, torch.Tensor], plan: Rebalanced, val: FerDataset,
               epoch: int) -> tuple[dict[str, float], int, int]:
        """Trains and validates one epoch; keeps the best weights. Returns its metrics, rows planned and trained."""
        if self.world > 1:
            self._wrap()
        t_epoch = time.perf_counter()
        rows = plan.epoch_rows(epoch, self.cfg.max_train_images)  # a random subset when capped, fresh each epoch
        train_loss, train_acc, trained = self._train_epoch(loop, data, rows, epoch)
        loop.train_time += time.perf_counter() - t_epoch
        loop.seen += trained
        kept, (val_loss, val_acc), scores = self._validate_candidates(val)
        metrics = {"epoch": epoch + 1, "train_loss": train_loss, "train_accuracy": train_acc, "val_loss": val_loss,
                   "val_accuracy": val_acc, "lr": loop.opt.param_groups[0]["lr"], **scores}
        progress = loop.progress
        progress.epoch = epoch + 1
        progress.result.history.append(metrics)
        if val_loss < progress.result.best_val_loss:
            result = progress.result
            result.best_val_loss, result.best_epoch, result.kept_weights, progress.bad_epochs = val_loss, epoch + 1, kept, 0
            weights = self.ema.module if kept == "ema" else self.model
            progress.best_state = {k: v.detach().to("cpu", copy=True) for k, v in weights.state_dict().items()}
        else:
            progress.bad_epochs += 1
        loop.bar.set_postfix(epoch=epoch + 1, loss=f"{train_loss:.3f}", val_loss=f"{val_loss:.3f}",
                             val_acc=f"{val_acc:.3f}")
        return metrics, len(rows), trained

    def _finish(self, loop: _Loop, key: str, wall_s: float) -> TrainResult:
        """Restores the best weights (raw or averaged, whichever validated better) and completes the result."""
        result, best_state = loop.progress.result, loop.progress.best_state
        if result.kept_weights == "start":
            logger.info("Kept the start weights (val_loss %.4f): no epoch validated better", result.best_val_loss)
        elif self.ema or self.start_digest:
            kept = "the moving average's" if result.kept_weights == "ema" else "the raw"
            logger.info("Kept %s weights of epoch %d (val_loss %.4f)", kept, result.best_epoch, result.best_val_loss)
        if best_state is not None:
            self.model.load_state_dict(best_state)
        self.model.eval()
        result.wall_s += wall_s
        result.train_images_per_s = loop.seen / loop.train_time if loop.train_time else 0.0
        if self.checkpoints and self.rank == 0:
            self.checkpoints.delete(key)  # finished: a later run with the same key starts afresh
        return result

    # -- checkpoints: what they hold is defined once, by _stateful and Progress ------------

    def _stateful(self, loop: _Loop) -> dict[str, Any]:
        """The objects a checkpoint saves and restores through their ``state_dict``, by name."""
        parts = {"model": self.model, "optimizer": loop.opt, "scheduler": loop.sched, "scaler": self.scaler}
        return {**parts, "ema": self.ema} if self.ema else parts

    def _save(self, key: str, loop: _Loop) -> None:
        if self.checkpoints and self.rank == 0:
            self.checkpoints.save(key, {**{name: part.state_dict() for name, part in self._stateful(loop).items()},
                                        "progress": loop.progress.to_dict(), "torch_rng": torch.get_rng_state()})

    def _restore(self, key: str, loop: _Loop) -> None:
        state = self.checkpoints.load(key, self.device) if self.checkpoints else None
        if state is None:
            return
        loop.progress = Progress.from_dict(state["progress"])
        if self.on_epoch_start:  # the layers unfrozen by then, before their weights and optimizer state load
            self.on_epoch_start(loop.progress.epoch, self.model)
        for name, part in self._stateful(loop).items():
            part.load_state_dict(state[name])
        torch.set_rng_state(state["torch_rng"].cpu())  # dropout continues as if never interrupted
        loop.progress.result.resumed_from_epoch = loop.progress.epoch
        logger.info("Resuming from %s after epoch %d", self.checkpoints.path(key), loop.progress.epoch)

    def _train_epoch(self, loop: _Loop, data: tuple[torch.Tensor, torch.Tensor], rows: np.ndarray,
                     epoch: int) -> tuple[float, float, int]:
        """One pass over ``rows`` (cut short when the time budget runs out); mean loss, accuracy, rows."""
        cfg, dev, (images, labels) = self.cfg, self.device, data
        opt, sched, loss_fn, bar = loop.opt, loop.sched, loop.loss_fn, loop.bar
        gen = torch.Generator().manual_seed(cfg.seed * 1000 + epoch)  # resumable: per-epoch seeds
        order = self._shard(torch.as_tensor(rows)[torch.randperm(len(rows), generator=gen)])
        if self.world > 1:  # each process draws its own augmentations of its own rows
            gen = torch.Generator().manual_seed(cfg.seed * 1000 + epoch + 7919 * (self.rank + 1))
        augment = BatchAugmenter(cfg.augment, gen)
        batch_size = cfg.batch_size // self.world
        self.model.train()
        total_loss = correct = count = 0.0
        for step, start in enumerate(range(0, len(order), batch_size)):
            idx = order[start:start + batch_size]
            x = augment(to_batch(images[idx], dev, cfg.channels_last))
            y = labels[idx].to(dev, non_blocking=True)
            with torch.autocast(dev.type, dtype=self.amp or torch.float32, enabled=self.amp is not None):
                logits = self.train_forward(x)
                loss = loss_fn(logits.float(), y)
                if self.teacher_log_probs is not None:
                    d = cfg.distill
                    soft = distillation_loss(logits.float(), self.teacher_log_probs[idx].to(dev), d.temperature)
                    loss = (1 - d.alpha) * loss + d.alpha * soft
            self.scaler.scale(loss / cfg.grad_accumulation).backward()
            last = start + batch_size >= len(order)
            if (step + 1) % cfg.grad_accumulation == 0 or last:
                self.scaler.step(opt)
                self.scaler.update()
                opt.zero_grad(set_to_none=True)
                sched.step()
                if self.ema:
                    self.ema.update_parameters(self.model)
            total_loss += loss.item() * len(idx)
            correct += (logits.argmax(-1) == y).sum().item()
            count += len(idx)
            bar.update(1)
            if sched.budget_s and sched.finished():
                break
        if self.world > 1:
            total_loss, correct, count = sum_floats([total_loss, correct, count])
        return total_loss / count, correct / count, int(count)

    @torch.no_grad()
    def _validate(self, val: FerDataset, model: nn.Module | None = None) -> tuple[float, float]:
        if len(val) == 0:
            return float("nan"), float("nan")
        model = self.model if model is None else model
        # validated on the window size the model trains on
        probs = predict_proba(model, centre_crop(val.images, self.cfg.augment.crop_size), device=self.device,
                              amp=self.amp)
        p = torch.from_numpy(probs).clamp_min(1e-12)
        y = torch.from_numpy(val.labels)
        return float(F.nll_loss(p.log(), y)), float((p.argmax(-1) == y).float().mean())
