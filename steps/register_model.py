"""Step: log a model as the project's pyfunc and register it in the MLflow model registry."""

from typing import Annotated, Any

from torch import nn
from zenml import log_metadata, step

from fercore.config import RegistryConfig
from fercore.data.dataset import FerDataset
from fercore.evaluation.metrics import Evaluation
from fercore.evaluation.predictions import Predictions
from fercore.promotion.register import TrainedModel, register
from fercore.tracking.runs import TrackedRun
from fercore.training.tracked import training_metrics, training_tags
from steps.common import own_output, per_contender, run_info


# Not cached but idempotent: a model (its MLflow run) already registered is found, not registered again.
@step(enable_cache=False)
def register_model(
    model: nn.Module, evaluation: Evaluation, val_evaluation: Evaluation, mlflow_run: TrackedRun, dataset: FerDataset,
    registry: RegistryConfig, family: str, tta: str = "hflip", mixed_precision: str = "auto",
    extra_tags: dict[str, str] | None = None, teacher: dict[str, Any] | None = None,
    training: dict[str, Any] | None = None, predictions: Predictions | None = None,
) -> Annotated[dict[str, Any], per_contender("registered_model")]:
    """Registers a new version of ``registry.model_name`` (see :class:`fercore.promotion.register.TrainedModel`
    for the arguments; ``dataset``'s sha256 and validation images become tags, and so do the training record's
    kept weights, the contest's word, what it continued from and its total minutes; ``predictions``, from
    ``evaluate_<name>``, are recorded with it for later runs' ensemble libraries; the ``contender`` tag is the MLflow
    run's contender unless ``extra_tags`` name one).

    Returns:
        ``name``, ``version``, ``model_uri``, ``run_id``, ``family``, ``contender`` and headline metrics.
    """
    tags = {"contender": mlflow_run.contender, **training_tags(training), **(extra_tags or {})}
    trained = TrainedModel(model, evaluation, val_evaluation, mlflow_run, family, tta, mixed_precision, tags, teacher,
                           training_metrics(training), predictions)
    out = register(trained, dataset, registry.model_name, run_info(registry))
    log_metadata(metadata=out, infer_artifact=True, artifact_name=own_output("registered_model"))
    return out
