"""Moving the registry's aliases safely: the current holders, the moves applied with rollback on failure,
and one promotion at a time (a file lock on a local store, a lease tag on a server)."""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from fercore.errors import RegistryError
from fercore.promotion.decision import AliasMove, category_alias
from fercore.promotion.journal import RegistryJournal
from fercore.tracking import registry
from fercore.tracking.locations import local_store_path
from fercore.tracking.store import TrackingError

logger = logging.getLogger(__name__)


def apply_moves(tracking_uri: str, name: str, moves: list[AliasMove], journal: RegistryJournal | None = None
                ) -> list[AliasMove]:
    """Moves aliases with a compare-and-swap per alias, each write through ``journal`` (default: one of its own,
    undone if a move fails; a promotion passes its own, which undoes the whole promotion).

    A move is skipped when its alias changed since the decision (another run promoted meanwhile),
    so a concurrent promotion is never overwritten by a stale decision. Each target version must
    be READY (its model fully logged) before any alias moves.

    A move with ``routes`` (a routed ensemble) is skipped unless every route still holds its
    emotion's champion alias at that moment.

    Returns:
        The moves applied.
    """
    for move in moves:
        if registry.get_version(tracking_uri, name, move.version).status != "READY":
            raise RegistryError(f"version {move.version} of {name} is not READY; no alias moved")
    if journal is None:
        with RegistryJournal(tracking_uri, name) as own:
            return apply_moves(tracking_uri, name, moves, own)
    applied: list[AliasMove] = []
    for move in moves:
        holders = registry.aliases(tracking_uri, name)
        now = holders.get(move.alias)
        if now != move.previous:
            logger.warning("Alias %s changed to v%s during promotion; not moving it to v%s", move.alias, now,
                           move.version)
            continue
        stale = {e: v for e, v in (move.routes or {}).items() if holders.get(category_alias(e)) != v}
        if stale:
            logger.warning("Not moving %s to ensemble v%s: its routes %s no longer hold those emotions' "
                           "champion aliases", move.alias, move.version, stale)
            continue
        journal.set_alias(move.alias, move.version)
        applied.append(move)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        journal.tag_version(move.version, {f"promoted.{move.alias}": f"{stamp} {move.reason}"})
    return applied


LEASE_TAG = "promotion.lease"


@contextmanager
def promotion_lock(tracking_uri: str, name: str, timeout_s: float = 1800.0,
                   lease_s: float = 3600.0, settle_s: float = 1.0) -> Iterator[None]:
    """Serialises promotions of ``name``: one reads, decides and moves aliases at a time.

    A SQLite or file store is locked with an OS file lock beside it (exact, for every process on
    that machine). MLflow has no compare-and-swap, so on a tracking server the lock is a lease in
    the registered model's ``promotion.lease`` tag (owner and expiry): a promotion writes its lease,
    waits ``settle_s`` and reads it back; it proceeds only if its own lease is still there, else it
    waits. Two promotions can only both proceed if one of them stalls for longer than ``settle_s``
    between reading a free lease and writing its own. A crashed holder's lease expires after ``lease_s``.

    Raises:
        RegistryError: the lock was not obtained within ``timeout_s``.
    """
    path = local_store_path(tracking_uri)
    if path is not None:
        with _file_lock(path.with_name(path.name + ".promotion.lock"), timeout_s):
            yield
    else:
        with registry_lease(tracking_uri, name, timeout_s, lease_s, settle_s):
            yield


@contextmanager
def registry_lease(tracking_uri: str, name: str, timeout_s: float = 1800.0, lease_s: float = 3600.0,
                   settle_s: float = 1.0) -> Iterator[None]:
    """The tracking-server form of :func:`promotion_lock`: a lease in the ``promotion.lease`` tag."""
    owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    deadline = time.monotonic() + timeout_s
    lease: str | None = None
    while True:
        try:
            lease = registry.model_tag(tracking_uri, name, LEASE_TAG)
            if not lease or float(lease.rpartition(" ")[2] or 0) < time.time():
                registry.set_model_tag(tracking_uri, name, LEASE_TAG, f"{owner} {time.time() + lease_s:.0f}")
                time.sleep(settle_s)
                if (registry.model_tag(tracking_uri, name, LEASE_TAG) or "").startswith(owner + " "):
                    break
        except TrackingError as exc:  # a busy store (e.g. a locked database): try again until the deadline
            lease = f"unknown: {exc.message}"
        if time.monotonic() > deadline:
            raise RegistryError(f"another promotion of {name} holds the lease ({lease}); waited {timeout_s:.0f} s. "
                                f"If its process is gone, delete the registered model tag {LEASE_TAG}.")
        time.sleep(min(2.0, settle_s * 2))
    try:
        yield
    finally:
        if (registry.model_tag(tracking_uri, name, LEASE_TAG) or "").startswith(owner + " "):
            registry.set_model_tag(tracking_uri, name, LEASE_TAG, None)


@contextmanager
def _file_lock(path: Path, timeout_s: float) -> Iterator[None]:
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout_s
    with open(path, "a") as handle:
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise RegistryError(f"another promotion holds {path}; waited {timeout_s:.0f} s") from None
                time.sleep(0.2)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
