"""Bookkeeping of local pipeline runs: runs left "running" by a killed process, and why a run failed."""

from __future__ import annotations

import fcntl
import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from zenml.client import Client
from zenml.config.global_config import GlobalConfiguration
from zenml.enums import ExecutionStatus
from zenml.models import PipelineRunUpdate, StepRunUpdate

from fercore.errors import BusyError

logger = logging.getLogger(__name__)
UNFINISHED = (ExecutionStatus.INITIALIZING, ExecutionStatus.PROVISIONING, ExecutionStatus.QUEUED,
              ExecutionStatus.RUNNING)


def _lock_path() -> Path:
    return Path(GlobalConfiguration().config_directory) / "fer-local-runs.lock"


@contextmanager
def local_run_guard(pipeline_name: str) -> Iterator[int]:
    """Held by every ``run.py`` process while it runs a pipeline on the local orchestrator; a second run of
    the same pipeline on the same stores is refused (:func:`one_run_of`).

    Each process holds a shared lock on a file beside ZenML's store; the OS drops it when the process
    dies, even by SIGKILL. A process that gets the lock exclusively knows no other run is alive, so
    local runs of ``pipeline_name`` still marked unfinished were left by a killed process: they are
    marked failed. Yields the number of runs so marked.
    """
    path = _lock_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    with one_run_of(pipeline_name), open(path, "a") as handle:
        marked = 0
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            marked = mark_orphaned_runs(pipeline_name)
        except BlockingIOError:
            logger.info("Another local pipeline run is in progress; not checking for orphaned runs")
        fcntl.flock(handle, fcntl.LOCK_SH)  # downgrade: concurrent runs may start beside this one
        try:
            yield marked
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextmanager
def one_run_of(pipeline_name: str) -> Iterator[None]:
    """One local run of ``pipeline_name`` at a time on these stores: two ``train_all`` at once would register
    every contender twice and resume each other's checkpoints. The OS drops the lock when its process dies.

    Raises:
        BusyError: another process runs the pipeline (its pid and start time are named).
    """
    path = _lock_path().with_name(f"fer-run-{pipeline_name}.lock")
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise BusyError(f"another {pipeline_name} run is in progress on these stores ({holder}): wait for it to "
                            "finish, or stop it") from None
        handle.truncate(0)
        handle.write(f"pid {os.getpid()}, started {time.strftime('%Y-%m-%d %H:%M:%S')}")
        handle.flush()
        try:
            yield
        finally:
            handle.truncate(0)
            fcntl.flock(handle, fcntl.LOCK_UN)


def mark_orphaned_runs(pipeline_name: str) -> int:
    """Marks unfinished runs (and their unfinished steps) of ``pipeline_name`` on the active local stack failed."""
    client = Client()
    stack = client.active_stack_model
    if stack.components["orchestrator"][0].flavor_name != "local":
        return 0
    try:
        pipeline = client.get_pipeline(pipeline_name)
    except KeyError:
        return 0
    runs = client.list_pipeline_runs(pipeline_id=pipeline.id, stack_id=stack.id, size=100,
                                     status=f"oneof:{[s.value for s in UNFINISHED]}".replace("'", '"'))
    for run in runs.items:
        reason = "its process was killed: no run.py process was alive when the next run started"
        for step in run.steps.values():
            if step.status in UNFINISHED:
                client.zen_store.update_run_step(step.id, StepRunUpdate(status=ExecutionStatus.FAILED))
        client.zen_store.update_run(run.id, PipelineRunUpdate(status=ExecutionStatus.FAILED, status_reason=reason))
        logger.warning("Marked pipeline run %s failed: it was left %s by a process that no longer runs",
                       run.name, run.status.value)
    return len(runs.items)


def failed_step_error(pipeline_name: str) -> tuple[str, str, str] | None:
    """``(step, exception class path, message)`` of the first failed step of the pipeline's last run."""
    try:
        run = Client().get_pipeline(pipeline_name).last_run
    except (KeyError, RuntimeError):
        return None
    for name, step in run.steps.items():
        info = getattr(step, "exception_info", None)
        if step.status == ExecutionStatus.FAILED and info is not None:
            return name, info.source or "", info.message or ""
    return None
