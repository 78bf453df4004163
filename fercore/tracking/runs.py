"""MLflow runs: a contender's run across its steps (:class:`TrackedRun`), its nested runs, and the one-off runs
of promotion, monitoring and ensemble registration; metrics and files logged to them.

A contender's run ``train-<name>`` (the parent) is opened by its first training step (:func:`open_contender_run`)
and closed once: FINISHED when its model is registered, FAILED (KILLED on Ctrl-C) by whichever step raises first.
Each rung's training and the evaluation are nested runs under it (:func:`open_child_run`, MLflow's
``mlflow.parentRunId``): each starts when its work starts and ends when it ends, so every duration MLflow shows
is real; no end time is ever written by hand.
"""

from __future__ import annotations

import logging
import os
import socket
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlflow.entities import Metric, Param
from pydantic import BaseModel

from fercore.errors import RegistryError
from fercore.tracking.locations import folder_bytes
from fercore.tracking.store import STORE_ERRORS, RunInfo, client, connect, translate_module

logger = logging.getLogger(__name__)


class TrackedRun(BaseModel):
    """The handle of a contender's MLflow run, passed from training to evaluation to registration
    (a pydantic model: ZenML stores it as JSON).

    Attributes:
        run_id: the MLflow run.
        contender: the contender's name in the config.
    """

    run_id: str
    contender: str = ""


def start_run(info: RunInfo, run_name: str, params: dict[str, Any], tags: dict[str, str], job_key: str | None = None,
              resume: bool = False) -> str:
    """Creates an MLflow run with params and tags, or resumes one, and returns its id; the run stays RUNNING.

    With ``job_key`` (a training job's checkpoint key, tagged ``fer.job_key``), runs of the same job
    left RUNNING by a killed process are found: with ``resume`` (the job resumes from its checkpoint)
    the newest one continues, so the epoch history stays in one run; the others are marked KILLED.
    Parameter values are cut to 500 characters.
    """
    exp_id, mlflow_client = connect(info.tracking_uri, info.experiment_name), client(info.tracking_uri)
    orphans = []
    if job_key:
        orphans = [r for r in mlflow_client.search_runs(
            [exp_id], f"tags.`fer.job_key` = '{job_key}' and attributes.status = 'RUNNING'",
            order_by=["attributes.start_time DESC"]) if not owner_alive(r.data.tags.get(OWNER_TAG, ""))]
    tags = {**tags, OWNER_TAG: owner()}
    if resume and orphans:
        run_id = orphans.pop(0).info.run_id
        mlflow_client.set_tag(run_id, "fer.resumed_by_zenml_run", tags.get("zenml_run_id", ""))
        mlflow_client.set_tag(run_id, OWNER_TAG, tags[OWNER_TAG])
        logger.info("Resuming MLflow run %s of the interrupted training job %s", run_id, job_key)
    else:
        run_tags = {**tags, **({"fer.job_key": job_key} if job_key else {})}
        if orphans:
            run_tags["fer.previous_attempt"] = orphans[0].info.run_id
        run_id = mlflow_client.create_run(exp_id, run_name=run_name, tags=run_tags).info.run_id
        mlflow_client.log_batch(run_id, params=[Param(k, str(v)[:500]) for k, v in params.items()])
    for orphan in orphans:
        mlflow_client.set_tag(orphan.info.run_id, "fer.killed_reason", f"left RUNNING by a killed process; see run {run_id}")
        mlflow_client.set_terminated(orphan.info.run_id, status="KILLED")
        logger.warning("Marked MLflow run %s KILLED: its process died (job %s)", orphan.info.run_id, job_key)
    return run_id


def open_contender_run(info: RunInfo, contender: str, params: dict[str, Any], tags: dict[str, str],
                       job_key: str | None = None, resume: bool = False, run_name: str = "") -> TrackedRun:
    """Contender ``contender``'s run ``train-<contender>`` (or ``run_name``; see :func:`start_run`), RUNNING until
    its model is registered; its rungs and its evaluation are nested under it."""
    name = run_name or f"train-{contender}"
    return TrackedRun(run_id=start_run(info, name, params, tags, job_key, resume), contender=contender)


def end_run(tracking_uri: str, run_id: str, status: str = "FINISHED") -> None:
    """Ends a run with ``status``, now."""
    client(tracking_uri).set_terminated(run_id, status=status)


