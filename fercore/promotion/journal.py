"""Every registry write of a promotion, with what undoes it: a failure at any write puts the registry back as it
was (aliases, registered ensembles, tags, model cards, the model's description)."""

from __future__ import annotations

import logging
from collections.abc import Callable

from fercore.tracking import registry

logger = logging.getLogger(__name__)


class RegistryJournal:
    """The writes of one promotion to registered model ``name``, each recorded with its undo before it is made.

    Use it as a context manager: an exception inside undoes every write, newest first, then propagates.
    """

    def __init__(self, tracking_uri: str, name: str):
        self.tracking_uri, self.name = tracking_uri, name
        self.writes = 0  # how many writes were made (the tests fail each one in turn)
        self._undo: list[tuple[str, Callable[[], None]]] = []

    def __enter__(self) -> RegistryJournal:
        return self

    def __exit__(self, kind, exc, tb) -> bool:
        if exc is not None:
            self.undo()
        return False

    def set_alias(self, alias: str, version: str | None) -> None:
        before = registry.aliases(self.tracking_uri, self.name).get(alias)
        self._record(f"@{alias} back to {before}", lambda: registry.set_alias(self.tracking_uri, self.name, alias, before))
        registry.set_alias(self.tracking_uri, self.name, alias, version)

    def tag_version(self, version: str, tags: dict[str, str]) -> None:
        before = registry.get_version(self.tracking_uri, self.name, version).tags
        undo = {k: before.get(k) for k in tags}
        self._record(f"v{version}'s tags {sorted(tags)}",
                     lambda: registry.tag_version(self.tracking_uri, self.name, version, undo))
        registry.tag_version(self.tracking_uri, self.name, version, tags)

    def describe_version(self, version: str, text: str) -> None:
        before = registry.get_version(self.tracking_uri, self.name, version).description or ""
        self._record(f"v{version}'s card", lambda: registry.describe_version(self.tracking_uri, self.name, version, before))
        registry.describe_version(self.tracking_uri, self.name, version, text)

    def describe_model(self, text: str) -> None:
        before = registry.model_description(self.tracking_uri, self.name)
        self._record("the model's description", lambda: registry.describe_model(self.tracking_uri, self.name, before))
        registry.describe_model(self.tracking_uri, self.name, text)

    def registered(self, register: Callable[[], str]) -> str:
        """Registers a version with ``register()`` (which returns its number); undone by deleting it."""
        self.writes += 1
        version = register()
        self._undo.append((f"v{version} (registered by this promotion)",
                           lambda: registry.delete_version(self.tracking_uri, self.name, version)))
        return version

    def undo(self) -> None:
        """Undoes every write, newest first; an undo that fails is logged and the others still run."""
        while self._undo:
            what, undo = self._undo.pop()
            try:
                undo()
            except Exception as exc:  # noqa: BLE001 (the store may be what failed: every other undo still runs)
                logger.error("Could not undo %s (%s: %s)", what, type(exc).__name__, exc)
        logger.warning("The promotion failed: the registry was put back as it was before it")

    def _record(self, what: str, undo: Callable[[], None]) -> None:
        self.writes += 1
        self._undo.append((what, undo))
