"""MLflow runs left RUNNING: a dead process's are marked KILLED by the next run of the same job, a live
process's never; a contender's rungs and evaluation are nested runs with real start and end times."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import mlflow
from mlflow import MlflowClient

from fercore.tracking.runs import (
    OWNER_TAG,
    can_train_on,
    child_runs,
    log_metrics,
    one_off_run,
    open_child_run,
    open_contender_run,
    resumed,
    set_phase,
)
from fercore.tracking.store import RunInfo
from tests.conftest import ROOT

HOLD = """
import sys, time
import mlflow

from fercore.tracking.runs import one_off_run
from fercore.tracking.store import RunInfo
with one_off_run(RunInfo(sys.argv[1], "runs", "other"), "register-routed", {}, {}) as run_id:
    print(run_id, flush=True)
    time.sleep(120)
"""


def _holder(uri: str) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, uri], cwd=ROOT, env=os.environ.copy(), stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    return proc, proc.stdout.readline().strip()


def test_a_one_off_run_left_running_by_a_killed_process_is_marked_killed_and_a_live_ones_is_not(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    info = RunInfo(uri, "runs", "this")
    live, live_run = _holder(uri)
    try:
        with one_off_run(info, "register-routed", {}, {}):
            pass
        assert MlflowClient(uri).get_run(live_run).info.status == "RUNNING"  # its process still works in it
        live.kill()  # SIGKILL: no handler closes its run
        live.wait(timeout=30)
        assert MlflowClient(uri).get_run(live_run).info.status == "RUNNING"
        with one_off_run(info, "register-routed", {}, {}) as run_id:
            pass
        dead = MlflowClient(uri).get_run(live_run)
        assert dead.info.status == "KILLED"
        assert dead.data.tags["fer.killed_reason"] == f"left RUNNING by a killed process; see run {run_id}"
        assert MlflowClient(uri).get_run(run_id).info.status == "FINISHED"
    finally:
        live.kill()


def test_a_contenders_rungs_and_evaluation_are_nested_runs_with_real_times(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    info = RunInfo(uri, "runs", "this", "zenml-1")
    run = open_contender_run(info, "vgg7", {}, {"fer.phase": "training"})
    mlflow_client = MlflowClient(uri)
    for name in ("rung-1", "rung-2", "evaluate"):
        with resumed(uri, run), resumed(uri, open_child_run(run, info, name, "job" if name != "evaluate" else None),
                                   finish=True) as child:
            time.sleep(0.05)
            log_metrics(uri, child, {"loss/train": 1.0})
            log_metrics(uri, run.run_id, {"loss/train": 1.0})
        assert mlflow_client.get_run(run.run_id).info.status == "RUNNING"  # the contender's job goes on
        assert can_train_on(uri, run.run_id)
    with resumed(uri, run, finish=True) as run_id:  # registration: the model is logged against the contender's run
        mlflow.set_tracking_uri(uri)  # MLflow's fluent API, in the test
        with mlflow.start_run(run_id=run_id):
            mlflow.log_metric("registered", 1.0)
        set_phase(uri, run_id, "registered")
    parent = mlflow_client.get_run(run.run_id).info
    children = child_runs(uri, run.run_id)
    assert [c.name for c in children] == ["rung-1", "rung-2", "evaluate"]
    for c in children:  # each ends when its work ended: at or after its last metric, at or before the parent's end
        last = max(m.timestamp for m in mlflow_client.get_metric_history(c.run_id, "loss/train"))
        assert c.status == "FINISHED" and c.start_time <= last <= c.end_time <= parent.end_time
        assert c.tags["mlflow.parentRunId"] == run.run_id and c.tags["zenml_run_id"] == "zenml-1"
    assert children[0].end_time <= children[1].start_time  # one after the other, never overlapping
    assert parent.status == "FINISHED" and parent.start_time <= children[0].start_time
    assert not can_train_on(uri, run.run_id)  # a later rung of another pipeline run opens a new run
    assert not can_train_on(uri, "0" * 32)


def test_a_killed_rung_resumes_in_its_own_nested_run(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    info = RunInfo(uri, "runs", "this")
    run = open_contender_run(info, "vgg7", {}, {})
    killed = open_child_run(run, info, "rung-1", "job-a")
    MlflowClient(uri).set_tag(killed, OWNER_TAG, "another-host:1")  # its process is gone
    assert open_child_run(run, info, "rung-1", "job-a", resume=True) == killed  # its epochs stay in one run
    other = open_child_run(run, info, "rung-2", "job-a")
    assert other != killed and MlflowClient(uri).get_run(killed).info.status == "RUNNING"


def test_the_printed_run_link_opens_mlflows_model_training_view(tmp_path):
    from fercore.tracking.store import run_url

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    with one_off_run(RunInfo(uri, "runs", "this"), "promote", {}, {}) as run_id:
        pass
    experiment = MlflowClient(uri).get_run(run_id).info.experiment_id
    # MLflow 3.17's UI takes the view from the URL's workflowType (a fresh browser would open the GenAI overview)
    assert run_url(uri, run_id) == f"http://127.0.0.1:5000/#/experiments/{experiment}/runs/{run_id}?workflowType=machine_learning"


def test_two_stores_in_one_process_stay_apart_and_mlflows_own_uri_is_left_alone(tmp_path, monkeypatch):
    """Every adapter call names its store: registering into one store and reading another in the same process
    never mixes them, and MLflow's process-wide URI (and ``MLFLOW_TRACKING_URI``, which subprocesses inherit) is
    as the process had it before (``connect`` used to set both)."""
    import numpy as np

    from fercore.models import build_cnn, save_model
    from fercore.serving.pyfunc import FerEmotionModel
    from fercore.tracking import registry
    from fercore.tracking.store import connect

    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///" + str(tmp_path / "users-own.db"))
    before = mlflow.get_tracking_uri()
    stores = [f"sqlite:///{tmp_path / name}" for name in ("a.db", "b.db")]
    for i, uri in enumerate(stores):
        run_id = MlflowClient(uri).create_run(connect(uri, "two")).info.run_id
        folder = save_model(build_cnn("vgg7", width=8).eval(), tmp_path / f"m{i}")
        for _ in range(i + 1):  # a: one version, b: two
            registry.log_and_register(uri, run_id, FerEmotionModel(), {"model": str(folder)}, "m", {"family": "cnn"},
                                      "", np.zeros((2, 48, 48), np.uint8), model_config={"tta": "none"})
    assert [len(registry.versions(uri, "m")) for uri in stores] == [1, 2]
    assert mlflow.get_tracking_uri() == before and os.environ["MLFLOW_TRACKING_URI"].endswith("users-own.db")
