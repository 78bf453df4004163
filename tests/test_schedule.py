"""Scheduling: cron validation, the crontab entry for the local orchestrator, a ZenML Schedule otherwise."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from fercore.config import Config
from fercore.errors import ConfigError
from pipelines import schedule as sched


def test_bad_cron_is_rejected():
    with pytest.raises(ConfigError, match="not a valid cron"):
        sched.validate_cron("every monday")


def test_local_orchestrator_gets_an_idempotent_crontab_entry(monkeypatch, tmp_path):
    crontab = {"text": "0 1 * * * other job\n0 2 * * * old " + sched.MARKER + "train_all\n"}

    def fake_run(cmd, input=None, **kwargs):
        if cmd == ["crontab", "-l"]:
            return SimpleNamespace(stdout=crontab["text"])
        crontab["text"] = input
        return SimpleNamespace(stdout="")

    monkeypatch.setattr(sched.shutil, "which", lambda name: "/usr/bin/crontab")
    monkeypatch.setattr(sched.subprocess, "run", fake_run)
    line = sched.schedule_pipeline(None, Config(), "0 3 * * 1", "train_all", Path("configs/cpu.yaml"), "/data/fer.tar.gz")
    lines = crontab["text"].splitlines()
    assert lines[0] == "0 1 * * * other job" and lines[1] == line and len(lines) == 2
    assert line.startswith("0 3 * * 1 cd ") and "--pipeline train_all" in line and "--data /data/fer.tar.gz" in line


def test_missing_crontab_says_what_to_add(monkeypatch):
    from fercore.errors import FerError

    monkeypatch.setattr(sched.shutil, "which", lambda name: None)
    with pytest.raises(FerError, match="crontab. is not installed"):
        sched.schedule_pipeline(None, Config(), "0 3 * * 1", "train_all", Path("configs/cpu.yaml"))


def test_schedulable_orchestrator_gets_a_zenml_schedule(monkeypatch):
    calls = {}

    class FakePipeline:
        def with_options(self, schedule):
            calls["schedule"] = schedule
            return lambda config: calls.setdefault("config", config)

    orchestrator = SimpleNamespace(config=SimpleNamespace(is_schedulable=True), name="kubeflow", flavor="kubeflow")
    monkeypatch.setattr(sched, "Client", lambda: SimpleNamespace(active_stack=SimpleNamespace(orchestrator=orchestrator)))
    name = sched.schedule_pipeline(FakePipeline(), Config(), "0 3 * * 1", "train_all", Path("configs/cpu.yaml"))
    assert name == "train_all-retrain" and calls["schedule"].cron_expression == "0 3 * * 1"
