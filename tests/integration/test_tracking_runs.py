"""MLflow runs left RUNNING: a dead process's are marked KILLED by the next run of the same job, a live
process's never."""

from __future__ import annotations

import os
import subprocess
import sys

from mlflow import MlflowClient

from fercore.tracking.runs import one_off_run
from fercore.tracking.store import RunInfo
from tests.conftest import ROOT

HOLD = """
import sys, time
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
