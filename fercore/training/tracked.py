"""Training a contender in its own MLflow run: its settings as parameters, tags naming the contender
and the pipeline run, metrics per epoch; a resumed job continues its run, and so do the contest's later rungs."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from fercore.config import TrainingConfig
from fercore.models import count_parameters
from fercore.models.inference import autocast_dtype, predict_proba
from fercore.tracking.runs import (
    EpochLogger,
    TrackedRun,
    can_train_on,
    claim,
    log_metrics,
    open_child_run,
    open_contender_run,
    resumed,
)
from fercore.tracking.store import RunInfo
from fercore.training import distributed
from fercore.training.contest import is_active, merge_rung, rung_config, stopped_record
from fercore.training.job_keys import weights_digest
from fercore.training.progress import TrainResult
from fercore.training.trainer import TrainJob
from fercore.training.warm_start import load_warm_start

logger = logging.getLogger(__name__)


def train_tracked(job: TrainJob, name: str, info: RunInfo, processes: int = 1,
                  extra_params: dict[str, Any] | None = None, run: TrackedRun | None = None,
                  epochs_before: int = 0, params_cfg: TrainingConfig | None = None,
                  rung_name: str = "training", run_name: str = "") -> tuple[TrainResult, TrackedRun]:
    """Trains contender ``name``'s job (in ``processes`` DDP workers when more than one) in a run ``rung_name``
    nested under the contender's run ``train-<name>``: the nested run starts and ends with this training (MLflow's
    duration is its training time), each epoch's metrics go to both; returns the result and the contender run's
    handle.

    Args:
        run: the contender's run of its earlier rungs, to train on under; default (or when that run's model was
            registered already, by an earlier pipeline run): a new run, or the one an interrupted attempt of the
            same job left.
        epochs_before: epochs logged in the run already (a later rung's epochs are numbered on).
        params_cfg: the settings logged as the run's parameters (the contender's whole budget, not a rung's).
        rung_name: the nested run's name (``rung-2``; ``training`` without rungs).
        run_name: the contender run's name, when it opens one (default ``train-<name>``).
    """
    if run is not None and can_train_on(info.tracking_uri, run.run_id):
        claim(info.tracking_uri, run.run_id)
    else:
        if run is not None:
            logger.info("MLflow run %s of %s's earlier rungs has its model registered already: this rung logs "
                        "to a new run", run.run_id, name)
            epochs_before = 0
        run = _open_run(job, name, info, processes, extra_params, params_cfg or job.cfg, run_name)
    key = job.key()
    resume = job.checkpoints is not None and job.checkpoints.exists(key)
    job.epochs_before = epochs_before  # the console numbers epochs across rungs, as MLflow's steps do
    uri = info.tracking_uri
    with resumed(uri, run), resumed(uri, open_child_run(run, info, rung_name, key, resume), finish=True) as child:
        job.on_epoch_end = EpochLogger([child, run.run_id], info.tracking_uri, epochs_before)
        result = distributed.train_in_processes(job, processes)
        log_metrics(uri, child, {"training_minutes": result.wall_s / 60})
    return result, run


def _open_run(job: TrainJob, name: str, info: RunInfo, processes: int, extra_params: dict[str, Any] | None,
              config: TrainingConfig, run_name: str = "") -> TrackedRun:
    model, plan = job.model, job.plan
    family = getattr(model, "fer_spec", {}).get("family", "?")
    params = {**config.model_dump(exclude={"augment"}), **{f"augment_{k}": v for k, v in config.augment.model_dump().items()},
              "parameters": count_parameters(model), "rebalance": plan.method, "train_rows": len(plan.indices),
              "ddp_processes": processes, **(extra_params or {})}
    tags = info.tags(family=family, contender=name, dataset_sha256=str(job.dataset.metadata.get("sha256", "")),
                     **{"fer.phase": "training"})
    key = job.key()
    return open_contender_run(info, name, params, tags, job_key=key,
                              resume=job.checkpoints is not None and job.checkpoints.exists(key), run_name=run_name)


@dataclass
class Rung:
    """Where a contender's training step stands in the contest and across runs.

    Attributes:
        state: the contest's state for this rung (:mod:`fercore.training.contest`); None: no rungs.
        previous_training: the record of the contender's earlier rungs in this run (None in the first rung).
        previous_run: its MLflow run, opened by the first rung.
        warm_start: ``training.continue_from``'s pick for the first rung (:func:`fercore.training.warm_start.find_warm_start`).
        model_name: the registered model a warm start is loaded from.
        judged: the step returns validation probabilities (for the contest's judgement, or the spare seed's pick).
        run_name: the contender run's name (default ``train-<name>``; the spare seed's ``train-<name>-seed<k>``).
        spare: the spare seed's word (:class:`fercore.training.spare_seed.SparePlan`'s reason), kept in its record.
    """

    state: dict[str, Any] | None = None
    previous_training: dict[str, Any] | None = None
    previous_run: TrackedRun | None = None
    warm_start: dict[str, Any] | None = None
    model_name: str = ""
    judged: bool = False
    run_name: str = ""
    spare: str = ""


def train_contender(job: TrainJob, name: str, info: RunInfo, rung: Rung, processes: int = 1,
                    extra_params: dict[str, Any] | None = None) -> tuple[dict[str, Any], TrackedRun, np.ndarray]:
    """One rung of contender ``name`` (the whole training without rungs): ``job.model`` holds the weights it
    starts from (an earlier rung's, else fresh ones, replaced by a warm start's when one loads) and is trained
    in place. A contender the contest stopped is passed through untouched.

    Returns:
        The training record (history of every rung so far, kept weights, the contest's word, where it continued
        from, total minutes), the MLflow run's handle, and the validation probabilities when a judgement follows
        (else an empty ``(0, 7)`` array).
    """
    previous, state = rung.previous_training, rung.state
    if previous is not None and not is_active(state, name):
        logger.info("%s stopped at an earlier rung: nothing to train", name)
        return stopped_record(previous, state, name), rung.previous_run, np.zeros((0, 7), np.float32)
    totals, whole = _start_weights(job, rung, info.tracking_uri), job.cfg
    if state is not None:
        job.cfg = rung_config(job.cfg, state, name)
        extra_params = {**(extra_params or {}), "contest_rungs": state["rungs"]}
    epochs_before = len(previous["history"]) if previous else 0
    rung_name = f"rung-{state['rung'] + 1}" if state is not None else "training"
    result, run = train_tracked(job, name, info, processes, extra_params, rung.previous_run, epochs_before, whole,
                                rung_name, rung.run_name)
    training = _record(previous, result, state, name, job.cfg, totals)
    if rung.spare:
        training["spare_seed"] = rung.spare
    probs = _val_probs(job) if rung.judged else np.zeros((0, 7), np.float32)
    return training, run, probs


def _start_weights(job: TrainJob, rung: Rung, tracking_uri: str) -> dict[str, Any]:
    """Marks (and for a warm start, loads) the weights ``job`` starts from; returns what they bring: the minutes
    and epochs trained before, the version continued from, and why it continued or started fresh."""
    totals = {"total_training_minutes": 0.0, "total_epochs": 0, "continued_from": "", "warm_start": ""}
    seed = (rung.previous_training or {}).get("seed", (rung.warm_start or {}).get("seed"))
    if seed is not None:  # a new, independent model's seed, or the lineage's it continues; in every rung
        job.cfg = job.cfg.model_copy(update={"seed": int(seed)})
    if rung.previous_training is not None:
        totals = {k: rung.previous_training.get(k, v) for k, v in totals.items()}
        job.start_digest = weights_digest(job.model)
    elif rung.warm_start:
        if load_warm_start(job.model, rung.model_name, rung.warm_start, tracking_uri):
            totals.update(total_training_minutes=rung.warm_start.get("total_training_minutes", 0.0),
                          total_epochs=rung.warm_start.get("total_epochs", 0), continued_from=rung.warm_start["version"])
            job.start_digest = weights_digest(job.model)
        totals["warm_start"] = rung.warm_start["reason"]  # why it continued, or started fresh
    return totals


def _record(previous: dict[str, Any] | None, result: TrainResult, state: dict[str, Any] | None, name: str,
            cfg: TrainingConfig, totals: dict[str, Any]) -> dict[str, Any]:
    """The training record after this rung: :func:`merge_rung`'s, with the totals over runs and the contest's word."""
    training = merge_rung(previous, result, state["rung"] if state else 0, cfg)
    training["seed"] = cfg.seed
    minutes = totals["total_training_minutes"] + (training["wall_s"] - (previous or {}).get("wall_s", 0.0)) / 60
    training.update(totals, total_training_minutes=round(minutes, 2),
                    total_epochs=totals["total_epochs"] + len(result.history))
    if state is not None:
        reason, rungs = state["contenders"][name]["reason"], len(state["rungs"])
        done = f"trained all {rungs} rungs" if state["rung"] == rungs - 1 else f"trained {state['rung'] + 1} of {rungs} rungs"
        training["contest"] = f"{done}; {reason}" if reason else done
    return training


def _val_probs(job: TrainJob) -> np.ndarray:
    """The validation probabilities the contest judges: the model's own test-time views, as promotion scores it."""
    model = job.model
    amp = autocast_dtype(next(model.parameters()).device, job.cfg.mixed_precision)
    return predict_proba(model, job.dataset.split("val").images, tta=job.cfg.tta, amp=amp)


