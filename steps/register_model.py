"""Step: log a model as the project's pyfunc and register it in the MLflow model registry."""

import logging
import tempfile
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from mlflow import MlflowClient
from torch import nn
from zenml import log_metadata, step

from fercore.config import RegistryConfig
from fercore.dataset import FerDataset
from fercore.errors import RegistryError
from fercore.incoming import incoming_tag
from fercore.metrics import Evaluation
from fercore.models import save_model
from fercore.registry import connect, end_run, log_and_register, run_closed_on_error
from fercore.scoring import TRAIN_HASHES, hash_set_digest, image_hashes
from steps.common import tracking_uri, zenml_run

logger = logging.getLogger(__name__)


# Not cached but idempotent: a model (its MLflow run) already registered is found, not registered again.
@step(enable_cache=False)
def register_model(
    model: nn.Module, evaluation: Evaluation, val_evaluation: Evaluation, mlflow_run_id: str, dataset: FerDataset,
    registry: RegistryConfig, architecture: str, tta: str = "hflip", mixed_precision: str = "auto",
    extra_tags: dict[str, str] | None = None, teacher: dict[str, Any] | None = None,
) -> Annotated[dict[str, Any], "registered_model"]:
    """Registers a new version of ``registry.model_name`` with tags and the per-class table.

    Args:
        model: the trained model.
        evaluation: its test evaluation (reported in tags and the description).
        val_evaluation: its validation evaluation (what promotion decides on).
        mlflow_run_id: the model's MLflow run (closed here).
        dataset: the dataset it was trained on (its sha256 and validation images become tags).
        registry: MLflow settings.
        architecture: ``cnn``, ``vit`` or ``ensemble``.
        tta: the test-time views the pyfunc averages over.
        mixed_precision: the precision it was evaluated in; the pyfunc predicts in the same.
        extra_tags: more version tags: ``contender`` (its name in the config), the ViT checkpoint.
        teacher: the registration of the model it was distilled from (tagged ``distill_teacher``).

    Returns:
        ``name``, ``version``, ``model_uri``, ``run_id``, ``architecture``, ``contender`` and headline metrics.
    """
    connect(tracking_uri(registry), registry.experiment_name)
    run_id, _ = zenml_run()
    o, v = evaluation.overall, val_evaluation.overall
    metrics = {"val_accuracy": v["accuracy"], "val_macro_f1": v["macro_f1"], "test_accuracy": o["accuracy"],
               "test_macro_f1": o["macro_f1"],
               **{f"{k}_accuracy": m["accuracy"] for k, m in evaluation.subsets.items()}}
    existing = registered_version(registry.model_name, mlflow_run_id)
    if existing is None:
        version = _register(model, evaluation, mlflow_run_id, dataset, registry, architecture, tta, mixed_precision,
                            {**{k: f"{x:.4f}" for k, x in metrics.items()}, **(extra_tags or {})}, teacher, run_id)
    else:
        version = existing
        logger.info("Model of MLflow run %s is registered already as version %s", mlflow_run_id, version)
    out = {"name": registry.model_name, "version": version, "model_uri": f"models:/{registry.model_name}/{version}",
           "run_id": mlflow_run_id, "architecture": architecture,
           "contender": (extra_tags or {}).get("contender", architecture), **metrics}
    log_metadata(metadata=out, infer_artifact=True, artifact_name="registered_model")
    return out


def registered_version(model_name: str, mlflow_run_id: str) -> str | None:
    """The version registered from ``mlflow_run_id``, if any.

    Raises:
        RegistryError: the run is not in this store (a cached training step of another store).
    """
    client = MlflowClient()
    try:
        run = client.get_run(mlflow_run_id)
    except Exception as exc:
        raise RegistryError(f"MLflow run {mlflow_run_id} of this model is not in the tracking store "
                            f"({exc.__class__.__name__}): ZenML reused a training step that logged to another "
                            "store. Rerun with --no-cache.") from None
    if run.info.status == "FAILED":
        return None
    found = [mv for mv in client.search_model_versions(f"name='{model_name}' and run_id='{mlflow_run_id}'")
             if mv.status == "READY"]
    return str(max(int(mv.version) for mv in found)) if found else None


def _register(model, evaluation, mlflow_run_id, dataset, registry, architecture, tta, mixed_precision, metric_tags,
              teacher, zenml_run_id) -> str:
    train_hashes = image_hashes(dataset.split("train").images)
    tags = {"architecture": architecture, "zenml_run_id": zenml_run_id,
            "dataset_sha256": str(dataset.metadata.get("sha256")),
            "val_images": hash_set_digest(image_hashes(dataset.split("val").images)), **metric_tags}
    if dataset.metadata.get("incoming"):
        tags["incoming_batches"] = incoming_tag(dataset.metadata)
    if teacher:
        tags["distill_teacher"] = f"{teacher['name']} v{teacher['version']}"
    description = f"{architecture} trained by ZenML run {zenml_run_id}.\n\n{evaluation.markdown()}"
    example = dataset.split("test").images[:4]
    with run_closed_on_error(mlflow_run_id), tempfile.TemporaryDirectory() as tmp:
        hashes = Path(tmp) / Path(TRAIN_HASHES).name
        np.save(hashes, train_hashes)
        MlflowClient().log_artifact(mlflow_run_id, str(hashes), str(Path(TRAIN_HASHES).parent))
        model_dir = save_model(model.cpu(), Path(tmp) / "model")
        version = log_and_register(mlflow_run_id, {"model": str(model_dir)}, registry.model_name, tags, description,
                                   example, model_config={"tta": tta, "precision": mixed_precision})
    end_run(mlflow_run_id)  # FINISHED only now that its model is registered
    return version
