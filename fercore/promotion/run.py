"""A promotion run: score the candidates, decide on validation, register the routed ensemble, move aliases, report.

ZenML-free: the ``promote_models`` step calls :func:`promote` with its run's name and id.
"""

import logging
from dataclasses import dataclass
from typing import Any

from mlflow import MlflowClient

from fercore.config import PromotionConfig
from fercore.constants import CLASS_NAMES
from fercore.data.dataset import FerDataset
from fercore.data.duplicates import image_hashes
from fercore.evaluation.predictions import Predictions
from fercore.evaluation.significance import Bootstrap
from fercore.models.inference import autocast_dtype, pick_device
from fercore.monitoring.drift import DriftResult, data_drift, embeddings, prediction_drift, sample_rows
from fercore.promotion.aliases import apply_moves, current_holders, promotion_lock
from fercore.promotion.candidates import holder_candidates, overlap_note
from fercore.promotion.decision import CHAMPION, Candidate, candidate, candidates_table, decide, table_markdown
from fercore.promotion.ensembles import AveragingFit, averaged_candidate, routed_candidate
from fercore.serving.registry import (
    RunInfo,
    connect,
    end_run,
    load_version,
    log_files,
    run_closed_on_error,
    start_run,
    underlying_module,
)

logger = logging.getLogger(__name__)


@dataclass
class PromotionResult:
    markdown: str
    data_drift: DriftResult
    prediction_drift: DriftResult
    summary: dict[str, Any]


def _drift(dataset: FerDataset, name: str, champion: Candidate, best_new: Candidate,
           config: PromotionConfig) -> tuple[DriftResult, DriftResult]:
    """Train vs test images (statistics and embeddings of the same sampled rows), and the predicted
    classes of the champion vs the best new model on test. Reports; the images' labels are not read."""
    train, test = dataset.split("train"), dataset.split("test")
    ri, ci = (sample_rows(len(train), config.drift_max_images, 0), sample_rows(len(test), config.drift_max_images, 1))
    ref, cur = train.images[ri], test.images[ci]
    single = champion if champion.architecture != "ensemble" else best_new
    module = underlying_module(load_version(name, single.version))
    ref_emb = cur_emb = None
    if module is not None:
        amp = autocast_dtype(pick_device(), "auto")
        ref_emb, cur_emb = embeddings(module, ref, amp), embeddings(module, cur, amp)
    data = data_drift(ref, cur, ref_emb, cur_emb, config.drift_share, config.drift_max_images)
    labels = lambda c: [CLASS_NAMES[i] for i in c.test_probs.argmax(axis=1)]  # noqa: E731
    return data, prediction_drift(labels(champion), labels(best_new))


