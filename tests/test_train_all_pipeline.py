"""`run.py --pipeline train_all` end to end through ZenML and MLflow (temporary stores)."""

from __future__ import annotations

import os
import subprocess
import sys

import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient

from tests.conftest import ROOT

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_vit_dir):
    """One smoke train_all run: the CNN and the tiny 'pretrained' ViT, registered in a fresh MLflow store."""
    from tests.conftest import write_tree

    tmp = tmp_path_factory.mktemp("train_all")
    data = write_tree(tmp / "fer", train_per_class=12, test_per_class=4)
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    cfg = tmp / "cfg.yaml"
    cfg.write_text((ROOT / "configs" / "smoke.yaml").read_text() + f"""
registry:
  tracking_uri: {uri}
  model_name: fer-test
checkpoint_dir: {tmp / 'ckpt'}
""")
    overrides = ["--set", f"vit.checkpoint={tiny_vit_dir}", "--set", f"data.cache_dir={tmp / 'cache'}"]
    result = subprocess.run([sys.executable, "run.py", "--pipeline", "train_all", "--config", str(cfg), "--data",
                             str(data), *overrides], cwd=ROOT, env=os.environ.copy(), capture_output=True, text=True,
                            timeout=900)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return {"uri": uri, "client": MlflowClient(uri), "tmp": tmp}


def _versions(client):
    versions = client.search_model_versions("name='fer-test'")
    return {v.tags["architecture"]: v for v in versions if v.tags["architecture"] != "ensemble"}


def test_both_models_are_registered_with_tags_and_per_class_metrics(trained):
    client = trained["client"]
    versions = _versions(client)
    assert set(versions) == {"cnn", "vit"}
    for arch, v in versions.items():
        assert len(v.tags["dataset_sha256"]) == 64 and v.tags["zenml_run_id"]
        assert 0.0 <= float(v.tags["test_accuracy"]) <= 1.0 and "test_macro_f1" in v.tags
        assert "| disgust |" in v.description
        run = client.get_run(v.run_id)
        assert run.info.status == "FINISHED"
        for key in ("test_accuracy", "test_macro_f1", "test_disgust_f1", "test_happy_recall", "test_PrivateTest_accuracy",
                    "train_loss", "val_loss"):
            assert key in run.data.metrics, (arch, key)
        artifacts = {a.path for a in client.list_artifacts(v.run_id, "evaluation")}
        assert {"evaluation/confusion_matrix.png", "evaluation/loss_curves.png", "evaluation/per_class.csv"} <= artifacts
    assert versions["vit"].tags["checkpoint"].endswith("tiny-vit0")


def _zenml_model(step: str, output: str):
    from zenml.client import Client

    run = Client().get_pipeline("fer_train_all").last_run
    return run.steps[step].outputs[output][0].load()


def test_registry_pyfunc_predicts_like_the_in_memory_model(trained):
    from fercore.train import predict_proba
    from tests.test_train import synthetic

    images = synthetic(per_class=10, test_per_class=1).images[:12]
    for arch in ("cnn", "vit"):
        version = _versions(trained["client"])[arch].version
        pyfunc = mlflow.pyfunc.load_model(f"models:/fer-test/{version}")
        out = pyfunc.predict(images)
        assert list(out.columns[:2]) == ["label", "angry"] and len(out) == len(images)
        model = _zenml_model(f"train_{arch}", f"{arch}_model")
        expected = predict_proba(model, images, tta="hflip").argmax(1)
        from fercore.constants import CLASS_NAMES

        assert list(out["label"]) == [CLASS_NAMES[i] for i in expected]
        assert np.allclose(out.iloc[:, 1:].sum(axis=1), 1.0, atol=1e-5)


def test_vit_artifact_loads_with_from_pretrained(trained):
    from fercore.models.vit import FerViTForImageClassification

    version = _versions(trained["client"])["vit"].version
    path = mlflow.artifacts.download_artifacts(f"models:/fer-test/{version}", dst_path=str(trained["tmp"] / "dl"))
    hf = FerViTForImageClassification.from_pretrained(os.path.join(path, "artifacts", "model"))
    assert hf.config.id2label[6] == "surprise"


def test_promotion_sets_aliases_and_registers_the_routed_ensemble(trained):
    from fercore.constants import CLASS_NAMES
    from tests.test_train import synthetic

    client = trained["client"]
    aliases = {k: str(v) for k, v in client.get_registered_model("fer-test").aliases.items()}
    assert {"champion", "challenger", *(f"champion-{e}" for e in CLASS_NAMES)} <= set(aliases)
    ensembles = [v for v in client.search_model_versions("name='fer-test'") if v.tags["architecture"] == "ensemble"]
    assert len(ensembles) == 1
    members = set(ensembles[0].tags["members"].split(","))
    assert {aliases[f"champion-{e}"] for e in CLASS_NAMES} == members
    for alias, version in aliases.items():
        assert client.get_model_version("fer-test", version).status == "READY", alias
    ensemble = mlflow.pyfunc.load_model(f"models:/fer-test/{ensembles[0].version}")
    out = ensemble.predict(synthetic(per_class=10, test_per_class=1).images[:5])
    assert len(out) == 5 and set(out["label"]) <= set(CLASS_NAMES)
    run = _zenml_run()
    promotion = run.steps["promote_models"].outputs["promotion"][0].load()
    assert promotion["aliases"] == aliases and "champion" in promotion["reasons"]
    assert "data_drift" in promotion and "prediction_drift" in promotion


def _zenml_run():
    from zenml.client import Client

    return Client().get_pipeline("fer_train_all").last_run
