"""Registering a trained contender: its model as the project's pyfunc, tags, per-class table, the record of the
images it was trained on (which promotion reads to tell how much of a later validation split a holder has seen),
and for later runs' ensemble libraries its val/test probabilities and its predict time for one face
(:mod:`fercore.promotion.records`)."""

from __future__ import annotations

import io
import logging
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from fercore.data.dataset import FerDataset
from fercore.data.duplicates import image_hashes, split_digest
from fercore.data.incoming import incoming_tag
from fercore.models import network_digest, save_model
from fercore.models.inference import load_for_inference
from fercore.promotion.model_cards import model_card
from fercore.promotion.records import PREDICT_MS, PREDICTIONS, TRAIN_HASHES, measure_predict_ms, predictions_record
from fercore.promotion.trained import TrainedModel
from fercore.serving.pyfunc import FerEmotionModel
from fercore.tracking import registry
from fercore.tracking.runs import log_files, log_metrics, resumed, run_status, set_phase
from fercore.tracking.store import RunInfo, busy_store_is_named, connect

logger = logging.getLogger(__name__)


def register(trained: TrainedModel, dataset: FerDataset, model_name: str, info: RunInfo) -> dict[str, Any]:
    """Registers ``trained`` as a new version of ``model_name``, unless its MLflow run has one already
    (a rerun is idempotent).

    Returns:
        ``name``, ``version``, ``model_uri``, ``run_id``, ``family``, ``contender`` and headline metrics.
    """
    connect(info.tracking_uri, info.experiment_name)
    metrics, run_id = trained.headline(), trained.run.run_id
    with busy_store_is_named(info.tracking_uri, f"{trained.tags.get('contender', trained.family)} was not registered"):
        version = registered_version(info.tracking_uri, model_name, run_id)
        if version is not None:
            logger.info("Model of MLflow run %s is registered already as version %s", run_id, version)
        else:
            version = _register(info.tracking_uri, trained, dataset, model_name, info.zenml_run_id,
                                {k: f"{x:.4f}" for k, x in metrics.items()})
    return {"name": model_name, "version": version, "model_uri": f"models:/{model_name}/{version}",
            "run_id": run_id, "family": trained.family, "contender": trained.tags.get("contender", trained.family),
            "contest": trained.tags.get("contest", ""), **metrics}


def registered_version(tracking_uri: str, model_name: str, run_id: str) -> str | None:
    """The version registered from MLflow run ``run_id``, if any (a failed run's: none).

    Raises:
        RegistryError: the run is not in this store (a cached training step of another store).
    """
    return None if run_status(tracking_uri, run_id) == "FAILED" else registry.newest_ready(tracking_uri, model_name,
                                                                                            run_id=run_id)


def _version_tags(trained: TrainedModel, dataset: FerDataset, zenml_run_id: str) -> dict[str, str]:
    tags = {"family": trained.family, "zenml_run_id": zenml_run_id,
            "dataset_sha256": str(dataset.metadata.get("sha256")),
            "val_images": split_digest(dataset), "network": network_digest(trained.model), **trained.tags}
    if dataset.metadata.get("incoming"):
        tags["incoming_batches"] = incoming_tag(dataset.metadata)
    if trained.teacher:
        tags["distill_teacher"] = f"{trained.teacher['name']} v{trained.teacher['version']}"
    return tags


def _register(uri: str, trained: TrainedModel, dataset: FerDataset, model_name: str, zenml_run_id: str,
              metric_tags: dict[str, str]) -> str:
    tags = _version_tags(trained, dataset, zenml_run_id)
    description = model_card(model_name, trained, tags, dataset)
    hashes = io.BytesIO()
    np.save(hashes, image_hashes(dataset.split("train").images))
    records = {Path(TRAIN_HASHES).name: hashes.getvalue()}
    if trained.predictions is not None:
        records[Path(PREDICTIONS).name] = predictions_record(trained.predictions, dataset)
    model_config = {"tta": trained.tta, "precision": trained.precision}
    # the model is logged against the contender's run, which ends here: its duration is the contender's whole job
    with resumed(uri, trained.run, finish=True) as run_id, tempfile.TemporaryDirectory() as tmp:
        log_files(uri, run_id, records, str(Path(TRAIN_HASHES).parent))
        if trained.metrics:  # before the model is logged: the logged model carries the run's metrics as they stand
            log_metrics(uri, run_id, trained.metrics)
        model_dir = save_model(trained.model.cpu(), Path(tmp) / "model")
        if trained.predictions is not None:  # the model as predict loads it, on one face
            loaded = load_for_inference(model_dir, model_config)
            tags[PREDICT_MS] = str(measure_predict_ms(loaded.predict_proba, dataset.split("test").images[:1]))
        version = registry.log_and_register(uri, run_id, FerEmotionModel(), {"model": str(model_dir)}, model_name,
                                            {**tags, **metric_tags},
                                            description, dataset.split("test").images[:4], model_config=model_config)
        set_phase(uri, run_id, "registered")  # a later rung (another pipeline run) opens a new run
    return version
