"""A whole promotion on a temporary MLflow registry with real (tiny) models: decided on validation,
reported on test, the routed ensemble, the challenger, the drift gate, holders of earlier runs."""

from __future__ import annotations

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from fercore.config import PromotionConfig
from fercore.constants import CLASS_NAMES
from fercore.data.dataset import FerDataset
from fercore.evaluation.metrics import Evaluation, evaluate_predictions
from fercore.evaluation.predictions import Predictions
from fercore.models import build_cnn
from fercore.promotion.decision import Candidate, decide
from fercore.promotion.register import TrainedModel, register
from fercore.promotion.run import promote
from fercore.serving.pyfunc import route_probabilities
from fercore.serving.registry import RunInfo, connect, pyfunc_predict
from tests.conftest import synthetic

NAME = "fer-promo"


def _eval(f1: float) -> Evaluation:
    per_class = pd.DataFrame({"f1": [f1] * 7, "recall": [f1] * 7}, index=pd.Index(CLASS_NAMES, name="emotion"))
    return Evaluation({"macro_f1": f1, "accuracy": f1}, per_class, np.zeros((7, 7), int))


def test_a_model_best_on_test_but_worse_on_validation_does_not_win():
    probs = np.full((3, 7), 1 / 7)
    good_val = Candidate("1", "cnn", _eval(0.60), probs, True, _eval(0.40), probs)
    good_test = Candidate("2", "vit", _eval(0.55), probs, True, _eval(0.90), probs)
    moves = {m.alias: m.version for m in decide([good_val, good_test], {}).moves}
    assert moves["champion"] == "1" and moves["challenger"] == "2"
    assert {moves[f"champion-{e}"] for e in CLASS_NAMES} == {"1"}


def test_an_ensemble_can_become_champion_but_never_a_category_champion():
    probs = np.full((3, 7), 1 / 7)
    single = Candidate("1", "cnn", _eval(0.5), probs)
    ensemble = Candidate("2", "ensemble", _eval(0.7), probs)
    moves = {m.alias: m.version for m in decide([single, ensemble], {}).moves}
    assert moves["champion"] == "2" and moves["challenger"] == "1"
    assert {moves[f"champion-{e}"] for e in CLASS_NAMES} == {"1"}


def test_a_better_runner_up_replaces_the_challenger_and_the_old_champion_steps_down():
    probs = np.full((3, 7), 1 / 7)
    holders = {"champion": "1", "challenger": "2", **{f"champion-{e}": "1" for e in CLASS_NAMES}}
    cands = [Candidate("1", "cnn", _eval(0.50), probs, False), Candidate("2", "cnn", _eval(0.40), probs, False),
             Candidate("3", "vit", _eval(0.60), probs)]
    moves = {m.alias: m.version for m in decide(cands, holders).moves}
    assert moves["champion"] == "3" and moves["previous-champion"] == "1" and moves["challenger"] == "1"


# --- promote() on a real registry --------------------------------------------------------------


