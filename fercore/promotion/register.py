"""Registering a trained contender: its model as the project's pyfunc, tags, per-class table, and the
record of the images it was trained on (which promotion reads to tell how much of a later validation
split a holder has seen)."""

from __future__ import annotations

import io
import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from fercore.constants import LIMITATIONS
from fercore.data.dataset import FerDataset
from fercore.data.duplicates import image_hashes, split_digest
from fercore.data.incoming import incoming_tag
from fercore.evaluation.metrics import Evaluation
from fercore.models import count_parameters, network_digest, save_model
from fercore.promotion.candidates import TRAIN_HASHES
from fercore.serving.pyfunc import FerEmotionModel
from fercore.tracking import registry
from fercore.tracking.runs import TrackedRun, log_files, resumed, run_status, set_phase, training_end
from fercore.tracking.store import RunInfo, busy_store_is_named, connect

logger = logging.getLogger(__name__)


@dataclass
class TrainedModel:
    """A contender's trained model and what is registered with it.

    Attributes:
        model: the trained network.
        test: its test evaluation (reported in tags and the description).
        validation: its validation evaluation (what promotion decides on).
        run: its training run, closed once the model is registered.
        family: ``cnn`` or ``vit``.
        tta: the test-time views the pyfunc averages over.
        precision: the precision it was evaluated in; the pyfunc predicts in the same.
        tags: more version tags: ``contender`` (its name in the config), the ViT checkpoint.
        teacher: the registration of the model it was distilled from (tagged ``distill_teacher``).
    """

    model: nn.Module
    test: Evaluation
    validation: Evaluation
    run: TrackedRun
    family: str
    tta: str = "hflip"
    precision: str = "auto"
    tags: dict[str, str] = field(default_factory=dict)
    teacher: dict[str, Any] | None = None

    def headline(self) -> dict[str, float]:
        o, v = self.test.overall, self.validation.overall
        return {"val_accuracy": v["accuracy"], "val_macro_f1": v["macro_f1"], "test_accuracy": o["accuracy"],
                "test_macro_f1": o["macro_f1"], **{f"{k}_accuracy": m["accuracy"] for k, m in self.test.subsets.items()}}


def register(trained: TrainedModel, dataset: FerDataset, model_name: str, info: RunInfo) -> dict[str, Any]:
    """Registers ``trained`` as a new version of ``model_name``, unless its MLflow run has one already
    (a rerun is idempotent).

    Returns:
        ``name``, ``version``, ``model_uri``, ``run_id``, ``family``, ``contender`` and headline metrics.
    """
    connect(info.tracking_uri, info.experiment_name)
    metrics, run_id = trained.headline(), trained.run.run_id
    with busy_store_is_named(info.tracking_uri, f"{trained.tags.get('contender', trained.family)} was not registered"):
        version = registered_version(model_name, run_id)
        if version is not None:
            logger.info("Model of MLflow run %s is registered already as version %s", run_id, version)
        else:
            version = _register(trained, dataset, model_name, info.zenml_run_id,
                                {k: f"{x:.4f}" for k, x in metrics.items()})
    return {"name": model_name, "version": version, "model_uri": f"models:/{model_name}/{version}",
            "run_id": run_id, "family": trained.family, "contender": trained.tags.get("contender", trained.family),
            "contest": trained.tags.get("contest", ""), **metrics}


def registered_version(model_name: str, run_id: str) -> str | None:
    """The version registered from MLflow run ``run_id``, if any (a failed run's: none).

    Raises:
        RegistryError: the run is not in this store (a cached training step of another store).
    """
    return None if run_status(run_id) == "FAILED" else registry.newest_ready(model_name, run_id=run_id)


def _version_tags(trained: TrainedModel, dataset: FerDataset, zenml_run_id: str) -> dict[str, str]:
    tags = {"family": trained.family, "zenml_run_id": zenml_run_id,
            "dataset_sha256": str(dataset.metadata.get("sha256")),
            "val_images": split_digest(dataset), "network": network_digest(trained.model), **trained.tags}
    if dataset.metadata.get("incoming"):
        tags["incoming_batches"] = incoming_tag(dataset.metadata)
    if trained.teacher:
        tags["distill_teacher"] = f"{trained.teacher['name']} v{trained.teacher['version']}"
    return tags


