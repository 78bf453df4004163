"""MLflow tracking and model registry helpers (aliases, never the deprecated stages)."""

from __future__ import annotations

import logging
import os
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
from mlflow import MlflowClient
from mlflow.entities import Param
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, Schema

from fercore.constants import CLASS_NAMES
from fercore.errors import RegistryError

logger = logging.getLogger(__name__)
# What a registered model imports besides its own code (fercore, logged with it as code_paths)
PYFUNC_PACKAGES = ("mlflow", "torch", "torchvision", "numpy", "pandas", "safetensors", "transformers")


def pinned_requirements(packages: tuple[str, ...] = PYFUNC_PACKAGES) -> list[str]:
    """``name==version`` of each package as installed now: the versions the model was trained with.

    A local version label (``2.6.0+cpu``) is dropped: such builds are not on PyPI under that name.
    """
    from importlib.metadata import version

    return [f"{name}=={version(name).split('+')[0]}" for name in packages]


def code_paths() -> list[str]:
    """The project's core package, logged with every model so that it loads where the project is not installed."""
    import fercore

    return [str(Path(fercore.__file__).resolve().parent)]


def connect_registry(tracking_uri: str) -> None:
    """Points MLflow's tracking and registry clients at ``tracking_uri`` (creates nothing)."""
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)


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


def check_tracking_store(tracking_uri: str, experiment_name: str, timeout_s: float = 5.0) -> None:
    """Fails fast, before any pipeline work, when the MLflow store is unreachable or read-only.

    A tracking server must answer ``/health`` within ``timeout_s``; then the experiment is created
    or tagged (a write), with MLflow's own retries off so that a dead server costs seconds, not minutes.

    Raises:
        RegistryError: saying which store failed and how to fix it.
    """
    if tracking_uri.startswith(("http://", "https://")):
        try:
            with urllib.request.urlopen(tracking_uri.rstrip("/") + "/health", timeout=timeout_s) as response:
                response.read()
        except (OSError, ValueError) as exc:
            raise RegistryError(
                f"MLflow tracking server {tracking_uri} is unreachable ({exc}). Start it (e.g. `mlflow server "
                "--host 127.0.0.1 --port 5000`), fix registry.tracking_uri / MLFLOW_TRACKING_URI, or unset both to "
                "use the local mlflow.db.") from None
    saved = {k: os.environ.get(k) for k in ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT")}
    os.environ.update(MLFLOW_HTTP_REQUEST_MAX_RETRIES="0", MLFLOW_HTTP_REQUEST_TIMEOUT=str(int(timeout_s * 2)))
    try:
        experiment_id = connect(tracking_uri, experiment_name)
        MlflowClient().set_experiment_tag(experiment_id, "fer.last_checked", time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                                            time.gmtime()))
    except MlflowException as exc:
        raise RegistryError(f"MLflow tracking store {tracking_uri} is not writable: {exc.message}. Check its "
                            "permissions, or point registry.tracking_uri at a store you can write.") from None
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def start_run(tracking_uri: str, experiment_name: str, run_name: str, params: dict[str, Any], tags: dict[str, str],
              job_key: str | None = None, resume: bool = False) -> str:
    """Creates an MLflow run with params and tags, or resumes one, and returns its id; the run stays RUNNING.

    With ``job_key`` (a training job's checkpoint key, tagged ``fer.job_key``), runs of the same job
    left RUNNING by a killed process are found: with ``resume`` (the job resumes from its checkpoint)
    the newest one continues, so the epoch history stays in one run; the others are marked KILLED.

    Args:
        tracking_uri: the MLflow store.
        experiment_name: created when missing.
        run_name: the new run's name.
        params: logged as parameters (values cut to 500 characters).
        tags: run tags.
        job_key: identifies a resumable training job.
        resume: whether the job resumes from a checkpoint.
    """
    exp_id = connect(tracking_uri, experiment_name)
    client = MlflowClient()
    orphans = []
    if job_key:
        orphans = client.search_runs([exp_id], f"tags.`fer.job_key` = '{job_key}' and attributes.status = 'RUNNING'",
                                     order_by=["attributes.start_time DESC"])
    if resume and orphans:
        run_id = orphans.pop(0).info.run_id
        client.set_tag(run_id, "fer.resumed_by_zenml_run", tags.get("zenml_run_id", ""))
        logger.info("Resuming MLflow run %s of the interrupted training job %s", run_id, job_key)
    else:
        run_tags = {**tags, **({"fer.job_key": job_key} if job_key else {})}
        if orphans:
            run_tags["fer.previous_attempt"] = orphans[0].info.run_id
        run_id = client.create_run(exp_id, run_name=run_name, tags=run_tags).info.run_id
        client.log_batch(run_id, params=[Param(k, str(v)[:500]) for k, v in params.items()])
    for orphan in orphans:
        client.set_tag(orphan.info.run_id, "fer.killed_reason", f"left RUNNING by a killed process; see run {run_id}")
        client.set_terminated(orphan.info.run_id, status="KILLED")
        logger.warning("Marked MLflow run %s KILLED: its process died (job %s)", orphan.info.run_id, job_key)
    return run_id


class EpochLogger:
    """A trainer callback logging each epoch's metrics to the run (a class: DDP workers get it pickled).

    ``train_loss`` and ``val_loss`` are logged as ``loss/train`` and ``loss/val`` (accuracy likewise):
    MLflow's UI groups metrics by the part before the slash, so each curve's train and validation
    charts sit together, apart from the single-value evaluation metrics.
    """

    def __init__(self, run_id: str, tracking_uri: str | None = None, epochs_before: int = 0):
        self.run_id, self.tracking_uri = run_id, tracking_uri or mlflow.get_tracking_uri()
        self.epochs_before = epochs_before  # a later rung numbers its epochs on

    def __call__(self, epoch: int, metrics: dict[str, float]) -> None:
        log_metrics(self.run_id, {epoch_metric_name(k): v for k, v in metrics.items() if k != "epoch"},
                    self.epochs_before + epoch, self.tracking_uri)