def open_child_run(parent: TrackedRun, info: RunInfo, name: str, job_key: str | None = None,
                   resume: bool = False) -> str:
    """A run nested under the contender's run (``rung-2``, ``evaluate``), RUNNING until its work ends; with
    ``job_key`` and ``resume``, the one an interrupted attempt of the same job left (its epochs stay in one run)."""
    tags = info.tags(**{"mlflow.parentRunId": parent.run_id, "contender": parent.contender})
    return start_run(info, name, {}, tags, job_key=f"{job_key}:{name}" if job_key else None, resume=resume)


@dataclass(frozen=True)
class RunSummary:
    """An MLflow run as the project reads it (MLflow's ``Run`` stays inside the adapter); times in ms."""

    run_id: str
    name: str
    status: str
    start_time: int
    end_time: int | None
    tags: dict[str, str]


def _summary(run) -> RunSummary:
    return RunSummary(run.info.run_id, run.info.run_name or "", run.info.status, run.info.start_time or 0,
                      run.info.end_time, dict(run.data.tags))


def child_runs(tracking_uri: str, run_id: str) -> list[RunSummary]:
    """The runs nested under ``run_id``, oldest first."""
    parent = client(tracking_uri).get_run(run_id)
    return [_summary(r) for r in client(tracking_uri).search_runs([parent.info.experiment_id],
                                                       f"tags.`mlflow.parentRunId` = '{run_id}'",
                                                       order_by=["attributes.start_time ASC"])]


# PHASE_TAG says how far a contender's run is: "training" (a later rung of the same pipeline run trains on under
# it) or "registered" (its model is registered: a later rung of another pipeline run opens a new run).
PHASE_TAG = "fer.phase"


def set_phase(tracking_uri: str, run_id: str, phase: str) -> None:
    """Tags a contender's run ``training`` or ``registered`` (:data:`PHASE_TAG`)."""
    client(tracking_uri).set_tag(run_id, PHASE_TAG, phase)


def can_train_on(tracking_uri: str, run_id: str) -> bool:
    """Whether a later rung may train under run ``run_id``: it exists, is RUNNING and its model is not registered."""
    try:
        run = client(tracking_uri).get_run(run_id)
    except STORE_ERRORS:
        return False
    return run.info.status == "RUNNING" and run.data.tags.get(PHASE_TAG) != "registered"


def claim(tracking_uri: str, run_id: str) -> None:
    """Marks this process as the one working in a run (a later rung, maybe in another pod)."""
    client(tracking_uri).set_tag(run_id, OWNER_TAG, owner())


@contextmanager
def resumed(tracking_uri: str, run: TrackedRun | str, finish: bool = False) -> Iterator[str]:
    """Logs into a run (yields its id): an error in the block ends it FAILED (KILLED on Ctrl-C); with
    ``finish``, a block that completes ends it FINISHED, now."""
    run_id = run if isinstance(run, str) else run.run_id
    try:
        yield run_id
    except BaseException as exc:
        try:
            end_run(tracking_uri, run_id, "KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED")
        except Exception:  # the store itself may be what failed; the original error matters more
            logger.warning("Could not mark MLflow run %s as failed", run_id)
        raise
    if finish:
        end_run(tracking_uri, run_id)


@contextmanager
def one_off_run(info: RunInfo, run_name: str, params: dict[str, Any], tags: dict[str, str]) -> Iterator[str]:
    """A run that starts and ends in the block (promotion, monitoring, an ensemble's registration); a run of
    the same name left RUNNING by a process that died (SIGKILL) is marked KILLED when the next one starts."""
    with resumed(info.tracking_uri, start_run(info, run_name, params, tags, job_key=f"one-off:{run_name}"),
                 finish=True) as run_id:
        yield run_id


OWNER_TAG = "fer.owner"  # host:pid of the process that opened (or resumed) a run


def owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def owner_alive(tag: str) -> bool:
    """Whether the process named by an ``fer.owner`` tag still runs. Only a process of this host can be
    checked: one of another host (a pod that was retried) counts as gone, so that its job resumes."""
    host, _, pid = tag.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit() or int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, under another user
        return True
    return True


