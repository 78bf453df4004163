"""Scheduled runs without a scheduling orchestrator: the resolved config a schedule runs, and the user's crontab
entry that runs it (ZenML-free: :mod:`pipelines.schedule` picks this or a ZenML schedule)."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

from croniter import croniter

from fercore.config import Config
from fercore.errors import ConfigError, FerError
from fercore.safe_yaml import dump_plain

ROOT = Path(__file__).resolve().parents[1]
SCHEDULES = ROOT / "schedules"
MARKER = "# fer-mlops:"


def validate_cron(cron: str) -> str:
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


def read_crontab() -> str:
    if shutil.which("crontab") is None:
        return ""
    return subprocess.run(["crontab", "-l"], capture_output=True, text=True).stdout


def write_crontab(lines: list[str]) -> None:
    subprocess.run(["crontab", "-"], input="\n".join(lines) + ("\n" if lines else ""), text=True, check=True)


def install_crontab_line(line: str, pipeline_name: str) -> None:
    """Adds ``line`` to the user's crontab, replacing an earlier entry of the same pipeline."""
    if shutil.which("crontab") is None:
        raise FerError(f"the local orchestrator cannot schedule and `crontab` is not installed. Add this line to "
                       f"your scheduler yourself, or use a schedulable orchestrator (e.g. Kubeflow):\n{line}")
    kept = [entry for entry in read_crontab().splitlines() if not entry.endswith(f"{MARKER}{pipeline_name}")]
    write_crontab([*kept, line])


def remove_crontab_line(pipeline_name: str) -> list[str]:
    """Removes this project's crontab entry of ``pipeline_name``; returns what went."""
    current = read_crontab().splitlines()
    kept = [entry for entry in current if not entry.endswith(f"{MARKER}{pipeline_name}")]
    if len(kept) == len(current):
        return []
    write_crontab(kept)
    return [f"crontab entry {MARKER}{pipeline_name}"]


def remove_scheduled_config(pipeline_name: str, folder: Path = SCHEDULES) -> list[str]:
    """Removes the config a schedule of ``pipeline_name`` ran; returns what went."""
    config = folder / f"{pipeline_name}.yaml"
    if not config.exists():
        return []
    config.unlink()
    return [str(config)]
