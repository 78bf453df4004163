"""``run.py``'s command line: what ``--help`` lists, and how ``--set`` and ``--data`` become config overrides."""

from __future__ import annotations

import pytest

import run
from fercore.errors import ConfigError


def test_help_lists_pipelines_and_options(capsys):
    with pytest.raises(SystemExit) as done:
        run.parse_args(["--help"])
    out = capsys.readouterr().out
    assert done.value.code == 0
    for word in ("ingest", "train_all", "monitor", "--config", "--data", "--schedule", "--no-cache"):
        assert word in out


def test_set_values_are_yaml_and_data_goes_where_the_pipeline_reads_it():
    args = run.parse_args(["--pipeline", "monitor", "--config", "configs/cpu.yaml", "--data", "new/",
                           "--set", "monitor.max_images=50", "--set", "contenders.vgg7.epochs=3"])
    config = run.build_config(args)
    assert config.monitor.data == "new/" and config.monitor.max_images == 50
    assert config.contenders["vgg7"].epochs == 3
    with pytest.raises(ConfigError, match="--set expects KEY=VALUE"):
        run.build_config(run.parse_args(["--pipeline", "ingest", "--set", "epochs"]))


def test_the_projects_own_errors_lose_their_traceback_in_zenmls_step_log():
    import logging
    import sys

    from fercore.errors import DataError

    def record(exc: BaseException) -> logging.LogRecord:
        try:
            raise exc
        except BaseException:
            return logging.LogRecord("zenml", logging.ERROR, __file__, 1, "step failed", None, sys.exc_info())

    quiet = run.QuietExpectedErrors()
    ours, other = record(DataError("a corrupt image")), record(ValueError("a bug"))
    assert quiet.filter(ours) and ours.exc_info is None  # the message says what is wrong
    assert quiet.filter(other) and other.exc_info is not None  # a bug keeps its traceback
