"""`run.py --pipeline train_all` end to end through ZenML and MLflow (temporary stores)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient

from fercore.constants import CLASS_NAMES
from steps.common import contender_output
from tests.conftest import ROOT


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_vit_dir):
    """One smoke train_all run with three contenders: the smoke config's CNN and tiny 'pretrained' ViT, and a
    residual CNN added as a config entry only, registered in a fresh MLflow store."""
    from tests.conftest import write_tree

    tmp = tmp_path_factory.mktemp("train_all")
    data = write_tree(tmp / "fer", train_per_class=12, test_per_class=4)
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    cfg = tmp / "cfg.yaml"
    smoke = (ROOT / "configs" / "smoke.yaml").read_text()
    third = "contenders:\n  resnet: {family: cnn, architecture: resnet, width: 8, epochs: 1, batch_size: 64}\n"
    cfg.write_text(smoke.replace("contenders:\n", third) + f"""
registry:
  tracking_uri: {uri}
  model_name: fer-test
checkpoint_dir: {tmp / 'ckpt'}
""")
    args = ["--config", str(cfg), "--data", str(data), "--set", f"contenders.vit.checkpoint={tiny_vit_dir}",
            "--set", f"data.cache_dir={tmp / 'cache'}"]
    _train_all(args)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return {"uri": uri, "client": MlflowClient(uri), "tmp": tmp, "args": args}


def _train_all(args: list[str]) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "run.py", "--pipeline", "train_all", *args], cwd=ROOT,
                            env=os.environ.copy(), capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    return result


def _versions(client):
    versions = client.search_model_versions("name='fer-test'")
    return {v.tags["contender"]: v for v in versions if v.tags["family"] != "ensemble"}


def test_every_contender_is_registered_with_tags_and_per_class_metrics(trained):
    client = trained["client"]
    versions = _versions(client)
    assert set(versions) == {"cnn", "resnet", "vit"}
    assert versions["resnet"].tags["family"] == "cnn" and "architecture" not in versions["resnet"].tags
    for arch, v in versions.items():
        assert len(v.tags["dataset_sha256"]) == 64 and v.tags["zenml_run_id"]
        run = client.get_run(v.run_id)
        assert v.tags["test_accuracy"] == f"{run.data.metrics['test_accuracy']:.4f}"  # the tag is the evaluation's
        assert v.tags["test_macro_f1"] == f"{run.data.metrics['test_macro_f1']:.4f}"
        assert "| disgust |" in v.description
        assert v.tags["kept_weights"] == "raw" and v.tags["total_epochs"] == "1" and len(v.tags["network"]) == 12
        assert "contest" not in v.tags and "continued_from" not in v.tags  # no rungs, a fresh start
        assert run.info.status == "FINISHED" and run.info.run_name == f"train-{arch}"
        assert run.data.tags["fer.phase"] == "registered"
        training, evaluate = _nested(client, v.run_id, ["training", "evaluate"])  # real times, never written by hand
        trained_s = (training.info.end_time - training.info.start_time) / 1000  # its duration: the training's
        assert run.data.metrics["training_minutes"] * 60 <= trained_s <= run.data.metrics["training_minutes"] * 60 + 10
        # one figure per quantity: the model logged with the run carries the run's training minutes, once
        logged = [m.value for m in client.get_logged_model(_model_id(v)).metrics if m.key == "training_minutes"]
        assert logged == [run.data.metrics["training_minutes"]], (arch, logged)
        assert evaluate.data.metrics["test_accuracy"] == run.data.metrics["test_accuracy"]
        assert run.data.tags["zenml_run_name"].startswith("fer_train_all-")
        for key in ("test_accuracy", "test_macro_f1", "test_disgust_f1", "test_happy_recall", "test_PrivateTest_accuracy",
                    "loss/train", "loss/val", "accuracy/val", "training_minutes"):
            assert key in run.data.metrics, (arch, key)
        artifacts = {a.path for a in client.list_artifacts(evaluate.info.run_id, "evaluation")}
        assert {"evaluation/confusion_matrix.png", "evaluation/loss_curves.png", "evaluation/per_class.csv"} <= artifacts
    assert versions["vit"].tags["checkpoint"].endswith("tiny-vit0")


def _model_id(version) -> str:
    """The logged model a registered version came from (a SQLite registry leaves ``model_id`` empty: its source)."""
    return version.model_id or version.source.removeprefix("models:/")


def _children(client, run_id: str) -> list:
    experiment = client.get_run(run_id).info.experiment_id
    return client.search_runs([experiment], f"tags.`mlflow.parentRunId` = '{run_id}'", order_by=["attributes.start_time"])


def _nested(client, run_id: str, names: list[str]) -> list:
    """The runs nested under a contender's run, checked: named ``names`` in order, FINISHED, each ending at or after
    its last metric and at or before its parent's end."""
    parent, children = client.get_run(run_id), _children(client, run_id)
    assert [c.info.run_name for c in children] == names
    for c in children:
        stamps = [m.timestamp for key in c.data.metrics for m in client.get_metric_history(c.info.run_id, key)]
        assert c.info.status == "FINISHED" and max(stamps) <= c.info.end_time <= parent.info.end_time
    return children


