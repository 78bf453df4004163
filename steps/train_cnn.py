"""Step: train the CNN from scratch (GPU-backed through the pipeline's ResourceSettings), or one rung of it."""

from typing import Annotated, Any

import numpy as np
from torch import nn
from zenml import step

from fercore.config import CnnContender, RegistryConfig
from fercore.data.dataset import FerDataset
from fercore.data.rebalance import Rebalanced
from fercore.models import build_cnn
from fercore.tracking.runs import TrackedRun
from fercore.training.trainer import TrainJob
from fercore.training.warm_start import seeded
from materializers import FerModelMaterializer, ProbabilitiesMaterializer
from steps.cache import cache_policy
from steps.common import RungInputs, per_contender, train_and_track


@step(output_materializers={per_contender("model"): FerModelMaterializer,
                            per_contender("val_probabilities"): ProbabilitiesMaterializer},
      cache_policy=cache_policy(__name__))
def train_cnn(
    dataset: FerDataset, plan: Rebalanced, config: CnnContender, name: str, registry: RegistryConfig,
    checkpoint_dir: str, ddp_processes: int | str = 1, contest: dict[str, Any] | None = None,
    warm_starts: dict[str, Any] | None = None, previous_model: nn.Module | None = None,
    previous_training: dict[str, Any] | None = None, previous_run: TrackedRun | None = None, judged: bool = False,
) -> tuple[Annotated[nn.Module, per_contender("model")], Annotated[dict[str, Any], per_contender("training")],
           Annotated[TrackedRun, per_contender("mlflow_run")], Annotated[np.ndarray, per_contender("val_probabilities")]]:
    """Trains a CNN contender with early stopping (one rung of it with ``contest``); epochs are logged to MLflow.

    Args:
        dataset: split dataset (train rows picked by ``plan``, validation on ``val``).
        plan: the rebalanced training rows and class weights.
        config: the contender's config (``contenders.<name>``).
        name: the contender's name.
        registry: MLflow settings.
        checkpoint_dir: per-epoch checkpoints, resumed after an interruption.
        ddp_processes: ``resources.ddp_processes`` (more than 1: DistributedDataParallel workers).
        contest: the contest's state for this rung (None: no rungs).
        warm_starts: ``training.continue_from``'s pick per contender (first rung only).
        previous_model: the contender's model after the last rung (later rungs).
        previous_training: its training record after the last rung.
        previous_run: its MLflow run.
        judged: the contest judges after this rung (validation probabilities are returned for it).

    Returns:
        The model with its best weights, the training record, the MLflow run's handle and, when judged, the
        validation probabilities.
    """
    model = previous_model if previous_model is not None else seeded(
        lambda: build_cnn(config.architecture, **config.model_kwargs()), (warm_starts or {}).get(name))
    rung = RungInputs(contest, warm_starts, previous_training, previous_run, judged)
    training, run, probs = train_and_track(TrainJob(model, config, dataset, plan), name, registry, checkpoint_dir,
                                              ddp_processes, rung)
    return model, training, run, probs
