"""Deleting MLflow runs and logged models with their files, so that a failure half-way is finished by the next try.

MLflow marks runs and logged models deleted; ``mlflow gc`` then removes their rows and files. A file that cannot
be removed (a permission, an immutable folder) stops ``mlflow gc`` at that item, and a deleted logged model can no
longer be found through MLflow's API. So the ids still to remove are recorded beside a local store
(``<store>.gc-pending.json``) before ``mlflow gc`` runs and cleared as they go: the next ``run.py gc`` takes them
up again. An item that fails is named with its file and the others are removed.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from fercore.tracking.locations import local_store_path
from fercore.tracking.store import STORE_ERRORS, client, translate_module

logger = logging.getLogger(__name__)


@dataclass
class PurgeResult:
    """``removed``: whether the files are gone for good (a tracking server's are only marked deleted: its operator
    runs ``mlflow gc`` there); ``failures``: each item left, with the file that stopped it."""

    removed: bool
    failures: list[str] = field(default_factory=list)


def purge(tracking_uri: str, run_ids: list[str], model_ids: list[str]) -> PurgeResult:
    """Marks runs and logged models deleted, then, for a local store (SQLite or a folder), removes them and those an
    earlier purge left, with ``mlflow gc``; an item that fails is named and the others still go."""
    for run_id in run_ids:
        client(tracking_uri).delete_run(run_id)
    for model_id in model_ids:
        client(tracking_uri).delete_logged_model(model_id)
    pending = pending_file(tracking_uri)
    if pending is None:
        return PurgeResult(False)
    left = read_pending(pending)
    runs = list(dict.fromkeys(left["runs"] + run_ids))
    models = list(dict.fromkeys(left["models"] + model_ids))
    if not runs and not models:
        return PurgeResult(True)
    _write_pending(pending, runs, models)  # before any removal: a crash half-way leaves the record
    if _mlflow_gc(tracking_uri, runs, models) is None:
        failures = {}
    else:  # one at a time, so that one stuck file does not keep the others
        failures = {key: why for kind, ids in (("runs", runs), ("models", models)) for i in ids
                    if (why := _mlflow_gc(tracking_uri, *(([i], []) if kind == "runs" else ([], [i]))))
                    for key in [(kind, i)]}
    _write_pending(pending, [i for k, i in failures if k == "runs"], [i for k, i in failures if k == "models"])
    return PurgeResult(True, [f"{'run' if k == 'runs' else 'logged model'} {i}: {why}" for (k, i), why in failures.items()])


def pending_file(tracking_uri: str) -> Path | None:
    """Where a local store's unfinished purge is recorded; None for a tracking server."""
    path = local_store_path(tracking_uri)
    if path is None:
        return None
    return path / ".gc-pending.json" if path.is_dir() else path.with_name(path.name + ".gc-pending.json")


def read_pending(path: Path) -> dict[str, list[str]]:
    """The run and logged-model ids an earlier purge could not remove (none when there is no record)."""
    try:
        data = json.loads(path.read_text())
        return {"runs": list(data.get("runs", [])), "models": list(data.get("models", []))}
    except (OSError, ValueError, AttributeError):
        return {"runs": [], "models": []}


def _write_pending(path: Path, runs: list[str], models: list[str]) -> None:
    if not runs and not models:
        path.unlink(missing_ok=True)
        return
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"runs": runs, "models": models}))
    os.replace(tmp, path)


def _mlflow_gc(tracking_uri: str, run_ids: list[str], model_ids: list[str]) -> str | None:
    """``mlflow gc`` of these ids, in this process (its own command's code); None when it succeeded, else what
    stopped it (the file, for a file that could not be removed). An id already gone counts as done."""
    from mlflow.cli import gc

    args = ["--backend-store-uri", tracking_uri]
    args += ["--run-ids", ",".join(run_ids)] if run_ids else []
    args += ["--logged-model-ids", ",".join(model_ids)] if model_ids else []
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # its "... has been permanently deleted" lines
            gc.main(args=args, standalone_mode=False)
    except Exception as exc:  # noqa: BLE001 (named below: a file's error, or MLflow's)
        if isinstance(exc, STORE_ERRORS) and exc.error_code == "RESOURCE_DOES_NOT_EXIST" and len(run_ids + model_ids) == 1:
            return None
        return _reason(exc)
    return None


def _reason(exc: BaseException) -> str:
    """The file an error (or its cause) names and why, else the error itself."""
    seen = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.filename:
            return f"{seen.filename}: {seen.strerror}"
        seen = seen.__cause__ or seen.__context__
    return f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"


translate_module(globals())  # MLflow's errors leave this module as TrackingError
