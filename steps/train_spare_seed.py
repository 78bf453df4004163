"""Step: train another seed of the leading contender with the minutes the run left unused (``contest.spare_seed``)."""

from typing import Annotated, Any

import numpy as np
from torch import nn
from zenml import step

from fercore.config import Config
from fercore.data.dataset import FerDataset
from fercore.data.rebalance import Rebalanced
from fercore.tracking.runs import TrackedRun
from fercore.training.spare_seed import plan_for_run, spare_job
from materializers import FerModelMaterializer
from steps.cache import cache_policy
from steps.common import RungInputs, per_contender, tracking_uri, train_and_track


@step(output_materializers={per_contender("model"): FerModelMaterializer}, cache_policy=cache_policy(__name__))
def train_spare_seed(
    dataset: FerDataset, plan: Rebalanced, config: Config, names: list[str], trainings: list[dict[str, Any]],
    val_probabilities: list[np.ndarray],
) -> tuple[Annotated[nn.Module, per_contender("model")], Annotated[dict[str, Any], per_contender("training")],
           Annotated[TrackedRun, per_contender("mlflow_run")]]:
    """Picks the leader of ``contest.spare_seed.of`` on validation and trains it again from a new seed, for the
    minutes the run left unused (:mod:`fercore.training.spare_seed`), in its own MLflow run
    ``train-<contender>-seed<k>``; the plan's reason becomes the training record's ``spare_seed``.

    Args:
        dataset: the split dataset.
        plan: the rebalanced training rows.
        config: the run's config.
        names: every enabled contender, in the order of ``trainings``.
        trainings: their training records after the last rung (the minutes they used, their seeds).
        val_probabilities: ``contest.spare_seed.of``'s validation probabilities after the last rung (empty: stopped).

    Returns:
        The spare's model, training record and MLflow run, as a contender's training step returns them.
    """
    records, probs = dict(zip(names, trainings)), dict(zip(config.contest.spare_seed.of, val_probabilities))
    spare = plan_for_run(config, records, probs, dataset.split("val").labels, tracking_uri(config.registry))
    job = spare_job(config, spare, dataset, plan)
    rung = RungInputs(run_name=f"train-{spare.contender}-seed{spare.seed}", spare=spare.reason)
    training, run, _ = train_and_track(job, spare.contender, config.registry, config.checkpoint_dir,
                                       config.resources.ddp_processes, rung, {"spare_seed": spare.seed})
    return job.model, training, run
