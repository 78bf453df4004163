"""The MLflow pyfunc interface shared by every model: 48x48 grayscale batch in, classes out."""

from __future__ import annotations

from typing import Any

import mlflow.pyfunc
import numpy as np
import pandas as pd

from fercore.constants import CLASS_NAMES, IMAGE_SIZE


def as_image_batch(model_input: Any) -> np.ndarray:
    """Coerces pyfunc input to uint8 ``(N, 48, 48)``.

    Accepts uint8 or float arrays of shape ``(N, 48, 48)``, ``(N, 48, 48, 1)``, ``(N, 1, 48, 48)``
    or ``(N, 2304)`` (floats in [0, 1] are scaled to 0-255), or a DataFrame of 2304 pixel columns.
    """
    arr = model_input.to_numpy() if isinstance(model_input, pd.DataFrame) else np.asarray(model_input)
    if arr.ndim == 2 and arr.shape[1] == IMAGE_SIZE * IMAGE_SIZE:
        arr = arr.reshape(-1, IMAGE_SIZE, IMAGE_SIZE)
    if arr.ndim == 4 and 1 in (arr.shape[1], arr.shape[3]):
        arr = arr.reshape(arr.shape[0], IMAGE_SIZE, IMAGE_SIZE) if arr.size == arr.shape[0] * IMAGE_SIZE**2 else arr
    if arr.ndim == 2 and arr.shape == (IMAGE_SIZE, IMAGE_SIZE):
        arr = arr[None]
    if arr.ndim != 3 or arr.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
        raise ValueError(f"expected a batch of {IMAGE_SIZE}x{IMAGE_SIZE} grayscale images, got shape {arr.shape}")
    if arr.dtype != np.uint8:
        arr = arr.astype(np.float32)
        if arr.size and arr.max() <= 1.0:
            arr = arr * 255.0
        arr = np.clip(np.rint(arr), 0, 255).astype(np.uint8)
    return arr


def predictions_frame(probs: np.ndarray) -> pd.DataFrame:
    """``label`` column with the class name, then one probability column per class."""
    frame = pd.DataFrame(probs.astype(np.float64), columns=list(CLASS_NAMES))
    frame.insert(0, "label", [CLASS_NAMES[i] for i in probs.argmax(axis=1)])
    return frame


class FerEmotionModel(mlflow.pyfunc.PythonModel):
    """Pyfunc wrapper around a model folder written by :func:`fercore.models.save_model`."""

    def load_context(self, context: mlflow.pyfunc.PythonModelContext) -> None:
        from fercore.models import load_model

        self.model = load_model(context.artifacts["model"])
        config = context.model_config or {}
        # Versions registered before ``tta`` existed carry a boolean ``hflip_tta``.
        self.tta = config.get("tta") or ("hflip" if config.get("hflip_tta") else "none")

    def predict(self, context, model_input, params=None) -> pd.DataFrame:  # noqa: ARG002 (pyfunc API)
        from fercore.train import predict_proba

        return predictions_frame(predict_proba(self.model, as_image_batch(model_input), tta=self.tta))


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
