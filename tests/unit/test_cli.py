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


def _bomb(levels: int = 9) -> str:
    """A "billion laughs" YAML: each anchor repeats the one before it nine times."""
    lines = ['l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, levels)]
    return "\n".join(lines)


def test_an_alias_anywhere_in_the_file_is_refused_before_it_expands(tmp_path):
    config = (tmp_path / "bomb.yaml")
    base = (run.ROOT / "configs" / "smoke.yaml").read_text()
    # the probe's case: inside a field typed Any, where no schema would look at its size
    config.write_text(base + "\nresources:\n  gpu_tolerations:\n    - x: &l0 [lol, lol, lol]\n      y: [*l0, *l0]\n")
    with pytest.raises(ConfigError, match=rf"{config} cannot be read as a config: anchors \(&name\) and aliases "
                       rf"\(\*name\) are not allowed here(?s:.*)in \"{config}\", line 32"):
        run.build_config(run.parse_args(["--pipeline", "train_all", "--config", str(config)]))
    config.write_text(_bomb())
    with pytest.raises(ConfigError, match=f"{config} cannot be read as a config: anchors"):
        run.build_config(run.parse_args(["--pipeline", "train_all", "--config", str(config)]))
    with pytest.raises(ConfigError, match="--set resources.gpu_tolerations=.*anchors"):
        run.build_config(run.parse_args(["--pipeline", "train_all", "--config", "configs/smoke.yaml",
                                         "--set", "resources.gpu_tolerations=[&a [1], *a]"]))


def test_a_deeply_nested_config_is_named_not_a_recursion_error(tmp_path):
    config = tmp_path / "deep.yaml"
    config.write_text("data:\n  incoming: " + "[" * 100_000 + "]" * 100_000 + "\n")
    with pytest.raises(ConfigError, match=f"{config} cannot be read as a config: nested deeper than 32 levels"):
        run.build_config(run.parse_args(["--pipeline", "train_all", "--config", str(config)]))


def test_a_scheduled_config_is_written_without_aliases_and_reads_back():
    from fercore.config import load_config
    from fercore.safe_yaml import dump_plain, load_bounded

    shared = ["a", "b"]
    assert load_bounded(dump_plain({"x": shared, "y": shared})) == {"x": shared, "y": shared}
    config = load_config(run.ROOT / "configs" / "cpu.yaml")
    assert load_bounded(dump_plain(config.model_dump(mode="json"), sort_keys=False)) == config.model_dump(mode="json")
