"""Registered models for prediction on this machine (``run.py predict``): each version is copied once
into the cache, then loaded straight from the copy.

``mlflow.pyfunc.load_model("models:/NAME@ALIAS")`` spends about 8 s of a one-photo prediction on 2
cores before the first image: it downloads the artifacts again, checks the model's pinned requirements
against this environment (reading the metadata of every installed package), puts the model's copy of
the code on ``sys.path`` and unpickles its wrapper, which imports MLflow's pyfunc machinery. None of it
matters for a local prediction: the environment is this one and the project's code is installed. For
the project's own wrappers (:class:`fercore.serving.pyfunc.FerEmotionModel` and ``FerEnsembleModel``, read
from the pickle's opcodes without running it) this module instead:

- resolves the URI (alias -> version) with the MLflow client; for a SQLite store it keeps the answer
  until the database file changes (any write, an alias move included, changes it), so a repeated
  prediction does not even import MLflow;
- copies the version's artifacts once into ``<cache>/models/<key>``, keyed by store, name, version
  and the version's source, so a store recreated with the same version numbers gets new copies;
- builds the network as the pyfunc's ``load_context`` does (:func:`fercore.models.inference.load_for_inference`:
  the same test-time views and precision).

Any other model is loaded from its copy with ``mlflow.pyfunc.load_model``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import yaml

from fercore.errors import ModelFilesMissing, RegistryError
from fercore.models.inference import ensemble_spec_file
from fercore.serving.model_guard import checked_wrapper
from fercore.stores import default_cache_dir

logger = logging.getLogger(__name__)
Predict = Callable[[np.ndarray], np.ndarray]  # uint8 (N, 48, 48) -> probabilities (N, 7)
INDEX_FILE = "resolved.json"
MEMBERS_FILE = "fer_members.json"  # an ensemble copy's member versions -> their copies' folders
SOURCE_FILE = "fer_source.json"  # which store, model and version a copy holds (``run.py gc`` reads it)


def load_predictor(uri: str, tracking_uri: str, cache_dir: str | Path | None = None,
                   trust: bool = False) -> tuple[Predict, str]:
    """The registered model at ``uri`` as ``images -> probabilities``, and its name and version.

    Args:
        uri: ``models:/NAME@ALIAS`` or ``models:/NAME/VERSION``.
        tracking_uri: the MLflow store.
        cache_dir: where local copies go (default :func:`fercore.stores.default_cache_dir`).
        trust: load a model that is not one of this project's wrappers through ``mlflow.pyfunc``, which
            unpickles it (and so runs whatever code its pickle holds).

    Raises:
        RegistryError: the URI names no model, version or alias in the store (the message lists the
            aliases that exist), the store cannot be read or its server does not answer, the version's
            files are missing, or the model is of another class and ``trust`` is off.
    """
    folder, label = local_copy(uri, tracking_uri, cache_dir)
    return load_copy(folder, trust, label), label


def local_copy(uri: str, tracking_uri: str, cache_dir: str | Path | None = None) -> tuple[Path, str]:
    """The local copy of the registered model at ``uri`` (made or refreshed when the store changed), and its name
    and version; raises as :func:`load_predictor` does."""
    cache = Path(cache_dir or default_cache_dir()) / "models"
    cache.mkdir(parents=True, exist_ok=True)
    stamp = store_stamp(tracking_uri)
    key = f"{tracking_uri} {uri}"
    entry = _read_index(cache).get(key)
    if stamp is not None and entry and entry["stamp"] == stamp and (cache / entry["folder"] / "MLmodel").exists():
        folder, label = cache / entry["folder"], entry["label"]
    else:
        folder, label = _resolve_and_copy(uri, tracking_uri, cache)
        if stamp is not None:
            _write_index(cache, {**_read_index(cache), key: {"stamp": stamp, "folder": folder.name, "label": label}})
    return folder, label


def store_stamp(tracking_uri: str) -> list[int] | None:
    """Size and modification time of a SQLite store's files (its write-ahead log too): they change with
    every write. ``None`` for other stores, which are then asked every time."""
    if not tracking_uri.startswith("sqlite:///"):
        return None
    stamp = []
    for path in (Path(tracking_uri.removeprefix("sqlite:///")), Path(tracking_uri.removeprefix("sqlite:///") + "-wal")):
        try:
            stat = path.stat()
            stamp += [stat.st_mtime_ns, stat.st_size]
        except FileNotFoundError:
            stamp += [0, 0]
    return stamp if stamp[:2] != [0, 0] else None


def _read_index(cache: Path) -> dict:
    try:
        return json.loads((cache / INDEX_FILE).read_text())
    except (OSError, ValueError):
        return {}


def _write_index(cache: Path, index: dict) -> None:
    fd, tmp = tempfile.mkstemp(dir=cache, prefix=f".{INDEX_FILE}.")
    with os.fdopen(fd, "w") as f:
        json.dump(index, f, indent=1)
    os.replace(tmp, cache / INDEX_FILE)


def _resolve_and_copy(uri: str, tracking_uri: str, cache: Path) -> tuple[Path, str]:
    from fercore.tracking.registry import resolve_version
    from fercore.tracking.store import check_server, connect_registry

    check_server(tracking_uri)
    connect_registry(tracking_uri)
    name, version = resolve_version(uri)
    return copy_version(name, version, tracking_uri, cache), f"{name} v{version}"


def copy_version(name: str, version: str, tracking_uri: str, cache: Path, what: str = "") -> Path:
    """The folder holding a local copy of ``name`` version ``version`` (and of its members, for an
    ensemble), downloaded on first use; written under a temporary name and renamed, never half-written.

    Raises:
        ModelFilesMissing: the version (or a member of an ensemble) is not in the registry, or its files are gone
            or unreadable; the message names which (``what``: how to name this version, default ``NAME vN``).
        TrackingError: the store is busy or unreachable (:func:`fercore.tracking.store.is_transient`): the
            caller may try again; nothing is concluded about the files.
    """
    from fercore.models.inference import ensemble_members

    what = what or f"{name} v{version}"
    mv = registered_version(name, version, what)
    key = hashlib.sha256(f"{tracking_uri}\0{name}\0{version}\0{mv.source}\0{mv.run_id}".encode()).hexdigest()[:24]
    folder = cache / key
    if (folder / "MLmodel").exists():
        return folder
    tmp = Path(tempfile.mkdtemp(dir=cache, prefix=f".{key}."))
    try:
        artifacts = _download(name, version, tmp, what)
        if "ensemble" in artifacts or "routes" in artifacts:
            spec = json.loads(Path(ensemble_spec_file(artifacts)).read_text())
            members = {v: copy_version(spec["model_name"], v, tracking_uri, cache, f"member v{v} of {what}").name
                       for v in ensemble_members(spec)}
            (tmp / MEMBERS_FILE).write_text(json.dumps(members))
        (tmp / SOURCE_FILE).write_text(json.dumps({"tracking_uri": tracking_uri, "name": name, "version": version}))
        if folder.exists():  # another process copied it meanwhile
            shutil.rmtree(tmp)
        else:
            os.replace(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    logger.info("Copied %s v%s into %s", name, version, folder)
    return folder


def registered_version(name: str, version: str, what: str = ""):
    """The registry's record of a version; a version that is not there is :class:`ModelFilesMissing` (``what``: how
    to name it, default ``NAME vN``); a busy store raises MLflow's error."""
    from fercore.tracking.registry import get_version
    from fercore.tracking.store import TrackingError, is_transient

    try:
        return get_version(name, version)
    except TrackingError as exc:
        if is_transient(exc):
            raise
        raise ModelFilesMissing(f"{what or f'{name} v{version}'} is not in the registry "
                                f"({exc.message.splitlines()[0][:200]}): it was deleted; point the alias at another "
                                "version, or register the model again") from None


