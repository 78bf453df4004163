"""Scheduled retraining: a ZenML Schedule where the orchestrator supports one, else a crontab entry.

Either way the run uses the configuration validated when the schedule was made: it is written,
resolved (``--set`` and ``--data`` applied, the MLflow store filled in), to
``schedules/<pipeline>.yaml``, and the crontab entry runs exactly that file.
"""

from __future__ import annotations

import logging
from pathlib import Path

from zenml.client import Client
from zenml.config.schedule import Schedule

from fercore.config import Config
from fercore.crontab import (
    SCHEDULES,
    crontab_line,
    install_crontab_line,
    remove_crontab_line,
    remove_scheduled_config,
    schedule_name,
    validate_cron,
    write_scheduled_config,
)

logger = logging.getLogger(__name__)


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
    removed = remove_crontab_line(pipeline_name)
    client = Client()
    for schedule in client.list_schedules(name=schedule_name(pipeline_name)).items:
        client.delete_schedule(schedule.id)
        removed.append(f"ZenML schedule {schedule.name}")
    return removed + remove_scheduled_config(pipeline_name, folder)
