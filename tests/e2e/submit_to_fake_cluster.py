"""Submits ``run.py`` to a Kubeflow stack registered in a fresh ZenML store, with the Kubeflow Pipelines
API faked: ZenML compiles the pipeline to its KFP v2 spec as for a real cluster, and the fake client keeps
the spec instead of uploading it. With FAKE_CLUSTER_ORCHESTRATOR=kubernetes, a Kubernetes stack: instead
of starting the orchestrator pod, the step pods it would start are rendered to pods.json. Run by
tests/e2e/test_kubeflow_compile.py in a subprocess (its own ZenML store and active stack, so nothing leaks into the
other tests' stores).

Usage: python tests/e2e/submit_to_fake_cluster.py OUT_DIR RUN_PY_ARGS...
Writes OUT_DIR/pipeline.yaml (the compiled spec), submitted.json (the upload call) and snapshot.json (the
training step's parameters and the image settings, as stored for the pods).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


KUBECONFIG = """apiVersion: v1
kind: Config
clusters: [{name: fake, cluster: {server: "https://k8s.example.com"}}]
users: [{name: fake, user: {token: not-a-token}}]
contexts: [{name: fake, context: {cluster: fake, user: fake}}]
current-context: fake
"""
ORCHESTRATORS = {
    "kubeflow": ("kubeflow", {"kubeflow_hostname": "https://kubeflow.example.com/pipeline", "synchronous": False}),
    "kubernetes": ("kubernetes", {"kubernetes_context": "fake", "kubernetes_namespace": "zenml"}),
}


def register_stack(out: Path, orchestrator: str) -> str:
    """A Kubeflow (or Kubernetes) stack: fake-remote artifact store, remote registry, local image builder,
    MLflow server."""
    from zenml.client import Client
    from zenml.enums import StackComponentType as T

    client = Client()
    client.create_flavor(source="tests.e2e.fake_remote_store.FakeRemoteArtifactStoreFlavor",
                         component_type=T.ARTIFACT_STORE)
    components = {
        T.ORCHESTRATOR: (orchestrator, *ORCHESTRATORS[orchestrator]),
        T.ARTIFACT_STORE: ("bucket", "fake_remote", {"path": str(out / "bucket")}),
        T.CONTAINER_REGISTRY: ("registry", "default", {"uri": "registry.example.com/fer"}),
        T.IMAGE_BUILDER: ("builder", "local", {}),
        T.EXPERIMENT_TRACKER: ("mlflow", "mlflow", {"tracking_uri": "https://mlflow.example.com",
                                                    "tracking_username": "fer", "tracking_password": "secret"}),
    }
    for kind, (name, flavor, config) in components.items():
        client.create_stack_component(name=name, flavor=flavor, component_type=kind, configuration=config)
    client.create_secret("kaggle", {"KAGGLE_USERNAME": "fer", "KAGGLE_KEY": "not-a-key"})
    stack = client.create_stack(name="kubeflow-gpu", components={k: [v[0]] for k, v in components.items()})
    return str(stack.id)


class FakeKfpClient:
    """Keeps the compiled spec instead of uploading it to Kubeflow Pipelines."""

    def __init__(self, out: Path):
        self.out = out

    def create_run_from_pipeline_package(self, pipeline_file, arguments=None, run_name=None, **kwargs):
        shutil.copy(pipeline_file, self.out / "pipeline.yaml")
        (self.out / "submitted.json").write_text(json.dumps({"run_name": run_name, "kwargs": kwargs}))
        return SimpleNamespace(run_id="fake-run-id")

    def get_experiment(self, name, namespace=None):
        raise ValueError(f"no experiment {name}")

    def create_experiment(self, name, namespace=None):
        return SimpleNamespace(experiment_id=f"experiment-{name}")

    def create_recurring_run(self, experiment_id, job_name, pipeline_package_path=None, **kwargs):
        shutil.copy(pipeline_package_path, self.out / "pipeline.yaml")
        (self.out / "submitted.json").write_text(json.dumps(
            {"recurring": True, "experiment_id": experiment_id, "job_name": job_name, "kwargs": kwargs}, default=str))
        return SimpleNamespace(recurring_run_id="fake-recurring-run-id")


def render_step_pods(self, snapshot, stack, base_environment, step_environments, placeholder_run=None):
    """Instead of starting the orchestrator pod: the step pods it would start, built as its entrypoint
    builds them (the step's Kubernetes settings, ZenML's default requests, ``build_pod_manifest``)."""
    from kubernetes import client as k8s_client
    from zenml.entrypoints.step_entrypoint_configuration import StepEntrypointConfiguration
    from zenml.integrations.kubernetes import kube_utils
    from zenml.integrations.kubernetes.manifest_utils import build_pod_manifest

    pods = {}
    for name, step in snapshot.step_configurations.items():
        settings = self.get_settings(step)
        pod = build_pod_manifest(
            pod_name=None, image_name=self.get_image(snapshot=snapshot, step_name=name),
            command=StepEntrypointConfiguration.get_entrypoint_command(),
            args=StepEntrypointConfiguration.get_entrypoint_arguments(step_name=name, snapshot_id=snapshot.id),
            privileged=settings.privileged, env=step_environments[name],
            pod_settings=kube_utils.apply_default_resource_requests(memory="400Mi", pod_settings=settings.pod_settings))
        pods[name] = {"pod": k8s_client.ApiClient().sanitize_for_serialization(pod),
                      "upstream": sorted(step.spec.upstream_steps)}
    out = Path(os.environ["FAKE_CLUSTER_OUT"])
    (out / "pods.json").write_text(json.dumps(pods, indent=1))
    (out / "submitted.json").write_text(json.dumps({"schedule": snapshot.schedule.cron_expression
                                                    if snapshot.schedule else None}))


def main() -> int:
    out, args = Path(sys.argv[1]).resolve(), sys.argv[2:]
    out.mkdir(parents=True, exist_ok=True)
    orchestrator = os.environ.get("FAKE_CLUSTER_ORCHESTRATOR", "kubeflow")
    (out / "kubeconfig").write_text(KUBECONFIG)
    os.environ.update(KUBECONFIG=str(out / "kubeconfig"), FAKE_CLUSTER_OUT=str(out))
    os.environ["ZENML_ACTIVE_STACK_ID"] = register_stack(out, orchestrator)

    from zenml.integrations.kubeflow.orchestrators.kubeflow_orchestrator import KubeflowOrchestrator
    from zenml.integrations.kubernetes.orchestrators.kubernetes_orchestrator import KubernetesOrchestrator
    from zenml.stack import Stack

    import fercore.tracking.store

    KubeflowOrchestrator._get_kfp_client = lambda self, settings: FakeKfpClient(out)
    KubernetesOrchestrator.submit_pipeline = render_step_pods
    if not os.environ.get("FAKE_CLUSTER_KEEP_SERVER_CHECK"):
        # a cluster's pods would need a ZenML server; this run only compiles, so the local store is let through
        Stack.requires_remote_server = property(lambda self: False)
    fercore.tracking.store.check_tracking_store = lambda uri, experiment: None  # the MLflow server is not reachable here
    import pipelines.schedule
    import run

    pipelines.schedule.schedule_pipeline.__defaults__ = (out / "schedules",)  # not the project's schedules/
    code = run.main(args)
    if (out / "pipeline.yaml").exists():
        dump_snapshot(out)  # Kubeflow
    return code


def dump_snapshot(out: Path) -> None:
    """What the pods will read: the training step's parameters and the image settings, from ZenML's store."""
    import yaml
    from zenml.client import Client

    spec = yaml.safe_load((out / "pipeline.yaml").read_text())
    args = next(iter(spec["deploymentSpec"]["executors"].values()))["container"]["args"]
    snapshot = Client().get_snapshot(args[args.index("--snapshot_id") + 1])
    step = snapshot.step_configurations["train_vgg7"].config
    docker = snapshot.pipeline_configuration.docker_settings
    (out / "snapshot.json").write_text(json.dumps({
        "train_cnn_parameters": step.parameters, "requirements": docker.requirements,
        "parent_image": docker.parent_image, "skip_build": docker.skip_build,
        "secrets": [str(s) for s in snapshot.pipeline_configuration.secrets or []],
    }, default=str))


if __name__ == "__main__":
    sys.exit(main())
