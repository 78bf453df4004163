"""Scoring a trained model once on the validation and test splits, and its report in its MLflow run."""

from __future__ import annotations

import logging
from typing import Any

from torch import nn

from fercore.config import ExplainConfig
from fercore.data.dataset import FerDataset
from fercore.evaluation.metrics import Evaluation, flat_metrics
from fercore.evaluation.plots import evaluation_figures
from fercore.evaluation.predictions import Predictions, model_predictions
from fercore.explain.figures import gallery_png, mean_maps_png
from fercore.explain.summary import Explanation, explain_model
from fercore.models.inference import autocast_dtype, pick_device, prepare_for_inference
from fercore.tracking.runs import TrackedRun, log_files, log_metrics, open_child_run, resumed
from fercore.tracking.store import RunInfo

logger = logging.getLogger(__name__)


def evaluate_and_report(model: nn.Module, dataset: FerDataset, history: list[dict[str, Any]], run: TrackedRun,
                        info: RunInfo, tta: str = "hflip", mixed_precision: str = "auto",
                        explain: ExplainConfig | None = None) -> tuple[Evaluation, Evaluation, Predictions, Explanation]:
    """Scores ``model`` on val and test in one pass and logs the test report (metrics, per-class table,
    confusion matrix, loss curves from ``history``, with ``explain.enabled`` the class activation maps) to a run
    ``evaluate`` nested under the contender's MLflow ``run`` (its duration: the evaluation's), the metrics to the
    contender's run too (the runs table compares them); an error closes both FAILED.

    Returns:
        The test evaluation, the validation evaluation (what promotion decides on), the probabilities behind
        both, and the maps (empty when ``explain.enabled`` is false).
    """
    name = run.contender or "the model"
    uri = info.tracking_uri
    with resumed(uri, run) as parent, resumed(uri, open_child_run(run, info, "evaluate"), finish=True) as run_id:
        device = pick_device()
        logger.info("Evaluating %s on %d validation and %d test images (test-time views: %s)", name,
                    len(dataset.split("val")), len(dataset.split("test")), tta)
        preds = model_predictions(prepare_for_inference(model, device), dataset, tta,
                                  autocast_dtype(device, mixed_precision))
        val_ev, ev = preds.evaluations(dataset, run.contender)
        logger.info("%s: validation accuracy %.4f, macro-F1 %.4f; test accuracy %.4f, macro-F1 %.4f", name,
                    val_ev.overall["accuracy"], val_ev.overall["macro_f1"], ev.overall["accuracy"], ev.overall["macro_f1"])
        ev.history = history
        # "validation_*": the per-epoch curves of training are loss/val and accuracy/val
        for each in (run_id, parent):
            log_metrics(uri, each, {**flat_metrics(ev, "test"), **flat_metrics(val_ev, "validation")})
        files: dict[str, bytes | str] = {
            **evaluation_figures(ev), "per_class.csv": ev.per_class.to_csv(), "per_class.md": ev.markdown(),
            "evaluation.json": ev.to_json(), "validation_per_class.md": val_ev.markdown(),
        }
        log_files(uri, run_id, files)
        explanation = Explanation(name)
        if explain is not None and explain.enabled:
            explanation = explain_model(model, name, dataset, preds, val_ev.per_class["f1"].to_dict(),
                                        explain.faces_per_emotion, explain.mean_map_faces, tta=tta)
            log_files(uri, run_id, {"mean_maps.png": mean_maps_png(explanation), "gallery.png": gallery_png(explanation)},
                      "explain")
            log_metrics(uri, run_id, {"explain_seconds": explanation.seconds})
    return ev, val_ev, preds, explanation
