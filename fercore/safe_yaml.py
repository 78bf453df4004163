"""YAML read with bounds: no anchors or aliases, a capped nesting depth and file size.

``yaml.safe_load`` builds no objects, but it still expands aliases (a "billion laughs" file of a few hundred
bytes becomes gigabytes once a validator walks it) and composes nested collections recursively (a
100,000-deep list ends in ``RecursionError``). A config needs neither, so both are refused while the
document is composed, before anything is built.
"""

from __future__ import annotations

import yaml
from yaml.composer import ComposerError
from yaml.events import AliasEvent, CollectionStartEvent, ScalarEvent

MAX_DEPTH = 32  # the deepest config nests 4 levels (contenders.NAME.rungs[...]); 32 leaves room for any value
MAX_BYTES = 1_000_000  # the largest config in configs/ is about 6 kB


class BoundsError(ComposerError):
    """Valid YAML that a config may not hold: an anchor or alias, nesting too deep, too many characters."""


class _BoundedLoader(yaml.SafeLoader):
    """``SafeLoader`` that refuses anchors and aliases and nesting deeper than :data:`MAX_DEPTH`."""

    def __init__(self, stream) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent, index):
        event = self.peek_event()
        if isinstance(event, AliasEvent) or (isinstance(event, (ScalarEvent, CollectionStartEvent)) and event.anchor):
            raise BoundsError(None, None, "anchors (&name) and aliases (*name) are not allowed here: write the "
                                "value out in full", event.start_mark)
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise BoundsError(None, None, f"nested deeper than {MAX_DEPTH} levels", event.start_mark)
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def load_bounded(text: str, name: str = "<the value>"):
    """The YAML document in ``text`` (``name``: where it came from, for the error's position), as ``yaml.safe_load``
    reads it, within the bounds above.

    Raises:
        BoundsError: an anchor or alias, nesting deeper than :data:`MAX_DEPTH`, or more than :data:`MAX_BYTES` of
            text (the message says which, and where).
        yaml.YAMLError: invalid YAML.
    """
    if len(text) > MAX_BYTES:
        raise BoundsError(None, None, f"{len(text):,} characters, more than the {MAX_BYTES:,} a config may hold")
    loader = _BoundedLoader(text)
    loader.name = name
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


class _PlainDumper(yaml.SafeDumper):
    def ignore_aliases(self, data) -> bool:  # noqa: ARG002 (PyYAML's API)
        return True


def dump_plain(data, **options) -> str:
    """``yaml.safe_dump`` that writes every value out, never an anchor and alias: what :func:`load_bounded` reads."""
    return yaml.dump(data, Dumper=_PlainDumper, **options)