@pytest.fixture
def store(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    connect(uri, "promo")
    return RunInfo(uri, "promo", "test-run", "zenml-run-id")


def _register(dataset, seed: int, info: RunInfo) -> str:
    """A tiny CNN registered by :func:`fercore.promotion.register.register` (as ``register_model`` does),
    trained on ``dataset``'s train split as far as its record of training images says."""
    import torch

    torch.manual_seed(seed)
    run_id = MlflowClient().create_run(mlflow.get_experiment_by_name("promo").experiment_id).info.run_id
    scores = evaluate_predictions(dataset.split("test").labels, dataset.split("test").labels)
    trained = TrainedModel(build_cnn("vgg7", width=8).eval(), scores, scores, run_id, "cnn", tta="none")
    return register(trained, dataset, NAME, info)["version"]


def _with_val_rows_in_train(dataset: FerDataset, n: int) -> FerDataset:
    """``dataset`` with its first ``n`` validation images moved to train: another split of the same data."""
    splits = dataset.splits.copy()
    splits[np.flatnonzero(splits == "val")[:n]] = "train"
    return FerDataset(dataset.images, dataset.labels, splits, dataset.ids, dataset.subsets, dict(dataset.metadata))


def _winning(dataset, classes: list[int], strength: float = 0.9) -> Predictions:
    """Predictions that are right on ``classes`` and wrong (the next class) elsewhere."""
    def probs(split):
        labels = dataset.split(split).labels
        p = np.full((len(labels), 7), (1 - strength) / 6)
        for i, y in enumerate(labels):
            p[i, y if y in classes else (y + 1) % 7] = strength
        return p

    return Predictions(probs("val"), probs("test"))


def test_promotion_routes_an_ensemble_whose_probabilities_are_its_members_routed(store):
    dataset = synthetic(per_class=12, test_per_class=4)
    a, b = _register(dataset, 0, store), _register(dataset, 1, store)
    new = [({"version": a, "architecture": "cnn"}, _winning(dataset, [0, 1, 2, 3])),
           ({"version": b, "architecture": "cnn"}, _winning(dataset, [4, 5, 6]))]
    config = PromotionConfig(drift_max_images=60, averaging=False)  # the routed ensemble alone
    out = promote(NAME, dataset, new, config, store)
    routes = out.summary["routes"]
    assert routes == {**{e: a for e in CLASS_NAMES[:4]}, **{e: b for e in CLASS_NAMES[4:]}}
    aliases = out.summary["aliases"]
    ensemble = aliases["champion"]
    assert ensemble not in (a, b) and aliases["champion-angry"] == a and aliases["champion-sad"] == b
    client = MlflowClient()
    assert client.get_model_version(NAME, ensemble).tags["architecture"] == "ensemble"
    images = dataset.split("test").images
    members = {v: pyfunc_predict(mlflow.pyfunc.load_model(f"models:/{NAME}/{v}"))(images) for v in (a, b)}
    routed = pyfunc_predict(mlflow.pyfunc.load_model(f"models:/{NAME}@champion"))(images)
    np.testing.assert_allclose(routed, route_probabilities(members, routes), rtol=1e-6)
    assert out.summary["decided_on"] == "validation" and "Decided on the validation split" in out.markdown
    # the same routes again: the registered ensemble is reused, not registered twice
    again = promote(NAME, dataset, new, config, store)
    versions = client.search_model_versions(f"name='{NAME}'")
    assert len([v for v in versions if v.tags["architecture"] == "ensemble"]) == 1
    assert again.summary["aliases"] == aliases and again.summary["moves"] == []


def test_a_drift_blocked_promotion_registers_nothing_and_moves_no_alias(store):
    dataset = synthetic(per_class=12, test_per_class=12)
    test = dataset.splits == "test"
    dataset.images[test] = (dataset.images[test] // 4).astype(np.uint8)  # darkened test images
    a, b = _register(dataset, 0, store), _register(dataset, 1, store)
    new = [({"version": a, "architecture": "cnn"}, _winning(dataset, [0, 1, 2, 3])),
           ({"version": b, "architecture": "cnn"}, _winning(dataset, [4, 5, 6]))]
    out = promote(NAME, dataset, new, PromotionConfig(on_drift="block", drift_max_images=100), store)
    assert out.summary["blocked_by_drift"] and out.data_drift.drifted
    assert out.summary["moves"] == [] and out.summary["aliases"] == {}
    versions = MlflowClient().search_model_versions(f"name='{NAME}'")
    assert sorted(str(v.version) for v in versions) == sorted([a, b])  # no ensemble registered
    runs = mlflow.search_runs(experiment_names=["promo"])
    assert "RUNNING" not in set(runs["status"])


def test_holders_of_earlier_runs_are_rescored_on_this_validation_split_with_their_overlap(store):
    dataset = synthetic(per_class=12, test_per_class=4)
    old = _register(_with_val_rows_in_train(dataset, 5), 0, store)  # trained with 5 of this run's validation images
    MlflowClient().set_registered_model_alias(NAME, "champion", old)
    new_version = _register(dataset, 1, store)
    out = promote(NAME, dataset, [({"version": new_version, "architecture": "cnn"}, _winning(dataset, list(range(7))))],
                  PromotionConfig(ensemble=False, drift_max_images=60), store)
    assert out.summary["aliases"]["champion"] == new_version, out.summary["reasons"]["champion"]
    assert out.summary["aliases"]["previous-champion"] == old
    assert f"5 of {len(dataset.split('val'))} validation images were in its training data" in out.markdown
    scores = out.summary["scores"][f"v{old} (cnn)"]
    assert set(scores) == {"val_macro_f1", "test_macro_f1"}


def test_a_promotion_that_fails_while_registering_leaves_no_run_running(store, monkeypatch):
    import fercore.promotion.ensembles as ensembles

    dataset = synthetic(per_class=12, test_per_class=4)
    a, b = _register(dataset, 0, store), _register(dataset, 1, store)
    new = [({"version": a, "architecture": "cnn"}, _winning(dataset, [0, 1, 2, 3])),
           ({"version": b, "architecture": "cnn"}, _winning(dataset, [4, 5, 6]))]

    def broken(*args, **kwargs):
        raise OSError("artifact store went away")

    monkeypatch.setattr(ensembles, "log_and_register", broken)
    with pytest.raises(OSError, match="went away"):
        promote(NAME, dataset, new, PromotionConfig(drift_max_images=60), store)
    runs = mlflow.search_runs(experiment_names=["promo"])
    assert "RUNNING" not in set(runs["status"]) and "FAILED" in set(runs["status"])
    assert MlflowClient().get_registered_model(NAME).aliases == {}