def model_card(model_name: str, trained: TrainedModel, tags: dict[str, str], dataset: FerDataset) -> str:
    """A version's description in the registry: what it is, what it was trained on, how it scores, how to call it,
    and what it cannot do. The aliases it holds, and why, are added by promotion (:func:`card_with_aliases`)."""
    contender = trained.tags.get("contender", trained.family)
    design = ", ".join(f"{k} {tags[k]}" for k in ("architecture", "checkpoint", "continued_from", "distill_teacher",
                                                   "kept_weights", "total_epochs", "total_training_minutes", "contest")
                       if tags.get(k))
    lineage = (f"dataset sha256 `{tags.get('dataset_sha256', 'not recorded')}`, validation images digest "
               f"`{tags.get('val_images', 'not recorded')}`, train/val/test images {len(dataset.split('train'))} / "
               f"{len(dataset.split('val'))} / {len(dataset.split('test'))}"
               + (f", incoming batches {tags['incoming_batches']}" if tags.get("incoming_batches") else "")
               + f"; pipeline run `{tags.get('zenml_run_id') or 'not recorded'}`")
    v = trained.validation.overall
    return f"""## {contender} ({trained.family})

{count_parameters(trained.model):,} parameters; {design or 'no training record'}.

**Data**: FER-2013 (48x48 grayscale faces, 7 emotions); {lineage}.

**Validation** (what promotion decides on): accuracy {v['accuracy']:.4f}, macro-F1 {v['macro_f1']:.4f}.
**Test** (reported only), per emotion:

{trained.test.markdown()}

**Input**: uint8 faces `(N, 48, 48)`, grayscale 0-255. The version declares no input schema on purpose: MLflow's
schema enforcement would cast float pixels to uint8 silently (0.5 becomes 0); the model refuses float pixels itself,
naming the dtype. **Output**: per face a `label` and the 7 probabilities. Test-time views: {trained.tta}.

```python
import mlflow, numpy as np
model = mlflow.pyfunc.load_model("models:/{model_name}/VERSION")  # or @champion, @champion-happy, ...
model.predict(np.zeros((2, 48, 48), np.uint8))
```

**Limitations**: {LIMITATIONS}
"""


ALIASES_HEADING = "**Aliases held**"
NO_CARD = ("No model card: this version was registered by an earlier release; its design, data and metrics are not "
           "recorded here (its MLflow run has what was logged).")


def card_with_aliases(card: str, held: dict[str, str]) -> str:
    """``card`` with its aliases section replaced: each alias the version holds now and why (its ``promoted.<alias>``
    tag: when, the winner's figure against the holder, the runner-up and the lead with its 95 % interval)."""
    base = card.split(f"\n{ALIASES_HEADING}")[0].rstrip("\n") or NO_CARD
    lines = [f"- `@{alias}`: {why}" for alias, why in sorted(held.items())] or ["none now"]
    return f"{base}\n\n{ALIASES_HEADING} (after the latest promotion):\n\n" + "\n".join(lines) + "\n"


def describe_alias_holders(name: str, holders: dict[str, str | None], touched: set[str]) -> None:
    """Rewrites the aliases section of the cards of ``touched`` versions (those that gained or lost an alias)."""
    for version in sorted(v for v in touched if v):
        mv = registry.get_version(name, version)
        held = {a: mv.tags.get(f"promoted.{a}", "(reason not recorded)") for a, v in holders.items() if v == version}
        registry.describe_version(name, version, card_with_aliases(mv.description or "", held))


def _register(trained: TrainedModel, dataset: FerDataset, model_name: str, zenml_run_id: str,
              metric_tags: dict[str, str]) -> str:
    tags = _version_tags(trained, dataset, zenml_run_id)
    description = model_card(model_name, trained, tags, dataset)
    hashes = io.BytesIO()
    np.save(hashes, image_hashes(dataset.split("train").images))
    # logging the model reopens the run: it ends again at the time its training ended (MLflow's duration)
    ended = training_end(trained.run.run_id)
    with resumed(trained.run, finish=True, end_time=ended) as run_id, tempfile.TemporaryDirectory() as tmp:
        log_files(run_id, {Path(TRAIN_HASHES).name: hashes.getvalue()}, str(Path(TRAIN_HASHES).parent))
        model_dir = save_model(trained.model.cpu(), Path(tmp) / "model")
        version = registry.log_and_register(run_id, FerEmotionModel(), {"model": str(model_dir)}, model_name,
                                            {**tags, **metric_tags},
                                            description, dataset.split("test").images[:4],
                                            model_config={"tta": trained.tta, "precision": trained.precision})
        set_phase(run_id, "registered")  # a later rung (another pipeline run) opens a new run
    return version
