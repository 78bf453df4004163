"""ZenML settings from the ``resources`` and ``docker`` config sections: the step image, GPU requests and
pod placement of the training steps, CPU and memory of the others.

Local runs ignore them (the local orchestrator builds no image and schedules no pods); the Kubeflow
and Kubernetes orchestrators read the keys ``orchestrator.kubeflow`` / ``orchestrator.kubernetes``,
and ZenML passes each orchestrator only its own.
"""

from __future__ import annotations

import fnmatch
import re
import tomllib
from pathlib import Path
from typing import Any

from zenml.config import DockerSettings, ResourceSettings

from fercore.config import Config, DockerConfig
from fercore.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
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


def training_settings(config: Config) -> dict[str, Any]:
    """Settings of the training steps: their GPUs and the node selectors / tolerations that put them on GPU nodes."""
    r = config.resources
    settings: dict[str, Any] = {"resources": ResourceSettings(gpu_count=r.gpu_count, cpu_count=r.cpu_count,
                                                              memory=r.memory)}
    if r.gpu_node_selectors:
        settings["orchestrator.kubeflow"] = {"pod_settings": {"node_selectors": r.gpu_node_selectors}}
    if r.gpu_node_selectors or r.gpu_tolerations:
        settings["orchestrator.kubernetes"] = {"pod_settings": {"node_selectors": r.gpu_node_selectors,
                                                                "tolerations": r.gpu_tolerations}}
    return settings


def pipeline_options(config: Config) -> dict[str, Any]:
    """``pipeline.with_options`` keywords: the image, the environment and secrets, and the resources of the
    steps that do not train (steps' own settings, the training ones', take precedence)."""
    other = config.resources.other_steps
    settings: dict[str, Any] = {}
    if other.cpu_count or other.memory:
        settings["resources"] = ResourceSettings(cpu_count=other.cpu_count, memory=other.memory)
    if config.docker is None:
        return {"settings": settings} if settings else {}
    settings["docker"] = docker_settings(config.docker)
    options: dict[str, Any] = {"settings": settings}
    if config.docker.environment:
        options["environment"] = dict(config.docker.environment)
    if config.docker.secrets:
        options["secrets"] = list(config.docker.secrets)
    return options
