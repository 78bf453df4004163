"""What a ``train_all`` shows where users look first, from promotion's summary (no store is read): the console's
last lines, and the pipeline run's metadata in ZenML."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any


def as_typed(executable: str | Path, cwd: str | Path) -> str:
    """``executable`` as a user types it from ``cwd``: relative when inside it (``.venv/bin/python``), else whole;
    the venv's interpreter is not on the PATH of a fresh shell, so ``python`` alone would be another one."""
    path, here = Path(executable), Path(cwd).resolve()
    shown = path.relative_to(here) if path.is_relative_to(here) else path
    return shlex.quote(str(shown))


def console_summary(summary: dict[str, Any], model_name: str, mlflow_url: str, zenml_run: str,
                    python: str = ".venv/bin/python") -> str:
    """The last lines of a ``train_all`` on the console: the contenders, each emotion's winner, the aliases that
    moved and why, and where to look next (``python``: this interpreter as typed from the project folder, so the
    commands work as printed in a fresh shell: :func:`as_typed`)."""
    heading = (f"Promotion of {model_name}: decided on validation{_which(summary.get('validation_split'))}, "
               f"test{_which(summary.get('test_split'))} reported")
    lines = ["", heading, *_left_out(summary), "",
             f"  {'candidate':<24} {'minutes':>8} {'val acc':>8} {'test acc':>9}"]
    for c in summary["candidates"]:
        minutes = f"{float(c['minutes']):.1f}" if c["minutes"] else "—"
        lines.append(f"  {c['label'] + ('' if c['new'] else ' (holder)'):<24} {minutes:>8} "
                     f"{c['val_accuracy']:>8.2%} {c['test_accuracy']:>9.2%}")
    lines += ["", f"  {'emotion':<9} {'winner':<18} {'lead on runner-up [95 % interval]':<36} {'significant':<12} decision"]
    for e in summary["per_emotion"]:
        lead = "—" if e["lead"] == "—" else f"{e['lead']} {e['interval']}"
        lines.append(f"  {e['emotion']:<9} {e['winner']:<18} {lead:<36} {e['significant']:<12} {e['decision']}")
    moves = summary["moves"]
    lines += ["", f"Aliases moved: {len(moves)}" + ("" if moves else " (every holder kept its alias)")]
    lines += [(f"  @{m['alias']}: v{m['previous']} -> v{m['version']}" if m["previous"] else
               f"  @{m['alias']}: -> v{m['version']} (no holder yet)") + f"   {m['reason']}" for m in moves]
    if summary.get("reasons", {}).get("champion"):  # said even when it kept its holder
        lines += ["", f"Champion: {summary['reasons']['champion']}"]
    champion = summary["aliases"].get("champion")
    lines += ["", "Where to look:",
              f"  MLflow   make mlflow-ui, then {mlflow_url} (the promotion run: tables, drift reports)",
              f"  ZenML    {str(Path(python).parent / 'zenml')} login --local, then the run {zenml_run}",
              f"  predict  {python} run.py predict PHOTO_OR_FOLDER   (models:/{model_name}@champion = v{champion})"]
    return "\n".join(lines)


def _which(split: str | None) -> str:
    return f" ({split})" if split else ""


def _left_out(summary: dict[str, Any]) -> list[str]:
    left_out = summary.get("left_out_seen_in_training", 0)
    if not left_out:
        return []
    return [f"  on {summary['validation_images']} validation images: {left_out} others were in a candidate's training "
            "data (FER-2013's own duplicates, or a holder trained on another split) and were left out"]


def run_metadata(summary: dict[str, Any]) -> dict[str, Any]:
    """The pipeline run's metadata (the ZenML dashboard's run page): the champion, each alias's holder, and each
    candidate's validation and test accuracy."""
    labels = {c["label"].split(" ")[0]: c["label"] for c in summary["candidates"]}
    return {"champion": labels.get(f"v{summary['aliases'].get('champion')}", "none"),
            "aliases": {a: labels.get(f"v{v}", f"v{v}") for a, v in sorted(summary["aliases"].items())},
            "accuracy": {c["label"]: {"validation": c["val_accuracy"], "test": c["test_accuracy"]}
                         for c in summary["candidates"]},
            "aliases_moved": len(summary["moves"]),
            "why": {k: v for k, v in summary.get("reasons", {}).items() if k in ("champion", "challenger", "ensemble")}}
