"""The probability-averaging ensemble: each contender's probabilities temperature-scaled, then averaged
with weights, both fitted on the validation split by log-loss.

Fitted and judged on the same images, the ensemble would look better than it is. Its validation
probabilities for promotion are therefore out of fold (:func:`out_of_fold`): each half of the
validation images is predicted with temperatures and weights fitted on the other half. The version
that is registered carries the fit on all of them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize, minimize_scalar

from fercore.inference import average_probabilities, temperature_scaled


@dataclass
class AveragingFit:
    """Per member (version): its temperature and weight; the expected calibration error before and after
    its temperature."""

    temperatures: dict[str, float]
    weights: dict[str, float]
    ece_before: dict[str, float]
    ece_after: dict[str, float]

    def spec(self, model_name: str) -> dict:
        """What the registered ensemble loads (``routes.json`` of :class:`fercore.pyfunc.FerEnsembleModel`)."""
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


def fit_weights(member_probs: dict[str, np.ndarray], labels: np.ndarray) -> dict[str, float]:
    """Non-negative weights summing to one (a softmax of free parameters) that minimise the average's log-loss."""
    versions = list(member_probs)
    stacked = np.stack([member_probs[v] for v in versions])

    def loss(theta: np.ndarray) -> float:
        w = np.exp(theta - theta.max())
        return log_loss(np.tensordot(w / w.sum(), stacked, axes=1), labels)

    theta = minimize(loss, np.zeros(len(versions)), method="L-BFGS-B").x
    w = np.exp(theta - theta.max())
    return {v: float(x) for v, x in zip(versions, w / w.sum())}


def fit(member_probs: dict[str, np.ndarray], labels: np.ndarray) -> AveragingFit:
    """Temperatures per member, then the weights of the scaled members, on ``labels``' images."""
    temperatures = {v: fit_temperature(p, labels) for v, p in member_probs.items()}
    scaled = {v: temperature_scaled(p, temperatures[v]) for v, p in member_probs.items()}
    return AveragingFit(temperatures, fit_weights(scaled, labels),
                        {v: expected_calibration_error(p, labels) for v, p in member_probs.items()},
                        {v: expected_calibration_error(p, labels) for v, p in scaled.items()})


def out_of_fold(member_probs: dict[str, np.ndarray], labels: np.ndarray, folds: int = 2, seed: int = 0) -> np.ndarray:
    """The ensemble's probabilities on every image, each from a fit on the other folds only."""
    fold = np.random.default_rng(seed).permutation(len(labels)) % folds
    out = np.empty_like(next(iter(member_probs.values())), dtype=np.float64)
    for k in range(folds):
        held, rest = fold == k, fold != k
        fitted = fit({v: p[rest] for v, p in member_probs.items()}, labels[rest])
        out[held] = fitted.apply({v: p[held] for v, p in member_probs.items()})
    return out
