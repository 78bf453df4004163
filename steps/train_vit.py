"""Step: fine-tune a Vision Transformer (GPU-backed through the pipeline's ResourceSettings)."""

from typing import Annotated, Any

from torch import nn
from zenml import step

from fercore.config import RegistryConfig, VitContender
from fercore.data.dataset import FerDataset
from fercore.data.rebalance import Rebalanced
from fercore.models.vit import UnfreezeSchedule, build_vit, vit_variant
from fercore.training.distill import soft_targets
from fercore.training.trainer import TrainJob
from materializers import FerModelMaterializer
from steps.cache import cache_policy
from steps.common import tracking_uri, train_and_track


@step(output_materializers={"model": FerModelMaterializer},
      cache_policy=cache_policy(__name__))
def train_vit(
    dataset: FerDataset, plan: Rebalanced, config: VitContender, name: str, registry: RegistryConfig,
    checkpoint_dir: str, teacher: nn.Module | None = None, ddp_processes: int | str = 1,
) -> tuple[Annotated[nn.Module, "model"], Annotated[dict[str, Any], "training"], Annotated[str, "mlflow_run_id"]]:
    """Fine-tunes a ViT contender (or trains a small one from scratch) with early stopping.

    Args:
        dataset: split dataset.
        plan: the rebalanced training rows and class weights.
        config: the contender's config (``contenders.<name>``).
        name: the contender's name.
        registry: MLflow settings.
        checkpoint_dir: per-epoch checkpoints, resumed after an interruption.
        teacher: the teacher contender's model, when ``distill.teacher`` names one of this run's.
        ddp_processes: ``resources.ddp_processes`` (more than 1: DistributedDataParallel workers).

    Returns:
        The model with its best weights, the training history and the MLflow run id.
    """
    model = build_vit(config)
    schedule = UnfreezeSchedule(config) if config.checkpoint else None
    probs, teacher_name = soft_targets(config, dataset, teacher, tracking_uri(registry))
    extra = {"checkpoint": vit_variant(config), **({"distill_teacher": teacher_name} if teacher_name else {})}
    job = TrainJob(model, config, dataset, plan, on_epoch_start=schedule, teacher_probs=probs)
    result, run_id = train_and_track(job, name, registry, checkpoint_dir, ddp_processes, extra)
    return model, result.to_dict(), run_id
