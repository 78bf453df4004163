"""The contest's rungs: where the training minutes go (successive halving, as in Hyperband and ASHA).

Every enabled contender trains for the first rung's share of its ``max_train_minutes``. Then the
contest is judged on the validation images with the paired bootstrap that promotion uses: for each
emotion, and for the overall metric, the leader is the contender with the best score, and a contender
can still win that target when it leads it or trails by less than the noise (the 95 % interval of the
leader's lead holds zero). A contender that can win no target stops; its unused minutes go to the
contenders that go on, in proportion to their own remaining budgets, so the total stays within the
config's budget. Each rung restarts the learning-rate schedule from the last rung's kept weights (a
warm restart, measured against pausing one schedule in docs/BENCHMARKS.md).

The state travels between the pipeline's steps as a JSON-able dict (:func:`initial_state`, :func:`judge`).
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np

from fercore.config import Config, TrainingConfig
from fercore.constants import CLASS_NAMES
from fercore.evaluation.significance import Bootstrap, class_f1, metric_score
from fercore.training.progress import TrainResult

logger = logging.getLogger(__name__)
OVERALL = "overall"


def initial_state(config: Config) -> dict[str, Any]:
    """The contest before its first rung: every enabled contender active, at its own budget.

    The budget that moves between contenders is counted in minutes when every contender has
    ``max_train_minutes``; otherwise each contender's whole budget counts as one (epochs on a GPU are not
    comparable across models), so a stopped contender's share is spread in proportion to the others' shares.
    """
    contenders = config.enabled_contenders()
    timed = all(c.max_train_minutes for c in contenders.values())
    return {"rung": 0, "rungs": list(config.contest.rungs),
            "contenders": {name: {"active": True, "scale": 1.0, "reason": "", "stopped_after_rung": None,
                                  "budget": c.max_train_minutes if timed else 1.0}
                           for name, c in contenders.items()}}


def rung_share(state: dict[str, Any]) -> float:
    """The share of the budget that the current rung adds."""
    rungs, k = state["rungs"], state["rung"]
    return rungs[k] - (rungs[k - 1] if k else 0.0)


def rung_config(cfg: TrainingConfig, state: dict[str, Any], name: str) -> TrainingConfig:
    """``cfg`` for contender ``name``'s current rung: its minutes and epoch cap are the rung's share of the
    contender's budget, times the minutes it received from stopped contenders (``scale``)."""
    entry, share = state["contenders"][name], rung_share(state)
    scale = entry["scale"]
    update: dict[str, Any] = {"epochs": max(1, math.ceil(cfg.epochs * share * scale))}
    if cfg.max_train_minutes:
        update["max_train_minutes"] = cfg.max_train_minutes * share * scale
    return cfg.model_copy(update=update)


def is_active(state: dict[str, Any] | None, name: str) -> bool:
    return state is None or state["contenders"][name]["active"]


