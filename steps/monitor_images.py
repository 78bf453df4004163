"""Step: score new images with the champion and report their drift from its training data."""

from typing import Annotated, Any

import mlflow
from mlflow import MlflowClient
from zenml import log_metadata, step
from zenml.client import Client
from zenml.types import HTMLString

from fercore.config import MonitorConfig, RegistryConfig
from fercore.dataset import FerDataset
from fercore.errors import RegistryError
from fercore.inference import autocast_dtype, pick_device
from fercore.metrics import flat_metrics
from fercore.monitor import embedding_module, monitor, read_new_images
from fercore.registry import connect, end_run, log_files, log_metrics, run_closed_on_error, start_run
from fercore.scoring import pyfunc_predict
from steps.common import tracking_uri, zenml_run


def champion_training_data(version) -> FerDataset:
    """The split dataset of the ZenML run that trained (or, for an ensemble, promoted) ``version``."""
    run_id = version.tags.get("zenml_run_id", "")
    try:
        return Client().get_pipeline_run(run_id).steps["split_data"].outputs["fer2013"][0].load()
    except (KeyError, ValueError) as exc:
        raise RegistryError(f"the training data of {version.name} v{version.version} (ZenML run {run_id or '?'}) is "
                            f"not in this ZenML store ({exc}); run monitor where it was trained") from None


@step(enable_cache=False)  # new images and the current champion: never cached
def monitor_images(monitor_config: MonitorConfig, registry: RegistryConfig) -> tuple[
    Annotated[HTMLString, "data_drift_report"], Annotated[HTMLString, "prediction_drift_report"],
    Annotated[dict[str, Any], "monitoring"],
]:
    """Drift of new images (statistics, embeddings, predictions) from the champion's training data.

    Args:
        monitor_config: the ``monitor`` config section (``data``: the new images).
        registry: MLflow settings.

    Returns:
        The two Evidently reports (HTML) and the summary (drift share and flags, per-class metrics
        when labelled), also logged to an MLflow run.
    """
    uri = tracking_uri(registry)
    connect(uri, registry.experiment_name)
    name, alias = registry.model_name, monitor_config.model
    try:
        version = MlflowClient().get_model_version_by_alias(name, alias)
    except mlflow.exceptions.MlflowException as exc:
        raise RegistryError(f"models:/{name}@{alias} does not exist in {uri}: train one first "
                            f"({exc.message})") from None
    model = mlflow.pyfunc.load_model(f"models:/{name}/{version.version}")
    new = read_new_images(monitor_config.data, monitor_config.on_unreadable)
    result = monitor(champion_training_data(version), new, pyfunc_predict(model), embedding_module(model),
                     monitor_config.drift_share, monitor_config.max_images, autocast_dtype(pick_device(), "auto"))
    summary = {"model": f"{name} v{version.version} ({alias})", "images": len(new.images),
               "photos_without_face": len(new.photos_without_face), "unreadable_files_skipped": new.unreadable,
               **result.summary()}
    run_zenml, run_name = zenml_run()
    run_id = start_run(uri, registry.experiment_name, "monitor", {"data": monitor_config.data},
                       {"zenml_run_id": run_zenml, "zenml_run_name": run_name, "stage": "monitor",
                        "model_version": str(version.version)})
    with run_closed_on_error(run_id):
        scores = flat_metrics(result.evaluation, "monitor") if result.evaluation is not None else {}
        log_metrics(run_id, {"drift_share": result.data_drift.drift_share, **scores})
        log_files(run_id, {"data_drift.html": result.data_drift.html,
                           "prediction_drift.html": result.prediction_drift.html}, "monitor")
    end_run(run_id)
    log_metadata(metadata=summary, infer_artifact=True, artifact_name="monitoring")
    return HTMLString(result.data_drift.html), HTMLString(result.prediction_drift.html), summary
