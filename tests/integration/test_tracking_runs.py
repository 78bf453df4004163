"""MLflow runs left RUNNING: a dead process's are marked KILLED by the next run of the same job, a live
process's never; a contender's run ends when its training does."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import mlflow
from mlflow import MlflowClient

from fercore.tracking.runs import (
    can_train_on,
    end_training,
    one_off_run,
    open_contender_run,
    reopen,
    resumed,
    set_phase,
    training_end,
)
from fercore.tracking.store import RunInfo
from tests.conftest import ROOT

HOLD = """
import sys, time
import mlflow

from fercore.tracking.runs import (can_train_on, end_training, one_off_run, open_contender_run, reopen, resumed,
                                   set_phase, training_end)
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


def test_a_contenders_run_lasts_its_training_and_registration_keeps_that_end(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run = open_contender_run(RunInfo(uri, "runs", "this"), "vgg7", {}, {})
    mlflow_client = MlflowClient(uri)
    end_training(run.run_id, uri)  # rung 1
    first = mlflow_client.get_run(run.run_id).info
    assert first.status == "FINISHED" and training_end(run.run_id) == first.end_time
    assert can_train_on(run.run_id, uri)
    reopen(run.run_id, uri)  # rung 2
    assert mlflow_client.get_run(run.run_id).info.status == "RUNNING"
    end_training(run.run_id, uri)
    ended = training_end(run.run_id)
    assert ended >= first.end_time
    with resumed(run, finish=True, end_time=ended) as run_id:  # registration: logging a model reopens the run
        with mlflow.start_run(run_id=run_id):
            mlflow.log_metric("registered", 1.0)
        set_phase(run_id, "registered")
    info = mlflow_client.get_run(run.run_id).info
    assert (info.status, info.end_time) == ("FINISHED", ended)  # MLflow's duration: the training time
    assert not can_train_on(run.run_id, uri)  # a later rung of another pipeline run opens a new run
    assert not can_train_on("0" * 32, uri)
    other = open_contender_run(RunInfo(uri, "runs", "this"), "resnet", {}, {})
    time.sleep(0.3)
    end_training(other.run_id, uri, training_s=0.1)  # other contenders' rungs ran between its own: not counted
    info = mlflow_client.get_run(other.run_id).info
    assert info.end_time - info.start_time == 100
