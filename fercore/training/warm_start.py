"""Continuing across runs (``training.continue_from: latest``): each contender starts from its latest
registered version trained on the same validation images with the same network, with a new schedule.

The validation split is fixed by the source and seed and never trained on (incoming batches join the
training split only), so a version continued on the same validation images keeps the contest honest;
another data source or split, or a changed network, starts fresh, and the reason is logged and recorded.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fercore.config import Config
from fercore.data.dataset import FerDataset
from fercore.data.duplicates import split_digest
from fercore.models.io import load_model, network_digest
from fercore.tracking.tags import family

logger = logging.getLogger(__name__)


def find_warm_start(registered: list, contender: str, val_digest: str, network: str, base_seed: int = 42) -> dict[str, Any]:
    """The latest version of ``contender`` to continue from, or why there is none.

    A version that converged, that is whose own continuation kept its start weights (no epoch validated better), is
    not continued again: that would register a copy of it. The contender starts fresh from a new seed instead
    (one above every seed its versions used), so that each night adds an independent model to the ensemble library.

    Args:
        registered: the contender's registered versions (``version``, ``tags``), in any order.
        contender: the contender's name.
        val_digest: this run's validation images (:func:`fercore.data.duplicates.split_digest`).
        network: the contender's :func:`fercore.models.io.network_digest`.
        base_seed: the contender's configured seed (versions without a ``seed`` tag used it).

    Returns:
        ``{"version": str | None, "reason": str, "total_training_minutes": float, "total_epochs": int, "seed": int}``:
        a continuation keeps the seed of the version it continues (its record says which lineage it is), a fresh
        start from a new seed has that seed, and a first start none (the config's).
    """
    versions = sorted((v for v in registered if family(v) != "ensemble"), key=lambda v: -int(v.version))
    if not versions:
        return {"version": None, "reason": f"no registered version of {contender} yet: starting fresh"}
    latest = versions[0]
    for v in versions:
        if v.tags.get("val_images") == val_digest and v.tags.get("network") == network:
            if converged(v.tags):
                seed = new_seed([int(x.tags.get("seed") or base_seed) for x in versions])
                return {"version": None, "seed": seed, "reason": f"v{v.version} converged (continued from "
                        f"v{v.tags['continued_from']}, it kept its start weights): starting fresh from seed {seed}, a "
                        "new model for the ensemble library"}
            return {"version": str(v.version), "reason": f"continuing from v{v.version} (same validation images "
                    "and network)", "total_training_minutes": float(v.tags.get("total_training_minutes", 0) or 0),
                    "total_epochs": int(v.tags.get("total_epochs", 0) or 0),
                    "seed": int(v.tags.get("seed") or base_seed)}  # the lineage's seed (a spare's, say), kept on
    why = ("other validation images (another data source or split)" if latest.tags.get("val_images") != val_digest
           else "another network (its shape or input size changed)")
    return {"version": None, "reason": f"the latest version of {contender}, v{latest.version}, was trained on {why}; "
            "no earlier one matches: starting fresh"}


def new_seed(used: list[int]) -> int:
    """One above every seed used so far: never a repeat of a model already in the library."""
    return 1 + max(used)


def converged(tags: dict[str, str]) -> bool:
    """A version continued from another whose training kept its start weights: continuing it again adds nothing."""
    return bool(tags.get("continued_from")) and tags.get("kept_weights") == "start"


def seeded(build: Callable[[], nn.Module], entry: dict[str, Any] | None) -> nn.Module:
    """``build()``'s fresh network, its random initial weights drawn from ``entry``'s new seed when it has one
    (:func:`find_warm_start`); the global random state is left as it was."""
    if not entry or "seed" not in entry:
        return build()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(entry["seed"]))
        return build()


def load_warm_start(model: nn.Module, model_name: str, entry: dict[str, Any], tracking_uri: str,
                    cache_dir: str | Path | None = None) -> str | None:
    """Loads the weights of ``entry``'s version into ``model``; returns the version, or ``None`` (logged, and
    ``entry["reason"]`` says why) when its files are gone or do not fit: the contender then starts fresh."""
    if not entry.get("version"):
        return None
    from fercore.tracking.copies import cache_folder, copy_version, network_folder

    version = entry["version"]
    try:
        cache = cache_folder(cache_dir)
        folder = copy_version(model_name, version, tracking_uri, cache)
        model.load_state_dict(load_model(network_folder(folder)).state_dict())
    except Exception as exc:  # files deleted, store moved, weights that do not fit: start fresh, say why
        entry["reason"] = f"v{version} cannot be loaded ({type(exc).__name__}: {exc}): starting fresh"
        logger.warning("%s", entry["reason"])
        return None
    logger.info("Continuing from %s v%s (%.1f training minutes so far)", model_name, version,
                entry.get("total_training_minutes", 0.0))
    return version


def network_of(model: nn.Module, input_size: int | None) -> str:
    """:func:`network_digest` of a model as training will leave it (a crop-trained one records its window)."""
    spec = getattr(model, "fer_spec", None)
    if spec is None or not input_size:
        return network_digest(model)
    saved = spec.get("input_size")
    spec["input_size"] = input_size
    try:
        return network_digest(model)
    finally:
        if saved is None:
            del spec["input_size"]
        else:
            spec["input_size"] = saved


def warm_starts(config: Config, dataset: FerDataset, tracking_uri: str) -> dict[str, dict[str, Any]]:
    """:func:`find_warm_start` for every enabled contender of ``config`` (each reason is logged)."""
    from fercore.tracking import registry

    val_digest, found = split_digest(dataset), {}
    for name, cfg in config.enabled_contenders().items():
        network = network_of(build_contender(cfg), cfg.augment.crop_size)
        found[name] = find_warm_start(registry.versions(tracking_uri, config.registry.model_name, contender=name), name,
                                      val_digest, network, cfg.seed)
        logger.info("%s: %s", name, found[name]["reason"])
    return found


def build_contender(cfg) -> nn.Module:
    """A contender's network, untrained (a pretrained ViT with its checkpoint's weights)."""
    if cfg.family == "vit":
        from fercore.models.vit import build_vit

        return build_vit(cfg)
    from fercore.models.cnn import build_cnn

    return build_cnn(cfg.architecture, **cfg.model_kwargs())
