"""`run.py --pipeline ingest` through ZenML, in the temporary ZenML store of conftest."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import ROOT


def _run(*args: str, cwd=ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "run.py", *args], cwd=cwd, env=os.environ.copy(),
                          capture_output=True, text=True, timeout=600)


def test_ingest_pipeline_prints_counts(fer_tar, tmp_path, run_py):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("data:\n  validation: carve\n  val_fraction: 0.3333\n  cache_dir: %s\nrebalance:\n  method: resample\n"
                   % (tmp_path / "c"))
    result = _run("--pipeline", "ingest", "--config", str(cfg), "--data", str(fer_tar))
    assert result.returncode == 0, result.stderr[-3000:]
    lines = {line.split()[0]: line.split()[1:] for line in result.stdout.splitlines() if line.strip()}
    assert lines["train"] == ["4"] * 7 + ["28"]
    assert lines["val"] == ["2"] * 7 + ["14"]
    assert lines["test"] == ["3"] * 7 + ["21"]
    assert lines["train:resample"][-1] == "28"
    # again with --no-cache (in this process: no new interpreter needed): every step runs, the counts are the same
    again = run_py("--pipeline", "ingest", "--config", str(cfg), "--data", str(fer_tar), "--no-cache")
    assert again.returncode == 0 and "train:resample" in again.stdout
    from zenml.client import Client

    statuses = {s.status.value for s in Client().get_pipeline("fer_ingest").last_run.steps.values()}
    assert statuses == {"completed"}


def test_bad_config_and_missing_data_fail_clearly(tmp_path, run_py):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("data:\n  colour: blue\n")
    result = run_py("--pipeline", "ingest", "--config", str(cfg))
    assert result.returncode == 2 and "data.colour: unknown key" in result.stderr
    result = run_py("--pipeline", "ingest", "--config", "configs/cpu.yaml", "--data", str(tmp_path / "nowhere"))
    assert result.returncode == 2 and "does not exist" in result.stderr


def test_kaggle_without_credentials_fails_before_the_pipeline(tmp_path, run_py, monkeypatch):
    for key in [k for k in os.environ if k.startswith("KAGGLE_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(tmp_path / "kaggle"))
    monkeypatch.setenv("FER_CACHE_DIR", str(tmp_path / "cache"))
    result = run_py("--pipeline", "ingest", "--data", "kaggle", "--config", "configs/cpu.yaml")
    assert result.returncode == 2 and "Kaggle credentials are missing" in result.stderr
    assert "Initiating a new run" not in result.stdout + result.stderr
