"""Checks of the active ZenML stack before any step runs: a remote stack needs a remote MLflow."""

from __future__ import annotations

from zenml.client import Client

from fercore.config import Config
from fercore.errors import ConfigError
from fercore.promote import _local_store_path

_ADD_TRACKER = ("add an MLflow experiment tracker that points at your MLflow server to the stack "
                "(`zenml experiment-tracker register mlflow --flavor=mlflow --tracking_uri=https://mlflow.example.com "
                "--tracking_username=... --tracking_password=...` then `zenml stack update -e mlflow`), or set "
                "registry.tracking_uri / MLFLOW_TRACKING_URI to that server")


def check_remote_stack(config: Config) -> None:
    """On a stack whose artifact store is not local, the MLflow store must be reachable from every
    step's machine: a SQLite file or a local folder is not.

    Raises:
        ConfigError: naming the stack, the store that would be used, and what to add.
    """
    stack = Client().active_stack
    if stack.artifact_store.flavor == "local":
        return
    uri = config.registry.tracking_uri or ""
    if _local_store_path(uri) is not None or not uri:
        tracker = stack.experiment_tracker
        found = f"its experiment tracker {tracker.name}" if tracker is not None else "no experiment tracker"
        raise ConfigError(f"stack '{stack.name}' keeps artifacts in a {stack.artifact_store.flavor} store, but MLflow "
                          f"would use {uri or 'nothing'} ({found}): a file on this machine that steps running "
                          f"elsewhere cannot reach. Fix: {_ADD_TRACKER}.")
