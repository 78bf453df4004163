"""Promotion decisions, safe alias moves on a real MLflow store, the routed ensemble, drift reports."""

from __future__ import annotations

from types import SimpleNamespace

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from fercore.constants import CLASS_NAMES
from fercore.evaluation.metrics import Evaluation
from fercore.promotion.aliases import apply_moves, current_holders
from fercore.promotion.decision import AliasMove, Candidate, decide
from fercore.serving.pyfunc import FerEmotionModel, route_probabilities


def cand(version: str, f1: dict[str, float] | float, arch: str = "cnn") -> Candidate:
    f1s = {e: (f1[e] if isinstance(f1, dict) and e in f1 else (f1 if not isinstance(f1, dict) else f1.get("*", 0.3)))
           for e in CLASS_NAMES}
    per_class = pd.DataFrame({"f1": f1s, "recall": f1s}, index=pd.Index(CLASS_NAMES, name="emotion"))
    macro = float(np.mean(list(f1s.values())))
    ev = Evaluation({"macro_f1": macro, "accuracy": macro}, per_class, np.zeros((7, 7), int))
    return Candidate(version, arch, ev, np.full((3, 7), 1 / 7))


def _aliases(moves):
    return {m.alias: m.version for m in moves}


def test_first_run_promotes_its_best_everywhere():
    d = decide([cand("1", 0.5), cand("2", 0.4)], {})
    assert _aliases(d.moves) == {**{f"champion-{e}": "1" for e in CLASS_NAMES}, "champion": "1", "challenger": "2"}
    assert set(d.table["decision"]) == {"assign"} and d.routes["disgust"] == "1"
    assert "| emotion |" in d.markdown()


def test_worse_overall_but_better_on_one_emotion_moves_only_that_alias():
    holders = {**{f"champion-{e}": "1" for e in CLASS_NAMES}, "champion": "1", "challenger": "2"}
    d = decide([cand("1", 0.5), cand("2", 0.4), cand("3", {"disgust": 0.9, "*": 0.3})], holders)
    assert _aliases(d.moves) == {"champion-disgust": "3"}
    row = d.table.set_index("emotion").loc["disgust"]
    assert row["decision"] == "move" and row["margin_vs_champion"] == pytest.approx(0.4)
    assert d.routes["disgust"] == "3" and d.routes["happy"] == "1"


def test_champion_needs_the_margin_and_ties_keep_the_holder():
    holders = {"champion": "1", **{f"champion-{e}": "1" for e in CLASS_NAMES}}
    d = decide([cand("1", 0.50), cand("2", 0.52)], holders, min_margin=0.05)
    assert "champion" not in _aliases(d.moves) and "keep" in d.reasons["champion"]
    d = decide([cand("1", 0.50), cand("2", 0.56)], holders, min_margin=0.05)
    assert _aliases(d.moves)["champion"] == "2" and _aliases(d.moves)["previous-champion"] == "1"
    tie = decide([cand("1", 0.5), cand("2", 0.5)], holders)
    assert "champion-happy" not in _aliases(tie.moves)


def test_routed_probabilities_take_each_class_from_its_champion():
    a = np.array([[0.7, 0.3, 0, 0, 0, 0, 0]], float)
    b = np.array([[0.1, 0.9, 0, 0, 0, 0, 0]], float)
    routes = {e: "a" for e in CLASS_NAMES} | {"disgust": "b"}
    out = route_probabilities({"a": a, "b": b}, routes)
    assert out[0, :2] == pytest.approx([0.7 / 1.6, 0.9 / 1.6]) and out.sum() == pytest.approx(1.0)


# --- alias moves on a real (temporary) MLflow registry ----------------------------------------


