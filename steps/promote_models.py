"""Step: pick the champion per emotion and overall, register the routed ensemble, report drift."""

import json
import logging
import tempfile
from pathlib import Path
from typing import Annotated, Any

from mlflow import MlflowClient
from zenml import log_metadata, step
from zenml.types import HTMLString, MarkdownString

from fercore.config import PromotionConfig, RegistryConfig
from fercore.constants import CLASS_NAMES
from fercore.dataset import FerDataset
from fercore.drift import DriftResult, data_drift, embeddings, prediction_drift
from fercore.metrics import flat_metrics
from fercore.promote import CHAMPION, Candidate, apply_moves, current_holders, decide, promotion_lock
from fercore.pyfunc import FerEnsembleModel, route_probabilities
from fercore.registry import connect, end_run, log_and_register, log_files, run_closed_on_error, start_run
from fercore.scoring import load_version, score_probs, score_version, underlying_module
from steps.common import tracking_uri, zenml_run

logger = logging.getLogger(__name__)


def _candidates(client: MlflowClient, name: str, new: list[dict[str, Any]], holders: dict[str, str | None],
                test: FerDataset) -> list[Candidate]:
    fresh = {r["version"]: r["architecture"] for r in new}
    versions = dict(fresh)
    for version in {v for v in holders.values() if v}:
        if version not in versions:
            versions[version] = client.get_model_version(name, version).tags.get("architecture", "?")
    return [score_version(name, v, arch, test, v in fresh) for v, arch in versions.items()]


def _register_ensemble(name: str, routes: dict[str, str], cands: list[Candidate], test: FerDataset,
                       registry: RegistryConfig) -> Candidate:
    by_version = {c.version: c for c in cands}
    probs = route_probabilities({v: by_version[v].probs for v in set(routes.values())}, routes)
    run_zenml, run_name = zenml_run()
    run_id = start_run(tracking_uri(registry), registry.experiment_name, f"{run_name}-ensemble",
                       {"routes": json.dumps(routes)}, {"architecture": "ensemble", "zenml_run_id": run_zenml})
    cand = score_probs("?", "ensemble", probs, test, True)
    client = MlflowClient()
    with run_closed_on_error(run_id), tempfile.TemporaryDirectory() as tmp:
        for key, value in flat_metrics(cand.evaluation).items():
            client.log_metric(run_id, key, value)
        spec = Path(tmp) / "routes.json"
        spec.write_text(json.dumps({"model_name": name, "routes": routes}, indent=2))
        o = cand.evaluation.overall
        tags = {"architecture": "ensemble", "zenml_run_id": run_zenml, "members": ",".join(sorted(set(routes.values()))),
                "test_accuracy": f"{o['accuracy']:.4f}", "test_macro_f1": f"{o['macro_f1']:.4f}"}
        routing = ", ".join(f"{e}: v{v}" for e, v in routes.items())
        cand.version = log_and_register(run_id, {"routes": str(spec)}, name, tags,
                                        f"Routed ensemble ({routing}).\n\n{cand.evaluation.markdown()}",
                                        test.images[:4], python_model=FerEnsembleModel())
    end_run(run_id)
    return cand


def _drift(dataset: FerDataset, name: str, champion: Candidate, best_new: Candidate, config: PromotionConfig,
           holders: dict[str, str | None]) -> tuple[DriftResult, DriftResult]:
    train, test = dataset.split("train"), dataset.split("test")
    single = champion if champion.architecture != "ensemble" else best_new
    module = underlying_module(load_version(name, single.version))
    ref_emb = cur_emb = None
    if module is not None:
        ref_emb, cur_emb = embeddings(module, train.images), embeddings(module, test.images)
    data = data_drift(train.images, test.images, ref_emb, cur_emb, config.drift_share, config.drift_max_images)
    reference = champion if holders.get(CHAMPION) else best_new
    labels = lambda c: [CLASS_NAMES[i] for i in c.probs.argmax(axis=1)]  # noqa: E731
    return data, prediction_drift(labels(reference), labels(best_new))


@step(enable_cache=False)
def promote_models(
    dataset: FerDataset, registry: RegistryConfig, config: PromotionConfig,
    cnn: dict[str, Any] | None = None, vit: dict[str, Any] | None = None,
) -> tuple[
    Annotated[MarkdownString, "promotion_table"], Annotated[HTMLString, "data_drift_report"],
    Annotated[HTMLString, "prediction_drift_report"], Annotated[dict[str, Any], "promotion"],
]:
    """Scores this run's models and the current champions on this run's test split, moves aliases.

    Args:
        dataset: the split dataset (test split scores, train split is the drift reference).
        registry: MLflow settings.
        config: the ``promotion`` config section.
        cnn: the CNN's registration (from ``register_model``), if trained.
        vit: the ViT's registration, if trained.

    Returns:
        The per-emotion table, the drift reports (HTML) and the decision with its reasons.
    """
    uri = tracking_uri(registry)
    connect(uri, registry.experiment_name)
    client, name = MlflowClient(), registry.model_name
    new = [r for r in (cnn, vit) if r]
    test = dataset.split("test")
    with promotion_lock(client, uri, name):  # read, decide and move as one: concurrent promotions queue here
        holders = current_holders(client, name)
        cands = _candidates(client, name, new, holders, test)
        decision = decide(cands, holders, config.metric, config.min_margin)
        best_new = max((c for c in cands if c.new and c.architecture != "ensemble"),
                       key=lambda c: c.score(config.metric))
        champion = {c.version: c for c in cands}.get(holders.get(CHAMPION) or "", best_new)
        data_report, pred_report = _drift(dataset, name, champion, best_new, config, holders)
        blocked = config.on_drift == "block" and data_report.drifted
        if data_report.drifted:
            logger.warning("Drift detected between train and test images: %s", data_report.summary())
        if config.ensemble and not blocked:  # a blocked promotion leaves no trace in the registry
            cands.append(_register_ensemble(name, decision.routes, cands, test, registry))
            decision = decide(cands, holders, config.metric, config.min_margin)
        ensemble_routes = {c.version: decision.routes for c in cands if c.architecture == "ensemble" and c.new}
        for move in decision.moves:
            move.routes = ensemble_routes.get(move.version)
        applied = [] if blocked else apply_moves(client, name, decision.moves)
        for move in applied:
            for key, value in data_report.summary().items():
                client.set_model_version_tag(name, move.version, f"drift.{key}", str(value))
    run_zenml, run_name = zenml_run()
    run_id = start_run(tracking_uri(registry), registry.experiment_name, f"{run_name}-promotion", config.model_dump(),
                       {"zenml_run_id": run_zenml, "stage": "promotion"})
    with run_closed_on_error(run_id):
        log_files(run_id, {"promotion.md": decision.markdown(), "promotion.csv": decision.table.to_csv(index=False),
                           "data_drift.html": data_report.html, "prediction_drift.html": pred_report.html},
                  "promotion")
    end_run(run_id)
    result = {
        "blocked_by_drift": blocked, "moves": [m.__dict__ for m in applied], "reasons": decision.reasons,
        "routes": decision.routes, "aliases": current_holders(client, name), "data_drift": data_report.summary(),
        "prediction_drift": pred_report.summary(),
        "scores": {c.label: {config.metric: round(c.score(config.metric), 4)} for c in cands},
    }
    log_metadata(metadata=result, infer_artifact=True, artifact_name="promotion")
    table = f"## Promotion of {name}\n\n{decision.markdown()}\n\nAliases now: {result['aliases']}"
    return MarkdownString(table), HTMLString(data_report.html), HTMLString(pred_report.html), result
