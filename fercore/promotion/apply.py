"""Promotion's apply: every registry write of a promotion, under the promotion lock the caller holds, through one
:class:`~fercore.promotion.journal.RegistryJournal`, so a failure at any write leaves the registry as it was:
registers the ensembles the plan needs, moves the aliases, tags the moved versions with the drift found, and
rewrites the registered model's description and the model cards of the versions that gained or lost an alias."""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path

from fercore.config import PromotionConfig
from fercore.data.dataset import FerDataset
from fercore.data.duplicates import split_digest
from fercore.errors import ModelFilesMissing
from fercore.evaluation.metrics import flat_metrics
from fercore.models.inference import ENSEMBLE_FILE
from fercore.promotion.aliases import apply_moves
from fercore.promotion.decision import AliasMove
from fercore.promotion.ensembles import EnsembleCandidate
from fercore.promotion.journal import RegistryJournal
from fercore.promotion.model_cards import alias_cards, ensemble_card, model_description
from fercore.promotion.plan import Plan
from fercore.promotion.records import PREDICT_MS
from fercore.serving.pyfunc import FerEnsembleModel
from fercore.tracking import registry
from fercore.tracking.runs import log_metrics, one_off_run
from fercore.tracking.store import RunInfo

logger = logging.getLogger(__name__)


def apply_plan(plan: Plan, name: str, dataset: FerDataset, info: RunInfo, drift_tags: dict[str, str],
               config: PromotionConfig) -> tuple[Plan, list[AliasMove]]:
    """Carries ``plan`` out (nothing when drift blocked it); returns the plan with its new ensembles' versions and
    the alias moves applied. Any failure undoes every write made, then propagates."""
    if plan.blocked:
        return plan, []
    uri = info.tracking_uri
    with RegistryJournal(uri, name) as journal:
        for ensemble in plan.ensembles:
            if ensemble.candidate.new:
                version = journal.registered(lambda e=ensemble: register_ensemble(name, e, dataset, info))
                plan = plan.resolve(ensemble.candidate.version, version)
            else:
                logger.info("%s is registered already as version %s", ensemble.description, ensemble.candidate.version)
        applied = apply_moves(uri, name, plan.decision.moves, journal)
        for move in applied:
            journal.tag_version(move.version, {f"drift.{k}": v for k, v in drift_tags.items()})
        holders = registry.aliases(uri, name)
        journal.describe_model(model_description(name, holders, plan.cands, config))
        touched = {m.version for m in applied} | {m.previous for m in applied if m.previous}
        for version, card in alias_cards(uri, name, holders, touched).items():
            journal.describe_version(version, card)
    return plan, applied


def registered_ensembles(tracking_uri: str, name: str) -> dict[tuple[str, str], str]:
    """``(routes|weights tag, value) -> version`` of the READY ensembles of ``name`` (the newest of equals)."""
    found: dict[tuple[str, str], str] = {}
    for v in registry.versions(tracking_uri, name, family="ensemble"):
        for key in ("routes", "weights"):
            if v.status == "READY" and v.tags.get(key):
                found.setdefault((key, v.tags[key]), str(v.version))
    return found


def register_ensemble(name: str, ensemble: EnsembleCandidate, dataset: FerDataset, info: RunInfo) -> str:
    """Registers ``ensemble`` (its spec as the version's ``ensemble.json``) in a run of its own; returns the version."""
    cand = ensemble.candidate
    gone = [m for m in ensemble.members if not registry.has_files(info.tracking_uri, name, m)]
    if gone:  # deleted since the library was read: an ensemble without them could not be served
        raise ModelFilesMissing(
            f"the files of {', '.join(f'v{m}' for m in gone)}, chosen as member(s) of the {cand.contender} ensemble, "
            "were deleted after the selection: the ensemble is not registered and no alias moved (every write of this "
            "promotion was undone). Run the promotion again (the library leaves out versions without files)")
    v, t = cand.evaluation.overall, cand.test_evaluation.overall
    tags = {"family": "ensemble", "contender": cand.contender, "zenml_run_id": info.zenml_run_id,
            "members": ",".join(ensemble.members), **ensemble.identity, "val_accuracy": f"{v['accuracy']:.4f}",
            "val_macro_f1": f"{v['macro_f1']:.4f}", "test_accuracy": f"{t['accuracy']:.4f}",
            "test_macro_f1": f"{t['macro_f1']:.4f}", "dataset_sha256": str(dataset.metadata.get("sha256")),
            "val_images": split_digest(dataset),
            **({PREDICT_MS: f"{cand.predict_ms:.1f}"} if cand.predict_ms is not None else {})}  # its members' sum
    card = ensemble_card(name, cand.contender, ensemble.members, ensemble.description, tags, dataset, cand.evaluation,
                         cand.test_evaluation)
    with one_off_run(info, f"register-{cand.contender}", {"spec": json.dumps(ensemble.spec)},
                     info.tags(family="ensemble")) as run_id, tempfile.TemporaryDirectory() as tmp:
        log_metrics(info.tracking_uri, run_id, {**flat_metrics(cand.evaluation, "validation"),
                                                **flat_metrics(cand.test_evaluation, "test")})
        path = Path(tmp) / ENSEMBLE_FILE
        path.write_text(json.dumps(ensemble.spec, indent=2))
        return registry.log_and_register(info.tracking_uri, run_id, FerEnsembleModel(), {"ensemble": str(path)}, name, tags, card,
                                         dataset.split("test").images[:4])
