"""Step: fine-tune a Vision Transformer (GPU-backed through the pipeline's ResourceSettings)."""

import logging
from typing import Annotated, Any

from torch import nn
from zenml import step

from fercore.config import RegistryConfig, VitConfig
from fercore.dataset import FerDataset
from fercore.models.vit import FerViT, build_vit, set_trainable_blocks
from fercore.rebalance import Rebalanced
from materializers import FerModelMaterializer
from steps.common import train_and_track

logger = logging.getLogger(__name__)


def unfreeze_schedule(config: VitConfig):
    """A Trainer ``on_epoch_start`` callback applying ``config.freeze`` to a pretrained ViT."""

    def apply(epoch: int, model: FerViT) -> None:
        blocks = config.freeze.trainable_blocks(epoch)
        trainable = set_trainable_blocks(model, blocks)
        logger.info("Epoch %d: top %d encoder blocks + head trainable (%d parameters)", epoch + 1, blocks, trainable)

    return apply


@step(output_materializers={"vit_model": FerModelMaterializer})
def train_vit(
    dataset: FerDataset, plan: Rebalanced, config: VitConfig, registry: RegistryConfig, checkpoint_dir: str,
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

    Returns:
        The model with its best weights, the training history and the MLflow run id.
    """
    model = build_vit(config)
    schedule = unfreeze_schedule(config) if config.checkpoint else None
    result, run_id = train_and_track(model, "vit", dataset, plan, config, registry, checkpoint_dir,
                                     {"checkpoint": config.checkpoint or "scratch"}, on_epoch_start=schedule)
    return model, result.to_dict(), run_id
