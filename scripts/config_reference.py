"""Writes docs/configuration.md from the config schema (fercore/config.py).

Usage: python scripts/config_reference.py [--check]   (--check: exit 1 when the page is out of date)
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fercore.config import reference_markdown  # noqa: E402

PAGE = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"

if __name__ == "__main__":
    if "--check" in sys.argv:
        sys.exit(0 if PAGE.read_text() == reference_markdown() else 1)
    PAGE.write_text(reference_markdown())
    print(f"wrote {PAGE}")
