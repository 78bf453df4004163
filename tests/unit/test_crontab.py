"""Scheduling without a scheduling orchestrator: cron validation, the scheduled config, the idempotent crontab entry
and its removal (the user's crontab faked: no subprocess runs)."""

from __future__ import annotations

import shlex
from types import SimpleNamespace

import pytest

from fercore import crontab as cron
from fercore.config import Config, load_config
from fercore.errors import ConfigError, FerError
from tests.conftest import ROOT


def test_bad_cron_is_rejected():
    with pytest.raises(ConfigError, match="not a valid cron"):
        cron.validate_cron("every monday")
    assert cron.validate_cron("0 3 * * 1") == "0 3 * * 1"


@pytest.fixture
def crontab(monkeypatch):
    """A fake user crontab holding another job and an old entry of ours."""
    table = {"text": "0 1 * * * other job\n0 2 * * * old " + cron.MARKER + "train_all\n"}

    def fake_run(cmd, input=None, **kwargs):
        if cmd == ["crontab", "-l"]:
            return SimpleNamespace(stdout=table["text"])
        assert cmd == ["crontab", "-"]
        table["text"] = input
        return SimpleNamespace(stdout="")

    monkeypatch.setattr(cron.shutil, "which", lambda name: "/usr/bin/crontab")
    monkeypatch.setattr(cron.subprocess, "run", fake_run)
    return table


def test_the_crontab_entry_replaces_our_old_one_and_keeps_the_others(crontab, tmp_path):
    path = cron.write_scheduled_config(Config(), "train_all", "0 3 * * 1", tmp_path)
    line = cron.crontab_line("0 3 * * 1", "train_all", path)
    cron.install_crontab_line(line, "train_all")
    cron.install_crontab_line(line, "train_all")  # twice: still one entry
    assert crontab["text"].splitlines() == ["0 1 * * * other job", line]
    assert line.startswith(f"0 3 * * 1 cd {ROOT} && mkdir -p logs && ") and line.endswith(f"{cron.MARKER}train_all")
    assert f"run.py --pipeline train_all --config {tmp_path / 'train_all.yaml'} >> {ROOT / 'logs' / 'train_all.log'}" in line


def test_the_scheduled_config_is_the_validated_one_continuing_from_the_latest_version(tmp_path):
    data = tmp_path / "fer.tar.gz"
    data.write_bytes(b"")
    validated = load_config(ROOT / "configs" / "smoke.yaml", {"contenders.cnn.epochs": 7, "data.source": str(data),
                                                              "registry.tracking_uri": "sqlite:////x/mlflow.db"})
    path = cron.write_scheduled_config(validated, "train_all", "0 3 * * 1", tmp_path)
    words = shlex.split(cron.crontab_line("0 3 * * 1", "train_all", path).split(" && ")[-1])
    assert "--set" not in words and "--data" not in words
    scheduled = load_config(words[words.index("--config") + 1])
    assert scheduled.contenders["cnn"].epochs == 7 and scheduled.data.source == str(data)
    # scheduled runs continue each contender from its latest version; the rest is the validated config
    assert scheduled.training.continue_from == "latest" and validated.training.continue_from is None
    assert scheduled.model_copy(update={"training": validated.training}) == validated
    explicit = validated.model_copy(update={"training": validated.training.model_copy(update={"continue_from": "none"})})
    cron.write_scheduled_config(explicit, "train_all", "0 3 * * 1", tmp_path)
    assert load_config(tmp_path / "train_all.yaml").training.continue_from == "none"  # an explicit choice stays


def test_removing_takes_our_entry_and_config_and_nothing_else(crontab, tmp_path):
    cron.write_scheduled_config(Config(), "train_all", "0 3 * * 1", tmp_path)
    assert cron.remove_crontab_line("train_all") == [f"crontab entry {cron.MARKER}train_all"]
    assert cron.remove_scheduled_config("train_all", tmp_path) == [str(tmp_path / "train_all.yaml")]
    assert crontab["text"].splitlines() == ["0 1 * * * other job"]
    assert cron.remove_crontab_line("train_all") == [] and cron.remove_scheduled_config("train_all", tmp_path) == []


def test_missing_crontab_says_what_to_add(monkeypatch):
    monkeypatch.setattr(cron.shutil, "which", lambda name: None)
    with pytest.raises(FerError, match="`crontab` is not installed. Add this line to your scheduler yourself"):
        cron.install_crontab_line("0 3 * * 1 x", "train_all")
