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


def test_a_zenml_server_that_does_not_answer_is_named_at_once(tmp_path):
    """Logged in to a server that is gone: exit 2 in seconds with the two ways out, not ZenML's minute of retries."""
    import os
    import socket
    import subprocess
    import sys
    import time

    from tests.conftest import ROOT

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "ZENML_CONFIG_PATH": str(tmp_path / "zenml"), "ZENML_STORE_URL": f"http://127.0.0.1:{port}"}
    started = time.monotonic()
    done = subprocess.run([sys.executable, "run.py", "--pipeline", "ingest", "--config", "configs/smoke.yaml", "--data",
                           str(tmp_path)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and time.monotonic() - started < 30, done.stderr[-2000:]
    assert done.stderr.strip().splitlines()[-1] == (
        f"error: the ZenML server this machine is logged in to, http://127.0.0.1:{port}, does not answer ([Errno 111] "
        "Connection refused). Start it (`.venv/bin/zenml login --local` for the local dashboard), or go back to the "
        "local store (`.venv/bin/zenml logout`)")


@pytest.mark.parametrize("elsewhere", [True, False])
def test_the_project_folder_becomes_a_zenml_repository_unless_one_is_named_elsewhere(tmp_path, monkeypatch, elsewhere):
    """ZENML_REPOSITORY_PATH set (as the tests and a user with a repository of their own do): the project's folder is
    left alone (two test sessions once wrote and deleted its .zen under each other); unset: ``zenml init`` there."""
    from zenml.utils import source_utils

    import run

    project = tmp_path / "project"
    project.mkdir()
    monkeypatch.setattr(run, "ROOT", project)
    monkeypatch.setattr(stack_checks, "check_zenml_server", lambda: None)
    monkeypatch.setattr(source_utils, "set_custom_source_root", lambda root: None)  # the session's stays the project's
    if not elsewhere:
        monkeypatch.delenv("ZENML_REPOSITORY_PATH")
    run.ensure_zenml_repository()
    assert (project / ".zen").is_dir() is not elsewhere
