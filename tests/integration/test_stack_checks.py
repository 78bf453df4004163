"""A remote stack (non-local artifact store) must not log to a local MLflow file."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from fercore.config import Config
from fercore.errors import ConfigError
from pipelines import stack_checks


def _stack(monkeypatch, artifact_flavor: str, tracker=None):
    stack = SimpleNamespace(name="kf", artifact_store=SimpleNamespace(flavor=artifact_flavor),
                            experiment_tracker=tracker)
    monkeypatch.setattr(stack_checks, "Client", lambda: SimpleNamespace(active_stack=stack))


def _config(uri: str | None) -> Config:
    config = Config()
    config.registry.tracking_uri = uri
    return config


def test_the_local_stack_may_use_a_local_mlflow_file(monkeypatch):
    _stack(monkeypatch, "local")
    stack_checks.check_remote_stack(_config("sqlite:////tmp/mlflow.db"))


@pytest.mark.parametrize("uri", ["sqlite:////home/me/mlflow.db", "file:///tmp/mlruns", "/tmp/mlruns", None])
def test_a_remote_stack_with_a_local_mlflow_store_fails_saying_what_to_add(monkeypatch, uri):
    _stack(monkeypatch, "s3")
    with pytest.raises(ConfigError, match=r"stack 'kf' keeps artifacts in a s3 store.*no experiment tracker.*"
                                          r"zenml experiment-tracker register"):
        stack_checks.check_remote_stack(_config(uri))


def test_a_remote_stack_with_a_tracking_server_passes(monkeypatch):
    _stack(monkeypatch, "gcp", tracker=SimpleNamespace(name="mlflow"))
    stack_checks.check_remote_stack(_config("https://mlflow.example.com"))


def test_a_stack_running_steps_elsewhere_needs_a_zenml_server(monkeypatch):
    stack = SimpleNamespace(name="kf", requires_remote_server=True, orchestrator=SimpleNamespace(flavor="kubeflow"),
                            artifact_store=SimpleNamespace(flavor="s3"), experiment_tracker=None)
    client = SimpleNamespace(active_stack=stack, zen_store=SimpleNamespace(is_local_store=lambda: True))
    monkeypatch.setattr(stack_checks, "Client", lambda: client)
    with pytest.raises(ConfigError, match=r"stack 'kf' runs steps on other machines.*zenml login"):
        stack_checks.check_remote_stack(_config("https://mlflow.example.com"))


def test_the_stack_trackers_credentials_reach_the_mlflow_client(monkeypatch):
    from steps import common

    calls = []
    tracker = SimpleNamespace(flavor="mlflow", configure_mlflow=lambda: calls.append("configured"),
                              get_tracking_uri=lambda: "https://mlflow.example.com")
    monkeypatch.setattr(common, "Client", lambda: SimpleNamespace(active_stack=SimpleNamespace(
        experiment_tracker=tracker)))
    assert common.stack_tracking_uri() == "https://mlflow.example.com" and calls == ["configured"]


def test_monitoring_on_a_cluster_refuses_a_retrain_that_writes_faces_here(monkeypatch):
    import run

    monkeypatch.setattr(stack_checks, "runs_here", lambda: False)
    config = Config()
    config.monitor.data, config.monitor.on_drift = "/data/new-faces", "retrain"  # read in the pods: not looked up
    with pytest.raises(ConfigError, match="monitor.on_drift: retrain writes the new faces .* on this machine"):
        run.check_services(config, "monitor", "configs/cpu.yaml")