def _zenml_model(step: str, output: str):
    from zenml.client import Client

    run = Client().get_pipeline("fer_train_all").last_run
    return run.steps[step].outputs[output][0].load()


def test_registry_pyfunc_predicts_like_the_in_memory_model(trained):
    from fercore.models.inference import predict_proba
    from tests.conftest import synthetic

    images = synthetic(per_class=10, test_per_class=1).images[:12]
    for arch in ("cnn", "resnet", "vit"):
        version = _versions(trained["client"])[arch].version
        pyfunc = mlflow.pyfunc.load_model(f"models:/fer-test/{version}")
        out = pyfunc.predict(images)
        assert list(out.columns[:2]) == ["label", "angry"] and len(out) == len(images)
        model = _zenml_model(f"train_{arch}", contender_output(arch, "model"))
        wrapper = pyfunc.unwrap_python_model()  # the registered views and precision, as the pipeline evaluated it
        assert wrapper.tta == "hflip"
        expected = predict_proba(model, images, tta=wrapper.tta, amp=wrapper.amp)
        got = out[list(CLASS_NAMES)].to_numpy()
        # a one-epoch model's probabilities are near-even: the same sums on another thread can swap a near-tie
        assert np.allclose(got, expected, atol=2e-3 if wrapper.amp else 1e-5), (arch, np.abs(got - expected).max())
        top2 = np.sort(expected, axis=1)[:, -2:]
        clear = top2[:, 1] - top2[:, 0] > 5e-3
        assert (out["label"].to_numpy()[clear] == np.array(CLASS_NAMES)[expected.argmax(1)][clear]).all(), arch
        assert np.allclose(out.iloc[:, 1:].sum(axis=1), 1.0, atol=1e-5)


def test_vit_artifact_loads_with_from_pretrained(trained):
    from fercore.models.vit import FerViTForImageClassification

    version = _versions(trained["client"])["vit"].version
    path = mlflow.artifacts.download_artifacts(f"models:/fer-test/{version}", dst_path=str(trained["tmp"] / "dl"))
    hf = FerViTForImageClassification.from_pretrained(os.path.join(path, "artifacts", "model"))
    assert hf.config.id2label[6] == "surprise"


