"""The ensemble library on a real registry: each version records its predictions and predict time when it is
registered; a later promotion's averaging ensemble chooses from every earlier run's versions, leaves out those it
cannot score (each named), stays within the predict-time budget, and is never registered half-made."""

from __future__ import annotations

import logging
import shutil

import numpy as np
import pytest
from mlflow import MlflowClient

from fercore.config import PromotionConfig
from fercore.errors import ModelFilesMissing
from fercore.evaluation.metrics import evaluate_predictions
from fercore.evaluation.predictions import Predictions
from fercore.models import build_cnn
from fercore.promotion import promote as promote_module
from fercore.promotion.promote import promote
from fercore.promotion.records import PREDICTIONS
from fercore.promotion.register import TrainedModel, register
from fercore.tracking.runs import TrackedRun, download_run_file, start_run
from fercore.tracking.store import RunInfo
from tests.conftest import connect_store, synthetic

NAME = "fer-library"
CONFIG = {"ensemble": False, "drift_max_images": 60, "require_significance": False}


@pytest.fixture
def store(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    connect_store(uri, "library")
    return RunInfo(uri, "library", "test-run", "zenml-run-id")


def _right_on(dataset, classes: list[int]) -> Predictions:
    """Right and sure (0.8) on ``classes``, wrong and unsure (0.5 on the next class) on the others: models right on
    different classes average to one right on all of them."""
    def probs(split):
        labels = dataset.split(split).labels
        right = np.isin(labels, classes)
        sure = np.where(right, 0.8, 0.5)
        p = np.repeat(((1 - sure) / 6)[:, None], 7, axis=1)
        p[np.arange(len(labels)), np.where(right, labels, (labels + 1) % 7)] = sure
        return p

    return Predictions(probs("val"), probs("test"))


def _register(dataset, seed: int, info: RunInfo, preds: Predictions | None) -> str:
    """A tiny CNN registered as ``register_model`` registers it; without ``preds``, as an earlier release did."""
    import torch

    torch.manual_seed(seed)
    run = TrackedRun(run_id=start_run(info, f"train-{seed}", {}, {}), contender=f"c{seed}")
    scores = evaluate_predictions(dataset.split("test").labels, dataset.split("test").labels)
    trained = TrainedModel(build_cnn("vgg7", width=8).eval(), scores, scores, run, "cnn", tta="none",
                           tags={"contender": f"c{seed}"}, predictions=preds)
    return register(trained, dataset, NAME, info)["version"]


def _night(dataset, info, seeds_and_classes) -> list[tuple[dict, Predictions]]:
    out = []
    for seed, classes in seeds_and_classes:
        preds = _right_on(dataset, classes)
        out.append(({"version": _register(dataset, seed, info, preds), "family": "cnn", "contender": f"c{seed}"},
                    preds))
    return out


def test_a_later_promotion_chooses_its_ensemble_from_every_nights_models(store, caplog):
    dataset = synthetic(per_class=12, test_per_class=4)
    old_release = _register(dataset, 9, store, None)  # no recorded predictions, no predict time
    first = _night(dataset, store, [(0, [0, 1, 2, 3])])
    promote(NAME, dataset, first, PromotionConfig(**CONFIG), store)  # one model: it holds every alias
    library_only = _night(dataset, store, [(1, [4, 5, 6])])[0][0]["version"]  # registered, never promoted
    client = MlflowClient(store.tracking_uri)
    assert float(client.get_model_version(NAME, library_only).tags["predict_ms"]) > 0
    assert download_run_file(store.tracking_uri, client.get_model_version(NAME, library_only).run_id,
                             PREDICTIONS) is not None
    caplog.set_level(logging.INFO)
    caplog.clear()
    second = _night(dataset, store, [(2, [0, 1])])  # this run's one model: alone it makes no ensemble
    out = promote(NAME, dataset, second, PromotionConfig(**CONFIG), store)
    averaged = [v for v in client.search_model_versions(f"name='{NAME}'") if v.tags.get("contender") == "averaged"]
    assert len(averaged) == 1
    members = averaged[0].tags["members"].split(",")
    assert {first[0][0]["version"], library_only} <= set(members)  # the holder and the library's model
    assert out.summary["aliases"]["champion"] == str(averaged[0].version), out.summary["reasons"]["champion"]
    assert f"Library: v{old_release} (c9) left out: registered by an earlier release" in caplog.text
    assert caplog.text.count(f"Library: v{old_release} ") == 1


def test_a_predict_time_budget_no_two_models_meet_means_single_models_only_said_once(store, caplog):
    dataset = synthetic(per_class=12, test_per_class=4)
    first = _night(dataset, store, [(0, [0, 1, 2, 3]), (1, [4, 5, 6])])
    caplog.set_level(logging.INFO)
    out = promote(NAME, dataset, first, PromotionConfig(**CONFIG, max_predict_ms=0.001), store)
    assert out.summary["aliases"]["champion"] in {r["version"] for r, _ in first}
    assert caplog.text.count("the two fastest models take") == 1 and "single models only" in caplog.text
    assert not [v for v in MlflowClient(store.tracking_uri).search_model_versions(f"name='{NAME}'")
                if v.tags.get("family") == "ensemble"]


def test_an_ensemble_champion_records_its_time_and_loses_the_alias_when_the_budget_no_longer_fits_it(store):
    dataset = synthetic(per_class=12, test_per_class=4)
    first = _night(dataset, store, [(0, [0, 1, 2, 3]), (1, [4, 5, 6])])
    out = promote(NAME, dataset, first, PromotionConfig(**CONFIG), store)
    client = MlflowClient(store.tracking_uri)
    champion = client.get_model_version(NAME, out.summary["aliases"]["champion"])
    members = [float(client.get_model_version(NAME, r["version"]).tags["predict_ms"]) for r, _ in first]
    assert champion.tags["family"] == "ensemble" and champion.tags["predict_ms"] == f"{sum(members):.1f}"
    budget = max(members) + min(members) / 2  # each member fits, the two together do not
    later = _night(dataset, store, [(2, [0])])
    out = promote(NAME, dataset, later, PromotionConfig(**CONFIG, max_predict_ms=budget), store)
    # the best single model now
    assert out.summary["aliases"]["champion"] in {r["version"] for r, _ in first}, out.summary["reasons"]["champion"]
    assert f"holder v{champion.version} ({float(champion.tags['predict_ms']):.0f} ms per face) is above " \
        f"promotion.max_predict_ms {budget:g}, which it no longer fits" in out.summary["reasons"]["champion"]


def test_a_member_whose_files_vanish_after_the_selection_leaves_nothing_registered(store, monkeypatch):
    dataset = synthetic(per_class=12, test_per_class=4)
    first = _night(dataset, store, [(0, [0, 1, 2, 3]), (1, [4, 5, 6])])
    client = MlflowClient(store.tracking_uri)
    before = {str(v.version) for v in client.search_model_versions(f"name='{NAME}'")}
    planned = promote_module.make_plan

    def plan_then_delete(*args, **kwargs):  # a user's `rm -r` between the selection and the registration
        plan = planned(*args, **kwargs)
        source = client.get_model_version(NAME, first[0][0]["version"]).source
        shutil.rmtree(client.get_logged_model(source.removeprefix("models:/")).artifact_location.removeprefix("file://"))
        return plan

    monkeypatch.setattr(promote_module, "make_plan", plan_then_delete)
    with pytest.raises(ModelFilesMissing, match=rf"the files of v{first[0][0]['version']}, chosen as member\(s\) of the "
                                                "averaged ensemble, were deleted after the selection: the ensemble is "
                                                "not registered and no alias moved"):
        promote(NAME, dataset, first, PromotionConfig(**CONFIG), store)
    assert {str(v.version) for v in client.search_model_versions(f"name='{NAME}'")} == before
    assert client.get_registered_model(NAME).aliases == {}


def test_holders_are_scored_from_their_records_unless_their_files_are_gone(store, monkeypatch, caplog):
    """A single holder, and an ensemble holder's members, come from their records (nothing is run); a holder whose
    files are gone is still named and skipped, whatever its records say."""
    import fercore.promotion.candidates as candidates

    dataset = synthetic(per_class=12, test_per_class=4)
    first = _night(dataset, store, [(0, [0, 1, 2, 3]), (1, [4, 5, 6])])
    promote(NAME, dataset, first, PromotionConfig(**CONFIG), store)
    client = MlflowClient(store.tracking_uri)
    holders = dict(client.get_registered_model(NAME).aliases)
    monkeypatch.setattr(candidates, "version_predictor", lambda *a: (_ for _ in ()).throw(AssertionError("ran")))
    ensemble = holders["champion"]
    assert client.get_model_version(NAME, ensemble).tags["contender"] == "averaged"
    (scored,) = candidates.holder_candidates(NAME, [ensemble], {}, dataset, store.tracking_uri)  # members unscored
    assert scored.version == ensemble and scored.members == 2  # from its members' records
    gone = first[0][0]["version"]
    source = client.get_model_version(NAME, gone).source
    shutil.rmtree(client.get_logged_model(source.removeprefix("models:/")).artifact_location.removeprefix("file://"))
    caplog.set_level(logging.WARNING)
    kept = candidates.holder_candidates(NAME, [gone], {}, dataset, store.tracking_uri)
    assert kept == [] and f"v{gone} (c0) holds an alias but cannot be scored: the files of v{gone} are gone" in caplog.text