class _Constant(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        return np.zeros(len(model_input))


@pytest.fixture
def registry(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    mlflow.set_experiment("promo")
    client = MlflowClient(uri)
    for _ in range(3):
        with mlflow.start_run():
            mlflow.pyfunc.log_model(name="model", python_model=_Constant(), registered_model_name="m",
                                    pip_requirements=["mlflow"])
    return client


def test_moves_are_applied_and_tagged(registry):
    applied = apply_moves(registry, "m", [AliasMove("champion", "1", None, "macro_f1 0.5"),
                                          AliasMove("champion-disgust", "2", None, "disgust F1 0.9")])
    assert len(applied) == 2 and current_holders(registry, "m") == {"champion": "1", "champion-disgust": "2"}
    assert "macro_f1 0.5" in registry.get_model_version("m", "1").tags["promoted.champion"]


def test_a_concurrent_promotion_is_not_overwritten(registry):
    registry.set_registered_model_alias("m", "champion", "1")
    decided = [AliasMove("champion", "2", "1", "better")]
    registry.set_registered_model_alias("m", "champion", "3")  # another run promoted meanwhile
    assert apply_moves(registry, "m", decided) == []
    assert current_holders(registry, "m")["champion"] == "3"


def test_a_failure_mid_promotion_restores_the_old_aliases(registry, monkeypatch):
    registry.set_registered_model_alias("m", "champion", "1")
    calls = {"n": 0}
    real = registry.set_model_version_tag

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("store went away")
        return real(*args, **kwargs)

    monkeypatch.setattr(registry, "set_model_version_tag", flaky)
    with pytest.raises(RuntimeError):
        apply_moves(registry, "m", [AliasMove("champion-angry", "2", None, "x"), AliasMove("champion", "3", "1", "y")])
    assert current_holders(registry, "m") == {"champion": "1"}


def test_no_alias_points_at_a_version_that_is_not_ready(registry, monkeypatch):
    from mlflow.exceptions import MlflowException

    version = registry.get_model_version("m", "2")
    monkeypatch.setattr(registry, "get_model_version", lambda name, v: type("V", (), {"status": "PENDING_REGISTRATION"})()
                        if v == "2" else version)
    with pytest.raises(MlflowException, match="not READY"):
        apply_moves(registry, "m", [AliasMove("champion", "2", None, "x")])
    assert current_holders(registry, "m") == {}


# --- drift ---------------------------------------------------------------------------------


def test_drift_detected_on_darkened_images_not_on_a_resample():
    from fercore.monitoring.drift import data_drift, image_statistics
    from tests.conftest import synthetic

    images = synthetic(per_class=60, test_per_class=1).images
    rng = np.random.default_rng(0)
    half = rng.permutation(len(images))
    reference, resample = images[half[:200]], images[half[200:]]
    same = data_drift(reference, resample, max_images=200)
    assert not same.dataset_drift and same.drift_share < 0.5
    dark = data_drift(reference, (resample * 0.4).astype(np.uint8), max_images=200)
    assert dark.dataset_drift and dark.drift_share >= 0.5 and "<html" in dark.html.lower()
    assert set(image_statistics(images[:2]).columns) >= {"brightness", "contrast", "sharpness"}


def test_embedding_and_prediction_drift():
    from fercore.monitoring.drift import data_drift, prediction_drift

    rng = np.random.default_rng(1)
    images = rng.integers(0, 255, (300, 48, 48), dtype=np.uint8)
    emb = rng.normal(size=(300, 8))
    shifted = data_drift(images[:150], images[150:], emb[:150], emb[150:] + 2.0, max_images=150)
    assert shifted.embedding_drift and shifted.embedding_drift_score > 0.55
    same = data_drift(images[:150], images[150:], emb[:150], emb[150:], max_images=150)
    assert same.embedding_drift is False
    assert prediction_drift(["happy"] * 50 + ["sad"] * 50, ["happy"] * 95 + ["sad"] * 5).dataset_drift
    assert not prediction_drift(["happy", "sad"] * 50, ["sad", "happy"] * 50).dataset_drift


@pytest.mark.parametrize(("model_config", "tta"), [({"tta": "shift"}, "shift"), ({"hflip_tta": True}, "hflip"),
                                                    ({"hflip_tta": False}, "none"), (None, "none")])
def test_pyfunc_reads_its_tta_also_from_older_versions(tmp_path, model_config, tta):
    from fercore.models import build_cnn, save_model

    folder = save_model(build_cnn("vgg7", width=8), tmp_path / "model")
    wrapper = FerEmotionModel()
    wrapper.load_context(SimpleNamespace(artifacts={"model": str(folder)}, model_config=model_config))
    assert wrapper.tta == tta
    out = wrapper.predict(None, np.zeros((2, 48, 48), np.uint8))
    assert list(out.columns[:1]) == ["label"] and len(out) == 2


# --- serialised promotions --------------------------------------------------------------------


def _overlaps(lock_factory, workers: int = 3, hold_s: float = 0.3) -> list:
    """Runs ``workers`` threads that each hold the lock for ``hold_s``; returns overlapping holds."""
    import threading
    import time

    spans: list[tuple[float, float]] = []
    errors: list[BaseException] = []

    def work():
        try:
            with lock_factory():
                start = time.monotonic()
                time.sleep(hold_s)
                spans.append((start, time.monotonic()))
        except BaseException as exc:  # noqa: BLE001 (reported below, threads swallow it otherwise)
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    spans.sort()
    assert not errors and len(spans) == workers, errors
    return [(first, second) for first, second in zip(spans, spans[1:]) if second[0] < first[1]]


def test_promotions_on_a_local_store_are_serialised(registry, tmp_path):
    from fercore.promotion.aliases import promotion_lock

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert _overlaps(lambda: promotion_lock(registry, uri, "m")) == []
    assert (tmp_path / "mlflow.db.promotion.lock").exists()


def test_promotions_on_a_server_are_serialised_by_a_lease(registry):
    from fercore.promotion.aliases import LEASE_TAG, registry_lease

    assert _overlaps(lambda: registry_lease(registry, "m", settle_s=0.1)) == []
    assert LEASE_TAG not in registry.get_registered_model("m").tags  # released


def test_an_expired_lease_is_taken_over_and_a_live_one_waited_for(registry):
    import time

    from fercore.errors import RegistryError
    from fercore.promotion.aliases import LEASE_TAG, registry_lease

    registry.set_registered_model_tag("m", LEASE_TAG, f"dead-host:1:x {time.time() - 5:.0f}")
    with registry_lease(registry, "m", timeout_s=5, settle_s=0.05):
        assert not registry.get_registered_model("m").tags[LEASE_TAG].startswith("dead-host")
    registry.set_registered_model_tag("m", LEASE_TAG, f"live-host:1:x {time.time() + 600:.0f}")
    with pytest.raises(RegistryError, match="another promotion of m holds the lease"):
        with registry_lease(registry, "m", timeout_s=0.3, settle_s=0.05):
            pass


def test_an_ensemble_whose_routes_lost_their_aliases_is_not_made_champion(registry):
    registry.set_registered_model_alias("m", "champion-happy", "1")
    routes = {e: "1" for e in CLASS_NAMES}
    move = AliasMove("champion", "3", None, "ensemble", routes=routes)
    registry.set_registered_model_alias("m", "champion-happy", "2")  # a concurrent promotion moved happy
    assert apply_moves(registry, "m", [move]) == []
    for e in CLASS_NAMES:
        registry.set_registered_model_alias("m", f"champion-{e}", "1")
    assert [m.alias for m in apply_moves(registry, "m", [move])] == ["champion"]
