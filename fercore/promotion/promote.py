"""A promotion: score the candidates, plan (ensembles and one decision, on validation), apply, report.

ZenML-free: the ``promote_models`` step calls :func:`promote` with its run's name and id.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

from fercore.config import PromotionConfig
from fercore.constants import CLASS_NAMES
from fercore.data.dataset import FerDataset
from fercore.data.duplicates import image_hashes
from fercore.data.split import test_label, validation_label
from fercore.errors import ModelFilesMissing
from fercore.evaluation.predictions import Predictions
from fercore.models.inference import autocast_dtype, pick_device
from fercore.monitoring.drift import DriftResult, data_drift, embeddings, prediction_drift, sample_rows
from fercore.monitoring.new_images import embedding_version
from fercore.promotion.aliases import promotion_lock
from fercore.promotion.apply import apply_plan, registered_ensembles
from fercore.promotion.candidates import holder_candidates, judgeable, on_unseen_images, overlap_note
from fercore.promotion.decision import CHAMPION, Candidate, candidate
from fercore.promotion.library import library_candidates
from fercore.promotion.plan import make_plan
from fercore.promotion.records import predict_ms
from fercore.promotion.report import PromotionResult, report
from fercore.tracking import registry
from fercore.tracking.loading import version_network
from fercore.tracking.model_guard import UntrustedModelError
from fercore.tracking.runs import log_files, one_off_run
from fercore.tracking.store import RunInfo, busy_store_is_named, connect, retry_transient

logger = logging.getLogger(__name__)


def promote(name: str, dataset: FerDataset, new: list[tuple[dict[str, Any], Predictions]], config: PromotionConfig,
            info: RunInfo) -> PromotionResult:
    """Decides every alias of ``name`` on the validation split, moves them, and reports the test figures.

    Reading the holders, deciding and moving the aliases happen under the promotion lock, so that
    concurrent promotions queue rather than decide on holders that are about to change.

    Args:
        name: the registered model.
        dataset: the split dataset (validation decides, test is reported, train is the drift reference).
        new: this run's registrations (``version``, ``family``) with their val/test predictions.
        config: the ``promotion`` config section.
        info: where to log.
    """
    connect(info.tracking_uri, info.experiment_name)
    with busy_store_is_named(info.tracking_uri, "no alias moved (every write half-done was undone)"):
        return _promote(name, dataset, new, config, info)


def _promote(name: str, dataset: FerDataset, new: list[tuple[dict[str, Any], Predictions]], config: PromotionConfig,
             info: RunInfo) -> PromotionResult:
    # the promotion's MLflow run lasts as long as the promotion: scoring, drift, the decision and its writes
    with one_off_run(info, "promote", config.model_dump(), info.tags(stage="promotion")) as run_id:
        scored = _new_candidates(name, dataset, new, info)
        if not scored:
            gone = ", ".join(f"v{r['version']}" for r, _ in new)
            raise ModelFilesMissing(f"the files of every version this run registered ({gone}) are gone from the "
                                    "store: nothing can be promoted. Run again with --no-cache to retrain them")
        with promotion_lock(info.tracking_uri, name):
            holders = registry.aliases(info.tracking_uri, name)
            held = sorted({v for v in holders.values() if v} - {c.version for c in scored}, key=int)
            logger.info("Promotion of %s: %d contenders of this run, %d alias holders of earlier runs to score", name,
                        len(scored), len(held))
            holders_scored = judgeable(holder_candidates(name, held, {c.version: c for c in scored}, dataset,
                                                         info.tracking_uri), dataset)
            logger.info("Drift reports (train vs test images, the champion's embeddings, predicted classes)")
            drift = drift_reports(name, dataset, scored, scored + holders_scored, holders, config, info.tracking_uri)
            blocked = config.on_drift == "block" and drift[0].drifted
            library = library_candidates(name, {c.version for c in scored + holders_scored}, dataset,
                                         info.tracking_uri) if config.averaging and not blocked else []
            everyone, unseen, left_out = on_unseen_images(scored + holders_scored + library, dataset)
            _say_left_out(left_out, len(dataset.split("val")))
            new_end, holders_end = len(scored), len(scored) + len(holders_scored)
            plan = make_plan(name, everyone[:new_end], everyone[new_end:holders_end], holders, unseen, config,
                             registered_ensembles(info.tracking_uri, name), blocked, everyone[holders_end:])
            plan, applied = apply_plan(plan, name, unseen, info, drift[0].summary(), config)  # every write, or none
        result = report(info.tracking_uri, name, plan, applied, registry.aliases(info.tracking_uri, name), drift, config,
                        len(unseen.split("val")), run_id, left_out, (validation_label(dataset), test_label(dataset)))
        log_files(info.tracking_uri, run_id, result.files, "promotion")
    return result


def _say_left_out(left_out: int, val_images: int) -> None:
    if left_out:
        logger.info("Deciding on %d of %d validation images: %d were in a candidate's training data (FER-2013's own "
                    "duplicates, or a holder trained on another split) and are left out", val_images - left_out,
                    val_images, left_out)


def _new_candidates(name: str, dataset: FerDataset, new: list[tuple[dict[str, Any], Predictions]],
                    info: RunInfo) -> list[Candidate]:
    """This run's registrations, scored from their predictions (ZenML's cached ``evaluate`` outputs). A cached
    contender whose version's files were deleted since is named and left out: it could not be served."""
    split_train = image_hashes(dataset.split("train").images)
    own_overlap = overlap_note(split_train, image_hashes(dataset.split("val").images), split_train)
    present = retry_transient(lambda: {r["version"]: registry.has_files(info.tracking_uri, name, r["version"]) for r, _ in new},
                              "no alias moved", info.tracking_uri)
    for r, _ in new:
        if not present[r["version"]]:
            logger.warning("v%s (%s) was registered by an earlier run (a cached step) but its files are gone from "
                           "the store: left out of this promotion. Run again with --no-cache to retrain it",
                           r["version"], r.get("contender") or r.get("family"))
    tags = retry_transient(lambda: {r["version"]: registry.get_version(info.tracking_uri, name, r["version"]).tags
                                    for r, _ in new if present[r["version"]]}, "no alias moved", info.tracking_uri)
    return [replace(candidate(r["version"], r.get("family") or r["architecture"], p, dataset,
                              _registered_by(tags[r["version"]], info), own_overlap, r.get("contender", ""),
                              r.get("contest", "")), trained_on=split_train, predict_ms=predict_ms(tags[r["version"]]))
            for r, p in new if present[r["version"]]]


