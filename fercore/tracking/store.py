"""The connection to an MLflow store, and the check that it can be used before any pipeline work."""

from __future__ import annotations

import base64
import functools
import inspect
import logging
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import mlflow
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from fercore.errors import RegistryError, StoreBusyError
from fercore.tracking.locations import redact

logger = logging.getLogger(__name__)
T = TypeVar("T")
# the MLflow UI opens an experiment of this kind on its model-training view (runs, metrics), not the GenAI one; MLflow
# 3.17's UI reads the kind only without its sidebar's GenAI / Model training switch, whose choice comes from the URL's
# workflowType (else the browser's last choice, GenAI in a fresh profile): the links this project prints carry it
EXPERIMENT_KIND = ("mlflow.experimentKind", "custom_model_development")
TRAINING_VIEW = "workflowType=machine_learning"


@dataclass
class RunInfo:
    """Where a step logs: the MLflow store and experiment, and the pipeline run it belongs to."""

    tracking_uri: str
    experiment_name: str
    run_name: str
    zenml_run_id: str = ""

    def tags(self, **more: str) -> dict[str, str]:
        """The tags every run of this pipeline run carries, and ``more``."""
        return {"zenml_run_id": self.zenml_run_id, "zenml_run_name": self.run_name, **more}


def client(tracking_uri: str) -> MlflowClient:
    """An MLflow client of the store at ``tracking_uri``, for tracking and the registry. Every call of the adapter
    names its store: MLflow's process-wide tracking URI is never set (two stores in one process stay apart)."""
    if not tracking_uri:
        raise RegistryError("no MLflow store given: pass the tracking URI (registry.tracking_uri, --tracking-uri)")
    return MlflowClient(tracking_uri, registry_uri=tracking_uri)


