"""Registering a trained contender: its model as the project's pyfunc, tags, per-class table, and the
record of the images it was trained on (which promotion reads to tell how much of a later validation
split a holder has seen)."""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from mlflow import MlflowClient
from torch import nn

from fercore.data.dataset import FerDataset
from fercore.data.duplicates import image_hashes, split_digest
from fercore.data.incoming import incoming_tag
from fercore.errors import RegistryError
from fercore.evaluation.metrics import Evaluation
from fercore.models import network_digest, save_model
from fercore.promotion.candidates import TRAIN_HASHES
from fercore.serving.registry import RunInfo, connect, end_run, log_and_register, run_closed_on_error

logger = logging.getLogger(__name__)


@dataclass
class TrainedModel:
    """A contender's trained model and what is registered with it.

    Attributes:
        model: the trained network.
        test: its test evaluation (reported in tags and the description).
        validation: its validation evaluation (what promotion decides on).
        mlflow_run_id: its training run, closed once the model is registered.
        architecture: ``cnn``, ``vit`` or ``ensemble``.
        tta: the test-time views the pyfunc averages over.
        precision: the precision it was evaluated in; the pyfunc predicts in the same.
        tags: more version tags: ``contender`` (its name in the config), the ViT checkpoint.
        teacher: the registration of the model it was distilled from (tagged ``distill_teacher``).
    """

    model: nn.Module
    test: Evaluation
    validation: Evaluation
    mlflow_run_id: str
    architecture: str
    tta: str = "hflip"
    precision: str = "auto"
    tags: dict[str, str] = field(default_factory=dict)
    teacher: dict[str, Any] | None = None

    def headline(self) -> dict[str, float]:
        o, v = self.test.overall, self.validation.overall
        return {"val_accuracy": v["accuracy"], "val_macro_f1": v["macro_f1"], "test_accuracy": o["accuracy"],
                "test_macro_f1": o["macro_f1"], **{f"{k}_accuracy": m["accuracy"] for k, m in self.test.subsets.items()}}


def register(trained: TrainedModel, dataset: FerDataset, model_name: str, info: RunInfo) -> dict[str, Any]:
    """Registers ``trained`` as a new version of ``model_name``, unless its MLflow run has one already
    (a rerun is idempotent).

    Returns:
        ``name``, ``version``, ``model_uri``, ``run_id``, ``architecture``, ``contender`` and headline metrics.
    """
    connect(info.tracking_uri, info.experiment_name)
    metrics = trained.headline()
    version = registered_version(model_name, trained.mlflow_run_id)
    if version is None:
        version = _register(trained, dataset, model_name, info.zenml_run_id, {k: f"{x:.4f}" for k, x in metrics.items()})
    else:
        logger.info("Model of MLflow run %s is registered already as version %s", trained.mlflow_run_id, version)
    return {"name": model_name, "version": version, "model_uri": f"models:/{model_name}/{version}",
            "run_id": trained.mlflow_run_id, "architecture": trained.architecture,
            "contender": trained.tags.get("contender", trained.architecture), "contest": trained.tags.get("contest", ""),
            **metrics}


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


def _version_tags(trained: TrainedModel, dataset: FerDataset, zenml_run_id: str) -> dict[str, str]:
    tags = {"architecture": trained.architecture, "zenml_run_id": zenml_run_id,
            "dataset_sha256": str(dataset.metadata.get("sha256")),
            "val_images": split_digest(dataset), "network": network_digest(trained.model), **trained.tags}
    if dataset.metadata.get("incoming"):
        tags["incoming_batches"] = incoming_tag(dataset.metadata)
    if trained.teacher:
        tags["distill_teacher"] = f"{trained.teacher['name']} v{trained.teacher['version']}"
    return tags


def _register(trained: TrainedModel, dataset: FerDataset, model_name: str, zenml_run_id: str,
              metric_tags: dict[str, str]) -> str:
    run_id = trained.mlflow_run_id
    description = f"{trained.architecture} trained by ZenML run {zenml_run_id}.\n\n{trained.test.markdown()}"
    with run_closed_on_error(run_id), tempfile.TemporaryDirectory() as tmp:
        hashes = Path(tmp) / Path(TRAIN_HASHES).name
        np.save(hashes, image_hashes(dataset.split("train").images))
        MlflowClient().log_artifact(run_id, str(hashes), str(Path(TRAIN_HASHES).parent))
        model_dir = save_model(trained.model.cpu(), Path(tmp) / "model")
        version = log_and_register(run_id, {"model": str(model_dir)}, model_name,
                                   {**_version_tags(trained, dataset, zenml_run_id), **metric_tags}, description,
                                   dataset.split("test").images[:4],
                                   model_config={"tta": trained.tta, "precision": trained.precision})
    end_run(run_id)  # FINISHED only now that its model is registered
    return version
