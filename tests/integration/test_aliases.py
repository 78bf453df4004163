"""Safe alias moves and serialised promotions on a real MLflow store; the pyfunc reading older versions' settings."""

from __future__ import annotations

from types import SimpleNamespace

import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient

from fercore.constants import CLASS_NAMES
from fercore.promotion.aliases import apply_moves
from fercore.promotion.decision import AliasMove
from fercore.serving.pyfunc import FerEmotionModel
from fercore.tracking import registry as adapter

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
    client.uri = uri  # the store the project's calls name
    for _ in range(3):
        with mlflow.start_run():
            mlflow.pyfunc.log_model(name="model", python_model=_Constant(), registered_model_name="m",
                                    pip_requirements=["mlflow"])
    return client


def test_moves_are_applied_and_tagged(registry):
    applied = apply_moves(registry.uri, "m", [AliasMove("champion", "1", None, "macro_f1 0.5"),
                                          AliasMove("champion-disgust", "2", None, "disgust F1 0.9")])
    assert len(applied) == 2 and adapter.aliases(registry.uri, "m") == {"champion": "1", "champion-disgust": "2"}
    assert "macro_f1 0.5" in registry.get_model_version("m", "1").tags["promoted.champion"]


def test_a_concurrent_promotion_is_not_overwritten(registry):
    registry.set_registered_model_alias("m", "champion", "1")
    decided = [AliasMove("champion", "2", "1", "better")]
    registry.set_registered_model_alias("m", "champion", "3")  # another run promoted meanwhile
    assert apply_moves(registry.uri, "m", decided) == []
    assert adapter.aliases(registry.uri, "m")["champion"] == "3"


def test_a_failure_mid_promotion_restores_the_old_aliases(registry, monkeypatch):
    registry.set_registered_model_alias("m", "champion", "1")
    calls = {"n": 0}
    real = adapter.tag_version

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("store went away")
        return real(*args, **kwargs)

    monkeypatch.setattr(adapter, "tag_version", flaky)
    with pytest.raises(RuntimeError):
        apply_moves(registry.uri, "m", [AliasMove("champion-angry", "2", None, "x"),
                                        AliasMove("champion", "3", "1", "y")])
    assert adapter.aliases(registry.uri, "m") == {"champion": "1"}


def test_no_alias_points_at_a_version_that_is_not_ready(registry, monkeypatch):
    from fercore.errors import RegistryError

    real = adapter.get_version
    monkeypatch.setattr(adapter, "get_version", lambda uri, name, v: type("V", (), {"status": "PENDING_REGISTRATION"})()
                        if v == "2" else real(uri, name, v))
    with pytest.raises(RegistryError, match="not READY"):
        apply_moves(registry.uri, "m", [AliasMove("champion", "2", None, "x")])
    assert adapter.aliases(registry.uri, "m") == {}


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
    assert _overlaps(lambda: promotion_lock(uri, "m")) == []
    assert (tmp_path / "mlflow.db.promotion.lock").exists()


def test_promotions_on_a_server_are_serialised_by_a_lease(registry):
    from fercore.promotion.aliases import LEASE_TAG, registry_lease

    assert _overlaps(lambda: registry_lease(registry.uri, "m", settle_s=0.1)) == []
    assert LEASE_TAG not in registry.get_registered_model("m").tags  # released


def test_an_expired_lease_is_taken_over_and_a_live_one_waited_for(registry):
    import time

    from fercore.errors import RegistryError
    from fercore.promotion.aliases import LEASE_TAG, registry_lease

    registry.set_registered_model_tag("m", LEASE_TAG, f"dead-host:1:x {time.time() - 5:.0f}")
    with registry_lease(registry.uri, "m", timeout_s=5, settle_s=0.05):
        assert not registry.get_registered_model("m").tags[LEASE_TAG].startswith("dead-host")
    registry.set_registered_model_tag("m", LEASE_TAG, f"live-host:1:x {time.time() + 600:.0f}")
    with pytest.raises(RegistryError, match="another promotion of m holds the lease"):
        with registry_lease(registry.uri, "m", timeout_s=0.3, settle_s=0.05):
            pass


def test_an_ensemble_whose_routes_lost_their_aliases_is_not_made_champion(registry):
    registry.set_registered_model_alias("m", "champion-happy", "1")
    routes = {e: "1" for e in CLASS_NAMES}
    move = AliasMove("champion", "3", None, "ensemble", routes=routes)
    registry.set_registered_model_alias("m", "champion-happy", "2")  # a concurrent promotion moved happy
    assert apply_moves(registry.uri, "m", [move]) == []
    for e in CLASS_NAMES:
        registry.set_registered_model_alias("m", f"champion-{e}", "1")
    assert [m.alias for m in apply_moves(registry.uri, "m", [move])] == ["champion"]
