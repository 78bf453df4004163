"""A monitor run: the champion scores new images, their drift from its training data is reported and
logged to MLflow.

ZenML-free: the ``monitor_images`` step passes in how to find a version's training data (its ZenML run).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import mlflow
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion

from fercore.config import MonitorConfig
from fercore.data.dataset import FerDataset
from fercore.errors import RegistryError
from fercore.evaluation.metrics import flat_metrics
from fercore.models.inference import autocast_dtype, pick_device
from fercore.monitoring.monitor import MonitorResult, embedding_module, monitor, read_new_images
from fercore.serving.registry import (
    RunInfo,
    connect,
    end_run,
    log_files,
    log_metrics,
    pyfunc_predict,
    run_closed_on_error,
    start_run,
)


@dataclass
class MonitorOutcome:
    result: MonitorResult
    summary: dict[str, Any]


def champion_version(model_name: str, alias: str, tracking_uri: str) -> ModelVersion:
    """The version ``alias`` points at; a missing one is named with the store."""
    try:
        return MlflowClient().get_model_version_by_alias(model_name, alias)
    except mlflow.exceptions.MlflowException as exc:
        raise RegistryError(f"models:/{model_name}@{alias} does not exist in {tracking_uri}: train one first "
                            f"({exc.message})") from None


def monitor_run(config: MonitorConfig, model_name: str, info: RunInfo,
                training_data: Callable[[ModelVersion], FerDataset]) -> MonitorOutcome:
    """Scores ``config.data`` with ``models:/model_name@config.model`` and compares it with the version's
    training images (``training_data``); logs an MLflow run ``monitor`` with the drift share, the scores
    when the images are labelled, and both Evidently reports."""
    connect(info.tracking_uri, info.experiment_name)
    version = champion_version(model_name, config.model, info.tracking_uri)
    model = mlflow.pyfunc.load_model(f"models:/{model_name}/{version.version}")
    new = read_new_images(config.data, config.on_unreadable)
    result = monitor(training_data(version), new, pyfunc_predict(model), embedding_module(model),
                     config.drift_share, config.max_images, autocast_dtype(pick_device(), "auto"))
    summary = {"model": f"{model_name} v{version.version} ({config.model})", "images": len(new.images),
               "photos_without_face": len(new.photos_without_face), "unreadable_files_skipped": new.unreadable,
               **result.summary()}
    run_id = start_run(info.tracking_uri, info.experiment_name, "monitor", {"data": config.data},
                       {"zenml_run_id": info.zenml_run_id, "zenml_run_name": info.run_name, "stage": "monitor",
                        "model_version": str(version.version)})
    with run_closed_on_error(run_id):
        scores = flat_metrics(result.evaluation, "monitor") if result.evaluation is not None else {}
        log_metrics(run_id, {"drift_share": result.data_drift.drift_share, **scores})
        log_files(run_id, {"data_drift.html": result.data_drift.html,
                           "prediction_drift.html": result.prediction_drift.html}, "monitor")
    end_run(run_id)
    return MonitorOutcome(result, summary)
