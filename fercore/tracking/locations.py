"""Where things are kept: the MLflow store and the local cache, found without importing MLflow or ZenML (so the data
layer, the CLI's preflight and the demo use them before, or without, the adapter in :mod:`fercore.tracking.store`)."""

from __future__ import annotations

import os
import re
from pathlib import Path


def default_cache_dir() -> Path:
    """``$FER_CACHE_DIR``, else ``~/.cache/fer-mlops``."""
    return Path(os.environ.get("FER_CACHE_DIR", Path.home() / ".cache" / "fer-mlops"))


def resolve_tracking_uri(configured: str | None = None, stack_uri: str | None = None, project_dir: Path | None = None) -> str:
    """The config's URI, else ``$MLFLOW_TRACKING_URI``, else the ZenML stack's tracker, else ``./mlflow.db``."""
    if configured:
        return configured
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    if stack_uri:
        return stack_uri
    return f"sqlite:///{(project_dir or Path.cwd()).resolve() / 'mlflow.db'}"


def local_store_path(tracking_uri: str) -> Path | None:
    """The file or folder of a local MLflow store (SQLite, ``file:`` or a path); None for a server."""
    if tracking_uri.startswith("sqlite:///"):
        return Path(tracking_uri.removeprefix("sqlite:///"))
    if tracking_uri.startswith("file:"):
        return Path(tracking_uri.removeprefix("file://").removeprefix("file:"))
    if "://" not in tracking_uri:
        return Path(tracking_uri)
    return None


def redact(uri: str) -> str:
    """``uri`` with any password replaced by ``***`` (``https://user:***@host``), for messages and logs."""
    return re.sub(r"(//[^/@:]*:)[^/@]*@", r"\1***@", uri)


def folder_bytes(path: Path) -> int:
    """The bytes of a file, or of every file under a folder (0 when it is gone)."""
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.exists() else 0
