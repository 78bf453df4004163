"""Checks of the active stack, on stand-ins for ZenML's client: a remote stack (non-local artifact store) must not
log to a local MLflow file, and needs a ZenML server."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from fercore.config import Config
from fercore.errors import ConfigError
from pipelines import stack_checks


def _client(artifact_flavor: str, tracker=None, orchestrator: str = "local", remote_server: bool = False,
            secrets: tuple[str, ...] = ()):
    """What the checks read of ZenML's client: the active stack, whether its store is local, the secrets."""
    stack = SimpleNamespace(name="kf", artifact_store=SimpleNamespace(flavor=artifact_flavor), experiment_tracker=tracker,
                            orchestrator=SimpleNamespace(flavor=orchestrator), requires_remote_server=remote_server)

    def get_secret(name, hydrate=False):
        if name not in secrets:
            raise KeyError(name)

    return SimpleNamespace(active_stack=stack, zen_store=SimpleNamespace(is_local_store=lambda: True),
                           get_secret=get_secret)


def _config(uri: str | None) -> Config:
    config = Config()
    config.registry.tracking_uri = uri
    return config


def test_the_local_stack_may_use_a_local_mlflow_file():
    stack_checks.check_remote_stack(_config("sqlite:////tmp/mlflow.db"), _client("local"))


@pytest.mark.parametrize("uri", ["sqlite:////home/me/mlflow.db", "file:///tmp/mlruns", "/tmp/mlruns", None])
def test_a_remote_stack_with_a_local_mlflow_store_fails_saying_what_to_add(uri):
    with pytest.raises(ConfigError, match=r"stack 'kf' keeps artifacts in a s3 store.*no experiment tracker.*"
                                          r"zenml experiment-tracker register"):
        stack_checks.check_remote_stack(_config(uri), _client("s3"))


def test_a_remote_stack_with_a_tracking_server_passes():
    stack_checks.check_remote_stack(_config("https://mlflow.example.com"), _client("gcp", SimpleNamespace(name="mlflow")))


def test_a_stack_running_steps_elsewhere_needs_a_zenml_server():
    client = _client("s3", orchestrator="kubeflow", remote_server=True)
    with pytest.raises(ConfigError, match=r"stack 'kf' runs steps on other machines.*zenml login"):
        stack_checks.check_remote_stack(_config("https://mlflow.example.com"), client)
    assert not stack_checks.runs_here(client) and stack_checks.runs_here(_client("s3", orchestrator="local_docker"))


def test_a_container_config_on_a_stack_that_runs_steps_here_is_refused():
    config = Config.model_validate({"docker": {}})
    with pytest.raises(ConfigError, match=r"configs/kubeflow.yaml is for a stack that runs steps in containers.*'kf'"):
        stack_checks.check_stack_fits(config, "configs/kubeflow.yaml", _client("local"))
    stack_checks.check_stack_fits(config, "configs/kubeflow.yaml", _client("s3", orchestrator="kubeflow"))
    stack_checks.check_stack_fits(Config(), "configs/cpu.yaml", _client("local"))


def test_missing_secrets_are_named_together():
    config = Config.model_validate({"docker": {"secrets": ["kaggle", "hub-token", "other"]}})
    with pytest.raises(ConfigError, match="ZenML secrets that do not exist: hub-token, other"):
        stack_checks.check_secrets(config, _client("s3", secrets=("kaggle",)))
    stack_checks.check_secrets(config, _client("s3", secrets=("kaggle", "hub-token", "other")))
