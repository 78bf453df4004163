"""Drift reports (Evidently): of image statistics, of embeddings and of predicted classes."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.slow  # Evidently: seconds to import and to compute a report


def test_drift_detected_on_darkened_images_not_on_a_resample():
    from fercore.monitoring.drift import data_drift, image_statistics
    from tests.conftest import synthetic

    images = synthetic(per_class=60, test_per_class=1).images
    rng = np.random.default_rng(0)
    half = rng.permutation(len(images))
    reference, resample = images[half[:200]], images[half[200:]]
    same = data_drift(reference, resample, max_images=200)
    assert not same.dataset_drift and same.drift_share < 0.5
    dark = data_drift(reference, (resample * 0.4).astype(np.uint8), max_images=200, about=("the train faces", "darker"))
    assert dark.dataset_drift and dark.drift_share >= 0.5 and "<html" in dark.html.lower()
    # the light view: what is compared, each statistic's test, the verdict
    assert [c.column for c in dark.columns] == ["brightness", "contrast", "sharpness", "dark_fraction", "bright_fraction"]
    brightness = dark.columns[0]
    assert brightness.drifted and brightness.value < brightness.threshold and "p_value" in brightness.method
    view = dark.markdown("Image drift")
    assert view.startswith("### Image drift\n\nReference: the train faces; current: darker.\n\n| column | test |")
    assert "| brightness | K-S p_value |" in view and f"Share of drifted columns {dark.drift_share:.2f}: drift." in view
    assert set(image_statistics(images[:2]).columns) >= {"brightness", "contrast", "sharpness"}


def test_embedding_and_prediction_drift():
    from fercore.monitoring.drift import data_drift, prediction_drift

    rng = np.random.default_rng(1)
    images = rng.integers(0, 255, (300, 48, 48), dtype=np.uint8)
    emb = rng.normal(size=(300, 8))
    shifted = data_drift(images[:150], images[150:], emb[:150], emb[150:] + 2.0, max_images=150)
    assert shifted.embedding_drift and shifted.embedding_drift_score > 0.55
    same = data_drift(images[:150], images[150:], emb[:150], emb[150:], max_images=150)
    assert same.embedding_drift is False
    assert prediction_drift(["happy"] * 50 + ["sad"] * 50, ["happy"] * 95 + ["sad"] * 5).dataset_drift
    assert not prediction_drift(["happy", "sad"] * 50, ["sad", "happy"] * 50).dataset_drift


