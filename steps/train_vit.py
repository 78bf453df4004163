"""Step: fine-tune a Vision Transformer (GPU-backed through the pipeline's ResourceSettings)."""

import logging
from typing import Annotated, Any

import numpy as np
from torch import nn
from zenml import step

from fercore.config import RegistryConfig, VitConfig
from fercore.dataset import FerDataset
from fercore.inference import autocast_dtype, pick_device, predict_proba, prepare_for_inference
from fercore.models.vit import UnfreezeSchedule, build_vit, vit_variant
from fercore.rebalance import Rebalanced
from fercore.train import teacher_probabilities
from materializers import FerModelMaterializer
from steps.cache import cache_policy
from steps.common import teacher_predictor, train_and_track

logger = logging.getLogger(__name__)


def soft_targets(config: VitConfig, dataset: FerDataset, registry: RegistryConfig,
                 teacher: nn.Module | None) -> tuple[np.ndarray | None, str | None]:
    """The teacher's probabilities on the train rows and the teacher's name, when distilling."""
    if not config.distill.enabled:
        return None, None
    if config.distill.teacher == "cnn":
        if teacher is None:
            raise ValueError("vit.distill.teacher is 'cnn' but no CNN is trained in this run (cnn.enabled: false)")
        device = pick_device()
        model, amp = prepare_for_inference(teacher, device), autocast_dtype(device, config.mixed_precision)
        predict, name = (lambda x: predict_proba(model, x, tta="hflip", amp=amp)), "cnn (this run)"
    else:
        predict, name = teacher_predictor(config.distill.teacher, registry)
    logger.info("Distilling from %s", name)
    return teacher_probabilities(predict, dataset), name


@step(output_materializers={"vit_model": FerModelMaterializer},
      cache_policy=cache_policy("fercore.train", "fercore.distributed", "fercore.inference", "fercore.models.vit", "fercore.models.convvit"))
def train_vit(
    dataset: FerDataset, plan: Rebalanced, config: VitConfig, registry: RegistryConfig, checkpoint_dir: str,
    teacher: nn.Module | None = None, ddp_processes: int | str = 1,
) -> tuple[
    Annotated[nn.Module, "vit_model"], Annotated[dict[str, Any], "vit_training"], Annotated[str, "vit_mlflow_run_id"]
]:
    """Fine-tunes the configured ViT (or trains the small one from scratch) with early stopping.

    Args:
        dataset: split dataset.
        plan: the rebalanced training rows and class weights.
        config: the ``vit`` config section.
        registry: MLflow settings.
        checkpoint_dir: per-epoch checkpoints, resumed after an interruption.
        teacher: this run's CNN, the teacher when ``vit.distill`` is enabled with ``teacher: cnn``.
        ddp_processes: ``resources.ddp_processes`` (more than 1: DistributedDataParallel workers).

    Returns:
        The model with its best weights, the training history and the MLflow run id.
    """
    model = build_vit(config)
    schedule = UnfreezeSchedule(config) if config.checkpoint else None
    probs, teacher_name = soft_targets(config, dataset, registry, teacher)
    extra = {"checkpoint": vit_variant(config), **({"distill_teacher": teacher_name} if teacher_name else {})}
    result, run_id = train_and_track(model, "vit", dataset, plan, config, registry, checkpoint_dir, extra,
                                     on_epoch_start=schedule, teacher_probs=probs, ddp_processes=ddp_processes)
    return model, result.to_dict(), run_id
