"""The two ensembles of the contenders, and their registration as versions.

- Routed: each emotion's probability from that emotion's winner (:func:`routed_predictions`).
- Averaging: each member's probabilities temperature-scaled, then averaged with weights that greedy forward
  selection with replacement picks from a library of models (this run's contenders and earlier runs' versions),
  both fitted on the validation split by log-loss (:func:`fit_averaging`, :func:`greedy_selection`).

Fitted and judged on the same images, an ensemble would look better than it is. Their validation
probabilities for promotion are therefore out of fold (:func:`routed_out_of_fold`, :func:`out_of_fold`):
each half of the validation images is predicted with routes, temperatures and weights fitted on the
other half. The version that is registered carries the fit on all of them.

Everything here is computed from probabilities already in hand; :mod:`fercore.promotion.apply` registers
an ensemble the decision needs (its spec is the version's ``ensemble.json``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from scipy.optimize import minimize_scalar

from fercore.constants import CLASS_NAMES
from fercore.data.dataset import FerDataset
from fercore.evaluation.predictions import Predictions
from fercore.models.inference import average_probabilities, route_probabilities, temperature_scaled
from fercore.promotion.decision import Candidate, candidate

logger = logging.getLogger(__name__)


@dataclass
class AveragingFit:
    """Per member (version): its temperature and weight; the expected calibration error before and after
    its temperature."""

    temperatures: dict[str, float]
    weights: dict[str, float]
    ece_before: dict[str, float]
    ece_after: dict[str, float]

    def spec(self, model_name: str) -> dict:
        """What the registered ensemble loads (``ensemble.json`` of :class:`fercore.serving.pyfunc.FerEnsembleModel`)."""
        return {"model_name": model_name, "weights": self.weights, "temperatures": self.temperatures}

    def apply(self, member_probs: dict[str, np.ndarray]) -> np.ndarray:
        return average_probabilities(member_probs, self.weights, self.temperatures)


def log_loss(probs: np.ndarray, labels: np.ndarray) -> float:
    return float(-np.log(np.clip(probs[np.arange(len(labels)), labels], 1e-12, None)).mean())


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, bins: int = 15) -> float:
    """The gap between confidence and accuracy, averaged over ``bins`` equal-width confidence bins
    weighted by their share of images (Guo et al. 2017)."""
    confidence, correct = probs.max(1), probs.argmax(1) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1]), 0, bins - 1)
    gaps = [abs(confidence[which == b].mean() - correct[which == b].mean()) * (which == b).mean()
            for b in range(bins) if (which == b).any()]
    return float(sum(gaps))


def fit_temperature(probs: np.ndarray, labels: np.ndarray) -> float:
    """The temperature (0.05-20) that minimises the log-loss of ``probs ** (1 / T)``, renormalised."""
    result = minimize_scalar(lambda log_t: log_loss(temperature_scaled(probs, float(np.exp(log_t))), labels),
                             bounds=(np.log(0.05), np.log(20.0)), method="bounded")
    return float(np.exp(result.x))


@dataclass(frozen=True)
class SelectionLimits:
    """What an ensemble may cost per face: at most ``max_members`` distinct members whose measured predict times
    (``predict_ms``, one face each) add up to at most ``max_predict_ms`` (None: no budget)."""

    max_members: int = 4
    max_predict_ms: float | None = None
    predict_ms: dict[str, float] = field(default_factory=dict)

    def admits(self, chosen: set[str], version: str) -> bool:
        """Whether ``version`` may join ``chosen`` (one already in it always may: it adds weight, not cost)."""
        if version in chosen:
            return True
        if len(chosen) >= self.max_members:
            return False
        return self.max_predict_ms is None or self.cost(chosen | {version}) <= self.max_predict_ms

    def cost(self, versions) -> float:
        return float(sum(self.predict_ms.get(v, 0.0) for v in versions))

    def measured_cost(self, versions) -> float | None:
        """:meth:`cost`, when every one of ``versions`` has a measured time (else None: unknown, not zero)."""
        return self.cost(versions) if all(v in self.predict_ms for v in versions) else None


SELECTION_ROUNDS = 25  # Caruana et al. add a model per round; the best prefix of the rounds is kept


def greedy_selection(member_probs: dict[str, np.ndarray], labels: np.ndarray, limits: SelectionLimits = SelectionLimits(),
                     rounds: int = SELECTION_ROUNDS) -> dict[str, float]:
    """Forward selection with replacement from a library of models (Caruana et al. 2004, "Ensemble selection from
    libraries of models"; auto-sklearn's ensemble builder): each round adds the member (a new one, or one already in,
    which raises its weight) that most lowers the log-loss of the running average; the round with the lowest
    log-loss is kept. Weights are counts over rounds: a few members, unlike free weights fitted to every model of a
    large library. Members are limited by ``limits``; ties go to the earlier version in ``member_probs``' order.

    Returns:
        ``version -> weight`` (summing to one) of the members kept, in ``member_probs``' order.
    """
    versions, counts = list(member_probs), dict.fromkeys(member_probs, 0)
    total = np.zeros_like(next(iter(member_probs.values())), dtype=np.float64)
    best: tuple[float, dict[str, int]] = (np.inf, {})
    for n in range(1, rounds + 1):
        chosen = {v for v, c in counts.items() if c}
        allowed = [v for v in versions if limits.admits(chosen, v)]
        if not allowed:
            break
        losses = [log_loss((total + member_probs[v]) / n, labels) for v in allowed]
        pick = allowed[int(np.argmin(losses))]
        counts[pick] += 1
        total += member_probs[pick]
        if min(losses) < best[0]:
            best = (min(losses), {v: c for v, c in counts.items() if c})
    kept = best[1]
    return {v: kept[v] / sum(kept.values()) for v in versions if v in kept}


def fit_averaging(member_probs: dict[str, np.ndarray], labels: np.ndarray,
                  limits: SelectionLimits = SelectionLimits()) -> AveragingFit:
    """Temperatures per library model, then the members and their weights chosen by :func:`greedy_selection` from
    the scaled models, on ``labels``' images."""
    temperatures = {v: fit_temperature(p, labels) for v, p in member_probs.items()}
    scaled = {v: temperature_scaled(p, temperatures[v]) for v, p in member_probs.items()}
    weights = greedy_selection(scaled, labels, limits)
    return AveragingFit({v: temperatures[v] for v in weights}, weights,
                        {v: expected_calibration_error(member_probs[v], labels) for v in weights},
                        {v: expected_calibration_error(scaled[v], labels) for v in weights})