def _download(name: str, version: str, dst: Path, what: str) -> dict[str, str]:
    """A version's files into ``dst``, and its pyfunc artifacts' paths; files that are gone are
    :class:`ModelFilesMissing`."""
    from fercore.tracking.registry import download_version
    from fercore.tracking.store import TrackingError, is_transient

    try:
        download_version(name, version, dst)
        if not (dst / "MLmodel").exists():
            raise FileNotFoundError("no MLmodel file at its artifact location")
        return _pyfunc_spec(dst)[1]
    except (OSError, KeyError, TypeError, ValueError, TrackingError) as exc:
        if is_transient(exc):
            raise
        reason = exc.args[0] if isinstance(exc, FileNotFoundError) and len(exc.args) == 1 else str(exc)
        raise ModelFilesMissing(f"{what}'s files are missing or unreadable in its store ({type(exc).__name__}: "
                                f"{reason.splitlines()[0][:200]}): point the alias at another version, or train and "
                                "register it again") from None


def check_registered(uri: str, tracking_uri: str, cache_dir: str | Path | None = None) -> str:
    """``run.py check-model`` (``make serve`` runs it first): the registered model at ``uri``, and every member of an
    ensemble, are the project's wrappers; returns its name and version.

    Raises:
        UntrustedModelError: one of them is not (its name and what was found).
        RegistryError: the URI, the store or the files cannot be read.
    """
    folder, label = local_copy(uri, tracking_uri, cache_dir)
    _check_with_members(folder, label)
    return label


