"""The terminal a person watches, apart from the streams logs capture."""

from __future__ import annotations

import os
import sys
from typing import Any

_CONSOLE: list[Any] = []


def console() -> Any | None:
    """A handle of its own on the terminal that standard output shows (None when it is not a terminal): progress bars
    drawn there reach the person watching, not the logs that capture ``sys.stdout`` (ZenML's step logs)."""
    if not _CONSOLE:
        try:
            _CONSOLE.append(os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1) if sys.stdout.isatty() else None)
        except (AttributeError, OSError, ValueError):  # a captured stdout without a file descriptor
            _CONSOLE.append(None)
    return _CONSOLE[0]