def training_metrics(training: dict[str, Any] | None) -> dict[str, float]:
    """The contender run's training figures, logged once, when its model is registered (each rung's run has its
    own): a figure logged after every rung would give the model logged with the run a history of values, and the
    MLflow UI shows the model its first, the run its last."""
    if not training:
        return {}
    return {"training_minutes": training["wall_s"] / 60, "total_training_minutes": training["total_training_minutes"]}


def training_tags(training: dict[str, Any] | None) -> dict[str, str]:
    """The registered version's tags from its training record: which weights were kept, what the contest said,
    what it continued from and how long it has trained in all."""
    if not training:
        return {}
    tags = {"kept_weights": training.get("kept_weights", ""), "contest": training.get("contest", ""),
            "seed": str(training.get("seed", "")), "spare_seed": training.get("spare_seed", ""),
            "continued_from": training.get("continued_from", ""), "warm_start": training.get("warm_start", ""),
            "total_training_minutes": f"{training.get('total_training_minutes', 0.0):.2f}",
            "total_epochs": str(training.get("total_epochs", "")),
            "rungs": "; ".join(f"rung {r['rung']}: {r['epochs']} epochs in {r['wall_s'] / 60:.1f} min, kept "
                               f"{r['kept_weights']}" for r in training.get("rungs", []))}
    return {k: v[:500] for k, v in tags.items() if v}
