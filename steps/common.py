"""Helpers shared by the training, evaluation and registry steps (ZenML context, MLflow runs)."""

from __future__ import annotations

import fcntl
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from zenml import get_step_context, log_metadata
from zenml.client import Client
from zenml.utils import source_utils

from fercore.config import RegistryConfig, step_suffix
from fercore.models import count_parameters
from fercore.tracking.locations import resolve_tracking_uri
from fercore.tracking.runs import TrackedRun
from fercore.tracking.store import RunInfo
from fercore.training import distributed
from fercore.training.checkpoints import CheckpointStore
from fercore.training.contest import is_active
from fercore.training.tracked import Rung, train_contender
from fercore.training.trainer import TrainJob

logger = logging.getLogger(__name__)

# Per-contender artifacts are named after their contender (``vgg7_model``, ``vgg7_test_evaluation``): the steps
# declare the template, the pipeline passes ``substitutions={"contender": name}`` (ZenML's dynamic artifact names).
CONTENDER = "contender"


def per_contender(key: str) -> str:
    """The artifact name template of output ``key`` of a contender's step: ``{contender}_<key>``."""
    return "{" + CONTENDER + "}_" + key


def contender_output(contender: str, key: str) -> str:
    """The name of contender ``contender``'s output ``key`` (its step run's ``outputs`` key), spelt as in its
    steps' names (:func:`fercore.config.step_suffix`)."""
    return f"{step_suffix(contender)}_{key}"


def own_output(key: str) -> str:
    """The name of this step's output ``key`` as the pipeline substituted it (``vgg7_training``; the spare seed's
    steps are ``spare_seed_*`` whatever contender it trains, so its run's contender does not name them)."""
    return f"{get_step_context().step_run.config.substitutions[CONTENDER]}_{key}"


def stack_tracking_uri() -> str | None:
    """The tracking URI of the active stack's MLflow experiment tracker, if it has one.

    The tracker's credentials (``tracking_username`` / ``password`` / ``token``) are put in the
    environment, where the MLflow client (and DDP workers, which inherit it) read them: the steps do
    not declare ``experiment_tracker=``, so ZenML would not do it in a step's pod.
    """
    tracker = Client().active_stack.experiment_tracker
    if tracker is not None and tracker.flavor == "mlflow":
        tracker.configure_mlflow()  # type: ignore[attr-defined]
        return tracker.get_tracking_uri()  # type: ignore[attr-defined]
    return None


def tracking_uri(registry: RegistryConfig) -> str:
    return resolve_tracking_uri(registry.tracking_uri, stack_tracking_uri())


class ArtifactStoreFS:
    """The active stack's artifact store as a :class:`fercore.training.checkpoints.FileSystem`.

    Picklable (DDP workers get it): the store is looked up again in each process, with the source root
    of the process that made it (ZenML needs one to load the stack's flavors, and cannot infer it in a
    spawned worker).
    """

    def __init__(self):
        self.source_root, self._store = source_utils.get_source_root(), None

    def __getstate__(self) -> dict:
        return {"source_root": self.source_root}  # each process looks the store up again

    def __setstate__(self, state: dict) -> None:
        self.source_root, self._store = state["source_root"], None

    def __getattr__(self, name: str):
        if name not in ("open", "exists", "rename", "makedirs", "rmtree"):
            raise AttributeError(name)
        if self._store is None:
            source_utils.set_custom_source_root(self.source_root)
            # one process at a time: a ZenML client rewrites its config file while loading it, and two DDP workers
            # starting together read it half-written
            with open(Path(tempfile.gettempdir()) / "fer-zenml-client.lock", "a") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                self._store = Client().active_stack.artifact_store
        return getattr(self._store, name)


def checkpoint_store(checkpoint_dir: str, kind: str) -> CheckpointStore:
    """Where ``kind``'s checkpoints live: ``checkpoint_dir/kind`` on a local stack; on a remote one under the
    artifact store (a relative ``checkpoint_dir`` below its root), where a retried step on another pod finds
    them."""
    store = Client().active_stack.artifact_store
    if store.flavor == "local" and "://" not in checkpoint_dir:
        return CheckpointStore(Path(checkpoint_dir) / kind)
    root = checkpoint_dir if "://" in checkpoint_dir else f"{store.path.rstrip('/')}/{checkpoint_dir.strip('/')}"
    return CheckpointStore(f"{root}/{kind}", ArtifactStoreFS())


def zenml_run() -> tuple[str, str]:
    """``(run id, run name)`` of the pipeline run this step belongs to."""
    run = get_step_context().pipeline_run
    return str(run.id), run.name


def run_info(registry: RegistryConfig) -> RunInfo:
    """Where this step logs to MLflow, and the pipeline run it belongs to."""
    run_id, run_name = zenml_run()
    return RunInfo(tracking_uri(registry), registry.experiment_name, run_name, run_id)


@dataclass
class RungInputs:
    """A training step's inputs from the contest and from ``training.continue_from`` (see the train steps)."""

    contest: dict[str, Any] | None = None
    warm_starts: dict[str, Any] | None = None
    previous_training: dict[str, Any] | None = None
    previous_run: TrackedRun | None = None
    judged: bool = False
    run_name: str = ""
    spare: str = ""

    def active(self, name: str) -> bool:
        return self.previous_training is None or is_active(self.contest, name)

    def epochs_before(self, name: str) -> int:
        """Epochs the model trained before this step (earlier rungs, and the version it continues from)."""
        if self.previous_training is not None:
            return int(self.previous_training.get("total_epochs", 0))
        return int((self.warm_starts or {}).get(name, {}).get("total_epochs", 0))

    def rung(self, name: str, model_name: str) -> Rung:
        warm = (self.warm_starts or {}).get(name) if self.previous_training is None else None
        return Rung(self.contest, self.previous_training, self.previous_run, dict(warm) if warm else None,
                    model_name, self.judged, self.run_name, self.spare)


def train_and_track(job: TrainJob, name: str, registry: RegistryConfig, checkpoint_dir: str,
                    ddp_processes: int | str = 1, rung: RungInputs | None = None,
                    extra_params: dict[str, Any] | None = None) -> tuple[dict[str, Any], TrackedRun, np.ndarray]:
    """:func:`fercore.training.tracked.train_contender` with this stack's checkpoint store and pipeline run; the
    record's summary becomes the step's ``training`` metadata."""
    job.checkpoints, job.name = checkpoint_store(checkpoint_dir, name), name
    training, run, probs = train_contender(job, name, run_info(registry), (rung or RungInputs()).rung(
        name, registry.model_name), distributed.resolve_processes(ddp_processes), extra_params)
    summary = {k: v for k, v in training.items() if k != "history"}
    log_metadata(metadata={**summary, "parameters": count_parameters(job.model), **(extra_params or {})},
                 infer_artifact=True, artifact_name=own_output("training"))
    return training, run, probs
