"""Step: fine-tune a Vision Transformer (GPU-backed through the pipeline's ResourceSettings)."""

import logging
from typing import Annotated, Any

import numpy as np
from torch import nn
from zenml import step

from fercore.config import RegistryConfig, VitContender
from fercore.data.dataset import FerDataset
from fercore.data.rebalance import Rebalanced
from fercore.models.inference import autocast_dtype, pick_device, predict_proba, prepare_for_inference
from fercore.models.vit import UnfreezeSchedule, build_vit, vit_variant
from fercore.training.trainer import TrainJob, teacher_probabilities
from materializers import FerModelMaterializer
from steps.cache import cache_policy
from steps.common import teacher_predictor, train_and_track

logger = logging.getLogger(__name__)


def soft_targets(config: VitContender, dataset: FerDataset, registry: RegistryConfig,
                 teacher: nn.Module | None) -> tuple[np.ndarray | None, str | None]:
    """The teacher's probabilities on the train rows and the teacher's name, when distilling."""
    if not config.distill.enabled:
        return None, None
    if not config.distill.teacher.startswith("models:/"):
        if teacher is None:
            raise ValueError(f"distill.teacher is the contender '{config.distill.teacher}', but no teacher model "
                             "was passed in")
        device = pick_device()
        model, amp = prepare_for_inference(teacher, device), autocast_dtype(device, config.mixed_precision)
        predict = lambda x: predict_proba(model, x, tta="hflip", amp=amp)  # noqa: E731
        name = f"{config.distill.teacher} (this run)"
    else:
        predict, name = teacher_predictor(config.distill.teacher, registry)
    logger.info("Distilling from %s", name)
    return teacher_probabilities(predict, dataset), name


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
    probs, teacher_name = soft_targets(config, dataset, registry, teacher)
    extra = {"checkpoint": vit_variant(config), **({"distill_teacher": teacher_name} if teacher_name else {})}
    job = TrainJob(model, config, dataset, plan, on_epoch_start=schedule, teacher_probs=probs)
    result, run_id = train_and_track(job, name, registry, checkpoint_dir, ddp_processes, extra)
    return model, result.to_dict(), run_id
