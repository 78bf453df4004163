"""Step: train the CNN from scratch (GPU-backed through the pipeline's ResourceSettings)."""

from typing import Annotated, Any

from torch import nn
from zenml import step

from fercore.config import CnnContender, RegistryConfig
from fercore.data.dataset import FerDataset
from fercore.data.rebalance import Rebalanced
from fercore.models import build_cnn
from fercore.training.trainer import TrainJob
from materializers import FerModelMaterializer
from steps.cache import cache_policy
from steps.common import train_and_track


@step(output_materializers={"model": FerModelMaterializer},
      cache_policy=cache_policy(__name__))
def train_cnn(
    dataset: FerDataset, plan: Rebalanced, config: CnnContender, name: str, registry: RegistryConfig,
    checkpoint_dir: str, ddp_processes: int | str = 1,
) -> tuple[Annotated[nn.Module, "model"], Annotated[dict[str, Any], "training"], Annotated[str, "mlflow_run_id"]]:
    """Trains a CNN contender with early stopping; epochs are logged to MLflow.

    Args:
        dataset: split dataset (train rows picked by ``plan``, validation on ``val``).
        plan: the rebalanced training rows and class weights.
        config: the contender's config (``contenders.<name>``).
        name: the contender's name.
        registry: MLflow settings.
        checkpoint_dir: per-epoch checkpoints, resumed after an interruption.
        ddp_processes: ``resources.ddp_processes`` (more than 1: DistributedDataParallel workers).

    Returns:
        The model with its best weights, the training history and the MLflow run id.
    """
    model = build_cnn(config.architecture, **config.model_kwargs())
    result, run_id = train_and_track(TrainJob(model, config, dataset, plan), name, registry, checkpoint_dir,
                                     ddp_processes)
    return model, result.to_dict(), run_id
