"""Retraining triggered when monitored images drift (the pipeline trigger mocked)."""

from __future__ import annotations

import numpy as np
from PIL import Image

from fercore.config import Config
from fercore.constants import CLASS_NAMES
from pipelines.monitor import after_monitoring


def _retraining(tmp_path):
    """One labelled face per class under ``tmp_path/new``, and a config that retrains on drift from them."""
    data = tmp_path / "new"
    for label, name in enumerate(CLASS_NAMES):
        (data / name).mkdir(parents=True)
        Image.fromarray(np.full((48, 48), 30 * label, np.uint8)).save(data / name / "x.png")
    return data, Config().model_copy(update={"monitor": Config().monitor.model_copy(update={
        "data": str(data), "on_drift": "retrain", "incoming_dir": str(tmp_path / "incoming")})})


def test_drift_with_retrain_starts_training_on_the_labelled_batch(tmp_path):
    _, config = _retraining(tmp_path)
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


def test_the_same_faces_monitored_again_write_no_second_batch(tmp_path, caplog):
    import logging

    data, config = _retraining(tmp_path)
    started = []
    caplog.set_level(logging.INFO, "pipelines.monitor")
    for _ in range(2):
        assert after_monitoring(config, {"drifted": True}, started.append)
    first, second = [r.getMessage() for r in caplog.records if r.name == "pipelines.monitor"]
    assert first.startswith("Drift detected: retraining with the new batch ")
    assert "are the batch" in second and "(no new batch)" in second and "new batch " not in second
    assert [p.name.startswith("monitor-") for p in (tmp_path / "incoming").iterdir()] == [True]  # one, no partial
    Image.fromarray(np.full((48, 48), 7, np.uint8)).save(data / "sad" / "y.png")  # a new face: a new batch
    import time

    time.sleep(1.1)  # batch folders are named by the second
    assert after_monitoring(config, {"drifted": True}, started.append)
    assert len(list((tmp_path / "incoming").iterdir())) == 2


def test_a_retrain_from_kaggle_without_credentials_is_refused_before_monitoring(tmp_path, monkeypatch):
    import pytest

    from fercore.errors import DataError
    from pipelines.preflight import check_services

    for key in ("KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_API_TOKEN"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.kaggle/kaggle.json
    monkeypatch.delenv("KAGGLE_CONFIG_DIR", raising=False)
    (tmp_path / "new").mkdir()
    Image.fromarray(np.full((48, 48), 9, np.uint8)).save(tmp_path / "new" / "a.png")
    config = Config().model_copy(update={"monitor": Config().monitor.model_copy(update={
        "data": str(tmp_path / "new"), "on_drift": "retrain"})})
    assert config.data.source == "kaggle"
    with pytest.raises(DataError, match="Kaggle credentials are missing"):
        check_services(config, "monitor", "configs/cpu.yaml")
