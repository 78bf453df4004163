"""Reading images: files of folders and archives, decoded to 8-bit grayscale within size limits.

Shared by ingest (FER-2013 and incoming batches), monitoring and ``run.py predict``, so that every
entry point refuses the same files with the same messages.
"""

from __future__ import annotations

import gzip
import io
import stat
import tarfile
import warnings
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from fercore.constants import IMAGE_SIZE
from fercore.errors import DataError

ARCHIVE_SUFFIXES = (".zip", ".tar.gz", ".tgz", ".tar")
# Photos given to predict and monitor: larger ones are refused from their header, before decoding
# (a 30000x30000 PNG of a few kB would need 900 MB). 50 megapixels is a full-frame camera's photo.
PHOTO_MAX_PIXELS = 50_000_000

MAX_MEMBER_BYTES = 64 * 1024 * 1024  # one image file: a 4-megapixel 16-bit RGBA TIFF is 32 MB
Member = tuple[str, Callable[[], bytes]]


class ImageTooLarge(DataError):
    """An image whose header declares more pixels than allowed."""


@dataclass(frozen=True)
class ImageLimits:
    """Which image sizes are accepted: smaller or larger images are errors, or skipped and counted.

    Attributes:
        min_side: the shorter side must be at least this many pixels (upscaling a tiny image
            invents a face).
        max_pixels: width x height at most this (checked from the header, before decoding).
        on_violation: ``error`` or ``skip``.
    """

    min_side: int = 16
    max_pixels: int = 4_000_000
    on_violation: str = "error"

    def key(self) -> str:
        return f"{self.min_side}-{self.max_pixels}-{self.on_violation}"

    def problem(self, size: tuple[int, int]) -> str | None:
        """Why an image of ``size`` (width, height) is refused, or None."""
        if min(size) < self.min_side:
            return f"{size[0]}x{size[1]} pixels, below the minimum side of {self.min_side} (data.min_image_size)"
        if size[0] * size[1] > self.max_pixels:
            return (f"{size[0]}x{size[1]} pixels, above the maximum of {self.max_pixels:,} pixels "
                    "(data.max_image_pixels)")
        return None


def is_hidden(parts: tuple[str, ...]) -> bool:
    """Whether a member path lies in a hidden or macOS resource folder (never data)."""
    return any(p.startswith(".") or p == "__MACOSX" for p in parts)


def iter_members(path: Path, fix: str) -> Iterator[Member]:
    """``(relative name, read)`` of every file of a folder, .zip or .tar(.gz); ``fix`` ends the message
    of an archive that is cut short or corrupt (what the user should do about it).

    What could reach outside the folder or archive, or make it read far more than it holds, is refused by
    name: a member with an absolute path or ``..``, a link or device member, a link in a folder that leaves
    it, a member whose header declares more than :data:`MAX_MEMBER_BYTES`.

    Raises:
        DataError: an unsupported file type, a corrupt archive (also raised by ``read``), a refused member.
    """
    if path.is_dir():
        yield from _folder_members(path, fix)
        return
    name = path.name.lower()
    try:
        if name.endswith(".zip"):
            with zipfile.ZipFile(path) as zf:
                for info in zf.infolist():
                    if not info.is_dir():
                        kind = "a link" if stat.S_ISLNK(info.external_attr >> 16) else None
                        _check_member(path, info.filename, info.file_size, kind, fix)
                        yield info.filename, _member_reader(path, info.filename, lambda info=info: zf.read(info), fix)
        elif name.endswith(ARCHIVE_SUFFIXES):
            with tarfile.open(path, "r:*") as tf:
                for member in tf:
                    kind = ("a link" if member.issym() or member.islnk() else None if member.isfile() or member.isdir()
                            else "a device or special file")
                    _check_member(path, member.name, member.size, kind, fix)
                    if member.isfile():
                        read = lambda member=member: tf.extractfile(member).read()  # noqa: E731
                        yield member.name, _member_reader(path, member.name, read, fix)
        else:
            raise DataError(f"{path}: unsupported file type. Use a folder, {', '.join(ARCHIVE_SUFFIXES)} or .csv. {fix}")
    except EOFError:
        raise DataError(f"{path}: the archive ends early (a partial download?): {_lower_first(fix)}") from None
    except (zipfile.BadZipFile, tarfile.TarError, zlib.error, OSError) as exc:
        raise DataError(f"{path}: corrupt or unreadable archive ({exc}). {fix}") from exc


def _check_member(path: Path, name: str, size: int, kind: str | None, fix: str) -> None:
    """Refuses an archive member that names a place outside the archive, is a link or device, or is too large."""
    parts = PurePosixPath(name).parts
    if name.startswith(("/", "\\")) or ".." in parts or (parts and ":" in parts[0]):
        raise DataError(f"{path}: the member {name} points outside the archive (an absolute path or '..'): refused. {fix}")
    if kind is not None:
        raise DataError(f"{path}: the member {name} is {kind}, not a regular file: refused. {fix}")
    if size > MAX_MEMBER_BYTES:
        raise DataError(f"{path}: the member {name} declares {size:,} bytes, above {MAX_MEMBER_BYTES:,} for one image: "
                        f"refused without reading it. {fix}")


def _folder_members(root: Path, fix: str) -> Iterator[Member]:
    """A folder's files (sorted); a link that leaves the folder is refused."""
    top = root.resolve()
    for file in sorted(root.rglob("*")):
        if file.is_symlink() and not file.resolve().is_relative_to(top):
            raise DataError(f"{root}: {file.relative_to(root).as_posix()} is a link to {file.resolve()}, outside the "
                            f"folder: refused. {fix}")
        if file.is_file():  # a linked folder inside is not entered: its target is read where it lies
            yield file.relative_to(root).as_posix(), file.read_bytes


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]


