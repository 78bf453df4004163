"""What draws a copied version's class activation maps (:mod:`fercore.explain.cam`) for ``run.py predict --explain``
and the demo: a single model's own, an ensemble's from its members."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from fercore.errors import RegistryError
from fercore.models.inference import ensemble_spec_file, registered_tta
from fercore.tracking.copies import member_folders, network_folder, pyfunc_spec
from fercore.tracking.model_guard import checked_wrapper

Explain = Callable[[np.ndarray, np.ndarray], np.ndarray]  # uint8 faces (N, 48, 48), classes (N,) -> maps (N, 48, 48)


def load_explainer(folder: Path) -> Explain:
    """Class activation maps of a copied version (:mod:`fercore.explain.cam`): a single model's own, an ensemble's
    from its members (routed: the routing member's map; averaging: the weighted sum), each averaged over the
    test-time views it predicts with.

    Raises:
        ExplainError: the model is not one of this project's wrappers, or its family has no supported layer.
    """
    from fercore.explain.cam import ExplainError, class_activation_maps, ensemble_maps
    from fercore.models.io import load_model

    spec, artifacts = pyfunc_spec(folder)
    try:
        wrapper = checked_wrapper(folder)
    except RegistryError as exc:
        raise ExplainError(f"its maps cannot be drawn: {exc}") from None
    if wrapper == "FerEmotionModel":
        model, tta = load_model(artifacts["model"]), registered_tta(spec.get("config"))
        class_activation_maps(model, np.zeros((0, 48, 48), np.uint8), [])  # an unsupported family fails here, by name
        return lambda images, classes: class_activation_maps(model, images, classes, tta=tta)
    ensemble = json.loads(Path(ensemble_spec_file(artifacts)).read_text())
    folders = {v: folder.parent / sub for v, sub in member_folders(folder).items()}
    members = {v: load_model(network_folder(f)) for v, f in folders.items()}
    member_tta = {v: registered_tta(pyfunc_spec(f)[0].get("config")) for v, f in folders.items()}
    return lambda images, classes: ensemble_maps(ensemble, members, images, classes, member_tta=member_tta)
