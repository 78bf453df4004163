"""A monitor run: the champion scores new images, their drift from its training data is reported and
logged to MLflow.

ZenML-free: the ``monitor_images`` step passes in how to find a version's training data (its ZenML run).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fercore.config import MonitorConfig
from fercore.data.dataset import FerDataset
from fercore.evaluation.metrics import flat_metrics
from fercore.models.inference import autocast_dtype, pick_device
from fercore.monitoring.drift_view import drift_pages
from fercore.monitoring.new_images import MonitorResult, embedding_version, monitor, read_new_images
from fercore.tracking import registry
from fercore.tracking.loading import version_network, version_predictor
from fercore.tracking.runs import log_files, log_metrics, one_off_run
from fercore.tracking.store import RunInfo, connect, run_url


@dataclass
class MonitorOutcome:
    result: MonitorResult
    summary: dict[str, Any]
    run_id: str = ""  # the MLflow run holding the reports

    def drift_pages(self, tracking_uri: str) -> tuple[str, str]:
        """The two reports' light views (what the ZenML dashboard shows), linking to the whole ones in MLflow."""
        return drift_pages(self.result.data_drift, self.result.prediction_drift,
                           ("Image drift: the champion's training images -> the new images",
                            "Predicted classes: the champion -> the model compared"),
                           run_url(tracking_uri, self.run_id), "monitor")


def monitor_run(config: MonitorConfig, model_name: str, info: RunInfo,
                training_data: Callable[[Any], FerDataset]) -> MonitorOutcome:
    """Scores ``config.data`` with ``models:/model_name@config.model`` and compares it with the version's
    training images (``training_data``); logs an MLflow run ``monitor`` with the drift share, the scores
    when the images are labelled, and both Evidently reports."""
    connect(info.tracking_uri, info.experiment_name)
    version = registry.version_by_alias(info.tracking_uri, model_name, config.model)
    v = str(version.version)  # loaded from its local copy, never unpickled
    predict = version_predictor(model_name, v, info.tracking_uri)
    module = version_network(model_name, embedding_version(info.tracking_uri, model_name, v), info.tracking_uri)
    new = read_new_images(config.data, config.on_unreadable)
    result = monitor(training_data(version), new, predict, module, config.drift_share, config.max_images,
                     autocast_dtype(pick_device(), "auto"))
    summary = {"model": f"{model_name} v{version.version} ({config.model})", "images": len(new.images),
               "photos_without_face": len(new.photos_without_face), "unreadable_files_skipped": new.unreadable,
               **result.summary()}
    with one_off_run(info, "monitor", {"data": config.data},
                     info.tags(stage="monitor", model_version=str(version.version))) as run_id:
        scores = flat_metrics(result.evaluation, "monitor") if result.evaluation is not None else {}
        log_metrics(info.tracking_uri, run_id, {"drift_share": result.data_drift.drift_share, **scores})
        log_files(info.tracking_uri, run_id, {"data_drift.html": result.data_drift.html,
                           "prediction_drift.html": result.prediction_drift.html}, "monitor")
    return MonitorOutcome(result, summary, run_id)
