"""The library an averaging ensemble is chosen from: this run's contenders and the single models every earlier run
registered, scored on this run's validation and test images without running them again.

At registration each version records its validation and test probabilities by image and its measured predict time
for one face (:mod:`fercore.promotion.records`). A later promotion lines the recorded probabilities up with its
own images. A version is left out, with one line that names it and
says why, when its files are gone (it could not be served), when it was registered by an earlier release without
those records, when its records do not cover this run's images (another dataset), or when it was trained on this
run's validation images (:data:`fercore.promotion.candidates.SEEN_LIMIT`).
"""

from __future__ import annotations

import logging
from dataclasses import replace

import numpy as np

from fercore.data.dataset import FerDataset
from fercore.data.duplicates import image_hashes
from fercore.promotion.candidates import SEEN_LIMIT, overlap_note, recorded_predictions, training_hashes
from fercore.promotion.decision import Candidate, candidate
from fercore.promotion.records import PREDICT_MS, predict_ms
from fercore.tracking import registry
from fercore.tracking.store import retry_transient
from fercore.tracking.tags import family

logger = logging.getLogger(__name__)


def library_candidates(name: str, skip: set[str], dataset: FerDataset, tracking_uri: str) -> list[Candidate]:
    """The registered single models of ``name`` but ``skip`` (scored already) that can join an ensemble: scored
    from their records on ``dataset``'s splits, each with the images it trained on and its predict time. Every
    version left out is named once, with the reason (see the module docstring).

    Raises:
        StoreBusyError: the store stayed busy (nothing is judged on a guess).
    """
    versions = retry_transient(lambda: registry.versions(tracking_uri, name), "no alias moved", tracking_uri)
    val_hashes, split_train = image_hashes(dataset.split("val").images), image_hashes(dataset.split("train").images)
    out = []
    for mv in sorted(versions, key=lambda v: int(v.version)):
        v = str(mv.version)
        if v in skip or family(mv) == "ensemble" or mv.status != "READY":
            continue
        scored, why = retry_transient(lambda: _from_records(name, mv, dataset, tracking_uri),  # noqa: B023
                                      "no alias moved", tracking_uri)
        if scored is not None and int(np.isin(val_hashes, scored.trained_on).sum()) > SEEN_LIMIT * len(val_hashes):
            scored, why = None, "it was trained on this run's validation images (another validation split)"
        if scored is None:
            logger.info("Library: v%s (%s) left out: %s", v, mv.tags.get("contender", family(mv)), why)
        else:
            out.append(replace(scored, overlap=overlap_note(scored.trained_on, val_hashes, split_train)))
    return out


def _from_records(name: str, mv, dataset: FerDataset, tracking_uri: str) -> tuple[Candidate | None, str]:
    v = str(mv.version)
    if not mv.tags.get(PREDICT_MS):
        return None, "registered by an earlier release, without its recorded predictions and predict time"
    if not registry.has_files(tracking_uri, name, v):
        return None, "its files are gone from the store (it could not be served)"
    trained_on = training_hashes(tracking_uri, name, mv)
    if trained_on is None:
        return None, "its run lacks the record of its training images"
    preds = recorded_predictions(tracking_uri, mv.run_id, dataset)
    if preds is None:
        return None, "its run holds no predictions for this run's images (recorded on another dataset, or lost)"
    cand = candidate(v, family(mv), preds, dataset, False, "", mv.tags.get("contender", ""))
    return replace(cand, trained_on=trained_on, predict_ms=predict_ms(mv.tags)), ""