def _check_with_members(folder: Path, label: str) -> None:
    checked_wrapper(folder, label)
    members = _member_folders(folder) if (folder / MEMBERS_FILE).exists() else {}
    for version, sub in members.items():
        _check_with_members(folder.parent / sub, f"member v{version} of {label}")


def copied_versions(cache: Path) -> dict[Path, tuple[str, str, str]]:
    """Each local copy's folder -> ``(tracking_uri, name, version)`` (copies made before the record are left out)."""
    out = {}
    for record in cache.glob(f"*/{SOURCE_FILE}") if cache.is_dir() else ():
        try:
            meta = json.loads(record.read_text())
            out[record.parent] = (meta["tracking_uri"], meta["name"], str(meta["version"]))
        except (OSError, ValueError, KeyError):
            continue
    return out


def _pyfunc_spec(folder: Path) -> tuple[dict, dict[str, str]]:
    """The MLmodel file's ``python_function`` flavor, and its artifacts' local paths."""
    spec = yaml.safe_load((folder / "MLmodel").read_text())["flavors"]["python_function"]
    return spec, {k: str(folder / v["path"]) for k, v in (spec.get("artifacts") or {}).items()}


def ensemble_spec(name: str, version: str) -> dict:
    """An ensemble version's spec (``ensemble.json``, or ``routes.json`` of earlier releases), read from its files
    alone: its members are not loaded."""
    with tempfile.TemporaryDirectory() as tmp:
        return json.loads(Path(ensemble_spec_file(_download(name, version, Path(tmp), f"{name} v{version}"))).read_text())


def network_folder(folder: Path) -> Path:
    """The saved network (:func:`fercore.models.io.save_model`'s folder) inside a copied single-model version."""
    artifacts = _pyfunc_spec(folder)[1]
    if "model" not in artifacts:
        raise FileNotFoundError(f"{folder} holds no single network (an ensemble?)")
    return Path(artifacts["model"])


