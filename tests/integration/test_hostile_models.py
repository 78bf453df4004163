"""Issue 42's probe on a real registry: a model whose pickle runs code is never opened on any loading path, a
busy store never dethrones a holder, and a model whose files are gone is named and left out."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.pyfunc import PythonModel

from fercore.config import MonitorConfig, PromotionConfig
from fercore.errors import ModelFilesMissing, RegistryError, StoreBusyError
from fercore.promotion.promote import promote
from fercore.tracking.model_guard import UntrustedModelError
from fercore.tracking.registry import log_and_register
from fercore.tracking.store import RunInfo
from tests.conftest import connect_store, synthetic
from tests.integration.test_promotion_run import _register, _winning

NAME = "fer-promo"  # the name test_promotion_run's helpers register under


class _Evil(PythonModel):
    """Unpickling it runs ``os.system`` (the probe's ``touch PWNED``)."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)

    def predict(self, context, model_input, params=None):  # noqa: ARG002
        raise AssertionError("never reached")


@pytest.fixture
def store(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    connect_store(uri, "promo")
    return RunInfo(uri, "promo", "test-run", "zenml-run-id")


def _register_evil(store: RunInfo, marker: Path, name: str = NAME) -> str:
    run_id = MlflowClient().create_run(MlflowClient().get_experiment_by_name("promo").experiment_id).info.run_id
    version = log_and_register(store.tracking_uri, run_id, _Evil(str(marker)), {}, name,
                               {"family": "cnn", "contender": "evil"}, "", np.zeros((2, 48, 48), np.uint8))
    marker.unlink()  # MLflow's logging loads the model to check its input example: the attacker's own machine
    MlflowClient().set_registered_model_alias(name, "champion", version)
    return version


def test_an_evil_champion_is_never_unpickled_by_predict_monitor_serve_or_an_ensemble(store, tmp_path, monkeypatch):
    import run
    from fercore.monitoring.monitor_run import monitor_run
    from fercore.serving.pyfunc import load_member
    from fercore.tracking.loading import load_predictor

    marker = tmp_path / "PWNED"
    version = _register_evil(store, marker, "evil")
    refusal = rf"evil v{version} is not one of this project's wrappers .*it imports posix\.system.*not opened"
    with pytest.raises(UntrustedModelError, match=refusal):
        load_predictor("models:/evil@champion", store.tracking_uri, tmp_path / "cache")
    folders = MonitorConfig(data=str(tmp_path))
    with pytest.raises(UntrustedModelError, match=refusal):
        monitor_run(folders, "evil", store, lambda v: pytest.fail("the training data is read after the model"))
    monkeypatch.setenv("FER_CACHE_DIR", str(tmp_path / "cache"))
    assert run.main(["check-model", "models:/evil@champion", "--tracking-uri", store.tracking_uri]) == 2  # make serve
    with pytest.raises(UntrustedModelError, match=rf"member v{version} of the ensemble is not one of"):
        load_member("evil", version)  # inside a served ensemble, before MLflow unpickles the member
    assert not marker.exists()


def test_promotion_leaves_an_evil_holder_unopened_and_gives_its_aliases_to_the_best(store, tmp_path, caplog):
    marker = tmp_path / "PWNED"
    evil = _register_evil(store, marker)
    dataset = synthetic(per_class=12, test_per_class=4)
    good = _register(dataset, 0, store)
    out = promote(NAME, dataset, [({"version": good, "family": "cnn"}, _winning(dataset, list(range(7))))],
                  PromotionConfig(ensemble=False, averaging=False, drift_max_images=60), store)
    assert not marker.exists()
    assert f"v{evil} (evil) holds an alias but cannot be scored: {NAME} v{evil} is not one of" in caplog.text
    assert out.summary["aliases"]["champion"] == good
    reasons = {m["alias"]: m["reason"] for m in out.summary["moves"]}
    assert reasons["champion"].endswith(f"(holder v{evil} could not be scored)")
    assert out.summary["reasons"]["champion"].startswith(f"replace (holder v{evil} could not be scored): macro_f1")


def _locked(*args, **kwargs):
    raise MlflowException("(sqlite3.OperationalError) database is locked", error_code="TEMPORARILY_UNAVAILABLE")


def test_a_busy_store_fails_the_promotion_and_moves_no_alias(store, monkeypatch):
    import fercore.tracking.registry as registry
    import fercore.tracking.store as tracking_store

    dataset = synthetic(per_class=12, test_per_class=4)
    holder = _register(dataset, 0, store)
    MlflowClient().set_registered_model_alias(NAME, "champion", holder)
    new = _register(dataset, 1, store)
    monkeypatch.setattr(tracking_store, "RETRY_WAITS_S", (0.01, 0.01))
    monkeypatch.setattr(registry, "download_version", _locked)  # what MLflow raises after its own 20 s
    with pytest.raises(StoreBusyError, match=r"stayed busy or unreachable through 3 attempts .*database is locked.*"
                                             r"so no alias moved"):
        promote(NAME, dataset, [({"version": new, "family": "cnn"}, _winning(dataset, list(range(7))))],
                PromotionConfig(ensemble=False, averaging=False, drift_max_images=60), store)
    assert MlflowClient().get_registered_model(NAME).aliases == {"champion": int(holder)}


def test_a_store_busy_for_a_moment_is_waited_for_and_the_holder_is_judged(store, monkeypatch, caplog):
    import fercore.tracking.registry as registry
    import fercore.tracking.store as tracking_store

    dataset = synthetic(per_class=12, test_per_class=4)
    holder = _register(dataset, 0, store)
    MlflowClient().set_registered_model_alias(NAME, "champion", holder)
    new = _register(dataset, 1, store)
    real, calls = registry.download_version, []

    def busy_once(*args, **kwargs):
        calls.append(args)
        return _locked() if len(calls) == 1 else real(*args, **kwargs)

    monkeypatch.setattr(tracking_store, "RETRY_WAITS_S", (0.01,))
    monkeypatch.setattr(registry, "download_version", busy_once)
    promote(NAME, dataset, [({"version": new, "family": "cnn"}, _winning(dataset, [0]))],
            PromotionConfig(ensemble=False, averaging=False, drift_max_images=60), store)
    assert "The MLflow store is busy" in caplog.text and "cannot be scored" not in caplog.text
    assert f"v{holder}" in caplog.text and len(calls) >= 2


def test_a_cached_contender_whose_files_are_gone_is_left_out_and_drift_uses_another(store, caplog):
    import shutil

    dataset = synthetic(per_class=12, test_per_class=4)
    gone, kept = _register(dataset, 0, store), _register(dataset, 1, store)
    source = MlflowClient().get_model_version(NAME, gone).source  # models:/m-...
    model_dir = MlflowClient().get_logged_model(source.removeprefix("models:/")).artifact_location
    shutil.rmtree(model_dir.removeprefix("file://"))
    new = [({"version": gone, "family": "cnn", "contender": "c0"}, _winning(dataset, list(range(7)))),
           ({"version": kept, "family": "cnn", "contender": "c1"}, _winning(dataset, [0, 1]))]
    out = promote(NAME, dataset, new, PromotionConfig(ensemble=False, averaging=False, drift_max_images=60), store)
    assert f"v{gone} (c0) was registered by an earlier run (a cached step) but its files are gone" in caplog.text
    assert out.summary["aliases"]["champion"] == kept
    with pytest.raises(ModelFilesMissing, match=rf"every version this run registered \(v{gone}\) are gone"):
        promote(NAME, dataset, new[:1], PromotionConfig(ensemble=False, averaging=False, drift_max_images=60), store)


def test_an_ensemble_whose_member_was_deleted_names_the_member(store, tmp_path):
    from fercore.tracking.loading import load_predictor

    dataset = synthetic(per_class=12, test_per_class=4)
    a, b = _register(dataset, 0, store), _register(dataset, 1, store)
    promote(NAME, dataset, [({"version": a, "family": "cnn"}, _winning(dataset, [0, 1, 2, 3])),
                            ({"version": b, "family": "cnn"}, _winning(dataset, [4, 5, 6]))],
            PromotionConfig(drift_max_images=60, averaging=False), store)
    (ensemble,) = [v.version for v in MlflowClient().search_model_versions(f"name='{NAME}'")
                   if v.tags.get("family") == "ensemble"]
    MlflowClient().delete_model_version(NAME, a)
    with pytest.raises(RegistryError, match=rf"member v{a} of {NAME} v{ensemble} is not in the registry .*deleted"):
        load_predictor(f"models:/{NAME}/{ensemble}", store.tracking_uri, tmp_path / "cache")
