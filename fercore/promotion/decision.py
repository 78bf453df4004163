"""The decision: the winner per emotion and the overall champion on validation, as alias moves."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from fercore.constants import CLASS_NAMES
from fercore.data.dataset import FerDataset
from fercore.evaluation.metrics import Evaluation
from fercore.evaluation.predictions import Predictions
from fercore.evaluation.significance import Bootstrap, Lead

logger = logging.getLogger(__name__)
CHAMPION, CHALLENGER, PREVIOUS = "champion", "challenger", "previous-champion"
NO_HOLDER = "assign (no holder yet)"


def category_alias(emotion: str) -> str:
    return f"champion-{emotion}"


@dataclass
class Candidate:
    """A registered model version scored on this run's splits.

    Every decision reads ``evaluation`` and ``probs``, the validation figures; ``test_evaluation``
    and ``test_probs`` are computed for the report only.
    """

    version: str
    family: str  # cnn, vit or ensemble
    evaluation: Evaluation
    probs: np.ndarray
    new: bool = True  # trained in this run (else: a current alias holder read from the registry)
    test_evaluation: Evaluation | None = None
    test_probs: np.ndarray | None = None
    overlap: str = ""  # how much of this run's validation split it was trained on (holders of earlier runs)
    contender: str = ""  # its name in the config (versions registered before contenders: none)
    contest: str = ""  # what the contest's rungs said of it ("stopped after rung 1 of 2: ..."), if it ran in rungs
    trained_on: np.ndarray | None = None  # hashes of the images it trained on, where recorded (None: unknown)
    members: int = 1  # the models it runs per face (an ensemble's members with a weight or a route)
    predict_ms: float | None = None  # its measured predict time for one face (an ensemble: its members' sum)

    @property
    def label(self) -> str:
        return f"v{self.version} ({self.contender or self.family})"

    def f1(self, emotion: str) -> float:
        return float(self.evaluation.per_class.loc[emotion, "f1"])

    def score(self, metric: str) -> float:
        return float(self.evaluation.overall[metric])


@dataclass
class AliasMove:
    alias: str
    version: str
    previous: str | None
    reason: str
    # for a routed ensemble: emotion -> member version; the move happens only while every member
    # still holds that emotion's champion alias
    routes: dict[str, str] | None = None


@dataclass
class Decision:
    """What promotion decided: the table, and the alias moves to apply."""

    table: pd.DataFrame
    moves: list[AliasMove] = field(default_factory=list)
    reasons: dict[str, str] = field(default_factory=dict)
    routes: dict[str, str] = field(default_factory=dict)  # emotion -> version holding its alias afterwards

    def markdown(self) -> str:
        """The compact view: per emotion the winner, the runner-up, the lead with its interval, the decision (every
        candidate's F1 and recall are in :attr:`table`, logged as ``promotion.csv``)."""
        compact = pd.DataFrame({
            "emotion": self.table["emotion"], "winner": self.table["winner"], "runner-up": self.table["runner_up"],
            "lead [95 % interval]": [("—" if m != m else f"{m:+.3f}" + ("" if ci == "—" else f" {ci}")) for m, ci in
                                     zip(self.table["margin_runner_up"], self.table["runner_up_95ci"])],
            "significant": self.table["significant"], "decision": self.table["decision"]})
        return table_markdown(compact)


def candidates_table(cands: list[Candidate]) -> pd.DataFrame:
    """One row per candidate: the validation figures that decide, the test figures that are reported."""
    rows = []
    for c in cands:
        t = c.test_evaluation.overall if c.test_evaluation else {}
        rows.append({"candidate": c.label, "new": c.new, "val macro_f1": c.score("macro_f1"),
                     "val accuracy": c.score("accuracy"), "test macro_f1": t.get("macro_f1", float("nan")),
                     "test accuracy": t.get("accuracy", float("nan")),
                     "validation images in its training data": c.overlap or ("none" if c.new else ""),
                     **({"contest": c.contest.split(";")[0].split(":")[0]} if any(x.contest for x in cands) else {})})
    return pd.DataFrame(rows)


def table_markdown(table: pd.DataFrame) -> str:
    cols = list(table.columns)
    fmt = lambda v: ("—" if v != v else f"{v:.3f}") if isinstance(v, float) else str(v)  # noqa: E731 (NaN: none)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join(lines)


def _by_version(cands: list[Candidate]) -> dict[str, Candidate]:
    return {c.version: c for c in cands}


def _age(c: Candidate) -> tuple[int, str]:
    """Exact ties go to the older version (a lower number; versions still to be registered last), so that a
    decision does not depend on the order of the candidates."""
    return (int(c.version), "") if c.version.isdigit() else (1 << 62, c.version)


def _ranked(cands: list[Candidate], key) -> list[Candidate]:
    """``cands`` best first by ``key`` (higher is better), exact ties by :func:`_age`."""
    return sorted(sorted(cands, key=_age), key=key, reverse=True)


def decide(cands: list[Candidate], holders: dict[str, str | None], metric: str = "macro_f1",
           min_margin: float = 0.0, single_models_only_per_category: bool = True,
           bootstrap: Bootstrap | None = None, max_members: int = 4, max_predict_ms: float | None = None) -> Decision:
    """Decides every alias from scored candidates and the current alias holders, on the candidates'
    validation figures (``Candidate.evaluation``); their test figures are never read here.

    An alias moves only to a version that beats its current holder (per-category: that class's F1;
    ``champion``: ``metric`` by at least ``min_margin``) and, with ``bootstrap``, only when the lead's
    95 % interval excludes zero; otherwise the holder keeps it. A tie keeps the holder.

    Args:
        cands: scored candidates, current holders included.
        holders: alias -> version now holding it (or None).
        metric: overall metric for ``champion`` and ``challenger``.
        min_margin: how much a new champion must beat the current one by.
        single_models_only_per_category: ensembles compete for ``champion`` only.
        bootstrap: resamples of the validation images (:mod:`fercore.evaluation.significance`); None: any lead counts.
        max_members: the largest ensemble that may hold ``champion`` (a single model has one member).
        max_predict_ms: the most a ``champion`` may take per face (its ``predict_ms``; None: no budget). A holder the
            config no longer allows (a budget lowered since it won) is replaced by the best that fits, noise or not.
    """
    per_cat = [c for c in cands if not (single_models_only_per_category and c.family == "ensemble")]
    decision = Decision(pd.DataFrame())
    rows = [_decide_emotion(emotion, per_cat, _by_version(cands).get(holders.get(category_alias(emotion)) or ""),
                            bootstrap, decision) for emotion in CLASS_NAMES]
    decision.table = pd.DataFrame(rows)
    budget = Budget(max_members, max_predict_ms)
    champion = _decide_champion(cands, holders, metric, min_margin, bootstrap, decision, budget)
    _decide_challenger(cands, holders, champion, metric, decision, budget, bootstrap)
    return decision


def routes_of(cands: list[Candidate], holders: dict[str, str | None], bootstrap: Bootstrap | None = None) -> dict[str, str]:
    """Emotion -> the single model that will hold its alias (what a routed ensemble routes): the per-emotion
    part of :func:`decide`, which an ensemble does not change."""
    singles, by_version, decision = [c for c in cands if c.family != "ensemble"], _by_version(cands), Decision(pd.DataFrame())
    for emotion in CLASS_NAMES:
        _decide_emotion(emotion, singles, by_version.get(holders.get(category_alias(emotion)) or ""), bootstrap, decision)
    return decision.routes


def _decide_emotion(emotion: str, per_cat: list[Candidate], holder: Candidate | None, bootstrap: Bootstrap | None,
                    decision: Decision) -> dict:
    """``emotion``'s alias: records its move, reason and route in ``decision``; returns its table row."""
    ranked = _ranked(per_cat, lambda c: (c.f1(emotion), c.score("macro_f1")))
    best, runner_up = ranked[0], (ranked[1] if len(ranked) > 1 else None)
    over_holder, over_runner_up = _lead(bootstrap, best, holder, emotion=emotion), _lead(bootstrap, best, runner_up,
                                                                                          emotion=emotion)
    if holder is None:
        verdict, winner = NO_HOLDER, best
    elif best.f1(emotion) > holder.f1(emotion) and (over_holder is None or over_holder.significant):
        verdict, winner = "move", best
    else:
        verdict, winner = "keep", holder
    reason = f"{emotion} F1 {winner.f1(emotion):.4f}" + (f" vs holder v{holder.version} {holder.f1(emotion):.4f}"
                                                         if holder else "")
    if verdict == "keep" and over_holder is not None and not over_holder.significant:
        reason += f"; v{best.version}'s lead {over_holder} is inside the noise"
    if verdict != "keep" and runner_up is not None:  # what it won against, and by how much (with its interval)
        lead = over_runner_up if over_runner_up is not None else f"{best.f1(emotion) - runner_up.f1(emotion):+.4f}"
        reason += f"; runner-up {runner_up.label} F1 {runner_up.f1(emotion):.4f}, lead {lead}"
    alias = category_alias(emotion)
    decision.reasons[alias], decision.routes[emotion] = f"{verdict}: {reason}", winner.version
    if verdict != "keep":
        decision.moves.append(AliasMove(alias, winner.version, holder.version if holder else None, reason))
    row = {"emotion": emotion}
    for c in per_cat:
        row[f"{c.label} val F1"] = c.f1(emotion)
        row[f"{c.label} val recall"] = float(c.evaluation.per_class.loc[emotion, "recall"])
    return {**row, "winner": winner.label, "runner_up": runner_up.label if runner_up else "—",
            "margin_runner_up": best.f1(emotion) - runner_up.f1(emotion) if runner_up else float("nan"),
            "runner_up_95ci": _interval(over_runner_up), "significant": _yes_no(over_runner_up),
            "margin_vs_champion": best.f1(emotion) - holder.f1(emotion) if holder else float("nan"),
            "champion_95ci": _interval(over_holder), "decision": verdict}


def _lead(bootstrap: Bootstrap | None, a: Candidate, b: Candidate | None, metric: str = "macro_f1",
          emotion: str | None = None) -> Lead | None:
    if bootstrap is None or b is None or a.version == b.version:
        return None
    return bootstrap.lead(a.probs.argmax(1), b.probs.argmax(1), metric, emotion)


def _interval(lead: Lead | None) -> str:
    return f"[{lead.low:+.3f}, {lead.high:+.3f}]" if lead else "—"


def _yes_no(lead: Lead | None) -> str:
    return "—" if lead is None else ("yes" if lead.significant else "no")


@dataclass(frozen=True)
class Budget:
    """What a ``champion`` may cost: members (each a prediction per face) and milliseconds per face."""

    max_members: int = 4
    max_predict_ms: float | None = None

    def over(self, c: Candidate) -> tuple[str, str] | None:
        """What of ``c`` the config cannot afford, and the limit (None: it can). A time never measured is not held
        against it."""
        if c.members > self.max_members:
            return f"{c.members} members", f"promotion.max_members {self.max_members}"
        if self.max_predict_ms is not None and c.predict_ms is not None and c.predict_ms > self.max_predict_ms:
            return f"{c.predict_ms:.0f} ms per face", f"promotion.max_predict_ms {self.max_predict_ms:g}"
        return None


def _best_overall(cands: list[Candidate], metric: str, bootstrap: Bootstrap | None, decision: Decision,
                  budget: Budget) -> Candidate:
    """The best candidate by ``metric`` among those the config can afford (:class:`Budget`). Whether it replaces
    the holder is gated by significance and ``min_margin`` in :func:`_decide_champion`, not here: the champion is
    the best model."""
    ranked = _ranked(cands, lambda c: c.score(metric))
    affordable = [c for c in ranked if not budget.over(c)]
    best = affordable[0] if affordable else ranked[0]
    too_big = ranked[:ranked.index(best)] if affordable else ranked
    max_members = budget.max_members
    if too_big and max_members == 1:
        decision.reasons["ensemble"] = (f"promotion.max_members is 1: single models only (left out: "
                                        f"{', '.join('v' + c.version for c in too_big)})")
    elif too_big:
        decision.reasons["ensemble"] = "; ".join(
            f"v{c.version} ({budget.over(c)[0]}, {metric} {c.score(metric):.4f}) is above {budget.over(c)[1]}: not a "
            "candidate for champion" for c in too_big)
    singles = [c for c in affordable if c.family != "ensemble"]
    if best.family == "ensemble" and singles:
        lead = _lead(bootstrap, best, singles[0], metric) or f"{best.score(metric) - singles[0].score(metric):+.4f}"
        decision.reasons["ensemble"] = (f"v{best.version} ({best.contender or 'ensemble'} of {best.members} members) "
                                        f"leads the best single model v{singles[0].version} by {lead}: the champion is "
                                        f"the best model within {max_members} members"
                                        + (f" and {budget.max_predict_ms:g} ms per face" if budget.max_predict_ms else "")
                                        + ", whatever its lead over a single model")
    return best


def _ensemble_note(decision: Decision) -> str:
    """Why an ensemble is (or is not) the best model, when one was weighed (:func:`_best_overall`)."""
    return f"; {decision.reasons['ensemble']}" if "ensemble" in decision.reasons else ""


def _decide_champion(cands: list[Candidate], holders: dict[str, str | None], metric: str, min_margin: float,
                     bootstrap: Bootstrap | None, decision: Decision, budget: Budget) -> Candidate:
    """The ``champion`` alias (and ``previous-champion`` when it moves); returns the champion afterwards."""
    best = _best_overall(cands, metric, bootstrap, decision, budget)
    holder = _by_version(cands).get(holders.get(CHAMPION) or "")
    lead = _lead(bootstrap, best, holder, metric)
    figures, note = f"{metric} {best.score(metric):.4f}", _ensemble_note(decision)
    if holder is None:
        decision.moves.append(AliasMove(CHAMPION, best.version, None, figures + note))
        decision.reasons[CHAMPION] = f"{NO_HOLDER}: {figures}{note}"
        return best
    beats = best.version != holder.version and best.score(metric) > holder.score(metric) \
        and best.score(metric) >= holder.score(metric) + min_margin
    over = budget.over(holder) if best.version != holder.version and not budget.over(best) else None
    if over or (beats and (lead is None or lead.significant)):
        reason = (f"{figures}: holder v{holder.version} ({over[0]}) is above {over[1]}, which it no longer fits"
                  if over else f"{figures} vs v{holder.version} {holder.score(metric):.4f}"
                  + (f" (lead {lead}, 95 % interval)" if lead else "")) + note
        decision.moves += [AliasMove(CHAMPION, best.version, holder.version, reason),
                           AliasMove(PREVIOUS, holder.version, holders.get(PREVIOUS),
                                     f"replaced as champion by v{best.version}")]
        decision.reasons[CHAMPION] = f"move: {reason}"
        return best
    why = f"leads {holder.score(metric):.4f} by {lead}, inside the noise" if beats else \
        f"does not beat {holder.score(metric):.4f} by {min_margin}"
    decision.reasons[CHAMPION] = f"keep v{holder.version}: best candidate v{best.version} {figures} {why}{note}"
    return holder


def _decide_challenger(cands: list[Candidate], holders: dict[str, str | None], champion: Candidate, metric: str,
                       decision: Decision, budget: Budget, bootstrap: Bootstrap | None) -> None:
    """``challenger``: the runner-up to the champion, when it beats the current challenger (beyond the noise, as
    every alias: a challenger that flapped each night would tell nothing)."""
    others = [c for c in _ranked(cands, lambda c: c.score(metric)) if c.version != champion.version]
    if not others:
        return
    runner, current = others[0], _by_version(cands).get(holders.get(CHALLENGER) or "")
    lead = None if current is None or current.version == champion.version else _lead(bootstrap, runner, current, metric)
    if current is None or current.version == champion.version or (runner.score(metric) > current.score(metric)
                                                                   and (lead is None or lead.significant)):
        if current is None or runner.version != current.version:
            decision.moves.append(AliasMove(CHALLENGER, runner.version, holders.get(CHALLENGER),
                                            f"runner-up {metric} {runner.score(metric):.4f}"
                                            + _why_not_champion(runner, champion, metric, decision, budget)))
            decision.reasons[CHALLENGER] = f"move: v{runner.version} runner-up"


def _why_not_champion(runner: Candidate, champion: Candidate, metric: str, decision: Decision, budget: Budget) -> str:
    """Why a runner-up that scores above the champion is not champion: beyond the config's budget (members, time per
    face), or a lead over the holder inside the noise (or below ``min_margin``); nothing when it scores below."""
    if runner.score(metric) <= champion.score(metric):
        return ""
    if budget.over(runner):
        return "; scores above the champion but has {}, above {}".format(*budget.over(runner))
    return f"; scores above the champion, which kept its alias ({decision.reasons[CHAMPION]})"


def candidate(version: str, family: str, predictions: Predictions, dataset: FerDataset, new: bool,
              overlap: str = "", contender: str = "", contest: str = "") -> Candidate:
    """A scored candidate: decided on its validation figures, its test figures kept for the report."""
    val_ev, test_ev = predictions.evaluations(dataset)
    return Candidate(version, family, val_ev, predictions.val, new, test_ev, predictions.test, overlap, contender,
                     contest)
