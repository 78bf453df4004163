"""Promotion's report: the markdown tables, the summary recorded as metadata, and the promotion's MLflow run."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fercore.config import PromotionConfig
from fercore.constants import CLASS_NAMES, LIMITATIONS
from fercore.monitoring.drift import DriftResult
from fercore.promotion.decision import AliasMove, Candidate, candidates_table, table_markdown
from fercore.promotion.ensembles import AveragingFit
from fercore.promotion.plan import Plan
from fercore.promotion.register import describe_alias_holders
from fercore.tracking import registry
from fercore.tracking.runs import log_files, one_off_run
from fercore.tracking.store import RunInfo


@dataclass
class PromotionResult:
    markdown: str
    data_drift: DriftResult
    prediction_drift: DriftResult
    summary: dict[str, Any]


def report(name: str, plan: Plan, applied: list[AliasMove], holders_now: dict[str, str], drift: tuple[DriftResult, DriftResult],
           config: PromotionConfig, val_images: int, info: RunInfo) -> PromotionResult:
    """The promotion's tables and summary, logged to an MLflow run ``promote`` with the drift reports."""
    data_report, pred_report = drift
    fitted = next((e.fitted for e in plan.ensembles if e.fitted is not None), None)
    table = candidates_table(plan.cands)
    noise = (f"A lead counts only when its bootstrap 95 % interval ({config.bootstrap_resamples} resamples of the "
             "validation images) excludes zero (`significant`); a lead inside the noise moves no alias."
             if config.require_significance else "Any lead moves an alias (promotion.require_significance: false).")
    markdown = (f"## Promotion of {name}\n\nDecided on the validation split ({val_images} images); the test "
                f"figures are reported only. {noise}\n\n{table_markdown(table)}\n\n"
                f"### Per emotion (validation F1; every candidate's F1 and recall: promotion.csv)\n\n"
                f"{plan.decision.markdown()}\n\n"
                f"{calibration_markdown(fitted)}### Aliases now\n\n{aliases_markdown(holders_now, plan.cands)}")
    with one_off_run(info, "promote", config.model_dump(), info.tags(stage="promotion")) as promote_run_id:
        log_files(promote_run_id, {"promotion.md": markdown, "promotion.csv": plan.decision.table.to_csv(index=False),
                           "candidates.csv": table.to_csv(index=False), "data_drift.html": data_report.html,
                           "prediction_drift.html": pred_report.html}, "promotion")
    registry.describe_model(name, model_description(name, holders_now, plan.cands, config))
    describe_alias_holders(name, holders_now, {m.version for m in applied} | {m.previous for m in applied if m.previous})
    summary = {
        "decided_on": "validation", "blocked_by_drift": plan.blocked, "moves": [m.__dict__ for m in applied],
        "reasons": plan.decision.reasons, "routes": plan.decision.routes, "aliases": holders_now,
        "data_drift": data_report.summary(), "prediction_drift": pred_report.summary(),
        "scores": {c.label: {f"val_{config.metric}": round(c.score(config.metric), 4),
                             f"test_{config.metric}": round(c.test_evaluation.overall[config.metric], 4)}
                   for c in plan.cands},
        **({"averaging": fitted.__dict__} if fitted else {}),  # ZenML metadata holds no None
        "candidates": [_candidate_line(name, c) for c in plan.cands],
        "per_emotion": [{"emotion": r["emotion"], "winner": r["winner"], "lead": _fmt(r["margin_runner_up"]),
                         "interval": r["runner_up_95ci"], "significant": r["significant"], "decision": r["decision"]}
                        for r in plan.decision.table.to_dict("records")],
        "promotion_run": promote_run_id,
    }
    return PromotionResult(markdown, data_report, pred_report, summary)


def model_description(name: str, holders: dict[str, str], cands: list[Candidate], config: PromotionConfig) -> str:
    """The registered model's description: the alias scheme, who holds each alias now, how to load and call it."""
    labels = {c.version: c.label for c in cands}
    now = ", ".join(f"@{alias} {labels.get(v, f'v{v}')}" for alias, v in sorted(holders.items()) if v) or "none yet"
    significance = ("a lead inside its bootstrap 95 % interval moves no alias" if config.require_significance else
                    "any lead moves an alias")
    return f"""FER-2013 facial-emotion classifiers: 48x48 grayscale faces, 7 classes ({', '.join(CLASS_NAMES)}), trained,
judged and promoted by the fer-mlops pipelines.

**Aliases**, decided on the validation split ({significance}; the test split is reported only):
- `champion`: the best version overall by {config.metric} (an ensemble must beat the best single model beyond the
  noise); `previous-champion`: the one it replaced.
- `challenger`: the runner-up to the champion.
- `champion-<emotion>` (one per emotion): the best version for that emotion by its F1; the routed ensemble sends each
  emotion to this holder.

**Now** (after the latest promotion): {now}.

**Load and call a version** (MLflow, pandas and numpy; the project need not be installed):

```python
import mlflow, numpy as np
model = mlflow.pyfunc.load_model("models:/{name}@champion")
model.predict(np.zeros((2, 48, 48), np.uint8))  # per face: label and the 7 probabilities
```

Input: uint8 faces `(N, 48, 48)`, grayscale 0-255, cropped like FER-2013 (`run.py predict` finds and crops the faces of
ordinary photos).

**Limitations**: {LIMITATIONS}
"""


def _fmt(x: float) -> str:
    return "—" if x != x else f"{x:+.4f}"  # NaN: no runner-up


def _candidate_line(name: str, c: Candidate) -> dict[str, Any]:
    minutes = registry.get_version(name, c.version).tags.get("total_training_minutes", "")
    return {"label": c.label, "new": c.new, "minutes": minutes,
            "val_accuracy": round(float(c.evaluation.overall["accuracy"]), 4),
            "test_accuracy": round(float(c.test_evaluation.overall["accuracy"]), 4)}


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
