"""Promotion's apply: registers the ensembles the plan needs, moves the aliases (rolled back on failure) and
tags the moved versions with the drift found. The caller holds the promotion lock."""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path

from fercore.data.dataset import FerDataset
from fercore.evaluation.metrics import flat_metrics
from fercore.models.inference import ENSEMBLE_FILE
from fercore.promotion.aliases import apply_moves
from fercore.promotion.decision import AliasMove
from fercore.promotion.ensembles import EnsembleCandidate
from fercore.promotion.plan import Plan
from fercore.serving.pyfunc import FerEnsembleModel
from fercore.tracking import registry
from fercore.tracking.runs import log_metrics, one_off_run
from fercore.tracking.store import RunInfo

logger = logging.getLogger(__name__)


def apply_plan(plan: Plan, name: str, dataset: FerDataset, info: RunInfo,
               drift_tags: dict[str, str]) -> list[AliasMove]:
    """Carries ``plan`` out (nothing when drift blocked it); returns the alias moves applied."""
    if plan.blocked:
        return []
    for ensemble in plan.ensembles:
        if ensemble.candidate.new:
            placeholder = ensemble.candidate.version
            plan.resolve(placeholder, register_ensemble(name, ensemble, dataset, info))
        else:
            logger.info("%s is registered already as version %s", ensemble.description, ensemble.candidate.version)
    applied = apply_moves(name, plan.decision.moves)
    for move in applied:
        registry.tag_version(name, move.version, {f"drift.{k}": v for k, v in drift_tags.items()})
    return applied


def registered_ensembles(name: str) -> dict[tuple[str, str], str]:
    """``(routes|weights tag, value) -> version`` of the READY ensembles of ``name`` (the newest of equals)."""
    found: dict[tuple[str, str], str] = {}
    for v in registry.versions(name, family="ensemble"):
        for key in ("routes", "weights"):
            if v.status == "READY" and v.tags.get(key):
                found.setdefault((key, v.tags[key]), str(v.version))
    return found


def register_ensemble(name: str, ensemble: EnsembleCandidate, dataset: FerDataset, info: RunInfo) -> str:
    """Registers ``ensemble`` (its spec as the version's ``ensemble.json``) in a run of its own; returns the version."""
    cand = ensemble.candidate
    v, t = cand.evaluation.overall, cand.test_evaluation.overall
    tags = {"family": "ensemble", "contender": cand.contender, "zenml_run_id": info.zenml_run_id,
            "members": ",".join(ensemble.members), **ensemble.identity, "val_accuracy": f"{v['accuracy']:.4f}",
            "val_macro_f1": f"{v['macro_f1']:.4f}", "test_accuracy": f"{t['accuracy']:.4f}",
            "test_macro_f1": f"{t['macro_f1']:.4f}"}
    with one_off_run(info, f"register-{cand.contender}", {"spec": json.dumps(ensemble.spec)},
                     info.tags(family="ensemble")) as run_id, tempfile.TemporaryDirectory() as tmp:
        log_metrics(run_id, {**flat_metrics(cand.evaluation, "validation"), **flat_metrics(cand.test_evaluation, "test")})
        path = Path(tmp) / ENSEMBLE_FILE
        path.write_text(json.dumps(ensemble.spec, indent=2))
        return registry.log_and_register(run_id, FerEnsembleModel(), {"ensemble": str(path)}, name, tags,
                                         f"{ensemble.description}\n\n{cand.test_evaluation.markdown()}",
                                         dataset.split("test").images[:4])
