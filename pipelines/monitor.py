"""Pipeline ``monitor``: new images scored by the champion, with drift reports; optionally retrain."""

from __future__ import annotations

import logging
from pathlib import Path

from zenml import pipeline

from fercore.config import Config
from steps.monitor_images import monitor_images

logger = logging.getLogger(__name__)


@pipeline(name="fer_monitor")
def monitor_pipeline(config: Config) -> None:
    """Checks the images at ``monitor.data`` against the champion's training data."""
    monitor_images(config.monitor, config.registry)


def retraining_config(config: Config) -> tuple[Config, Path, bool]:
    """The labelled faces of ``monitor.data`` written as a new incoming batch (or the batch that holds them already),
    the train_all config that learns from it (``monitor.incoming_dir`` added to ``data.incoming``), and whether the
    batch is new."""
    from fercore.monitoring.new_images import read_new_images, write_batch

    folder = Path(config.monitor.incoming_dir).expanduser()
    new = read_new_images(config.monitor.data, config.monitor.on_unreadable)
    batch, is_new = write_batch(new, folder)
    retrain = config.model_copy(deep=True)
    if str(folder) not in retrain.data.incoming:
        retrain.data.incoming = [*retrain.data.incoming, str(folder)]
    if is_new:
        logger.info("Drift detected: retraining with the new batch %s", batch)
    else:
        logger.info("Drift detected: these faces are the batch %s already (no new batch); train_all runs again "
                    "with it, and its cache answers for what it trained on before", batch)
    return retrain, batch, is_new


def after_monitoring(config: Config, summary: dict, trigger) -> bool:
    """Starts ``trigger(config)`` (train_all) when the monitored images drifted and
    ``monitor.on_drift`` is ``retrain``; returns whether it did."""
    if not summary.get("drifted") or config.monitor.on_drift != "retrain":
        return False
    retrain, _, _ = retraining_config(config)
    trigger(retrain)
    return True


def report_and_retrain(run, config: Config, train_all) -> None:
    """Prints the monitoring summary; runs the ``train_all`` pipeline when it drifted and ``monitor.on_drift``
    is ``retrain``."""
    import json

    from pipelines.run_guard import local_run_guard

    summary = run.steps["monitor_images"].outputs["monitoring"][0].load()
    print(json.dumps(summary, indent=2))

    def retrain_now(retrain: Config) -> None:
        with local_run_guard(train_all.name):
            train_all(config=retrain)

    if after_monitoring(config, summary, retrain_now):
        print("drift detected: train_all ran with the new batch (monitor.on_drift: retrain)")
