"""The model registry: registering a model as a new version, version and alias queries, loading a version. Every
function names its store (``tracking_uri``, its first argument).

Aliases, never the deprecated stages. A version's ``family`` tag (cnn, vit, ensemble) was called
``architecture`` before; :func:`fercore.tracking.tags.family` reads either, so earlier versions still load and compete.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
from mlflow.entities.model_registry import ModelVersion
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, Schema

from fercore.constants import CLASS_NAMES
from fercore.errors import RegistryError
from fercore.tracking.locations import redact
from fercore.tracking.store import STORE_ERRORS, TrackingError, client, fluent_store, translate_module
from fercore.tracking.tags import family

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


def pyfunc_signature() -> ModelSignature:
    """The outputs (label, seven probabilities). No input schema: MLflow's enforcement would cast float
    pixels of a served request to uint8 silently; :func:`fercore.serving.pyfunc.as_image_batch` checks the input
    (uint8 or integer ``(N, 48, 48)``) and refuses others with a message. The input example shows it."""
    outputs = Schema([ColSpec("string", "label"), *(ColSpec("double", c) for c in CLASS_NAMES)])
    return ModelSignature(outputs=outputs)


def log_and_register(tracking_uri: str, run_id: str, python_model: mlflow.pyfunc.PythonModel, artifacts: dict[str, str],
                     model_name: str, tags: dict[str, str], description: str, input_example: np.ndarray,
                     model_config: dict[str, Any] | None = None) -> str:
    """Logs a model as the project's pyfunc and registers it as a new version.

    The model is logged completely before the version is created, so a failure leaves no
    registered version without its model.

    Args:
        tracking_uri: the MLflow store.
        run_id: the MLflow run to log into.
        python_model: the pyfunc wrapper (:mod:`fercore.serving.pyfunc`).
        artifacts: pyfunc artifacts; ``{"model": folder}`` for a single network.
        model_name: registered model name.
        tags: version tags.
        description: version description (markdown).
        input_example: a few uint8 images.
        model_config: pyfunc model config (e.g. ``{"tta": "hflip"}``).

    Returns:
        The new version number, as a string.
    """
    with fluent_store(tracking_uri), mlflow.start_run(run_id=run_id):
        info = mlflow.pyfunc.log_model(
            name="model", python_model=python_model, artifacts=artifacts, signature=pyfunc_signature(),
            input_example=input_example, model_config=model_config or {}, pip_requirements=pinned_requirements(),
            code_paths=code_paths(),
        )
    try:
        client(tracking_uri).create_registered_model(model_name, description="FER-2013 emotion classifiers (7 classes).")
    except STORE_ERRORS as exc:
        if "RESOURCE_ALREADY_EXISTS" not in str(exc.error_code):
            raise
    with fluent_store(tracking_uri):  # the registry finds the logged model of a models:/m-... source through it
        version = client(tracking_uri).create_model_version(model_name, info.model_uri, run_id=run_id, tags={
            k: str(v) for k, v in tags.items()}, description=description, model_id=info.model_id)
    logger.info("Registered %s version %s (run %s)", model_name, version.version, run_id)
    return str(version.version)


# -- queries -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VersionInfo:
    """A registered version as the project reads it (MLflow's ``ModelVersion`` stays inside the adapter)."""

    name: str
    version: str
    status: str  # READY, PENDING_REGISTRATION, FAILED_REGISTRATION
    tags: dict[str, str]
    description: str
    run_id: str
    source: str
    model_id: str | None = None


def _version_info(mv: ModelVersion) -> VersionInfo:
    return VersionInfo(mv.name, str(mv.version), str(mv.status), dict(mv.tags or {}), mv.description or "",
                       mv.run_id or "", mv.source or "", getattr(mv, "model_id", None))


def get_version(tracking_uri: str, name: str, version: str) -> VersionInfo:
    return _version_info(client(tracking_uri).get_model_version(name, str(version)))


def versions(tracking_uri: str, name: str, **tags: str) -> list[VersionInfo]:
    """The versions of ``name`` whose tags equal ``tags`` (``run_id=`` filters by run), newest first."""
    run_id = tags.pop("run_id", None)
    query = f"name = '{name}'" + (f" and run_id = '{run_id}'" if run_id else "")
    query += "".join(f" and tags.`{k}` = '{v}'" for k, v in tags.items() if k not in ("family", "architecture"))
    found = [v for v in map(_version_info, client(tracking_uri).search_model_versions(query))
             if all((family(v) if k in ("family", "architecture") else v.tags.get(k)) == x for k, x in tags.items())]
    return sorted(found, key=lambda v: -int(v.version))


def runs_of_other_models(tracking_uri: str, name: str) -> set[str]:
    """The MLflow runs that registered a version of any registered model but ``name`` (gc leaves them alone)."""
    return {v.run_id for v in client(tracking_uri).search_model_versions(f"name != '{name}'") if v.run_id}


def newest_ready(tracking_uri: str, name: str, **tags: str) -> str | None:
    """The newest READY version of ``name`` whose tags (or ``run_id``) equal ``tags``, if any."""
    return next((str(v.version) for v in versions(tracking_uri, name, **tags) if v.status == "READY"), None)


def version_by_alias(tracking_uri: str, name: str, alias: str) -> VersionInfo:
    """The version ``alias`` points at.

    Raises:
        RegistryError: no such model or alias (the message lists the aliases and versions that exist).
    """
    return get_version(tracking_uri, *resolve_version(tracking_uri, f"models:/{name}@{alias}"))


def resolve_version(tracking_uri: str, uri: str) -> tuple[str, str]:
    """``(model name, version)`` of ``models:/NAME/VERSION`` or ``models:/NAME@ALIAS``.

    Raises:
        RegistryError: the URI has another form, or names a model, version or alias that does not
            exist (the message lists the aliases and newest versions that do).
    """
    body = uri.removeprefix("models:/")
    name, sep_alias, alias = body.partition("@")
    if body == uri or not name or (not sep_alias and body.count("/") != 1):
        raise RegistryError(f"'{uri}' is not a registry URI: use models:/NAME/VERSION or models:/NAME@ALIAS")
    try:
        if sep_alias:
            return name, str(client(tracking_uri).get_model_version_by_alias(name, alias).version)
        name, version = body.split("/")
        return name, str(get_version(tracking_uri, name, version).version)
    except STORE_ERRORS as exc:
        raise RegistryError(_missing_model_message(tracking_uri, uri, name.split("/")[0], exc)) from None


def _missing_model_message(tracking_uri: str, uri: str, name: str, exc: TrackingError) -> str:
    store = redact(tracking_uri)
    try:
        model = client(tracking_uri).get_registered_model(name)
    except STORE_ERRORS:
        return (f"{uri}: the registry at {store} has no model named {name}. Train one first (`make train`), or "
                "point --tracking-uri / MLFLOW_TRACKING_URI at the store that has it.")
    except Exception:  # the store itself is unreachable: MLflow's own message says why
        return f"{uri} cannot be read from the registry at {store}: {exc.message}"
    aliases = ", ".join(f"@{a} (v{v})" for a, v in sorted((model.aliases or {}).items())) or "none"
    numbers = sorted((int(v.version) for v in client(tracking_uri).search_model_versions(f"name = '{name}'")), reverse=True)
    return (f"{uri} does not exist in the registry at {store}. {name} has the aliases {aliases} and the versions "
            f"{', '.join(map(str, numbers[:10])) or 'none'}{' ...' if len(numbers) > 10 else ''}.")


# -- aliases and tags ------------------------------------------------------------------------------


def aliases(tracking_uri: str, name: str) -> dict[str, str]:
    """Alias -> version of registered model ``name`` (empty when it does not exist yet)."""
    try:
        return {a: str(v) for a, v in (client(tracking_uri).get_registered_model(name).aliases or {}).items()}
    except STORE_ERRORS:
        return {}


def set_alias(tracking_uri: str, name: str, alias: str, version: str | None) -> None:
    """Points ``alias`` at ``version``; None deletes the alias."""
    if version is None:
        client(tracking_uri).delete_registered_model_alias(name, alias)
    else:
        client(tracking_uri).set_registered_model_alias(name, alias, version)


def tag_version(tracking_uri: str, name: str, version: str, tags: dict[str, str | None]) -> None:
    """Sets a version's tags; a None value deletes that tag."""
    for key, value in tags.items():
        if value is None:
            client(tracking_uri).delete_model_version_tag(name, version, key)
        else:
            client(tracking_uri).set_model_version_tag(name, version, key, str(value))


def model_tag(tracking_uri: str, name: str, key: str) -> str | None:
    return client(tracking_uri).get_registered_model(name).tags.get(key)


def set_model_tag(tracking_uri: str, name: str, key: str, value: str | None) -> None:
    """Sets a registered model's tag; None deletes it."""
    if value is None:
        client(tracking_uri).delete_registered_model_tag(name, key)
    else:
        client(tracking_uri).set_registered_model_tag(name, key, value)


# -- loading -----------------------------------------------------------------------------------------


def load_pyfunc(folder: str | Path) -> mlflow.pyfunc.PyFuncModel:
    """A pyfunc model from a local folder (a copied version). It unpickles the model: only
    :func:`fercore.tracking.loading.load_copy` calls it, with ``--trust-model``."""
    return mlflow.pyfunc.load_model(str(folder))


def pyfunc_predict(model: mlflow.pyfunc.PyFuncModel):
    """``images -> probabilities`` through a registered model's pyfunc interface."""
    return lambda images: model.predict(images)[list(CLASS_NAMES)].to_numpy()


def download_version(tracking_uri: str, name: str, version: str, dst: Path) -> None:
    """The files of ``models:/name/version`` into ``dst``."""
    import mlflow.artifacts

    mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{name}/{version}", dst_path=str(dst),
                                        tracking_uri=tracking_uri, registry_uri=tracking_uri)


