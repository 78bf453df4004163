"""The MLflow pyfunc interface shared by every model: 48x48 grayscale batch in, classes out."""

from __future__ import annotations

from typing import Any

import mlflow.pyfunc
import numpy as np
import pandas as pd

from fercore.constants import CLASS_NAMES, IMAGE_SIZE
from fercore.models.inference import route_probabilities  # noqa: F401  (re-exported: older imports)


def as_image_batch(model_input: Any) -> np.ndarray:
    """The pyfunc input as uint8 ``(N, 48, 48)``; integer pixels 0-255 of another integer type (a JSON
    request's nested lists arrive as int64) are converted. Anything else is refused by name, as a
    client error (HTTP 400 from ``mlflow models serve``).

    The signature declares no input schema on purpose: MLflow's schema enforcement would cast a JSON
    request's float pixels to uint8 silently (0.5 becomes 0) before this check could see them.
    """
    from fercore.tracking.store import bad_request

    arr = np.asarray(model_input)
    expected = f"expected uint8 images of shape (N, {IMAGE_SIZE}, {IMAGE_SIZE}) (grayscale pixels, integers 0-255)"
    if arr.ndim != 3 or arr.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
        raise bad_request(f"{expected}, got shape {arr.shape}; crop and resize faces first (fercore.serving.faces does "
                          "that for photos)")
    if arr.dtype == np.uint8:
        return arr
    if not np.issubdtype(arr.dtype, np.integer):
        raise bad_request(f"{expected}, got {arr.dtype} pixel values; send whole numbers 0-255, not floats or strings")
    if arr.size and (arr.min() < 0 or arr.max() > 255):
        raise bad_request(f"{expected}, got {arr.dtype} values from {arr.min()} to {arr.max()}")
    return arr.astype(np.uint8)


def predictions_frame(probs: np.ndarray) -> pd.DataFrame:
    """``label`` column with the class name, then one probability column per class."""
    frame = pd.DataFrame(probs.astype(np.float64), columns=list(CLASS_NAMES))
    frame.insert(0, "label", [CLASS_NAMES[i] for i in probs.argmax(axis=1)])
    return frame


class FerEmotionModel(mlflow.pyfunc.PythonModel):
    """Pyfunc wrapper around a model folder written by :func:`fercore.models.save_model`."""

    def load_context(self, context: mlflow.pyfunc.PythonModelContext) -> None:
        from fercore.models.inference import load_for_inference
        from fercore.serving.model_thread import on_model_thread

        # loaded and run on one thread, whichever threads the server calls from (fercore.serving.model_thread)
        loaded = on_model_thread(load_for_inference, context.artifacts["model"], context.model_config)
        self.model, self.tta, self.amp = loaded.module, loaded.tta, loaded.amp

    # the np.ndarray hint asks MLflow for no type-hint validation (it warns on every load without one)
    def predict(self, context, model_input: np.ndarray, params=None) -> pd.DataFrame:  # noqa: ARG002 (pyfunc API)
        return predictions_frame(self.probabilities(as_image_batch(model_input)))

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        """Class probabilities ``(N, 7)`` of uint8 faces ``(N, 48, 48)``, computed on the model thread."""
        from fercore.models.inference import predict_proba
        from fercore.serving.model_thread import on_model_thread

        return on_model_thread(predict_proba, self.model, images, tta=self.tta, amp=self.amp)


def load_member(name: str, version: str) -> mlflow.pyfunc.PyFuncModel:
    """An ensemble's member through MLflow (``mlflow models serve``), once its files show it is one of the project's
    wrappers (:func:`fercore.tracking.model_guard.checked_wrapper`): a member that is not is never unpickled."""
    import tempfile
    from pathlib import Path

    import mlflow.artifacts

    from fercore.tracking.model_guard import checked_wrapper

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(mlflow.artifacts.download_artifacts(f"models:/{name}/{version}", dst_path=tmp))
        checked_wrapper(folder, f"member v{version} of the ensemble")
        return mlflow.pyfunc.load_model(str(folder))  # the weights are read into memory: the folder may go


class FerEnsembleModel(mlflow.pyfunc.PythonModel):
    """An ensemble of registry versions, loaded by version at load time: routed (each class's score from
    that class's champion) or averaged (weights and temperatures fitted on validation)."""

    def load_context(self, context: mlflow.pyfunc.PythonModelContext) -> None:
        import json

        from fercore.models.inference import ensemble_members, ensemble_spec_file
        from fercore.serving.model_thread import on_model_thread

        with open(ensemble_spec_file(context.artifacts)) as f:
            self.spec = json.load(f)
        self.routes: dict[str, str] = self.spec.get("routes", {})
        # members come from the registry the ensemble itself was loaded from, each checked before MLflow unpickles it,
        # loaded on the thread that runs them (fercore.serving.model_thread)
        self.members = {v: on_model_thread(load_member, self.spec["model_name"], v) for v in ensemble_members(self.spec)}

    # the np.ndarray hint asks MLflow for no type-hint validation (it warns on every load without one)
    def predict(self, context, model_input: np.ndarray, params=None) -> pd.DataFrame:  # noqa: ARG002 (pyfunc API)
        return predictions_frame(self.probabilities(as_image_batch(model_input)))

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        """The ensemble's class probabilities ``(N, 7)`` of uint8 faces ``(N, 48, 48)``, on the model thread."""
        from fercore.serving.model_thread import on_model_thread

        return on_model_thread(self._mix, images)

    def _mix(self, images: np.ndarray) -> np.ndarray:
        from fercore.models.inference import ensemble_probabilities

        # the members' wrappers directly: their pyfunc predict would check the input and build a table per member
        probs = {v: m.unwrap_python_model().probabilities(images) for v, m in self.members.items()}
        return ensemble_probabilities(self.spec, probs)
