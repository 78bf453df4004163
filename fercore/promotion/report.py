"""Promotion's report: the markdown tables, the files of the promotion's MLflow run and the summary recorded as
metadata. It only reads: every registry write is promotion's apply (:mod:`fercore.promotion.apply`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fercore.config import PromotionConfig
from fercore.monitoring.drift import DriftResult
from fercore.monitoring.drift_view import drift_pages
from fercore.promotion.decision import AliasMove, Candidate, candidates_table, table_markdown
from fercore.promotion.ensembles import AveragingFit
from fercore.promotion.plan import Plan
from fercore.tracking import registry
from fercore.tracking.store import run_url


@dataclass
class PromotionResult:
    markdown: str
    data_drift: DriftResult
    prediction_drift: DriftResult
    summary: dict[str, Any]
    files: dict[str, str] = field(default_factory=dict)  # what the promotion's MLflow run holds under promotion/

    def drift_pages(self, tracking_uri: str) -> tuple[str, str]:
        """The two reports' light views (what the ZenML dashboard shows), linking to the whole ones in MLflow."""
        return drift_pages(self.data_drift, self.prediction_drift,
                           ("Image drift: train -> test", "Predicted classes on the test images: the champion -> the "
                            "model compared"), run_url(tracking_uri, self.summary["promotion_run"]), "promotion")


def report(tracking_uri: str, name: str, plan: Plan, applied: list[AliasMove], holders_now: dict[str, str],
           drift: tuple[DriftResult, DriftResult], config: PromotionConfig, val_images: int, promote_run_id: str,
           left_out: int = 0, splits: tuple[str, str] = ("carved out of Training", "PublicTest and PrivateTest")
           ) -> PromotionResult:
    """The promotion's tables, the files of its MLflow run ``promote_run_id`` (with the drift reports) and its
    summary; ``splits`` says which images validation and test hold (:func:`fercore.data.split.validation_label`)."""
    data_report, pred_report = drift
    fitted = next((e.fitted for e in plan.ensembles if e.fitted is not None), None)
    table = candidates_table(plan.cands)
    noise = (f"A lead counts only when its bootstrap 95 % interval ({config.bootstrap_resamples} resamples of the "
             "validation images) excludes zero (`significant`); a lead inside the noise moves no alias."
             if config.require_significance else "Any lead moves an alias (promotion.require_significance: false).")
    unseen = (f" (of {val_images + left_out}: {left_out} were in a candidate's training data, FER-2013's own duplicates "
              "or a holder trained on another split, and were left out)" if left_out else "")
    markdown = (f"## Promotion of {name}\n\nDecided on the validation split, {splits[0]} ({val_images} images{unseen}); "
                f"the test figures, {splits[1]}, are reported only. {noise}\n\n{table_markdown(table)}\n\n"
                f"### Per emotion (validation F1; every candidate's F1 and recall: promotion.csv)\n\n"
                f"{plan.decision.markdown()}\n\n"
                f"{calibration_markdown(fitted)}### Why\n\n{reasons_markdown(plan.decision.reasons)}\n\n"
                f"### Aliases now\n\n{aliases_markdown(holders_now, plan.cands)}")
    files = {"promotion.md": markdown, "promotion.csv": plan.decision.table.to_csv(index=False),
             "candidates.csv": table.to_csv(index=False), "data_drift.html": data_report.html,
             "prediction_drift.html": pred_report.html}
    summary = {
        "decided_on": "validation", "validation_split": splits[0], "test_split": splits[1],
        "validation_images": val_images, "left_out_seen_in_training": left_out,
        "blocked_by_drift": plan.blocked, "moves": [m.__dict__ for m in applied],
        "reasons": plan.decision.reasons, "routes": plan.decision.routes, "aliases": holders_now,
        "data_drift": data_report.summary(), "prediction_drift": pred_report.summary(),
        "scores": {c.label: {f"val_{config.metric}": round(c.score(config.metric), 4),
                             f"test_{config.metric}": round(c.test_evaluation.overall[config.metric], 4)}
                   for c in plan.cands},
        **({"averaging": fitted.__dict__} if fitted else {}),  # ZenML metadata holds no None
        "candidates": [_candidate_line(tracking_uri, name, c) for c in plan.cands],
        "per_emotion": [{"emotion": r["emotion"], "winner": r["winner"], "lead": _fmt(r["margin_runner_up"]),
                         "interval": r["runner_up_95ci"], "significant": r["significant"], "decision": r["decision"]}
                        for r in plan.decision.table.to_dict("records")],
        "promotion_run": promote_run_id,
    }
    return PromotionResult(markdown, data_report, pred_report, summary, files)


def reasons_markdown(reasons: dict[str, str]) -> str:
    """The overall aliases' reasons, and why an ensemble is or is not the best model (per-emotion reasons are in
    the table above)."""
    keys = [k for k in ("champion", "challenger", "ensemble") if k in reasons]
    labels = {"ensemble": "ensemble or single model"}
    return "\n".join(f"- `{labels.get(k, '@' + k)}`: {reasons[k]}" for k in keys) or "- no overall alias was decided"


def _fmt(x: float) -> str:
    return "—" if x != x else f"{x:+.4f}"  # NaN: no runner-up


def _candidate_line(tracking_uri: str, name: str, c: Candidate) -> dict[str, Any]:
    minutes = registry.get_version(tracking_uri, name, c.version).tags.get("total_training_minutes", "")
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
