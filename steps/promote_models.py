"""Step: pick the champion per emotion and overall on validation, register the routed ensemble, report drift."""

import logging
from typing import Annotated, Any

from zenml import get_step_context, log_metadata, step
from zenml.types import HTMLString, MarkdownString

from fercore.config import PromotionConfig, RegistryConfig
from fercore.data.dataset import FerDataset
from fercore.evaluation.predictions import Predictions
from fercore.explain.figures import PngFigure, contest_figure
from fercore.explain.summary import Explanation
from fercore.promotion.console import run_metadata
from fercore.promotion.promote import promote
from fercore.tracking.runs import log_files
from materializers import PngFigureMaterializer
from steps.common import run_info

logger = logging.getLogger(__name__)


@step(enable_cache=False,  # reads the registry's current aliases: never cached
      output_materializers={"contest_maps": PngFigureMaterializer})
def promote_models(
    dataset: FerDataset, registry: RegistryConfig, config: PromotionConfig, registrations: list[dict[str, Any]],
    predictions: list[Predictions], explanations: list[Explanation],
) -> tuple[
    Annotated[MarkdownString, "promotion_table"], Annotated[HTMLString, "data_drift_report"],
    Annotated[HTMLString, "prediction_drift_report"], Annotated[dict[str, Any], "promotion"],
    Annotated[PngFigure, "contest_maps"], Annotated[MarkdownString, "drift_summary"],
]:
    """Decides every alias on the validation split, moves them, and reports the test figures.

    This run's contenders bring their predictions from their ``evaluate_<name>`` steps (ZenML passes
    the lists in, one entry per contender); alias holders of earlier runs are scored once on this
    run's val and test images.

    Args:
        dataset: the split dataset (validation decides, test is reported, train is the drift reference).
        registry: MLflow settings.
        config: the ``promotion`` config section.
        registrations: each contender's registration (from ``register_<name>``).
        predictions: each contender's val/test probabilities, in the same order.
        explanations: each contender's class activation maps, in the same order.

    Returns:
        The tables, the drift reports (a light HTML view each, linking to Evidently's whole report in the
        promotion's MLflow run), the decision with its reasons, and the emotion x contender
        figure of mean maps (without a PNG when no contender drew maps), and the drift reports' light view.
    """
    out = promote(registry.model_name, dataset, list(zip(registrations, predictions)), config, run_info(registry))
    logger.info("The decision (validation decides, test is reported):\n%s", out.markdown)  # the step's log holds it
    log_metadata(metadata=out.summary, infer_artifact=True, artifact_name="promotion")
    log_metadata(metadata=run_metadata(out.summary), run_id_name_or_prefix=get_step_context().pipeline_run.id)
    figure = contest_figure(registrations, explanations, out.summary["per_emotion"])
    if figure.png:
        log_files(run_info(registry).tracking_uri, out.summary["promotion_run"], {"contest_maps.png": figure.png},
                  "promotion")
    data_page, prediction_page = out.drift_pages(run_info(registry).tracking_uri)  # light: the whole ones in MLflow
    return (MarkdownString(out.markdown), HTMLString(data_page), HTMLString(prediction_page),
            out.summary, figure, MarkdownString(out.data_drift.markdown("Image drift: train -> test")
                                                + "\n" + out.prediction_drift.markdown("Predicted classes: the champion "
                                                                                       "-> the model compared")))
