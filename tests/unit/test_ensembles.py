"""Bootstrap intervals of leads on validation (what the contest and promotion judge by), and the
probability-averaging ensemble's fit."""

from __future__ import annotations

import numpy as np
import pytest

from fercore.evaluation.metrics import evaluate_predictions
from fercore.evaluation.significance import Bootstrap
from fercore.models.inference import temperature_scaled
from fercore.promotion.decision import Candidate
from fercore.promotion.ensembles import expected_calibration_error, fit_averaging, fit_temperature, out_of_fold

LABELS = np.repeat(np.arange(7), 100)  # 700 validation images, 100 per class


def _with_errors(n_wrong: int, offset: int = 0) -> np.ndarray:
    """The labels, with ``n_wrong`` images (from ``offset``, spread over the classes) predicted as the next class."""
    predicted = LABELS.copy()
    rows = (offset + np.arange(n_wrong) * 97) % len(LABELS)
    predicted[rows] = (LABELS[rows] + 1) % 7
    return predicted


def _candidate(version: str, predicted: np.ndarray) -> Candidate:
    ev = evaluate_predictions(LABELS, predicted)
    return Candidate(version, "cnn", ev, np.eye(7)[predicted], contender=f"c{version}")


def test_equal_predictions_lead_by_nothing_and_a_large_lead_is_significant():
    boot = Bootstrap(LABELS, resamples=500)
    same = boot.lead(_with_errors(50), _with_errors(50))
    assert (same.value, same.low, same.high) == (0.0, 0.0, 0.0) and not same.significant
    big = boot.lead(_with_errors(20), _with_errors(200), metric="accuracy")
    assert big.value == pytest.approx(180 / 700) and big.significant and big.low < big.value < big.high
    happy = boot.lead(_with_errors(0), _with_errors(70), emotion="happy")  # 10 of happy's 100 rows wrong
    assert happy.value > 0 and happy.significant


def test_temperature_scaling_calibrates_an_over_confident_member():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 7, 3000)
    right = rng.random(3000) < 0.6  # 60 % right, but 95 % sure of every answer
    predicted = np.where(right, labels, (labels + rng.integers(1, 7, 3000)) % 7)
    probs = np.full((3000, 7), 0.05 / 6)
    probs[np.arange(3000), predicted] = 0.95
    t = fit_temperature(probs, labels)
    assert t > 1.5  # softened
    assert expected_calibration_error(temperature_scaled(probs, t), labels) < 0.05 < expected_calibration_error(probs, labels)
    np.testing.assert_allclose(temperature_scaled(probs, t).sum(1), 1.0)


def test_averaging_weights_favour_the_better_member_and_are_judged_out_of_fold():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 7, 2000)

    def member(accuracy: float) -> np.ndarray:
        right = rng.random(2000) < accuracy
        predicted = np.where(right, labels, rng.integers(0, 7, 2000))
        p = rng.dirichlet(np.ones(7), 2000) * 0.3
        p[np.arange(2000), predicted] += 0.7
        return p / p.sum(1, keepdims=True)

    members = {"1": member(0.7), "2": member(0.5)}
    fitted = fit_averaging(members, labels)
    assert sum(fitted.weights.values()) == pytest.approx(1.0) and fitted.weights["1"] > fitted.weights["2"]
    averaged = fitted.apply(members)
    by_hand = sum(fitted.weights[v] * (p ** (1 / fitted.temperatures[v])) / (p ** (1 / fitted.temperatures[v])).sum(
        1, keepdims=True) for v, p in members.items())  # each member's p^(1/T), renormalised, weighted
    np.testing.assert_allclose(averaged, by_hand, rtol=1e-6)
    oof = out_of_fold(members, labels)
    assert oof.shape == averaged.shape and not np.allclose(oof, averaged)  # each half from the other half's fit
    assert set(fitted.ece_before) == set(fitted.ece_after) == {"1", "2"}
