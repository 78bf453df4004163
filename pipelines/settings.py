"""ZenML settings from the ``resources`` and ``docker`` config sections: the step image, GPU requests and
pod placement of the training steps, CPU and memory of the others.

Local runs ignore them (the local orchestrator builds no image and schedules no pods); the Kubeflow
and Kubernetes orchestrators read the keys ``orchestrator.kubeflow`` / ``orchestrator.kubernetes``,
and ZenML passes each orchestrator only its own.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import logging
import re
import tomllib
from pathlib import Path
from typing import Any

from zenml.client import Client
from zenml.config import DockerSettings, ResourceSettings

from fercore.config import Config, DockerConfig
from fercore.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
logger = logging.getLogger(__name__)
_PIN = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*==")


def _excluded(requirement: str, patterns: list[str]) -> bool:
    name = re.split(r"[\s\[<>=!~;]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")
    return any(fnmatch.fnmatch(name, pattern) for pattern in patterns)


def image_requirements(docker: DockerConfig, root: Path = ROOT) -> list[str]:
    """The requirements of the step image: ``docker.requirements`` (a pip freeze), or the pyproject's
    ranges when it is null, less the packages the parent image provides (``docker.exclude``)."""
    if docker.requirements is None:
        deps = tomllib.loads((root / "pyproject.toml").read_text())["project"]["dependencies"]
        return [d for d in deps if not _excluded(d, docker.exclude)]
    path = Path(docker.requirements)
    path = path if path.is_absolute() else root / path
    if not path.is_file():
        raise ConfigError(f"docker.requirements: {path} does not exist (a pip freeze such as constraints.txt, "
                          "or null for the pyproject's ranges)")
    pins = [line.strip() for line in path.read_text().splitlines() if _PIN.match(line)]  # not comments
    return [p for p in pins if not _excluded(p, docker.exclude)]


def docker_settings(docker: DockerConfig) -> DockerSettings:
    """One image for every step, from ``docker`` (see :class:`fercore.config.DockerConfig`)."""
    return DockerSettings(
        parent_image=docker.parent_image, skip_build=docker.skip_build, apt_packages=docker.apt_packages,
        requirements=image_requirements(docker), disable_automatic_requirements_detection=True,
    )


def _for_orchestrator(resources: ResourceSettings) -> ResourceSettings:
    """``resources``, less the memory on a Kubeflow orchestrator: ZenML 0.98 hands KFP's ``set_memory_limit``
    a float, which KFP 2 refuses (TypeError at compile time), so the limit is left to the cluster there."""
    if resources.memory and Client().active_stack.orchestrator.flavor == "kubeflow":
        logger.warning("resources memory %s is not set on Kubeflow: ZenML 0.98 passes KFP a number where it "
                       "expects a string; the pods get the namespace's default memory limit", resources.memory)
        return resources.model_copy(update={"memory": None})
    return resources


def _kubernetes_pod(resources: ResourceSettings, node_selectors: dict[str, str],
                    tolerations: list[dict[str, Any]]) -> dict[str, Any] | None:
    """``orchestrator.kubernetes`` settings: the Kubernetes orchestrator sizes step pods from their pod
    settings only (not from ``ResourceSettings``), so the requests and GPU limits are spelled out there."""
    try:
        from zenml.integrations.kubernetes.kube_utils import convert_resource_settings_to_k8s_format
    except ImportError:  # no kubernetes package: no Kubernetes orchestrator either
        return None
    requests, limits, _ = convert_resource_settings_to_k8s_format(resources)
    pod: dict[str, Any] = {"resources": {"requests": requests, "limits": limits}} if requests or limits else {}
    if node_selectors:
        pod["node_selectors"] = node_selectors
    if tolerations:
        pod["tolerations"] = tolerations
    return {"pod_settings": pod} if pod else None


def training_settings(config: Config) -> dict[str, Any]:
    """Settings of the training steps: their GPUs and the node selectors / tolerations that put them on GPU nodes."""
    r = config.resources
    resources = ResourceSettings(gpu_count=r.gpu_count, cpu_count=r.cpu_count, memory=r.memory)
    settings: dict[str, Any] = {"resources": _for_orchestrator(resources)}
    if r.gpu_node_selectors:
        # Kubeflow requests the GPUs only with an 'accelerator' node selector (keep_kubeflow_pod_settings)
        settings["orchestrator.kubeflow"] = {"pod_settings": {"node_selectors": r.gpu_node_selectors}}
    if kubernetes := _kubernetes_pod(resources, r.gpu_node_selectors, r.gpu_tolerations):
        settings["orchestrator.kubernetes"] = kubernetes
    return settings


def pipeline_options(config: Config) -> dict[str, Any]:
    """``pipeline.with_options`` keywords: the image, the environment and secrets, and the resources of the
    steps that do not train (steps' own settings, the training ones', take precedence)."""
    other = config.resources.other_steps
    settings: dict[str, Any] = {}
    if other.cpu_count or other.memory:
        resources = ResourceSettings(cpu_count=other.cpu_count, memory=other.memory)
        settings["resources"] = _for_orchestrator(resources)
        if kubernetes := _kubernetes_pod(resources, {}, []):
            settings["orchestrator.kubernetes"] = kubernetes
    if config.docker is None:
        return {"settings": settings} if settings else {}
    settings["docker"] = docker_settings(config.docker)
    options: dict[str, Any] = {"settings": settings}
    if config.docker.environment:
        options["environment"] = dict(config.docker.environment)
    if config.docker.secrets:
        options["secrets"] = list(config.docker.secrets)
    return options


def keep_kubeflow_pod_settings() -> bool:
    """Works around ZenML 0.98's Kubeflow settings dropping any ``pod_settings`` they are given.

    Their validator rebuilds ``pod_settings`` from the legacy top-level ``node_selectors`` (empty unless
    given, and ZenML's compiler filters that key out of step settings), so the orchestrator never sees the
    accelerator node selector and never requests the GPUs of ``ResourceSettings`` (the compile test shows
    it). This keeps given ``pod_settings`` when no legacy keys are set. A no-op (returns False) when the
    integration is missing or ZenML keeps them already (fixed upstream).
    """
    try:
        from zenml.integrations.kubeflow.flavors.kubeflow_orchestrator_flavor import (
            KubeflowOrchestratorConfig,
            KubeflowOrchestratorSettings,
        )
    except ImportError:
        return False
    name = "_validate_and_migrate_pod_settings"
    if KubeflowOrchestratorSettings(pod_settings={"node_selectors": {"probe": "1"}}).pod_settings.node_selectors:
        return False
    for cls in (KubeflowOrchestratorSettings, KubeflowOrchestratorConfig):
        validators = cls.__pydantic_decorators__.model_validators
        if name not in validators:
            return False

        def migrate(data, info, _original=validators[name].func):
            legacy = isinstance(data, dict) and (data.get("node_selectors") or data.get("node_affinity"))
            given = data.get("pod_settings") if isinstance(data, dict) and not legacy else None
            data = _original(data, info)
            if given:
                data["pod_settings"] = given
            return data

        validators[name] = dataclasses.replace(validators[name], func=migrate)
        cls.model_rebuild(force=True)
    return True