def test_promotion_sets_aliases_and_registers_the_routed_ensemble(trained):
    client = trained["client"]
    aliases = {k: str(v) for k, v in client.get_registered_model("fer-test").aliases.items()}
    assert {"champion", "challenger", *(f"champion-{e}" for e in CLASS_NAMES)} <= set(aliases)
    ensembles = [v for v in client.search_model_versions("name='fer-test'") if v.tags.get("contender") == "routed"]
    routed_members = {aliases[f"champion-{e}"] for e in CLASS_NAMES}
    # it exists exactly when the emotions' winners differ (which they do depends on the CPU's threads); how a routed
    # ensemble predicts is tests/integration/test_promotion_run.py's, on predictions made to split the emotions
    assert len(ensembles) == (1 if len(routed_members) > 1 else 0), aliases
    assert all(set(e.tags["members"].split(",")) == routed_members for e in ensembles)
    for alias, version in aliases.items():
        assert client.get_model_version("fer-test", version).status == "READY", alias
    run = _zenml_run()
    promotion = run.steps["promote_models"].outputs["promotion"][0].load()
    table = run.steps["promote_models"].outputs["promotion_table"][0].load()
    assert "nan" not in table and "{" not in table and "| champion | v" in table  # aliases as a table
    assert "none beyond FER-2013's own duplicates" in table or "| none |" in table
    assert all(f"({c}) |" in table for c in ("cnn", "resnet", "vit"))  # every contender in the candidates table
    assert "| emotion | winner | runner-up | lead [95 % interval] | significant | decision |" in table
    assert "| significant |" in table and "95 % interval" in table
    # where each contender looks: its maps in ZenML and its MLflow run, the emotion x contender figure in promotion's
    for name in ("cnn", "resnet", "vit"):
        evaluate = run.steps[f"evaluate_{name}"]  # its artifacts named after the contender and split
        assert set(evaluate.outputs) == {f"{name}_test_evaluation", f"{name}_val_evaluation", f"{name}_predictions",
                                         f"{name}_explanation"}
        assert evaluate.outputs[f"{name}_test_evaluation"][0].name == f"{name}_test_evaluation"
        assert evaluate.outputs[f"{name}_test_evaluation"][0].run_metadata["test"]["accuracy"] > 0  # log_metadata's
        explanation = evaluate.outputs[contender_output(name, "explanation")][0]
        maps = explanation.load()
        assert maps.enabled and maps.mean_maps.shape == (7, 48, 48) and maps.contender == name
        assert {Path(v.uri).name for v in explanation.visualizations} == {"mean_maps.png", "gallery.png"}
        (evaluated,) = [r for r in _children(client, _versions(client)[name].run_id) if r.info.run_name == "evaluate"]
        assert {Path(a.path).name for a in client.list_artifacts(evaluated.info.run_id, "explain")} == {
            "mean_maps.png", "gallery.png"}
    figure = run.steps["promote_models"].outputs["contest_maps"][0]
    assert figure.load().png.startswith(b"\x89PNG") and [Path(v.uri).name for v in figure.visualizations] == ["figure.png"]
    names = {Path(a.path).name for a in client.list_artifacts(promotion["promotion_run"], "promotion")}
    assert "contest_maps.png" in names
    drift = run.steps["promote_models"].outputs["drift_summary"][0].load()  # the reports' light view
    assert "### Image drift: train -> test\n\nReference: " in drift and "training images (a random sample of" in drift
    assert "| brightness | " in drift and "### Predicted classes: the champion -> the model compared" in drift
    page = run.steps["promote_models"].outputs["data_drift_report"][0].load()  # the dashboard's: light, no script
    assert len(page) < 100_000 and "<script" not in page and page.count("<svg") == 5
    assert f"runs/{promotion['promotion_run']}" in page and "promotion/data_drift.html" in page  # the whole report
    assert "promotion/data_drift.html" in {a.path for a in client.list_artifacts(promotion["promotion_run"], "promotion")}
    averaged = [v for v in client.search_model_versions("name='fer-test'") if v.tags.get("contender") == "averaged"]
    singles = {str(v.version) for v in client.search_model_versions("name='fer-test'")
               if v.tags.get("family") != "ensemble"}
    # greedy selection from the library (this run's three contenders): two or three of them, by how they add up; one
    # alone (one-epoch models can leave the others nothing to add) registers nothing, that model is a candidate already
    fit = promotion.get("averaging")
    if fit is None:
        assert averaged == [] and "Probability-averaging ensemble" not in table
    else:
        members = averaged[0].tags["members"].split(",")
        assert len(averaged) == 1 and 2 <= len(members) <= 3 and set(members) <= singles
        assert "| member | weight | temperature | ECE before | ECE after |" in table
        assert set(fit["weights"]) == set(fit["ece_after"]) == set(members)
    assert promotion["aliases"] == aliases and "champion" in promotion["reasons"]
    assert (promotion["decided_on"], promotion["validation_split"], promotion["test_split"]) == (
        "validation", "PublicTest", "PrivateTest")  # the literature's protocol, the default
    assert "data_drift" in promotion and "prediction_drift" in promotion
    for version in {v for v in aliases.values()}:
        tags = client.get_model_version("fer-test", version).tags
        assert {"val_macro_f1", "test_macro_f1"} <= set(tags)


# --- the registered champion outside this project -------------------------------------------

