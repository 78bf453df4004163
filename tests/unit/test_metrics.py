"""Per-class metrics against hand-computed values and scikit-learn."""

import numpy as np
import pytest
from sklearn.metrics import classification_report

from fercore.constants import CLASS_NAMES
from fercore.evaluation.metrics import Evaluation, evaluate_predictions, flat_metrics


@pytest.fixture
def case():
    # angry: 4 images, 3 right; disgust: 2, 1 right (other -> angry); fear: 2 right, and one
    # happy predicted as fear; the other classes have 1 image each, all right.
    y_true = np.array([0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 5, 6])
    y_pred = np.array([0, 0, 0, 2, 1, 0, 2, 2, 3, 2, 4, 5, 6])
    subsets = np.array(["PublicTest"] * 6 + ["PrivateTest"] * 7)
    return y_true, y_pred, subsets


def test_hand_computed_values(case):
    ev = evaluate_predictions(*case)
    angry, disgust, fear = ev.per_class.loc["angry"], ev.per_class.loc["disgust"], ev.per_class.loc["fear"]
    assert ev.overall["accuracy"] == pytest.approx(10 / 13)
    assert angry.precision == pytest.approx(3 / 4) and angry.recall == pytest.approx(3 / 4)
    assert disgust.precision == pytest.approx(1.0) and disgust.recall == pytest.approx(0.5)
    assert fear.precision == pytest.approx(2 / 4) and fear.f1 == pytest.approx(2 * 0.5 * 1 / 1.5)
    assert disgust.accuracy == pytest.approx(0.5)  # share of disgust images classified correctly
    assert disgust.ovr_accuracy == pytest.approx(12 / 13)  # one-vs-rest: only one disgust image missed
    assert int(angry.support) == 4
    assert ev.confusion[1, 0] == 1 and ev.confusion.sum() == 13
    assert ev.subsets["PublicTest"]["accuracy"] == pytest.approx(4 / 6)
    assert ev.subsets["PrivateTest"]["accuracy"] == pytest.approx(6 / 7)


def test_matches_scikit_learn_report(case):
    y_true, y_pred, _ = case
    ev = evaluate_predictions(y_true, y_pred)
    report = classification_report(y_true, y_pred, labels=range(7), target_names=CLASS_NAMES, output_dict=True,
                                   zero_division=0)
    for name in CLASS_NAMES:
        for col, key in (("precision", "precision"), ("recall", "recall"), ("f1", "f1-score")):
            assert ev.per_class.loc[name, col] == pytest.approx(report[name][key])
    assert ev.overall["macro_f1"] == pytest.approx(report["macro avg"]["f1-score"])
    assert ev.overall["weighted_f1"] == pytest.approx(report["weighted avg"]["f1-score"])


def test_roundtrip_markdown_and_flat_metrics(case):
    ev = evaluate_predictions(*case)
    ev.contender, ev.split = "vgg7", "test"
    back = Evaluation.from_dict(ev.to_dict())
    assert back.overall == ev.overall and np.array_equal(back.confusion, ev.confusion)
    assert (back.contender, back.split) == ("vgg7", "test")
    assert "| disgust | 1.000 | 0.500 |" in ev.markdown()
    flat = flat_metrics(ev)
    assert flat["test_disgust_recall"] == pytest.approx(0.5) and "test_PrivateTest_accuracy" in flat


def test_the_figures_name_their_contender_and_split(case):
    from fercore.evaluation.plots import evaluation_figures

    ev = evaluate_predictions(*case)
    ev.contender, ev.split = "vgg7", "test"
    assert set(evaluation_figures(ev)) == {"confusion_matrix.png"}
    ev.history = [{"epoch": 1, "train_loss": 1.0, "val_loss": 1.2, "train_accuracy": 0.5, "val_accuracy": 0.4}]
    figures = evaluation_figures(ev)
    assert set(figures) == {"confusion_matrix.png", "loss_curves.png"}
    ev.contender = "resnet"  # the title is drawn: another contender, other pixels
    assert evaluation_figures(ev)["confusion_matrix.png"] != figures["confusion_matrix.png"]
