"""Step: score a model once on the validation and test splits; report per class on test."""

from typing import Annotated, Any

from torch import nn
from zenml import log_metadata, step

from fercore.config import ExplainConfig, RegistryConfig
from fercore.data.dataset import FerDataset
from fercore.evaluation.evaluate import evaluate_and_report
from fercore.evaluation.metrics import Evaluation
from fercore.evaluation.predictions import Predictions
from fercore.explain.summary import Explanation
from fercore.tracking.runs import TrackedRun
from fercore.tracking.store import connect
from materializers import EvaluationMaterializer, ExplanationMaterializer, PredictionsMaterializer
from steps.cache import cache_policy
from steps.common import own_output, per_contender, run_info, tracking_uri


@step(output_materializers={per_contender("test_evaluation"): EvaluationMaterializer,
                            per_contender("val_evaluation"): EvaluationMaterializer,
                            per_contender("predictions"): PredictionsMaterializer,
                            per_contender("explanation"): ExplanationMaterializer},
      cache_policy=cache_policy(__name__))
def evaluate_model(
    model: nn.Module, dataset: FerDataset, training: dict[str, Any], mlflow_run: TrackedRun, registry: RegistryConfig,
    tta: str = "hflip", mixed_precision: str = "auto", explain: ExplainConfig | None = None,
) -> tuple[Annotated[Evaluation, per_contender("test_evaluation")], Annotated[Evaluation, per_contender("val_evaluation")],
           Annotated[Predictions, per_contender("predictions")], Annotated[Explanation, per_contender("explanation")]]:
    """Scores ``model`` on val and test in one pass; logs the test report to its MLflow run.

    The validation figures are what promotion decides on; the test figures are the report.

    Args:
        model: the trained model.
        dataset: the split dataset.
        training: the training step's result (its history draws the loss curves).
        mlflow_run: the contender's MLflow run (an error ends it FAILED).
        registry: MLflow settings.
        tta: test-time views to average (``none``, ``hflip``, ``shift``, ``tencrop``, ``grid``).
        mixed_precision: the training config's precision (``auto`` uses bf16 on CPUs with native bf16).
        explain: the ``explain`` config section (class activation maps per emotion).

    Returns:
        The test evaluation (accuracy, macro-F1, per class, confusion matrix, per subset), the
        validation evaluation, the probabilities behind both (reused by promotion), and the maps.
    """
    connect(tracking_uri(registry), registry.experiment_name)
    ev, val_ev, preds, maps = evaluate_and_report(model, dataset, training.get("history", []), mlflow_run,
                                                  run_info(registry), tta, mixed_precision, explain)
    log_metadata(metadata={"test": ev.overall, "subsets": ev.subsets}, infer_artifact=True,
                 artifact_name=own_output("test_evaluation"))
    log_metadata(metadata={"validation": val_ev.overall}, infer_artifact=True,
                 artifact_name=own_output("val_evaluation"))
    return ev, val_ev, preds, maps