@contextmanager
def fluent_store(tracking_uri: str) -> Iterator[None]:
    """For the MLflow calls that read the process-wide store whatever client they come from (``mlflow.pyfunc.log_model``
    into a run; creating a version whose source is a ``models:/m-...`` logged model, which MLflow's registry looks up
    in the tracking store it finds there): MLflow's process-wide tracking URI points at ``tracking_uri`` for the
    block only. ``mlflow.set_tracking_uri`` also writes
    ``MLFLOW_TRACKING_URI`` into the environment (for subprocesses); both are put back as they were afterwards
    (MLflow's own ``_use_tracking_uri`` would unset a variable the user had set)."""
    from mlflow.tracking._tracking_service import utils as tracking_utils

    before, env = tracking_utils._tracking_uri, os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(tracking_uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(before)
        if env is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = env


def connect(tracking_uri: str, experiment_name: str) -> str:
    """The id of experiment ``experiment_name`` in the store at ``tracking_uri`` (created when missing)."""
    mlflow_client = client(tracking_uri)
    try:
        exp = mlflow_client.get_experiment_by_name(experiment_name)
        if exp is not None:
            if EXPERIMENT_KIND[0] not in exp.tags:  # experiments made by earlier releases
                mlflow_client.set_experiment_tag(exp.experiment_id, *EXPERIMENT_KIND)
            return exp.experiment_id
        location = None
        if tracking_uri.startswith("sqlite:///"):  # keep artifacts beside the database, not in the cwd
            location = (Path(tracking_uri.removeprefix("sqlite:///")).parent / "mlartifacts").resolve().as_uri()
        return mlflow_client.create_experiment(experiment_name, artifact_location=location,
                                               tags=dict([EXPERIMENT_KIND]))
    except STORE_ERRORS as exc:
        raise RegistryError(f"MLflow tracking store {redact(tracking_uri)} cannot be used: {exc}. Check registry.tracking_uri "
                            "or MLFLOW_TRACKING_URI.") from exc
    except Exception as exc:  # connection errors from a remote server
        raise RegistryError(f"MLflow tracking server {redact(tracking_uri)} is unreachable ({type(exc).__name__}: {exc}). "
                            "Start it, or unset MLFLOW_TRACKING_URI to use the local mlflow.db.") from exc


def check_server(tracking_uri: str, timeout_s: float = 5.0) -> None:
    """For a tracking server: fails within ``timeout_s`` when its ``/health`` does not answer (MLflow's client
    would retry for minutes). Local stores pass. The request carries the credentials MLflow's client would send
    (:func:`server_request`).

    Raises:
        RegistryError: saying which server failed and how to fix it.
    """
    if not tracking_uri.startswith(("http://", "https://")):
        return
    try:
        with urllib.request.urlopen(server_request(tracking_uri, "/health"), timeout=timeout_s) as response:
            response.read()
    except urllib.error.HTTPError as exc:
        if exc.code not in (401, 403):
            raise RegistryError(f"MLflow tracking server {redact(tracking_uri)} answered /health with HTTP {exc.code} "
                                f"({exc.reason}): is it an MLflow server, and is it healthy?") from None
        raise RegistryError(
            f"MLflow tracking server {redact(tracking_uri)} refused the request (HTTP {exc.code}): set "
            "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD (or MLFLOW_TRACKING_TOKEN), or put the user and "
            "password in the URI (http://USER:PASSWORD@HOST:PORT)") from None
    except (OSError, ValueError) as exc:
        raise RegistryError(
            f"MLflow tracking server {redact(tracking_uri)} is unreachable ({exc}). Start it (e.g. `mlflow server "
            "--host 127.0.0.1 --port 5000`), fix registry.tracking_uri / MLFLOW_TRACKING_URI, or unset both to "
            "use the local mlflow.db.") from None


def server_request(tracking_uri: str, path: str) -> urllib.request.Request:
    """A GET of ``path`` on a tracking server with the credentials MLflow's client sends: a user and password
    in the URI, else ``MLFLOW_TRACKING_USERNAME`` / ``MLFLOW_TRACKING_PASSWORD`` (Basic), else
    ``MLFLOW_TRACKING_TOKEN`` (Bearer). The credentials leave the URL: urllib would take them for the host."""
    parts = urllib.parse.urlsplit(tracking_uri)
    host = parts.hostname or ""
    netloc = (f"[{host}]" if ":" in host else host) + (f":{parts.port}" if parts.port else "")
    url = urllib.parse.urlunsplit((parts.scheme, netloc, parts.path.rstrip("/") + path, "", ""))
    user, password = parts.username, parts.password
    if user is None and os.environ.get("MLFLOW_TRACKING_USERNAME"):
        user, password = os.environ["MLFLOW_TRACKING_USERNAME"], os.environ.get("MLFLOW_TRACKING_PASSWORD", "")
    headers = {}
    if user is not None:
        pair = f"{urllib.parse.unquote(user)}:{urllib.parse.unquote(password or '')}"
        headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
    elif os.environ.get("MLFLOW_TRACKING_TOKEN"):
        headers["Authorization"] = f"Bearer {os.environ['MLFLOW_TRACKING_TOKEN']}"
    return urllib.request.Request(url, headers=headers)


def check_tracking_store(tracking_uri: str, experiment_name: str, timeout_s: float = 5.0) -> None:
    """Fails fast, before any pipeline work, when the MLflow store is unreachable or read-only.

    A tracking server must answer ``/health`` within ``timeout_s``; then the experiment is created
    or tagged (a write), with MLflow's own retries off so that a dead server costs seconds, not minutes.

    Raises:
        RegistryError: saying which store failed and how to fix it.
    """
    check_server(tracking_uri, timeout_s)
    saved = {k: os.environ.get(k) for k in ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT")}
    os.environ.update(MLFLOW_HTTP_REQUEST_MAX_RETRIES="0", MLFLOW_HTTP_REQUEST_TIMEOUT=str(int(timeout_s * 2)))
    try:
        experiment_id = connect(tracking_uri, experiment_name)
        client(tracking_uri).set_experiment_tag(experiment_id, "fer.last_checked", time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                                      time.gmtime()))
    except STORE_ERRORS as exc:
        raise RegistryError(f"MLflow tracking store {redact(tracking_uri)} is not writable: {exc.message}. Check its "
                            "permissions, or point registry.tracking_uri at a store you can write.") from None
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


class TrackingError(RegistryError):
    """The MLflow store refused or failed a request: the adapter's own error (MLflow's ``MlflowException`` never
    leaves ``fercore.tracking``). ``error_code`` is MLflow's: ``RESOURCE_DOES_NOT_EXIST``,
    ``TEMPORARILY_UNAVAILABLE`` (a busy SQLite store), ``INVALID_PARAMETER_VALUE``, ..."""

    def __init__(self, message: str, error_code: str = "INTERNAL_ERROR"):
        super().__init__(message)
        self.message, self.error_code = message, error_code


STORE_ERRORS = (MlflowException, TrackingError)


def bad_request(message: str) -> Exception:
    """The error a served model raises for a request it refuses: MLflow's server answers it with HTTP 400."""
    from mlflow.exceptions import INVALID_PARAMETER_VALUE

    return MlflowException(message, INVALID_PARAMETER_VALUE)  # what an adapter function catches of another's, or of MLflow's


def translated(function: Callable[..., T]) -> Callable[..., T]:
    """``function`` with MLflow's ``MlflowException`` raised as :class:`TrackingError` (the message and code kept)."""
    @functools.wraps(function)
    def call(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except MlflowException as exc:
            raise TrackingError(str(exc.message), str(exc.error_code)) from exc
    return call


def translate_module(namespace: dict[str, Any]) -> None:
    """Wraps every public function defined in a ``fercore.tracking`` module (its ``globals()``) with
    :func:`translated`: called at the module's end, so that its own calls go through the wrappers too."""
    for name, value in list(namespace.items()):
        if (inspect.isfunction(value) and value.__module__ == namespace["__name__"] and not name.startswith("_")
                and name not in ("translated", "translate_module", "bad_request")):
            namespace[name] = translated(value)
RETRY_WAITS_S = (5.0, 15.0)  # between attempts at a read that met a busy store (MLflow itself waits 20 s on a lock)


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` says the store was busy or unreachable for a moment (a SQLite lock, a refused or dropped
    connection, a server error), not that what was asked for is missing."""
    text = f"{type(exc).__name__} {exc}"
    if isinstance(exc, STORE_ERRORS) and exc.error_code == "TEMPORARILY_UNAVAILABLE":  # SQLAlchemy's OperationalError
        return True
    return bool(re.search(r"database is locked|ConnectionError|Connection refused|Max retries exceeded|timed out|"
                          r"error code 50[234]|Service Unavailable", text))


def retry_transient(read: Callable[[], T], what: str, tracking_uri: str) -> T:
    """``read()``, tried again after :data:`RETRY_WAITS_S` while the store is busy (:func:`is_transient`).

    Raises:
        StoreBusyError: the store was still busy after the last attempt; the message names it and ``what`` did not
            happen.
    """
    for wait in (*RETRY_WAITS_S, None):
        try:
            return read()
        except Exception as exc:  # noqa: BLE001 (sorted below: only a transient error is retried)
            cause = exc.__cause__ or exc
            if not (is_transient(exc) or is_transient(cause)):
                raise
            if wait is None:
                raise StoreBusyError(
                    f"the MLflow store {redact(tracking_uri)} stayed busy or unreachable through "
                    f"{len(RETRY_WAITS_S) + 1} attempts ({type(cause).__name__}: {str(cause).splitlines()[0][:200]}), "
                    f"so {what}. Run again once it is free (is another tool holding mlflow.db, or is the server "
                    "down?)") from None
            logger.warning("The MLflow store is busy (%s); trying again in %.0f s", str(cause).splitlines()[0][:120],
                           wait)
            time.sleep(wait)
    raise AssertionError("unreachable")


@contextmanager
def busy_store_is_named(tracking_uri: str, what: str) -> Iterator[None]:
    """Turns MLflow's "database is locked" (another process holds a SQLite store's write lock past MLflow's
    retries) into a :class:`RegistryError` that names the store and says that ``what`` did not happen."""
    try:
        yield
    except STORE_ERRORS as exc:
        if "database is locked" not in str(exc):
            raise
        raise RegistryError(f"the MLflow store {redact(tracking_uri)} is busy: another process held its database "
                            f"lock past MLflow's retries, so {what}. Run again once it is free (is a long query or "
                            "another tool holding mlflow.db?)") from None


def run_url(tracking_uri: str, run_id: str, ui: str = "http://127.0.0.1:5000") -> str:
    """The MLflow UI's page of a run: on a tracking server, the server's; for a local store, ``make mlflow-ui``'s."""
    experiment_id = client(tracking_uri).get_run(run_id).info.experiment_id
    base = redact(tracking_uri).rstrip("/") if tracking_uri.startswith(("http://", "https://")) else ui
    return f"{base}/#/experiments/{experiment_id}/runs/{run_id}?{TRAINING_VIEW}"


translate_module(globals())