def out_of_fold(member_probs: dict[str, np.ndarray], labels: np.ndarray, folds: int = 2, seed: int = 0,
                limits: SelectionLimits = SelectionLimits()) -> np.ndarray:
    """The ensemble's probabilities on every image, each from a fit (the selection of members included) on the other
    folds only."""
    fold = np.random.default_rng(seed).permutation(len(labels)) % folds
    out = np.empty_like(next(iter(member_probs.values())), dtype=np.float64)
    for k in range(folds):
        held, rest = fold == k, fold != k
        fitted = fit_averaging({v: p[rest] for v, p in member_probs.items()}, labels[rest], limits)
        out[held] = fitted.apply({v: p[held] for v, p in member_probs.items()})
    return out


def routed_predictions(by_version: dict[str, Candidate], routes: dict[str, str]) -> Predictions:
    """The routed ensemble's val and test probabilities from its members' (see ``route_probabilities``)."""
    members = set(routes.values())
    val = route_probabilities({v: by_version[v].probs for v in members}, routes)
    test = route_probabilities({v: by_version[v].test_probs for v in members}, routes)
    return Predictions(val, test)



def routed_out_of_fold(singles: list[Candidate], labels: np.ndarray, folds: int = 2, seed: int = 0) -> np.ndarray:
    """The routed ensemble's validation probabilities out of fold: each fold routed by the per-emotion
    winners (validation F1, ties by macro-F1) on the other folds, as promotion picks them on all of it.
    Routes picked and judged on the same images would flatter it."""
    from sklearn.metrics import f1_score

    fold = np.random.default_rng(seed).permutation(len(labels)) % folds
    out = np.empty_like(singles[0].probs, dtype=np.float64)
    for k in range(folds):
        rest, held = fold != k, fold == k
        f1 = {c.version: f1_score(labels[rest], c.probs[rest].argmax(1), labels=list(range(len(CLASS_NAMES))),
                                  average=None, zero_division=0) for c in singles}
        routes = {e: max(singles, key=lambda c: (f1[c.version][i], f1[c.version].mean())).version
                  for i, e in enumerate(CLASS_NAMES)}
        out[held] = route_probabilities({c.version: c.probs[held] for c in singles}, routes)
    return out



def routes_tag(routes: dict[str, str]) -> str:
    """The ``routes`` tag of an ensemble version: ``emotion:version`` in class order."""
    return ",".join(f"{e}:{routes[e]}" for e in CLASS_NAMES)



