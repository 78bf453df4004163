"""Step: evaluate a model per class on the test split (and its PublicTest/PrivateTest subsets)."""

from typing import Annotated, Any

from mlflow import MlflowClient
from torch import nn
from zenml import log_metadata, step

from fercore.config import RegistryConfig
from fercore.dataset import FerDataset
from fercore.metrics import Evaluation, evaluate_predictions, flat_metrics
from fercore.plots import confusion_matrix_png, loss_curves_png
from fercore.registry import connect, log_files, run_closed_on_error
from fercore.train import autocast_dtype, pick_device, predict_proba
from materializers import EvaluationMaterializer
from steps.common import tracking_uri


@step(output_materializers=EvaluationMaterializer)
def evaluate_model(
    model: nn.Module, dataset: FerDataset, training: dict[str, Any], mlflow_run_id: str, registry: RegistryConfig,
    tta: str = "hflip", mixed_precision: str = "auto",
) -> Annotated[Evaluation, "evaluation"]:
    """Scores ``model`` on the test split; logs metrics and figures to its MLflow run.

    Args:
        model: the trained model.
        dataset: the split dataset.
        training: the training step's result (its history draws the loss curves).
        mlflow_run_id: the model's MLflow run.
        registry: MLflow settings.
        tta: test-time views to average (``none``, ``hflip``, ``shift``, ``tencrop``, ``grid``).
        mixed_precision: the training config's precision (``auto`` uses bf16 on CPUs with native bf16).

    Returns:
        Accuracy, macro-F1, per-class table, confusion matrix, per-subset accuracy.
    """
    connect(tracking_uri(registry), registry.experiment_name)
    with run_closed_on_error(mlflow_run_id):
        test = dataset.split("test")
        device = pick_device()
        probs = predict_proba(model.to(device), test.images, tta=tta, amp=autocast_dtype(device, mixed_precision))
        ev = evaluate_predictions(test.labels, probs.argmax(axis=1), test.subsets)
        ev.history = training.get("history", [])
        client = MlflowClient()
        for key, value in flat_metrics(ev).items():
            client.log_metric(mlflow_run_id, key, value)
        files: dict[str, bytes | str] = {
            "confusion_matrix.png": confusion_matrix_png(ev.confusion), "per_class.csv": ev.per_class.to_csv(),
            "per_class.md": ev.markdown(), "evaluation.json": ev.to_json(),
        }
        if ev.history:
            files["loss_curves.png"] = loss_curves_png(ev.history)
        log_files(mlflow_run_id, files)
    log_metadata(metadata={"test": ev.overall, "subsets": ev.subsets}, infer_artifact=True, artifact_name="evaluation")
    return ev
