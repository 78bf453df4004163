"""A materializer base that writes files locally, then copies them into the artifact store."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from zenml.enums import VisualizationType
from zenml.io import fileio
from zenml.materializers.base_materializer import BaseMaterializer


class LocalDirMaterializer(BaseMaterializer):
    """Lets subclasses read and write a plain local folder whatever the artifact store is."""

    SKIP_REGISTRATION = True

    def write_dir(self, write: Callable[[Path], None]) -> None:
        """Calls ``write(folder)`` on a temporary folder and uploads what it wrote."""
        with self.get_temporary_directory(delete_at_exit=True) as tmp:
            write(Path(tmp))
            for name in os.listdir(tmp):
                fileio.copy(os.path.join(tmp, name), os.path.join(self.uri, name), overwrite=True)

    def read_dir(self, read: Callable[[Path], Any]) -> Any:
        """Downloads the artifact's files into a temporary folder and returns ``read(folder)``."""
        with self.get_temporary_directory(delete_at_exit=True) as tmp:
            for name in fileio.listdir(self.uri):
                name = name.decode() if isinstance(name, bytes) else name
                src = os.path.join(self.uri, name)
                if not fileio.isdir(src):
                    fileio.copy(src, os.path.join(tmp, name), overwrite=True)
            return read(Path(tmp))

    def write_visual(self, name: str, payload: bytes | str, kind: VisualizationType) -> dict[str, VisualizationType]:
        """Stores one visualization file beside the artifact."""
        uri = os.path.join(self.uri, name)
        mode = "wb" if isinstance(payload, bytes) else "w"
        with fileio.open(uri, mode) as f:
            f.write(payload)
        return {uri: kind}