def promote(name: str, dataset: FerDataset, new: list[tuple[dict[str, Any], Predictions]], config: PromotionConfig,
            info: RunInfo) -> PromotionResult:
    """Decides every alias of ``name`` on the validation split, moves them, and reports the test figures.

    Args:
        name: the registered model.
        dataset: the split dataset (validation decides, test is reported, train is the drift reference).
        new: this run's registrations (``version``, ``architecture``) with their val/test predictions.
        config: the ``promotion`` config section.
        info: where to log.
    """
    connect(info.tracking_uri, info.experiment_name)
    client = MlflowClient()
    val_hashes, split_train = image_hashes(dataset.split("val").images), image_hashes(dataset.split("train").images)
    own_overlap = overlap_note(split_train, val_hashes, split_train)
    new = [candidate(r["version"], r["architecture"], p, dataset, _registered_by(client, name, r["version"], info),
                     own_overlap, r.get("contender", ""), r.get("contest", "")) for r, p in new]
    # read, decide and move as one: concurrent promotions queue here
    with promotion_lock(client, info.tracking_uri, name):
        holders = current_holders(client, name)
        known = {c.version: c for c in new}
        held = sorted({v for v in holders.values() if v} - set(known), key=int)
        cands = new + holder_candidates(client, name, held, known, dataset)
        bootstrap = Bootstrap(dataset.split("val").labels, config.bootstrap_resamples) \
            if config.require_significance else None
        judge = lambda: decide(cands, holders, config.metric, config.min_margin, bootstrap=bootstrap)  # noqa: E731
        decision = judge()
        best_new = max(new, key=lambda c: c.score(config.metric))
        champion = {c.version: c for c in cands}.get(holders.get(CHAMPION) or "", best_new)
        data_report, pred_report = _drift(dataset, name, champion, best_new, config)
        blocked = config.on_drift == "block" and data_report.drifted
        if data_report.drifted:
            logger.warning("Drift detected between train and test images: %s", data_report.summary())
        calibration, routed = None, None
        # a blocked promotion leaves no trace in the registry; one model on every route is no ensemble
        if config.ensemble and not blocked and len({*decision.routes.values()}) > 1:
            routed = routed_candidate(client, name, decision.routes, cands, dataset, info)
            cands.append(routed)
        singles = [c for c in new if c.architecture != "ensemble"]
        if config.averaging and not blocked and len(singles) > 1:
            averaged, calibration = averaged_candidate(client, name, singles, dataset, info)
            cands.append(averaged)
        cands = list({c.version: c for c in cands}.values())  # an ensemble reused from the registry may be a holder
        decision = judge()
        for move in decision.moves:  # this run's routed ensemble moves only while its members hold their routes
            move.routes = decision.routes if routed is not None and move.version == routed.version else None
        applied = [] if blocked else apply_moves(client, name, decision.moves)
        for move in applied:
            for key, value in data_report.summary().items():
                client.set_model_version_tag(name, move.version, f"drift.{key}", str(value))
    table = candidates_table(cands)
    holders_now = current_holders(client, name)
    noise = (f"A lead counts only when its bootstrap 95 % interval ({config.bootstrap_resamples} resamples of the "
             "validation images) excludes zero (`significant`); a lead inside the noise moves no alias."
             if config.require_significance else "Any lead moves an alias (promotion.require_significance: false).")
    markdown = (f"## Promotion of {name}\n\nDecided on the validation split ({len(val_hashes)} images); the test "
                f"figures are reported only. {noise}\n\n{table_markdown(table)}\n\n"
                f"### Per emotion (validation F1)\n\n{decision.markdown()}\n\n"
                f"{calibration_markdown(calibration)}### Aliases now\n\n{aliases_markdown(holders_now, cands)}")
    _log_promotion_run(info, config, markdown, decision, table, data_report, pred_report)
    result = {
        "decided_on": "validation", "blocked_by_drift": blocked, "moves": [m.__dict__ for m in applied],
        "reasons": decision.reasons, "routes": decision.routes, "aliases": holders_now,
        "data_drift": data_report.summary(), "prediction_drift": pred_report.summary(),
        "scores": {c.label: {f"val_{config.metric}": round(c.score(config.metric), 4),
                             f"test_{config.metric}": round(c.test_evaluation.overall[config.metric], 4)}
                   for c in cands},
        **({"averaging": calibration.__dict__} if calibration else {}),  # ZenML metadata holds no None
    }
    return PromotionResult(markdown, data_report, pred_report, result)


def _registered_by(client: MlflowClient, name: str, version: str, info: RunInfo) -> bool:
    """Whether this pipeline run registered ``version``: a cached register step hands on an earlier run's."""
    if not info.zenml_run_id:
        return True
    return client.get_model_version(name, version).tags.get("zenml_run_id", info.zenml_run_id) == info.zenml_run_id


def calibration_markdown(fit: AveragingFit | None) -> str:
    """The averaging ensemble's members: weight, temperature, expected calibration error before and after."""
    if fit is None:
        return ""
    rows = [f"| v{v} | {w:.3f} | {fit.temperatures[v]:.2f} | {fit.ece_before[v]:.4f} | {fit.ece_after[v]:.4f} |"
            for v, w in fit.weights.items()]
    return ("### Probability-averaging ensemble (fitted on validation)\n\nIts validation figures above are out of "
            "fold: each half of the images predicted by a fit on the other half.\n\n| member | weight | temperature "
            "| ECE before | ECE after |\n|---|---|---|---|---|\n" + "\n".join(rows) + "\n\n")


def aliases_markdown(holders: dict[str, str | None], cands: list[Candidate]) -> str:
    """The aliases and the versions holding them, as a table."""
    labels = {c.version: c.label for c in cands}
    rows = [f"| {alias} | {labels.get(v, f'v{v}')} |" for alias, v in sorted(holders.items()) if v]
    return "\n".join(["| alias | version |", "|---|---|", *rows])


def _log_promotion_run(info, config, markdown, decision, table, data_report, pred_report) -> None:
    run_id = start_run(info.tracking_uri, info.experiment_name, "promote", config.model_dump(),
                       {"zenml_run_id": info.zenml_run_id, "zenml_run_name": info.run_name, "stage": "promotion"})
    with run_closed_on_error(run_id):
        log_files(run_id, {"promotion.md": markdown, "promotion.csv": decision.table.to_csv(index=False),
                           "candidates.csv": table.to_csv(index=False), "data_drift.html": data_report.html,
                           "prediction_drift.html": pred_report.html}, "promotion")
    end_run(run_id)
