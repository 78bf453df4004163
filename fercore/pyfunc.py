"""The MLflow pyfunc interface shared by every model: 48x48 grayscale batch in, classes out."""

from __future__ import annotations

from typing import Any

import mlflow.pyfunc
import numpy as np
import pandas as pd

from fercore.constants import CLASS_NAMES, IMAGE_SIZE


def as_image_batch(model_input: Any) -> np.ndarray:
    """The pyfunc input as uint8 ``(N, 48, 48)``: the form its signature accepts (MLflow's schema
    enforcement turns a JSON request's nested lists into it); anything else is refused by name."""
    arr = np.asarray(model_input)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
        raise ValueError(f"expected uint8 images of shape (N, {IMAGE_SIZE}, {IMAGE_SIZE}) (grayscale, 0-255), got "
                         f"{arr.dtype} {arr.shape}; crop and resize faces first (fercore.faces does that for photos)")
    return arr


def predictions_frame(probs: np.ndarray) -> pd.DataFrame:
    """``label`` column with the class name, then one probability column per class."""
    frame = pd.DataFrame(probs.astype(np.float64), columns=list(CLASS_NAMES))
    frame.insert(0, "label", [CLASS_NAMES[i] for i in probs.argmax(axis=1)])
    return frame


class FerEmotionModel(mlflow.pyfunc.PythonModel):
    """Pyfunc wrapper around a model folder written by :func:`fercore.models.save_model`."""

    def load_context(self, context: mlflow.pyfunc.PythonModelContext) -> None:
        from fercore.inference import autocast_dtype, pick_device, prepare_for_inference
        from fercore.models import load_model

        config = context.model_config or {}
        device = pick_device()
        self.model = prepare_for_inference(load_model(context.artifacts["model"]), device)
        # Versions registered before ``tta`` existed carry a boolean ``hflip_tta``.
        self.tta = config.get("tta") or ("hflip" if config.get("hflip_tta") else "none")
        # the precision it was evaluated in: "auto" is bf16 on CUDA and on CPUs with native bf16
        self.amp = autocast_dtype(device, config.get("precision", "fp32"))

    def predict(self, context, model_input, params=None) -> pd.DataFrame:  # noqa: ARG002 (pyfunc API)
        from fercore.inference import predict_proba

        return predictions_frame(predict_proba(self.model, as_image_batch(model_input), tta=self.tta, amp=self.amp))


def route_probabilities(member_probs: dict[str, np.ndarray], routes: dict[str, str]) -> np.ndarray:
    """Each class's score from that class's champion, renormalised to sum to one.

    Args:
        member_probs: member version -> probabilities ``(N, 7)``.
        routes: emotion -> member version.
    """
    first = next(iter(member_probs.values()))
    scores = np.zeros_like(first, dtype=np.float64)
    for c, emotion in enumerate(CLASS_NAMES):
        scores[:, c] = member_probs[routes[emotion]][:, c]
    return scores / np.clip(scores.sum(axis=1, keepdims=True), 1e-12, None)


class FerEnsembleModel(mlflow.pyfunc.PythonModel):
    """The routed ensemble: members are registry versions, loaded by version at load time."""

    def load_context(self, context: mlflow.pyfunc.PythonModelContext) -> None:
        import json

        with open(context.artifacts["routes"]) as f:
            spec = json.load(f)
        self.routes: dict[str, str] = spec["routes"]
        # members come from the registry the ensemble itself was loaded from
        self.members = {v: mlflow.pyfunc.load_model(f"models:/{spec['model_name']}/{v}") for v in set(self.routes.values())}

    def predict(self, context, model_input, params=None) -> pd.DataFrame:  # noqa: ARG002 (pyfunc API)
        images = as_image_batch(model_input)
        probs = {v: m.predict(images)[list(CLASS_NAMES)].to_numpy() for v, m in self.members.items()}
        return predictions_frame(route_probabilities(probs, self.routes))
