"""Step: fine-tune a Vision Transformer (GPU-backed through the pipeline's ResourceSettings), or one rung of it."""

from typing import Annotated, Any

import numpy as np
from torch import nn
from zenml import step

from fercore.config import RegistryConfig, VitContender
from fercore.data.dataset import FerDataset
from fercore.data.rebalance import Rebalanced
from fercore.models.vit import UnfreezeSchedule, build_vit, vit_variant
from fercore.tracking.runs import TrackedRun
from fercore.training.distill import soft_targets
from fercore.training.trainer import TrainJob
from fercore.training.warm_start import seeded
from materializers import FerModelMaterializer, ProbabilitiesMaterializer
from steps.cache import cache_policy
from steps.common import RungInputs, per_contender, tracking_uri, train_and_track


@step(output_materializers={per_contender("model"): FerModelMaterializer,
                            per_contender("val_probabilities"): ProbabilitiesMaterializer},
      cache_policy=cache_policy(__name__))
def train_vit(
    dataset: FerDataset, plan: Rebalanced, config: VitContender, name: str, registry: RegistryConfig,
    checkpoint_dir: str, teacher: nn.Module | None = None, ddp_processes: int | str = 1,
    contest: dict[str, Any] | None = None, warm_starts: dict[str, Any] | None = None,
    previous_model: nn.Module | None = None, previous_training: dict[str, Any] | None = None,
    previous_run: TrackedRun | None = None, judged: bool = False,
) -> tuple[Annotated[nn.Module, per_contender("model")], Annotated[dict[str, Any], per_contender("training")],
           Annotated[TrackedRun, per_contender("mlflow_run")], Annotated[np.ndarray, per_contender("val_probabilities")]]:
    """Fine-tunes a ViT contender (or trains a small one from scratch) with early stopping; one rung of it with
    ``contest``. The arguments are :func:`steps.train_cnn.train_cnn`'s, and ``teacher``: the teacher
    contender's model, when ``distill.teacher`` names one of this run's."""
    rung = RungInputs(contest, warm_starts, previous_training, previous_run, judged)
    model = previous_model if previous_model is not None else seeded(lambda: build_vit(config),
                                                                     (warm_starts or {}).get(name))
    schedule = UnfreezeSchedule(config, rung.epochs_before(name)) if config.checkpoint else None
    probs, teacher_name = (soft_targets(config, dataset, teacher, tracking_uri(registry)) if rung.active(name)
                           else (None, None))  # a contender the contest stopped passes through
    extra = {"checkpoint": vit_variant(config), **({"distill_teacher": teacher_name} if teacher_name else {})}
    job = TrainJob(model, config, dataset, plan, on_epoch_start=schedule, teacher_probs=probs)
    training, run, val_probs = train_and_track(job, name, registry, checkpoint_dir, ddp_processes, rung, extra)
    return model, training, run, val_probs