# Installed as sitecustomize in a subprocess: every module found inside the checkout (but outside
# its virtual environment) is refused, so the project's packages cannot be imported from it.
_BLOCKER = """
import importlib.abc, os, sys
_ROOT, _PREFIX = os.environ["FER_BLOCKED_ROOT"], sys.prefix


class _RefuseProject(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is None:
                continue
            origin = spec.origin or (list(spec.submodule_search_locations or [""])[0])
            if origin and origin.startswith(_ROOT) and not origin.startswith(_PREFIX):
                raise ImportError(f"{name} would come from the project checkout ({origin})")
            return None
        return None


sys.meta_path.insert(0, _RefuseProject())
"""

_LOAD = """
import json, sys
import numpy as np
try:
    import fercore
    sys.exit("fercore was importable before loading the model")
except ImportError:
    pass
import mlflow
model = mlflow.pyfunc.load_model("models:/fer-test@champion")
images = np.load(sys.argv[1])
out = model.predict(images)
import fercore
print(json.dumps({"labels": list(out["label"]), "fercore": fercore.__file__}))
"""


@pytest.fixture
def outside_env(trained, tmp_path):
    """An environment and folder outside the checkout in which the project cannot be imported."""
    (tmp_path / "hook").mkdir()
    (tmp_path / "hook" / "sitecustomize.py").write_text(_BLOCKER)
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "hook"), "FER_BLOCKED_ROOT": str(ROOT),
           "MLFLOW_TRACKING_URI": trained["uri"]}
    from tests.conftest import synthetic

    images = synthetic(per_class=6, test_per_class=1, seed=5).images[:6]
    np.save(tmp_path / "images.npy", images)
    expected = list(mlflow.pyfunc.load_model("models:/fer-test@champion").predict(images)["label"])
    return env, tmp_path, images, expected


