"""Failing early and cleanly through `run.py`: bad data, bad overrides, a dead server, a killed run."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

from tests.conftest import ROOT


def _run(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "run.py", *args], cwd=ROOT, env=os.environ.copy(), capture_output=True,
                          text=True, timeout=timeout)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens here once the socket is closed


def test_a_bad_set_value_names_the_set_argument(run_py):
    result = run_py("--pipeline", "ingest", "--config", "configs/smoke.yaml", "--set", "contenders.cnn.epochs=abc")
    assert result.returncode == 2
    assert "contenders.cnn.epochs: Input should be a valid integer" in result.stderr
    assert "(from --set contenders.cnn.epochs=abc)" in result.stderr and "Traceback" not in result.stderr
    result = run_py("--pipeline", "ingest", "--config", "configs/smoke.yaml", "--set", "contenders.cnn.epochs")
    assert result.returncode == 2 and "--set expects KEY=VALUE" in result.stderr


def test_a_partial_download_stops_before_the_pipeline(fer_tar, tmp_path, run_py):
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(fer_tar.read_bytes()[: fer_tar.stat().st_size // 2])
    result = run_py("--pipeline", "ingest", "--config", "configs/smoke.yaml", "--data", str(cut))
    assert result.returncode == 2 and "the archive ends early" in result.stderr and "download it again" in result.stderr
    assert "Traceback" not in result.stdout + result.stderr and "Initiating a new run" not in result.stdout


def test_a_data_error_inside_a_step_exits_2_without_a_traceback_and_verbose_ends_with_it(fer_tree, tmp_path):
    """``--verbose`` keeps the traceback (tests/unit/test_cli.py checks the filter that drops it) and still ends
    with the error."""
    (fer_tree / "train" / "fear" / "Training_bad.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    result = _run("--pipeline", "ingest", "--config", "configs/smoke.yaml", "--data", str(fer_tree),
                  "--set", f"data.cache_dir={tmp_path / 'cache'}")
    output = result.stdout + result.stderr
    assert result.returncode == 2, output[-3000:]
    assert "error in step ingest_data: " in result.stderr and "train/fear/Training_bad.jpg" in result.stderr
    assert "Traceback" not in output
    verbose = subprocess.run(  # one stream, as on a console: the traceback, then the error and its fix, last
        [sys.executable, "run.py", "--pipeline", "ingest", "--config", "configs/smoke.yaml", "--data", str(fer_tree),
         "--set", f"data.cache_dir={tmp_path / 'cache'}", "--verbose"], cwd=ROOT, env=os.environ.copy(),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600)
    lines = verbose.stdout.strip().splitlines()
    assert verbose.returncode == 2 and "Traceback" in verbose.stdout, verbose.stdout[-3000:]
    assert lines[-1].startswith("error in step ingest_data: ") and "train/fear/Training_bad.jpg" in lines[-1], lines[-5:]


def test_an_unreachable_tracking_server_is_reported_before_any_step(fer_tree, run_py):
    uri = f"http://127.0.0.1:{_closed_port()}"
    start = time.monotonic()
    result = run_py("--pipeline", "train_all", "--config", "configs/smoke.yaml", "--data", str(fer_tree),
                  "--set", f"registry.tracking_uri={uri}")
    assert result.returncode == 2, (result.stdout + result.stderr)[-3000:]
    assert f"MLflow tracking server {uri} is unreachable" in result.stderr
    assert "Initiating a new run" not in result.stdout + result.stderr
    assert time.monotonic() - start < 60


def test_a_killed_training_run_is_marked_and_resumed_into_the_same_mlflow_run(fer_tree, tmp_path):
    """SIGKILL during training; the rerun marks the dead ZenML run failed and continues the MLflow run."""
    from mlflow import MlflowClient
    from zenml.client import Client

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    ckpt = tmp_path / "ckpt"
    args = [sys.executable, "run.py", "--pipeline", "train_all", "--config", "configs/smoke.yaml", "--data",
            str(fer_tree), "--set", "contenders.cnn.epochs=60", "--set", "contenders.cnn.patience=100",
            "--set", "contenders.vit.enabled=false",
            "--set", "promotion.enabled=false", "--set", f"registry.tracking_uri={uri}",
            "--set", f"checkpoint_dir={ckpt}", "--set", f"data.cache_dir={tmp_path / 'cache'}"]
    proc = subprocess.Popen(args, cwd=ROOT, env=os.environ.copy(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not list(ckpt.glob("cnn/*/last.pt")) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(0.5)  # a few more epochs
    assert proc.poll() is None, "training ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("fer2013-emotion")
    killed = {r.info.run_name: r for r in client.search_runs([experiment.experiment_id])}
    assert {n: r.info.status for n, r in killed.items()} == {"train-cnn": "RUNNING", "training": "RUNNING"}
    epochs_before = len(client.get_metric_history(killed["training"].info.run_id, "loss/train"))
    assert Client().get_pipeline("fer_train_all").last_run.status.value == "running"
    dead_run = Client().get_pipeline("fer_train_all").last_run.id

    result = subprocess.run(args, cwd=ROOT, env=os.environ.copy(), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert "Marked pipeline run" in result.stdout + result.stderr
    assert Client().get_pipeline_run(dead_run).status.value == "failed"
    runs = {r.info.run_name: r for r in client.search_runs([experiment.experiment_id])}
    assert sorted(runs) == ["evaluate", "train-cnn", "training"]
    for name in ("train-cnn", "training"):  # the contender's run and its training's nested run, both resumed
        assert runs[name].info.run_id == killed[name].info.run_id, f"the epochs went into the same {name} run"
        assert runs[name].info.status == "FINISHED" and runs[name].data.tags["fer.resumed_by_zenml_run"]
    steps = [m.step for m in client.get_metric_history(runs["training"].info.run_id, "loss/train")]
    # one history from epoch 1 to 60 (an epoch checkpointed in the instant before the kill can miss its point)
    assert len(steps) > epochs_before and min(steps) == 1 and max(steps) == 60 and len(set(steps)) >= 59


def test_monitor_refuses_a_missing_path_an_empty_folder_and_a_missing_champion_before_the_pipeline(tmp_path, run_py):
    from PIL import Image

    (tmp_path / "empty").mkdir()
    faces = tmp_path / "faces"
    faces.mkdir()
    Image.new("L", (48, 48), 90).save(faces / "a.png")
    cases = [([str(tmp_path / "nowhere")], "nowhere does not exist"), ([str(tmp_path / "empty")], "empty holds no images"),
             ([str(faces), "--set", "registry.model_name=never-trained"],
              "models:/never-trained@champion: the registry at")]
    for args, fragment in cases:
        result = run_py("--pipeline", "monitor", "--data", *args)
        assert result.returncode == 2 and fragment in result.stderr, result.stderr[-2000:]
        assert "Traceback" not in result.stderr and "Initiating a new run" not in result.stdout


def test_a_cluster_config_on_the_local_stack_names_the_stack_and_the_fix(fer_tree, run_py):
    result = run_py("--pipeline", "train_all", "--config", "configs/kubeflow.yaml", "--data", str(fer_tree))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "configs/kubeflow.yaml is for a stack that runs steps in containers" in result.stderr
    assert "the active ZenML stack 'default' runs them in this process (orchestrator: local)" in result.stderr
    assert "zenml stack set" in result.stderr and "secret" not in result.stderr


def test_a_second_train_all_on_the_same_stores_is_refused_while_the_first_runs(fer_tree, run_py):
    hold = ("import time\nfrom pipelines.run_guard import one_run_of\nwith one_run_of('fer_train_all'):\n"
            "    print('held', flush=True)\n    time.sleep(120)\n")
    holder = subprocess.Popen([sys.executable, "-c", hold], cwd=ROOT, env=os.environ.copy(), stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True)
    try:
        next(line for line in iter(holder.stdout.readline, "") if line.strip() == "held")  # after ZenML's lines
        result = run_py("--pipeline", "train_all", "--config", "configs/smoke.yaml", "--data", str(fer_tree))
    finally:
        holder.kill()
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"another fer_train_all run is in progress on these stores (pid {holder.pid}, started " in result.stderr
    assert "wait for it to finish, or stop it" in result.stderr and "Initiating a new run" not in result.stdout