def epoch_metric_name(key: str) -> str:
    """``train_loss`` -> ``loss/train``, ``val_accuracy`` -> ``accuracy/val``; other keys as they are."""
    split, sep, quantity = key.partition("_")
    return f"{quantity}/{split}" if sep and split in ("train", "val") else key


def log_metrics(run_id: str, metrics: dict[str, float], step: int = 0, tracking_uri: str | None = None) -> None:
    """Logs ``name -> value`` metrics at ``step`` in one request instead of one per metric."""
    from mlflow.entities import Metric

    stamp = int(time.time() * 1000)
    MlflowClient(tracking_uri).log_batch(run_id, metrics=[Metric(k, float(v), stamp, step) for k, v in metrics.items()])


def log_files(run_id: str, files: dict[str, bytes | str], artifact_path: str = "evaluation") -> None:
    """Logs in-memory files (PNG bytes, CSV/JSON/markdown text) as run artifacts."""
    client = MlflowClient()
    with tempfile.TemporaryDirectory() as tmp:
        for name, payload in files.items():
            path = Path(tmp) / name
            path.write_bytes(payload if isinstance(payload, bytes) else payload.encode())
        client.log_artifacts(run_id, tmp, artifact_path)


def pyfunc_signature() -> ModelSignature:
    """The outputs (label, seven probabilities). No input schema: MLflow's enforcement would cast float
    pixels of a served request to uint8 silently; :func:`fercore.serving.pyfunc.as_image_batch` checks the input
    (uint8 or integer ``(N, 48, 48)``) and refuses others with a message. The input example shows it."""
    outputs = Schema([ColSpec("string", "label"), *(ColSpec("double", c) for c in CLASS_NAMES)])
    return ModelSignature(outputs=outputs)


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
        python_model: default :class:`fercore.serving.pyfunc.FerEmotionModel`.

    Returns:
        The new version number, as a string.
    """
    from fercore.serving.pyfunc import FerEmotionModel

    client = MlflowClient()
    with mlflow.start_run(run_id=run_id):
        info = mlflow.pyfunc.log_model(
            name="model", python_model=python_model or FerEmotionModel(), artifacts=artifacts,
            signature=pyfunc_signature(), input_example=input_example, model_config=model_config or {},
            pip_requirements=pinned_requirements(), code_paths=code_paths(),
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
        RegistryError: the URI has another form, or names a model, version or alias that does not
            exist (the message lists the aliases and newest versions that do).
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
        raise RegistryError(_missing_model_message(client, uri, name.split("/")[0], exc)) from None


def _missing_model_message(client: MlflowClient, uri: str, name: str, exc: MlflowException) -> str:
    store = mlflow.get_registry_uri()
    try:
        model = client.get_registered_model(name)
    except MlflowException:
        return (f"{uri}: the registry at {store} has no model named {name}. Train one first (`make train`), or "
                "point --tracking-uri / MLFLOW_TRACKING_URI at the store that has it.")
    except Exception:  # the store itself is unreachable: MLflow's own message says why
        return f"{uri} cannot be read from the registry at {store}: {exc.message}"
    aliases = ", ".join(f"@{a} (v{v})" for a, v in sorted((model.aliases or {}).items())) or "none"
    versions = sorted((int(v.version) for v in client.search_model_versions(f"name = '{name}'")), reverse=True)
    return (f"{uri} does not exist in the registry at {store}. {name} has the aliases {aliases} and the versions "
            f"{', '.join(map(str, versions[:10])) or 'none'}{' ...' if len(versions) > 10 else ''}.")


def run_is_open(run_id: str, tracking_uri: str | None = None) -> bool:
    """Whether MLflow run ``run_id`` exists and is still RUNNING."""
    try:
        return MlflowClient(tracking_uri).get_run(run_id).info.status == "RUNNING"
    except MlflowException:
        return False


def end_run(run_id: str, status: str = "FINISHED") -> None:
    MlflowClient().set_terminated(run_id, status=status)


@contextmanager
def run_closed_on_error(run_id: str) -> Iterator[None]:
    """Ends ``run_id`` FAILED (KILLED on Ctrl-C) when the block raises; leaves it open otherwise."""
    try:
        yield
    except BaseException as exc:
        try:
            end_run(run_id, "KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED")
        except Exception:  # the store itself may be what failed; the original error matters more
            logger.warning("Could not mark MLflow run %s as failed", run_id)
        raise


def load_version(model_name: str, version: str) -> mlflow.pyfunc.PyFuncModel:
    return mlflow.pyfunc.load_model(f"models:/{model_name}/{version}")



def pyfunc_predict(model: mlflow.pyfunc.PyFuncModel):
    """``images -> probabilities`` through a registered model's pyfunc interface."""
    return lambda images: model.predict(images)[list(CLASS_NAMES)].to_numpy()



def underlying_module(pyfunc_model: mlflow.pyfunc.PyFuncModel):
    """The torch model inside a project pyfunc (None for an ensemble)."""
    return getattr(pyfunc_model.unwrap_python_model(), "model", None)


@dataclass
class RunInfo:
    """Where a promotion logs: the MLflow store and experiment, and the pipeline run it belongs to."""

    tracking_uri: str
    experiment_name: str
    run_name: str
    zenml_run_id: str = ""
