"""Newly arrived labelled faces: batches of class folders added to the training split.

A batch is a folder (or a .zip / .tar.gz of one) holding ``angry/ ... surprise/`` class folders.
``data.incoming`` names batches, or folders whose entries are batches (so a schedule finds a new
drop by itself). Batch images join the training split only: never validation or test, and a
batch holding an exact copy of a test image is refused.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path, PurePosixPath

import numpy as np

from fercore.constants import CLASS_INDEX, CLASS_NAMES, IMAGE_SUFFIXES
from fercore.data.dataset import FerDataset
from fercore.data.duplicates import image_hashes
from fercore.data.images import ARCHIVE_SUFFIXES, ImageLimits, check_archive, decode_image, is_hidden, iter_members
from fercore.data.sources import source_sha256
from fercore.errors import DataError

logger = logging.getLogger(__name__)
INCOMING_SUBSET = "Incoming"  # the subset of batch images: split_validation never draws them into val


def _is_batch(path: Path) -> bool:
    if path.is_file():
        return path.name.lower().endswith(ARCHIVE_SUFFIXES)
    return any(child.is_dir() and child.name.lower() in CLASS_INDEX for child in path.iterdir())


def _fix(batch: Path) -> str:
    return f"Replace the incoming batch {batch}, or take it out of data.incoming."


def batch_paths(locations: list[str]) -> list[Path]:
    """The batches of ``data.incoming``: each location is a batch, or a folder of batches (sorted).

    Raises:
        DataError: a location does not exist, holds neither class folders nor batches, holds a link to a batch
            outside it, or names a batch that another location names too (its images would be trained on twice).
    """
    batches: list[Path] = []
    for location in map(lambda p: Path(p).expanduser(), locations):
        if not location.exists():
            raise DataError(f"data.incoming: {location} does not exist")
        if _is_batch(location):
            batches.append(location)
            continue
        inside = sorted(p for p in location.iterdir() if not p.name.startswith(".") and _is_batch(p))
        for link in (p for p in inside if p.is_symlink() and not p.resolve().is_relative_to(location.resolve())):
            raise DataError(f"data.incoming: {link} is a link to {link.resolve()}, outside {location}: as inside a "
                            "batch, a folder of batches takes no links that leave it (a batch could change without "
                            f"anything in {location} changing). Copy the batch in, or list {link.resolve()} in "
                            "data.incoming itself")
        if not inside and any(location.iterdir()):
            raise DataError(f"data.incoming: {location} holds neither class folders ({', '.join(CLASS_NAMES)}) nor "
                            "batches of them (folders or archives)")
        batches += inside
    seen: dict[Path, Path] = {}
    for batch in batches:
        if batch.resolve() in seen:
            raise DataError(f"data.incoming names the batch {batch} twice ({seen[batch.resolve()]} and {batch}, directly "
                            "or through a folder of batches): its images would be trained on twice. List it once.")
        seen[batch.resolve()] = batch
    return batches


def check_batches(locations: list[str]) -> list[Path]:
    """:func:`batch_paths`, with every archive read to its end: a batch cut short fails here, by name."""
    batches = batch_paths(locations)
    for batch in batches:
        check_archive(batch, _fix(batch))
    return batches


def fingerprint(source_digest: str, locations: list[str]) -> str:
    """The source's digest, extended by every incoming batch's name and content (a new batch changes it)."""
    if not locations:
        return source_digest
    digest = hashlib.sha256(source_digest.encode())
    for batch in batch_paths(locations):
        digest.update(batch.name.encode() + b"\0" + source_sha256(batch).encode())
    return digest.hexdigest()


def read_batch(path: Path, limits: ImageLimits = ImageLimits()) -> tuple[np.ndarray, np.ndarray, list[str], int]:
    """A batch's images, labels, relative paths, and how many images were converted (not 48x48 grayscale).

    Raises:
        DataError: an image outside a class folder, an unknown class folder, an unreadable image.
    """
    images, labels, names, converted = [], [], [], 0
    for name, read in iter_members(path, _fix(path)):
        parts = PurePosixPath(name).parts
        if is_hidden(parts) or not name.lower().endswith(IMAGE_SUFFIXES):
            continue
        cls = parts[-2].lower() if len(parts) >= 2 else ""
        if cls not in CLASS_INDEX:
            raise DataError(f"{path}: {name} is not inside a class folder ({', '.join(CLASS_NAMES)})")
        pixels, was_converted = decode_image(f"{path}: {name}", read(), limits)
        if pixels is not None:
            converted += was_converted
            images.append(pixels)
            labels.append(CLASS_INDEX[cls])
            names.append(name)
    if not images:
        raise DataError(f"{path}: an incoming batch without images; expected {'/, '.join(CLASS_NAMES)}/ folders")
    return np.stack(images), np.array(labels), names, converted


def content_digest(images: np.ndarray, labels: np.ndarray, hashes: np.ndarray | None = None) -> str:
    """The digest of a batch's labelled images, whatever their order, names or container: the same faces as a
    folder and as an archive, or renamed, have the same digest."""
    hashes = image_hashes(images) if hashes is None else hashes
    return hashlib.sha256(b"".join(sorted(h + bytes([int(y)]) for h, y in zip(hashes, labels)))).hexdigest()


def add_incoming(ds: FerDataset, batches: list[Path], limits: ImageLimits = ImageLimits()) -> FerDataset:
    """``ds`` with every batch's images added to its training split; ``metadata["incoming"]`` lists
    each batch (name, sha256, images per class).

    Raises:
        DataError: a batch holds an exact copy of a test image (named with the count and examples), or
            has the same content as another batch.
    """
    test_hashes = image_hashes(ds.images[ds.splits == "test"])
    parts, report, contents = [ds], [], {}
    for batch in batches:
        digest = source_sha256(batch)
        images, labels, names, converted = read_batch(batch, limits)
        hashes = image_hashes(images)
        content = content_digest(images, labels, hashes)
        if content in contents:
            raise DataError(f"incoming batches {contents[content]} and {batch} hold the same labelled images: they would "
                            "be trained on twice. Take one of them out of data.incoming.")
        contents[content] = batch
        leaked = np.isin(hashes, test_hashes)
        if leaked.any():
            examples = ", ".join(n for n, bad in zip(names, leaked) if bad)
            raise DataError(f"incoming batch {batch} holds {int(leaked.sum())} exact copies of test images (e.g. "
                            f"{examples[:300]}): adding them would leak the test split into training. Remove them "
                            "and run again.")
        counts = {c: int((labels == i).sum()) for i, c in enumerate(CLASS_NAMES)}
        report.append({"name": batch.name, "sha256": digest, "images": len(images), "converted": converted,
                       "counts": counts})
        logger.info("Incoming batch %s: %d images (%s)%s", batch.name, len(images),
                    ", ".join(f"{c} {n}" for c, n in counts.items() if n),
                    f"; {converted} converted to 48x48 grayscale" if converted else "")
        n, ids = len(images), np.array([f"incoming/{batch.name}/{x}" for x in names])
        parts.append(FerDataset(images, labels, np.full(n, "train"), ids, np.full(n, INCOMING_SUBSET)))
    out = FerDataset(*(np.concatenate([getattr(p, a) for p in parts])
                       for a in ("images", "labels", "splits", "ids", "subsets")), dict(ds.metadata))
    out.metadata.update(incoming=report, counts=out.counts())
    return out


def incoming_tag(metadata: dict) -> str:
    """The registry tag of the batches a model was trained with: ``name:sha256[:12]`` each."""
    return ",".join(f"{b['name']}:{b['sha256'][:12]}" for b in metadata.get("incoming", []))
