"""A whole promotion on a temporary MLflow registry with real (tiny) models: decided on validation,
reported on test, the routed ensemble, the challenger, the drift gate, holders of earlier runs."""

from __future__ import annotations

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient, pyfunc

from fercore.config import PromotionConfig
from fercore.constants import CLASS_NAMES
from fercore.data.dataset import FerDataset
from fercore.evaluation.metrics import Evaluation, evaluate_predictions
from fercore.evaluation.predictions import Predictions
from fercore.models import build_cnn
from fercore.promotion.promote import promote
from fercore.promotion.register import TrainedModel, register
from fercore.serving.pyfunc import route_probabilities
from fercore.tracking.registry import pyfunc_predict
from fercore.tracking.runs import TrackedRun, start_run
from fercore.tracking.store import RunInfo
from tests.conftest import connect_store, synthetic

NAME = "fer-promo"


def _eval(f1: float) -> Evaluation:
    per_class = pd.DataFrame({"f1": [f1] * 7, "recall": [f1] * 7}, index=pd.Index(CLASS_NAMES, name="emotion"))
    return Evaluation({"macro_f1": f1, "accuracy": f1}, per_class, np.zeros((7, 7), int))


# --- promote() on a real registry --------------------------------------------------------------


@pytest.fixture
def store(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    connect_store(uri, "promo")
    return RunInfo(uri, "promo", "test-run", "zenml-run-id")


def _register(dataset, seed: int, info: RunInfo) -> str:
    """A tiny CNN registered by :func:`fercore.promotion.register.register` (as ``register_model`` does),
    trained on ``dataset``'s train split as far as its record of training images says."""
    import torch

    torch.manual_seed(seed)
    run = TrackedRun(run_id=start_run(info, f"train-{seed}", {}, {}), contender=f"c{seed}")
    scores = evaluate_predictions(dataset.split("test").labels, dataset.split("test").labels)
    trained = TrainedModel(build_cnn("vgg7", width=8).eval(), scores, scores, run, "cnn", tta="none")
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
    new = [({"version": a, "family": "cnn"}, _winning(dataset, [0, 1, 2, 3])),
           ({"version": b, "family": "cnn"}, _winning(dataset, [4, 5, 6]))]
    config = PromotionConfig(drift_max_images=60, averaging=False)  # the routed ensemble alone
    out = promote(NAME, dataset, new, config, store)
    routes = out.summary["routes"]
    assert routes == {**{e: a for e in CLASS_NAMES[:4]}, **{e: b for e in CLASS_NAMES[4:]}}
    aliases = out.summary["aliases"]
    ensemble = aliases["champion"]
    assert ensemble not in (a, b) and aliases["champion-angry"] == a and aliases["champion-sad"] == b
    client = MlflowClient()
    assert client.get_model_version(NAME, ensemble).tags["family"] == "ensemble"
    images = dataset.split("test").images
    members = {v: pyfunc_predict(mlflow.pyfunc.load_model(f"models:/{NAME}/{v}"))(images) for v in (a, b)}
    routed = pyfunc_predict(mlflow.pyfunc.load_model(f"models:/{NAME}@champion"))(images)
    np.testing.assert_allclose(routed, route_probabilities(members, routes), rtol=1e-6)
    assert out.summary["decided_on"] == "validation" and "Decided on the validation split" in out.markdown
    # the same routes again: the registered ensemble is reused, not registered twice
    again = promote(NAME, dataset, new, config, store)
    versions = client.search_model_versions(f"name='{NAME}'")
    assert len([v for v in versions if v.tags["family"] == "ensemble"]) == 1
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
    client = MlflowClient()
    client.set_registered_model_alias(NAME, "champion", old)
    client.delete_model_version_tag(NAME, old, "family")  # registered by an earlier release: its family was
    client.set_model_version_tag(NAME, old, "architecture", "cnn")  # tagged "architecture"
    new_version = _register(dataset, 1, store)
    out = promote(NAME, dataset, [({"version": new_version, "architecture": "cnn"}, _winning(dataset, list(range(7))))],
                  PromotionConfig(ensemble=False, drift_max_images=60), store)
    assert out.summary["aliases"]["champion"] == new_version, out.summary["reasons"]["champion"]
    assert out.summary["aliases"]["previous-champion"] == old
    # no decision uses an image a candidate trained on: the 5 the holder saw are left out for every candidate
    val = len(dataset.split("val"))
    assert (out.summary["validation_images"], out.summary["left_out_seen_in_training"]) == (val - 5, 5)
    assert f"Decided on the validation split, 20% carved out of Training (seed 0) ({val - 5} images (of {val}: 5 were in " \
        "a candidate's training data" \
        in out.markdown
    # each card says which aliases its version holds now, and why; the old champion's says what it kept
    new_card = client.get_model_version(NAME, new_version).description
    assert new_card.count("**Aliases held** (after the latest promotion):") == 1
    assert "- `@champion`: " in new_card and "macro_f1" in new_card.split("- `@champion`: ")[1].splitlines()[0]
    old_card = client.get_model_version(NAME, old).description
    assert "- `@previous-champion`: " in old_card and "- `@champion`: " not in old_card
    from fercore.promotion.model_cards import card_with_aliases

    twice = card_with_aliases(card_with_aliases("## card\n\ntext\n", {"champion": "r1"}), {"challenger": "r2", "a": "r3"})
    assert twice == "## card\n\ntext\n\n**Aliases held** (after the latest promotion):\n\n- `@a`: r3\n- `@challenger`: r2\n"
    assert card_with_aliases(twice, {}).endswith("(after the latest promotion):\n\nnone now\n")
    assert card_with_aliases("", {"champion": "(reason not recorded)"}) == (  # an older version, without a card
        "No model card: this version was registered by an earlier release; its design, data and metrics are not "
        "recorded here (its MLflow run has what was logged).\n\n**Aliases held** (after the latest promotion):\n\n"
        "- `@champion`: (reason not recorded)\n")
    assert f"5 of {len(dataset.split('val'))} validation images were in its training data" in out.markdown
    scores = out.summary["scores"][f"v{old} (cnn)"]
    assert set(scores) == {"val_macro_f1", "test_macro_f1"}


def test_a_promotion_that_fails_while_registering_leaves_no_run_running(store, monkeypatch):
    import fercore.promotion.apply as apply

    dataset = synthetic(per_class=12, test_per_class=4)
    a, b = _register(dataset, 0, store), _register(dataset, 1, store)
    new = [({"version": a, "architecture": "cnn"}, _winning(dataset, [0, 1, 2, 3])),
           ({"version": b, "architecture": "cnn"}, _winning(dataset, [4, 5, 6]))]

    def broken(*args, **kwargs):
        raise OSError("artifact store went away")

    monkeypatch.setattr(apply.registry, "log_and_register", broken)
    with pytest.raises(OSError, match="went away"):
        promote(NAME, dataset, new, PromotionConfig(drift_max_images=60), store)
    runs = mlflow.search_runs(experiment_names=["promo"])
    assert "RUNNING" not in set(runs["status"]) and "FAILED" in set(runs["status"])
    assert MlflowClient().get_registered_model(NAME).aliases == {}


def test_promotion_and_monitoring_embed_an_ensemble_champion_with_the_same_network(store, monkeypatch, tmp_path):
    """Drift embeddings of an ensemble champion come from one function, whether promotion or monitoring asks."""
    import fercore.monitoring.monitor_run as monitor_run
    import fercore.promotion.promote as promotion
    from fercore.config import MonitorConfig
    from fercore.models import network_digest
    from tests.conftest import write_tree

    dataset = synthetic(per_class=12, test_per_class=4)
    a, b = _register(dataset, 0, store), _register(dataset, 1, store)
    new = [({"version": a, "family": "cnn"}, _winning(dataset, [0, 1, 2, 3])),
           ({"version": b, "family": "cnn"}, _winning(dataset, [4, 5, 6]))]
    config = PromotionConfig(drift_max_images=60, averaging=False)
    champion = promote(NAME, dataset, new, config, store).summary["aliases"]["champion"]
    assert champion not in (a, b)  # the routed ensemble
    embedded = {}
    real_embeddings, real_monitor = promotion.embeddings, monitor_run.monitor

    def embeddings(module, *args):
        embedded["promotion"] = module
        return real_embeddings(module, *args)

    def monitor(reference, images, predict, module, *args):
        embedded["monitoring"] = module
        return real_monitor(reference, images, predict, module, *args)

    monkeypatch.setattr(promotion, "embeddings", embeddings)
    monkeypatch.setattr(monitor_run, "monitor", monitor)
    promote(NAME, dataset, new, config, store)  # the ensemble holds champion now: its network is embedded
    faces = write_tree(tmp_path / "new", train_per_class=2, test_per_class=0) / "train"
    monitor_run.monitor_run(MonitorConfig(data=str(faces), max_images=50), NAME, store, lambda version: dataset)
    assert network_digest(embedded["promotion"]) == network_digest(embedded["monitoring"])
    members = {v: network_digest(pyfunc.load_model(f"models:/{NAME}/{v}").unwrap_python_model().model) for v in (a, b)}
    assert network_digest(embedded["monitoring"]) == members[a]  # the member that routes the most emotions (4 of 7)


def test_an_averaging_ensemble_holder_is_scored_from_its_members_probabilities(store, monkeypatch):
    """A cached rerun's holders are this run's contenders and their ensembles: no pyfunc is loaded to score them."""
    import fercore.promotion.candidates as candidates
    from fercore.promotion.decision import candidate

    dataset = synthetic(per_class=12, test_per_class=4)
    from fercore.evaluation.predictions import predict_splits

    a, b = _register(dataset, 0, store), _register(dataset, 1, store)
    # the members' own predictions, as their evaluate steps cached them
    preds = {v: predict_splits(pyfunc_predict(mlflow.pyfunc.load_model(f"models:/{NAME}/{v}")), dataset) for v in (a, b)}
    import fercore.promotion.ensembles as ensembles

    # untrained, one of them would be selected alone: an even pair, whatever the selection would keep
    monkeypatch.setattr(ensembles, "greedy_selection", lambda probs, labels, limits: dict.fromkeys(probs, 0.5))
    promote(NAME, dataset, [({"version": v, "family": "cnn"}, p) for v, p in preds.items()],
            PromotionConfig(drift_max_images=60), store)
    (averaged,) = [v.version for v in MlflowClient().search_model_versions(f"name='{NAME}'")
                   if v.tags.get("contender") == "averaged"]
    loaded = pyfunc_predict(mlflow.pyfunc.load_model(f"models:/{NAME}/{averaged}"))(dataset.split("test").images)

    def refuse(name, version):
        raise AssertionError(f"v{version} was loaded through its pyfunc")

    monkeypatch.setattr(candidates, "version_predictor", refuse)
    known = {v: candidate(v, "cnn", p, dataset, True) for v, p in preds.items()}
    (holder,) = candidates.holder_candidates(NAME, [averaged], known, dataset, store.tracking_uri)
    assert holder.family == "ensemble" and holder.contender == "averaged"
    np.testing.assert_allclose(holder.test_probs, loaded, rtol=1e-5, atol=1e-6)


def test_a_holder_whose_files_are_gone_is_named_and_skipped_and_its_aliases_replaced(store, caplog):
    import shutil
    from pathlib import Path

    dataset = synthetic(per_class=12, test_per_class=4)
    old = _register(dataset, 0, store)
    MlflowClient().set_registered_model_alias(NAME, "champion", old)
    MlflowClient().set_registered_model_alias(NAME, "champion-happy", old)
    shutil.rmtree(Path(store.tracking_uri.removeprefix("sqlite:///")).parent / "mlartifacts")
    new_version = _register(dataset, 1, store)
    out = promote(NAME, dataset, [({"version": new_version, "family": "cnn"}, _winning(dataset, list(range(7))))],
                  PromotionConfig(ensemble=False, averaging=False, drift_max_images=60), store)
    assert (f"v{old} (cnn) holds an alias but cannot be scored: fer-promo v{old}'s files are missing or unreadable in "
            "its store (FileNotFoundError: no MLmodel file at its artifact location)") in caplog.text
    assert out.summary["aliases"]["champion"] == new_version and out.summary["aliases"]["champion-happy"] == new_version
    moved = {m["alias"]: m for m in out.summary["moves"]}
    assert moved["champion"]["previous"] == old and moved["champion"]["reason"].endswith(
        f"(holder v{old} could not be scored)")


def test_a_store_locked_by_another_process_is_named_busy_and_no_alias_moves(store, monkeypatch):
    from mlflow.exceptions import MlflowException

    import fercore.promotion.promote as promote_module
    from fercore.errors import RegistryError

    dataset = synthetic(per_class=12, test_per_class=4)
    version = _register(dataset, 0, store)

    def locked(uri, name):
        raise MlflowException("(sqlite3.OperationalError) database is locked")

    monkeypatch.setattr(promote_module.registry, "aliases", locked)  # what MLflow raises after its retries
    with pytest.raises(RegistryError, match=r"the MLflow store sqlite:///.*mlflow.db is busy: another process held its "
                                            r"database lock past MLflow's retries, so no alias moved"):
        promote(NAME, dataset, [({"version": version, "family": "cnn"}, _winning(dataset, list(range(7))))],
                PromotionConfig(ensemble=False, averaging=False, drift_max_images=60), store)
    assert MlflowClient().get_registered_model(NAME).aliases == {}


def test_the_registered_model_explains_its_aliases_and_the_experiment_opens_on_model_training(store):
    dataset = synthetic(per_class=12, test_per_class=4)
    version = _register(dataset, 0, store)
    promote(NAME, dataset, [({"version": version, "family": "cnn", "contender": "c0"}, _winning(dataset, [0, 1]))],
            PromotionConfig(ensemble=False, averaging=False, drift_max_images=60), store)
    description = MlflowClient().get_registered_model(NAME).description
    assert "`champion-<emotion>` (one per emotion)" in description and "`challenger`" in description
    assert f"@champion v{version} (c0)" in description
    assert f'mlflow.pyfunc.load_model("models:/{NAME}@champion")' in description
    experiment = MlflowClient().get_experiment_by_name("promo")
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    card = MlflowClient().get_model_version(NAME, version).description  # the version's model card
    first = card.split("\n\n")[1]  # one plain sentence: what it is, how good, on what
    assert card.startswith("## cnn (cnn)\n\n**cnn**, a convolutional network trained from scratch that names the "
                           "emotion of a 48x48 grayscale face (7 emotions): ") and "validation faces (" in first
    assert "; reported only)." in first and "kept_weights" not in first  # the terms come after, explained
    for section in ("**Design**: ", "parameters; ", "`kept_weights`: which weights were kept", "**Data**: FER-2013",
                    "dataset sha256 `", "**Validation** (what promotion decides on)", "**Test** (reported only",
                    "| disgust |", "declares no input schema on purpose", f'"models:/{NAME}/VERSION"', "**Limitations**"):
        assert section in card, section


def test_an_ensembles_card_is_as_complete_as_a_contenders(store):
    dataset = synthetic(per_class=12, test_per_class=4)
    a, b = _register(dataset, 0, store), _register(dataset, 1, store)
    promote(NAME, dataset, [({"version": a, "family": "cnn"}, _winning(dataset, [0, 1, 2, 3])),
                            ({"version": b, "family": "cnn"}, _winning(dataset, [4, 5, 6]))],
            PromotionConfig(ensemble=False, drift_max_images=60), store)
    (averaged,) = [v for v in MlflowClient().search_model_versions(f"name='{NAME}'") if v.tags.get("family") == "ensemble"]
    card = averaged.description
    assert card.startswith("## averaged (ensemble)\n\n**averaged ensemble**, an ensemble of registered versions that "
                           "names the emotion of a 48x48 grayscale face")
    for section in (f"**Members**: v{a}, v{b} of `{NAME}`", "out of fold", "**Data**: FER-2013", "dataset sha256 `",
                    "**Validation** (what promotion decides on)", "**Test** (reported only", "| disgust |",
                    f'"models:/{NAME}/VERSION"', "**Limitations**"):
        assert section in card, section
    assert averaged.tags["val_images"] and averaged.tags["dataset_sha256"] == "synthetic"


def test_the_overlap_names_fer2013s_own_duplicates_as_such_and_warns_beyond_them():
    import numpy as np

    from fercore.promotion.candidates import overlap_note

    val, split_train = np.array([1, 2, 3, 4]), np.array([2, 9])  # image 2 has an exact copy in training
    assert overlap_note(split_train, val, split_train) == (
        "none beyond FER-2013's own duplicates (1 of 4 validation images have an exact copy among the training "
        "images, in any split of FER-2013)")
    assert overlap_note(np.array([2, 3, 4]), val, split_train) == (
        "3 of 4 validation images were in its training data, 2 of them beyond FER-2013's duplicates: its validation "
        "figures are optimistic")
    assert overlap_note(np.array([7]), val, split_train) == "none"
    assert overlap_note(None, val, split_train) == "unknown (no record of its training images)"


def test_prediction_drift_never_compares_the_champion_with_itself():
    from fercore.promotion.decision import Candidate
    from fercore.promotion.promote import compared_with

    def c(version: str, f1: float) -> Candidate:
        return Candidate(version, "cnn", _eval(f1), np.zeros((1, 7)))

    champion, runner, weak = c("3", 0.6), c("2", 0.5), c("1", 0.4)
    assert compared_with(champion, runner, [champion, runner, weak], "macro_f1") == (runner, "this run's best new model")
    other, which = compared_with(champion, champion, [weak, champion, runner], "macro_f1")  # the best new is the champion
    assert other is runner and which.startswith("the best other candidate by validation macro_f1")
    assert compared_with(champion, champion, [champion], "macro_f1")[1].startswith("the champion itself: no other")
