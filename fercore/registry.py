"""MLflow tracking and model registry helpers (aliases, never the deprecated stages)."""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, Schema, TensorSpec

from fercore.constants import CLASS_NAMES, IMAGE_SIZE
from fercore.errors import RegistryError

logger = logging.getLogger(__name__)
PYFUNC_REQUIREMENTS = ["torch", "numpy", "pandas", "safetensors", "transformers", "mlflow"]


def resolve_tracking_uri(configured: str | None = None, stack_uri: str | None = None, project_dir: Path | None = None) -> str:
    """The config's URI, else ``$MLFLOW_TRACKING_URI``, else the ZenML stack's tracker, else ``./mlflow.db``."""
    if configured:
        return configured
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    if stack_uri:
        return stack_uri
    return f"sqlite:///{(project_dir or Path.cwd()).resolve() / 'mlflow.db'}"


def connect(tracking_uri: str, experiment_name: str) -> str:
    """Points MLflow at ``tracking_uri`` and returns the experiment id (created when missing)."""
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    try:
        exp = mlflow.get_experiment_by_name(experiment_name)
        if exp is not None:
            return exp.experiment_id
        location = None
        if tracking_uri.startswith("sqlite:///"):  # keep artifacts beside the database, not in the cwd
            location = (Path(tracking_uri.removeprefix("sqlite:///")).parent / "mlartifacts").resolve().as_uri()
        return mlflow.create_experiment(experiment_name, artifact_location=location)
    except MlflowException as exc:
        raise RegistryError(f"MLflow tracking store {tracking_uri} cannot be used: {exc}. Check registry.tracking_uri "
                            "or MLFLOW_TRACKING_URI.") from exc
    except Exception as exc:  # connection errors from a remote server
        raise RegistryError(f"MLflow tracking server {tracking_uri} is unreachable ({type(exc).__name__}: {exc}). "
                            "Start it, or unset MLFLOW_TRACKING_URI to use the local mlflow.db.") from exc


def start_run(tracking_uri: str, experiment_name: str, run_name: str, params: dict[str, Any], tags: dict[str, str]) -> str:
    """Creates an MLflow run, logs params and tags, and returns its id (the run stays open)."""
    exp_id = connect(tracking_uri, experiment_name)
    run = MlflowClient().create_run(exp_id, run_name=run_name, tags=tags)
    with mlflow.start_run(run_id=run.info.run_id):
        mlflow.log_params({k: str(v)[:500] for k, v in params.items()})
    return run.info.run_id


def epoch_logger(run_id: str):
    """A trainer callback logging each epoch's metrics to the run."""
    client = MlflowClient()

    def log(epoch: int, metrics: dict[str, float]) -> None:
        for key, value in metrics.items():
            if key != "epoch":
                client.log_metric(run_id, key, float(value), step=epoch)

    return log


def log_files(run_id: str, files: dict[str, bytes | str], artifact_path: str = "evaluation") -> None:
    """Logs in-memory files (PNG bytes, CSV/JSON/markdown text) as run artifacts."""
    client = MlflowClient()
    with tempfile.TemporaryDirectory() as tmp:
        for name, payload in files.items():
            path = Path(tmp) / name
            path.write_bytes(payload if isinstance(payload, bytes) else payload.encode())
        client.log_artifacts(run_id, tmp, artifact_path)


def pyfunc_signature() -> ModelSignature:
    inputs = Schema([TensorSpec(np.dtype(np.uint8), (-1, IMAGE_SIZE, IMAGE_SIZE))])
    outputs = Schema([ColSpec("string", "label"), *(ColSpec("double", c) for c in CLASS_NAMES)])
    return ModelSignature(inputs=inputs, outputs=outputs)


def log_and_register(run_id: str, artifacts: dict[str, str], model_name: str, tags: dict[str, str], description: str,
                     input_example: np.ndarray, model_config: dict[str, Any] | None = None,
                     python_model: mlflow.pyfunc.PythonModel | None = None) -> str:
    """Logs a model as the project's pyfunc and registers it as a new version.

    The model is logged completely before the version is created, so a failure leaves no
    registered version without its model.

    Args:
        run_id: the MLflow run to log into.
        artifacts: pyfunc artifacts; ``{"model": folder}`` for :class:`FerEmotionModel`.
        model_name: registered model name.
        tags: version tags.
        description: version description (markdown).
        input_example: a few uint8 images.
        model_config: pyfunc model config (e.g. ``{"tta": "hflip"}``).
        python_model: default :class:`fercore.pyfunc.FerEmotionModel`.

    Returns:
        The new version number, as a string.
    """
    from fercore.pyfunc import FerEmotionModel

    client = MlflowClient()
    with mlflow.start_run(run_id=run_id):
        info = mlflow.pyfunc.log_model(
            name="model", python_model=python_model or FerEmotionModel(), artifacts=artifacts,
            signature=pyfunc_signature(), input_example=input_example, model_config=model_config or {},
            pip_requirements=PYFUNC_REQUIREMENTS,
        )
    try:
        client.create_registered_model(model_name, description="FER-2013 emotion classifiers (7 classes).")
    except MlflowException as exc:
        if "RESOURCE_ALREADY_EXISTS" not in str(exc.error_code):
            raise
    version = mlflow.register_model(info.model_uri, model_name, tags={k: str(v) for k, v in tags.items()})
    client.update_model_version(model_name, version.version, description=description)
    logger.info("Registered %s version %s (run %s)", model_name, version.version, run_id)
    return str(version.version)


def resolve_version(uri: str) -> tuple[str, str]:
    """``(model name, version)`` of ``models:/NAME/VERSION`` or ``models:/NAME@ALIAS``.

    Raises:
        RegistryError: the URI has another form, or names a model, version or alias that does not exist.
    """
    body = uri.removeprefix("models:/")
    name, sep_alias, alias = body.partition("@")
    if body == uri or not name or (not sep_alias and body.count("/") != 1):
        raise RegistryError(f"'{uri}' is not a registry URI: use models:/NAME/VERSION or models:/NAME@ALIAS")
    client = MlflowClient()
    try:
        if sep_alias:
            return name, str(client.get_model_version_by_alias(name, alias).version)
        name, version = body.split("/")
        return name, str(client.get_model_version(name, version).version)
    except MlflowException as exc:
        raise RegistryError(f"{uri} does not exist in the registry at {mlflow.get_registry_uri()}: {exc.message}") from exc


def end_run(run_id: str, status: str = "FINISHED") -> None:
    MlflowClient().set_terminated(run_id, status=status)
