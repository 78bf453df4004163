"""The stack's MLflow tracker reaches the steps' client; the pre-run checks of a stack that runs steps elsewhere."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from fercore.config import Config
from fercore.errors import ConfigError
from pipelines import stack_checks


def test_the_stack_trackers_credentials_reach_the_mlflow_client(monkeypatch):
    from steps import common

    calls = []
    tracker = SimpleNamespace(flavor="mlflow", configure_mlflow=lambda: calls.append("configured"),
                              get_tracking_uri=lambda: "https://mlflow.example.com")
    monkeypatch.setattr(common, "Client", lambda: SimpleNamespace(active_stack=SimpleNamespace(
        experiment_tracker=tracker)))
    assert common.stack_tracking_uri() == "https://mlflow.example.com" and calls == ["configured"]


def test_monitoring_on_a_cluster_refuses_a_retrain_that_writes_faces_here(monkeypatch):
    from pipelines.preflight import check_services

    monkeypatch.setattr(stack_checks, "runs_here", lambda: False)
    config = Config()
    config.monitor.data, config.monitor.on_drift = "/data/new-faces", "retrain"  # read in the pods: not looked up
    with pytest.raises(ConfigError, match="monitor.on_drift: retrain writes the new faces .* on this machine"):
        check_services(config, "monitor", "configs/cpu.yaml")
