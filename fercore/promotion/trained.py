"""A contender's trained model as registration and its model card see it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import nn

from fercore.evaluation.metrics import Evaluation
from fercore.evaluation.predictions import Predictions
from fercore.tracking.runs import TrackedRun


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
        metrics: the run's training figures, logged when it is registered (``training_minutes``, ...).
        predictions: its val/test probabilities, recorded with it for later runs' ensemble libraries.
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
    metrics: dict[str, float] = field(default_factory=dict)
    predictions: Predictions | None = None

    def headline(self) -> dict[str, float]:
        o, v = self.test.overall, self.validation.overall
        return {"val_accuracy": v["accuracy"], "val_macro_f1": v["macro_f1"], "test_accuracy": o["accuracy"],
                "test_macro_f1": o["macro_f1"], **{f"{k}_accuracy": m["accuracy"] for k, m in self.test.subsets.items()}}
