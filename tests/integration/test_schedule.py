"""Scheduling's choice between a crontab entry (the local orchestrator) and a ZenML Schedule (a schedulable
orchestrator), with ZenML's client faked; the crontab logic itself is tested in tests/unit/test_crontab.py."""

from __future__ import annotations

from types import SimpleNamespace

from fercore import crontab as cron
from fercore.config import Config
from pipelines import schedule as sched


def _orchestrator(monkeypatch, schedulable: bool, schedules=()):
    orchestrator = SimpleNamespace(config=SimpleNamespace(is_schedulable=schedulable), name="o",
                                   flavor="kubeflow" if schedulable else "local")
    deleted = []
    monkeypatch.setattr(sched, "Client", lambda: SimpleNamespace(
        active_stack=SimpleNamespace(orchestrator=orchestrator),
        list_schedules=lambda name: SimpleNamespace(items=[s for s in schedules if s.name == name]),
        delete_schedule=deleted.append))
    return deleted


def test_the_local_orchestrator_gets_a_crontab_entry_and_unschedule_removes_it(monkeypatch, tmp_path):
    table = {"text": "0 1 * * * other job\n"}
    monkeypatch.setattr(cron.shutil, "which", lambda name: "/usr/bin/crontab")
    monkeypatch.setattr(cron.subprocess, "run", lambda cmd, input=None, **kw: SimpleNamespace(stdout=table["text"])
                        if cmd == ["crontab", "-l"] else table.update(text=input) or SimpleNamespace(stdout=""))
    _orchestrator(monkeypatch, schedulable=False)
    line = sched.schedule_pipeline(None, Config(), "0 3 * * 1", "train_all", tmp_path)
    assert table["text"].splitlines() == ["0 1 * * * other job", line] and (tmp_path / "train_all.yaml").exists()
    assert sched.unschedule("train_all", tmp_path) == [f"crontab entry {cron.MARKER}train_all",
                                                       str(tmp_path / "train_all.yaml")]
    assert table["text"].splitlines() == ["0 1 * * * other job"]


def test_a_schedulable_orchestrator_gets_a_zenml_schedule_and_unschedule_deletes_it(monkeypatch, tmp_path):
    calls = {}

    class FakePipeline:
        def with_options(self, schedule):
            calls["schedule"] = schedule
            return lambda config: calls.setdefault("config", config)

    monkeypatch.setattr(cron.shutil, "which", lambda name: None)  # no crontab on this machine: not needed
    deleted = _orchestrator(monkeypatch, schedulable=True, schedules=[SimpleNamespace(id=7, name="train_all-retrain")])
    name = sched.schedule_pipeline(FakePipeline(), Config(), "0 3 * * 1", "train_all", tmp_path)
    assert name == "train_all-retrain" and calls["schedule"].cron_expression == "0 3 * * 1"
    assert isinstance(calls["config"], Config)
    assert sched.unschedule("train_all", tmp_path) == ["ZenML schedule train_all-retrain", str(tmp_path / "train_all.yaml")]
    assert deleted == [7]
