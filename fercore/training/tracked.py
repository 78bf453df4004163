"""Training a contender in its own MLflow run: its settings as parameters, tags naming the contender
and the pipeline run, metrics per epoch; a resumed job continues its run."""

from __future__ import annotations

from typing import Any

from fercore.models import count_parameters
from fercore.serving.registry import EpochLogger, RunInfo, log_metrics, run_closed_on_error, start_run
from fercore.training import distributed
from fercore.training.trainer import TrainJob, TrainResult


def train_tracked(job: TrainJob, name: str, info: RunInfo, processes: int = 1,
                  extra_params: dict[str, Any] | None = None) -> tuple[TrainResult, str]:
    """Trains contender ``name``'s job (in ``processes`` DDP workers when more than one), logged to an MLflow
    run ``train-<name>`` that stays open until its model is registered; returns the result and the run id."""
    model, config, plan = job.model, job.cfg, job.plan
    family = getattr(model, "fer_spec", {}).get("family", "?")
    params = {**config.model_dump(exclude={"augment"}), **{f"augment_{k}": v for k, v in config.augment.model_dump().items()},
              "parameters": count_parameters(model), "rebalance": plan.method, "train_rows": len(plan.indices),
              "ddp_processes": processes, **(extra_params or {})}
    tags = {"architecture": family, "contender": name, "zenml_run_id": info.zenml_run_id, "zenml_run_name": info.run_name,
            "dataset_sha256": str(job.dataset.metadata.get("sha256", "")), "model_family": family}
    key = job.key()
    run_id = start_run(info.tracking_uri, info.experiment_name, f"train-{name}", params, tags, job_key=key,
                       resume=job.checkpoints is not None and job.checkpoints.exists(key))
    job.on_epoch_end = EpochLogger(run_id, info.tracking_uri)
    with run_closed_on_error(run_id):
        result = distributed.fit(job, processes)
        # the run stays open until the model is evaluated and registered: its duration is not the training time
        log_metrics(run_id, {"training_minutes": result.wall_s / 60}, tracking_uri=info.tracking_uri)
    return result, run_id