def has_files(tracking_uri: str, name: str, version: str) -> bool:
    """Whether a version's model files (its ``MLmodel``) are still at its artifact location: a listing, no download.
    A busy or unreachable store raises MLflow's error (nothing is concluded)."""
    import mlflow.artifacts

    try:
        location = client(tracking_uri).get_model_version_download_uri(name, version)  # no registry lookup below
        listed = mlflow.artifacts.list_artifacts(artifact_uri=location, tracking_uri=tracking_uri)
    except (OSError, *STORE_ERRORS) as exc:
        from fercore.tracking.store import is_transient

        if is_transient(exc):
            raise
        return False
    return any(Path(a.path).name == "MLmodel" for a in listed or [])


def delete_version(tracking_uri: str, name: str, version: str) -> None:
    """Removes version ``version`` of ``name`` from the registry (its run and model files: :func:`purge`)."""
    client(tracking_uri).delete_model_version(name, version)


def logged_model_id(version: VersionInfo) -> str | None:
    """The logged model (MLflow 3) a version was registered from: its ``model_id``, else read from its source
    (``models:/m-...``; a SQLite registry leaves ``model_id`` empty)."""
    if version.model_id:
        return version.model_id
    source = version.source or ""
    return source.removeprefix("models:/") if source.startswith("models:/m-") else None


def describe_version(tracking_uri: str, name: str, version: str, description: str) -> None:
    """Sets a version's description (its model card on the version's page)."""
    client(tracking_uri).update_model_version(name, str(version), description=description)


def model_description(tracking_uri: str, name: str) -> str:
    """The registered model's description (empty when it has none)."""
    return client(tracking_uri).get_registered_model(name).description or ""


def describe_model(tracking_uri: str, name: str, description: str) -> None:
    """Sets the registered model's description (the MLflow UI shows it on the model's page)."""
    client(tracking_uri).update_registered_model(name, description=description)


translate_module(globals())  # MLflow's errors leave this module as TrackingError
