"""`run.py --pipeline ingest` through ZenML, in the temporary ZenML store of conftest."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import ROOT


def _run(*args: str, cwd=ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "run.py", *args], cwd=cwd, env=os.environ.copy(),
                          capture_output=True, text=True, timeout=600)


def test_ingest_pipeline_prints_counts(fer_tar, tmp_path):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("data:\n  val_fraction: 0.3333\n  cache_dir: %s\nrebalance:\n  method: resample\n" % (tmp_path / "c"))
    result = _run("--pipeline", "ingest", "--config", str(cfg), "--data", str(fer_tar))
    assert result.returncode == 0, result.stderr[-3000:]
    lines = {line.split()[0]: line.split()[1:] for line in result.stdout.splitlines() if line.strip()}
    assert lines["train"] == ["4"] * 7 + ["28"]
    assert lines["val"] == ["2"] * 7 + ["14"]
    assert lines["test"] == ["3"] * 7 + ["21"]
    assert lines["train:resample"][-1] == "28"


def test_bad_config_and_missing_data_fail_clearly(tmp_path):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("data:\n  colour: blue\n")
    result = _run("--pipeline", "ingest", "--config", str(cfg))
    assert result.returncode == 2 and "data.colour: unknown key" in result.stderr
    result = _run("--pipeline", "ingest", "--config", "configs/cpu.yaml", "--data", str(tmp_path / "nowhere"))
    assert result.returncode == 2 and "does not exist" in result.stderr


def test_kaggle_without_credentials_fails_before_the_pipeline(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAGGLE_")}
    env.update(KAGGLE_CONFIG_DIR=str(tmp_path / "kaggle"), FER_CACHE_DIR=str(tmp_path / "cache"))
    result = subprocess.run([sys.executable, "run.py", "--pipeline", "ingest", "--data", "kaggle", "--config",
                             "configs/cpu.yaml"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "Kaggle credentials are missing" in result.stderr
    assert "Initiating a new run" not in result.stdout + result.stderr
