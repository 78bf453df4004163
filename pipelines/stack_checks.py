"""Checks of the active ZenML stack before any step runs: where the steps run, a ZenML server and a
reachable MLflow store for a remote stack, the secrets the run names.

Each check takes the ZenML client to read (default: the active one), so that it can be tested on a
stand-in without a ZenML store.
"""

from __future__ import annotations

from fercore.config import Config
from fercore.errors import ConfigError
from fercore.tracking.locations import local_store_path

_ADD_TRACKER = ("add an MLflow experiment tracker that points at your MLflow server to the stack "
                "(`zenml experiment-tracker register mlflow --flavor=mlflow --tracking_uri=https://mlflow.example.com "
                "--tracking_username=... --tracking_password=...` then `zenml stack update -e mlflow`), or set "
                "registry.tracking_uri / MLFLOW_TRACKING_URI to that server")


def check_zenml_server(timeout_s: float = 3.0) -> None:
    """The ZenML server this machine is logged in to answers (checked before anything asks it: ZenML's own client
    retries a dead one for over a minute and ends in a traceback).

    Raises:
        ConfigError: naming the server and the two ways out.
    """
    import urllib.error
    import urllib.request

    from zenml.config.global_config import GlobalConfiguration

    store = GlobalConfiguration().store_configuration
    if store.type != "rest":
        return
    try:
        urllib.request.urlopen(f"{store.url.rstrip('/')}/health", timeout=timeout_s).close()
    except urllib.error.HTTPError:
        return  # it answered
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ConfigError(f"the ZenML server this machine is logged in to, {store.url}, does not answer ({reason}). "
                          "Start it (`.venv/bin/zenml login --local` for the local dashboard), or go back to the local "
                          "store (`.venv/bin/zenml logout`)") from None


def _active(client=None):
    if client is not None:
        return client
    from zenml.client import Client

    return Client()


def runs_here(client=None) -> bool:
    """Whether the active stack's orchestrator runs the steps on this machine (local or local Docker)."""
    return _active(client).active_stack.orchestrator.flavor in ("local", "local_docker")


def check_stack_fits(config: Config, config_path: str, client=None) -> None:
    """A config with a ``docker`` section (the step image) is for a stack that runs steps in containers;
    on a stack that runs them in this process it would silently do nothing.

    Raises:
        ConfigError: naming the config, the active stack and its orchestrator, and the fix.
    """
    stack = _active(client).active_stack
    if config.docker is not None and stack.orchestrator.flavor == "local":
        raise ConfigError(f"{config_path} is for a stack that runs steps in containers (its docker: section sets the "
                          f"step image), but the active ZenML stack '{stack.name}' runs them in this process "
                          "(orchestrator: local). Fix: activate your Kubeflow or Kubernetes stack (`zenml stack set "
                          "NAME`; docs/scale-out.md shows how to build one), or run on this machine with "
                          "configs/cpu.yaml (or configs/train_all.yaml with a GPU).")


def check_remote_stack(config: Config, client=None) -> None:
    """A stack that runs steps elsewhere needs a ZenML server; on a stack whose artifact store is not
    local, the MLflow store must be reachable from every step's machine: a SQLite file or a local folder
    is not.

    Raises:
        ConfigError: naming the stack, the store that would be used, and what to add.
    """
    client = _active(client)
    stack = client.active_stack
    if getattr(stack, "requires_remote_server", False) and client.zen_store.is_local_store():
        raise ConfigError(f"stack '{stack.name}' runs steps on other machines (its orchestrator is "
                          f"{stack.orchestrator.flavor}), which cannot reach this machine's local ZenML database. "
                          "Fix: connect to a ZenML server first (`zenml login https://zenml.example.com`), "
                          "register the stack there, then run again.")
    if stack.artifact_store.flavor == "local":
        return
    uri = config.registry.tracking_uri or ""
    if local_store_path(uri) is not None or not uri:
        tracker = stack.experiment_tracker
        found = f"its experiment tracker {tracker.name}" if tracker is not None else "no experiment tracker"
        raise ConfigError(f"stack '{stack.name}' keeps artifacts in a {stack.artifact_store.flavor} store, but MLflow "
                          f"would use {uri or 'nothing'} ({found}): a file on this machine that steps running "
                          f"elsewhere cannot reach. Fix: {_ADD_TRACKER}.")


def check_secrets(config: Config, client=None) -> None:
    """The ZenML secrets named in ``docker.secrets`` exist (ZenML resolves them when it submits the run).

    Raises:
        ConfigError: naming the missing secrets and the command that creates one.
    """
    names = config.docker.secrets if config.docker else []
    missing = []
    for name in names:
        try:
            _active(client).get_secret(name, hydrate=False)
        except KeyError:
            missing.append(name)
    if missing:
        raise ConfigError(f"docker.secrets names ZenML secrets that do not exist: {', '.join(missing)}. Create them "
                          "(e.g. `zenml secret create kaggle --KAGGLE_USERNAME=... --KAGGLE_KEY=...`) or remove "
                          "them from docker.secrets.")
