"""Where training checkpoints live: a local folder, or any filesystem with ZenML's ``fileio`` interface.

On a remote stack a step's pod is gone after a failure, so a resumable checkpoint must live where the
retried step can read it: the steps pass ``zenml.io.fileio`` and a path in the artifact store. This
module stays ZenML-free; it only needs an object with ``open``, ``exists``, ``rename``, ``makedirs`` and
``rmtree`` (the functions of ``zenml.io.fileio``, or :class:`LocalFS`).
"""

from __future__ import annotations

import io
import logging
import os
import posixpath
import shutil
from pathlib import Path
from typing import IO, Any, Protocol

import torch

CHECKPOINT_FILE = "last.pt"
logger = logging.getLogger(__name__)


class FileSystem(Protocol):
    def open(self, path: str, mode: str = "r") -> IO: ...
    def exists(self, path: str) -> bool: ...
    def rename(self, src: str, dst: str, overwrite: bool = False) -> None: ...
    def makedirs(self, path: str) -> None: ...
    def rmtree(self, path: str) -> None: ...


class LocalFS:
    """The local disk with ``zenml.io.fileio``'s function names."""

    open = staticmethod(open)
    exists = staticmethod(os.path.exists)

    @staticmethod
    def rename(src: str, dst: str, overwrite: bool = False) -> None:
        if not overwrite and os.path.exists(dst):
            raise FileExistsError(dst)
        os.replace(src, dst)

    @staticmethod
    def makedirs(path: str) -> None:
        os.makedirs(path, exist_ok=True)

    rmtree = staticmethod(shutil.rmtree)


class CheckpointStore:
    """One resumable checkpoint per training job key, under ``root/<key>/last.pt``.

    Args:
        root: a local folder, or a URI the filesystem understands (``s3://bucket/checkpoints/cnn``).
        fs: the filesystem; the local disk by default.
    """

    def __init__(self, root: str | Path, fs: FileSystem | None = None):
        self.root, self.fs = str(root), fs or LocalFS()

    def __repr__(self) -> str:
        return f"CheckpointStore({self.root!r})"

    def path(self, key: str) -> str:
        return posixpath.join(self.root, key, CHECKPOINT_FILE)

    def exists(self, key: str) -> bool:
        return self.fs.exists(self.path(key))

    def load(self, key: str, map_location: str | torch.device = "cpu") -> dict[str, Any] | None:
        """The checkpoint of ``key`` (tensors only, ``weights_only``), or ``None`` when there is none, or when it
        cannot be read: then it is logged and removed, and the job starts its training (or rung) again."""
        if not self.exists(key):
            return None
        try:
            with self.fs.open(self.path(key), "rb") as f:
                data = f.read()
            return torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
        except Exception as exc:  # a truncated or overwritten file; the other jobs' checkpoints are separate
            logger.warning("Checkpoint %s is unreadable (%s: %s): removed; this job starts again from its start "
                           "weights", self.path(key), type(exc).__name__, str(exc)[:200])
            self.delete(key)
            return None

    def save(self, key: str, state: dict[str, Any]) -> None:
        """Writes the whole checkpoint first, then moves it in place: an interrupted write leaves the last one."""
        buffer = io.BytesIO()
        torch.save(state, buffer)
        path = self.path(key)
        self.fs.makedirs(posixpath.dirname(path))
        with self.fs.open(path + ".partial", "wb") as f:
            f.write(buffer.getvalue())
        self.fs.rename(path + ".partial", path, overwrite=True)

    def delete(self, key: str) -> None:
        """Removes the job's checkpoint folder (a finished job: a later run with the same key starts afresh)."""
        folder = posixpath.dirname(self.path(key))
        if self.fs.exists(folder):
            self.fs.rmtree(folder)
