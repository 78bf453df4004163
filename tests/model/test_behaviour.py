"""Behaviour of a trained model (see conftest: the fixture's model, or ``MODEL_URI``'s): what a face
shows does not change under a mirror or a small change of light, and no emotion is given up."""

from __future__ import annotations

import numpy as np
import pytest

from fercore.constants import CLASS_NAMES
from fercore.evaluation.metrics import evaluate_predictions


def _labels(model_under_test, images: np.ndarray) -> np.ndarray:
    return model_under_test.predict(images).argmax(1)


def mirror_agreement(predict, images: np.ndarray) -> float:
    """The share of faces whose label the network keeps when the face is mirrored, each seen in one view (no
    test-time views: ten crops and their mirrors would make any network mirror-proof)."""
    return float((predict(images).argmax(1) == predict(images[:, :, ::-1].copy()).argmax(1)).mean())


def test_a_mirrored_face_keeps_its_label(model_under_test):
    if model_under_test.one_view is None:
        pytest.skip(f"{model_under_test.name} is an ensemble, with no single network: check a member (MODEL_URI="
                    "models:/NAME/VERSION)")
    same = mirror_agreement(model_under_test.one_view, model_under_test.validation.images)
    assert same >= 0.90, f"{model_under_test.name}: {same:.1%} of mirrored faces keep their label"


def test_the_mirror_check_fails_a_model_that_learned_one_side():
    """The check can fail: a network that learned which side a cue is on (faces whose label a mirror changes)."""
    from fercore.models.inference import predict_proba
    from tests.conftest import synthetic
    from tests.model.conftest import train_on

    dataset = synthetic(per_class=40, test_per_class=4, sided=True)
    one_sided = train_on(dataset, hflip=False, epochs=8)
    val = dataset.split("val")
    assert (predict_proba(one_sided, val.images, tta="none").argmax(1) == val.labels).mean() >= 0.9  # it learned them
    assert mirror_agreement(lambda x: predict_proba(one_sided, x, tta="none"), val.images) < 0.90


def test_ten_percent_more_or_less_light_keeps_the_label(model_under_test):
    images = model_under_test.validation.images
    base = _labels(model_under_test, images)
    for factor in (0.9, 1.1):
        changed = np.clip(images.astype(np.float32) * factor, 0, 255).round().astype(np.uint8)
        same = base == _labels(model_under_test, changed)
        assert same.mean() >= 0.90, f"{model_under_test.name}: brightness x{factor}: {same.mean():.1%} keep their label"


def test_every_emotion_is_recalled_on_validation(model_under_test):
    val = model_under_test.validation
    recall = evaluate_predictions(val.labels, _labels(model_under_test, val.images)).per_class["recall"]
    low = {e: round(float(recall[e]), 3) for e in CLASS_NAMES if recall[e] < model_under_test.min_recall}
    assert low == {}, f"{model_under_test.name}: recall below {model_under_test.min_recall} on validation"
