"""Reading a registered version's tags (no MLflow import: versions are passed in)."""

from __future__ import annotations


def family(version) -> str:
    """``cnn``, ``vit`` or ``ensemble``: the version's ``family`` tag (``architecture`` before it was renamed), so
    that versions registered by earlier releases still load and compete."""
    return version.tags.get("family") or version.tags.get("architecture", "?")
