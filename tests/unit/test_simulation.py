"""The nights' simulation (fercore/promotion/simulation.py) on small cases."""

from __future__ import annotations

import numpy as np
import pytest

from fercore.promotion.simulation import Spread, draw, gain_for, simulate

CONFUSION = np.ones((7, 7), int)
LABELS = np.random.default_rng(0).integers(0, 7, 600)


def test_the_difficulties_give_the_accuracy_and_the_disagreement_asked_for():
    spread = Spread(0.675, 0.131, CONFUSION)
    p = spread.difficulty(400_000, np.random.default_rng(1))
    assert p.mean() == pytest.approx(0.675, abs=0.002)
    assert (2 * p * (1 - p)).mean() == pytest.approx(0.131, abs=0.002)
    labels = np.zeros(400_000, int)
    a, b = (draw(labels, p, spread, np.random.default_rng(seed)) for seed in (2, 3))
    assert ((a == labels) != (b == labels)).mean() == pytest.approx(0.131, abs=0.003)


def test_a_wrong_answer_follows_the_confusions_of_its_true_class_never_the_class_itself():
    confusion = np.zeros((7, 7), int)
    confusion[:, 2] = 10  # every wrong answer is "fear" (class 2), but a fear face's
    confusion[2, 2], confusion[2, 5] = 50, 10
    labels = np.repeat(np.arange(7), 100)
    predicted = draw(labels, np.zeros(700), Spread(0.5, 0.2, confusion), np.random.default_rng(0))
    assert set(predicted[labels != 2]) == {2} and set(predicted[labels == 2]) == {5}


def test_the_gain_of_one_point():
    assert gain_for(0.01, np.array([0.5, 0.5])) == pytest.approx(0.02)
    assert gain_for(0.01, np.array([0.0, 0.8])) == pytest.approx(0.01 / 0.6)


def test_a_first_night_moves_nothing_counted_and_a_far_better_model_is_champion_the_night_it_comes():
    spread = Spread(0.6, 0.2, CONFUSION)
    assert simulate(LABELS, spread, nights=1, resamples=200).moves == {}
    assert simulate(LABELS, spread, nights=10, resamples=200, better_from=3, better_points=0.3).better_champion_night == 3


def test_equal_models_rarely_move_an_alias_and_an_impossible_spread_is_named():
    spread = Spread(0.6, 0.2, CONFUSION)
    nights = simulate(LABELS, spread, nights=12, resamples=200, seed=4)
    assert nights.nights == 12 and nights.better_champion_night is None
    # 3 moves in 11 nights x 9 aliases: small-sample noise (600 images), every move a false one
    assert nights.moves == {"champion-sad": 1, "challenger": 1, "champion-fear": 1}
    with pytest.raises(ValueError, match="a disagreement of 0.6 is impossible at accuracy 0.6"):
        Spread(0.6, 0.6, CONFUSION).difficulty(10, np.random.default_rng(0))