def judge(state: dict[str, Any], val_probs: dict[str, np.ndarray], labels: np.ndarray, metric: str = "macro_f1",
          resamples: int = 1000) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Decides after the current rung which contenders go on, and moves the stopped ones' minutes.

    Args:
        state: the contest's state after the rung (:func:`initial_state`, or an earlier judgement's).
        val_probs: each active contender's validation probabilities after the rung.
        labels: the validation labels.
        metric: the overall metric (``promotion.metric``), judged beside each emotion's F1.
        resamples: bootstrap resamples.

    Returns:
        The state for the next rung, and one row per judged contender (what it can still win, why it stops).
    """
    state = {**state, "contenders": {n: dict(e) for n, e in state["contenders"].items()}}
    active = [n for n, e in state["contenders"].items() if e["active"]]
    missing = [n for n in active if n not in val_probs]
    if missing:
        raise ValueError(f"no validation probabilities of active contenders {missing}")
    bootstrap = Bootstrap(labels, resamples)
    preds = {n: np.asarray(val_probs[n]).argmax(1) for n in active}
    can_win, behind = _who_can_win(bootstrap, preds, metric)
    rung = state["rung"] + 1
    stopped = [n for n in active if not can_win[n]] if len(active) > 1 else []
    _move_minutes(state, stopped, rung)
    rows = []
    for n in active:
        entry = state["contenders"][n]
        if n in stopped:
            entry.update(active=False, stopped_after_rung=rung,
                         reason=f"stopped after rung {rung} of {len(state['rungs'])}: significantly behind on every "
                                f"emotion and {metric}: " + "; ".join(behind[n]))
        else:
            entry["reason"] = f"may still win after rung {rung}: {', '.join(can_win[n])}"
        rows.append({"contender": n, "rung": rung, "val " + metric: _score(bootstrap, preds[n], metric, None),
                     "can still win": ", ".join(can_win[n]) or "nothing", "goes on": n not in stopped,
                     "minutes scale": round(entry["scale"], 3)})
        logger.info("Contest, %s: %s", n, entry["reason"])
    state["rung"] = rung
    return state, rows


def _who_can_win(bootstrap: Bootstrap, preds: dict[str, np.ndarray],
                 metric: str) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """Per contender: the targets (emotions, and ``overall``) it leads or trails inside the noise, and its
    significant deficits on the others (each with its 95 % interval and the leader)."""
    can_win: dict[str, list[str]] = {n: [] for n in preds}
    behind: dict[str, list[str]] = {n: [] for n in preds}
    for target in [*CLASS_NAMES, OVERALL]:
        emotion = None if target == OVERALL else target
        scores = {n: _score(bootstrap, p, metric, emotion) for n, p in preds.items()}
        leader = max(preds, key=lambda n: (scores[n], _score(bootstrap, preds[n], metric, None)))
        for n in preds:
            lead = None if n == leader else bootstrap.lead(preds[leader], preds[n], metric, emotion)
            if lead is None or not lead.significant:
                can_win[n].append(target)
            else:
                behind[n].append(f"{target} {-lead.value:+.3f} [{-lead.high:+.3f}, {-lead.low:+.3f}] vs {leader}")
    return can_win, behind


def _score(bootstrap: Bootstrap, predicted: np.ndarray, metric: str, emotion: str | None) -> float:
    if emotion is None:
        return metric_score(bootstrap.labels, predicted, metric)
    return class_f1(bootstrap.labels, predicted, CLASS_NAMES.index(emotion))


def _move_minutes(state: dict[str, Any], stopped: list[str], rung: int) -> None:
    """Gives the stopped contenders' remaining budget to the others, in proportion to their remaining ones."""
    if not stopped:
        return
    left = 1.0 - state["rungs"][rung - 1]
    remaining = {n: e["budget"] * left * e["scale"] for n, e in state["contenders"].items() if e["active"]}
    freed = sum(remaining[n] for n in stopped)
    going_on = sum(v for n, v in remaining.items() if n not in stopped)
    if going_on <= 0:
        return
    for n in remaining:
        if n not in stopped:
            state["contenders"][n]["scale"] *= 1.0 + freed / going_on


def merge_rung(previous: dict[str, Any] | None, result: TrainResult, rung: int, cfg: TrainingConfig) -> dict[str, Any]:
    """The training record after ``rung`` (0-based): this rung's result with the earlier rungs' history before it
    (epochs numbered on), its wall time added, and a row per rung."""
    current = result.to_dict()
    row = {"rung": rung + 1, "minutes_allotted": round(cfg.max_train_minutes or 0.0, 2), "epochs": len(result.history),
           "wall_s": round(result.wall_s, 1), "kept_weights": result.kept_weights, "best_val_loss": result.best_val_loss}
    if previous is None:
        return {**current, "rungs": [row]}
    offset = len(previous["history"])
    history = previous["history"] + [{**h, "epoch": h["epoch"] + offset} for h in result.history]
    best_epoch = result.best_epoch + offset if result.kept_weights != "start" else previous["best_epoch"]
    return {**current, "history": history, "best_epoch": best_epoch, "wall_s": previous["wall_s"] + result.wall_s,
            "rungs": previous["rungs"] + [row]}


def stopped_record(previous: dict[str, Any], state: dict[str, Any], name: str) -> dict[str, Any]:
    """The training record of a contender that stopped at an earlier rung: unchanged, with the reason."""
    return {**previous, "contest": state["contenders"][name]["reason"]}
