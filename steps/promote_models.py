"""Step: pick the champion per emotion and overall on validation, register the routed ensemble, report drift."""

from typing import Annotated, Any

from zenml import log_metadata, step
from zenml.types import HTMLString, MarkdownString

from fercore.config import PromotionConfig, RegistryConfig
from fercore.dataset import FerDataset
from fercore.promotion import RunInfo, promote
from fercore.scoring import Predictions
from steps.common import tracking_uri, zenml_run


@step(enable_cache=False)  # reads the registry's current aliases: never cached
def promote_models(
    dataset: FerDataset, registry: RegistryConfig, config: PromotionConfig,
    cnn: dict[str, Any] | None = None, vit: dict[str, Any] | None = None,
    cnn_predictions: Predictions | None = None, vit_predictions: Predictions | None = None,
) -> tuple[
    Annotated[MarkdownString, "promotion_table"], Annotated[HTMLString, "data_drift_report"],
    Annotated[HTMLString, "prediction_drift_report"], Annotated[dict[str, Any], "promotion"],
]:
    """Decides every alias on the validation split, moves them, and reports the test figures.

    This run's models bring their predictions from ``evaluate_model``; alias holders of earlier
    runs are scored once on this run's val and test images.

    Args:
        dataset: the split dataset (validation decides, test is reported, train is the drift reference).
        registry: MLflow settings.
        config: the ``promotion`` config section.
        cnn: the CNN's registration (from ``register_model``), if trained.
        vit: the ViT's registration, if trained.
        cnn_predictions: the CNN's val/test probabilities (from ``evaluate_model``).
        vit_predictions: the ViT's.

    Returns:
        The tables, the drift reports (HTML) and the decision with its reasons.
    """
    run_id, run_name = zenml_run()
    info = RunInfo(tracking_uri(registry), registry.experiment_name, run_name, run_id)
    new = [(r, p) for r, p in ((cnn, cnn_predictions), (vit, vit_predictions)) if r]
    out = promote(registry.model_name, dataset, new, config, info)
    log_metadata(metadata=out.summary, infer_artifact=True, artifact_name="promotion")
    return (MarkdownString(out.markdown), HTMLString(out.data_drift.html), HTMLString(out.prediction_drift.html),
            out.summary)