def load_copy(folder: Path, trust: bool = False, what: str = "") -> Predict:
    """``images -> probabilities`` of a copied version (see the module docstring for what is skipped); a model
    of another class only when ``trust`` is set (``mlflow.pyfunc`` unpickles it: its pickle can run any code).

    Raises:
        UntrustedModelError: the model (or a member of an ensemble) is not one of the project's wrappers and
            ``trust`` is off (:func:`fercore.serving.model_guard.checked_wrapper`).
    """
    from fercore.models.inference import ensemble_probabilities, load_for_inference

    spec, artifacts = _pyfunc_spec(folder)
    wrapper = checked_wrapper(folder, what, trust)
    if wrapper == "FerEmotionModel":
        return load_for_inference(artifacts["model"], spec.get("config")).predict_proba
    if wrapper == "FerEnsembleModel":
        spec = json.loads(Path(ensemble_spec_file(artifacts)).read_text())
        members = {v: load_copy(folder.parent / sub, trust, f"member v{v} of {what or folder}")
                   for v, sub in _member_folders(folder).items()}
        return lambda images: ensemble_probabilities(spec, {v: m(images) for v, m in members.items()})
    from fercore.tracking.registry import load_pyfunc, pyfunc_predict

    return pyfunc_predict(load_pyfunc(folder))


def load_network(folder: Path, what: str = ""):
    """The torch network of a copied single-model version, ready for inference (its embeddings: monitoring and
    promotion's drift reports).

    Raises:
        UntrustedModelError: the model is not one of the project's wrappers.
        RegistryError: it is an ensemble.
    """
    from fercore.models.inference import load_for_inference

    spec, artifacts = _pyfunc_spec(folder)
    if checked_wrapper(folder, what) != "FerEmotionModel":
        raise RegistryError(f"{what or folder} is an ensemble: embed one of its members")
    return load_for_inference(artifacts["model"], spec.get("config")).module


def version_predictor(name: str, version: str, tracking_uri: str, cache_dir: str | Path | None = None) -> Predict:
    """``images -> probabilities`` of ``name`` version ``version``, from its local copy (never unpickled)."""
    cache = Path(cache_dir or default_cache_dir()) / "models"
    cache.mkdir(parents=True, exist_ok=True)
    return load_copy(copy_version(name, version, tracking_uri, cache), what=f"{name} v{version}")


def version_network(name: str, version: str, tracking_uri: str, cache_dir: str | Path | None = None):
    """:func:`load_network` of ``name`` version ``version``'s local copy."""
    cache = Path(cache_dir or default_cache_dir()) / "models"
    cache.mkdir(parents=True, exist_ok=True)
    return load_network(copy_version(name, version, tracking_uri, cache), f"{name} v{version}")


def _member_folders(folder: Path) -> dict[str, str]:
    """An ensemble copy's member versions -> their copies' folder names."""
    return json.loads((folder / MEMBERS_FILE).read_text())


Explain = Callable[[np.ndarray, np.ndarray], np.ndarray]  # uint8 faces (N, 48, 48), classes (N,) -> maps (N, 48, 48)


def load_explainer(folder: Path) -> Explain:
    """Class activation maps of a copied version (:mod:`fercore.explain.cam`): a single model's own, an ensemble's
    from its members (routed: the routing member's map; averaging: the weighted sum).

    Raises:
        ExplainError: the model is not one of this project's wrappers, or its family has no supported layer.
    """
    from fercore.explain.cam import ExplainError, class_activation_maps, ensemble_maps
    from fercore.models.io import load_model

    spec, artifacts = _pyfunc_spec(folder)
    try:
        wrapper = checked_wrapper(folder)
    except RegistryError as exc:
        raise ExplainError(f"its maps cannot be drawn: {exc}") from None
    if wrapper == "FerEmotionModel":
        model = load_model(artifacts["model"])
        class_activation_maps(model, np.zeros((0, 48, 48), np.uint8), [])  # an unsupported family fails here, by name
        return lambda images, classes: class_activation_maps(model, images, classes)
    ensemble = json.loads(Path(ensemble_spec_file(artifacts)).read_text())
    members = {v: load_model(network_folder(folder.parent / sub)) for v, sub in _member_folders(folder).items()}
    return lambda images, classes: ensemble_maps(ensemble, members, images, classes)
