"""Behaviour of a trained model (see conftest: the fixture's model, or ``MODEL_URI``'s): what a face
shows does not change under a mirror or a small change of light, and no emotion is given up."""

from __future__ import annotations

import numpy as np

from fercore.constants import CLASS_NAMES
from fercore.evaluation.metrics import evaluate_predictions


def _labels(model_under_test, images: np.ndarray) -> np.ndarray:
    return model_under_test.predict(images).argmax(1)


def test_a_mirrored_face_keeps_its_label(model_under_test):
    images = model_under_test.validation.images
    same = _labels(model_under_test, images) == _labels(model_under_test, images[:, :, ::-1].copy())
    assert same.mean() >= 0.90, f"{model_under_test.name}: {same.mean():.1%} of mirrored faces keep their label"


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
