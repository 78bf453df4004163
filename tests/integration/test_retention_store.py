"""``run.py gc``'s MLflow side on a real store: 12 versions, 2 ensembles, moved aliases."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from mlflow import MlflowClient

from fercore.models import build_cnn, save_model
from fercore.promotion.retention import apply_registry_plan, registry_plan
from fercore.serving.pyfunc import FerEmotionModel, FerEnsembleModel
from fercore.tracking.loading import load_predictor
from fercore.tracking.registry import log_and_register
from fercore.tracking.runs import one_off_run
from fercore.tracking.store import RunInfo
from tests.conftest import connect_store

NAME = "fer-gc"


@pytest.fixture
def store(tmp_path) -> tuple[str, dict[str, str]]:
    """vgg7 v1-v5, resnet v6-v10 (alternating from v6), a routed ensemble (v11: v2 and v7) and an averaging one
    (v12: v9 and v10); champion -> v11, challenger -> v12, champion-happy -> v4; and a promotion run."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    experiment = connect_store(uri, "gc")
    client, example = MlflowClient(), np.zeros((2, 48, 48), np.uint8)
    for i in range(10):
        torch.manual_seed(i)
        run_id = client.create_run(experiment, run_name=f"train-{i}").info.run_id
        folder = save_model(build_cnn("vgg7", width=8).eval(), tmp_path / f"m{i}")
        log_and_register(uri, run_id, FerEmotionModel(), {"model": str(folder)}, NAME,
                         {"family": "cnn", "contender": "vgg7" if i < 5 else "resnet"}, "", example,
                         model_config={"tta": "none"})
        client.set_terminated(run_id)
    specs = {"routed": ({"model_name": NAME, "routes": {"angry": "2", "disgust": "7", "fear": "2", "happy": "7",
                                                        "sad": "2", "surprise": "7", "neutral": "2"}},
                        {"routes": "angry:2,disgust:7,fear:2,happy:7,sad:2,surprise:7,neutral:2"}),
             "averaged": ({"model_name": NAME, "members": ["9", "10"], "weights": [0.5, 0.5],
                           "temperatures": [1.0, 1.0]}, {"members": "9,10"})}
    for kind, (spec, tags) in specs.items():
        (tmp_path / f"{kind}.json").write_text(json.dumps(spec))
        with one_off_run(RunInfo(uri, "gc", "run"), f"register-{kind}", {}, {}) as run_id:
            log_and_register(uri, run_id, FerEnsembleModel(), {"ensemble": str(tmp_path / f"{kind}.json")}, NAME,
                             {"family": "ensemble", "contender": kind, **tags}, "", example)
    for alias, version in {"champion": "11", "challenger": "12", "champion-happy": "4"}.items():
        client.set_registered_model_alias(NAME, alias, version)
    with one_off_run(RunInfo(uri, "gc", "run"), "promote", {}, {}):
        pass
    return uri, {"experiment": experiment}


def test_gc_keeps_exactly_what_it_must_and_the_champion_still_predicts(store, tmp_path):
    uri, _ = store
    faces = np.random.default_rng(0).integers(0, 256, (4, 48, 48), dtype=np.uint8)
    before, _ = load_predictor(f"models:/{NAME}@champion", uri, tmp_path / "before")
    expected = before(faces)
    plan = registry_plan(uri, NAME, "gc", keep_versions=1, keep_runs=1)
    assert plan.kept == {"11": "holds @champion", "12": "holds @challenger", "4": "holds @champion-happy",
                         "5": "one of the last 1 of vgg7", "10": "one of the last 1 of resnet",
                         "2": "member of kept ensemble v11", "7": "member of kept ensemble v11",
                         "9": "member of kept ensemble v12"}
    assert sorted(int(r.version) for r in plan.versions) == [1, 3, 6, 8]
    assert sorted(r.name for r in plan.runs) == ["train-0", "train-2", "train-5", "train-7"]  # promote: the newest
    assert plan.bytes > 100_000
    artifacts = [Path(MlflowClient().get_logged_model(m).artifact_location.removeprefix("file://"))
                 for m in plan.model_ids.values()]
    assert all(a.exists() for a in artifacts)
    assert apply_registry_plan(uri, NAME, plan).removed is True
    left = sorted(int(v.version) for v in MlflowClient().search_model_versions(f"name = '{NAME}'"))
    assert left == [2, 4, 5, 7, 9, 10, 11, 12]
    assert not any(a.exists() for a in artifacts)  # the files went with them
    runs = MlflowClient().search_runs([store[1]["experiment"]], run_view_type=3)  # ALL: deleted ones too
    assert sorted(r.info.run_name for r in runs if r.info.run_name.startswith("train")) == [
        "train-1", "train-3", "train-4", "train-6", "train-8", "train-9"]
    after, _ = load_predictor(f"models:/{NAME}@champion", uri, tmp_path / "after")  # a fresh copy from the store
    np.testing.assert_allclose(after(faces), expected, rtol=1e-6)
    assert registry_plan(uri, NAME, "gc", keep_versions=1, keep_runs=1).versions == []  # nothing more to do


def test_a_file_gc_cannot_delete_is_named_the_rest_goes_and_the_next_gc_finishes(store, monkeypatch):
    from mlflow.store.artifact.local_artifact_repo import LocalArtifactRepository

    from fercore.tracking.purge import pending_file, purge, read_pending

    uri, _ = store
    plan = registry_plan(uri, NAME, "gc", keep_versions=1, keep_runs=1)
    folders = {m: Path(MlflowClient().get_logged_model(m).artifact_location.removeprefix("file://"))
               for m in plan.model_ids.values()}
    stuck_id, stuck = sorted(folders.items())[0]
    real = LocalArtifactRepository.delete_artifacts

    def immutable(self, artifact_path=None):  # what `chattr +i` on the folder does to shutil.rmtree
        if Path(self.artifact_dir) == stuck:
            raise PermissionError(1, "Operation not permitted", str(stuck / "artifacts"))
        return real(self, artifact_path)

    monkeypatch.setattr(LocalArtifactRepository, "delete_artifacts", immutable)
    result = apply_registry_plan(uri, NAME, plan)
    assert result.failures == [f"logged model {stuck_id}: {stuck / 'artifacts'}: Operation not permitted"]
    assert stuck.exists() and not any(f.exists() for m, f in folders.items() if m != stuck_id)  # the others went
    assert read_pending(pending_file(uri)) == {"runs": [], "models": [stuck_id]}
    monkeypatch.undo()  # the permission fixed
    assert purge(uri, [], []).failures == []  # the next gc, with nothing new to delete
    assert not stuck.exists() and not pending_file(uri).exists()


def test_gc_leaves_the_runs_of_another_registered_model_in_the_same_experiment(store, tmp_path):
    uri, ids = store
    client = MlflowClient()
    run_id = client.create_run(ids["experiment"], run_name="other-model").info.run_id
    folder = save_model(build_cnn("vgg7", width=8).eval(), tmp_path / "other")
    log_and_register(uri, run_id, FerEmotionModel(), {"model": str(folder)}, "someone-elses", {"family": "cnn"}, "",
                     np.zeros((2, 48, 48), np.uint8), model_config={"tta": "none"})
    client.set_terminated(run_id)
    plan = registry_plan(uri, NAME, "gc", keep_versions=1, keep_runs=0)
    assert "other-model" not in {r.name for r in plan.runs}
    assert {r.name for r in plan.runs} >= {"train-0", "train-2"}  # its own old runs still go
