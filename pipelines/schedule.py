"""Scheduled retraining: a ZenML Schedule where the orchestrator supports one, else a crontab entry.

Either way the run uses the configuration validated when the schedule was made: it is written,
resolved (``--set`` and ``--data`` applied, the MLflow store filled in), to
``schedules/<pipeline>.yaml``, and the crontab entry runs exactly that file.
"""

from __future__ import annotations

import logging
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

from zenml.client import Client
from zenml.config.schedule import Schedule

from fercore.config import Config
from fercore.errors import ConfigError, FerError
from fercore.safe_yaml import dump_plain

logger = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parents[1]
SCHEDULES = ROOT / "schedules"
MARKER = "# fer-mlops:"


def validate_cron(cron: str) -> str:
    from croniter import croniter

    if not croniter.is_valid(cron):
        raise ConfigError(f"'{cron}' is not a valid cron expression (e.g. '0 3 * * 1' = Mondays 03:00)")
    return cron


def schedule_name(pipeline_name: str) -> str:
    return f"{pipeline_name}-retrain"


def write_scheduled_config(config: Config, pipeline_name: str, cron: str, folder: Path = SCHEDULES) -> Path:
    """Writes the resolved config that the schedule runs; a local data path is made absolute."""
    data = config.model_dump(mode="json")
    if data["training"]["continue_from"] is None:  # scheduled runs continue where the last one stopped
        data["training"]["continue_from"] = "latest"
    source = Path(data["data"]["source"]).expanduser()
    if data["data"]["source"] != "kaggle" and source.exists():
        data["data"]["source"] = str(source.resolve())
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{pipeline_name}.yaml"
    header = (f"# The configuration of the schedule '{schedule_name(pipeline_name)}' (cron '{cron}'), resolved when it "
              f"was made ({time.strftime('%Y-%m-%d %H:%M')}).\n# Scheduled runs use exactly this file; "
              "`run.py --pipeline ... --schedule` rewrites it.\n")
    path.write_text(header + dump_plain(data, sort_keys=False))
    return path


def crontab_line(cron: str, pipeline_name: str, config_path: Path) -> str:
    """The crontab entry that reruns ``run.py`` from this project folder with the scheduled config."""
    args = ["--pipeline", pipeline_name, "--config", str(config_path.resolve())]
    log = ROOT / "logs" / f"{pipeline_name}.log"
    cmd = (f"cd {shlex.quote(str(ROOT))} && mkdir -p logs && {shlex.quote(sys.executable)} run.py {shlex.join(args)} "
           f">> {shlex.quote(str(log))} 2>&1")
    return f"{cron} {cmd} {MARKER}{pipeline_name}"


def _crontab() -> str:
    if shutil.which("crontab") is None:
        return ""
    return subprocess.run(["crontab", "-l"], capture_output=True, text=True).stdout


def _write_crontab(lines: list[str]) -> None:
    subprocess.run(["crontab", "-"], input="\n".join(lines) + ("\n" if lines else ""), text=True, check=True)


def install_crontab_line(line: str, pipeline_name: str) -> None:
    """Adds ``line`` to the user's crontab, replacing an earlier entry of the same pipeline."""
    if shutil.which("crontab") is None:
        raise FerError(f"the local orchestrator cannot schedule and `crontab` is not installed. Add this line to "
                       f"your scheduler yourself, or use a schedulable orchestrator (e.g. Kubeflow):\n{line}")
    kept = [entry for entry in _crontab().splitlines() if not entry.endswith(f"{MARKER}{pipeline_name}")]
    _write_crontab([*kept, line])


def schedule_pipeline(pipeline, config: Config, cron: str, pipeline_name: str, folder: Path = SCHEDULES) -> str:
    """Schedules ``pipeline`` with ``config``; returns what was scheduled (the schedule name or the crontab line)."""
    validate_cron(cron)
    path = write_scheduled_config(config, pipeline_name, cron, folder)
    orchestrator = Client().active_stack.orchestrator
    if orchestrator.config.is_schedulable:
        name = schedule_name(pipeline_name)
        pipeline.with_options(schedule=Schedule(name=name, cron_expression=cron))(config=config)
        logger.info("Scheduled %s on orchestrator %s with cron '%s' (config: %s)", pipeline_name, orchestrator.name,
                    cron, path)
        return name
    line = crontab_line(cron, pipeline_name, path)
    install_crontab_line(line, pipeline_name)
    logger.info("The %s orchestrator cannot schedule; installed a crontab entry:\n%s", orchestrator.flavor, line)
    return line


def unschedule(pipeline_name: str, folder: Path = SCHEDULES) -> list[str]:
    """Removes this project's crontab entry and ZenML schedule of ``pipeline_name``; returns what went."""
    removed = []
    current = _crontab().splitlines()
    kept = [entry for entry in current if not entry.endswith(f"{MARKER}{pipeline_name}")]
    if len(kept) != len(current):
        _write_crontab(kept)
        removed.append(f"crontab entry {MARKER}{pipeline_name}")
    client = Client()
    for schedule in client.list_schedules(name=schedule_name(pipeline_name)).items:
        client.delete_schedule(schedule.id)
        removed.append(f"ZenML schedule {schedule.name}")
    config = folder / f"{pipeline_name}.yaml"
    if config.exists():
        config.unlink()
        removed.append(str(config))
    return removed
