"""Step: score new images with the champion and report their drift from its training data."""

from typing import Annotated, Any

from zenml import log_metadata, step
from zenml.client import Client
from zenml.types import HTMLString

from fercore.config import MonitorConfig, RegistryConfig
from fercore.data.dataset import FerDataset
from fercore.errors import RegistryError
from fercore.monitoring.monitor_run import monitor_run
from steps.common import run_info


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
        The two drift reports (a light HTML view each, linking to Evidently's whole report in the MLflow run)
        and the summary (drift share and flags, per-class metrics
        when labelled), also logged to an MLflow run.
    """
    out = monitor_run(monitor_config, registry.model_name, run_info(registry), champion_training_data)
    log_metadata(metadata=out.summary, infer_artifact=True, artifact_name="monitoring")
    data_page, prediction_page = out.drift_pages(run_info(registry).tracking_uri)  # light: the whole ones in MLflow
    return HTMLString(data_page), HTMLString(prediction_page), out.summary