def _registered_by(tags: dict[str, str], info: RunInfo) -> bool:
    """Whether this pipeline run registered the version of ``tags``: a cached register step hands on an earlier run's."""
    return not info.zenml_run_id or tags.get("zenml_run_id", info.zenml_run_id) == info.zenml_run_id


def _embedding_network(name: str, cands: list[Candidate], tracking_uri: str):
    """The first of ``cands`` whose network loads (an ensemble's embedded member, loaded alone), and that network;
    one whose files are gone is named and the next tried; ``(None, None)`` when none loads."""
    for c in cands:
        try:
            embedded = embedding_version(tracking_uri, name, c.version)
            return embedded, version_network(name, embedded, tracking_uri)
        except (ModelFilesMissing, UntrustedModelError) as exc:
            logger.warning("Drift of embeddings cannot use v%s: %s", c.version, exc)
    logger.warning("No model's network could be loaded: the drift report compares the images' statistics only")
    return None, None


def drift_reports(name: str, dataset: FerDataset, new: list[Candidate], cands: list[Candidate],
                  holders: dict[str, str | None], config: PromotionConfig,
                  tracking_uri: str) -> tuple[DriftResult, DriftResult]:
    """Train vs test images (statistics, and the champion's embeddings of the same sampled rows), and the
    predicted classes of the champion vs the best new model on test. Reports; the images' labels are not read.
    The champion is the current holder (else the best new model); an ensemble is embedded as monitoring
    embeds it (:func:`fercore.monitoring.new_images.embedding_version`), from its local copy."""
    best_new = max(new, key=lambda c: c.score(config.metric))
    champion = {c.version: c for c in cands}.get(holders.get(CHAMPION) or "", best_new)
    train, test = dataset.split("train"), dataset.split("test")
    ref = train.images[sample_rows(len(train), config.drift_max_images, 0)]
    cur = test.images[sample_rows(len(test), config.drift_max_images, 1)]
    embedded, module = _embedding_network(name, [champion, best_new], tracking_uri)
    ref_emb, cur_emb = None, None
    if module is not None:
        amp = autocast_dtype(pick_device(), "auto")
        ref_emb, cur_emb = embeddings(module, ref, amp), embeddings(module, cur, amp)
    about = (f"{len(ref)} training images (a random sample of {len(train)})",
             f"{len(cur)} test images (of {len(test)})" + (f"; embeddings by v{embedded}" if module is not None else ""))
    data = data_drift(ref, cur, ref_emb, cur_emb, config.drift_share, config.drift_max_images, about=about)
    if data.drifted:
        logger.warning("Drift detected between train and test images: %s", data.summary())
    labels = lambda c: [CLASS_NAMES[i] for i in c.test_probs.argmax(axis=1)]  # noqa: E731
    other, which = compared_with(champion, best_new, cands, config.metric)
    return data, prediction_drift(labels(champion), labels(other), (
        f"the classes {champion.label} (the champion) predicts on the {len(test)} test images",
        f"those {other.label} ({which}) predicts"))


def compared_with(champion: Candidate, best_new: Candidate, cands: list[Candidate], metric: str) -> tuple[Candidate, str]:
    """The model whose predicted classes the champion's are compared with, and what it is: this run's best new model,
    or, when that is the champion itself (a comparison that could only say "no drift"), the best other candidate."""
    if best_new.version != champion.version:
        return best_new, "this run's best new model"
    others = sorted((c for c in cands if c.version != champion.version), key=lambda c: -c.score(metric))
    if not others:
        return champion, "the champion itself: no other candidate to compare with"
    return others[0], f"the best other candidate by validation {metric}, as this run's best new model is the champion"