def test_the_champion_loads_and_predicts_where_the_project_is_not_installed(outside_env):
    env, folder, _, expected = outside_env
    result = subprocess.run([sys.executable, "-c", _LOAD, str(folder / "images.npy")], cwd=folder, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["labels"] == expected
    assert not out["fercore"].startswith(str(ROOT)), out["fercore"]  # the model's own copy of the code


def test_mlflow_models_serve_answers_a_json_request(outside_env):
    env, folder, images, expected = outside_env
    port = _free_port()
    bin_dir = str(Path(sys.executable).parent)  # as in an activated environment: mlflow starts uvicorn from PATH
    env = {**env, "PATH": f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"}
    server = subprocess.Popen([str(Path(bin_dir) / "mlflow"), "models", "serve", "-m", "models:/fer-test@champion",
                               "--env-manager", "local", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
                              cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        _wait_for(f"http://127.0.0.1:{port}/ping", server, timeout_s=180)
        body = json.dumps({"inputs": images.tolist()}).encode()
        request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=body,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as response:
            answer = json.loads(response.read())
        rows = answer["predictions"]
        assert [row["label"] for row in rows] == expected
        assert all(abs(sum(row[c] for c in CLASS_NAMES) - 1) < 1e-5 for row in rows)
        floats = json.dumps({"inputs": (images / 255.0).tolist()}).encode()  # pixels scaled to [0, 1]
        request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=floats,
                                         headers={"Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=60)
        assert refused.value.code == 400
        assert "got float64 pixel values" in json.loads(refused.value.read())["message"]
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for(url: str, server: subprocess.Popen, timeout_s: float) -> None:
    import time

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"mlflow models serve exited: {server.stdout.read()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(1)
    raise AssertionError(f"{url} did not answer within {timeout_s} s")


# --- monitoring new images -------------------------------------------------------------------


def test_monitor_reports_drift_of_darkened_faces_and_scores_them_per_class(trained, tmp_path):
    from PIL import Image

    from tests.conftest import synthetic

    faces = synthetic(per_class=30, test_per_class=1, seed=3).split("train")
    for i, (img, label) in enumerate(zip(faces.images, faces.labels)):
        folder = tmp_path / "new" / CLASS_NAMES[label]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray((img * 0.3).astype(np.uint8)).save(folder / f"{i}.png")
    result = subprocess.run([sys.executable, "run.py", "--pipeline", "monitor", "--config", trained["args"][1],
                             "--data", str(tmp_path / "new")], cwd=ROOT, env=os.environ.copy(), capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    from zenml.client import Client

    run = Client().get_pipeline("fer_monitor").last_run
    summary = run.steps["monitor_images"].outputs["monitoring"][0].load()
    assert summary["drifted"] and summary["images"] == len(faces.images) and "macro_f1" in summary
    assert "champion" in summary["model"]
    report = run.steps["monitor_images"].outputs["data_drift_report"][0].load()
    assert "<html" in report.lower() and "<script" not in report and "monitor/data_drift.html" in report


# --- ZenML caching (last: it adds runs) -------------------------------------------------------


def _step_status(run) -> dict[str, str]:
    return {name: step.status.value for name, step in run.steps.items()}


def test_a_rerun_hits_the_cache_and_a_changed_model_config_reruns_only_its_steps(trained):
    client = trained["client"]
    versions_before = len(client.search_model_versions("name='fer-test'"))
    result = _train_all(trained["args"])
    status = _step_status(_zenml_run())
    champion = client.get_model_version_by_alias("fer-test", "champion").version
    last = result.stdout.rstrip().splitlines()  # the console ends with the result and where to look
    python = Path(sys.executable)  # as typed from the project folder: works in a fresh shell, unlike a bare `python`
    typed = python.relative_to(ROOT) if python.is_relative_to(ROOT) else python
    assert last[-1] == f"  predict  {typed} run.py predict PHOTO_OR_FOLDER   (models:/fer-test@champion = v{champion})"
    assert last[-2] == f"  ZenML    {typed.parent / 'zenml'} login --local, then the run {_zenml_run().name}"
    assert "Promotion of fer-test: decided on validation (PublicTest), test (PrivateTest) reported" in last
    assert any(line.startswith("  surprise ") for line in last) and "Aliases moved: 0 (every holder kept its alias)" in last
    metadata = _zenml_run().run_metadata  # the run's page in ZenML
    assert metadata["champion"].startswith(f"v{champion} (") and metadata["aliases_moved"] == 0
    assert set(metadata["accuracy"]) >= {f"v{v.version} ({v.tags['contender']})" for v in _versions(client).values()}
    cached = {"ingest_data", "split_data", "rebalance_data", "train_cnn", "evaluate_cnn", "train_vit", "evaluate_vit",
              "train_resnet", "evaluate_resnet"}
    assert {s for s in cached if status[s] == "cached"} == cached, status
    assert status["fingerprint_data"] == status["promote_models"] == "completed"
    assert len(client.search_model_versions("name='fer-test'")) == versions_before  # nothing registered twice
    table = _zenml_run().steps["promote_models"].outputs["promotion_table"][0].load()
    assert "| True |" not in table  # the cached registrations are an earlier run's, not new ones

    _train_all([*trained["args"], "--set", "contenders.cnn.learning_rate=0.004"])
    status = _step_status(_zenml_run())
    assert status["train_cnn"] == status["evaluate_cnn"] == "completed", status
    assert status["train_vit"] == status["evaluate_vit"] == status["ingest_data"] == "cached", status
    # (--no-cache running every step: tests/e2e/test_ingest_pipeline.py)



def _zenml_run():
    from zenml.client import Client

    return Client().get_pipeline("fer_train_all").last_run


# --- the contest's rungs and continuing across runs (last: it adds versions) --------------------


@pytest.fixture(scope="module")
def rungs_run(trained):
    """A second run in rungs, each contender continuing its latest version, and the spare seed: every contender has
    a budget in minutes, the spare trains the leader's one epoch. Returns the latest versions before it, its
    console and its ZenML run."""
    before = {}
    for v in trained["client"].search_model_versions("name='fer-test'"):
        if v.tags["family"] != "ensemble" and int(v.version) > int(before.get(v.tags["contender"], _NONE).version):
            before[v.tags["contender"]] = v
    spare = [x for n in ("cnn", "vit", "resnet") for x in ("--set", f"contenders.{n}.max_train_minutes=1")]
    result = _train_all([*trained["args"], "--set", "contest.rungs=[0.5, 1.0]", "--set", "training.continue_from=latest",
                         "--set", "explain.enabled=false", *spare, "--set", "contest.spare_seed.of=[cnn, resnet]",
                         "--set", "contest.spare_seed.min_minutes=0.05"])
    return {"before": before, "stdout": result.stdout, "run": _zenml_run()}


def test_rungs_judge_between_steps_and_each_contender_continues_from_its_latest_version(trained, rungs_run):
    client, before, run = trained["client"], rungs_run["before"], rungs_run["run"]
    assert not run.steps["evaluate_cnn"].outputs["cnn_explanation"][0].load().enabled  # no maps drawn, nothing failed
    assert run.steps["promote_models"].outputs["contest_maps"][0].load().png == b""
    names = ("cnn", "vit", "resnet")
    assert {"find_warm_starts", "judge_rung1", *(f"train_{n}" for n in names), *(f"train_{n}_rung2" for n in names)} \
        <= set(run.steps)
    contest = run.steps["judge_rung1"].outputs["contest"][0].load()
    assert contest["rung"] == 1 and set(contest["contenders"]) == set(names)
    after = {v.tags["contender"]: v for v in client.search_model_versions("name='fer-test'")
             if v.tags["family"] != "ensemble" and int(v.version) > max(int(b.version) for b in before.values())
             and "spare_seed" not in v.tags}
    assert set(after) == set(names)
    for name, version in after.items():
        tags = version.tags
        assert tags["continued_from"] == str(before[name].version), name
        assert int(tags["total_epochs"]) > int(before[name].tags["total_epochs"]), name  # its epochs, and this run's
        assert float(tags["total_training_minutes"]) >= float(before[name].tags["total_training_minutes"]), name
        stopped = not contest["contenders"][name]["active"]
        assert tags["contest"].startswith("stopped after rung 1 of 2" if stopped else "trained all 2 rungs"), tags
        training = run.steps[f"train_{name}_rung2"].outputs[f"{name}_training"][0].load()
        first = run.steps[f"train_{name}"].outputs[f"{name}_training"][0].load()
        if stopped:  # passed through: rung 1's record, with the contest's word
            assert training["history"] == first["history"] and len(training["rungs"]) == 1
        else:
            assert len(training["history"]) == len(first["history"]) + training["rungs"][1]["epochs"]
        assert tags["kept_weights"] in ("raw", "start")
        assert run.steps[f"train_{name}"].outputs[f"{name}_mlflow_run"][0].load().run_id == version.run_id
        mlflow_run = client.get_run(version.run_id)  # both rungs nested under one run, each with its real times
        rungs = _nested(client, version.run_id, ["rung-1"] + ([] if stopped else ["rung-2"]) + ["evaluate"])[:-1]
        trained_s = sum(r.info.end_time - r.info.start_time for r in rungs) / 1000  # its rungs, not the others'
        minutes = mlflow_run.data.metrics["training_minutes"] * 60
        assert minutes <= trained_s <= minutes + 10 * len(rungs), name
        logged = [m.value for m in client.get_logged_model(_model_id(version)).metrics if m.key == "training_minutes"]
        assert logged == [mlflow_run.data.metrics["training_minutes"]], (name, logged)  # not rung 1's figure too


def test_the_spare_seed_trains_the_leader_again_from_a_new_seed_and_joins_the_promotion(trained, rungs_run):
    """The rungs run, with ``contest.spare_seed``: after the last rung, the leader of cnn and resnet on
    validation trains once more from a seed none of its versions used, in its own run, registered as its version."""
    client, run = trained["client"], rungs_run["run"]
    assert {"train_spare_seed", "evaluate_spare_seed", "register_spare_seed"} <= set(run.steps)
    training = run.steps["train_spare_seed"].outputs["spare_seed_training"][0].load()
    registered = run.steps["register_spare_seed"].outputs["spare_seed_registered_model"][0].load()
    version = client.get_model_version("fer-test", registered["version"])
    leader, tags = version.tags["contender"], version.tags
    assert leader in ("cnn", "resnet") and training["spare_seed"] == tags["spare_seed"]
    seeds = [int(v.tags["seed"]) for v in client.search_model_versions("name='fer-test'")
             if v.tags.get("contender") == leader and v.version != version.version]
    assert tags["seed"] == str(max(seeds) + 1) == str(training["seed"])
    assert tags["spare_seed"].startswith(f"spare seed {tags['seed']} of {leader}, trained for the ")
    assert f"Spare seed: {tags['spare_seed']}" in rungs_run["stdout"]  # on the console, before the promotion
    assert "leads on validation macro_f1" in tags["spare_seed"] and not tags.get("continued_from")
    assert client.get_run(version.run_id).info.run_name == f"train-{leader}-seed{tags['seed']}"
    assert len(training["history"]) == 1 and training["wall_s"] < 60  # its leader's one epoch, not the minutes
    summary = run.steps["promote_models"].outputs["promotion"][0].load()
    assert f"v{registered['version']} ({leader})" in [c["label"] for c in summary["candidates"]], summary["candidates"]


def test_a_version_whose_files_are_gone_starts_fresh_and_says_so(trained, tmp_path):
    from fercore.models import build_cnn
    from fercore.training.warm_start import load_warm_start

    model = build_cnn("vgg7", width=8)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    entry = {"version": "999", "reason": "continuing from v999"}
    assert load_warm_start(model, "fer-test", entry, trained["uri"], cache_dir=tmp_path) is None
    assert entry["reason"].startswith("v999 cannot be loaded") and entry["reason"].endswith("starting fresh")
    assert all((v == start[k]).all() for k, v in model.state_dict().items())


def test_gc_keeps_what_the_next_run_and_the_aliases_need(trained):
    """Last: it deletes. Two ingest runs (the second without the cache: it needs nothing of the first), and a
    cached rerun of train_all: the newest run, which reuses the first run's steps."""
    from zenml.client import Client

    client = trained["client"]
    ingest = [sys.executable, "run.py", "--pipeline", "ingest", *trained["args"]]
    for extra in ([], ["--no-cache"]):
        done = subprocess.run([*ingest, *extra], cwd=ROOT, env=os.environ.copy(), capture_output=True, text=True,
                              timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
    ingest_runs = [r.id for r in Client().list_pipeline_runs(pipeline=Client().get_pipeline("fer_ingest").id).items]
    assert len(ingest_runs) == 2
    _train_all(trained["args"])
    gc = [sys.executable, "run.py", "gc", "--config", trained["args"][1], "--set", "retention.keep_versions=1",
          "--set", "retention.keep_runs=1"]
    dry = subprocess.run([*gc, "--dry-run"], cwd=ROOT, env=os.environ.copy(), capture_output=True, text=True,
                         timeout=600)
    assert dry.returncode == 0, dry.stderr[-3000:]
    assert "MLflow versions would be deleted (" in dry.stdout and "bytes to free: " in dry.stdout, dry.stdout
    assert "ZenML pipeline runs would be deleted (" in dry.stdout and "ZenML pipeline runs would be deleted (0)" \
        not in dry.stdout, dry.stdout
    assert {r.id for r in Client().list_pipeline_runs(size=100).items} >= set(ingest_runs)  # a dry run deletes nothing
    champion = client.get_model_version_by_alias("fer-test", "champion").version
    done = subprocess.run(gc, cwd=ROOT, env=os.environ.copy(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "bytes freed: " in done.stdout and f"v{champion} (holds @champion" in done.stdout, done.stdout
    left = [r.id for r in Client().list_pipeline_runs(pipeline=Client().get_pipeline("fer_ingest").id).items]
    assert left == [ingest_runs[0]]  # the newest (listed first) stays
    versions = {v.version for v in client.search_model_versions("name='fer-test'")}
    aliases = client.get_registered_model("fer-test").aliases
    assert set(aliases.values()) <= versions  # every alias still points at a version
    _train_all(trained["args"])  # the steps of the runs gc kept are still the cache
    status = _step_status(_zenml_run())
    assert status["train_cnn"] == status["evaluate_cnn"] == status["ingest_data"] == "cached", status
    from fercore.tracking.loading import load_predictor

    predict, _ = load_predictor("models:/fer-test@champion", trained["uri"], trained["tmp"] / "after-gc")
    assert predict(np.zeros((2, 48, 48), np.uint8)).shape == (2, len(CLASS_NAMES))
    from PIL import Image

    faces = trained["tmp"] / "faces-after-gc"
    faces.mkdir()
    for i in range(20):
        Image.fromarray(np.full((48, 48), 10 * i, np.uint8)).save(faces / f"{i}.png")
    monitored = subprocess.run([sys.executable, "run.py", "--pipeline", "monitor", "--config", trained["args"][1],
                                "--data", str(faces)], cwd=ROOT, env=os.environ.copy(), capture_output=True, text=True,
                               timeout=600)
    assert monitored.returncode == 0, (monitored.stdout + monitored.stderr)[-3000:]  # its training data is still there


class _NONE:
    version = "0"
