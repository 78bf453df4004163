"""The ensemble library: greedy forward selection with replacement within members and predict time, and the
recorded predictions a later run lines up with its own images."""

from __future__ import annotations

import numpy as np
import pytest

from fercore.data.dataset import FerDataset
from fercore.evaluation.predictions import Predictions
from fercore.promotion.ensembles import SelectionLimits, greedy_selection
from fercore.promotion.records import lined_up, measure_predict_ms, predictions_record

LABELS = np.array([0, 1])


def _model(p_right: tuple[float, float]) -> np.ndarray:
    """Two images (labels 0 and 1): ``p_right`` on each one's label, the rest spread over the other six classes."""
    probs = np.empty((2, 7))
    for row, (label, p) in enumerate(zip(LABELS, p_right)):
        probs[row] = (1 - p) / 6
        probs[row, label] = p
    return probs


# A is right on image 0 only, B on image 1 only, C half-sure of both: C is the best single model, A + B the best pair
LIBRARY = {"1": _model((0.9, 0.2)), "2": _model((0.2, 0.9)), "3": _model((0.45, 0.45))}


def test_greedy_selection_adds_with_replacement_and_keeps_the_best_round():
    # round 1: C (log-loss 0.799); round 2: C + A (0.758; A ties B, the earlier wins); round 3: C + A + B (0.660)
    assert greedy_selection(LIBRARY, LABELS, rounds=3) == pytest.approx({"1": 1 / 3, "2": 1 / 3, "3": 1 / 3})
    # with replacement: round 4 adds A again (0.658), round 5 B (0.635), then A and B alternate and C's share falls
    many = greedy_selection(LIBRARY, LABELS, rounds=25)
    assert list(many) == ["1", "2", "3"] and many["3"] < 0.1 and many["1"] == pytest.approx(many["2"], abs=0.05)


def test_greedy_selection_stays_within_the_member_count_and_the_predict_time_budget():
    # two members: C, then A; round 3 may only repeat one of them (C + A + C: 0.757)
    assert greedy_selection(LIBRARY, LABELS, SelectionLimits(max_members=2), rounds=3) == pytest.approx(
        {"1": 1 / 3, "3": 2 / 3})
    # 25 ms: C alone (30 ms) does not fit; A then B (20 ms together); a third pick of either does not lower the loss
    limits = SelectionLimits(max_predict_ms=25, predict_ms={"1": 10.0, "2": 10.0, "3": 30.0})
    assert greedy_selection(LIBRARY, LABELS, limits, rounds=3) == {"1": 0.5, "2": 0.5}
    assert greedy_selection(LIBRARY, LABELS, SelectionLimits(max_members=1), rounds=5) == {"3": 1.0}


def _dataset(rng: np.random.Generator, val: np.ndarray, test: np.ndarray) -> FerDataset:
    images = np.concatenate([rng.integers(0, 255, (3, 48, 48), dtype=np.uint8), val, test])
    splits = np.array(["train"] * 3 + ["val"] * len(val) + ["test"] * len(test))
    n = len(images)
    return FerDataset(images, np.zeros(n, np.int64), splits, np.array([f"{i}.png" for i in range(n)]),
                      np.array(["Training"] * n))


def test_recorded_predictions_line_up_with_a_later_runs_images_or_are_refused(tmp_path):
    rng = np.random.default_rng(0)
    val, test = rng.integers(0, 255, (4, 48, 48), dtype=np.uint8), rng.integers(0, 255, (2, 48, 48), dtype=np.uint8)
    preds = Predictions(np.eye(7)[[0, 1, 2, 3]], np.eye(7)[[4, 5]])
    path = tmp_path / "predictions.npz"
    path.write_bytes(predictions_record(preds, _dataset(rng, val, test)))
    # a later run: other training images, the same val images in another order
    later = lined_up(path, _dataset(rng, val[[3, 1, 0, 2]], test))
    np.testing.assert_array_equal(later.val.argmax(1), [3, 1, 0, 2])
    np.testing.assert_array_equal(later.test.argmax(1), [4, 5])
    assert later.val.dtype == np.float32
    other = val.copy()
    other[0, 0, 0] ^= 1  # one val image the record does not hold: not scored on a guess
    assert lined_up(path, _dataset(rng, other, test)) is None


def test_the_predict_time_is_the_median_after_a_warm_up():
    calls = []
    assert measure_predict_ms(lambda face: calls.append(face.shape), np.zeros((1, 48, 48), np.uint8), repeats=3) >= 0
    assert calls == [(1, 48, 48)] * 5