def _member_reader(path: Path, name: str, read: Callable[[], bytes], fix: str) -> Callable[[], bytes]:
    """``read`` with the archive's decompression errors turned into errors naming the member."""
    def guarded() -> bytes:
        try:
            return read()
        except EOFError:
            raise DataError(f"{path}: the archive ends early, inside {name} (a partial download?): {_lower_first(fix)}") from None
        except (zipfile.BadZipFile, tarfile.TarError, zlib.error, OSError) as exc:
            raise DataError(f"{path}: corrupt archive member {name} ({exc}). {fix}") from None

    return guarded


def check_archive(path: Path, fix: str) -> None:
    """Fails fast on an archive that was cut short or is corrupt (a partial download).

    A gzip stream is read to its end (about a second for FER-2013's 60 MB); a zip's central
    directory, which sits at its end, is read. Folders and other files pass.
    """
    name = path.name.lower()
    if not path.is_file() or not name.endswith(ARCHIVE_SUFFIXES):
        return
    try:
        if name.endswith(".zip"):
            with zipfile.ZipFile(path):
                pass
        elif name.endswith((".tar.gz", ".tgz")):
            with gzip.open(path, "rb") as f:
                while f.read(1 << 22):
                    pass
    except EOFError:
        raise DataError(f"{path}: the archive ends early (a partial download?): {_lower_first(fix)}") from None
    except (zipfile.BadZipFile, gzip.BadGzipFile, zlib.error, OSError) as exc:
        raise DataError(f"{path}: corrupt or unreadable archive ({exc}). {fix}") from None


def open_image(name: str | Path, source: str | Path | bytes, max_pixels: int, fix: str) -> Image.Image:
    """Opens an image (the header only) and checks its size; ``source`` is a path or the file's bytes.

    Raises:
        DataError: not an image, or more than ``max_pixels`` (named with its size and ``fix``).
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # max_pixels decides
            im = Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)
    except Image.DecompressionBombError as exc:  # Pillow refuses twice its own limit before we see the size
        raise ImageTooLarge(f"{name}: too large to decode ({exc}). {fix}") from None
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise DataError(f"{name}: not a readable image ({exc}). {fix}") from None
    if im.width * im.height > max_pixels:
        im.close()
        raise ImageTooLarge(f"{name}: {im.width}x{im.height} pixels, above the maximum of {max_pixels:,}. {fix}")
    return im


def to_gray8(im: Image.Image) -> np.ndarray:
    """The image as uint8 grayscale. 16- and 32-bit integer images are scaled from their type's range
    (Pillow's ``convert("L")`` clips them: a 16-bit face would turn white), float images from [0, 1]."""
    if im.mode.startswith("I;16") or (im.mode == "I" and np.asarray(im).max(initial=0) > 255):
        wide = np.asarray(im).astype(np.float64)
        return np.clip(np.rint(wide / 257.0), 0, 255).astype(np.uint8)  # 65535 -> 255
    if im.mode == "F":
        values = np.asarray(im, dtype=np.float64)
        scale = 255.0 if values.max(initial=0) <= 1.0 else 1.0
        return np.clip(np.rint(values * scale), 0, 255).astype(np.uint8)
    return np.asarray(im if im.mode == "L" else im.convert("L"), dtype=np.uint8)


def read_photo(name: str | Path, source: str | Path | bytes, max_pixels: int = PHOTO_MAX_PIXELS,
               fix: str = "Remove or replace this file.") -> np.ndarray:
    """A photo as uint8 grayscale, upright (EXIF orientation applied).

    Raises:
        DataError: not an image, too large, or cut short.
    """
    im = open_image(name, source, max_pixels, fix)
    try:
        with im:
            return to_gray8(ImageOps.exif_transpose(im))
    except (OSError, ValueError, SyntaxError) as exc:
        raise DataError(f"{name}: not a readable image ({exc}). {fix}") from None


def decode_image(name: str, data: bytes, limits: ImageLimits = ImageLimits()) -> tuple[np.ndarray | None, bool]:
    """Decodes one dataset image to 48x48 grayscale; returns the pixels and whether it was converted.

    An image outside ``limits`` raises :class:`DataError`, or gives ``None`` pixels when
    ``limits.on_violation`` is ``skip``. Its size is checked from the header, before decoding.
    """
    fix = "Remove or replace this file, then run again."
    try:
        im = open_image(name, data, 2**62, fix)  # ``limits`` decide the size, but Pillow refuses bombs first
    except ImageTooLarge as exc:
        if limits.on_violation == "skip":
            return None, False
        raise DataError(f"{exc} Or set data.on_bad_size: skip to skip such images (they are counted).") from None
    with im:
        problem = limits.problem(im.size)
        if problem and limits.on_violation == "skip":
            return None, False
        if problem:
            raise DataError(f"{name}: {problem}. Remove this image, or set data.on_bad_size: skip to skip "
                            "such images (they are counted).")
        try:
            converted = im.mode != "L" or im.size != (IMAGE_SIZE, IMAGE_SIZE)
            gray = to_gray8(im)
        except (OSError, ValueError, SyntaxError) as exc:
            raise DataError(f"{name}: not a readable image ({exc}). {fix}") from None
    if gray.shape != (IMAGE_SIZE, IMAGE_SIZE):
        gray = np.asarray(Image.fromarray(gray).resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BILINEAR), np.uint8)
    return gray, converted
