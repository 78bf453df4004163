"""The candidates of a promotion besides this run's contenders: alias holders of earlier runs, rescored on
this run's splits, with a note of how many of this run's validation images each was trained on."""

from __future__ import annotations

import logging
from dataclasses import replace

import numpy as np

from fercore.data.dataset import FerDataset
from fercore.data.duplicates import image_hashes
from fercore.errors import ModelFilesMissing
from fercore.evaluation.predictions import Predictions, predict_splits
from fercore.models.inference import ensemble_members, ensemble_probabilities
from fercore.promotion.decision import Candidate, candidate
from fercore.promotion.ensembles import member_versions, parse_routes, routed_predictions
from fercore.promotion.records import PREDICTIONS, TRAIN_HASHES, lined_up, predict_ms
from fercore.tracking import registry
from fercore.tracking.copies import ensemble_spec, registered_version
from fercore.tracking.loading import version_predictor
from fercore.tracking.model_guard import UntrustedModelError
from fercore.tracking.runs import download_run_file
from fercore.tracking.store import retry_transient
from fercore.tracking.tags import family

logger = logging.getLogger(__name__)


# -- which images a model saw ------------------------------------------------------------------


def overlap_note(trained_on: np.ndarray | None, val_hashes: np.ndarray, split_train: np.ndarray) -> str:
    """How many of this run's validation images a model was trained on, in words.

    FER-2013 holds exact duplicates, so some validation images have a copy in the training split of
    any split of it: every model trained on this split has seen those, and they are named as such.
    Only images beyond them (a model trained on another split) inflate its validation figures.

    Args:
        trained_on: hashes of the images the model was trained on (None: no record).
        val_hashes: hashes of this run's validation images.
        split_train: hashes of this run's training images.
    """
    if trained_on is None:
        return "unknown (no record of its training images)"
    seen = np.isin(val_hashes, trained_on)
    if not seen.any():
        return "none"
    duplicates = int((seen & np.isin(val_hashes, split_train)).sum())
    text = f"{int(seen.sum())} of {len(val_hashes)}"
    if duplicates == seen.sum():
        return (f"none beyond FER-2013's own duplicates ({text} validation images have an exact copy among the "
                "training images, in any split of FER-2013)")
    return (f"{text} validation images were in its training data, {int(seen.sum()) - duplicates} of them beyond "
            "FER-2013's duplicates: its validation figures are optimistic")


def training_hashes(tracking_uri: str, name: str, version) -> np.ndarray | None:
    """The image hashes a registered version was trained on (an ensemble: its members'), if recorded
    (versions registered before the record existed have none)."""
    if family(version) == "ensemble":
        members = [registered_version(tracking_uri, name, v, f"member v{v} of v{version.version}")
                   for v in version.tags.get("members", "").split(",") if v]
        parts = [training_hashes(tracking_uri, name, m) for m in members]
        return None if not parts or any(p is None for p in parts) else np.concatenate(parts)
    path = download_run_file(tracking_uri, version.run_id, TRAIN_HASHES)
    return None if path is None else np.load(path, allow_pickle=False)


def recorded_predictions(tracking_uri: str, run_id: str, dataset: FerDataset) -> Predictions | None:
    """The run's recorded probabilities lined up with ``dataset``'s val and test images; None without a record
    or when it does not cover them."""
    path = download_run_file(tracking_uri, run_id, PREDICTIONS)
    return None if path is None else lined_up(path, dataset)


def holder_candidates(name: str, versions: list[str], known: dict[str, Candidate],
                      dataset: FerDataset, tracking_uri: str) -> list[Candidate]:
    """Alias holders of earlier runs, rescored on this run's val and test splits.

    A holder ensemble whose members are all scored already (this run's contenders, or holders scored
    before it) is computed from their probabilities, routed or averaged as its spec says; every other
    holder is scored once from its local copy (never unpickled:
    :func:`fercore.tracking.loading.version_predictor`). Each notes how much of this run's validation
    split its training data holds. A holder whose files are gone, or that is not one of the project's wrappers,
    is named and left out; a busy store is waited for (:func:`fercore.tracking.store.retry_transient`), never
    taken for a missing model.

    Raises:
        StoreBusyError: the store stayed busy: no holder is judged on a guess, so no alias moves.
    """
    val_hashes, split_train = image_hashes(dataset.split("val").images), image_hashes(dataset.split("train").images)
    meta = retry_transient(lambda: {v: registry.get_version(tracking_uri, name, v) for v in versions}, "no alias moved",
                           tracking_uri)
    singles = [v for v in versions if family(meta[v]) != "ensemble"]
    out, scored = [], dict(known)
    for v in singles + [v for v in versions if v not in singles]:
        mv, kind = meta[v], family(meta[v])
        try:
            # retried apart: a busy read of the hashes does not score the holder again
            preds = retry_transient(lambda: _score(name, mv, scored, dataset, tracking_uri), "no alias moved",  # noqa: B023
                                    tracking_uri)
            trained_on = retry_transient(lambda: training_hashes(tracking_uri, name, mv), "no alias moved",  # noqa: B023
                                         tracking_uri)
        except (ModelFilesMissing, UntrustedModelError) as exc:
            logger.warning("v%s (%s) holds an alias but cannot be scored: %s. Skipped, so its aliases go to the best "
                           "candidates", v, mv.tags.get("contender", kind), exc)
            continue
        note = overlap_note(trained_on, val_hashes, split_train)
        scored[v] = replace(candidate(v, kind, preds, dataset, False, note, mv.tags.get("contender", "")),
                            trained_on=trained_on, members=max(1, len(member_versions(mv.tags))),
                            predict_ms=_predict_ms(name, mv, tracking_uri))
        out.append(scored[v])
    return out


