"""Scheduled retraining: a ZenML Schedule where the orchestrator supports one, else a crontab entry."""

from __future__ import annotations

import logging
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from zenml.client import Client
from zenml.config.schedule import Schedule

from fercore.config import Config
from fercore.errors import ConfigError, FerError

logger = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parents[1]
MARKER = "# fer-mlops:"


def validate_cron(cron: str) -> str:
    from croniter import croniter

    if not croniter.is_valid(cron):
        raise ConfigError(f"'{cron}' is not a valid cron expression (e.g. '0 3 * * 1' = Mondays 03:00)")
    return cron


def crontab_line(cron: str, pipeline_name: str, config_path: Path, data: str | None) -> str:
    """The crontab entry that reruns ``run.py`` from this project folder."""
    args = ["--pipeline", pipeline_name, "--config", str(config_path.resolve())] + (["--data", data] if data else [])
    log = ROOT / "logs" / f"{pipeline_name}.log"
    cmd = f"cd {shlex.quote(str(ROOT))} && mkdir -p logs && {shlex.quote(sys.executable)} run.py {shlex.join(args)} >> {shlex.quote(str(log))} 2>&1"
    return f"{cron} {cmd} {MARKER}{pipeline_name}"


def install_crontab_line(line: str, pipeline_name: str) -> None:
    """Adds ``line`` to the user's crontab, replacing an earlier entry of the same pipeline."""
    if shutil.which("crontab") is None:
        raise FerError(f"the local orchestrator cannot schedule and `crontab` is not installed. Add this line to "
                       f"your scheduler yourself, or use a schedulable orchestrator (e.g. Kubeflow):\n{line}")
    current = subprocess.run(["crontab", "-l"], capture_output=True, text=True).stdout
    kept = [entry for entry in current.splitlines() if not entry.endswith(f"{MARKER}{pipeline_name}")]
    subprocess.run(["crontab", "-"], input="\n".join([*kept, line]) + "\n", text=True, check=True)


def schedule_pipeline(pipeline, config: Config, cron: str, pipeline_name: str, config_path: Path,
                      data: str | None = None) -> str:
    """Schedules ``pipeline``; returns what was scheduled (the schedule name or the crontab line)."""
    validate_cron(cron)
    orchestrator = Client().active_stack.orchestrator
    if orchestrator.config.is_schedulable:
        name = f"{pipeline_name}-retrain"
        pipeline.with_options(schedule=Schedule(name=name, cron_expression=cron))(config=config)
        logger.info("Scheduled %s on orchestrator %s with cron '%s'", pipeline_name, orchestrator.name, cron)
        return name
    line = crontab_line(cron, pipeline_name, config_path, data)
    install_crontab_line(line, pipeline_name)
    logger.info("The %s orchestrator cannot schedule; installed a crontab entry:\n%s", orchestrator.flavor, line)
    return line
