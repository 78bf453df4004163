"""The registry's local copies: each registered version copied once into the cache (keyed by store, name,
version and source, written under a temporary name and renamed), the index that resolves a URI without asking
the store again while a SQLite store is unchanged, and what a copy holds (its pyfunc spec, its network folder, an
ensemble's member copies). Nothing here unpickles a model: loading is :mod:`fercore.tracking.loading`.

A version whose files are gone is :class:`~fercore.errors.ModelFilesMissing`; a busy or unreachable store raises
:class:`~fercore.tracking.store.TrackingError`, from which nothing is concluded about the files.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

import yaml

from fercore.errors import ModelFilesMissing
from fercore.models.inference import ensemble_spec_file
from fercore.tracking.locations import default_cache_dir

logger = logging.getLogger(__name__)
INDEX_FILE = "resolved.json"
MEMBERS_FILE = "fer_members.json"  # an ensemble copy's member versions -> their copies' folders
SOURCE_FILE = "fer_source.json"  # which store, model and version a copy holds (``run.py gc`` reads it)


def local_copy(uri: str, tracking_uri: str, cache_dir: str | Path | None = None) -> tuple[Path, str]:
    """The local copy of the registered model at ``uri`` (made or refreshed when the store changed), and its name
    and version; raises as :func:`load_predictor` does."""
    cache = cache_folder(cache_dir)
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
    from fercore.tracking.store import check_server

    check_server(tracking_uri)
    name, version = resolve_version(tracking_uri, uri)
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
    mv = registered_version(tracking_uri, name, version, what)
    key = hashlib.sha256(f"{tracking_uri}\0{name}\0{version}\0{mv.source}\0{mv.run_id}".encode()).hexdigest()[:24]
    folder = cache / key
    if (folder / "MLmodel").exists():
        return folder
    tmp = Path(tempfile.mkdtemp(dir=cache, prefix=f".{key}."))
    try:
        artifacts = _download(tracking_uri, name, version, tmp, what)
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


def registered_version(tracking_uri: str, name: str, version: str, what: str = ""):
    """The registry's record of a version; a version that is not there is :class:`ModelFilesMissing` (``what``: how
    to name it, default ``NAME vN``); a busy store raises MLflow's error."""
    from fercore.tracking.registry import get_version
    from fercore.tracking.store import TrackingError, is_transient

    try:
        return get_version(tracking_uri, name, version)
    except TrackingError as exc:
        if is_transient(exc):
            raise
        raise ModelFilesMissing(f"{what or f'{name} v{version}'} is not in the registry "
                                f"({exc.message.splitlines()[0][:200]}): it was deleted; point the alias at another "
                                "version, or register the model again") from None


def _download(tracking_uri: str, name: str, version: str, dst: Path, what: str) -> dict[str, str]:
    """A version's files into ``dst``, and its pyfunc artifacts' paths; files that are gone are
    :class:`ModelFilesMissing`."""
    from fercore.tracking.registry import download_version
    from fercore.tracking.store import TrackingError, is_transient

    try:
        download_version(tracking_uri, name, version, dst)
        if not (dst / "MLmodel").exists():
            raise FileNotFoundError("no MLmodel file at its artifact location")
        return pyfunc_spec(dst)[1]
    except (OSError, KeyError, TypeError, ValueError, TrackingError) as exc:
        if is_transient(exc):
            raise
        reason = exc.args[0] if isinstance(exc, FileNotFoundError) and len(exc.args) == 1 else str(exc)
        raise ModelFilesMissing(f"{what}'s files are missing or unreadable in its store ({type(exc).__name__}: "
                                f"{reason.splitlines()[0][:200]}): point the alias at another version, or train and "
                                "register it again") from None


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


def pyfunc_spec(folder: Path) -> tuple[dict, dict[str, str]]:
    """The MLmodel file's ``python_function`` flavor, and its artifacts' local paths."""
    spec = yaml.safe_load((folder / "MLmodel").read_text())["flavors"]["python_function"]
    return spec, {k: str(folder / v["path"]) for k, v in (spec.get("artifacts") or {}).items()}


def ensemble_spec(tracking_uri: str, name: str, version: str) -> dict:
    """An ensemble version's spec (``ensemble.json``, or ``routes.json`` of earlier releases), read from its files
    alone: its members are not loaded."""
    with tempfile.TemporaryDirectory() as tmp:
        artifacts = _download(tracking_uri, name, version, Path(tmp), f"{name} v{version}")
        return json.loads(Path(ensemble_spec_file(artifacts)).read_text())


def network_folder(folder: Path) -> Path:
    """The saved network (:func:`fercore.models.io.save_model`'s folder) inside a copied single-model version."""
    artifacts = pyfunc_spec(folder)[1]
    if "model" not in artifacts:
        raise FileNotFoundError(f"{folder} holds no single network (an ensemble?)")
    return Path(artifacts["model"])


def member_folders(folder: Path) -> dict[str, str]:
    """An ensemble copy's member versions -> their copies' folder names."""
    return json.loads((folder / MEMBERS_FILE).read_text())


def cache_folder(cache_dir: str | Path | None = None) -> Path:
    """Where local copies go: ``<cache_dir>/models`` (default :func:`fercore.tracking.locations.default_cache_dir`), made."""
    cache = Path(cache_dir or default_cache_dir()) / "models"
    cache.mkdir(parents=True, exist_ok=True)
    return cache