def _predict_ms(name: str, version, tracking_uri: str) -> float | None:
    """A holder's time per face: its ``predict_ms`` tag, or for an ensemble registered before ensembles had one, the
    sum of its members' (None when one of them has none)."""
    own, members = predict_ms(version.tags), member_versions(version.tags)
    if own is not None or not members:
        return own
    times = [predict_ms(registry.get_version(tracking_uri, name, m).tags) for m in members]
    return None if None in times else float(sum(times))


SEEN_LIMIT = 0.5  # FER-2013's own duplicates are about 7 % of a carve-out: more than half means another protocol


def judgeable(cands: list[Candidate], dataset: FerDataset) -> list[Candidate]:
    """``cands`` without those trained on more than :data:`SEEN_LIMIT` of the validation images, each named: they
    were trained under another validation protocol (on all of Training, where this run carves its validation out of
    it), and leaving out every image they saw would leave too few to judge the others on."""
    val_hashes = image_hashes(dataset.split("val").images)
    kept = []
    for c in cands:
        seen = int(np.isin(val_hashes, c.trained_on).sum()) if c.trained_on is not None else 0
        if seen > SEEN_LIMIT * len(val_hashes):
            logger.warning("%s was trained on %d of this run's %d validation images (it was trained under another "
                           "validation split): it cannot be judged on them, so it is left out and its aliases go to the "
                           "best of the others", c.label, seen, len(val_hashes))
        else:
            kept.append(c)
    return kept


def on_unseen_images(cands: list[Candidate], dataset: FerDataset) -> tuple[list[Candidate], FerDataset, int]:
    """The candidates rescored on the validation images none of them trained on, the dataset whose ``val`` split
    holds only those, and how many were left out: no decision uses an image a candidate trained on (FER-2013's own
    duplicates of training images, and the images a holder of another split trained on). A candidate without a
    record of its training images excludes nothing (its overlap note says "unknown")."""
    val_hashes = image_hashes(dataset.split("val").images)
    seen = np.zeros(len(val_hashes), bool)
    for c in cands:
        if c.trained_on is not None:
            seen |= np.isin(val_hashes, c.trained_on)
    if not seen.any():
        return cands, dataset, 0
    rows = np.ones(len(dataset.splits), bool)
    rows[np.flatnonzero(dataset.splits == "val")[seen]] = False  # every split keeps its order: predictions still fit
    unseen = FerDataset(dataset.images[rows], dataset.labels[rows], dataset.splits[rows], dataset.ids[rows],
                        dataset.subsets[rows], dict(dataset.metadata))
    rescored = [replace(candidate(c.version, c.family, Predictions(c.probs[~seen], c.test_probs), unseen, c.new,
                                  c.overlap, c.contender, c.contest), trained_on=c.trained_on, members=c.members,
                        predict_ms=c.predict_ms)
                for c in cands]
    return rescored, unseen, int(seen.sum())


def _score(name: str, version, scored: dict[str, Candidate], dataset: FerDataset, tracking_uri: str) -> Predictions:
    """A holder's val/test probabilities: a single model's from its record (:mod:`fercore.promotion.records`), an
    ensemble's from its members' when they are scored or recorded, else through its pyfunc."""
    members = set(member_versions(version.tags))
    if family(version) == "ensemble":
        _recorded_members(name, members - set(scored), scored, dataset, tracking_uri)
    if family(version) == "ensemble" and members and members <= set(scored):
        return _from_members(tracking_uri, name, version, scored)
    v = str(version.version)
    recorded = recorded_predictions(tracking_uri, version.run_id, dataset) if family(version) != "ensemble" else None
    if recorded is not None:  # recorded at its registration, on these images: no need to run it, if it can be served
        if not registry.has_files(tracking_uri, name, v):
            raise ModelFilesMissing(f"the files of v{v} are gone from the store (it could not be served)")
        return recorded
    logger.info("Scoring v%s (%s) on this run's %d validation and test images", v,
                version.tags.get("contender", family(version)), len(dataset.split("val")) + len(dataset.split("test")))
    return predict_splits(version_predictor(name, v, tracking_uri), dataset, desc=f"scoring v{v}")


def _recorded_members(name: str, members: set[str], scored: dict[str, Candidate], dataset: FerDataset,
                      tracking_uri: str) -> None:
    """Adds to ``scored`` the ensemble members (holding no alias themselves) whose records cover ``dataset``'s
    images: the ensemble is then computed from them, not run (a CNN pair took 1 min 19 s through its model)."""
    for m in sorted(members, key=int):
        mv = registry.get_version(tracking_uri, name, m)
        recorded = recorded_predictions(tracking_uri, mv.run_id, dataset) if family(mv) != "ensemble" else None
        if recorded is not None and registry.has_files(tracking_uri, name, m):  # else the ensemble runs, and says why
            scored[m] = candidate(m, family(mv), recorded, dataset, False, "", mv.tags.get("contender", ""))


def _from_members(tracking_uri: str, name: str, version, scored: dict[str, Candidate]) -> Predictions:
    """An ensemble holder's probabilities from its scored members': routed by its ``routes`` tag, or averaged
    with the weights and temperatures of its spec (a small file; the members are not loaded)."""
    routes = parse_routes(version.tags.get("routes", ""))
    if routes:
        return routed_predictions(scored, routes)
    spec = ensemble_spec(tracking_uri, name, str(version.version))
    members = ensemble_members(spec)
    return Predictions(ensemble_probabilities(spec, {m: scored[m].probs for m in members}),
                       ensemble_probabilities(spec, {m: scored[m].test_probs for m in members}))


