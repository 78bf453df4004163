"""Issue 43: every registry write of a promotion is made under its lock through one journal, and a failure at any
of them leaves the registry exactly as it was: aliases, versions (a new ensemble deleted), tags and model cards."""

from __future__ import annotations

import pytest
from mlflow import MlflowClient

import fercore.promotion.promote as promote_module
from fercore.config import PromotionConfig
from fercore.promotion.apply import apply_plan
from fercore.promotion.promote import promote
from fercore.tracking import registry
from fercore.tracking.store import RunInfo
from tests.conftest import connect_store, synthetic
from tests.integration.test_promotion_run import _register, _winning

NAME = "fer-promo"
WRITES = ("set_alias", "tag_version", "describe_version", "describe_model", "log_and_register")


def _snapshot(client: MlflowClient) -> dict:
    model = client.get_registered_model(NAME)
    versions = {v.version: (v.status, dict(v.tags), v.description) for v in client.search_model_versions(f"name='{NAME}'")}
    return {"aliases": dict(model.aliases), "description": model.description, "versions": versions}


class _Fail(RuntimeError):
    pass


def test_a_failure_at_any_write_of_a_promotion_leaves_the_registry_as_it_was(tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    connect_store(uri, "promo")
    info = RunInfo(uri, "promo", "test-run", "zenml-run-id")
    dataset = synthetic(per_class=12, test_per_class=4)
    holder = _register(dataset, 0, info)
    promote(NAME, dataset, [({"version": holder, "family": "cnn"}, _winning(dataset, [0, 1, 2]))],
            PromotionConfig(ensemble=False, averaging=False, drift_max_images=60), info)  # a holder with a card
    a, b = _register(dataset, 1, info), _register(dataset, 2, info)
    new = [({"version": a, "family": "cnn"}, _winning(dataset, [0, 1, 2, 3])),
           ({"version": b, "family": "cnn"}, _winning(dataset, [4, 5, 6]))]
    config = PromotionConfig(ensemble=False, drift_max_images=60, require_significance=False)  # the averaging one
    client = MlflowClient(uri)
    before = _snapshot(client)
    planned = []

    def capture(*args):  # the promotion up to its writes: scored, decided, then stopped before any write
        planned.append(args)
        raise _Fail("captured")

    monkeypatch.setattr(promote_module, "apply_plan", capture)
    with pytest.raises(_Fail):
        promote(NAME, dataset, new, config, info)
    calls = {"n": 0, "fail_at": None}
    for fn in WRITES:
        real = getattr(registry, fn)

        def counted(*args, _real=real, **kwargs):
            calls["n"] += 1
            if calls["n"] == calls["fail_at"]:
                raise _Fail(f"write {calls['n']}")
            return _real(*args, **kwargs)

        monkeypatch.setattr(registry, fn, counted)
    k = 1
    while True:  # fail the 1st write, then the 2nd, ... until the plan is carried out whole
        calls.update(n=0, fail_at=k)
        try:
            plan, applied = apply_plan(*planned[0])
        except _Fail:
            assert _snapshot(client) == before, f"write {k} failed and the registry changed"
            k += 1
            continue
        break
    assert k > 8  # an ensemble registered, aliases moved and tagged, cards and the description rewritten
    after = _snapshot(client)
    assert after["aliases"] != before["aliases"] and len(after["versions"]) == len(before["versions"]) + 1
    assert planned[0][0].ensembles[0].candidate.version == "new-averaged"  # the plan decided is left as it was
    assert int(plan.ensembles[0].candidate.version) in after["versions"]
