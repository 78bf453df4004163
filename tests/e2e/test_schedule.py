"""Scheduling: cron validation, the crontab entry for the local orchestrator, a ZenML Schedule otherwise."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from fercore.config import Config
from fercore.errors import ConfigError
from pipelines import schedule as sched
from tests.conftest import ROOT


def test_bad_cron_is_rejected():
    with pytest.raises(ConfigError, match="not a valid cron"):
        sched.validate_cron("every monday")


@pytest.fixture
def crontab(monkeypatch):
    """A fake user crontab (with another job and an old entry of ours) and a local orchestrator."""
    table = {"text": "0 1 * * * other job\n0 2 * * * old " + sched.MARKER + "train_all\n"}

    def fake_run(cmd, input=None, **kwargs):
        if cmd == ["crontab", "-l"]:
            return SimpleNamespace(stdout=table["text"])
        table["text"] = input
        return SimpleNamespace(stdout="")

    monkeypatch.setattr(sched.shutil, "which", lambda name: "/usr/bin/crontab")
    monkeypatch.setattr(sched.subprocess, "run", fake_run)
    orchestrator = SimpleNamespace(config=SimpleNamespace(is_schedulable=False), name="default", flavor="local")
    monkeypatch.setattr(sched, "Client", lambda: SimpleNamespace(
        active_stack=SimpleNamespace(orchestrator=orchestrator),
        list_schedules=lambda name: SimpleNamespace(items=[])))
    return table


def test_local_orchestrator_gets_an_idempotent_crontab_entry(crontab, tmp_path):
    line = sched.schedule_pipeline(None, Config(), "0 3 * * 1", "train_all", tmp_path)
    lines = crontab["text"].splitlines()
    assert lines[0] == "0 1 * * * other job" and lines[1] == line and len(lines) == 2
    assert line.startswith("0 3 * * 1 cd ") and "--pipeline train_all" in line
    assert f"--config {tmp_path / 'train_all.yaml'}" in line


def test_the_scheduled_run_uses_the_validated_config_with_its_set_overrides(crontab, tmp_path):
    import shlex

    from fercore.config import load_config

    data = tmp_path / "fer.tar.gz"
    data.write_bytes(b"")
    validated = load_config(ROOT / "configs" / "smoke.yaml", {"contenders.cnn.epochs": 7, "data.source": str(data),
                                                              "registry.tracking_uri": "sqlite:////x/mlflow.db"})
    line = sched.schedule_pipeline(None, validated, "0 3 * * 1", "train_all", tmp_path)
    words = shlex.split(line.split(" && ")[-1])  # python run.py --pipeline train_all --config PATH >> log
    assert "--set" not in words and "--data" not in words
    scheduled = load_config(words[words.index("--config") + 1])
    assert scheduled.contenders["cnn"].epochs == 7 and scheduled.data.source == str(data)
    # scheduled runs continue each contender from its latest version; the rest is the validated config
    assert scheduled.training.continue_from == "latest" and validated.training.continue_from is None
    assert scheduled.model_copy(update={"training": validated.training}) == validated
    explicit = validated.model_copy(update={"training": validated.training.model_copy(update={"continue_from": "none"})})
    sched.schedule_pipeline(None, explicit, "0 3 * * 1", "train_all", tmp_path)
    assert load_config(tmp_path / "train_all.yaml").training.continue_from == "none"  # an explicit choice stays


def test_unschedule_removes_the_entry_and_its_config(crontab, tmp_path):
    sched.schedule_pipeline(None, Config(), "0 3 * * 1", "train_all", tmp_path)
    removed = sched.unschedule("train_all", tmp_path)
    assert crontab["text"].splitlines() == ["0 1 * * * other job"]
    assert not (tmp_path / "train_all.yaml").exists() and len(removed) == 2
    assert sched.unschedule("train_all", tmp_path) == []


def test_missing_crontab_says_what_to_add(monkeypatch, tmp_path):
    from fercore.errors import FerError

    monkeypatch.setattr(sched.shutil, "which", lambda name: None)
    monkeypatch.setattr(sched, "Client", lambda: SimpleNamespace(active_stack=SimpleNamespace(
        orchestrator=SimpleNamespace(config=SimpleNamespace(is_schedulable=False), flavor="local"))))
    with pytest.raises(FerError, match="crontab. is not installed"):
        sched.schedule_pipeline(None, Config(), "0 3 * * 1", "train_all", tmp_path)


def test_schedulable_orchestrator_gets_a_zenml_schedule(monkeypatch, tmp_path):
    calls = {}

    class FakePipeline:
        def with_options(self, schedule):
            calls["schedule"] = schedule
            return lambda config: calls.setdefault("config", config)

    orchestrator = SimpleNamespace(config=SimpleNamespace(is_schedulable=True), name="kubeflow", flavor="kubeflow")
    monkeypatch.setattr(sched, "Client", lambda: SimpleNamespace(active_stack=SimpleNamespace(orchestrator=orchestrator)))
    name = sched.schedule_pipeline(FakePipeline(), Config(), "0 3 * * 1", "train_all", tmp_path)
    assert name == "train_all-retrain" and calls["schedule"].cron_expression == "0 3 * * 1"
