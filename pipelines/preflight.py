"""What a run needs, checked before the first step: a stack the config is meant for, the data (source,
incoming batches, new images to monitor), the ViT checkpoints, the MLflow store and, to monitor, the model.

On a stack that runs steps elsewhere the data paths are read in the pods, so they are not looked up
here; a retrain triggered by monitoring, which writes the new faces on this machine, is refused.
"""

from __future__ import annotations

import logging

from fercore.config import Config
from fercore.errors import ConfigError

logger = logging.getLogger("run")


def check_services(config: Config, pipeline: str, config_path: str) -> None:
    """Raises a :class:`fercore.errors.FerError` naming what is missing and how to fix it.

    The resolved MLflow store becomes part of ``config`` (``registry.tracking_uri``), so ZenML's cache keys of
    the steps that log to MLflow change with it: a cached step never points at a run of another store.
    """
    if (pipeline == "train_all" or (pipeline == "monitor" and config.monitor.on_drift == "retrain")) and \
            not config.enabled_contenders():
        raise ConfigError(f"{config_path}: no enabled contender, so nothing would be trained: add one under contenders: "
                          "or set contenders.NAME.enabled: true (configs/cpu.yaml has examples)")
    from pipelines.stack_checks import check_secrets, check_stack_fits, runs_here

    check_stack_fits(config, config_path)
    local = runs_here()
    if pipeline == "monitor":
        _check_new_images(config, local)
    if pipeline != "monitor" or config.monitor.on_drift == "retrain":  # a retrain reads the training data too
        _check_training_data(config, local)
    if not local:
        read_in_pods = [config.monitor.data] if pipeline == "monitor" else [config.data.source, *config.data.incoming]
        for path in read_in_pods:
            if path != "kaggle":
                logger.warning("%s is read by the step pods: it must be a path inside the image or on a volume "
                               "mounted there", path)
    check_secrets(config)
    if pipeline == "ingest":
        return
    if pipeline == "train_all" and local:  # on a cluster the pods load checkpoints: this machine need not reach the hub
        from fercore.models.vit import check_checkpoint

        for contender in config.enabled_contenders().values():
            if contender.family == "vit":
                check_checkpoint(contender.checkpoint)
    _check_registry(config, pipeline)


def _check_new_images(config: Config, local: bool) -> None:
    if not config.monitor.data:
        raise ConfigError("monitor needs new images: --data PATH (a folder or archive of faces or photos)")
    if local:
        from fercore.monitoring.new_images import check_new_images

        check_new_images(config.monitor.data, config.monitor.on_unreadable)
    elif config.monitor.on_drift == "retrain":
        raise ConfigError("monitor.on_drift: retrain writes the new faces to monitor.incoming_dir on this machine, "
                          "where the step pods of this stack cannot read them: use on_drift: report and add the "
                          "batch to data.incoming at a path the pods can read")


def _check_training_data(config: Config, local: bool) -> None:
    if not local:
        return
    from fercore.data.sources import check_source

    check_source(config.data.source, config.data.cache_dir, config.data.kaggle_dataset)
    if config.data.incoming:
        from fercore.data.incoming import check_batches

        check_batches(config.data.incoming)


def resolve_registry(config: Config) -> None:
    """Sets ``registry.tracking_uri`` to the store this run uses (the config's, the environment's, the stack's)."""
    from fercore.tracking.locations import resolve_tracking_uri
    from steps.common import stack_tracking_uri

    config.registry.tracking_uri = resolve_tracking_uri(config.registry.tracking_uri, stack_tracking_uri())


def _check_registry(config: Config, pipeline: str) -> None:
    from fercore.tracking.registry import resolve_version
    from fercore.tracking.store import check_tracking_store
    from pipelines.stack_checks import check_remote_stack

    resolve_registry(config)
    check_remote_stack(config)
    check_tracking_store(config.registry.tracking_uri, config.registry.experiment_name)
    if pipeline == "monitor":
        resolve_version(config.registry.tracking_uri, f"models:/{config.registry.model_name}@{config.monitor.model}")
