"""Reads FER-2013 from Kaggle, a folder, an archive (.zip, .tar.gz) or the original fer2013.csv.

Every source becomes one :class:`FerDataset` with the same class order. The decoded arrays are
cached per source sha256, so a rerun on the same source skips decoding.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import os
import shutil
import tempfile
from pathlib import Path, PurePosixPath

import numpy as np
from tqdm.auto import tqdm

from fercore.constants import CLASS_INDEX, CLASS_NAMES, CSV_LABEL_NAMES, IMAGE_SIZE, IMAGE_SUFFIXES, SUBSETS, UNKNOWN_SUBSET
from fercore.data import images as image_files
from fercore.data.dataset import FerDataset
from fercore.data.duplicates import duplicate_report
from fercore.data.images import ImageLimits
from fercore.errors import DataError
from fercore.tracking.locations import default_cache_dir

logger = logging.getLogger(__name__)

KAGGLE_DATASET = "msambare/fer2013"
CACHE_VERSION = 3  # bump when the decoded form changes
_HELP = "Point --data at a FER-2013 folder, .zip/.tar.gz archive or fer2013.csv, or use --data kaggle."
_FIX_ARCHIVE = f"Download it again. {_HELP}"


def ingest(
    source: str | Path,
    cache_dir: str | Path | None = None,
    kaggle_dataset: str = KAGGLE_DATASET,
    use_cache: bool = True,
    limits: ImageLimits = ImageLimits(),
    digest: str | None = None,
) -> FerDataset:
    """Loads FER-2013 from ``source`` (``"kaggle"`` or a path) into a validated dataset.

    Args:
        source: ``"kaggle"``, a folder in the Kaggle layout (``train/<class>/*.jpg``,
            ``test/<class>/*.jpg``), a .zip/.tar.gz of it, or the original ``fer2013.csv``.
        cache_dir: where Kaggle downloads and decoded arrays are kept.
        kaggle_dataset: the Kaggle dataset handle.
        use_cache: reuse decoded arrays of an earlier run on the same source.
        limits: accepted image sizes, and whether others are errors or skipped.
        digest: the source's :func:`source_sha256`, when the caller has it already.

    Returns:
        The dataset, splits ``train`` and ``test``; metadata holds counts, sha256 and duplicates.

    Raises:
        DataError: the source is missing, malformed, or Kaggle cannot be used.
    """
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    path = download_kaggle(kaggle_dataset, cache_dir) if str(source) == "kaggle" else Path(source).expanduser()
    if not path.exists():
        raise DataError(f"data source {path} does not exist. {_HELP}")
    digest = digest or source_sha256(path)
    limits_key = hashlib.sha256(limits.key().encode()).hexdigest()[:8]
    cached = cache_dir / "ingest" / f"{digest[:24]}-{limits_key}-v{CACHE_VERSION}"
    if use_cache and (cached / "metadata.json").exists():
        logger.info("Reusing decoded dataset from %s", cached)
        return FerDataset.load(cached)
    check_archive(path)  # only before decoding: a cache entry of this sha256 came from a complete archive
    ds = read_source(path, limits)
    ds.metadata.update(source=str(source), sha256=digest)
    _store(ds, cached)
    return ds


def source_fingerprint(source: str | Path, cache_dir: str | Path | None = None,
                       kaggle_dataset: str = KAGGLE_DATASET) -> str:
    """:func:`source_sha256` of ``source`` (``"kaggle"``: of the download, fetched once into the cache)."""
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    path = download_kaggle(kaggle_dataset, cache_dir) if str(source) == "kaggle" else Path(source).expanduser()
    if not path.exists():
        raise DataError(f"data source {path} does not exist. {_HELP}")
    return source_sha256(path)


def check_source(source: str | Path, cache_dir: str | Path | None = None, kaggle_dataset: str = KAGGLE_DATASET) -> None:
    """Fails fast, before any pipeline work, when the source path or Kaggle credentials are missing."""
    if str(source) == "kaggle":
        cached = Path(cache_dir) if cache_dir else default_cache_dir()
        if not (cached / "kaggle" / kaggle_dataset.replace("/", "__") / ".complete").exists():
            _require_kaggle_credentials()
    elif not Path(source).expanduser().exists():
        raise DataError(f"data source {source} does not exist. {_HELP}")
    else:
        check_archive(Path(source).expanduser())


def check_archive(path: Path) -> None:
    """Fails fast on a FER-2013 archive that was cut short or is corrupt (a partial download)."""
    image_files.check_archive(path, _FIX_ARCHIVE)


def read_source(path: Path, limits: ImageLimits = ImageLimits()) -> FerDataset:
    """Decodes a folder, archive or CSV (no cache); adds counts and duplicates to metadata."""
    if path.is_file() and path.suffix.lower() == ".csv":
        ds = read_csv(path)
    elif path.is_dir() and (path / "fer2013.csv").exists() and not (path / "train").exists():
        ds = read_csv(path / "fer2013.csv")
    else:
        ds = _read_image_tree(path, limits)
    check_coverage(path, ds.splits, ds.labels)
    ds.metadata["counts"] = ds.counts()
    ds.metadata["duplicates"] = duplicate_report(ds)
    return ds


def _store(ds: FerDataset, target: Path) -> None:
    """Writes the cache entry into a temporary folder and renames it: never half-written."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
    try:
        ds.save(tmp)
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def source_sha256(path: Path) -> str:
    """sha256 of a file, or of a folder's relative paths and file contents in sorted order."""
    digest = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for file in files:
        if path.is_dir():
            digest.update(file.relative_to(path).as_posix().encode() + b"\0")
        with open(file, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


# --- image folders and archives -------------------------------------------------------------


def _subset_of(file_name: str) -> str:
    prefix = file_name.split("_", 1)[0]
    return prefix if prefix in SUBSETS else UNKNOWN_SUBSET


def _read_image_tree(path: Path, limits: ImageLimits = ImageLimits()) -> FerDataset:
    images, labels, splits, ids, subsets = [], [], [], [], []
    converted, skipped = 0, []
    for name, read in tqdm(image_files.iter_members(path, _FIX_ARCHIVE), desc=f"Decoding {path.name}", unit="img", leave=False,
                           disable=None, delay=2):
        parts = PurePosixPath(name).parts
        if image_files.is_hidden(parts):
            continue
        split_at = next((i for i, p in enumerate(parts) if p.lower() in ("train", "test")), None)
        if split_at is None:
            continue  # files beside the train/ and test/ trees (README, licence) are not data
        rel = parts[split_at:]
        if len(rel) != 3:
            raise DataError(f"{name}: expected <split>/<class>/<image>; images must sit in a class folder.")
        split, cls, file_name = rel[0].lower(), rel[1].lower(), rel[2]
        if cls not in CLASS_INDEX:
            raise DataError(f"{name}: unknown class folder '{rel[1]}'. Class folders must be {', '.join(CLASS_NAMES)}.")
        if not file_name.lower().endswith(IMAGE_SUFFIXES):
            raise DataError(f"{name}: not an image file. Remove it or move it out of the class folders.")
        pixels, was_converted = image_files.decode_image(name, read(), limits)
        if pixels is None:
            skipped.append(name)
            continue
        converted += was_converted
        images.append(pixels)
        labels.append(CLASS_INDEX[cls])
        splits.append(split)
        ids.append("/".join(rel))
        subsets.append(_subset_of(file_name) if split == "test" else "Training")
    if skipped:
        logger.warning("Skipped %d images outside the size limits (data.on_bad_size: skip), e.g. %s", len(skipped),
                       ", ".join(skipped[:5]))
    if not splits:
        raise DataError(f"{path}: no images found under train/<class>/ or test/<class>/. {_HELP}")
    if converted:
        logger.warning("Converted %d images to %dx%d grayscale", converted, IMAGE_SIZE, IMAGE_SIZE)
    ds = FerDataset(np.stack(images), np.array(labels), np.array(splits), np.array(ids), np.array(subsets))
    ds.metadata["converted_images"] = converted
    ds.metadata["skipped_images"] = {"count": len(skipped), "examples": skipped[:20]}
    return ds


def check_coverage(path: Path, splits: np.ndarray, labels: np.ndarray) -> None:
    """Every class must have images in both train and test; the error lists the counts found."""
    splits, labels = np.asarray(splits), np.asarray(labels)
    found = "; ".join(f"{split}: " + ", ".join(f"{c} {int(((splits == split) & (labels == i)).sum())}"
                                               for i, c in enumerate(CLASS_NAMES)) for split in ("train", "test"))
    csv_hint = " (CSV: Usage Training, PublicTest, PrivateTest)" if path.suffix.lower() == ".csv" else ""
    for split in ("train", "test"):
        present = set(labels[splits == split].tolist())
        if not present:
            raise DataError(f"{path}: no {split} images. FER-2013 needs train and test images of every class"
                            f"{csv_hint}. Found {found}.")
        missing = [CLASS_NAMES[i] for i in range(len(CLASS_NAMES)) if i not in present]
        if missing:
            raise DataError(f"{path}: {split} has no images of {', '.join(missing)}. Found {found}.")


# --- the original CSV release ---------------------------------------------------------------


def read_csv(path: Path) -> FerDataset:
    """Reads ``fer2013.csv`` (``emotion,pixels,Usage``; labels 0 angry ... 6 neutral)."""
    usage_split = {"Training": "train", "PublicTest": "test", "PrivateTest": "test"}
    images, labels, splits, ids, subsets = [], [], [], [], []
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = {"emotion", "pixels", "Usage"} - set(reader.fieldnames or [])
        if missing:
            raise DataError(f"{path}: missing column(s) {sorted(missing)}; expected emotion,pixels,Usage.")
        for row in tqdm(reader, desc=f"Parsing {path.name}", unit="row", leave=False, disable=None, delay=2):
            line = reader.line_num
            images.append(_parse_pixels(path, line, row["pixels"]))
            labels.append(CLASS_INDEX[CSV_LABEL_NAMES[_parse_label(path, line, row["emotion"])]])
            usage = (row["Usage"] or "").strip()
            if usage not in usage_split:
                raise DataError(f"{path} line {line}: Usage '{usage}' is not one of {list(usage_split)}.")
            splits.append(usage_split[usage])
            subsets.append(usage)
            ids.append(f"csv/{line}")
    if not images:
        raise DataError(f"{path}: the CSV has no rows. {_HELP}")
    ds = FerDataset(np.stack(images), np.array(labels), np.array(splits), np.array(ids), np.array(subsets))
    ds.metadata["converted_images"] = 0
    return ds


def _parse_label(path: Path, line: int, text: str) -> int:
    try:
        label = int(text)
    except (TypeError, ValueError):
        label = -1
    if label not in CSV_LABEL_NAMES:
        raise DataError(f"{path} line {line}: emotion '{text}' is not a label in 0-6. Fix or remove the row.")
    return label


def _parse_pixels(path: Path, line: int, text: str) -> np.ndarray:
    try:
        values = np.array((text or "").split(), dtype=np.int64)
    except ValueError:
        raise DataError(f"{path} line {line}: pixels must be space-separated integers 0-255. Fix or remove the row.") from None
    if values.size != IMAGE_SIZE * IMAGE_SIZE or values.min() < 0 or values.max() > 255:
        raise DataError(
            f"{path} line {line}: pixels must be {IMAGE_SIZE * IMAGE_SIZE} integers 0-255, "
            f"got {values.size} values. Fix or remove the row."
        )
    return values.astype(np.uint8).reshape(IMAGE_SIZE, IMAGE_SIZE)


# --- Kaggle ---------------------------------------------------------------------------------


def kaggle_credentials_present() -> bool:
    """Whether any credential source the ``kaggle`` package reads is set."""
    if os.environ.get("KAGGLE_API_TOKEN") or (os.environ.get("KAGGLE_USERNAME") and os.environ.get("KAGGLE_KEY")):
        return True
    config_dir = Path(os.environ.get("KAGGLE_CONFIG_DIR") or Path.home() / ".kaggle")
    return (config_dir / "kaggle.json").exists() or (config_dir / "access_token").exists()


def _require_kaggle_credentials() -> None:
    if not kaggle_credentials_present():
        raise DataError(
            "Kaggle credentials are missing. Set KAGGLE_USERNAME and KAGGLE_KEY (or KAGGLE_API_TOKEN), or save "
            "kaggle.json from kaggle.com/settings into ~/.kaggle/; or use a local copy with --data PATH."
        )


def download_kaggle(dataset: str, cache_dir: Path) -> Path:
    """Downloads and unzips a Kaggle dataset once into ``cache_dir/kaggle``; returns its folder."""
    target = Path(cache_dir) / "kaggle" / dataset.replace("/", "__")
    if (target / ".complete").exists():
        logger.info("Using the Kaggle download cached in %s", target)
        return target
    _require_kaggle_credentials()
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
    try:
        _kaggle_download(dataset, partial)
        (partial / ".complete").touch()
        if target.exists():
            shutil.rmtree(target)
        os.replace(partial, target)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return target


def _kaggle_download(dataset: str, into: Path) -> None:
    from kaggle.api.kaggle_api_extended import KaggleApi

    logger.info("Downloading Kaggle dataset %s", dataset)
    try:
        api = KaggleApi()
        api.authenticate()
        api.dataset_download_files(dataset, path=str(into), unzip=True, quiet=False)
    except SystemExit as exc:  # the kaggle package exits when it finds no credentials
        raise DataError("Kaggle rejected the credentials. Check KAGGLE_USERNAME/KAGGLE_KEY or ~/.kaggle/kaggle.json.") from exc
    except Exception as exc:
        raise DataError(_kaggle_error_message(dataset, exc)) from exc


def _kaggle_error_message(dataset: str, exc: Exception) -> str:
    text = f"{type(exc).__name__}: {exc}"
    status = getattr(getattr(exc, "response", None), "status_code", None) or getattr(exc, "status", None)
    if status in (401, 403) or "401" in text or "403" in text or "Unauthorized" in text:
        return f"Kaggle rejected the credentials ({text}). Check KAGGLE_USERNAME/KAGGLE_KEY or ~/.kaggle/kaggle.json."
    if status == 404 or "404" in text:
        return f"Kaggle dataset '{dataset}' was not found ({text}). Check data.kaggle_dataset in the config."
    return f"Kaggle is unreachable ({text}). Check the network, or download {dataset} elsewhere and use --data PATH."
