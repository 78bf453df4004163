"""Step: log a model as the project's pyfunc and register it in the MLflow model registry."""

import tempfile
from pathlib import Path
from typing import Annotated, Any

from torch import nn
from zenml import log_metadata, step

from fercore.config import RegistryConfig
from fercore.dataset import FerDataset
from fercore.metrics import Evaluation
from fercore.models import save_model
from fercore.registry import connect, end_run, log_and_register, run_closed_on_error
from steps.common import tracking_uri, zenml_run


@step
def register_model(
    model: nn.Module, evaluation: Evaluation, mlflow_run_id: str, dataset: FerDataset, registry: RegistryConfig,
    architecture: str, tta: str = "hflip", extra_tags: dict[str, str] | None = None,
    teacher: dict[str, Any] | None = None,
) -> Annotated[dict[str, Any], "registered_model"]:
    """Registers a new version of ``registry.model_name`` with tags and the per-class table.

    Args:
        model: the trained model.
        evaluation: its test evaluation.
        mlflow_run_id: the model's MLflow run (closed here).
        dataset: the dataset it was trained on (its sha256 becomes a tag).
        registry: MLflow settings.
        architecture: ``cnn``, ``vit`` or ``ensemble``.
        tta: the test-time views the pyfunc averages over.
        extra_tags: more version tags (e.g. the ViT checkpoint).
        teacher: the registration of the model it was distilled from (tagged ``distill_teacher``).

    Returns:
        ``name``, ``version``, ``model_uri``, ``run_id``, ``architecture`` and headline metrics.
    """
    connect(tracking_uri(registry), registry.experiment_name)
    run_id, _ = zenml_run()
    o = evaluation.overall
    metrics = {"test_accuracy": o["accuracy"], "test_macro_f1": o["macro_f1"],
               **{f"{k}_accuracy": v["accuracy"] for k, v in evaluation.subsets.items()}}
    tags = {"architecture": architecture, "zenml_run_id": run_id, "dataset_sha256": str(dataset.metadata.get("sha256")),
            **{k: f"{v:.4f}" for k, v in metrics.items()}, **(extra_tags or {})}
    if teacher:
        tags["distill_teacher"] = f"{teacher['name']} v{teacher['version']}"
    description = f"{architecture} trained by ZenML run {run_id}.\n\n{evaluation.markdown()}"
    example = dataset.split("test").images[:4]
    with run_closed_on_error(mlflow_run_id), tempfile.TemporaryDirectory() as tmp:
        model_dir = save_model(model.cpu(), Path(tmp) / "model")
        version = log_and_register(mlflow_run_id, {"model": str(model_dir)}, registry.model_name, tags, description,
                                   example, model_config={"tta": tta})
    end_run(mlflow_run_id)  # FINISHED only now that its model is registered
    out = {"name": registry.model_name, "version": version, "model_uri": f"models:/{registry.model_name}/{version}",
           "run_id": mlflow_run_id, "architecture": architecture, **metrics}
    log_metadata(metadata=out, infer_artifact=True, artifact_name="registered_model")
    return out
