"""`run.py --pipeline train_all --config configs/kubeflow.yaml` on a Kubeflow stack, compiled by ZenML's
Kubeflow orchestrator to a KFP v2 spec; only the upload to Kubeflow Pipelines is faked. On a Kubernetes
stack, the step pods its orchestrator pod would start, built with ZenML's own manifest code
(tests/e2e/submit_to_fake_cluster.py). Nothing here reaches a cluster."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from fercore.config import load_config
from tests.conftest import ROOT

# step -> the steps it waits for (ZenML's upstream steps, as KFP task names)
DEPENDENCIES = {
    "fingerprint-data": [],
    "ingest-data": ["fingerprint-data"],
    "split-data": ["ingest-data"],
    "rebalance-data": ["split-data"],
    # the contest's first rung: the contenders side by side, then one judgement that every later rung waits for
    **{f"train-{c}": ["rebalance-data", "split-data"] for c in ("vgg7", "resnet", "vit-b16")},
    "judge-rung1": ["split-data", "train-resnet", "train-vgg7", "train-vit-b16"],
    **{f"train-{c}-rung2": ["judge-rung1", "rebalance-data", "split-data", f"train-{c}"] for c in ("vgg7", "resnet", "vit-b16")},
    **{f"evaluate-{c}": ["split-data", f"train-{c}-rung2"] for c in ("vgg7", "resnet", "vit-b16")},
    **{f"register-{c}": [f"evaluate-{c}", "split-data", f"train-{c}-rung2"] for c in ("vgg7", "resnet", "vit-b16")},
    # the fan-in: every contender's registration and predictions
    "promote-models": sorted([*(f"{s}-{c}" for s in ("evaluate", "register") for c in ("vgg7", "resnet", "vit-b16")),
                              "split-data"]),
}


def submit(tmp: Path, *args: str, guard: bool = False, orchestrator: str = "kubeflow") -> subprocess.CompletedProcess:
    """``run.py --pipeline train_all --config configs/kubeflow.yaml ARGS`` on a fresh ZenML store's stack."""
    env = {**os.environ, "ZENML_CONFIG_PATH": str(tmp / "zenml"), "HF_HUB_OFFLINE": "1",
           "FAKE_CLUSTER_ORCHESTRATOR": orchestrator}
    env.pop("MLFLOW_TRACKING_URI")  # the tests' SQLite file: MLflow must come from the stack's tracker
    if guard:
        env["FAKE_CLUSTER_KEEP_SERVER_CHECK"] = "1"
    return subprocess.run([sys.executable, "tests/e2e/submit_to_fake_cluster.py", str(tmp / "out"), "--pipeline",
                           "train_all", "--config", "configs/kubeflow.yaml", *args], check=False, cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("kubeflow")
    result = submit(tmp, "--set", "docker.skip_build=true")
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    spec = yaml.safe_load((tmp / "out" / "pipeline.yaml").read_text())
    return {"spec": spec, "log": result.stdout + result.stderr, "tmp": tmp}


def test_every_step_is_a_task_with_its_dependencies(compiled):
    tasks = compiled["spec"]["root"]["dag"]["tasks"]
    assert {name: sorted(t.get("dependentTasks", [])) for name, t in tasks.items()} == DEPENDENCIES


def test_training_steps_request_the_gpus_and_the_others_only_cpus(compiled):
    config = load_config(ROOT / "configs" / "kubeflow.yaml")
    executors = compiled["spec"]["deploymentSpec"]["executors"]
    for name, executor in executors.items():
        resources = executor["container"]["resources"]
        if name.startswith("exec-train-"):
            assert resources["accelerator"] == {"count": "4", "resourceCount": "4", "type": "nvidia-tesla-a100",
                                                "resourceType": "nvidia-tesla-a100"}, name
            assert resources["cpuLimit"] == config.resources.cpu_count == 16
        else:
            assert "accelerator" not in resources, name
            assert resources["cpuLimit"] == config.resources.other_steps.cpu_count == 4


def test_one_cuda_image_runs_each_step_through_zenml_with_the_environment(compiled):
    parent = load_config(ROOT / "configs" / "kubeflow.yaml").docker.parent_image
    executors = compiled["spec"]["deploymentSpec"]["executors"]
    assert len(executors) == len(DEPENDENCIES)
    for name, executor in executors.items():
        container = executor["container"]
        assert container["image"] == parent and "cuda" in parent
        assert container["command"] == ["python", "-m", "zenml.entrypoints.entrypoint"]
        step = container["args"][container["args"].index("--step_name") + 1]
        assert name == "exec-" + step.replace("_", "-")
        env = {e["name"]: e["value"] for e in container["env"]}
        assert env["HF_HOME"] == "/tmp/hf" and env["FER_CACHE_DIR"] == "/tmp/fer-cache", name
        assert env["ZENML_ACTIVE_STACK_ID"] and env["KFP_RUN_ID"] == "{{$.pipeline_job_name}}"


def test_the_pods_log_to_the_trackers_server_and_checkpoint_in_the_artifact_store(compiled):
    snapshot = json.loads((compiled["tmp"] / "out" / "snapshot.json").read_text())
    params = snapshot["train_cnn_parameters"]
    assert params["registry"]["tracking_uri"] == "https://mlflow.example.com"  # the stack's tracker, resolved
    assert params["ddp_processes"] == "all_gpus" and params["checkpoint_dir"] == "fer-checkpoints"
    assert "Using stack: `kubeflow-gpu`" in compiled["log"] and "Started one-off pipeline run" in compiled["log"]


def test_the_image_pins_constraints_less_what_the_cuda_parent_provides(compiled):
    snapshot = json.loads((compiled["tmp"] / "out" / "snapshot.json").read_text())
    pins = dict(line.split("==") for line in snapshot["requirements"])
    frozen = dict(line.strip().split("==") for line in (ROOT / "constraints.txt").read_text().splitlines()
                  if "==" in line and not line.startswith("#"))
    assert pins["zenml"] == frozen["zenml"] and pins["mlflow"] == frozen["mlflow"] and pins["kfp"] == frozen["kfp"]
    assert not {"torch", "torchvision", "triton"} & set(pins) and not any(p.startswith("nvidia-") for p in pins)
    assert snapshot["skip_build"] is True and snapshot["parent_image"].startswith("pytorch/pytorch:")
    assert len(snapshot["secrets"]) == 1  # the kaggle secret, by id


def test_without_a_zenml_server_the_submission_stops_before_any_upload(tmp_path):
    result = submit(tmp_path, "--set", "docker.skip_build=true", guard=True)
    assert result.returncode == 2, (result.stdout + result.stderr)[-3000:]
    assert "runs steps on other machines" in result.stderr and "zenml login" in result.stderr
    assert not (tmp_path / "out" / "pipeline.yaml").exists()


def test_a_missing_secret_is_named_before_any_upload(tmp_path):
    result = submit(tmp_path, "--set", "docker.skip_build=true", "--set", "docker.secrets=[kaggle, hub-token]")
    assert result.returncode == 2
    assert "ZenML secrets that do not exist: hub-token" in result.stderr
    assert not (tmp_path / "out" / "pipeline.yaml").exists()


def test_a_schedule_becomes_a_kubeflow_recurring_run(tmp_path):
    result = submit(tmp_path, "--set", "docker.skip_build=true", "--schedule", "0 4 * * 2")
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    submitted = json.loads((tmp_path / "out" / "submitted.json").read_text())
    assert submitted["recurring"] and submitted["experiment_id"] == "experiment-fer_train_all"
    assert submitted["kwargs"]["cron_expression"] == "0 4 * * 2"
    tasks = yaml.safe_load((tmp_path / "out" / "pipeline.yaml").read_text())["root"]["dag"]["tasks"]
    assert set(tasks) == set(DEPENDENCIES)
    assert result.stdout.strip().splitlines()[-1] == "train_all-retrain"  # a ZenML schedule, no crontab line
    assert (tmp_path / "out" / "schedules" / "train_all.yaml").is_file()  # the resolved config, kept beside


@pytest.fixture(scope="module")
def k8s_pods(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("kubernetes")
    result = submit(tmp, "--set", "docker.skip_build=true", orchestrator="kubernetes")
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    return json.loads((tmp / "out" / "pods.json").read_text())


def test_kubernetes_step_pods_gpu_nodes_for_training_cpu_pods_for_the_rest(k8s_pods):
    assert {name.replace("_", "-"): pod["upstream"] for name, pod in k8s_pods.items()} == {
        task: [d.replace("-", "_") for d in deps] for task, deps in DEPENDENCIES.items()}
    parent = load_config(ROOT / "configs" / "kubeflow.yaml").docker.parent_image
    for name, entry in k8s_pods.items():
        spec = entry["pod"]["spec"]
        container = spec["containers"][0]
        assert container["image"] == parent
        assert container["args"][container["args"].index("--step_name") + 1] == name
        env = {e["name"]: e["value"] for e in container["env"]}
        assert env["HF_HOME"] == "/tmp/hf" and env["ZENML_ACTIVE_STACK_ID"]
        if name.startswith("train_"):
            # 64GB in MiB (ZenML's conversion); the GPU limit is what the scheduler honours
            assert container["resources"] == {"requests": {"cpu": "16", "memory": "61035Mi", "nvidia.com/gpu": "4"},
                                              "limits": {"nvidia.com/gpu": "4"}}, name
            assert spec["nodeSelector"] == {"accelerator": "nvidia-tesla-a100"}
            assert spec["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
        else:
            assert container["resources"] == {"requests": {"cpu": "4", "memory": "15258Mi"}, "limits": {}}, name
            assert "nodeSelector" not in spec and "tolerations" not in spec
