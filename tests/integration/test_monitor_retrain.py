"""Retraining triggered when monitored images drift (the pipeline trigger mocked)."""

from __future__ import annotations

import numpy as np
from PIL import Image

from fercore.config import Config
from fercore.constants import CLASS_NAMES
from pipelines.monitor import after_monitoring


def test_drift_with_retrain_starts_training_on_the_labelled_batch(tmp_path):
    data = tmp_path / "new"
    for label, name in enumerate(CLASS_NAMES):
        (data / name).mkdir(parents=True)
        Image.fromarray(np.full((48, 48), 30 * label, np.uint8)).save(data / name / "x.png")
    config = Config().model_copy(update={"monitor": Config().monitor.model_copy(update={
        "data": str(data), "on_drift": "retrain", "incoming_dir": str(tmp_path / "incoming")})})
    started = []
    assert after_monitoring(config, {"drifted": True}, started.append)
    assert len(started) == 1 and started[0].data.incoming == [str(tmp_path / "incoming")]
    from fercore.data.incoming import batch_paths, read_batch

    (batch,) = batch_paths(started[0].data.incoming)
    images, labels, *_ = read_batch(batch)
    assert len(images) == 7 and sorted(labels.tolist()) == list(range(7))
    assert not after_monitoring(config, {"drifted": False}, started.append)
    report_only = config.model_copy(update={"monitor": config.monitor.model_copy(update={"on_drift": "report"})})
    assert not after_monitoring(report_only, {"drifted": True}, started.append) and len(started) == 1