def run_metrics(tracking_uri: str, run_id: str) -> dict[str, float]:
    """The latest value of each of a run's metrics."""
    return dict(client(tracking_uri).get_run(run_id).data.metrics)


def run_status(tracking_uri: str, run_id: str) -> str:
    """``RUNNING``, ``FINISHED``, ``FAILED`` or ``KILLED``.

    Raises:
        RegistryError: the run is not in this store (a cached training step of another store).
    """
    try:
        return client(tracking_uri).get_run(run_id).info.status
    except Exception as exc:
        raise RegistryError(f"MLflow run {run_id} of this model is not in the tracking store "
                            f"({exc.__class__.__name__}): ZenML reused a training step that logged to another "
                            "store. Rerun with --no-cache.") from None


class EpochLogger:
    """A trainer callback logging each epoch's metrics to the rung's run and to the contender's run, where the
    curves of every rung meet (a class: DDP workers get it pickled).

    ``train_loss`` and ``val_loss`` are logged as ``loss/train`` and ``loss/val`` (accuracy likewise):
    MLflow's UI groups metrics by the part before the slash, so each curve's train and validation
    charts sit together, apart from the single-value evaluation metrics.
    """

    def __init__(self, run_ids: str | list[str], tracking_uri: str, epochs_before: int = 0):
        self.run_ids = [run_ids] if isinstance(run_ids, str) else list(run_ids)
        self.tracking_uri = tracking_uri
        self.epochs_before = epochs_before  # a later rung numbers its epochs on

    def __call__(self, epoch: int, metrics: dict[str, float]) -> None:
        for run_id in self.run_ids:
            log_metrics(self.tracking_uri, run_id, {epoch_metric_name(k): v for k, v in metrics.items() if k != "epoch"},
                        self.epochs_before + epoch)


def epoch_metric_name(key: str) -> str:
    """``train_loss`` -> ``loss/train``, ``val_accuracy`` -> ``accuracy/val``; other keys as they are."""
    split, sep, quantity = key.partition("_")
    return f"{quantity}/{split}" if sep and split in ("train", "val") else key


def log_metrics(tracking_uri: str, run_id: str, metrics: dict[str, float], step: int = 0) -> None:
    """Logs ``name -> value`` metrics at ``step`` in one request instead of one per metric."""
    stamp = int(time.time() * 1000)
    client(tracking_uri).log_batch(run_id, metrics=[Metric(k, float(v), stamp, step) for k, v in metrics.items()])


def log_files(tracking_uri: str, run_id: str, files: dict[str, bytes | str], artifact_path: str = "evaluation"
              ) -> None:
    """Logs in-memory files (PNG bytes, CSV/JSON/markdown text, ``.npy`` bytes) as run artifacts."""
    with tempfile.TemporaryDirectory() as tmp:
        for name, payload in files.items():
            path = Path(tmp) / name
            path.write_bytes(payload if isinstance(payload, bytes) else payload.encode())
        client(tracking_uri).log_artifacts(run_id, tmp, artifact_path)


def download_run_file(tracking_uri: str, run_id: str, artifact_path: str) -> Path | None:
    """A local copy of a run's file, or None when the run has no such file."""
    import mlflow.artifacts

    try:
        return Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=artifact_path,
                                                        tracking_uri=tracking_uri))
    except Exception:  # noqa: BLE001 (MLflow raises several types for a missing file)
        return None


# -- retention -----------------------------------------------------------------------------------------


def experiment_runs(tracking_uri: str, experiment_name: str) -> list[RunSummary]:
    """Every run of an experiment."""
    experiment = client(tracking_uri).get_experiment_by_name(experiment_name)
    if experiment is None:
        return []
    return [_summary(r) for r in client(tracking_uri).search_runs([experiment.experiment_id], max_results=50_000)]


def local_artifact_bytes(tracking_uri: str, run_id: str | None = None, model_id: str | None = None) -> int | None:
    """The bytes of a run's (or a logged model's) files on a local artifact store; None elsewhere."""
    store = client(tracking_uri)
    uri = store.get_run(run_id).info.artifact_uri if run_id else store.get_logged_model(model_id).artifact_location
    if not uri.startswith(("file:", "/")):
        return None
    return folder_bytes(Path(uri.removeprefix("file://").removeprefix("file:")))


translate_module(globals())  # MLflow's errors leave this module as TrackingError