def parse_routes(tag: str) -> dict[str, str]:
    return dict(item.split(":") for item in tag.split(",")) if tag else {}


def member_versions(tags: dict[str, str]) -> list[str]:
    """An ensemble version's members, from its tags: ``members`` (averaging), else its ``routes``' versions."""
    return list(filter(None, tags.get("members", "").split(","))) or list(
        dict.fromkeys(parse_routes(tags.get("routes", "")).values()))



@dataclass
class EnsembleCandidate:
    """An ensemble the decision weighs: its scores, and what registering it takes.

    Attributes:
        candidate: scored on out-of-fold validation probabilities; its version is the registered identical
            ensemble's, else a placeholder (``new-routed``, ``new-averaged``) until it is registered.
        spec: its ``ensemble.json``.
        identity: the tag that tells an identical registered ensemble (``routes`` or ``weights``).
        members: its member versions.
        description: one line for the version's description.
        fitted: the averaging ensemble's temperatures and weights.
    """

    candidate: Candidate
    spec: dict[str, Any]
    identity: dict[str, str]
    members: list[str]
    description: str
    fitted: AveragingFit | None = field(default=None)


def routed_ensemble(name: str, routes: dict[str, str], cands: list[Candidate], dataset: FerDataset,
                    registered: dict[tuple[str, str], str]) -> EnsembleCandidate:
    """The routed ensemble of ``routes``, judged on out-of-fold validation probabilities (:func:`routed_out_of_fold`).

    Args:
        registered: ``(identity tag, value) -> version`` of the READY ensembles in the registry.
    """
    by_version = {c.version: c for c in cands}
    members = sorted(set(routes.values()), key=int)
    preds = routed_predictions(by_version, routes)
    preds.val = routed_out_of_fold([c for c in cands if c.family != "ensemble"], dataset.split("val").labels)
    identity = {"routes": routes_tag(routes)}
    version = registered.get(("routes", identity["routes"]), "new-routed")
    cand = replace(candidate(version, "ensemble", preds, dataset, version == "new-routed",
                             "; ".join(f"v{v}: {by_version[v].overlap}" for v in members), contender="routed"),
                   members=len(members))
    routing = ", ".join(f"{e}: v{m}" for e, m in routes.items())
    return EnsembleCandidate(cand, {"model_name": name, "routes": routes}, identity, members,
                             f"Routed ensemble ({routing}).")


def averaged_ensemble(name: str, library: list[Candidate], dataset: FerDataset, registered: dict[tuple[str, str], str],
                      limits: SelectionLimits = SelectionLimits()) -> EnsembleCandidate | None:
    """The probability-averaging ensemble that :func:`greedy_selection` picks from ``library`` (single models scored
    on this run's splits), fitted on validation and judged on its out-of-fold validation probabilities (see the
    module docstring); None when the selection keeps one model alone (that model is a candidate already)."""
    labels = dataset.split("val").labels
    val = {c.version: c.probs for c in library}
    fitted = fit_averaging(val, labels, limits)
    if len(fitted.weights) < 2:
        logger.info("Ensemble selection from %d models kept %s alone: no averaging ensemble", len(library),
                    ", ".join(f"v{v}" for v in fitted.weights))
        return None
    by_version = {c.version: c for c in library}
    preds = Predictions(out_of_fold(val, labels, limits=limits),
                        fitted.apply({v: by_version[v].test_probs for v in fitted.weights}),
                        str(dataset.metadata.get("sha256", "")))
    identity = {"weights": ",".join(f"{v}:{w:.4f}" for v, w in fitted.weights.items())}
    version = registered.get(("weights", identity["weights"]), "new-averaged")
    first = by_version[next(iter(fitted.weights))]
    cand = replace(candidate(version, "ensemble", preds, dataset, version == "new-averaged", first.overlap,
                             contender="averaged"), members=len(fitted.weights),
                   predict_ms=limits.cost(fitted.weights) if limits.predict_ms else None)
    weights = ", ".join(f"v{v} {w:.3f} (T {fitted.temperatures[v]:.2f})" for v, w in fitted.weights.items())
    chosen_from = f" Chosen from {len(library)} models ({', '.join(f'v{c.version}' for c in library)}) by greedy " \
                  "forward selection." if len(library) > len(fitted.weights) else ""
    return EnsembleCandidate(cand, fitted.spec(name), identity, list(fitted.weights),
                             f"Probability-averaging ensemble: {weights}.{chosen_from}", fitted)
