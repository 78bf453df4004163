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


def test_an_unknown_key_names_the_set_that_made_it():
    with pytest.raises(ConfigError, match=r"foo: unknown key \(from --set foo\.bar=1\)"):
        run.build_config(run.parse_args(["--pipeline", "ingest", "--config", "configs/cpu.yaml", "--set", "foo.bar=1"]))


def test_an_empty_or_binary_config_is_named(tmp_path):
    empty, binary = tmp_path / "empty.yaml", tmp_path / "binary.yaml"
    empty.write_text("# nothing but a comment\n")
    binary.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(ConfigError, match=f"the config {empty} is empty: copy one from configs/"):
        run.build_config(run.parse_args(["--pipeline", "train_all", "--config", str(empty)]))
    with pytest.raises(ConfigError, match=f"{binary} is not a text YAML file"):
        run.build_config(run.parse_args(["--pipeline", "train_all", "--config", str(binary)]))


@pytest.mark.parametrize("overrides", [["contenders={}"], ["contenders.cnn.enabled=false", "contenders.vit.enabled=false"]])
def test_a_run_with_no_enabled_contender_is_refused_before_any_work(overrides):
    from pipelines.preflight import check_services

    sets = [word for item in overrides for word in ("--set", item)]
    config = run.build_config(run.parse_args(["--pipeline", "train_all", "--config", "configs/smoke.yaml", *sets]))
    with pytest.raises(ConfigError, match="configs/smoke.yaml: no enabled contender, so nothing would be trained"):
        check_services(config, "train_all", "configs/smoke.yaml")
