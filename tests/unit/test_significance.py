"""The paired bootstrap's figures against scikit-learn's, resample by resample, and its interval's definition."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score

from fercore.constants import CLASS_NAMES
from fercore.evaluation.significance import Bootstrap, Lead, class_f1, metric_score

CLASSES = list(range(len(CLASS_NAMES)))
# 15 images: class 6 once, class 5 never (so some resamples hold a class once, others not at all)
LABELS = np.array([0, 0, 0, 1, 1, 1, 2, 2, 3, 3, 3, 4, 4, 4, 6])
A = np.array([0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 0, 4, 4, 5, 6])
B = np.array([0, 1, 1, 1, 0, 0, 2, 3, 3, 3, 3, 4, 6, 4, 4])


def test_every_resample_is_scored_as_scikit_learn_scores_it():
    boot = Bootstrap(LABELS, resamples=40, seed=3)
    scores = boot.scores(A)
    for r, rows in enumerate(boot._rows):
        y, p = LABELS[rows], A[rows]
        np.testing.assert_allclose(scores["f1"][r], f1_score(y, p, labels=CLASSES, average=None, zero_division=0))
        assert scores["accuracy"][r] == pytest.approx(accuracy_score(y, p))
        assert scores["macro_f1"][r] == pytest.approx(f1_score(y, p, labels=CLASSES, average="macro", zero_division=0))
        weighted = f1_score(y, p, labels=CLASSES, average="weighted", zero_division=0)
        assert scores["weighted_f1"][r] == pytest.approx(weighted)
    assert boot.scores(A.astype(np.int32)) is scores  # cached by the predictions' content


def test_the_whole_sets_figures_are_scikit_learns():
    for c in CLASSES:
        assert class_f1(LABELS, A, c) == pytest.approx(f1_score(LABELS, A, labels=[c], average="macro", zero_division=0))
    assert class_f1(LABELS, A, 5) == 0.0 and class_f1(LABELS, B, 5) == 0.0  # class 5 is neither present nor predicted
    assert metric_score(LABELS, A, "accuracy") == pytest.approx(accuracy_score(LABELS, A))
    assert metric_score(LABELS, A, "macro_f1") == pytest.approx(f1_score(LABELS, A, labels=CLASSES, average="macro",
                                                                         zero_division=0))
    assert metric_score(LABELS, A, "weighted_f1") == pytest.approx(f1_score(LABELS, A, labels=CLASSES,
                                                                            average="weighted", zero_division=0))
    no_surprise = LABELS != 6  # the last class absent: its support is still counted, as zero
    assert metric_score(LABELS[no_surprise], A[no_surprise], "weighted_f1") == pytest.approx(
        f1_score(LABELS[no_surprise], A[no_surprise], labels=CLASSES, average="weighted", zero_division=0))


def test_a_lead_is_the_difference_and_its_interval_the_middle_95_percent_of_the_resampled_differences():
    boot = Bootstrap(LABELS, resamples=200, seed=1)
    for metric in ("macro_f1", "accuracy", "weighted_f1"):
        lead = boot.lead(A, B, metric)
        assert lead.value == pytest.approx(metric_score(LABELS, A, metric) - metric_score(LABELS, B, metric))
        diff = boot.scores(A)[metric] - boot.scores(B)[metric]
        assert (lead.low, lead.high) == pytest.approx((np.percentile(diff, 2.5), np.percentile(diff, 97.5)))
    happy = boot.lead(A, B, emotion="happy")
    c = CLASS_NAMES.index("happy")
    assert happy.value == pytest.approx(class_f1(LABELS, A, c) - class_f1(LABELS, B, c))
    diff = boot.scores(A)["f1"][:, c] - boot.scores(B)["f1"][:, c]
    assert (happy.low, happy.high) == pytest.approx((np.percentile(diff, 2.5), np.percentile(diff, 97.5)))
    assert str(happy) == f"{happy.value:+.4f} [{happy.low:+.4f}, {happy.high:+.4f}]"


def test_the_resamples_are_fixed_by_the_seed_and_draw_every_image():
    a, b, other = Bootstrap(LABELS, 50, seed=7), Bootstrap(LABELS, 50, seed=7), Bootstrap(LABELS, 50, seed=8)
    assert np.array_equal(a._rows, b._rows) and not np.array_equal(a._rows, other._rows)
    assert a._rows.shape == (50, len(LABELS)) and set(np.unique(a._rows)) == set(range(len(LABELS)))


@pytest.mark.parametrize(("lead", "expected"), [
    (Lead(0.02, 0.001, 0.04), "a"),  # the interval above zero: a leads
    (Lead(-0.02, -0.04, -0.001), "b"),  # below zero: b leads
    (Lead(0.01, -0.001, 0.02), None),  # holds zero: noise, nobody leads
    (Lead(0.0, 0.0, 0.0), None),  # identical predictions
])
def test_the_leader_is_named_only_beyond_the_noise(lead, expected):
    assert lead.leader("a", "b") == expected
