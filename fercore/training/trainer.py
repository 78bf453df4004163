"""The training loop shared by every model: plain PyTorch, seeded, resumable, early-stopped.

Batches are built from in-memory uint8 arrays and augmented on the device in one batched call;
for 48x48 images a DataLoader with per-image PIL transforms costs more than the model.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm.auto import tqdm

from fercore.config import TrainingConfig
from fercore.data.dataset import FerDataset
from fercore.data.rebalance import Rebalanced
from fercore.models.inference import autocast_dtype, centre_crop, pick_device, predict_proba, to_batch
from fercore.terminal import console
from fercore.training.augment import BatchAugmenter
from fercore.training.checkpoints import CheckpointStore
from fercore.training.collectives import broadcast_floats, rank_and_world, sum_floats
from fercore.training.distill import distillation_loss
from fercore.training.job_keys import job_key, teacher_log_probs, trained_spec
from fercore.training.lr_schedule import ProgressSchedule, make_optimizer
from fercore.training.progress import Loop, Progress, TrainResult

logger = logging.getLogger(__name__)
BAR_STEPS = 1000  # the progress bar counts thousandths of the schedule
EpochCallback = Callable[[int, dict[str, float]], None]


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
    name: str = "training"  # the contender's: its progress bar's label
    epochs_before: int = 0  # epochs of this contender's earlier rungs: the console numbers epochs across rungs

    def key(self) -> str:
        """Identifies the job (:func:`job_key`): a checkpoint is resumed only by the same job."""
        return job_key(self.model, self.cfg, self.dataset, self.plan, self.teacher_probs, self.start_digest)

    def trainer(self) -> Trainer:
        return Trainer(self.model, self.cfg, self.checkpoints, self.on_epoch_end, self.on_epoch_start, self.teacher_probs,
                       self.start_digest, self.name, self.epochs_before)

    def run(self) -> TrainResult:
        """Trains the model in place, in this process."""
        return self.trainer().fit(self.dataset, self.plan)


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
                 teacher_probs: np.ndarray | None = None, start_digest: str = "", name: str = "training",
                 epochs_before: int = 0):
        self.cfg, self.on_epoch_end, self.on_epoch_start = cfg, on_epoch_end, on_epoch_start
        self.start_digest, self.name, self.epochs_before = start_digest, name, epochs_before
        distill = getattr(cfg, "distill", None)
        if (teacher_probs is None) != (distill is None or not distill.enabled):
            raise ValueError("teacher_probs are needed exactly when distill.enabled is set")
        # log-probabilities of a teacher per dataset row (see teacher_probabilities), the soft targets
        self.teacher_probs = teacher_probs
        self.teacher_log_probs = None if teacher_probs is None else teacher_log_probs(teacher_probs)
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
                loop.bar.close()  # the message on a line of its own, under the bar where it stopped
                logger.info("%s: early stopping after %s (best: epoch %d)", self.name, self._epoch_label(epoch + 1),
                            self.epochs_before + loop.progress.result.best_epoch)
                break
            if loop.sched.budget_s and loop.sched.finished() and epoch + 1 < cfg.epochs:
                loop.bar.close()
                logger.info("%s: max_train_minutes reached in %s (%d of %d rows); the schedule annealed within the "
                            "budget", self.name, self._epoch_label(epoch + 1), trained, rows)
                break
        loop.bar.close()
        return self._finish(loop, key, time.perf_counter() - t0)

    def _start(self, plan: Rebalanced, key: str) -> Loop:
        """The optimizer, schedule, loss and progress bar of a fit, resumed from ``key``'s checkpoint if any."""
        cfg = self.cfg
        steps_per_epoch = math.ceil(plan.rows_per_epoch(cfg.max_train_images) / cfg.batch_size)
        if self.on_epoch_start:
            self.on_epoch_start(0, self.model)
        opt = make_optimizer(self.model, cfg)
        budget = cfg.max_train_minutes * 60 if cfg.max_train_minutes else None
        share = (lambda s: broadcast_floats([s])[0]) if self.world > 1 and budget else None
        sched = ProgressSchedule(opt, cfg.scheduler, cfg.learning_rate,
                                 math.ceil(steps_per_epoch / cfg.grad_accumulation) * cfg.epochs, budget, share)
        loss_fn = nn.CrossEntropyLoss(weight=torch.as_tensor(plan.class_weights, device=self.device),
                                      label_smoothing=cfg.label_smoothing)
        loop = Loop(opt, sched, loss_fn, Progress(result=TrainResult(device=str(self.device))))
        self._restore(key, loop)
        # sized to what will run: the schedule's progress, which reaches 100 % at the last epoch or at the end of
        # max_train_minutes, whichever comes first (a bar of epochs would stop at 21 % when the budget ends)
        # on the terminal only (its own handle on it: ZenML copies what goes through sys.stdout into the step's
        # log, where every refresh would be a line); without a terminal the epoch lines alone say where it is
        terminal = console()
        loop.bar = tqdm(total=BAR_STEPS, initial=round(sched.applied_progress * BAR_STEPS), desc=self.name, unit="‰",
                        dynamic_ncols=True, disable=self.rank > 0 or terminal is None, file=terminal, mininterval=0.5,
                        bar_format="{desc}: {percentage:3.0f}%|{bar}| [{elapsed}<{remaining}{postfix}]")
        loop.bar.set_postfix_str(self._epoch_label(loop.progress.epoch + 1), refresh=False)
        return loop

    def _epoch_label(self, epoch: int) -> str:
        """``epoch 9/31``: numbered across the contender's rungs, as its MLflow run and its model card count them."""
        return f"epoch {self.epochs_before + epoch}/{self.epochs_before + self.cfg.epochs}"

    def _keep_start_weights(self, progress: Progress, val: FerDataset) -> None:
        """A warm restart's baseline: the start weights, kept unless an epoch validates better."""
        loss, acc = self._validate_shared(val, self.model)
        logger.info("Warm restart from trained weights: val_loss %.4f, val_accuracy %.4f", loss, acc)
        progress.result.best_val_loss, progress.result.kept_weights = loss, "start"
        progress.best_state = {k: v.detach().to("cpu", copy=True) for k, v in self.model.state_dict().items()}

    def _epoch(self, loop: Loop, data: tuple[torch.Tensor, torch.Tensor], plan: Rebalanced, val: FerDataset,
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
        # the bar shows the epoch under way; the line logged says which epoch these figures are of
        loop.bar.set_postfix_str(f"{self._epoch_label(min(epoch + 2, self.cfg.epochs))}, last loss {train_loss:.3f}, "
                                 f"val_loss {val_loss:.3f}, val_acc {val_acc:.3f}")
        with loop.bar.external_write_mode():  # the line goes above the bar, not glued to it
            logger.info("%s %s: loss %.4f, val_loss %.4f, val_accuracy %.4f", self.name, self._epoch_label(epoch + 1),
                        train_loss, val_loss, val_acc)
        return metrics, len(rows), trained

    def _finish(self, loop: Loop, key: str, wall_s: float) -> TrainResult:
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

    def _stateful(self, loop: Loop) -> dict[str, Any]:
        """The objects a checkpoint saves and restores through their ``state_dict``, by name."""
        parts = {"model": self.model, "optimizer": loop.opt, "scheduler": loop.sched, "scaler": self.scaler}
        return {**parts, "ema": self.ema} if self.ema else parts

    def _save(self, key: str, loop: Loop) -> None:
        if self.checkpoints and self.rank == 0:
            self.checkpoints.save(key, {**{name: part.state_dict() for name, part in self._stateful(loop).items()},
                                        "progress": loop.progress.to_dict(), "torch_rng": torch.get_rng_state()})

    def _restore(self, key: str, loop: Loop) -> None:
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

    def _train_epoch(self, loop: Loop, data: tuple[torch.Tensor, torch.Tensor], rows: np.ndarray,
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
            bar.update(round(sched.applied_progress * BAR_STEPS) - bar.n)  # no collective: DDP ranks agree
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
